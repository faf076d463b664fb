"""Surgery speed and memory vs the physical limit (cp) and the naive transformers route, in one run.

Builds a ~1.4 GB bf16 sharded Llama-shaped checkpoint (written tensor by tensor with safetensors, no model
instantiated), then times, each in a fresh process from a warm page cache:
  cp -r                                        the floor: every byte read and written once
  hfprune prune --drop-last 6                  this project
  transformers load -> delete layers -> save   what most scripts do

Usage: python bench/bench_prune.py [--work DIR] [--layers 14] [--drop 6] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from measure import measure_median, row  # noqa: E402

NAIVE = r"""
import sys, torch
from transformers import AutoModelForCausalLM
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
model.model.layers = model.model.layers[: len(model.model.layers) - n]
model.config.num_hidden_layers = len(model.model.layers)
model.save_pretrained(out, max_shard_size="300MB")
"""


def build_checkpoint(folder: Path, layers: int, hidden: int = 2048, inter: int = 5504, vocab: int = 32000,
                     kv_heads: int = 4, heads: int = 16, shard_bytes: int = 300 * 2**20) -> int:
    """Write a Llama-shaped bf16 checkpoint shard by shard; return its total bytes."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    head_dim = hidden // heads
    shapes = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
        })
    shapes.update({"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)})
    shards, current, size = [], {}, 0
    for name, shape in shapes.items():
        n = 2
        for d in shape:
            n *= d
        if current and size + n > shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = shape
        size += n
    shards.append(current)
    g = torch.Generator().manual_seed(0)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards, start=1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        tensors = {name: (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16) for name, shape in shard.items()}
        save_file(tensors, str(folder / fname), metadata={"format": "pt"})
        for name, t in tensors.items():
            weight_map[name] = fname
            total += t.numel() * 2
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                     "weight_map": weight_map}))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "vocab_size": vocab, "rms_norm_eps": 1e-5,
              "max_position_embeddings": 4096, "tie_word_embeddings": False, "dtype": "bfloat16",
              "rope_theta": 500000.0, "hidden_act": "silu"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--layers", type=int, default=14)
    ap.add_argument("--drop", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3, help="runs per contender; the median is reported")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="hfprune-bench-"))
    src = work / "src"
    try:
        total = build_checkpoint(src, args.layers)
        print(f"checkpoint: {args.layers} layers, {total / 2**30:.2f} GiB bf16, "
              f"{len(list(src.glob('*.safetensors')))} shards\n")
        hf = [sys.executable, "-m", "hfprune", "prune", str(src), "--no-progress", "-o", str(work / "out")]
        cp = measure_median(["cp", "-r", str(src), str(work / "out")], src, work / "out", args.repeats)
        ours = measure_median(hf + ["--drop-last", str(args.drop)], src, work / "out", args.repeats)
        worst = measure_median(hf + ["--drop-layers", "0"], src, work / "out", args.repeats)
        naive = measure_median([sys.executable, "-c", NAIVE, str(src), str(work / "out"), str(args.drop)],
                               src, work / "out", args.repeats)
        print(f"median of {args.repeats} runs each, warm page cache, sync inside the timed region\n")
        print("| contender | wall s | vs cp | peak RSS MiB |")
        print("|---|---|---|---|")
        print(row("cp -r (floor)", cp))
        print(row(f"hfprune prune --drop-last {args.drop}", ours, cp))
        print(row("hfprune prune --drop-layers 0 (every layer renamed: all shards rewritten)", worst, cp))
        print(row("transformers load, delete, save_pretrained", naive, cp))
        print(f"\nhfprune vs naive transformers: {naive['wall_s'] / ours['wall_s']:.1f}x faster, "
              f"{naive['peak_rss_bytes'] / ours['peak_rss_bytes']:.1f}x less peak memory")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
