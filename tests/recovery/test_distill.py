"""Healing by distillation: the KD objective, stored top-k teacher logits, self-data answers, resume."""

import json

import pytest
import torch

from hfprune.api import prune
from hfprune.cli import main
from hfprune.disk.checkpoint import read_config
from hfprune.recovery.distill import TopkStore, kd_loss_sum, teacher_topk_file
from hfprune.recovery.train import recover
from hfprune.tiny import build_tiny_checkpoint

from ..helpers import interrupt_after

from .test_train import ROWS, fast, tensors


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(dense source, its pruned copy) with one tokenizer."""
    root = tmp_path_factory.mktemp("kd")
    src = build_tiny_checkpoint(root / "src", "llama", num_layers=6)
    prune(src, root / "pruned", drop_last=2)
    return src, root / "pruned"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("kdd") / "alpaca.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return path


def vocab_size(path):
    return read_config(path)["vocab_size"]


def test_kd_loss_is_zero_for_identical_distributions_and_positive_otherwise():
    torch.manual_seed(0)
    z = torch.randn(7, 50)
    assert kd_loss_sum(z, z).abs() < 1e-6
    assert kd_loss_sum(z, z, temperature=2.0).abs() < 1e-6
    assert kd_loss_sum(torch.randn(7, 50), z) > 0.1


def test_top_k_that_covers_the_distribution_gives_the_full_logit_loss():
    torch.manual_seed(0)
    student, teacher = torch.randn(9, 200), torch.randn(9, 200)
    full = kd_loss_sum(student, teacher)
    top = teacher.topk(200, dim=-1)  # k = vocab: exact
    assert torch.allclose(kd_loss_sum(student, (top.indices, top.values)), full, rtol=1e-5)
    peaked = teacher.clone()
    peaked[:, :5] += 30.0  # five tokens hold all but ~1e-10 of the mass: k = 8 covers it
    top = peaked.topk(8, dim=-1)
    assert torch.allclose(kd_loss_sum(student, (top.indices, top.values)), kd_loss_sum(student, peaked), rtol=1e-4)


@pytest.mark.parametrize("teacher_logits", ["live", "cached"])
def test_kd_loss_is_zero_when_the_student_is_the_teacher(models, data, tmp_path, teacher_logits):
    _, pruned = models
    opts = fast(dataset=str(data), method="partial-kd", teacher=str(pruned), max_steps=1,
                teacher_logits=teacher_logits, teacher_top_k=vocab_size(pruned))
    result = recover(pruned, tmp_path / "out", opts, cache_dir=tmp_path / "cache", echo=lambda *_: None)
    assert abs(result.losses[0]) < 1e-5, result.losses
    assert result.run.teacher == f"local folder {pruned.name}"


def test_live_and_stored_teacher_give_the_same_training(models, data, tmp_path):
    src, pruned = models
    common = dict(dataset=str(data), method="partial-kd", teacher=str(src), max_steps=4,
                  teacher_top_k=vocab_size(src))
    live = recover(pruned, tmp_path / "live", fast(**common, teacher_logits="live"), cache_dir=tmp_path / "c")
    cached = recover(pruned, tmp_path / "cached", fast(**common, teacher_logits="cached"), cache_dir=tmp_path / "c")
    assert live.losses[0] > 0.01
    assert all(abs(a - b) < 1e-4 * max(1.0, abs(a)) for a, b in zip(live.losses, cached.losses))
    a, b = tensors(tmp_path / "live"), tensors(tmp_path / "cached")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # the stored file is reused by the next run (a sweep's other entries) and is read row by row
    files = list((tmp_path / "c").glob("teacher-topk-*.safetensors"))
    assert len(files) == 1
    store = TopkStore(files[0])
    idx, val = store.gather([0, 1])
    assert idx.shape == val.shape and idx.shape[1] == vocab_size(src)


def test_kd_trains_only_the_partial_parameters_and_moves_towards_the_teacher(models, data, tmp_path):
    src, pruned = models
    opts = fast(dataset=str(data), method="partial-kd", teacher=str(src), max_steps=12)
    result = recover(pruned, tmp_path / "out", opts, cache_dir=tmp_path / "c")
    before, after = tensors(pruned), tensors(tmp_path / "out")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("model.layers.1.", "model.layers.2.", "model.layers.3.", "model.norm",
                                         "lm_head")) for k in changed), changed
    assert not any(k.startswith(("model.layers.0.", "model.embed_tokens")) for k in changed)
    assert result.losses[-1] < result.losses[0]
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())
    assert record["recovery"]["teacher"] == f"local folder {src.name}"
    assert "KL(teacher || student)" in record["recovery_run"]["objective"]
    assert str(tmp_path) not in json.dumps(record)


def test_gradient_accumulation_equals_one_large_batch(models, data, tmp_path):
    src, pruned = models
    common = dict(dataset=str(data), method="partial-kd", teacher=str(src), max_steps=3, batch_size=8,
                  kd_alpha=0.5)
    recover(pruned, tmp_path / "ga", fast(**common, micro_batch_size=2), cache_dir=tmp_path / "c")
    recover(pruned, tmp_path / "one", fast(**common, micro_batch_size=8), cache_dir=tmp_path / "c")
    a, b = tensors(tmp_path / "ga"), tensors(tmp_path / "one")
    assert all(torch.allclose(a[k], b[k], atol=2e-5) for k in a)


def test_kd_resume_gives_the_weights_of_an_uninterrupted_run(models, data, tmp_path):
    src, pruned = models
    opts = fast(dataset=str(data), method="partial-kd", teacher=str(src), max_steps=6, save_steps=2,
                teacher_logits="cached", teacher_top_k=16)
    with pytest.raises(KeyboardInterrupt):
        recover(pruned, tmp_path / "out", opts, cache_dir=tmp_path / "c", callbacks=interrupt_after(3))
    result = recover(pruned, tmp_path / "out", opts, resume=True, cache_dir=tmp_path / "c")
    assert result.resumed_from == "checkpoint-2"
    recover(pruned, tmp_path / "ref", opts, cache_dir=tmp_path / "c")
    a, b = tensors(tmp_path / "out"), tensors(tmp_path / "ref")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_lora_kd_and_a_tied_skip_map_student(tmp_path, data):
    src = build_tiny_checkpoint(tmp_path / "src", "llama-tied", num_layers=5)
    prune(src, tmp_path / "pruned", drop_layers="1", skip_mlp="3")
    result = recover(tmp_path / "pruned", tmp_path / "out",
                     fast(dataset=str(data), method="lora-kd", teacher=str(src), max_steps=3),
                     cache_dir=tmp_path / "c")
    assert result.run.teacher == "local folder src"
    result = recover(tmp_path / "pruned", tmp_path / "out2",
                     fast(dataset=str(data), method="partial-kd", teacher=str(src), max_steps=3),
                     cache_dir=tmp_path / "c")
    assert result.tied_embeddings == "frozen"
    before, after = tensors(tmp_path / "pruned"), tensors(tmp_path / "out2")
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])


def test_self_data_answers_are_generated_once_and_replace_the_dataset(models, data, tmp_path):
    src, pruned = models
    opts = fast(dataset=str(data), method="partial", answers="teacher", teacher=str(src), max_steps=2,
                answer_max_tokens=6)
    lines = []
    recover(pruned, tmp_path / "a", opts, cache_dir=tmp_path / "c", echo=lines.append)
    answers = list((tmp_path / "c").glob("teacher-answers-*.jsonl"))
    assert len(answers) == 1
    rows = [json.loads(line) for line in answers[0].read_text().splitlines()]
    assert len(rows) == len(ROWS) and all(r["output"] != ROWS[i]["output"] for i, r in enumerate(rows))
    result = recover(pruned, tmp_path / "b", opts, cache_dir=tmp_path / "c", echo=lines.append)
    assert any("teacher answers: reused" in line for line in lines)
    assert result.run.answers == "teacher" and result.run.objective == "SFT"


def test_topk_file_is_keyed_by_k(models, tmp_path):
    src, _ = models
    from hfprune.recovery.distill import Teacher

    rows = [{"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4]}]
    t = Teacher(src, "t", {"x": 1})
    a = teacher_topk_file(t, rows, 4, tmp_path, dtype=torch.float32, batch_size=1, echo=lambda *_: None)
    b = teacher_topk_file(t, rows, 8, tmp_path, dtype=torch.float32, batch_size=1, echo=lambda *_: None)
    assert a != b and TopkStore(a).offsets == [0, 2] and TopkStore(b).gather([0])[0].shape == (2, 8)


@pytest.mark.parametrize("args,needle", [
    ([], "does not record a Hub source"),
    (["--teacher", "{other}"], "vocabulary"),
    (["--kd-alpha", "1.5"], "--kd-alpha"),
    (["--teacher-top-k", "0"], "--teacher-top-k 0: must be at least 1"),
])
def test_bad_distillation_input(args, needle, models, data, tmp_path, capsys):
    _, pruned = models
    other = build_tiny_checkpoint(tmp_path / "other", "llama", num_layers=2, vocab_size=77, tokenizer=False)
    args = [a.format(other=other) for a in args]
    code = main(["recover", str(pruned), "-o", str(tmp_path / "out"), "--method", "partial-kd", "--dataset",
                 str(data), "--no-progress", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "out").exists()


def test_pipeline_distils_from_its_source_and_the_card_says_so(tmp_path):
    from huggingface_hub import ModelCard

    from hfprune.evaluation.harness import DATA_DIR
    from hfprune.pipeline import Pipeline
    from hfprune.settings import Recipe

    src = build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=4)
    recipe = Recipe.parse({
        "source": str(src), "prune": {"drop_last": 1},
        "recover": {"method": "partial-kd", "dataset": str(DATA_DIR / "demo_instructions.jsonl"), "last_k": 1,
                    "lr": 1e-2, "batch_size": 4, "micro_batch_size": 4, "max_steps": 2, "answers": "teacher",
                    "answer_max_tokens": 4, "teacher_logits": "cached"},
        "eval": {"tasks": ["hfprune_demo_mc"], "limit": 4, "latency_tokens": 4}, "push": {"enabled": False}})
    Pipeline(recipe, tmp_path / "w", eval_cache=tmp_path / "ec", score_cache=tmp_path / "sc",
             echo=lambda *_: None).run()
    final = tmp_path / "w" / "final"
    card = ModelCard.load(final / "README.md")
    assert "distilled from the dense model local folder src" in card.text
    assert "self-data distillation" in card.text and "top-64 logits stored" in card.text
    for name in ("README.md", "recipe.yaml", "hfprune.json"):
        assert str(tmp_path) not in (final / name).read_text(), name


def test_method_and_objective_are_two_settings_and_the_kd_spelling_still_works():
    from hfprune.settings import RecoverOptions, RecoverSection

    a = RecoverOptions(method="partial-kd")
    b = RecoverOptions(method="partial", objective="kd")
    assert (a.method, a.objective) == (b.method, b.objective) == ("partial", "kd")
    assert a.label == b.label == "partial-kd" and RecoverOptions().label == "partial"
    assert RecoverSection(method="lora-kd").options().label == "lora-kd"
    assert RecoverSection().label == "none"
    assert RecoverOptions.model_validate(a.model_dump()) == a  # the dumped recipe reads back the same
