"""Edit config.json as JSON for a plan: never through a transformers config class, which rewrites keys.

Every field that describes layers by position is handled explicitly: per-layer lists are sliced, index lists
remapped, thresholds recounted, periodic patterns replaced by explicit lists. A layer-looking field that is not
known here is refused rather than left stale.
"""

from __future__ import annotations

import copy

from ..errors import CheckpointError
from ..plan import Plan
from .architectures import Architecture
from .model_types import SKIP_MODEL_TYPE_PREFIX, base_model_type
from .remote_code import AUTO_MAP, SKIP_MODEL_CLASS

# One entry per element of the layer stack.
PER_LAYER_LISTS = {"layer_types", "mlp_layer_types", "no_rope_layers", "layers_block_type"}
# Lists of layer indices.
INDEX_LISTS = {"mlp_only_layers", "moe_layers"}
# "Layers with index < value behave one way, the rest another": recount over the kept layers.
THRESHOLDS = {"max_window_layers", "first_k_dense_replace"}
# Periodic encodings of a per-layer list, made redundant (and wrong after renumbering) once that list is explicit.
PERIODIC = {"sliding_window_pattern": "layer_types", "_sliding_window_pattern": "layer_types",
            "no_rope_layer_interval": "no_rope_layers", "interleave_moe_layer_step": "moe_layers"}
# Keys mentioning layers that do not index the layer stack.
NOT_PER_LAYER = {
    "num_hidden_layers", "layer_norm_eps", "layer_norm_epsilon", "layerdrop", "decoder_sparse_step",
    "per_layer_config", "hfprune_base",
    # multi-token-prediction layers stored after the stack: kept and renumbered by surgery, the count unchanged
    "num_nextn_predict_layers",
    # DeepSeek's own code: layer i is MoE iff i >= first_k_dense_replace and i % moe_layer_freq == 0; only 1
    # survives renumbering (checked in check_known_fields); transformers ignores it
    "moe_layer_freq",
}
# Lists that are never per-layer even when their length happens to equal the layer count.
NON_LAYER_LISTS = {"architectures", "eos_token_id", "bos_token_id", "pad_token_id", "bad_words_ids",
                   "suppress_tokens", "begin_suppress_tokens"}
KNOWN = PER_LAYER_LISTS | INDEX_LISTS | THRESHOLDS | set(PERIODIC) | NOT_PER_LAYER



def check_known_fields(dec: dict, where: str = "config.json") -> None:
    """Refuse any field that looks per-layer but is not in the table (we would leave it stale)."""
    n = dec["num_hidden_layers"]
    if dec.get("moe_layer_freq", 1) != 1:
        raise CheckpointError(f"{where} has moe_layer_freq {dec['moe_layer_freq']!r}: its MoE-every-k-layers pattern "
                              "would not survive renumbering; only 1 is supported")
    for key, value in dec.items():
        if key in KNOWN or isinstance(value, bool) or value is None:
            continue
        looks_layered = "layer" in key.lower() and isinstance(value, (int, list, dict))
        per_layer_length = isinstance(value, list) and len(value) == n and key not in NON_LAYER_LISTS
        if looks_layered or per_layer_length:
            raise CheckpointError(
                f"{where} field {key!r} looks per-layer and hfprune does not know how to prune it; "
                "refusing rather than leaving it stale (add it to hfprune/config_edit.py's table)"
            )


def edit_config(config: dict, plan: Plan, arch: Architecture, derived: dict[str, list] | None = None) -> dict:
    """Return the pruned config.json dict.

    `derived` holds per-layer lists that transformers computes from other fields (e.g. Gemma's layer_types from a
    sliding-window period) and that the JSON does not spell out; they are written explicitly before slicing.
    """
    out = copy.deepcopy(config)
    dec = out[arch.text_config_key] if arch.text_config_key else out
    check_known_fields(dec)
    n = dec["num_hidden_layers"]
    plan.check_model(n)
    kept = plan.kept_layers
    new = plan.new_index

    for key, values in (derived or {}).items():
        if key not in dec:
            dec[key] = list(values)
    for key, explicit in PERIODIC.items():
        if key in dec and explicit in dec:
            dec.pop(key)

    _rewrite_moe_sparsity(dec, kept, new)

    types = dec.get("layer_types")
    if arch.keep_one_of and isinstance(types, list) and arch.keep_one_of in types:
        if not any(types[i] == arch.keep_one_of for i in kept if i < len(types)):
            raise CheckpointError(f"the plan removes every {arch.keep_one_of} layer "
                                  f"({', '.join(str(i) for i, t in enumerate(types) if t == arch.keep_one_of)}); "
                                  f"the model needs at least one (transformers' cache reads lengths from it): keep one")
    for key in PER_LAYER_LISTS:
        if key in dec and dec[key] is not None:
            if not isinstance(dec[key], list) or len(dec[key]) != n:
                raise CheckpointError(f"config.json field {key!r} should list {n} entries (one per layer)")
            dec[key] = [dec[key][i] for i in kept]
    for key in INDEX_LISTS - {"mlp_only_layers"}:
        if dec.get(key):
            dec[key] = [new[i] for i in dec[key] if i in new]
    for key in THRESHOLDS:
        if isinstance(dec.get(key), int):
            dec[key] = sum(1 for i in kept if i < dec[key])

    skips = _existing_skips(dec, n)
    skips = {new[i]: s for i, s in skips.items() if i in new}
    for i, blocks in plan.skip_map().items():
        skips[i] = sorted(set(skips.get(i, [])) | set(blocks))
    dec["num_hidden_layers"] = len(kept)
    _write_skips(out, dec, skips, arch)
    return out


