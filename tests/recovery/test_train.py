"""Recovery fine-tuning on a tiny pruned model and a small local instruction set."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hfprune.api import prune
from hfprune.cli import main
from hfprune.recovery.instructions import (
    IGNORE_INDEX,
    Example,
    alpaca_prompt,
    load_examples,
    tokenize_example,
)
from hfprune.recovery.train import checkpoints_dir, recover
from hfprune.settings import RecoverOptions
from hfprune.tiny import build_tiny_checkpoint

from ..helpers import interrupt_after

ROWS = [
    {"instruction": "Name the capital of France.", "input": "", "output": "The capital of France is Paris."},
    {"instruction": "Repeat the phrase.", "input": "the quick brown fox", "output": "the quick brown fox"},
    {"instruction": "What does pruning remove?", "input": "", "output": "Pruning removes decoder layers."},
    {"instruction": "Complete the sentence.", "input": "A pruned checkpoint must compute",
     "output": "exactly the network that was intended."},
] * 8


@pytest.fixture(scope="module")
def pruned_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    src = build_tiny_checkpoint(root / "src", "llama", num_layers=6)
    prune(src, root / "pruned", drop_last=2)
    return root / "pruned"


@pytest.fixture(scope="module")
def tied_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("rect")
    src = build_tiny_checkpoint(root / "src", "llama-tied", num_layers=5)
    prune(src, root / "pruned", drop_layers="1")
    return root / "pruned"


@pytest.fixture(scope="module")
def alpaca_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "alpaca.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return path


def fast(**kw):
    base = dict(lr=3e-3, batch_size=8, micro_batch_size=4, warmup_steps=0, max_steps=12, epochs=1, save_steps=1000)
    base.update(kw)
    return RecoverOptions(**base)


def tensors(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_response_only_masking():
    tok = AutoTokenizer.from_pretrained(build_tiny_checkpoint.__module__ and _tok_dir())
    ex = Example("Name the capital of France.", "", "Paris.")
    row = tokenize_example(ex, tok, max_length=512)
    prompt_len = len(tok(alpaca_prompt(ex))["input_ids"])
    assert row["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len
    response = row["input_ids"][prompt_len:]
    assert row["labels"][prompt_len:] == response and response[-1] == tok.eos_token_id
    assert tok.decode(response[:-1]) == "Paris."
    assert "### Input:" not in alpaca_prompt(ex) and "### Input:\nctx" in alpaca_prompt(Example("i", "ctx", "o"))


_TOK = {}


def _tok_dir():
    if "d" not in _TOK:
        import tempfile

        from hfprune.tiny import train_tokenizer

        _TOK["d"] = tempfile.mkdtemp()
        train_tokenizer(_TOK["d"])
    return _TOK["d"]


def test_dolly_rows_use_context_as_input(tmp_path):
    path = tmp_path / "dolly.json"
    path.write_text(json.dumps([{"instruction": "Summarise.", "context": "Long text.", "response": "Short.",
                                 "category": "summarization"}]))
    [ex], skipped = load_examples(str(path))
    assert skipped == 0
    assert ex == Example("Summarise.", "Long text.", "Short.")


def test_partial_trains_only_the_last_layers_and_head(pruned_model, alpaca_file, tmp_path):
    result = recover(pruned_model, tmp_path / "out", fast(dataset=str(alpaca_file), last_k=2))
    assert result.train_layers == [2, 3]
    assert result.losses[-1] < result.losses[0]
    before, after = tensors(pruned_model), tensors(tmp_path / "out")
    assert before.keys() == after.keys()
    trained_prefixes = ("model.layers.2.", "model.layers.3.", "model.norm.", "lm_head.")
    for name, t in before.items():
        if name.startswith(trained_prefixes):
            assert not torch.equal(t, after[name]), f"{name} did not change"
        else:
            assert torch.equal(t, after[name]), f"frozen {name} changed"
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == json.loads(
        (pruned_model / "config.json").read_text())
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())
    assert record["recovery"]["method"] == "partial" and record["plan"]["drop_layers"] == [4, 5]
    assert (tmp_path / "out" / "tokenizer.json").exists()
    assert not checkpoints_dir(tmp_path / "out").exists()


def test_tied_embeddings_frozen_by_default_and_untied_on_request(tied_model, alpaca_file, tmp_path):
    """The default keeps a tied head tied and frozen, so the healed model keeps the pruning's size win."""
    before = tensors(tied_model)
    assert "lm_head.weight" not in before
    result = recover(tied_model, tmp_path / "frozen", fast(dataset=str(alpaca_file), last_k=1))
    assert result.tied_embeddings == "frozen"
    after = tensors(tmp_path / "frozen")
    assert "lm_head.weight" not in after
    assert sum(t.numel() for t in after.values()) == sum(t.numel() for t in before.values())
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert json.loads((tmp_path / "frozen" / "config.json").read_text())["tie_word_embeddings"] is True

    result = recover(tied_model, tmp_path / "untied", fast(dataset=str(alpaca_file), last_k=1,
                                                           tied_embeddings="untie"))
    assert result.tied_embeddings == "untied"
    after = tensors(tmp_path / "untied")
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert not torch.equal(after["lm_head.weight"], before["model.embed_tokens.weight"])
    assert json.loads((tmp_path / "untied" / "config.json").read_text())["tie_word_embeddings"] is False
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "untied")
    assert torch.equal(m.lm_head.weight, after["lm_head.weight"])


