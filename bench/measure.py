"""Run a command as a child and report its wall time and peak RSS (the child's own, via getrusage)."""

from __future__ import annotations

import json
import subprocess
import sys

_WRAPPER = (
    "import resource, subprocess, sys, time, json\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "print(json.dumps({'rc': rc, 'wall_s': wall, 'peak_rss_bytes': rss}), file=sys.stderr)\n"
)


def measure(cmd: list[str]) -> dict:
    """{'rc', 'wall_s', 'peak_rss_bytes'} for `cmd`, measured in a fresh wrapper process."""
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    last = proc.stderr.strip().splitlines()[-1]
    result = json.loads(last)
    if result["rc"] != 0:
        raise SystemExit(f"{cmd[:3]}... failed:\n{proc.stderr[-2000:]}")
    return result


def measure_median(cmd: list[str], warm_folder, output, repeats: int = 3) -> dict:
    """Median wall time (and max peak RSS) of `repeats` runs; `output` is synced, then removed, after each run.

    Syncing inside the timed region counts the write-back, so a tool cannot look fast by leaving dirty pages.
    """
    import shutil
    from pathlib import Path

    runs = []
    for _ in range(repeats):
        warm(warm_folder)
        subprocess.run(["sync"])
        runs.append(measure(["sh", "-c", 'exec "$@" && sync', "sh", *cmd]))
        shutil.rmtree(Path(output), ignore_errors=True)
    runs.sort(key=lambda r: r["wall_s"])
    best = dict(runs[len(runs) // 2])
    best["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)
    return best


def warm(folder) -> None:
    """Read every file once so every contender starts from the same (warm) page cache."""
    from pathlib import Path

    for p in Path(folder).rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass


def row(name: str, r: dict, base: dict | None = None) -> str:
    ratio = f"{r['wall_s'] / base['wall_s']:.2f}x" if base else "1.00x"
    return f"| {name} | {r['wall_s']:.2f} | {ratio} | {r['peak_rss_bytes'] / 2**20:.0f} |"


if __name__ == "__main__":
    print(measure(sys.argv[1:]))
