"""An independent reference for 'the original model with those blocks bypassed': forward hooks on the dense model.

A dropped layer returns its input; a skipped attention or FFN sub-block outputs zeros (the residual passes
through; post-norms of zero are zero). The dense model still runs every block and fills its full KV cache, so this
does not share any mechanism with the pruned checkpoint's shipped code.
"""

import contextlib

import torch


@contextlib.contextmanager
def bypassed(model, drop=(), skip_attention=(), skip_mlp=()):
    handles = []

    def identity_layer(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden

    def zero_attention(module, args, output):
        return (torch.zeros_like(output[0]),) + tuple(output[1:])

    def zero_mlp(module, args, output):
        if isinstance(output, tuple):
            return (torch.zeros_like(output[0]),) + tuple(output[1:])
        return torch.zeros_like(output)

    decoder = model.get_decoder()
    layers = decoder.layers if hasattr(decoder, "layers") else model.model.layers
    for i in drop:
        handles.append(layers[i].register_forward_hook(identity_layer, with_kwargs=True))
    for i in skip_attention:
        attention = next(n for n in ("self_attn", "attention") if hasattr(layers[i], n))
        handles.append(getattr(layers[i], attention).register_forward_hook(zero_attention))
    for i in skip_mlp:
        mlp = next(n for n in ("mlp", "feed_forward") if hasattr(layers[i], n))
        handles.append(getattr(layers[i], mlp).register_forward_hook(zero_mlp))
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
