"""A local checkpoint folder read from its headers only: config, shards, tensor locations, layer layout."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError
from .architectures import Architecture
from .model_types import architecture_for
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
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not UTF-8 text; check the checkpoint") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a model config") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    _check_dtypes(config, path)
    return config


# dtypes transformers can load weights in (config.json's dtype / torch_dtype); anything else is a broken config
TORCH_DTYPES = ("float32", "float16", "bfloat16", "float64", "float8_e4m3fn", "float8_e5m2", "int8", "uint8",
                "auto")


def _check_dtypes(config: dict, path: Path) -> None:
    """A dtype that torch does not know fails in one line here, not as a traceback inside torch later."""
    nested = [v for v in config.values() if isinstance(v, dict)]
    for section in [config] + nested:
        for key in ("dtype", "torch_dtype"):
            value = section.get(key)
            if value is None:
                continue
            name = value.removeprefix("torch.") if isinstance(value, str) else value
            if name not in TORCH_DTYPES:
                raise CheckpointError(f"{path}: {key} {value!r} is not a torch dtype; set it to one of float32, "
                                      "bfloat16, float16 (the dtype the weights are stored in)")


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

    @property
    def extra_layers(self) -> int:
        """Multi-token-prediction layers stored after the stack (DeepSeek-V3, GLM-4.5: num_nextn_predict_layers).
        transformers does not run them; they are kept, renumbered to stay last."""
        value = self.decoder_config.get("num_nextn_predict_layers") or 0
        return value if isinstance(value, int) and value > 0 else 0

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
        ckpt._check_layers(names)
        return ckpt

    def _check_layers(self, names: list[str]) -> None:
        """Every declared layer holds its attention and FFN weights (unless its skip map removed them), and no
        tensor belongs to a layer beyond the declared count: otherwise transformers would fill the gap with
        random weights, or drop weights, without an error."""
        n = self.num_layers
        present: dict[int, set[str]] = {i: set() for i in range(n)}
        for name in names:
            loc = self.layer_of(name)
            if loc is None:
                continue
            if loc[0] >= n + self.extra_layers:
                raise CheckpointError(
                    f"tensor {name} belongs to layer {loc[0]} but config.json declares {n} layers"
                    + (f" and {self.extra_layers} prediction layer(s) after them" if self.extra_layers else "")
                )
            if loc[0] >= n:
                continue  # a multi-token-prediction layer
            present[loc[0]].add(self.arch.sub_block_of(loc[1]) or "other")
        skips = {}
        for key, entry in (self.decoder_config.get("per_layer_config") or {}).items():
            if isinstance(entry, dict) and str(key).isdigit():
                skips[int(key)] = set(entry.get("skip") or ())
        for i in range(n):
            for block in ("attention", "mlp"):
                if block not in present[i] and block not in skips.get(i, ()):
                    what = "attention" if block == "attention" else "FFN"
                    raise CheckpointError(
                        f"layer {i} has no {what} weights but config.json declares {n} layers; the checkpoint is "
                        "incomplete or its num_hidden_layers is wrong (transformers would fill it with random "
                        "weights)"
                    )

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


def _shard_name(name, index_path: Path) -> str:
    """A shard named in an index must be a plain file name inside the checkpoint folder."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", "..") \
            or name.startswith("."):
        raise CheckpointError(f"{index_path.name} names shard {name!r}, which is not a file of the checkpoint "
                              "folder; the index is corrupt")
    return name


def read_weight_map(index_path: Path) -> tuple[dict[str, str], dict]:
    """(weight_map, metadata) of a safetensors or pickle index, validated: tensor name -> plain shard file name."""
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{index_path} is not a valid index (not JSON)") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path} is not a valid index (no weight_map object)")
    for tensor, shard in weight_map.items():
        _shard_name(shard, index_path)
    metadata = index.get("metadata")
    return weight_map, dict(metadata) if isinstance(metadata, dict) else {}


_SHARD_FAMILY = re.compile(r"^(.*)-\d+-of-(\d+)\.safetensors$")


def _open_weights(folder: Path) -> tuple[list[SafetensorsFile], dict | None]:
    index_path = folder / INDEX_NAME
    single = folder / SINGLE_NAME
    if index_path.is_file():
        weight_map, metadata = read_weight_map(index_path)
        shard_names = sorted(set(weight_map.values()))
        missing = [s for s in shard_names if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(f"{index_path.name} lists {missing[0]}, which is not in {folder}; the download is incomplete")
        families = {m.group(1, 2) for m in map(_SHARD_FAMILY.match, shard_names) if m}
        for prefix, total in families:
            for p in sorted(folder.glob(f"{prefix}-*-of-{total}.safetensors")):
                if p.name not in shard_names:
                    raise CheckpointError(f"{index_path.name} does not list {p.name}; the index is incomplete (its "
                                          "tensors would be lost)")
        files = [read_header(folder / s) for s in shard_names]
        actual = _tensor_homes(files)
        for tensor, shard in weight_map.items():
            if actual.get(tensor) != shard:
                raise CheckpointError(f"{index_path.name} places {tensor} in {shard} but that shard does not hold it")
        unlisted = sorted(set(actual) - set(weight_map))
        if unlisted:
            raise CheckpointError(f"{index_path.name} does not list tensor {unlisted[0]} of {actual[unlisted[0]]}; "
                                  "the index is incomplete")
        return files, metadata
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


def _tensor_homes(files: list[SafetensorsFile]) -> dict[str, str]:
    """Tensor name -> the shard holding it; a name stored in two shards is refused (whichever copy the index
    names, the other would be copied too, or loaded instead)."""
    homes: dict[str, str] = {}
    for f in files:
        for name in f.tensors:
            if name in homes:
                raise CheckpointError(f"tensor {name} is stored in both {homes[name]} and {f.path.name}; a "
                                      "checkpoint holds each tensor once: remove one copy (and fix the index)")
            homes[name] = f.path.name
    return homes


AUX_PATTERNS = ("generation_config.json", "tokenizer*", "special_tokens_map.json", "added_tokens.json",
                "vocab.json", "vocab.txt", "merges.txt", "*.jinja", "chat_template.json", "LICENSE*", "USE_POLICY*",
                "NOTICE*")


def copy_aux_files(source: Path, dest: Path) -> list[str]:
    """Copy tokenizer, generation config, chat template and licence files; return their names."""
    copied = []
    for pattern in AUX_PATTERNS:
        for p in sorted(source.glob(pattern)):
            if p.is_file() and not (dest / p.name).exists():
                shutil.copyfile(p, dest / p.name)
                copied.append(p.name)
    return copied
