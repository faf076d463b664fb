"""On-disk layer surgery: stream a safetensors checkpoint into a pruned one, tensor by tensor.

The model is never instantiated. Kept layers are renumbered contiguously; a shard whose tensors all stay under
the same names is copied byte for byte; other shards get a new header and their kept bytes copied verbatim.
Output is written into a hidden sibling folder and renamed into place only when complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import CheckpointError
from ..plan import Plan
from ..workdir import PROVENANCE_FILE, check_output, staged_folder
from .model_types import base_model_type
from .checkpoint import INDEX_NAME, SINGLE_NAME, Checkpoint, copy_aux_files
from .config_edit import edit_config
from .remote_code import skip_base, write_modeling_file
from .safetensors_io import copy_file, write_renamed

# Files besides weights that a pruned checkpoint carries over unchanged.


@dataclass(frozen=True)
class SizeReport:
    """Parameters and bytes of the weights before and after a plan."""

    layers_before: int
    layers_after: int
    params_before: int
    params_after: int
    bytes_before: int
    bytes_after: int

    def lines(self) -> list[str]:
        def gib(b):
            return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"

        pct = 100.0 * (1 - self.params_after / self.params_before) if self.params_before else 0.0
        return [
            f"layers:     {self.layers_before} -> {self.layers_after}",
            f"parameters: {self.params_before:,} -> {self.params_after:,} (-{pct:.1f}%)",
            f"weights:    {gib(self.bytes_before)} -> {gib(self.bytes_after)}",
        ]


@dataclass
class _ShardJob:
    src_index: int
    renames: dict[str, str]  # kept tensors: old name -> new name
    verbatim: bool  # every tensor kept under its old name


def tensor_renames(ckpt: Checkpoint, plan: Plan) -> dict[str, str | None]:
    """Old tensor name -> new name, or None when the tensor is removed."""
    new_index = plan.new_index
    skip_attn, skip_mlp = set(plan.skip_attention), set(plan.skip_mlp)
    out: dict[str, str | None] = {}
    for t in ckpt.tensors():
        loc = ckpt.layer_of(t.name)
        if loc is None:
            out[t.name] = t.name
            continue
        layer, rest = loc
        if layer >= ckpt.num_layers:  # a multi-token-prediction layer: kept, still right after the stack
            out[t.name] = f"{ckpt.layer_prefix}{len(new_index) + layer - ckpt.num_layers}.{rest}"
            continue
        if layer not in new_index:
            out[t.name] = None
            continue
        if layer in skip_attn or layer in skip_mlp:
            block = ckpt.arch.sub_block_of(rest)
            if block is None:
                raise CheckpointError(
                    f"tensor {t.name} belongs to neither the attention nor the FFN sub-block of a "
                    f"{ckpt.config.get('model_type')} layer; cannot skip sub-blocks of layer {layer}"
                )
            if (block == "attention" and layer in skip_attn) or (block == "mlp" and layer in skip_mlp):  # shared: kept
                out[t.name] = None
                continue
        out[t.name] = f"{ckpt.layer_prefix}{new_index[layer]}.{rest}"
    return out


def size_report(ckpt: Checkpoint, plan: Plan) -> SizeReport:
    """What the plan removes, from headers alone."""
    renames = tensor_renames(ckpt, plan)
    tensors = list(ckpt.tensors())
    kept = [t for t in tensors if renames[t.name] is not None]
    return SizeReport(
        ckpt.num_layers, len(plan.kept_layers),
        sum(t.numel for t in tensors), sum(t.numel for t in kept),
        sum(t.nbytes for t in tensors), sum(t.nbytes for t in kept),
    )


def prune_checkpoint(
    source: str | Path,
    output: str | Path,
    plan: Plan,
    *,
    overwrite: bool = False,
    progress: bool = False,
    provenance: dict | None = None,
    readme: str | None = None,
    replacements: dict[str, bytes] | None = None,
) -> SizeReport:
    """Write the pruned checkpoint of the local folder `source` to `output`; return the size report.

    `replacements` gives new bytes (same dtype and shape) for kept tensors, by source name: the folded maps of
    `--replace linear`.

    `output` appears only when complete. An existing `output` is replaced only with `overwrite=True`, and only
    when hfprune wrote it; an output that is, contains or lies inside `source` is refused.
    """
    output = Path(output)
    check_output(output, overwrite, {"source": source})
    ckpt = Checkpoint.open(source)
    plan.check_model(ckpt.num_layers)
    renames = tensor_renames(ckpt, plan)
    config = edit_config(ckpt.config, plan, ckpt.arch, derived=derived_layer_lists(ckpt))
    report = size_report(ckpt, plan)

    with staged_folder(output, overwrite) as staging:
        unknown = [n for n in (replacements or {}) if renames.get(n) is None]
        if unknown:
            raise CheckpointError(f"cannot replace {unknown[0]}: the plan removes it or the checkpoint has no such tensor")
        _write_weights(ckpt, renames, staging, progress, replacements or {})
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        copy_aux_files(ckpt.path, staging)
        base = skip_base(config.get("model_type"))
        if base is not None and config.get("per_layer_config"):
            write_modeling_file(staging, base)
        if readme is not None:
            (staging / "README.md").write_text(readme)
        record = {"hfprune_version": __version__, "plan": plan.to_dict(), **(provenance or {})}
        (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return report


def _write_weights(ckpt: Checkpoint, renames: dict[str, str | None], staging: Path, progress: bool,
                   replacements: dict[str, bytes]) -> None:
    jobs = []
    for i, f in enumerate(ckpt.files):
        kept = {name: renames[name] for name in f.tensors if renames[name] is not None}
        if kept:
            verbatim = (len(kept) == len(f.tensors) and all(k == v for k, v in kept.items())
                        and not any(n in replacements for n in kept))
            jobs.append(_ShardJob(i, kept, verbatim))
    total = sum(ckpt.files[j.src_index].tensors[n].nbytes for j in jobs for n in j.renames)
    bar = _progress(total, progress)
    weight_map: dict[str, str] = {}
    total_size = total_params = 0
    for k, job in enumerate(jobs, start=1):
        src = ckpt.files[job.src_index]
        name = f"model-{k:05d}-of-{len(jobs):05d}.safetensors" if ckpt.sharded else SINGLE_NAME
        dst = staging / name
        if job.verbatim:
            copy_file(src.path, dst)
        else:
            write_renamed(src, dst, job.renames,
                          overrides={n: replacements[n] for n in job.renames if n in replacements})
        for old, new in job.renames.items():
            weight_map[new] = name
            total_size += src.tensors[old].nbytes
            total_params += src.tensors[old].numel
        bar.update(sum(src.tensors[n].nbytes for n in job.renames))
    bar.close()
    if ckpt.sharded:
        index = {"metadata": {"total_size": total_size, "total_parameters": total_params},
                 "weight_map": dict(sorted(weight_map.items()))}
        (staging / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="pruning", disable=not enabled)


def derived_layer_lists(ckpt: Checkpoint) -> dict[str, list]:
    """Per-layer lists that transformers derives from other fields (e.g. layer_types from a sliding pattern)."""
    dec = ckpt.decoder_config
    missing = [k for k in ckpt.arch.derived_lists if k not in dec]
    if not missing:
        return {}
    from transformers import CONFIG_MAPPING

    model_type = base_model_type(str(dec.get("model_type", ckpt.config.get("model_type"))))
    if model_type not in CONFIG_MAPPING:
        return {}
    fields = {k: v for k, v in dec.items() if k not in ("model_type", "auto_map", "architectures", "per_layer_config", "hfprune_base")}
    try:
        cfg = CONFIG_MAPPING[model_type].from_dict(fields)
    except Exception as e:  # noqa: BLE001 - any failure here means transformers cannot read this config
        raise CheckpointError(f"transformers cannot read config.json ({type(e).__name__}: {e})") from None
    out = {}
    for key in missing:
        value = cfg.__dict__.get(key)
        if isinstance(value, list) and len(value) == ckpt.num_layers:
            out[key] = list(value)
    return out
