"""`hfprune export-gguf`: llama.cpp's own converter on pruned checkpoints, per-layer metadata made right, and a
refusal where no GGUF can express the pruned model. Logits are compared with llama.cpp where a build exists."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hfprune.api import prune
from hfprune.cli import main
from hfprune.errors import ExportError
from hfprune.tiny import build_tiny_checkpoint, train_sentencepiece


@pytest.fixture(scope="module")
def gguf_lib():
    """llama.cpp's converter and gguf-py, fetched once from the llama-cpp-python source release (package index)."""
    from hfprune.gguf_export import _gguf_module, converter_dir

    try:
        path = converter_dir(echo=lambda m: None)
    except ExportError as e:
        if "could not download" in str(e):
            pytest.skip(f"no package index here: {e}")
        raise
    return _gguf_module(path)


def pruned(root, model_type, **plan):
    src = build_tiny_checkpoint(root / f"{model_type}-src", model_type, num_layers=6)
    out = root / f"{model_type}-pruned"
    prune(src, out, **plan)
    train_sentencepiece(out)  # a tokenizer llama.cpp's converter reads for any model
    return src, out


def fields(gguf, path):
    reader = gguf.GGUFReader(path)
    return reader, {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_a_pruned_llama_converts_with_its_kept_layers_renumbered(gguf_lib, tmp_path, capsys):
    src, out = pruned(tmp_path, "llama", drop_layers="1,4")
    assert main(["export-gguf", str(out), "-o", str(tmp_path / "m.gguf"), "--outtype", "f32"]) == 0
    reader, meta = fields(gguf_lib, tmp_path / "m.gguf")
    assert meta["general.architecture"] == "llama" and meta["llama.block_count"] == 4
    tensors = {t.name: t for t in reader.tensors}
    assert not any(name.startswith("blk.4.") for name in tensors)
    # GGUF layer 2 is the source's layer 3 (0, 2, 3, 5 kept): its FFN weights, bit for bit
    source = load_file(str(src / "model.safetensors"))
    down = torch.from_numpy(tensors["blk.2.ffn_down.weight"].data.copy()).reshape(
        source["model.layers.3.mlp.down_proj.weight"].shape)
    assert torch.equal(down, source["model.layers.3.mlp.down_proj.weight"])


def test_gemma3_gets_its_per_layer_sliding_pattern(gguf_lib, tmp_path, capsys):
    """Dropping layer 0 shifts Gemma 3's local/global pattern; llama.cpp's converter writes none, so llama.cpp
    would assume its fixed period. hfprune writes the per-layer array llama.cpp's loader reads."""
    _, out = pruned(tmp_path, "gemma3_text", drop_layers="0")
    layer_types = json.loads((out / "config.json").read_text())["layer_types"]
    assert main(["export-gguf", str(out), "-o", str(tmp_path / "g.gguf"), "--outtype", "f32"]) == 0
    assert "sliding_window_pattern" in capsys.readouterr().out
    _, meta = fields(gguf_lib, tmp_path / "g.gguf")
    pattern = meta["gemma3.attention.sliding_window_pattern"]
    assert pattern == [t == "sliding_attention" for t in layer_types]
    assert pattern != [(i + 1) % 3 != 0 for i in range(5)]  # the source's period no longer holds


@pytest.mark.parametrize("model_type,plan,needle", [
    ("smollm3", {"drop_layers": "0"}, "no-RoPE layer every 4 layers"),
    ("llama", {"skip_attention": "2"}, "skips attention or FFN sub-blocks"),
])
def test_what_no_gguf_can_express_is_refused(model_type, plan, needle, tmp_path, capsys):
    src = build_tiny_checkpoint(tmp_path / "src", model_type, num_layers=8)
    prune(src, tmp_path / "p", **plan)
    capsys.readouterr()
    code = main(["export-gguf", str(tmp_path / "p"), "-o", str(tmp_path / "x.gguf")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.gguf").exists()


def test_a_sliding_window_llama_cpp_ignores_is_a_warning():
    from hfprune.gguf_export import gguf_warnings

    (w,) = gguf_warnings("qwen2", {"sliding_window": 8, "use_sliding_window": True,
                                   "layer_types": ["full_attention"] * 3 + ["sliding_attention"] * 3})
    assert "without the sliding window of 8 tokens" in w and "layers 3, 4, 5" in w
    assert gguf_warnings("mistral", {"sliding_window": 4096})  # Mistral-7B-v0.1
    assert gguf_warnings("mistral", {"sliding_window": None}) == []
    assert gguf_warnings("qwen2", {"sliding_window": 8, "use_sliding_window": False}) == []
    assert gguf_warnings("gemma3_text", {"sliding_window": 512, "layer_types": ["sliding_attention"]}) == []


def test_an_existing_file_is_not_replaced_without_overwrite(tmp_path, capsys):
    src = build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=4)
    (tmp_path / "m.gguf").write_text("mine")
    capsys.readouterr()
    code = main(["export-gguf", str(src), "-o", str(tmp_path / "m.gguf")])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "m.gguf").read_text() == "mine"


def test_llama_cpp_computes_the_logits_transformers_computes(gguf_lib, tmp_path):
    """Needs a llama.cpp build: `pip install llama-cpp-python` compiles one (~10-30 min on 2 cores). Gemma 3 with
    layer 0 removed: hfprune's file agrees with transformers; the plain converter's output does not."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="no llama.cpp build (pip install llama-cpp-python)")
    from transformers import AutoModelForCausalLM

    from hfprune.gguf_export import _convert, converter_dir, export_gguf

    ids = [1, 17, 42, 99, 5, 230, 64, 77, 12, 150, 33, 8, 19, 201, 45, 88, 120, 7, 66, 240]

    def llama_cpp_logits(path, vocab):
        llm = llama_cpp.Llama(str(path), logits_all=True, n_ctx=64, verbose=False, type_k=0, type_v=0)  # f32 cache
        llm.eval(ids)
        out = torch.from_numpy(llm.scores[: len(ids), :vocab].copy())
        llm.close()
        return out

    for model_type, plan in (("llama", {"drop_layers": "1,4"}), ("gemma3_text", {"drop_layers": "0"})):
        _, out = pruned(tmp_path, model_type, **plan)
        with torch.no_grad():
            ref = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)(torch.tensor([ids])).logits[0]
        path = export_gguf(out, tmp_path / f"{model_type}.gguf", outtype="f32", echo=lambda m: None).output
        got = llama_cpp_logits(path, ref.shape[-1])
        assert (got.argmax(-1) == ref.argmax(-1)).all(), model_type
        assert (got - ref).abs().max() < 2e-3, (model_type, (got - ref).abs().max())
        if model_type == "gemma3_text":
            plain = tmp_path / "plain.gguf"
            _convert(converter_dir(), out, plain, "f32")
            assert (llama_cpp_logits(plain, ref.shape[-1]) - ref).abs().max() > 0.1  # what the array fixes
