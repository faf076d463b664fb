"""Raw safetensors headers and streamed tensor copies.

safetensors' own API reads and writes whole files through memory. Surgery only renames and drops tensors, so it
copies their bytes verbatim from one file to another instead: memory stays flat whatever the checkpoint size.
Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the data.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
_MAX_HEADER = 100_000_000
_COPY_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes lie in its file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offset
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class SafetensorsFile:
    """A parsed header: the tensors in file order and the file's metadata."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]


def read_header(path: str | os.PathLike) -> SafetensorsFile:
    """Parse and validate a safetensors header; a corrupt or truncated file raises CheckpointError."""
    path = Path(path)
    fix = "re-download it (delete the file and run again) or check the source checkpoint"
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path.name} is not a safetensors file (only {size} bytes); {fix}")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER or 8 + n > size:
            raise CheckpointError(f"{path.name} has a corrupt or truncated safetensors header; {fix}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CheckpointError(f"{path.name} has a corrupt safetensors header (not JSON); {fix}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name} has a corrupt safetensors header; {fix}")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise CheckpointError(f"{path.name}: __metadata__ must map strings to strings; {fix}")
    data_start = 8 + n
    tensors = []
    for name, info in header.items():
        if not _valid_entry(info):
            raise CheckpointError(f"{path.name} has a malformed safetensors header entry for {name!r}; {fix}")
        begin, end = info["data_offsets"]
        tensors.append(TensorInfo(name, info["dtype"], tuple(info["shape"]), data_start + begin, data_start + end))
    tensors.sort(key=lambda t: (t.begin, t.end))
    # as the safetensors library requires: tensors tile the data buffer exactly, no gap, no overlap
    expected = data_start
    for t in tensors:
        if t.dtype not in DTYPE_BYTES:
            raise CheckpointError(f"{path.name}: tensor {t.name} has unknown dtype {t.dtype}; {fix}")
        if t.end < t.begin or t.nbytes != t.numel * DTYPE_BYTES[t.dtype]:
            raise CheckpointError(f"{path.name}: tensor {t.name} has inconsistent offsets; {fix}")
        if t.begin != expected:
            what = "overlaps the previous tensor" if t.begin < expected else "leaves a gap before it"
            raise CheckpointError(f"{path.name}: tensor {t.name} {what} (corrupt offsets); {fix}")
        expected = t.end
    if expected > size:
        raise CheckpointError(f"{path.name} is truncated: its tensors need {expected} bytes but the file has "
                              f"{size}; {fix}")
    if expected != size:
        raise CheckpointError(f"{path.name} has {size - expected} bytes after its last tensor (corrupt); {fix}")
    return SafetensorsFile(path, {t.name: t for t in tensors}, dict(metadata))


def _is_int(x) -> bool:
    return type(x) is int


def _valid_entry(info) -> bool:
    if not isinstance(info, dict) or not isinstance(info.get("dtype"), str):
        return False
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        return False
    return (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) and o >= 0 for o in offsets))


def write_renamed(
    src: SafetensorsFile, dst: str | os.PathLike, renames: dict[str, str], metadata: dict[str, str] | None = None,
    overrides: dict[str, bytes] | None = None,
) -> int:
    """Write the tensors named in `renames` (old -> new name) from `src` to `dst`, bytes copied verbatim, except
    those in `overrides` (old name -> new bytes of the same dtype and shape).

    Returns the number of data bytes written. Tensors keep their relative order in the file.
    """
    overrides = overrides or {}
    kept = [t for t in src.tensors.values() if t.name in renames]
    for name, data in overrides.items():
        if name in renames and len(data) != src.tensors[name].nbytes:
            raise CheckpointError(f"the new value of {name} has {len(data)} bytes, the tensor {src.tensors[name].nbytes}")
    header: dict[str, object] = {}
    meta = src.metadata if metadata is None else metadata
    if meta:
        header["__metadata__"] = meta
    offset = 0
    for t in kept:
        header[renames[t.name]] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format aligns the data start to 8 bytes
    with open(src.path, "rb") as fin, open(dst, "wb") as fout:
        fout.write(struct.pack("<Q", len(blob)))
        fout.write(blob)
        run: list[TensorInfo] = []
        for t in kept + [None]:
            if t is None or t.name in overrides:
                for begin, end in _coalesce(run):
                    _copy_range(fin, fout, begin, end)
                run = []
                if t is not None:
                    fout.seek(0, os.SEEK_END)
                    fout.write(overrides[t.name])
            else:
                run.append(t)
    return offset


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a whole file with copy_file_range (reflink or in-kernel copy where the filesystem allows)."""
    size = os.path.getsize(src)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        _copy_range(fin, fout, 0, size)


def _coalesce(tensors: list[TensorInfo]) -> list[tuple[int, int]]:
    """Merge adjacent byte ranges so long runs of kept tensors copy in one call."""
    ranges: list[tuple[int, int]] = []
    for t in tensors:
        if ranges and ranges[-1][1] == t.begin:
            ranges[-1] = (ranges[-1][0], t.end)
        else:
            ranges.append((t.begin, t.end))
    return ranges


def _copy_range(fin, fout, begin: int, end: int) -> None:
    fout.flush()
    remaining = end - begin
    src_off = begin
    if hasattr(os, "copy_file_range"):
        try:
            while remaining > 0:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), min(remaining, 1 << 30), src_off)
                if n == 0:
                    break
                src_off += n
                remaining -= n
            if remaining == 0:
                return
        except OSError:
            pass  # cross-device or unsupported filesystem: fall back to a buffered copy
    fin.seek(src_off)
    fout.seek(0, os.SEEK_END)
    while remaining > 0:
        chunk = fin.read(min(remaining, _COPY_CHUNK))
        if not chunk:
            raise CheckpointError(f"{Path(fin.name).name} ended early while copying; the file is truncated")
        fout.write(chunk)
        remaining -= len(chunk)
