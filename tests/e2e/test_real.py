"""Real-model smoke test (`pytest -m real`): SmolLM2-135M-Instruct, built offline by bench/real/build_checkpoints.py
and bench/real/build_data.py. Skipped when the checkpoint is not cached: the default run never downloads it."""

import json
import os
from pathlib import Path

import pytest

from hfprune.cli import main

pytestmark = pytest.mark.real

ROOT = Path(os.environ.get("HFPRUNE_REAL") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            / "hfprune" / "real")
SMOL = ROOT / "SmolLM2-135M-Instruct"
DATA = ROOT / "data"


@pytest.mark.skipif(not (SMOL / "config.json").is_file() or not (DATA / "tasks").is_dir(),
                    reason="run bench/real/build_checkpoints.py and bench/real/build_data.py first")
def test_smollm2_prune_heal_evaluate(tmp_path):
    """Drop the last 8 of 30 layers, heal 8 steps with partial FT (tied head frozen), evaluate on real tasks."""
    work = tmp_path / "work"
    assert main(["push", str(SMOL), "--drop-last", "8", "--recover", "partial", "--dataset", str(DATA / "heal.jsonl"),
                 "--max-samples", "128", "--recover-batch-size", "16", "--lr", "2e-4", "--epochs", "1",
                 "--tasks", "real_capitals_mc", "--limit", "40", "--include-path", str(DATA / "tasks"),
                 "--work-dir", str(work), "--no-push", "--no-progress"]) == 0
    ev = json.loads((work / "eval.json").read_text())
    dense, healed = ev["dense"]["size"]["parameters"], ev["recovered"]["size"]["parameters"]
    assert dense > 130e6 and healed < dense - 25e6  # the tied head stayed tied: the size win is kept
    run = json.loads((work / "recovered" / "hfprune.json").read_text())["recovery_run"]
    assert run["optimizer_steps"] == 8 and run["prompt"] == "chat" and run["last_loss"] < run["first_loss"]
    assert 0.25 < ev["dense"]["tasks"]["real_capitals_mc"]["acc"] <= 1.0
