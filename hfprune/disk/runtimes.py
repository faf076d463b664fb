"""What other runtimes assume about a model's layers, and whether a plan breaks it.

transformers reads every per-layer property from config.json (layer_types, no_rope_layers), so any plan is exact
there. llama.cpp derives some of them from a fixed period unless told otherwise: Gemma 2/3 and Cohere 2 put a
full-attention layer every p-th layer and slide in the others (its loader also reads a per-layer array, which
`hfprune export-gguf` writes; its converter does not for Gemma), SmolLM3 drops RoPE every 4th layer (fixed in its
code). Removing layers that are not whole aligned periods moves those layers, and a plainly converted model then
silently runs some layers with the wrong attention type or positions.
"""

from __future__ import annotations

from ..plan import Plan
from .model_types import llama_cpp_period

def period_warnings(model_type: str, decoder_config: dict, plan: Plan) -> list[str]:
    """One line per runtime assumption the plan breaks (empty when it keeps every period or the model has none)."""
    spec = llama_cpp_period(model_type)
    if spec is None or not plan.drop_layers:
        return []
    key, marker, what, period_keys, default = spec.config_list, spec.marker, spec.what, spec.period_keys, spec.default
    period = next((decoder_config[k] for k in period_keys if isinstance(decoder_config.get(k), int)), default)
    n = plan.num_layers
    if period < 2:
        return []
    values = decoder_config.get(key)
    special = ([v == marker for v in values] if isinstance(values, list) and len(values) == n
               else [(i + 1) % period == 0 for i in range(n)])
    if special != [(i + 1) % period == 0 for i in range(n)]:
        return []  # the source itself is not periodic: nothing for a runtime to assume
    kept = [special[i] for i in plan.kept_layers]
    wrong = [j for j, s in enumerate(kept) if s != ((j + 1) % period == 0)]
    if not wrong:
        return []
    removed = len(plan.drop_layers)
    whole = max(period, round(removed / period) * period)
    start = (n // period) * period - whole
    hint = (f"e.g. --drop-layers {start}-{start + whole - 1} ({whole} layers)" if start >= 0 and n % period == 0
            else f"remove whole aligned blocks of {period} layers")
    layers = f"{', '.join(map(str, wrong[:8]))}{'...' if len(wrong) > 8 else ''}"
    if not spec.in_code:  # llama.cpp reads a per-layer array when one is written
        return [f"llama.cpp's converter assumes a {what} layer every {period} layers of {model_type}; after this plan "
                f"layers {layers} break that period, so a plain convert_hf_to_gguf.py conversion would run them "
                f"wrongly (transformers is exact). `hfprune export-gguf` writes the per-layer pattern that llama.cpp "
                f"reads; other GGUF converters need whole periods removed: {hint}"]
    return [f"llama.cpp fixes a {what} layer every {period} layers of {model_type} in its code; after this plan layers "
            f"{layers} break that period, so no GGUF conversion can run them right (transformers is exact; "
            f"`hfprune export-gguf` refuses it). To stay convertible remove whole periods: {hint}"]
