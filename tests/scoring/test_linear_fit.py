"""--replace linear: the folded checkpoint computes the pruned model with the fitted map, the fit recovers a block
that is linear by construction, in memory and layer by layer give the same maps, and what cannot be folded exactly
is refused or reported."""

import json

import pytest
import torch

from hfprune.cli import main


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from hfprune.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("src") / "m", "llama", num_layers=6, tokenizer=True,
                                 tie_word_embeddings=False)


def _settings(calib_text, **kw):
    from hfprune.settings import PruneSection

    return PruneSection(replace="linear", replace_data=str(calib_text), replace_samples=8, replace_seq_len=32, **kw)


def _load(path):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    return model.eval()


def test_folded_checkpoint_computes_the_pruned_model_with_the_map_applied_by_a_hook(source, calib_text, tmp_path):
    from hfprune.api import prune
    from hfprune.plan import Plan
    from hfprune.scoring.linear_fit import Block, fit_blocks, fold_targets
    from hfprune.scoring.forward import LayerStack
    from hfprune.scoring.in_memory import InMemoryDriver
    from hfprune.disk.checkpoint import Checkpoint
    from ..reference import bypassed

    plan = Plan.build(6, drop_layers=[2, 3, 5])
    result = prune(source, tmp_path / "out", plan=plan, replace=_settings(calib_text), echo=lambda *_: None)
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())["replacement"]
    assert [b["layers"] for b in record["blocks"]] == [[2, 3], [5, 5]]
    assert [b["fold_into"] for b in record["blocks"]] == ["model.layers.1.mlp.down_proj", "model.layers.4.mlp.down_proj"]
    assert result.replacement["tokens"] == 8 * 32

    # the maps again, in memory, to apply by hooks on an untouched dense model
    dense_for_fit = _load(source)
    ckpt = Checkpoint.open(source)
    blocks, targets, _ = fold_targets(ckpt, plan)
    from hfprune.scoring.calibration import load_calibration
    from transformers import AutoTokenizer

    cal = load_calibration(str(calib_text), AutoTokenizer.from_pretrained(source), samples=8, seq_len=32)
    _, report = fit_blocks(InMemoryDriver(LayerStack(dense_for_fit, ckpt.arch), list(cal.input_ids.split(8))),
                           plan, blocks, targets, 1e-3)
    maps = {b.target: report.maps[b] for b in blocks}
    assert set(maps) == {1, 4} and all(isinstance(b, Block) for b in report.maps)

    dense = _load(source)
    hooks = [dense.model.layers[k].mlp.register_forward_hook(
        lambda m, a, out, t=t: (out.double() @ t).float()) for k, t in maps.items()]
    ids = torch.randint(0, dense.config.vocab_size, (2, 12))
    with torch.no_grad(), bypassed(dense, drop=[2, 3, 5]):
        want = dense(ids).logits
    for h in hooks:
        h.remove()
    got = _load(tmp_path / "out")(ids).logits
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def _linear_block_model(seed=0):
    """A tiny Llama whose layers 1 and 2 are linear by construction: layer 1's FFN maps its input by C (norm
    removed), layer 2 has no attention and maps x to x + x.B. Then the dense stream after layer 2 is exactly
    Y + M.T with T = C^-1.B + I + B, M = Y.C being layer 1's FFN output."""
    from torch import nn

    from hfprune.tiny import build_tiny_model

    model = build_tiny_model("llama", num_layers=4, seed=seed).float().eval()
    h = model.config.hidden_size
    g = torch.Generator().manual_seed(seed)

    class Linear(nn.Module):
        def __init__(self, matrix):
            super().__init__()
            self.down_proj = nn.Linear(h, h, bias=False)
            self.down_proj.weight.data = matrix.T.contiguous()

        def forward(self, x):
            return self.down_proj(x)

    class NoAttention(nn.Module):
        def forward(self, hidden_states, *a, **k):
            return torch.zeros_like(hidden_states), None

    c = torch.eye(h) + 0.1 * torch.randn(h, h, generator=g)
    b = 0.1 * torch.randn(h, h, generator=g)
    layers = model.model.layers
    layers[1].post_attention_layernorm = nn.Identity()
    layers[1].mlp = Linear(c)
    layers[2].self_attn = NoAttention()
    layers[2].post_attention_layernorm = nn.Identity()
    layers[2].mlp = Linear(b)
    return model, c, b


