"""Command line: parse, call one library function, print. Typed errors become one line and exit status 2.

Each command lives in hfprune/commands/<name>.py (`register(sub)` adds its parser, a `_cmd_*` function runs it);
the flags several commands share are defined once in hfprune/commands/_shared.py. Nothing heavy is imported at
module level so that `--help` answers instantly.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import HfpruneError

COMMANDS = ("prune", "score", "recover", "export_gguf", "eval", "push", "sweep", "demo")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage dump
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="hfprune", description="Remove decoder layers from causal LMs and publish the result.")
    parser.add_argument("--version", action="version", version=f"hfprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so staged outputs are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def _install_signal_handlers() -> None:
    import signal

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_terminated)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _install_signal_handlers()
    try:
        return args.func(args)
    except HfpruneError as e:
        print(f"hfprune {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"hfprune {args.command}: interrupted; no partial output was left at the destination", file=sys.stderr)
        return 128 + e.signum if isinstance(e, Terminated) else 130
    except OSError as e:  # full or read-only disk, permissions: the user can fix these
        from .workdir import describe_os_error

        print(f"hfprune {args.command}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
