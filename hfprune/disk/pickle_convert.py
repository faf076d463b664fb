"""Convert a pickle (.bin) checkpoint to safetensors, shard by shard. Only used with an explicit --allow-pickle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import CheckpointError

PICKLE_INDEX = "pytorch_model.bin.index.json"


def convert_pickle_checkpoint(source: Path, dest: Path) -> Path:
    """Write safetensors shards (and an index) for the .bin shards of `source` into `dest`; return `dest`."""
    import torch
    from safetensors.torch import save_file

    dest.mkdir(parents=True)
    index_path = source / PICKLE_INDEX
    if index_path.is_file():
        from .checkpoint import read_weight_map

        shards = list(dict.fromkeys(read_weight_map(index_path)[0].values()))
    else:
        shards = sorted(p.name for p in source.glob("*.bin"))
    if not shards:
        raise CheckpointError(f"{source} has no .bin weights to convert")
    weight_map = {}
    total = 0
    for k, shard in enumerate(shards, start=1):
        if not (source / shard).is_file():
            raise CheckpointError(f"{PICKLE_INDEX} lists {shard}, which is not in {source}")
        try:
            # weights_only refuses arbitrary pickled objects: tensors and plain containers only
            state = torch.load(source / shard, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # noqa: BLE001 - every failure means the same thing to the user
            raise CheckpointError(f"cannot read {shard} as a weights-only pickle ({type(e).__name__})") from None
        name = f"model-{k:05d}-of-{len(shards):05d}.safetensors" if len(shards) > 1 else "model.safetensors"
        tensors = {key: t.detach().clone().contiguous() for key, t in state.items()}  # clone: unshare tied storage
        save_file(tensors, str(dest / name), metadata={"format": "pt"})
        for key, t in tensors.items():
            weight_map[key] = name
            total += t.numel() * t.element_size()
        del state, tensors
    if len(shards) > 1:
        (dest / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    for p in source.iterdir():
        if p.is_file() and p.suffix != ".bin" and p.name != PICKLE_INDEX:
            shutil.copyfile(p, dest / p.name)
    return dest
