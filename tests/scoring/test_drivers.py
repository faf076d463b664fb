"""The two drivers give an observer the same tensors: the stream around each layer, a layer's output split into its
residual terms, a pass cut short after a layer, a single layer run alone, and passes after a projection is
rewritten."""

import pytest
import torch

from hfprune.disk.checkpoint import Checkpoint
from hfprune.scoring.forward import LayerStack
from hfprune.scoring.in_memory import InMemoryDriver
from hfprune.scoring.passes import Projection
from hfprune.scoring.streamed_model import StreamedModel
from hfprune.scoring.streaming import StreamingDriver


class Recorder:
    def __init__(self):
        self.layers, self.splits = {}, {}

    def on_layer(self, i, bi, x, y):
        self.layers[i, bi] = (x.clone(), y.clone())

    def on_split(self, i, bi, y, m):
        assert (i, bi) not in self.layers  # a layer's split comes before its on_layer
        self.splits[i, bi] = (y.clone(), m.clone())


def _drivers(folder):
    from transformers import AutoModelForCausalLM

    ckpt = Checkpoint.open(folder)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 64, (2, 12), generator=g) for _ in range(2)]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    in_memory = InMemoryDriver(LayerStack(model, ckpt.arch), batches)
    streamed = StreamedModel(folder, ckpt, "float32", needs_logits=False)
    return in_memory, StreamingDriver(streamed, streamed.prepare(batches), budget=1 << 30)


def _same(a: dict, b: dict):
    assert a.keys() == b.keys() and a
    for key in a:
        for u, v in zip(a[key], b[key]):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", ["llama", "phi"])  # sequential, parallel attention and FFN
def test_both_drivers_observe_the_same_split_stream_and_rewritten_projections(model_type, tiny_checkpoints):
    drivers = _drivers(tiny_checkpoints(model_type, 5))
    records = []
    for driver in drivers:
        before, after = Recorder(), Recorder()
        driver.run(before, attn={3}, mlp={3}, split={1, 2}, upto=3)
        projection = Projection(1, f"{driver.arch.layer_prefixes[0]}1.{driver.arch.mlp_module}."
                                   f"{'down_proj' if model_type == 'llama' else 'fc2'}")
        weight, bias = driver.read(projection)
        driver.write(projection, 2 * weight, None if bias is None else 2 * bias)
        driver.run(after, split={1}, upto=2)
        alone = driver.layer_split(1, 0, before.layers[1, 0][0])
        records.append((before, after, alone, driver.read(projection)))
    (b0, a0, alone0, read0), (b1, a1, alone1, read1) = records
    _same(b0.layers, b1.layers)
    _same(b0.splits, b1.splits)
    _same(a0.layers, a1.layers)
    _same(a0.splits, a1.splits)
    assert max(i for i, _ in b0.layers) == 3 and set(b0.splits) == {(1, 0), (1, 1), (2, 0), (2, 1)}
    for (y, m), (x, out) in ((b0.splits[k], b0.layers[k]) for k in b0.splits):
        torch.testing.assert_close(y + m, out)  # the terms add up to the layer's output
    # the rewritten projection doubled what layer 1's FFN adds, and nothing before it
    y_before, m_before = b0.splits[1, 0]
    y_after, m_after = a0.splits[1, 0]
    torch.testing.assert_close(y_after, y_before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m_after, 2 * m_before, rtol=1e-4, atol=1e-5)
    _same({0: alone0}, {0: alone1})
    torch.testing.assert_close(alone0[1], m_after, rtol=1e-4, atol=1e-5)
    _same({0: tuple(t for t in read0 if t is not None)}, {0: tuple(t for t in read1 if t is not None)})


def test_a_rewritten_input_embedding_reaches_layer_0_in_both_drivers(tiny_checkpoints):
    drivers = _drivers(tiny_checkpoints("llama", 4, tie_word_embeddings=False))
    seen = []
    for driver in drivers:
        projection = Projection(-1, "model.embed_tokens")
        weight, _ = driver.read(projection)
        driver.write(projection, 3 * weight)
        rec = Recorder()
        driver.run(rec, upto=0)
        seen.append(rec)
    _same(seen[0].layers, seen[1].layers)
    torch.testing.assert_close(seen[0].layers[0, 0][0], 3 * weight[drivers[0].ids[0]])
