"""The pruned checkpoint, reloaded from disk, computes exactly the original network with the blocks bypassed."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from hfprune.api import prune
from hfprune.disk.model_types import ARCHITECTURES
from hfprune.errors import CheckpointError
from hfprune.tiny import TINY_CONFIGS

from ..reference import bypassed

ARCHS = [a for a in TINY_CONFIGS if a != "llama-tied"] + ["llama-tied"]
PLANS = {
    "drop-last": dict(drop_last=2),
    "drop-noncontiguous": dict(drop_layers="0,2,5"),
    "skip-attention": dict(skip_attention="0,3"),
    "skip-mlp": dict(skip_mlp="1,4"),
    "mixed": dict(drop_layers="2", skip_attention="0,5", skip_mlp="3"),
}


def _load(folder):
    model, info = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, output_loading_info=True,
                                                       dtype=torch.float32)
    return model.eval(), info


def _indices(result):
    return result.plan.drop_layers, result.plan.skip_attention, result.plan.skip_mlp


# multimodal wrappers, parallel-residual StableLM, InternLM3 (no transformers class of its own): whole layers only
NESTED = {"gemma3", "stablelm-parallel", "internlm3", "falcon_h1"}
# hybrid mixers (linear attention, Mamba + attention): whole layers and FFN skips only
NO_ATTENTION_SKIP = {a for a in ARCHS if ARCHITECTURES[TINY_CONFIGS[a]["model_type"]].no_attention_skip}


@pytest.mark.parametrize("plan_name", list(PLANS))
@pytest.mark.parametrize("arch", ARCHS)
def test_pruned_logits_and_generation_match_bypassed_original(arch, plan_name, tiny_checkpoints, tmp_path):
    source = tiny_checkpoints(arch)
    if arch in NESTED and "skip" in str(PLANS[plan_name]):
        with pytest.raises(CheckpointError, match="drop whole layers"):
            prune(source, tmp_path / "out", **PLANS[plan_name])
        assert not (tmp_path / "out").exists()
        return
    if arch in NO_ATTENTION_SKIP and "skip_attention" in PLANS[plan_name]:
        with pytest.raises(CheckpointError, match="attention sub-blocks cannot be removed exactly"):
            prune(source, tmp_path / "out", **PLANS[plan_name])
        assert not (tmp_path / "out").exists()
        return
    if arch in ("qwen3_next", "qwen3_5_text") and plan_name == "drop-noncontiguous":
        # layer_types linear, linear, full, linear, linear, full: dropping 0, 2 and 5 leaves no full attention
        with pytest.raises(CheckpointError, match="removes every full_attention layer"):
            prune(source, tmp_path / "out", **PLANS[plan_name])
        assert not (tmp_path / "out").exists()
        return
    result = prune(source, tmp_path / "out", **PLANS[plan_name])
    pruned, info = _load(tmp_path / "out")
    assert info["missing_keys"] == set() or info["missing_keys"] == []
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert pruned.config.get_text_config().num_hidden_layers == 6 - len(result.plan.drop_layers)

    dense, _ = _load(source)
    drop, attn, mlp = _indices(result)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(8, 384, (2, 21), generator=g)  # above the special and image tokens  # longer than the sliding window
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding in the second row
    with torch.no_grad(), bypassed(dense, drop, attn, mlp):
        expected = dense(input_ids=ids, attention_mask=mask).logits
        expected_gen = dense.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, min_new_tokens=12)
        expected_steps = _incremental_logits(dense, ids[:1])
    with torch.no_grad():
        unpruned = dense(input_ids=ids, attention_mask=mask).logits
        got = pruned(input_ids=ids, attention_mask=mask).logits
        got_gen = pruned.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, min_new_tokens=12)
        got_steps = _incremental_logits(pruned, ids[:1])
    assert (unpruned - expected).abs().max().item() > 1e-3  # the plan really changes the network
    assert (got - expected).abs().max().item() <= 1e-5
    assert torch.equal(got_gen, expected_gen)
    assert (got_steps - expected_steps).abs().max().item() <= 1e-5


def _incremental_logits(model, ids):
    """Feed a prompt then one token at a time through forward() with the returned cache, no positions given."""
    out = model(input_ids=ids[:, :5], use_cache=True)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    logits = [out.logits[:, -1]]
    for t in range(5, ids.shape[1]):
        out = model(input_ids=ids[:, t : t + 1], cache=cache, use_cache=True)
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        logits.append(out.logits[:, -1])
    return torch.stack(logits, 1)
