"""Running a loaded causal LM with blocks bypassed, capturing and replaying the residual stream.

Bypassing patches instance `forward`s for the duration of a context: a removed layer returns its input, a removed
attention or FFN sub-block returns zeros (its residual branch adds nothing, and post-norms of zero are zero).
Replaying from layer j makes every earlier layer return a cached hidden state without computing, so the model's
own forward (masks, position embeddings, final norm, logit soft-capping) runs unchanged from layer j onward.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

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


class _Stop(Exception):
    """Raised by a hook to end a forward after the last layer a pass needs."""


class FfnSplit:
    """While open, records a layer's output as its two residual terms: `terms(out)` gives (y, m), y the stream the
    FFN's output is added to and m what the FFN adds (y + m = out). Sequential layers show y at the FFN's entry;
    parallel ones, and layers without an entry module, show m at the FFN's output."""

    def __init__(self, layer, arch: Architecture):
        self.store: dict = {}
        if arch.parallel or not arch.mlp_entry:
            self._handle = getattr(layer, arch.mlp_module).register_forward_hook(
                lambda m, a, out: self.store.__setitem__("m", out[0] if isinstance(out, tuple) else out))
        else:
            self._handle = getattr(layer, arch.mlp_entry).register_forward_pre_hook(
                lambda m, a, k: self.store.__setitem__("y", _hidden(a, k)), with_kwargs=True)

    def terms(self, out) -> tuple:
        if "m" in self.store:
            return out - self.store["m"], self.store["m"]
        return self.store["y"], out - self.store["y"]

    def __enter__(self) -> "FfnSplit":
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


@dataclass
class Capture:
    """One forward's residual stream: states[i] is layer i's input and states[i + 1] its output (up to the last
    layer run); mids[i] the residual between layer i's attention and FFN (when asked for); splits[i] layer i's
    output as FfnSplit's (y, m) (for the layers asked for)."""

    states: list
    mids: list
    splits: dict


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

    def capture(self, input_ids, mid: bool = False, split=(), upto: int | None = None, input_at=None,
                **bypass) -> Capture:
        """The residual stream of one forward with the given bypasses (see `bypassed`), run up to layer `upto`
        (default: the last; the head never runs). `input_at=(i, x)` makes layer i's input x."""
        n = len(self.layers)
        last = n - 1 if upto is None else upto
        states: dict[int, object] = {}
        mids: dict[int, object] = {}
        splits: dict[int, tuple] = {}
        with contextlib.ExitStack() as stack:
            if input_at is not None:
                i, x = input_at
                stack.enter_context(_removing(self.layers[i].register_forward_pre_hook(
                    lambda m, a, k: ((x,) + tuple(a[1:]), k) if a else (a, {**k, "hidden_states": x}),
                    with_kwargs=True)))
            for i, layer in enumerate(self.layers[:last + 1]):
                stack.enter_context(_removing(layer.register_forward_pre_hook(
                    lambda m, a, k, i=i: states.__setitem__(i, _hidden(a, k)), with_kwargs=True)))
                if mid and self.arch.mlp_entry and not self.arch.parallel:
                    stack.enter_context(_removing(getattr(layer, self.arch.mlp_entry).register_forward_pre_hook(
                        lambda m, a, k, i=i: mids.__setitem__(i, _hidden(a, k)), with_kwargs=True)))
                if i in split:
                    terms = stack.enter_context(FfnSplit(layer, self.arch))
                    stack.enter_context(_removing(layer.register_forward_hook(
                        lambda m, a, out, i=i, terms=terms: splits.__setitem__(i, terms.terms(_output(out))))))

            def stop(module, args, out):
                states[last + 1] = _output(out)
                raise _Stop

            stack.enter_context(_removing(self.layers[last].register_forward_hook(stop)))
            with self.bypassed(**bypass), contextlib.suppress(_Stop):
                self.model(input_ids=input_ids, use_cache=False)
        return Capture([states[i] for i in range(last + 2)], [mids.get(i) for i in range(last + 1)], splits)


def _output(out):
    return out[0] if isinstance(out, tuple) else out


@contextlib.contextmanager
def _removing(handle):
    try:
        yield handle
    finally:
        handle.remove()