def test_the_fit_recovers_a_block_that_is_linear_by_construction():
    from hfprune.disk.model_types import ARCHITECTURES
    from hfprune.plan import Plan
    from hfprune.scoring.forward import LayerStack
    from hfprune.scoring.in_memory import InMemoryDriver
    from hfprune.scoring.linear_fit import Block, fit_blocks

    model, c, b = _linear_block_model()
    h = model.config.hidden_size
    plan = Plan.build(4, drop_layers=[2])
    batches = [torch.randint(0, model.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(i))
               for i in range(4)]  # 256 tokens > hidden: the map is determined
    _, report = fit_blocks(InMemoryDriver(LayerStack(model, ARCHITECTURES["llama"]), batches), plan, [Block(2, 3)],
                           {1: "model.layers.1.mlp.down_proj"}, 0.0)
    expected = torch.linalg.inv(c.double()) @ b.double() + torch.eye(h, dtype=torch.float64) + b.double()
    t = report.maps[Block(2, 3)]
    assert torch.allclose(t, expected, atol=1e-3)
    assert report.blocks[0]["fit_error"] < 1e-8 < report.blocks[0]["removal_error"]


@pytest.mark.parametrize("drop", [[2, 3, 5], [0, 1, 4]])
def test_streamed_and_in_memory_fits_are_equal(source, calib_text, tmp_path, drop):
    from hfprune.api import prune
    from safetensors.torch import load_file

    outs = {}
    for stream in ("off", "on"):
        prune(source, tmp_path / stream, drop_layers=drop, replace=_settings(calib_text, replace_stream=stream),
              echo=lambda *_: None)
        outs[stream] = (load_file(tmp_path / stream / "model.safetensors"),
                        json.loads((tmp_path / stream / "hfprune.json").read_text())["replacement"])
    (mem, rec_mem), (streamed, rec_str) = outs["off"], outs["on"]
    assert rec_mem["layer_by_layer"] is False and rec_str["layer_by_layer"] is True
    assert mem.keys() == streamed.keys()
    for name in mem:
        assert torch.allclose(mem[name], streamed[name], atol=1e-5, rtol=1e-4), name
    for a, b in zip(rec_mem["blocks"], rec_str["blocks"]):
        assert a["fold_into"] == b["fold_into"] and a["fit_error"] == pytest.approx(b["fit_error"], rel=1e-4)
        # the point of the map: the calibration error left is lower than plain removal's
        assert a["fit_error"] < a["removal_error"]
    if 0 in drop:
        assert rec_mem["blocks"][0]["fold_into"] == "model.embed_tokens.weight"


@pytest.mark.parametrize("model_type", ["gpt_neox", "phi", "cohere"])
def test_parallel_layers_and_biased_projections_fit_the_same_in_memory_and_layer_by_layer(calib_text, tmp_path,
                                                                                         model_type):
    """Parallel layers have no stream between attention and FFN: the FFN's output is read where it leaves the FFN
    (gpt_neox and phi also fold a bias)."""
    from hfprune.api import prune
    from hfprune.tiny import build_tiny_checkpoint
    from safetensors.torch import load_file

    src = build_tiny_checkpoint(tmp_path / "src", model_type, num_layers=5, tokenizer=True)
    outs = {}
    for stream in ("off", "on"):
        result = prune(src, tmp_path / stream, drop_layers=[2, 3], replace=_settings(calib_text, replace_stream=stream),
                       echo=lambda *_: None)
        outs[stream] = load_file(tmp_path / stream / "model.safetensors"), result.replacement
    (mem, rec_mem), (streamed, rec_str) = outs["off"], outs["on"]
    (block,) = rec_mem["blocks"]
    assert block["fit_error"] < block["removal_error"]
    assert block["fit_error"] == pytest.approx(rec_str["blocks"][0]["fit_error"], rel=1e-4)
    changed = [n for n in mem if n.startswith(block["fold_into"])]
    assert len(changed) == (2 if model_type != "cohere" else 1)  # weight (and bias)
    for name in mem:
        assert torch.allclose(mem[name], streamed[name], atol=1e-5, rtol=1e-4), name
    _load(tmp_path / "off")