def test_defaults_scale_to_the_data_and_record_what_ran(pruned_model, tmp_path):
    """50 rows at the paper's batch 64: warm-up scales to the run instead of outlasting it, the user is warned
    about the batch, and hfprune.json records what actually ran."""
    from hfprune.recovery.train import schedule

    rows = [{"instruction": f"Repeat the number {i}.", "output": f"{i} {i} {i}"} for i in range(50)]
    (tmp_path / "small.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = recover(pruned_model, tmp_path / "out", RecoverOptions(dataset=str(tmp_path / "small.jsonl"),
                                                                    lr=1e-3, epochs=2))
    run = result.run
    assert run.optimizer_steps == 2 and run.warmup_steps == 0  # 10% of 2 steps
    assert run.examples == 50 and run.tokens > 0 and run.prompt == "chat"  # the model has a template
    assert any("larger than the 50 training examples" in w for w in result.warnings)
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())
    assert record["recovery_run"]["optimizer_steps"] == 2 and record["recovery_run"]["first_loss"] is not None
    _, warmup, warnings = schedule(RecoverOptions(warmup_steps=100, batch_size=8, micro_batch_size=8), 80)
    assert warmup == 100 and any("not shorter than the run" in w for w in warnings)
    assert schedule(RecoverOptions(batch_size=64, micro_batch_size=4), 52000)[1] == 100  # the paper's run


def test_lora_is_merged_and_equals_the_adapter_model(pruned_model, alpaca_file, tmp_path, monkeypatch):
    import hfprune.recovery.train as rec

    captured = {}
    original = rec._merge

    def spy(model, *a, **k):
        ids = torch.randint(3, 300, (2, 12))
        with torch.no_grad():
            captured["adapter_logits"] = model(input_ids=ids).logits.clone()
        captured["ids"] = ids
        merged = original(model, *a, **k)
        with torch.no_grad():
            captured["merged_logits"] = merged(input_ids=ids).logits
        return merged

    monkeypatch.setattr(rec, "_merge", spy)
    result = recover(pruned_model, tmp_path / "out", fast(method="lora", dataset=str(alpaca_file), lora_r=4))
    assert result.losses[-1] < result.losses[0]
    assert torch.allclose(captured["adapter_logits"], captured["merged_logits"], atol=1e-5)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")  # no peft needed
    with torch.no_grad():
        saved = model(input_ids=captured["ids"]).logits
    assert torch.allclose(saved, captured["merged_logits"], atol=1e-5)
    assert not any("lora" in k for k in tensors(tmp_path / "out"))


