"""Recipes compared at equal size: --target-params makes every metric remove what the target needs (layers for
layer metrics, a block for angular, sub-blocks for finercut), a sweep runs replacement as one more axis, and its
results show the Pareto front as a picture."""

import json
import xml.etree.ElementTree as ET

import pytest

from hfprune.cli import main

TASKS = ["--tasks", "hfprune_demo_mc", "--limit", "4", "--speed-rounds", "1", "--latency-tokens", "2"]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    from hfprune.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("sz") / "src", "llama", num_layers=6, tokenizer=True)


@pytest.fixture(scope="module")
def calib():
    from hfprune.evaluation.harness import DATA_DIR

    return str(DATA_DIR / "demo_text.jsonl")


def _sizes(src):
    from hfprune.disk.checkpoint import Checkpoint
    from hfprune.sizing import sizes

    return sizes(Checkpoint.open(src))


@pytest.mark.parametrize("metric", ["reverse-order", "block-influence", "angular", "finercut"])
def test_every_metric_meets_the_parameter_target_within_one_block(metric, src, calib, tmp_path):
    from hfprune.scoring.score import score
    from hfprune.settings import ScoreOptions

    s = _sizes(src)
    target = 0.8
    need = s.total - round(target * s.total)
    plan = score(src, ScoreOptions(metric=metric, target_params=target, data=calib, samples=4, seq_len=16),
                 cache_dir=None).plan
    removed = s.removed(plan.drop_layers, plan.skip_attention, plan.skip_mlp)
    assert removed >= need  # the pruned model is within the target
    if metric == "finercut":
        smallest_block = min(min(s.attention), min(s.mlp))
        last = max(s.attention + s.mlp)
        assert removed - need < last and smallest_block > 0  # at most one sub-block past it
    else:
        assert removed - need < max(s.layer)  # at most one layer past it


def test_a_count_target_and_impossible_targets(src, calib):
    from hfprune.errors import PlanError
    from hfprune.scoring.score import score
    from hfprune.settings import ScoreOptions

    s = _sizes(src)
    plan = score(src, ScoreOptions(metric="reverse-order", target_params=s.total - s.layer[0]), cache_dir=None).plan
    assert plan.drop_layers == (5,)
    with pytest.raises(PlanError, match="nothing to remove"):
        score(src, ScoreOptions(metric="reverse-order", target_params=s.total * 2), cache_dir=None)
    with pytest.raises(PlanError, match="frees"):
        score(src, ScoreOptions(metric="reverse-order", target_params=0.01), cache_dir=None)
    with pytest.raises(ValueError, match="one of them"):
        ScoreOptions(metric="reverse-order", remove=2, target_params=0.8)


def test_sweep_at_a_size_target_with_a_replacement_axis_and_a_pareto_picture(src, calib, tmp_path):
    work = tmp_path / "sweep"
    assert main(["sweep", str(src), "--target-params", "0.8", "--metrics", "reverse-order,block-influence",
                 "--replace", "none,linear", "--data", calib, "--replace-samples", "4", "--replace-seq-len", "16",
                 "--work-dir", str(work), "--no-progress", *TASKS]) == 0
    results = json.loads((work / "results.json").read_text())
    entries = [r["entry"] for r in results["rows"]]
    assert entries == ["dense", "reverse-order-none", "reverse-order-linear-none", "block-influence-none",
                       "block-influence-linear-none"]
    assert results["target_params"] == 0.8 and results["remove"] is None
    sizes = {r["entry"]: r["parameters"] for r in results["rows"]}
    assert sizes["reverse-order-none"] == sizes["reverse-order-linear-none"]  # a replacement adds nothing
    # replaced entries are their own models: never the plain entry's cached evaluation
    replaced = json.loads((work / "reverse-order-linear-none" / "eval.json").read_text())
    assert replaced["pruned"]["cached"] is False
    record = json.loads((work / "reverse-order-linear-none" / "pruned" / "hfprune.json").read_text())
    assert record["replacement"]["blocks"]
    svg = (work / "pareto.svg").read_text()
    root = ET.fromstring(svg)  # well-formed
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert all(e in labels for e in entries)
    assert "![Quality against size" in (work / "results.md").read_text()


def test_push_from_a_sweep_ships_the_pareto_picture_and_the_replacement_in_the_card(src, calib, tmp_path):
    from huggingface_hub import ModelCard

    work = tmp_path / "sweep"
    assert main(["sweep", str(src), "--remove", "2", "--metrics", "reverse-order", "--replace", "linear",
                 "--data", calib, "--replace-samples", "4", "--replace-seq-len", "16", "--work-dir", str(work),
                 "--no-progress", *TASKS]) == 0
    assert main(["push", "--from-sweep", str(work), "--entry", "reverse-order-linear-none", "--no-push",
                 "--no-progress"]) == 0
    final = work / "reverse-order-linear-none" / "final"
    assert (final / "pareto.svg").is_file()
    card = ModelCard.load(final / "README.md")
    assert "(pareto.svg)" in card.text and "Training-free replacement" in card.text
    assert "2 of 6 decoder layers removed and replaced by linear maps" in card.text
    assert "arXiv:2505.02819" in card.text
    assert str(tmp_path) not in card.text  # the calibration file by name, never its local path


def test_a_size_alone_gets_the_recipe_measured_best(src, calib, tmp_path, capsys):
    """push SOURCE --target-params T: Block Influence with the linear map (what bench/RESULTS.md measured best at
    equal size), said on stderr and recorded in the recipe; WikiText-2 when no --data is given."""
    import yaml

    from hfprune.settings import PruneSection

    assert main(["push", str(src), "--target-params", "0.8", "--data", calib, "--samples", "4", "--seq-len", "16",
                 "--replace-samples", "4", "--replace-seq-len", "16", "--no-push", "--work-dir", str(tmp_path / "w"),
                 "--no-progress", *TASKS]) == 0
    assert "block-influence with --replace linear" in capsys.readouterr().err
    recipe = yaml.safe_load((tmp_path / "w" / "recipe.yaml").read_text())
    assert recipe["prune"]["metric"] == "block-influence" and recipe["prune"]["replace"] == "linear"
    record = json.loads((tmp_path / "w" / "pruned" / "hfprune.json").read_text())
    assert record["replacement"]["blocks"]
    assert PruneSection(target_params=0.8).data == "wikitext:wikitext-2-raw-v1"
    # --replace none keeps plain Block Influence
    assert main(["push", str(src), "--target-params", "0.8", "--data", calib, "--samples", "4", "--seq-len", "16",
                 "--replace", "none", "--no-push", "--work-dir", str(tmp_path / "w2"), "--no-progress", *TASKS]) == 0
    assert "block-influence on" in capsys.readouterr().err
    # with healing: reverse-order (what healed best), which reads no calibration data
    assert main(["push", str(src), "--target-params", "0.8", "--recover", "partial", "--dataset", "x.jsonl",
                 "--no-push", "--dry-run", "--work-dir", str(tmp_path / "w3"), *TASKS]) == 0
    out = capsys.readouterr()
    assert "reverse-order, healed by partial" in out.err and "chosen by reverse-order" in out.out
    assert "wikitext" not in out.out
    assert "replacement" not in json.loads((tmp_path / "w2" / "pruned" / "hfprune.json").read_text())
