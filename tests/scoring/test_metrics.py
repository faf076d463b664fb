"""Scoring on tiny models where the truth is planted: identity layers/sub-blocks and shrunken weights."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from hfprune.cli import main
from hfprune.plan import Plan
from hfprune.scoring.score import score
from hfprune.settings import ScoreOptions
from hfprune.tiny import DEMO_TEXT, build_tiny_checkpoint


def planted(folder, model_type="llama", layers=8, identity=(), attn_identity=(), mlp_identity=(), shrink=(),
            train_steps=0):
    """A tiny checkpoint whose layers/sub-blocks in the given sets compute the identity (or have tiny weights).

    With train_steps, the rest of the network is first trained on the demo text (identity blocks held at zero), so
    that removing any other layer hurts, as in a real model.
    """
    build_tiny_checkpoint(folder, model_type, num_layers=layers)
    model = AutoModelForCausalLM.from_pretrained(folder)
    zeroed = [layer.self_attn.o_proj.weight for i, layer in enumerate(model.model.layers) if i in identity or i in attn_identity]
    zeroed += [layer.mlp.down_proj.weight for i, layer in enumerate(model.model.layers) if i in identity or i in mlp_identity]
    if train_steps:
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(folder)((DEMO_TEXT + " ") * 4, return_tensors="pt").input_ids[0]
        windows = ids[: (len(ids) // 32) * 32].view(-1, 32)
        torch.manual_seed(0)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / train_steps)
        model.train()
        for _ in range(train_steps):
            with torch.no_grad():
                for w in zeroed:
                    w.zero_()
            batch = windows[torch.randint(0, len(windows), (16,))]
            model(input_ids=batch, labels=batch).loss.backward()
            for w in zeroed:
                w.grad = None
            opt.step()
            sched.step()
            opt.zero_grad()
        model.eval()
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            if i in identity or i in attn_identity:
                layer.self_attn.o_proj.weight.zero_()
            if i in identity or i in mlp_identity:
                layer.mlp.down_proj.weight.zero_()
            if i in shrink:
                for p in layer.parameters():
                    if p.ndim >= 2:
                        p.mul_(0.1)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory):
    return planted(tmp_path_factory.mktemp("ident") / "m", identity=(3, 4), train_steps=100)


def run(source, tmp_path, calib, naive=False, **kw):
    opts = ScoreOptions(data=str(calib) if calib else None, samples=4, seq_len=32, batch_size=2, **kw)
    return score(source, opts, plan_path=tmp_path / "plan.json", scores_path=tmp_path / "scores.json",
                 cache_dir=None, naive=naive)


@pytest.mark.parametrize("metric", ["block-influence", "taylor", "angular"])
def test_identity_layers_are_selected(metric, identity_model, calib_text, tmp_path):
    result = run(identity_model, tmp_path, calib_text, metric=metric, remove=2)
    assert result.plan.drop_layers == (3, 4)


def test_ppl_is_the_perplexity_of_each_really_pruned_checkpoint(identity_model, calib_text, tmp_path):
    """ppl's truth, checked against real pruned checkpoints: identity layers leave the dense perplexity exactly,
    and the layers chosen are those whose pruned checkpoints have the lowest perplexity. (In these tiny trained
    models removing the last layer *lowers* perplexity, so identity layers are not necessarily chosen.)"""
    from transformers import AutoTokenizer

    from hfprune.api import prune
    from hfprune.scoring.calibration import load_calibration

    result = run(identity_model, tmp_path, calib_text, metric="ppl", remove=2)
    windows = load_calibration(str(calib_text), AutoTokenizer.from_pretrained(identity_model), samples=4, seq_len=32,
                               seed=0).input_ids

    def ppl(folder):
        model = AutoModelForCausalLM.from_pretrained(folder)
        with torch.no_grad():
            return float(torch.exp(model(input_ids=windows, labels=windows).loss))

    dense = ppl(identity_model)
    truth = []
    for i in range(8):
        prune(identity_model, tmp_path / f"p{i}", drop_layers=[i])
        truth.append(ppl(tmp_path / f"p{i}"))
    assert result.scores["scores"] == pytest.approx(truth, rel=1e-5)
    assert result.scores["scores"][3] == pytest.approx(dense, rel=1e-6) == result.scores["scores"][4]
    assert list(result.plan.drop_layers) == sorted(sorted(range(8), key=lambda i: truth[i])[:2])


def test_iterative_block_influence_finds_the_same_identity_layers(identity_model, calib_text, tmp_path):
    result = run(identity_model, tmp_path, calib_text, metric="block-influence", remove=2, iterative_step=1)
    assert result.plan.drop_layers == (3, 4)
    assert len(result.scores["rounds"]) == 2 and result.scores["rounds"][1]["scores"][result.scores["rounds"][0]["removed"][0]] is None


def test_finercut_removes_identity_sub_blocks_first(tmp_path_factory, calib_text, tmp_path):
    src = planted(tmp_path_factory.mktemp("fc") / "m", attn_identity=(5,), mlp_identity=(6,))
    result = run(src, tmp_path, calib_text, metric="finercut", remove=2)
    assert result.plan.skip_attention == (5,) and result.plan.skip_mlp == (6,)
    steps = result.scores["steps"]
    assert steps[0]["distance"] == pytest.approx(0.0, abs=1e-7) and steps[1]["distance"] == pytest.approx(0.0, abs=1e-7)
    # only the last 60% of layers are candidates when at most 40% of sub-blocks go
    assert {c["layer"] for c in steps[0]["candidates"]} == set(range(3, 8))


def test_finercut_identity_attention_chosen_first(tmp_path_factory, calib_text, tmp_path):
    src = planted(tmp_path_factory.mktemp("fca") / "m", attn_identity=(4, 7))
    result = run(src, tmp_path, calib_text, metric="finercut", remove=2)
    assert result.plan.skip_attention == (4, 7) and not result.plan.skip_mlp


@pytest.mark.parametrize("metric", ["magnitude-l1", "magnitude-l2"])
def test_magnitude_picks_shrunken_layer(metric, tmp_path_factory, tmp_path):
    src = planted(tmp_path_factory.mktemp("mag") / "m", shrink=(2,))
    result = run(src, tmp_path, None, metric=metric, remove=1)
    assert result.plan.drop_layers == (2,)


def test_reverse_order_and_random_are_deterministic(identity_model, tmp_path):
    assert run(identity_model, tmp_path, None, metric="reverse-order", remove=3).plan.drop_layers == (5, 6, 7)
    a = run(identity_model, tmp_path, None, metric="random", remove=3, seed=7).plan
    b = run(identity_model, tmp_path, None, metric="random", remove=3, seed=7).plan
    c = run(identity_model, tmp_path, None, metric="random", remove=3, seed=8).plan
    assert a == b and len(a.drop_layers) == 3 and a != c


@pytest.mark.parametrize("metric,remove,arch", [("ppl", 2, "qwen2"), ("finercut", 3, "qwen2"),
                                               ("finercut", 3, "cohere"), ("finercut", 3, "gemma2")])
def test_cached_replay_chooses_exactly_what_naive_recomputation_chooses(metric, remove, arch, tiny_checkpoints,
                                                                        calib_text, tmp_path):
    src = build_tiny_checkpoint(tmp_path / "m", arch, num_layers=6)
    cached = run(src, tmp_path, calib_text, metric=metric, remove=remove).scores
    naive = run(src, tmp_path, calib_text, metric=metric, remove=remove, naive=True).scores
    assert cached["plan"] == naive["plan"]
    if metric == "ppl":
        assert cached["scores"] == pytest.approx(naive["scores"], rel=1e-6)
    else:
        for a, b in zip(cached["steps"], naive["steps"]):
            assert a["removed"] == b["removed"]
            assert [c["distance"] for c in a["candidates"]] == pytest.approx([c["distance"] for c in b["candidates"]],
                                                                             rel=1e-5, abs=1e-9)


def test_scores_and_plan_round_trip_through_prune(identity_model, calib_text, tmp_path):
    code = main(["score", str(identity_model), "--metric", "block-influence", "--remove", "2", "--data", str(calib_text),
                 "--samples", "4", "--seq-len", "32", "-o", str(tmp_path / "plan.json"), "--scores",
                 str(tmp_path / "scores.json"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["metric"] == "block-influence" and scores["data"]["samples"] == 4
    assert scores["data"]["seq_len"] == 32 and len(scores["data"]["sha256"]) == 64
    assert len(scores["scores"]) == 8
    plan = Plan.load(tmp_path / "plan.json")
    assert Plan.from_dict(scores["plan"]) == plan
    assert main(["prune", str(identity_model), "--plan", str(tmp_path / "plan.json"), "-o", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())
    assert Plan.from_dict(record["plan"]) == plan
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_hidden_layers"] == 6


def test_rerun_with_same_inputs_hits_the_cache(identity_model, calib_text, tmp_path):
    opts = ScoreOptions(metric="block-influence", remove=2, data=str(calib_text), samples=4, seq_len=32)
    first = score(identity_model, opts, cache_dir=tmp_path / "cache")
    second = score(identity_model, opts, cache_dir=tmp_path / "cache")
    assert not first.cached and second.cached and first.scores == second.scores


@pytest.mark.parametrize("args,needles", [
    (["--metric", "block-influence", "--remove", "8", "--data", "X"], ["--remove 8", "between 1 and 7"]),
    (["--metric", "nope", "--remove", "1"], ["unknown metric", "block-influence", "finercut"]),
    (["--metric", "taylor", "--remove", "1"], ["needs calibration data", "--data"]),
    (["--metric", "angular", "--remove", "2", "--iterative-step", "1", "--data", "X"], ["--iterative-step"]),
])
def test_bad_score_input(args, needles, identity_model, tmp_path, capsys):
    code = main(["score", str(identity_model), *args, "-o", str(tmp_path / "p.json"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and all(n in err[0] for n in needles), err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("content,needle", [("", "empty"), ("too short", "fewer than one window")])
def test_bad_calibration_data(content, needle, identity_model, tmp_path, capsys):
    (tmp_path / "d.txt").write_text(content)
    code = main(["score", str(identity_model), "--metric", "block-influence", "--remove", "1", "--data",
                 str(tmp_path / "d.txt"), "-o", str(tmp_path / "p.json"), "--no-progress", "--cache-dir",
                 str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_a_skip_map_checkpoint_can_be_scored_again(identity_model, calib_text, tmp_path):
    from hfprune.api import prune

    prune(identity_model, tmp_path / "skip", skip_attention="6")
    result = run(tmp_path / "skip", tmp_path, calib_text, metric="block-influence", remove=2)
    assert result.plan.drop_layers == (3, 4)  # the identity layers are still found through the shipped code


def test_the_metric_registry_is_the_set_of_metrics_a_recipe_can_name():
    """settings validates recipes without importing scoring; the registry and its table must agree."""
    from hfprune.scoring.metrics import METRICS
    from hfprune.settings import METRIC_KINDS

    assert {name: m.kind for name, m in METRICS.items()} == METRIC_KINDS
