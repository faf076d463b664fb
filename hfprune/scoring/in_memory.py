"""The in-memory driver: passes over a loaded model (forward.LayerStack), batch by batch.

A branch (the stream with one more block removed) is replayed from the cached residual stream where it leaves the
pass's own: the layers before it return the cached state instead of recomputing it. `cached=False` recomputes
every branch from the embeddings and must give the same logits (the naive reference that tests and bench compare).
"""

from __future__ import annotations

from .forward import LayerStack
from .passes import Branch, bypass_kwargs, with_branch


class InMemoryDriver:
    """passes.Driver over a model held in memory."""

    def __init__(self, stack: LayerStack, batches: list, cached: bool = True, progress: bool = False):
        self.stack = stack
        self.ids = batches
        self.cached = cached
        self.progress = progress
        self.arch = stack.arch
        self.num_layers = len(stack)
        self._reference: dict[int, object] = {}  # the unpruned model's logits per batch, computed once

    def _bar(self, iterable, desc: str):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, disable=not self.progress, leave=False)

    def run(self, observer, *, attn=frozenset(), mlp=frozenset(), branches=(), reference: bool = False,
            desc: str = "") -> None:
        import torch

        attn, mlp, branches = set(attn), set(mlp), list(branches)
        on_layer = getattr(observer, "on_layer", None)
        on_end = getattr(observer, "on_end", None)
        replay = self.cached and bool(branches)
        mid = replay and not self.arch.parallel and any(b.block == "mlp" for b in branches)
        with torch.no_grad():
            for bi, ids in enumerate(self._bar(self.ids, desc)):
                states = mids = None
                if on_layer is not None or replay:
                    _, states, mids = self.stack.capture(ids, mid=mid, **bypass_kwargs(attn, mlp))
                if on_layer is not None:
                    for i in range(self.num_layers):
                        on_layer(i, bi, states[i], states[i + 1])
                if on_end is not None:
                    ref = self._reference_logits(bi) if reference else None
                    on_end(bi, ref, ((br, self._branch_logits(ids, br, attn, mlp, states, mids)) for br in branches))

    def _reference_logits(self, bi: int):
        if bi not in self._reference:
            self._reference[bi] = self.stack.logits(self.ids[bi])
        return self._reference[bi]

    def _branch_logits(self, ids, br: Branch, attn: set[int], mlp: set[int], states, mids):
        k = br.layer
        if not self.cached:
            return self.stack.logits(ids, **bypass_kwargs(*with_branch(attn, mlp, br)))
        if br.block == "layer":  # the layers after k see layer k's input
            return self.stack.logits(ids, **bypass_kwargs(attn, mlp), replay_from=k + 1, hidden_in=states[k])
        if br.block == "mlp" and not self.arch.parallel and mids[k] is not None:
            # layer k's output becomes its post-attention residual
            return self.stack.logits(ids, **bypass_kwargs(attn, mlp), replay_from=k + 1, hidden_in=mids[k])
        # layer k reruns from its input with the block removed
        return self.stack.logits(ids, **bypass_kwargs(*with_branch(attn, mlp, br)), replay_from=k, hidden_in=states[k])

    def backward(self, removed: set[int], reduce, desc: str = "") -> list:
        import torch

        model = self.stack.model
        model.zero_grad(set_to_none=True)
        total = sum(ids.shape[0] for ids in self.ids)
        for ids in self._bar(self.ids, desc):
            with self.stack.bypassed(drop=set(removed)):
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            (loss * ids.shape[0] / total).backward()
        with torch.no_grad():
            scores = [None if i in removed else reduce(layer) for i, layer in enumerate(self.stack.layers)]
        model.zero_grad(set_to_none=True)
        return scores
