"""Evaluation at the machine's speed: the bounded lm-eval wrapper scores exactly as lm-eval does, bf16 picks
float32's answers, the dtype follows the hardware and keys the cache, and speed is a ratio measured in one run."""

import json
import tempfile
from pathlib import Path

import pytest

TASKS = ["hfprune_demo_mc", "hfprune_demo_ppl"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from hfprune.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("eval") / "m", "llama", num_layers=3, tokenizer=True)


def _run(lm, manager):
    import lm_eval

    return lm_eval.simple_evaluate(model=lm, tasks=TASKS, task_manager=manager, log_samples=True,
                                   verbosity="ERROR")


def _loglikelihoods(out) -> list[float]:
    return [r[0][0] if isinstance(r[0], (list, tuple)) else r[0]
            for task in TASKS for doc in out["samples"][task] for r in doc["resps"]]


def test_bounded_lm_scores_every_request_as_lm_eval_does(model_dir):
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from hfprune.evaluation.bounded_lm import BoundedHFLM
    from hfprune.evaluation.harness import bundled_tasks_dir, load_for_eval

    manager = TaskManager(include_path=[str(bundled_tasks_dir(Path(tempfile.mkdtemp())))], include_defaults=False)
    model, tok = load_for_eval(model_dir, dtype="float32")
    plain = _run(HFLM(pretrained=model, tokenizer=tok, batch_size=3), manager)
    # a budget of a few rows: many batches of different sizes, logits trimmed to the scored positions
    bounded_lm = BoundedHFLM(pretrained=model, tokenizer=tok, batch_memory_bytes=40_000)
    bounded = _run(bounded_lm, manager)
    assert _loglikelihoods(bounded) == pytest.approx(_loglikelihoods(plain), rel=1e-5, abs=1e-5)
    for task in TASKS:
        ours = {k: v for k, v in bounded["results"][task].items() if isinstance(v, float)}
        theirs = {k: v for k, v in plain["results"][task].items() if isinstance(v, float)}
        assert ours == pytest.approx(theirs, rel=1e-6)
    calls = bounded_lm.calls
    assert calls["trimmed"] > 0 and calls["positions_computed"] < calls["positions_in_batches"]


def test_batches_stay_within_the_memory_budget(model_dir):
    from hfprune.evaluation.bounded_lm import BoundedHFLM
    from hfprune.evaluation.harness import load_for_eval

    model, tok = load_for_eval(model_dir, dtype="float32")
    lm = BoundedHFLM(pretrained=model, tokenizer=tok, batch_memory_bytes=200_000, max_batch_size=64)
    requests = [(("", ""), list(range(1, n)), [7]) for n in range(60, 10, -1)]  # longest first, as lm-eval sorts
    pos = 0
    while pos < len(requests):
        rows = lm._rows_fitting(requests, pos)
        batch = requests[pos:pos + rows]
        length = len(lm._input(batch[0]))
        kept = length - min(len(lm._input(r)) - len(r[2]) for r in batch)
        assert rows == 1 or rows * lm._row_bytes(length, kept) <= 200_000
        pos += rows
    huge = BoundedHFLM(pretrained=model, tokenizer=tok, batch_memory_bytes=1 << 40, max_batch_size=5)
    assert huge._rows_fitting(requests, 0) == 5  # the cap holds whatever the budget


def _choices(samples: dict, task: str) -> list[list[float]]:
    return [[r[0][0] for r in d["resps"]] for d in sorted(samples[task], key=lambda d: d["doc_id"])]


def test_bfloat16_picks_the_float32_answers(model_dir):
    from hfprune.evaluation.harness import evaluate_model

    kwargs = dict(limit=None, log_samples=True)
    f32 = evaluate_model(model_dir, ["hfprune_demo_mc"], dtype="float32", **kwargs)
    bf16 = evaluate_model(model_dir, ["hfprune_demo_mc"], dtype="bfloat16", **kwargs)
    assert f32["settings"]["dtype"] == "float32" and bf16["settings"]["dtype"] == "bfloat16"
    a, b = _choices(f32["samples"], "hfprune_demo_mc"), _choices(bf16["samples"], "hfprune_demo_mc")
    decided = 0
    for lls32, lls16 in zip(a, b):
        ranked = sorted(lls32, reverse=True)
        if ranked[0] - ranked[1] > 0.05:  # a float32 win wider than bf16's rounding of the log-likelihoods
            decided += 1
            assert lls16.index(max(lls16)) == lls32.index(max(lls32))
    assert decided >= len(a) // 2


def test_auto_dtype_follows_the_cpu(monkeypatch):
    import torch

    from hfprune import hardware

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    caps = {"architecture": "x86_64", "amx_bf16": False, "avx512_bf16": False}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    assert hardware.resolve_eval_dtype("auto")[0] == "float32"
    caps["avx512_bf16"] = True
    assert hardware.resolve_eval_dtype("auto")[0] == "bfloat16"
    caps.update(avx512_bf16=False, amx_bf16=True)
    assert hardware.resolve_eval_dtype("auto")[0] == "bfloat16"
    assert hardware.resolve_eval_dtype("float32") == ("float32", "asked for")
    with pytest.raises(ValueError, match="unknown evaluation dtype"):
        hardware.resolve_eval_dtype("float13")


def test_a_cached_result_in_another_dtype_is_not_reused(model_dir, tmp_path):
    from hfprune.evaluation.harness import cached_evaluation

    identity = {"model": "tiny"}
    first = cached_evaluation(identity, model_dir, ["hfprune_demo_mc"], tmp_path, limit=4, dtype="float32")
    again = cached_evaluation(identity, model_dir, ["hfprune_demo_mc"], tmp_path, limit=4, dtype="float32")
    other = cached_evaluation(identity, model_dir, ["hfprune_demo_mc"], tmp_path, limit=4, dtype="bfloat16")
    assert not first["cached"] and again["cached"] and not other["cached"]
    assert other["settings"]["dtype"] == "bfloat16"


def test_decode_speed_is_a_ratio_measured_interleaved(model_dir, tmp_path):
    from hfprune.api import prune
    from hfprune.evaluation.speed import decode_speed

    prune(model_dir, tmp_path / "p", drop_layers=[1])
    out = decode_speed({"dense": model_dir, "pruned": tmp_path / "p"}, dtype="float32", new_tokens=3, rounds=2)
    assert out["relative"]["dense"] == 1.0 and out["relative"]["pruned"] > 0
    assert out["method"]["schedule"] == "interleaved in one process"
    assert out["method"]["rounds"] == 2 and out["method"]["new_tokens"] == 3
    assert json.loads(json.dumps(out)) == out


@pytest.mark.parametrize("progress", [False, True])
def test_no_progress_silences_lm_evals_own_bars(model_dir, capfd, progress):
    from hfprune.evaluation.harness import evaluate_model

    capfd.readouterr()
    evaluate_model(model_dir, TASKS, limit=2, dtype="float32", progress=progress)
    out, err = capfd.readouterr()
    chatter = [line for line in (out + err).replace("\r", "\n").splitlines()
               if "%|" in line or "batch size" in line.lower()]
    assert bool(chatter) == progress, chatter[:3]
