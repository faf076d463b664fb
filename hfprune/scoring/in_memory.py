"""The in-memory driver: passes over a loaded model (forward.LayerStack), batch by batch.

A branch (the stream with one more block removed) is replayed from the cached residual stream where it leaves the
pass's own: the layers before it return the cached state instead of recomputing it. `cached=False` recomputes
every branch from the embeddings and must give the same logits (the naive reference that tests and bench compare).
"""

from __future__ import annotations

from .forward import LayerStack
from .passes import Branch, Projection, bypass_kwargs, with_branch


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
            split=frozenset(), upto: int | None = None, desc: str = "") -> None:
        import torch

        attn, mlp, branches, split = set(attn), set(mlp), list(branches), set(split)
        on_layer = getattr(observer, "on_layer", None)
        on_split = getattr(observer, "on_split", None)
        on_end = getattr(observer, "on_end", None) if upto is None else None
        replay = self.cached and bool(branches) and on_end is not None
        mid = replay and not self.arch.parallel and any(b.block == "mlp" for b in branches)
        last = self.num_layers - 1 if upto is None else upto
        with torch.no_grad():
            for bi, ids in enumerate(self._bar(self.ids, desc)):
                cap = None
                if on_layer is not None or replay or (on_split is not None and split):
                    cap = self.stack.capture(ids, mid=mid, split=split if on_split else (), upto=last,
                                             **bypass_kwargs(attn, mlp))
                for i in range(last + 1) if on_layer is not None or on_split is not None else ():
                    if on_split is not None and i in cap.splits:
                        on_split(i, bi, *cap.splits[i])
                    if on_layer is not None:
                        on_layer(i, bi, cap.states[i], cap.states[i + 1])
                if on_end is not None:
                    ref = self._reference_logits(bi) if reference else None
                    states, mids = (cap.states, cap.mids) if cap is not None else (None, None)
                    on_end(bi, ref, ((br, self._branch_logits(ids, br, attn, mlp, states, mids)) for br in branches))

    def layer_split(self, i: int, bi: int, x, skip_attention: bool = False) -> tuple:
        import torch

        with torch.no_grad():
            cap = self.stack.capture(self.ids[bi], split={i}, upto=i, input_at=(i, x), replay_from=i, hidden_in=x,
                                     skip_attention={i} if skip_attention else set())
        return cap.splits[i]

    def _projection(self, projection: Projection):
        if projection.layer < 0:
            return self.stack.model.get_input_embeddings()
        mlp = getattr(self.stack.layers[projection.layer], self.arch.mlp_module)
        return getattr(mlp, projection.name.rsplit(".", 1)[-1])

    def read(self, projection: Projection) -> tuple:
        import torch

        module = self._projection(projection)
        bias = getattr(module, "bias", None)
        return module.weight.data.to(torch.float32).clone(), None if bias is None else bias.data.to(torch.float32)

    def write(self, projection: Projection, weight, bias=None) -> None:
        module = self._projection(projection)
        module.weight.data.copy_(weight.to(module.weight.dtype))
        if bias is not None:
            module.bias.data.copy_(bias.to(module.bias.dtype))

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
