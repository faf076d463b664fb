"""Running a loaded causal LM with blocks bypassed, capturing and replaying the residual stream.

Bypassing patches instance `forward`s for the duration of a context: a removed layer returns its input, a removed
attention or FFN sub-block returns zeros (its residual branch adds nothing, and post-norms of zero are zero).
Replaying from layer j makes every earlier layer return a cached hidden state without computing, so the model's
own forward (masks, position embeddings, final norm, logit soft-capping) runs unchanged from layer j onward.
"""

from __future__ import annotations

import contextlib

from ..disk.architectures import Architecture


def decoder_of(model):
    """The module holding the decoder layers. get_decoder() returns the causal LM itself for some classes whose
    base_model_prefix differs from their attribute name (Llama 4 text); the stack is then `model.model`."""
    decoder = model.get_decoder()
    if not hasattr(decoder, "layers") and hasattr(getattr(model, "model", None), "layers"):
        decoder = model.model
    return decoder


def _hidden(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _zero_attention(*args, **kwargs):
    import torch

    return torch.zeros_like(_hidden(args, kwargs)), None


def _zero_mlp(*args, **kwargs):
    import torch

    return torch.zeros_like(_hidden(args, kwargs))


def _zero_mlp_pair(*args, **kwargs):
    return _zero_mlp(*args, **kwargs), None


def layer_result(arch: Architecture, hidden):
    """What a bypassed layer returns: the hidden state, in a tuple where the model's loop indexes the output."""
    return (hidden,) if arch.layer_returns_tuple else hidden


def replaying(arch: Architecture, hidden):
    """A layer forward that computes nothing and returns `hidden` as the layer's output."""
    return lambda *a, **k: layer_result(arch, hidden)


def sub_block_stand_ins(layer, arch: Architecture, attention: bool, mlp: bool) -> list[tuple]:
    """(module, forward) pairs that make a layer's removed sub-blocks add nothing to the residual stream: each
    returns zeros (and post-norms of zero are zero), in the shape of output its layer's code unpacks."""
    pairs = []
    if attention:
        pairs.append((getattr(layer, arch.attention_module), _zero_attention))
    if mlp:
        pair = arch.mlp_returns_tuple or getattr(layer, "is_moe_layer", False)
        pairs.append((getattr(layer, arch.mlp_module), _zero_mlp_pair if pair else _zero_mlp))
    return pairs


@contextlib.contextmanager
def forwards_replaced(pairs):
    """Within the context each (module, forward) pair's module runs `forward` instead of its own."""
    replaced = []
    try:
        for module, forward in pairs:
            module.forward = forward
            replaced.append(module)
        yield
    finally:
        for module in replaced:
            module.__dict__.pop("forward", None)


class LayerStack:
    """A loaded causal LM seen as a stack of decoder layers with attention and FFN sub-blocks."""

    def __init__(self, model, arch: Architecture):
        self.model = model
        self.arch = arch
        self.layers = decoder_of(model).layers

    def __len__(self) -> int:
        return len(self.layers)

    @contextlib.contextmanager
    def bypassed(self, drop=(), skip_attention=(), skip_mlp=(), replay_from: int | None = None, hidden_in=None):
        """Run with layers `drop` removed and sub-blocks skipped; with `replay_from=j`, layers < j return `hidden_in`."""
        stand_ins = []
        for i in drop:
            stand_ins.append((self.layers[i], lambda *a, **k: layer_result(self.arch, _hidden(a, k))))
        for i in set(skip_attention) | set(skip_mlp):
            stand_ins += sub_block_stand_ins(self.layers[i], self.arch, i in skip_attention, i in skip_mlp)
        if replay_from is not None:
            stand_ins += [(self.layers[i], replaying(self.arch, hidden_in)) for i in range(replay_from)]
        with forwards_replaced(stand_ins):
            yield self

    def logits(self, input_ids, attention_mask=None, **bypass):
        """Next-token logits with the given bypasses (see `bypassed`)."""
        with self.bypassed(**bypass):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def capture(self, input_ids, attention_mask=None, mid: bool = False, **bypass):
        """(logits, states, mids): states[i] is layer i's input and states[L] the last layer's output (before the
        final norm); mids[i] is the residual between layer i's attention and FFN (only with mid=True)."""
        states: dict[int, object] = {}
        mids: dict[int, object] = {}
        handles = []
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            handles.append(layer.register_forward_pre_hook(
                lambda m, a, k, i=i: states.__setitem__(i, _hidden(a, k)), with_kwargs=True))
            if mid and self.arch.mlp_entry and not self.arch.parallel:
                entry = getattr(layer, self.arch.mlp_entry)
                handles.append(entry.register_forward_pre_hook(
                    lambda m, a, k, i=i: mids.__setitem__(i, _hidden(a, k)), with_kwargs=True))
        handles.append(self.layers[n - 1].register_forward_hook(
            lambda m, a, k, out: states.__setitem__(n, out[0] if isinstance(out, tuple) else out), with_kwargs=True))
        try:
            logits = self.logits(input_ids, attention_mask, **bypass)
        finally:
            for h in handles:
                h.remove()
        return logits, [states[i] for i in range(n + 1)], [mids.get(i) for i in range(n)]
