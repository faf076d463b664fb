"""Parameter counts per layer and per sub-block, read from the safetensors headers, and size targets.

Small models are mostly embeddings (Qwen2.5-0.5B loses 14% of its parameters when 25% of its layers go), and an
attention sub-block is a fraction of an FFN's, so recipes are compared at equal parameters: `--target-params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import PlanError


@dataclass(frozen=True)
class Sizes:
    total: int
    layer: list[int]  # every tensor of the layer
    attention: list[int]  # the attention sub-block's own tensors (with its norms)
    mlp: list[int]  # the FFN sub-block's own tensors (with its norms)

    def removed(self, drop=(), skip_attention=(), skip_mlp=()) -> int:
        drop = set(drop)
        return (sum(self.layer[i] for i in drop) + sum(self.attention[i] for i in skip_attention if i not in drop)
                + sum(self.mlp[i] for i in skip_mlp if i not in drop))


def sizes(ckpt) -> Sizes:
    """Parameters of the whole checkpoint, of each decoder layer and of each layer's attention / FFN sub-block."""
    n = ckpt.num_layers
    layer, attention, mlp = [0] * n, [0] * n, [0] * n
    total = 0
    for t in ckpt.tensors():
        total += t.numel
        loc = ckpt.layer_of(t.name)
        if loc is None or loc[0] >= n:
            continue
        i, rest = loc
        layer[i] += t.numel
        block = ckpt.arch.sub_block_of(rest)
        if block == "attention":
            attention[i] += t.numel
        elif block == "mlp":
            mlp[i] += t.numel
    return Sizes(total, layer, attention, mlp)


def params_to_remove(target: float, total: int) -> int:
    """How many parameters must go so the model has at most `target` parameters: a fraction (0, 1) of `total` or
    an absolute count (> 1)."""
    if not math.isfinite(target) or target <= 0:
        raise PlanError(f"--target-params {target}: give a fraction of the source's parameters in (0, 1) or a "
                        "parameter count")
    keep = round(target * total) if target < 1 else int(target)
    if keep >= total:
        raise PlanError(f"--target-params {target:g}: the source has {total:,} parameters, already within "
                        f"{keep:,}; nothing to remove")
    return total - keep


def layers_for(need: int, layer_sizes: list[int], order: list[int]) -> list[int]:
    """The layers of `order` (best candidates first) taken until they hold at least `need` parameters."""
    chosen, removed = [], 0
    for i in order:
        if removed >= need:
            break
        chosen.append(i)
        removed += layer_sizes[i]
    if removed < need:
        raise PlanError(f"--target-params: removing every candidate layer frees {removed:,} parameters, fewer than "
                        f"the {need:,} the target needs")
    return chosen


def block_size_for(need: int, layer_sizes: list[int]) -> int:
    """A contiguous block's length that frees `need` parameters, at the mean layer size."""
    mean = sum(layer_sizes) / len(layer_sizes)
    return max(1, math.ceil(need / mean))
