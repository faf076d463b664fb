"""Files and folders hfprune writes: atomic files, staged folders, and the rules that keep user data safe.

- Every output folder is built in a hidden sibling (`.OUT.partial-*`) and renamed into place when complete. The
  staging folder records the pid that owns it, so a later run removes leftovers of killed runs (SIGKILL included)
  and never touches a folder another live process is writing.
- An output or work dir that is, contains or lies inside an input is refused.
- `--overwrite` replaces only what hfprune itself wrote: a folder holding one of hfprune's marker files (the
  provenance file of a checkpoint, the marker of a work dir or a training-checkpoint folder), or an empty folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import OutputExistsError, UnsafeOutputError

PROVENANCE_FILE = "hfprune.json"  # in every checkpoint hfprune writes
WORKDIR_MARKER = ".hfprune-workdir"  # in every pipeline work dir
CHECKPOINTS_MARKER = ".hfprune-checkpoints"  # in a recovery's training-checkpoint folder
# marks a training checkpoint that Trainer finished writing: only those are resumed from
COMPLETE_MARKER = "hfprune-complete"
MARKERS = (PROVENANCE_FILE, WORKDIR_MARKER, CHECKPOINTS_MARKER)
_OWNER = ".hfprune-owner"


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """Yield a temporary path beside `path`; on success it replaces `path` (a reader sees the old file or the new
    one, never half), on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj, *, indent: int | None = 2) -> None:
    """Write JSON atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, default=str) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


# ---------------------------------------------------------------- what may be written where

def _resolved(p: str | Path) -> Path:
    return Path(p).expanduser().resolve()


def _related(a: Path, b: Path) -> str | None:
    if a == b:
        return "is"
    if b.is_relative_to(a):
        return "contains"
    if a.is_relative_to(b):
        return "lies inside"
    return None


def check_not_input(output: str | Path, inputs: dict[str, str | Path | None], what: str = "output") -> None:
    """Refuse an output that is, contains or lies inside one of `inputs` ({label: path}); None inputs are skipped."""
    out = _resolved(output)
    for label, path in inputs.items():
        if path is None:
            continue
        rel = _related(out, _resolved(path))
        if rel:
            raise UnsafeOutputError(f"{what} {output} {rel} the {label} {path}; writing there could destroy it. "
                                    f"Choose an {what} outside the {label}")


def is_hfprune_folder(path: Path) -> bool:
    """True for a folder hfprune wrote (it holds one of hfprune's marker files) or an empty folder."""
    if not path.is_dir():
        return False
    return any((path / m).is_file() for m in MARKERS) or not any(path.iterdir())


def check_output(output: str | Path, overwrite: bool, inputs: dict[str, str | Path | None] | None = None,
                 what: str = "output") -> None:
    """Before any work: `output` must not collide with an input, and may exist only to be replaced (--overwrite)
    when hfprune wrote it."""
    output = Path(output)
    check_not_input(output, inputs or {}, what)
    if not output.exists() and not output.is_symlink():
        parent = _resolved(output).parent
        if parent.exists() and not parent.is_dir():
            raise OutputExistsError(f"cannot create {output}: {parent} is not a folder")
        return
    if not overwrite:
        raise OutputExistsError(f"{output} already exists; pass --overwrite to replace it or choose another -o")
    if output.is_symlink() or not output.is_dir():
        raise OutputExistsError(f"{output} exists and is not a folder; remove it yourself or choose another -o")
    if not is_hfprune_folder(output):
        raise UnsafeOutputError(f"{output} was not written by hfprune (no {PROVENANCE_FILE}); --overwrite only "
                                "replaces hfprune's own outputs. Remove it yourself or choose another -o")


def check_writable_file(path: str | Path, what: str = "output file") -> None:
    """Before long work: the folder of `path` exists and can be written, and `path` is not a folder."""
    p = Path(path)
    parent = _resolved(p).parent
    if p.is_dir():
        raise OutputExistsError(f"{what} {p} is a folder; give a file name")
    if not parent.is_dir():
        raise OutputExistsError(f"{what} {p}: folder {parent} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK):
        raise OutputExistsError(f"{what} {p}: folder {parent} is not writable")


# ---------------------------------------------------------------- staged folders

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(output: Path) -> list[Path]:
    """Remove `.OUT.partial-*` / `.OUT.old-*` leftovers of runs that are no longer alive; return what went."""
    parent = output.parent
    removed = []
    if not parent.is_dir():
        return removed
    for prefix in (f".{output.name}.partial-", f".{output.name}.old-"):
        for p in parent.glob(f"{prefix}*"):
            if not p.is_dir() or p.is_symlink():
                continue
            try:
                pid = int((p / _OWNER).read_text().strip())
            except (OSError, ValueError):
                pid = None
            if pid is not None and pid != os.getpid() and _pid_alive(pid):
                continue  # another live run is writing it
            # a dead owner, or none (an older hfprune, a trash folder): nobody can publish it any more
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def new_staging(output: Path) -> Path:
    """A fresh hidden sibling of `output` owned by this process (stale siblings of dead runs are removed first)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staging, 0o777 & ~mask)  # mkdtemp makes 0700; an output is an ordinary folder (the umask decides)
    (staging / _OWNER).write_text(str(os.getpid()))
    return staging


def publish(staging: Path, output: Path, overwrite: bool) -> None:
    """Rename a complete staging folder to `output`; an existing hfprune output is replaced only with overwrite."""
    (staging / _OWNER).unlink(missing_ok=True)
    if output.exists():
        if not overwrite:
            raise OutputExistsError(f"{output} appeared while writing; pass --overwrite to replace it")
        if not is_hfprune_folder(output):
            raise UnsafeOutputError(f"{output} appeared while writing and was not written by hfprune; "
                                    "refusing to replace it")
        trash = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
        output.rename(trash / output.name)
        staging.rename(output)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(output)


@contextlib.contextmanager
def staged_folder(output: str | Path, overwrite: bool):
    """Yield a staging folder; on success it becomes `output`, on any failure or signal it is removed."""
    output = Path(output).expanduser().resolve()  # "." or "a/.." name no sibling; the resolved path does
    staging = new_staging(output)
    try:
        yield staging
        publish(staging, output, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_hfprune_folder(path: Path) -> None:
    """Delete a folder only if hfprune wrote it (see is_hfprune_folder)."""
    if not path.exists():
        return
    if path.is_symlink() or not is_hfprune_folder(path):
        raise UnsafeOutputError(f"{path} was not written by hfprune; refusing to delete it")
    shutil.rmtree(path)


def describe_os_error(e: OSError) -> str:
    """One line for a file-system failure the user can fix (full disk, read-only, permissions)."""
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    hint = {errno.ENOSPC: "free some space or choose another output folder",
            errno.EDQUOT: "free some space or choose another output folder",
            errno.EROFS: "choose a writable output folder",
            errno.EACCES: "check the permissions or choose another path",
            errno.EPERM: "check the permissions or choose another path"}.get(e.errno, "check the path")
    return f"{e.strerror or e}{where}; {hint}; nothing half-written was left at the destination"


LOCK_FILE = ".hfprune-lock"  # held (flock) by the run that owns a work dir; the kernel releases it if it dies


@contextlib.contextmanager
def work_dir_lock(folder: str | Path, what: str = "work dir"):
    """Hold `folder` for this run: a second run on the same folder is refused in one line while this one lives.
    The lock is an flock on a file inside the folder, so a crashed or killed run never leaves it stuck."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise OutputExistsError(f"{what} {folder} is in use by another hfprune run (pid {holder}); wait for it to "
                                "finish, or choose another --work-dir") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
