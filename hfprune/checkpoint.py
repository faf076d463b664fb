"""A local checkpoint folder read from its headers only: config, shards, tensor locations, layer layout."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .architectures import Architecture, architecture_for
from .errors import CheckpointError
from .safetensors_io import SafetensorsFile, read_header

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def read_config(folder: Path) -> dict:
    """Parse config.json, with a clear error when it is missing or broken."""
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json; point SOURCE at a transformers checkpoint folder or Hub repo")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return config


def decoder_config(config: dict, arch: Architecture) -> dict:
    """The dict that holds num_hidden_layers and the per-layer fields (nested text_config for wrappers)."""
    if arch.text_config_key:
        return config[arch.text_config_key]
    return config


@dataclass
class Checkpoint:
    """Header-level view of a safetensors checkpoint folder; no tensor data is read."""

    path: Path
    config: dict
    arch: Architecture
    num_layers: int
    files: list[SafetensorsFile]
    index_metadata: dict | None  # None for a single-file checkpoint
    layer_prefix: str

    @classmethod
    def open(cls, path: str | Path, files: list[SafetensorsFile] | None = None) -> "Checkpoint":
        """Read config and safetensors headers; refuse pickle-only, corrupt or inconsistent checkpoints.

        `files` supplies headers read elsewhere (a Hub dry run reads them over HTTP); the folder then needs only
        config.json.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise CheckpointError(f"{folder} is not a folder")
        config = read_config(folder)
        arch = architecture_for(config)
        dec = decoder_config(config, arch)
        n = dec.get("num_hidden_layers")
        if not isinstance(n, int) or n < 1:
            raise CheckpointError(f"{folder}/config.json has no valid num_hidden_layers")
        if files is None:
            files, index_meta = _open_weights(folder)
        else:
            index_meta = {} if len(files) > 1 else None
        names = [t for f in files for t in f.tensors]
        prefix = next((p for p in arch.layer_prefixes if any(t.startswith(p) for t in names)), None)
        if prefix is None:
            raise CheckpointError(
                f"no tensor in {folder} starts with {' or '.join(arch.layer_prefixes)}; "
                "the weights do not match the declared architecture"
            )
        ckpt = cls(folder, config, arch, n, files, index_meta, prefix)
        for name in names:
            loc = ckpt.layer_of(name)
            if loc is not None and loc[0] >= n:
                raise CheckpointError(
                    f"tensor {name} belongs to layer {loc[0]} but config.json declares {n} layers "
                    "(extra prediction layers are not supported)"
                )
        return ckpt

    def layer_of(self, name: str) -> tuple[int, str] | None:
        """(layer index, rest of the name) for a layer tensor, else None."""
        if not name.startswith(self.layer_prefix):
            return None
        m = re.match(r"(\d+)\.(.+)", name[len(self.layer_prefix):])
        return (int(m.group(1)), m.group(2)) if m else None

    @property
    def sharded(self) -> bool:
        return self.index_metadata is not None

    def tensors(self):
        """Every TensorInfo, file by file."""
        for f in self.files:
            yield from f.tensors.values()

    @property
    def decoder_config(self) -> dict:
        return decoder_config(self.config, self.arch)


def _open_weights(folder: Path) -> tuple[list[SafetensorsFile], dict | None]:
    index_path = folder / INDEX_NAME
    single = folder / SINGLE_NAME
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
            weight_map = index["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CheckpointError(f"{index_path} is not a valid safetensors index (no weight_map)") from None
        shard_names = sorted(set(weight_map.values()))
        missing = [s for s in shard_names if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(f"{index_path.name} lists {missing[0]}, which is not in {folder}; the download is incomplete")
        files = [read_header(folder / s) for s in shard_names]
        actual = {t: f.path.name for f in files for t in f.tensors}
        for tensor, shard in weight_map.items():
            if actual.get(tensor) != shard:
                raise CheckpointError(f"{index_path.name} places {tensor} in {shard} but that shard does not hold it")
        return files, dict(index.get("metadata") or {})
    if single.is_file():
        return [read_header(single)], None
    others = sorted(folder.glob("*.safetensors"))
    if others:
        raise CheckpointError(f"{folder} has {others[0].name} but no {INDEX_NAME}; the checkpoint is incomplete")
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"{folder} has only pickle weights ({pickles[0]}); pickles can run code when loaded. "
            "Pass --allow-pickle to convert them to safetensors, or use a safetensors revision"
        )
    raise CheckpointError(f"{folder} has no model weights (no *.safetensors)")
