"""What a metric asks of a driver: passes over the layers, observed.

A metric is written once, as an observer of passes; a driver runs the passes over a model, either loaded in memory
(`in_memory.InMemoryDriver`) or read from disk one layer at a time (`streaming.StreamingDriver`). Both drivers give
an observer exactly the same tensors, so a metric's scores do not depend on which one ran it.

One pass runs the calibration batches through the model with sub-blocks `attn`/`mlp` removed (a layer in both is
removed whole) and calls, for batch `bi`:

- `observer.on_split(i, bi, y, m)` for the layers the pass was asked to `split`, just before `on_layer(i, ...)`:
  layer i's output as its two residual terms, y the stream the FFN's output is added to and m what the FFN adds;
- `observer.on_layer(i, bi, x, y)` with layer i's input and output on that stream (i = 0 .. L-1, or up to the
  pass's `upto` layer, where it stops: no head, no `on_end`);
- `observer.on_end(bi, reference, branches)` once the batch has gone through every layer: `reference` is the
  unpruned model's logits (when the pass asks for it, else None) and `branches` yields, one at a time,
  `(branch, logits)` for every requested `Branch`: the logits of the same stream with one more block removed.

An observer defines the hooks it needs; a driver skips work nobody observes. Between passes an algorithm may
`write` a new value of a layer's FFN output projection or of the input embedding (a `Projection`): every later pass
computes with it (the linear replacement fits block after block on the model as replaced so far).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol


@dataclass(frozen=True)
class Branch:
    """A stream that follows the pass's own until `layer`, where it also loses `block` ("layer", "attention" or
    "mlp")."""

    layer: int
    block: str = "layer"


@dataclass(frozen=True)
class Projection:
    """Layer `layer`'s FFN output projection, or (layer -1) the input embedding; `name` its tensors' on-disk
    prefix ('model.layers.3.mlp.down_proj', 'model.embed_tokens')."""

    layer: int
    name: str


class Observers:
    """Several observers of one pass, each called in turn with the hooks it defines."""

    def __init__(self, observers: list):
        self.observers = observers

    def on_split(self, *args):
        for o in self.observers:
            if hasattr(o, "on_split"):
                o.on_split(*args)

    def on_layer(self, *args):
        for o in self.observers:
            if hasattr(o, "on_layer"):
                o.on_layer(*args)


def bypass_kwargs(attn: set[int], mlp: set[int]) -> dict:
    """LayerStack.bypassed's arguments for these removed sub-blocks: a layer that loses both is dropped."""
    both = set(attn) & set(mlp)
    return {"drop": both, "skip_attention": set(attn) - both, "skip_mlp": set(mlp) - both}


def with_branch(attn: set[int], mlp: set[int], branch: Branch) -> tuple[set[int], set[int]]:
    """The removed sub-blocks of `branch`'s stream."""
    a = set(attn) | ({branch.layer} if branch.block in ("layer", "attention") else set())
    m = set(mlp) | ({branch.layer} if branch.block in ("layer", "mlp") else set())
    return a, m


class Driver(Protocol):
    arch: object  # disk.architectures.Architecture
    num_layers: int
    ids: list  # the calibration batches' token ids, LongTensor [b, T] each

    def run(self, observer, *, attn: set[int] = frozenset(), mlp: set[int] = frozenset(),
            branches: Iterable[Branch] = (), reference: bool = False, split: set[int] = frozenset(),
            upto: int | None = None, desc: str = "") -> None:
        """One pass (or several, when the branches' streams do not fit in memory together) observed by `observer`."""

    def layer_split(self, i: int, bi: int, x, skip_attention: bool = False) -> tuple:
        """Layer i alone on input x with batch bi's arguments: its output's (y, m) as `on_split` gives them."""

    def read(self, projection: Projection) -> tuple:
        """(weight, bias or None) of `projection` as later passes use it, float32."""

    def write(self, projection: Projection, weight, bias=None) -> None:
        """Later passes compute with this weight (and bias)."""

    def backward(self, removed: set[int], reduce, desc: str = "") -> list:
        """The LM loss on the calibration data, each batch weighted by its share of the windows, backpropagated
        with layers `removed` bypassed; returns reduce(layer) for every other layer (None for removed ones), with the
        layer's parameters' `.grad` set."""
