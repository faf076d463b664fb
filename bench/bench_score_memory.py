"""Scoring memory: the whole model in memory vs layer by layer under a memory cap, in one run.

Builds a Llama-shaped bf16 checkpoint (default 28 layers, hidden 2048, vocab 32000: 2.6 GiB of weights), then for
each metric runs `hfprune score` in a fresh process twice: in memory (`--stream off`, no cap) and layer by layer
(`--stream on`) inside a memory cgroup capped at --cap-gib (default 1.25 GiB: the weights are over twice the cap),
at the default scoring dtype (float32). The in-memory run is also tried under the same cap, to show the cap
bites. Reported: the process's peak RSS, wall time, and whether both runs chose the same layers.

The page cache is dropped before each capped run (as root): cgroup v1 charges a file's cached pages to the
cgroup that first read them, so a checkpoint just written by this script would otherwise be held outside the
cap (and an in-memory run whose weights stay memory-mapped, bf16 on bf16, would look free).

The cap is a cgroup (v2 `memory.max` or v1 `memory.limit_in_bytes`, needs root); where neither can be created it
falls back to `prlimit --as` on the address space (cap + the interpreter's own ~2.6 GiB of mappings), and says so.
Usage: python bench/bench_score_memory.py [--layers 28] [--cap-gib 1.25] [--metrics block-influence,angular,ppl]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_prune import build_checkpoint  # noqa: E402

_WRAPPER = (
    "import resource, subprocess, sys, time, json\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "print(json.dumps({'rc': rc, 'wall_s': wall, 'peak_rss_bytes': rss}), file=sys.stderr)\n"
)


class Cap:
    """A memory cap for child processes: a cgroup where one can be made, else an address-space limit."""

    def __init__(self, cap_bytes: int):
        self.bytes = cap_bytes
        self.cgroup = self._make_cgroup()
        self.how = (f"cgroup {self.cgroup}" if self.cgroup else
                    "prlimit --as (no writable cgroup here): address space capped at cap + 2.6 GiB of interpreter "
                    "mappings")

    def _make_cgroup(self) -> Path | None:
        name = f"hfprune-bench-{os.getpid()}"
        for root, limit in ((Path("/sys/fs/cgroup"), "memory.max"),
                            (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes")):
            if not (root / "cgroup.procs").exists() or (limit == "memory.max" and not (root / "cgroup.controllers").exists()):
                continue
            try:
                folder = root / name
                folder.mkdir()
                (folder / limit).write_text(str(self.bytes))
                swap = folder / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(self.bytes))
                if (folder / "memory.swap.max").exists():
                    (folder / "memory.swap.max").write_text("0")
                return folder
            except OSError:
                continue
        return None

    def wrap(self, cmd: list[str]) -> list[str]:
        if self.cgroup:
            return ["sh", "-c", f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"', "sh", *cmd]
        return ["prlimit", f"--as={self.bytes + int(2.6 * 2**30)}", *cmd]

    def close(self) -> None:
        if self.cgroup:
            try:
                self.cgroup.rmdir()
            except OSError:
                pass


def drop_page_cache() -> None:
    subprocess.run(["sync"])
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3")
    except OSError:
        pass  # not root: cached pages may be charged outside the cap


def run(cmd: list[str], timeout: float) -> dict:
    """{'rc', 'wall_s', 'peak_rss_bytes'}; rc None when the run did not finish within `timeout` seconds."""
    import signal
    import time

    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, *cmd], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"rc": None, "wall_s": time.perf_counter() - t, "peak_rss_bytes": 0}
    return json.loads(err.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--cap-gib", type=float, default=1.25)
    ap.add_argument("--metrics", default="block-influence,angular,ppl")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a run is stopped")
    args = ap.parse_args()
    from hfprune.tiny import DEMO_TEXT, train_tokenizer

    work = Path(tempfile.mkdtemp(prefix="hfprune-bench-mem-"))
    cap = Cap(int(args.cap_gib * 2**30))
    try:
        total = build_checkpoint(work / "m", args.layers)
        train_tokenizer(work / "m")  # 384-token BPE: its ids are valid rows of the 32000-row embedding
        (work / "calib.txt").write_text((DEMO_TEXT + "\n") * 200)
        print(f"checkpoint: {args.layers} layers, {total / 2**30:.2f} GiB of bf16 weights "
              f"({total / cap.bytes:.1f}x the cap of {args.cap_gib:g} GiB); calibration {args.samples} x "
              f"{args.seq_len} tokens, --dtype {args.dtype}; cap: {cap.how}\n")
        print("| metric | mode | cap | peak RSS GiB | RSS / weights | wall s | same choice |")
        print("|---|---|---|---|---|---|---|")
        for metric in args.metrics.split(","):
            remove = 4
            rows = {}
            for mode, capped in (("off", False), ("on", True), ("off", True)):
                if mode == "off" and capped and metric != args.metrics.split(",")[0]:
                    continue  # one in-memory run under the cap is enough to show it bites
                out = work / f"{metric}-{mode}-{capped}.json"
                cmd = [sys.executable, "-m", "hfprune", "score", str(work / "m"), "--metric", metric, "--remove",
                       str(remove), "--data", str(work / "calib.txt"), "--samples", str(args.samples),
                       "--seq-len", str(args.seq_len), "--dtype", args.dtype, "--stream", mode, "-o",
                       str(out), "--scores", str(out.with_suffix(".scores.json")), "--cache-dir",
                       str(work / f"cache-{mode}-{capped}"), "--no-progress"]
                if capped:
                    drop_page_cache()
                r = run(cap.wrap(cmd) if capped else cmd, args.timeout)
                plan = json.loads(out.read_text()) if r["rc"] == 0 and out.is_file() else None
                rows[(mode, capped)] = (r, plan)
                reference = rows.get(("off", False), (None, None))[1]
                same = "-" if plan is None or (mode, capped) == ("off", False) else \
                    ("yes" if plan == reference else "NO")
                what = "in memory" if mode == "off" else "layer by layer"
                if r["rc"] is None:
                    print(f"| {metric} | {what} | {args.cap_gib:g} GiB | did not finish in {args.timeout:g} s "
                          f"(stopped) | | >{args.timeout:g} | - |", flush=True)
                    continue
                if r["rc"] != 0:
                    print(f"| {metric} | {what} | {args.cap_gib:g} GiB | failed (exit {r['rc']}: killed at the "
                          f"cap) | | {r['wall_s']:.1f} | - |", flush=True)
                    continue
                print(f"| {metric} | {what} | {f'{args.cap_gib:g} GiB' if capped else 'none'} | "
                      f"{r['peak_rss_bytes'] / 2**30:.2f} | {r['peak_rss_bytes'] / total:.2f}x | {r['wall_s']:.1f} | "
                      f"{same} |", flush=True)
    finally:
        cap.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