def test_interrupted_run_resumes_from_last_checkpoint(pruned_model, alpaca_file, tmp_path):
    opts = fast(dataset=str(alpaca_file), max_steps=6, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        recover(pruned_model, tmp_path / "out", opts, callbacks=interrupt_after(3))
    assert not (tmp_path / "out").exists()
    assert (checkpoints_dir(tmp_path / "out") / "checkpoint-2").is_dir()
    result = recover(pruned_model, tmp_path / "out", opts, resume=True)
    assert result.resumed_from == "checkpoint-2"
    uninterrupted = recover(pruned_model, tmp_path / "ref", opts)
    a, b = tensors(tmp_path / "out"), tensors(tmp_path / "ref")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert len(result.losses) == 4 and len(uninterrupted.losses) == 6


@pytest.mark.parametrize("args,needles", [
    (["--dataset", "{bad}"], ["needs columns instruction + output", "question"]),
    (["--dataset", "{empty}"], ["is empty"]),
    (["--last-k", "9"], ["--last-k 9", "4 layers"]),
    (["--method", "qlora"], ["qlora needs a CUDA GPU"]),
    (["--resume"], ["no checkpoint"]),
])
def test_bad_recover_input(args, needles, pruned_model, tmp_path, alpaca_file, capsys):
    (tmp_path / "bad.json").write_text(json.dumps([{"question": "q", "answer": "a"}]))
    (tmp_path / "empty.jsonl").write_text("")
    args = [a.format(bad=tmp_path / "bad.json", empty=tmp_path / "empty.jsonl") for a in args]
    if "--dataset" not in args:
        args += ["--dataset", str(alpaca_file)]
    code = main(["recover", str(pruned_model), "-o", str(tmp_path / "out"), *args, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and all(n in err[0] for n in needles), err
    assert not (tmp_path / "out").exists()


def test_frozen_prefix_stores_no_activations_and_gets_no_gradients(pruned_model):
    from hfprune.recovery.train import _setup_partial

    model = AutoModelForCausalLM.from_pretrained(pruned_model)
    _setup_partial(model, [3], "untie", {})
    current = {"layer": "embed"}
    saved_in = []
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_pre_hook(lambda m, a, i=i: current.__setitem__("layer", i))
    model.model.norm.register_forward_pre_hook(lambda m, a: current.__setitem__("layer", "norm"))

    def pack(t):
        saved_in.append(current["layer"])
        return t

    ids = torch.randint(3, 300, (2, 16))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert saved_in and set(saved_in) <= {3, "norm"}, set(saved_in)  # nothing saved for embeddings or layers 0-2
    for name, p in model.named_parameters():
        trained = name.startswith(("model.layers.3.", "model.norm.", "lm_head."))
        assert p.requires_grad == trained and (p.grad is not None) == trained, name


def test_recovering_a_skip_map_checkpoint_keeps_its_shipped_code(tmp_path, alpaca_file):
    src = build_tiny_checkpoint(tmp_path / "src", "qwen2", num_layers=5)
    prune(src, tmp_path / "pruned", skip_attention="0", skip_mlp="3")
    recover(tmp_path / "pruned", tmp_path / "out", fast(dataset=str(alpaca_file), last_k=2, tied_embeddings="untie"))
    assert (tmp_path / "out" / "modeling_hfprune.py").read_bytes() == (tmp_path / "pruned" / "modeling_hfprune.py").read_bytes()
    expected = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert expected["tie_word_embeddings"] is True
    expected["tie_word_embeddings"] = False  # the only change: lm_head was untied to be trained
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == expected
    before, after = tensors(tmp_path / "pruned"), tensors(tmp_path / "out")
    assert after.keys() == before.keys() | {"lm_head.weight"}
    assert torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(before["model.layers.4.mlp.up_proj.weight"], after["model.layers.4.mlp.up_proj.weight"])
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "out", trust_remote_code=True,
                                                       output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        out = model.generate(torch.tensor([[5, 6, 7, 8]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 8)


def test_a_run_that_heals_nothing_is_flagged(pruned_model, alpaca_file, tmp_path):
    """lr 1e-12 (0 itself is refused): the loss cannot go down; the result says so instead of claiming a healed
    model."""
    result = recover(pruned_model, tmp_path / "out", fast(dataset=str(alpaca_file), lr=1e-12, max_steps=4,
                                                          batch_size=4, micro_batch_size=4))
    assert any("did not go down" in w for w in result.warnings), result.warnings
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())
    assert record["recovery_run"]["warnings"] == result.warnings


def test_frozen_prefix_is_replayed_in_later_epochs_with_the_same_result(pruned_model, alpaca_file, tmp_path):
    """Two epochs of partial fine-tuning: the second replays the frozen layers' stored output instead of running
    them, and the trained weights equal those of the plain run (same seed, same order)."""
    opts = dict(dataset=str(alpaca_file), max_steps=-1, epochs=2, last_k=1)
    cached = recover(pruned_model, tmp_path / "cached", fast(**opts))
    plain = recover(pruned_model, tmp_path / "plain", fast(**opts, prefix_cache_gib=0))
    cache = cached.run.frozen_prefix_cache
    assert cache["layers"] == 3 and cache["computed_batches"] == 8 and cache["replayed_batches"] == 8
    assert "off" in plain.run.frozen_prefix_cache
    a, b = tensors(tmp_path / "cached"), tensors(tmp_path / "plain")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert cached.losses == pytest.approx(plain.losses, rel=1e-5)
    one = recover(pruned_model, tmp_path / "one", fast(dataset=str(alpaca_file), max_steps=-1, epochs=1))
    assert "one epoch" in one.run.frozen_prefix_cache["off"]
    # the same replay from a memory-mapped file (runs whose prefix outputs do not fit in memory)
    disk = recover(pruned_model, tmp_path / "disk", fast(**opts, prefix_cache_store="disk"))
    assert disk.run.frozen_prefix_cache["store"] == "memory-mapped file"
    assert disk.run.frozen_prefix_cache["replayed_batches"] == 8
    c = tensors(tmp_path / "disk")
    assert all(torch.equal(a[k], c[k]) for k in a)  # the file holds exactly what memory held
    assert not (tmp_path / "disk.checkpoints").exists()  # the file went with the training checkpoints


def test_bf16_mixed_precision_on_a_cpu_trains_the_same_parameters(pruned_model, alpaca_file, tmp_path):
    """--precision bf16 on a CPU: frozen weights stay bf16-exact, the trained ones move, the loss goes down and the
    run records the precision; the checkpoint keeps the source's dtype and loads with every weight present."""
    from safetensors.torch import load_file

    result = recover(pruned_model, tmp_path / "out", fast(dataset=str(alpaca_file), precision="bf16"))
    assert result.run.precision == "bf16 mixed"
    before, after = load_file(pruned_model / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    moved = [k for k in before if not torch.equal(before[k].float(), after[k].float())]
    trained = tuple(f"model.layers.{i}." for i in result.train_layers) + ("lm_head", "model.norm")
    assert moved and all(k.startswith(trained) for k in moved), moved
    assert {after[k].dtype for k in after} == {before[k].dtype for k in before}
    assert result.losses[-1] < result.losses[0]


def test_frozen_prefix_replay_returns_what_the_models_loop_unpacks(alpaca_file, tmp_path):
    """Falcon-H1's loop reads `layer(...)[0]`: a replayed frozen layer must return a tuple there too, or the second
    epoch would train on the first row of every batch. Same weights with and without the replay."""
    src = build_tiny_checkpoint(tmp_path / "src", "falcon_h1", num_layers=4)
    prune(src, tmp_path / "pruned", drop_layers="1")
    opts = fast(dataset=str(alpaca_file), max_steps=-1, epochs=2, last_k=1, batch_size=16, micro_batch_size=8)
    cached = recover(tmp_path / "pruned", tmp_path / "cached", opts)
    recover(tmp_path / "pruned", tmp_path / "plain", opts.model_copy(update={"prefix_cache_gib": 0}))
    assert cached.run.frozen_prefix_cache["replayed_batches"] > 0
    a, b = tensors(tmp_path / "cached"), tensors(tmp_path / "plain")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
