"""Running named stages in a work dir: each leaves one artifact, recorded with a key of the settings it depends on.

--resume reuses an artifact only when its key is unchanged (so changing --tasks reruns evaluation alone). Artifacts
are written atomically (files via rename, folders via surgery's write-aside-then-rename), so a killed run never
leaves a half-finished artifact that a resume would trust. `stages.json` holds the keys and each stage's seconds.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..settings import Recipe
from ..workdir import remove_hfprune_folder, write_json

STAGES_FILE = "stages.json"


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_keys(recipe: Recipe, repo_id: str | None, sweep_table: str | None) -> dict[str, str]:
    """Each stage's key: the settings its artifact depends on, chained to the stage before it."""
    import yaml

    r = recipe.model_dump(mode="json")
    iterative = bool(recipe.prune.metric and recipe.prune.iterative_step and recipe.recover.method != "none")
    published = yaml.safe_load(recipe.to_yaml()) or {}
    published.pop("push", None)  # changing the target repo or --no-push never invalidates work
    keys = {"source": _key(r["source"])}
    keys["plan"] = _key(keys["source"], r["prune"], r["recover"] if iterative else None)
    keys["prune"] = _key(keys["plan"])
    keys["recover"] = _key(keys["prune"], r["recover"])
    upstream = keys["recover"] if recipe.recover.method != "none" else keys["prune"]
    keys["eval"] = _key(upstream, r["eval"])
    keys["final"] = _key(keys["eval"], published, repo_id, sweep_table)
    keys["push"] = _key(keys["final"], repo_id, r["push"]["private"])
    return keys


class StageRunner:
    """Runs or (under --resume, with an unchanged key) reuses each stage's artifact; records what ran."""

    def __init__(self, work: Path, keys: dict[str, str], resume: bool, echo=print):
        self.work, self.keys, self.resume, self.echo = work, keys, resume, echo
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def run(self, name: str, artifact: Path, fn, *, encode=None, decode=None):
        """fn() makes the stage's result; a .json artifact stores encode(result) (default: the result itself) and
        what is returned is decode(stored), so a reused and a fresh artifact give the caller the same value."""
        record = self.work / STAGES_FILE
        done = json.loads(record.read_text()) if record.is_file() else {}
        if self.resume and artifact.exists() and done.get(name) == self.keys[name]:
            self.skipped.append(name)
            self.echo(f"[{name}] done earlier: {artifact}")
        else:
            if self.resume and artifact.exists():
                self.echo(f"[{name}] settings changed since the earlier run: redoing it")
                if artifact.is_dir():
                    remove_hfprune_folder(artifact)
            else:
                self.echo(f"[{name}] ...")
            start = time.perf_counter()
            value = fn()
            if artifact.suffix == ".json" and value is not None:
                write_json(artifact, encode(value) if encode else value)
            seconds = time.perf_counter() - start
            done[name] = self.keys[name]
            done.setdefault("seconds", {})[name] = round(seconds, 1)
            write_json(record, done)
            self.ran.append(name)
            self.echo(f"[{name}] done in {seconds:.1f} s")
        if artifact.suffix != ".json":
            return None
        stored = json.loads(artifact.read_text())
        return decode(stored) if decode else stored
