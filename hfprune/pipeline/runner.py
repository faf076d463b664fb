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


def _recipe_parts(recipe: Recipe) -> tuple[dict, bool, dict]:
    """(the recipe as JSON, whether it heals between pruning rounds, the recipe as published without push)."""
    import yaml

    r = recipe.model_dump(mode="json")
    iterative = bool(recipe.prune.metric and recipe.prune.iterative_step and recipe.recover.method != "none")
    published = yaml.safe_load(recipe.to_yaml()) or {}
    published.pop("push", None)  # changing the target repo or --no-push never invalidates work
    return r, iterative, published


def stage_settings(recipe: Recipe, repo_id: str | None, sweep_table: str | None) -> dict[str, dict]:
    """Each stage's own settings (the parts of its key that are not the stage before it), flattened to dotted
    names: recorded in stages.json so a resume can say which of them changed."""
    r, iterative, published = _recipe_parts(recipe)
    own = {"source": {"source": r["source"]},
           "plan": {"prune": r["prune"], "recover": r["recover"] if iterative else None},
           "prune": {},
           "recover": {"recover": r["recover"]},
           "eval": {"eval": r["eval"]},
           "final": {"published recipe": published, "repo_id": repo_id,
                     "sweep table": _key(sweep_table) if sweep_table else None},
           "push": {"repo_id": repo_id, "push.private": r["push"]["private"]}}
    return {stage: _flat(settings) for stage, settings in own.items()}


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for name, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value
    return out


def stage_keys(recipe: Recipe, repo_id: str | None, sweep_table: str | None) -> dict[str, str]:
    """Each stage's key: the settings its artifact depends on, chained to the stage before it."""
    r, iterative, published = _recipe_parts(recipe)
    keys = {"source": _key(r["source"])}
    keys["plan"] = _key(keys["source"], r["prune"], r["recover"] if iterative else None)
    keys["prune"] = _key(keys["plan"])
    keys["recover"] = _key(keys["prune"], r["recover"])
    upstream = keys["recover"] if recipe.recover.method != "none" else keys["prune"]
    keys["eval"] = _key(upstream, r["eval"])
    keys["final"] = _key(keys["eval"], published, repo_id, sweep_table)
    keys["push"] = _key(keys["final"], repo_id, r["push"]["private"])
    return keys


def changed_settings(stored: dict | None, current: dict) -> list[str]:
    """The dotted names whose values differ between a stage's recorded and current settings."""
    if stored is None:
        return []
    return sorted(name for name in set(stored) | set(current) if stored.get(name) != current.get(name))


class StageRunner:
    """Runs or (under --resume, with an unchanged key) reuses each stage's artifact; records what ran."""

    def __init__(self, work: Path, keys: dict[str, str], resume: bool, echo=print,
                 settings: dict[str, dict] | None = None):
        self.work, self.keys, self.resume, self.echo = work, keys, resume, echo
        self.settings = settings or {}
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
                self.echo(f"[{name}] {self._why_redone(name, done)}: redoing it")
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
            if name in self.settings:
                done.setdefault("settings", {})[name] = self.settings[name]
            write_json(record, done)
            self.ran.append(name)
            self.echo(f"[{name}] done in {seconds:.1f} s")
        if artifact.suffix != ".json":
            return None
        stored = json.loads(artifact.read_text())
        return decode(stored) if decode else stored

    def _why_redone(self, name: str, done: dict) -> str:
        stored = done.get("settings", {}).get(name)
        if stored is None or name not in self.settings:
            return "settings changed since the earlier run"
        changed = changed_settings(stored, self.settings[name])
        if not changed:
            return "an earlier stage ran again"
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        return f"changed since the earlier run: {shown}"
