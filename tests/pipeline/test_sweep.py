"""`hfprune sweep`: several recipes on one source, shared work, a results table that agrees with single runs,
the Pareto front, publishing an entry with its sweep table, and bad input."""

import json

import pytest
from huggingface_hub import ModelCard

from hfprune.cli import main
from hfprune.pipeline.sweep import pareto_front

TASKS = ["--tasks", "hfprune_demo_mc", "--limit", "6"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    from hfprune.evaluation.harness import DATA_DIR
    from hfprune.tiny import build_tiny_checkpoint

    tmp = tmp_path_factory.mktemp("sweep")
    src = build_tiny_checkpoint(tmp / "src", "llama", num_layers=5)
    (tmp / "recipe.yaml").write_text(
        "recover:\n  lr: 3.0e-3\n  batch_size: 8\n  micro_batch_size: 8\n  max_steps: 3\n  last_k: 1\n")
    args = ["sweep", str(src), "--remove", "1", "--metrics", "reverse-order,block-influence",
            "--recover", "none,partial", "--data", str(DATA_DIR / "demo_text.jsonl"),
            "--dataset", str(DATA_DIR / "demo_instructions.jsonl"), "--recipe", str(tmp / "recipe.yaml"),
            "--work-dir", str(tmp / "sweep"), "--no-progress", *TASKS]
    assert main(args) == 0
    return {"tmp": tmp, "src": src, "args": args}


def test_sweep_table_has_every_entry_and_the_dense_baseline(swept):
    results = json.loads((swept["tmp"] / "sweep" / "results.json").read_text())
    entries = [r["entry"] for r in results["rows"]]
    assert entries == ["dense", "reverse-order-none", "reverse-order-partial", "block-influence-none",
                       "block-influence-partial"]
    assert results["pareto"] and set(results["pareto"]) <= set(entries)
    md = (swept["tmp"] / "sweep" / "results.md").read_text()
    assert all(f"| {e} |" in md for e in entries)
    pruned = [r for r in results["rows"] if r["entry"] != "dense"]
    assert all(r["layers"] == 4 for r in pruned)


def test_sweep_entries_agree_with_running_the_recipe_alone(swept, tmp_path, monkeypatch):
    """Same recipe through `push --no-push` with fresh caches: the same numbers as the sweep's row."""
    monkeypatch.setenv("HFPRUNE_CACHE", str(tmp_path / "fresh-cache"))
    from hfprune.evaluation.harness import DATA_DIR

    assert main(["push", str(swept["src"]), "--metric", "block-influence", "--remove", "1",
                 "--data", str(DATA_DIR / "demo_text.jsonl"), "--recover", "partial",
                 "--dataset", str(DATA_DIR / "demo_instructions.jsonl"), "--recipe", str(swept["tmp"] / "recipe.yaml"),
                 "--work-dir", str(tmp_path / "alone"), "--no-push", "--no-progress", *TASKS]) == 0
    assert (tmp_path / "fresh-cache" / "eval").is_dir()  # nothing came from the sweep's caches
    alone = json.loads((tmp_path / "alone" / "eval.json").read_text())
    rows = {r["entry"]: r for r in json.loads((swept["tmp"] / "sweep" / "results.json").read_text())["rows"]}
    assert rows["block-influence-partial"]["tasks"] == alone["recovered"]["tasks"]
    assert rows["dense"]["tasks"] == alone["dense"]["tasks"]
    assert json.loads((tmp_path / "alone" / "plan.json").read_text())["drop_layers"] == \
        rows["block-influence-partial"]["removed"]["drop_layers"]


def test_resume_reruns_nothing_and_push_from_sweep_carries_the_table(swept, capsys):
    args = swept["args"]
    args = [a for a in args if a != "--no-progress"] + ["--resume", "--no-progress"]
    capsys.readouterr()
    assert main(args) == 0
    assert "[prune] ..." not in capsys.readouterr().out  # every stage was done earlier
    sweep = swept["tmp"] / "sweep"
    assert main(["push", "--from-sweep", str(sweep), "--entry", "reverse-order-partial", "--no-push"]) == 0
    card = ModelCard.load(sweep / "reverse-order-partial" / "final" / "README.md")
    assert "How this recipe was chosen" in card.text and "| block-influence-none |" in card.text


def test_pareto_front():
    rows = [{"entry": "dense", "parameters": 10, "quality": 0.9}, {"entry": "a", "parameters": 8, "quality": 0.8},
            {"entry": "b", "parameters": 8, "quality": 0.7}, {"entry": "c", "parameters": 6, "quality": 0.5},
            {"entry": "d", "parameters": 9, "quality": 0.6}]
    assert pareto_front(rows) == ["dense", "a", "c"]


def test_bad_sweeps_are_one_line(swept, tmp_path, capsys):
    src = str(swept["src"])
    cases = [
        (["--metrics", "", "--remove", "1"], "--metrics is empty"),
        (["--metrics", "reverse-order,nope", "--remove", "1"], "unknown metric 'nope'"),
        (["--metrics", "reverse-order", "--remove", "5"], "has 5 layers"),
        (["--metrics", "reverse-order", "--remove", "1", "--recover", "none,magic"], "unknown method 'magic'"),
    ]
    for extra, needle in cases:
        code = main(["sweep", src, *extra, "--work-dir", str(tmp_path / "s")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], err
        assert not (tmp_path / "s").exists()
    other = swept["tmp"] / "other"
    import shutil

    shutil.copytree(swept["src"], other)
    code = main(["sweep", str(other), "--metrics", "reverse-order", "--remove", "1", "--resume",
                 "--work-dir", str(swept["tmp"] / "sweep"), *TASKS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a sweep of" in err[0], err
    code = main(["push", "--from-sweep", str(swept["tmp"] / "sweep"), "--entry", "nope-none", "--no-push"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "not in the sweep" in err[0], err