def _rewrite_moe_sparsity(dec: dict, kept: list[int], new: dict[int, int]) -> None:
    """Qwen-MoE style: layer i is sparse iff i not in mlp_only_layers and (i+1) % decoder_sparse_step == 0.

    The step rule does not survive renumbering, so the dense layers are listed explicitly with step 1.
    """
    if "decoder_sparse_step" not in dec and "mlp_only_layers" not in dec:
        return
    step = int(dec.get("decoder_sparse_step") or 1)
    only = set(dec.get("mlp_only_layers") or [])
    experts = dec.get("num_experts", dec.get("num_local_experts", 0)) or 0
    dense = {i for i in range(dec["num_hidden_layers"]) if i in only or not (experts > 0 and (i + 1) % step == 0)}
    if "decoder_sparse_step" in dec:
        dec["decoder_sparse_step"] = 1
    dec["mlp_only_layers"] = [new[i] for i in kept if i in dense]


def _existing_skips(dec: dict, n: int) -> dict[int, list[str]]:
    plc = dec.get("per_layer_config") or {}
    out: dict[int, list[str]] = {}
    for key, entry in plc.items():
        extra = set(entry) - {"skip"}
        if extra:
            raise CheckpointError(
                f"per_layer_config[{key}] overrides {sorted(extra)}; hfprune only prunes skip-only per-layer configs"
            )
        if entry.get("skip"):
            out[int(key)] = sorted(entry["skip"])
    return out


def _write_skips(out: dict, dec: dict, skips: dict[int, list[str]], arch: Architecture) -> None:
    """Record the skip map and switch the model type to the shipped modeling code when one is present."""
    skips = {i: s for i, s in sorted(skips.items()) if s}
    model_type = str(out.get("model_type", ""))
    if not skips:
        dec.pop("per_layer_config", None)
        if model_type.startswith(SKIP_MODEL_TYPE_PREFIX):
            base = out.pop("hfprune_base")
            out["model_type"] = base["model_type"]
            out["architectures"] = [base["architecture"]]
            out.pop("auto_map", None)
        return
    if arch.text_config_key:
        raise CheckpointError("attention/FFN skips are supported for text-only causal LMs; drop whole layers instead")
    if arch.no_skips:
        raise CheckpointError(f"{base_model_type(model_type)}: attention/FFN sub-blocks cannot be removed "
                              f"({arch.no_skips}); drop whole layers instead")
    if arch.no_attention_skip and any("attention" in s for s in skips.values()):
        raise CheckpointError(f"{base_model_type(model_type)}: attention sub-blocks cannot be removed exactly "
                              f"({arch.no_attention_skip}); drop whole layers or skip FFNs (--skip-mlp) instead")
    width = len(str(max(skips)))
    dec["per_layer_config"] = {str(i).zfill(width): {"skip": s} for i, s in skips.items()}
    if not model_type.startswith(SKIP_MODEL_TYPE_PREFIX):
        architectures = out.get("architectures") or []
        causal = next((a for a in architectures if a.endswith("ForCausalLM")), None)
        if causal is None:
            raise CheckpointError("config.json names no *ForCausalLM architecture; cannot ship skip-map modeling code")
        out["hfprune_base"] = {"model_type": base_model_type(model_type), "architecture": causal}
        out["model_type"] = SKIP_MODEL_TYPE_PREFIX + model_type
    out["architectures"] = [SKIP_MODEL_CLASS]
    out["auto_map"] = dict(AUTO_MAP)