def test_a_projection_whose_output_is_scaled_per_channel_is_refused(tmp_path):
    """A per-channel scale after the FFN's projection (a layer scale) does not commute with the map: the fold is
    checked on the layer itself and refused."""
    from hfprune.disk.model_types import ARCHITECTURES
    from hfprune.errors import PlanError
    from hfprune.plan import Plan
    from hfprune.scoring.forward import LayerStack
    from hfprune.scoring.in_memory import InMemoryDriver
    from hfprune.scoring.linear_fit import Block, fit_blocks
    from hfprune.tiny import build_tiny_model

    model = build_tiny_model("llama", num_layers=4).float().eval()
    mlp = model.model.layers[1].mlp
    scale = torch.linspace(0.5, 2.0, model.config.hidden_size)
    mlp.register_forward_hook(lambda m, a, out: out * scale)
    batches = [torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))]
    with pytest.raises(PlanError, match="not linear in that projection"):
        fit_blocks(InMemoryDriver(LayerStack(model, ARCHITECTURES["llama"]), batches), Plan.build(4, drop_layers=[2]),
                   [Block(2, 3)], {1: "model.layers.1.mlp.down_proj"}, 1e-3)


def test_a_block_at_layer_0_with_a_tied_embedding_and_sub_block_skips_are_reported_not_replaced(calib_text, tmp_path):
    from hfprune.api import prune
    from hfprune.tiny import build_tiny_checkpoint

    tied = build_tiny_checkpoint(tmp_path / "tied", "llama", num_layers=6, tokenizer=True, tie_word_embeddings=True)
    result = prune(tied, tmp_path / "out", drop_layers=[0, 3], skip_mlp=[5], replace=_settings(calib_text),
                   echo=lambda *_: None)
    rec = result.replacement
    assert [b["layers"] for b in rec["blocks"]] == [[3, 3]]
    assert any("layer 0" in n and "tied" in n for n in rec["not_replaced"])
    assert any("sub-blocks removed alone are not replaced" in n for n in rec["not_replaced"])
    only_skips = prune(tied, tmp_path / "skips", skip_attention=[2], replace=_settings(calib_text), echo=lambda *_: None)
    assert only_skips.replacement["blocks"] == [] and "nothing was replaced" in only_skips.replacement["warning"]


def test_architectures_that_norm_the_ffn_output_are_refused_in_one_line(calib_text, tmp_path, capsys):
    from hfprune.tiny import build_tiny_checkpoint

    src = build_tiny_checkpoint(tmp_path / "g", "gemma2", num_layers=4, tokenizer=True)
    code = main(["prune", str(src), "--drop-layers", "2", "--replace", "linear", "--replace-data", str(calib_text),
                 "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "norms its FFN output" in err[0]
    assert not (tmp_path / "out").exists()


def test_replace_without_calibration_data_is_one_line(source, tmp_path, capsys):
    code = main(["prune", str(source), "--drop-layers", "2", "--replace", "linear", "-o", str(tmp_path / "out"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--replace-data" in err[0]
    assert not (tmp_path / "out").exists()


def test_the_cosine_objective_lowers_the_cosine_distance_and_folds_the_same_way(source, calib_text, tmp_path):
    from hfprune.api import prune

    plain = prune(source, tmp_path / "ls", drop_layers=[2, 3], replace=_settings(calib_text), echo=lambda *_: None)
    cos = prune(source, tmp_path / "cos", drop_layers=[2, 3], replace=_settings(calib_text, replace_objective="cosine"),
                echo=lambda *_: None)
    assert cos.replacement["objective"] == "cosine" and plain.replacement["objective"] == "least squares"
    c = cos.replacement["blocks"][0]["cosine"]
    assert c["distance"] < c["distance_lstsq"] and c["tokens"] == 8 * 32
    assert "cosine" not in plain.replacement["blocks"][0]
    _load(tmp_path / "cos")  # a stock checkpoint, every weight present
