"""On-disk behaviour of surgery: sharding, byte-for-byte copies, config.json edits, atomic output."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from hfprune.api import prune
from hfprune.disk.checkpoint import INDEX_NAME
from hfprune.errors import CheckpointError
from hfprune.plan import Plan
from hfprune.tiny import build_tiny_checkpoint


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("sharded") / "src", "llama", num_layers=8,
                                 max_shard_size="150KB")


def test_sharded_output_has_fresh_index_and_copies_untouched_shards_verbatim(sharded, tmp_path):
    src_index = json.loads((sharded / INDEX_NAME).read_text())
    assert len(set(src_index["weight_map"].values())) > 3
    prune(sharded, tmp_path / "out", drop_last=2)
    out = tmp_path / "out"
    index = json.loads((out / INDEX_NAME).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == sorted(p.name for p in out.glob("*.safetensors"))
    assert all(s.endswith(f"-of-{len(shards):05d}.safetensors") for s in shards)
    total = 0
    for shard in shards:
        with safe_open(out / shard, "pt") as f:
            for k in f.keys():
                assert index["weight_map"][k] == shard
                total += f.get_tensor(k).numel() * f.get_tensor(k).element_size()
    assert index["metadata"]["total_size"] == total
    # layer names are contiguous 0..5 and nothing from layers 6, 7 survives
    layers = {int(k.split(".")[2]) for k in index["weight_map"] if k.startswith("model.layers.")}
    assert layers == set(range(6))
    # shards that hold no tensor of layers 6-7 are untouched by a drop-last: copied byte for byte
    touched = {s for k, s in src_index["weight_map"].items() if k.startswith(("model.layers.6.", "model.layers.7."))}
    untouched = sorted(set(src_index["weight_map"].values()) - touched)
    assert untouched
    out_bytes = {(out / s).read_bytes() for s in shards}
    assert all((sharded / s).read_bytes() in out_bytes for s in untouched)
    _, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_no_stale_files_and_plain_load_without_remote_code(tiny_checkpoints, tmp_path):
    src = tiny_checkpoints("llama")
    (src / "pytorch_model.bin").write_bytes(b"stale pickle")  # must not travel
    try:
        prune(src, tmp_path / "out", drop_layers="1,3")
    finally:
        (src / "pytorch_model.bin").unlink()
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert "pytorch_model.bin" not in names and INDEX_NAME not in names and "modeling_hfprune.py" not in names
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "llama" and "auto_map" not in config and config["num_hidden_layers"] == 4
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())
    assert record["plan"]["drop_layers"] == [1, 3]


def test_skip_map_refuses_to_load_without_trust_remote_code(tiny_checkpoints, tmp_path):
    prune(tiny_checkpoints("llama"), tmp_path / "out", skip_attention="2")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["per_layer_config"] == {"2": {"skip": ["attention"]}}
    assert config["model_type"] == "hfprune_llama"
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "out", trust_remote_code=False)
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert not any(k.startswith("model.layers.2.self_attn.") for k in keys)
    assert "model.layers.2.input_layernorm.weight" not in keys
    assert "model.layers.2.mlp.down_proj.weight" in keys


def test_skip_map_checkpoint_can_be_pruned_again(tiny_checkpoints, tmp_path):
    first = tmp_path / "first"
    prune(tiny_checkpoints("llama"), first, skip_attention="1", skip_mlp="4")
    prune(first, tmp_path / "second", drop_layers="1")  # dropping the attention-less layer leaves only an FFN skip
    config = json.loads((tmp_path / "second" / "config.json").read_text())
    assert config["num_hidden_layers"] == 5 and config["per_layer_config"] == {"3": {"skip": ["mlp"]}}
    prune(tmp_path / "second", tmp_path / "third", drop_layers="3")  # no skips left: plain llama again
    config = json.loads((tmp_path / "third" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert "auto_map" not in config and "per_layer_config" not in config
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "third", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_config_fields_sliced_remapped_and_recounted(tiny_checkpoints, tmp_path):
    prune(tiny_checkpoints("qwen2"), tmp_path / "q", drop_layers="0,4")
    c = json.loads((tmp_path / "q" / "config.json").read_text())
    assert c["layer_types"] == ["full_attention", "full_attention", "sliding_attention", "sliding_attention"]
    assert c["max_window_layers"] == 2
    # Qwen-MoE: layer i sparse iff (i+1) % 2 == 0 and i not in [4]: sparse = 1, 3, 5
    prune(tiny_checkpoints("qwen2_moe"), tmp_path / "m", drop_layers="0")
    c = json.loads((tmp_path / "m" / "config.json").read_text())
    assert c["decoder_sparse_step"] == 1
    assert c["mlp_only_layers"] == [1, 3]  # old 2 and 4, renumbered; old 1, 3, 5 stay sparse
    # Gemma3: the periodic sliding pattern becomes an explicit list
    prune(tiny_checkpoints("gemma3_text"), tmp_path / "g", drop_layers="0")
    c = json.loads((tmp_path / "g" / "config.json").read_text())
    assert c["layer_types"] == ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
                                "full_attention"]
    assert "sliding_window_pattern" not in c and "_sliding_window_pattern" not in c
    # DeepSeek-V3: the dense-FFN prefix is recounted (layers 0-1 dense, 2-5 MoE; dropping 1 and 3 leaves 1 dense)
    prune(tiny_checkpoints("deepseek_v3"), tmp_path / "d", drop_layers="1,3")
    c = json.loads((tmp_path / "d" / "config.json").read_text())
    assert c["first_k_dense_replace"] == 1 and c["num_hidden_layers"] == 4
    # SmolLM3: the NoPE interval becomes an explicit per-layer list, then sliced
    prune(tiny_checkpoints("smollm3"), tmp_path / "s", drop_layers="0")
    c = json.loads((tmp_path / "s" / "config.json").read_text())
    assert c["no_rope_layers"] == [1, 0, 1, 1, 0] and "no_rope_layer_interval" not in c


def test_gemma_layer_types_materialised_when_config_omits_them(tiny_checkpoints, tmp_path):
    src = tmp_path / "src"
    build_tiny_checkpoint(src, "gemma2", num_layers=6, tokenizer=False)
    c = json.loads((src / "config.json").read_text())
    del c["layer_types"]  # older Gemma2 configs derive the alternation from the index
    (src / "config.json").write_text(json.dumps(c))
    prune(src, tmp_path / "out", drop_layers="0")
    c = json.loads((tmp_path / "out" / "config.json").read_text())
    assert c["layer_types"] == ["full_attention", "sliding_attention", "full_attention", "sliding_attention",
                                "full_attention"]


def test_plan_file_round_trip(tiny_checkpoints, tmp_path):
    plan = Plan.build(6, drop_layers=[4], skip_attention=[1], skip_mlp=[2], metric="manual")
    plan.save(tmp_path / "plan.json")
    result = prune(tiny_checkpoints("llama"), tmp_path / "out", plan_file=tmp_path / "plan.json")
    assert result.plan == plan
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())
    assert Plan.from_dict(record["plan"]) == plan


def test_pickle_weights_converted_only_when_allowed(tmp_path):
    src = tmp_path / "src"
    build_tiny_checkpoint(src, "llama", num_layers=4, tokenizer=False)
    m = AutoModelForCausalLM.from_pretrained(src)
    torch.save(m.state_dict(), src / "pytorch_model.bin")
    (src / "model.safetensors").unlink()
    with pytest.raises(Exception, match="--allow-pickle"):
        prune(src, tmp_path / "refused", drop_last=1)
    assert not (tmp_path / "refused").exists()
    prune(src, tmp_path / "out", drop_last=1, allow_pickle=True)
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert torch.equal(pruned.model.layers[2].mlp.up_proj.weight, m.model.layers[2].mlp.up_proj.weight)
    assert pruned.config.num_hidden_layers == 3


def test_killed_run_leaves_nothing_at_output(tmp_path):
    """SIGKILL mid-write: OUT must not exist (only a hidden .partial folder may remain beside it)."""
    src = tmp_path / "src"
    build_tiny_checkpoint(src, "llama", num_layers=8, tokenizer=False, hidden_size=256, intermediate_size=1024)
    code = (
        "import sys, time, hfprune.disk.surgery as s\n"
        "orig = s.write_renamed\n"
        "def slow(*a, **k):\n"
        "    n = orig(*a, **k); print('WROTE', flush=True); time.sleep(60); return n\n"
        "s.write_renamed = slow\n"
        "from hfprune.cli import main\n"
        f"sys.exit(main(['prune', {str(src)!r}, '-o', {str(tmp_path / 'out')!r}, '--drop-layers', '2', '--no-progress']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "WROTE"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")]


def test_multi_token_prediction_layers_are_kept_last(tmp_path):
    """DeepSeek-V3 / GLM-4.5 store num_nextn_predict_layers MTP layers after the stack (transformers does not run
    them); a real DeepSeek-V3 config also carries moe_layer_freq. Pruning keeps the MTP layer, bytes unchanged,
    renumbered to stay right after the kept layers."""
    import json

    from safetensors.torch import load_file, save_file

    src = build_tiny_checkpoint(tmp_path / "src", "deepseek_v3", num_layers=5, tokenizer=False)
    weights = load_file(src / "model.safetensors")
    mtp = {k.replace("model.layers.4.", "model.layers.5."): v.clone() + 1 for k, v in weights.items()
           if k.startswith("model.layers.4.")}
    mtp["model.layers.5.eh_proj.weight"] = weights["model.layers.4.self_attn.o_proj.weight"].clone()
    save_file({**weights, **mtp}, src / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config.update(num_nextn_predict_layers=1, moe_layer_freq=1)
    (src / "config.json").write_text(json.dumps(config))

    prune(src, tmp_path / "out", drop_layers="1,3")
    out = load_file(tmp_path / "out" / "model.safetensors")
    kept = {k.replace("model.layers.5.", "model.layers.3."): v for k, v in mtp.items()}
    assert all(torch.equal(out[k], v) for k, v in kept.items())
    assert not any(k.startswith(("model.layers.4.", "model.layers.5.")) for k in out)
    new_config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert new_config["num_hidden_layers"] == 3 and new_config["num_nextn_predict_layers"] == 1

    config["moe_layer_freq"] = 2
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="moe_layer_freq"):
        prune(src, tmp_path / "out2", drop_last=1)
