"""`hfprune export-gguf`: a pruned checkpoint to one GGUF file, converted by llama.cpp's own converter.

llama.cpp's `convert_hf_to_gguf.py` (and its `gguf-py`) ship in the llama-cpp-python source release on the Python
package index; hfprune fetches that release once into its cache (or uses `--llama-cpp PATH`, a llama.cpp
checkout) and runs the converter unchanged. Then it makes the per-layer metadata right: for the architectures
whose llama.cpp loader reads a per-layer sliding-window array (`<arch>.attention.sliding_window_pattern`) but whose
converter writes none, it writes the array from config.json's layer_types, so a plan that removed layers from the
middle of a periodic pattern still runs each layer with its own attention type. Where no GGUF metadata can express
the pruned model (SmolLM3's NoPE layers are a fixed period in llama.cpp, skip maps have no GGUF form), it refuses.
The file is written beside the target and renamed into place only when complete and verified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import cache_root
from .disk.model_types import SKIP_MODEL_TYPE_PREFIX, llama_cpp_period, llama_cpp_sliding
from .disk.checkpoint import Checkpoint
from .errors import CheckpointError, ExportError, OutputExistsError
from .workdir import atomic_file, check_not_input, check_writable_file

# the llama-cpp-python source release whose converter hfprune is tested with (llama.cpp inside it reads per-layer
# sliding-window arrays for the architectures below)
LLAMA_CPP_PYTHON = "0.3.36"
OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")

# the layer_types value of a sliding-window layer, in the per-layer array llama.cpp's loaders read
# (src/models/*.cpp: load_swa_pattern)
SLIDING_LAYER = "sliding_attention"


@dataclass
class ExportResult:
    output: Path
    bytes: int
    layers: int
    metadata_written: dict[str, list] = field(default_factory=dict)  # keys hfprune set beyond the converter's
    converter: str = ""
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the converter

def converter_dir(llama_cpp: str | Path | None = None, echo=print) -> Path:
    """A folder holding convert_hf_to_gguf.py (+ conversion/, gguf-py/): --llama-cpp, else hfprune's cache, else
    fetched from the llama-cpp-python source release on the package index."""
    if llama_cpp is not None:
        path = Path(llama_cpp).expanduser()
        if not (path / "convert_hf_to_gguf.py").is_file():
            raise ExportError(f"--llama-cpp {llama_cpp}: no convert_hf_to_gguf.py there; give a llama.cpp checkout")
        return path
    cached = cache_root() / "llama.cpp" / f"llama-cpp-python-{LLAMA_CPP_PYTHON}"
    if (cached / "convert_hf_to_gguf.py").is_file():
        return cached
    echo(f"fetching llama.cpp's converter (llama-cpp-python {LLAMA_CPP_PYTHON} source, ~75 MB, once)")
    with tempfile.TemporaryDirectory(prefix="hfprune-llama-cpp-") as tmp:
        got = subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
                              "--no-deps", "--no-binary", ":all:", "-d", tmp],
                             capture_output=True, text=True)
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if not archives:
            last = (got.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExportError(f"could not download llama-cpp-python {LLAMA_CPP_PYTHON}'s source from the package "
                              f"index ({last}); give --llama-cpp PATH to a llama.cpp checkout")
        staging = Path(tmp) / "out"
        _extract_converter(archives[0], staging)
        cached.parent.mkdir(parents=True, exist_ok=True)
        if not (cached / "convert_hf_to_gguf.py").is_file():
            shutil.rmtree(cached, ignore_errors=True)
            shutil.move(str(staging), str(cached))
    return cached


def _extract_converter(archive: Path, dest: Path) -> None:
    """Only the converter, its conversion package and gguf-py (no C++ sources), with tarfile's safe filter."""
    wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
    with tarfile.open(archive) as tar:
        members = []
        for m in tar.getmembers():
            _, sep, rest = m.name.partition("/vendor/llama.cpp/")
            if sep and rest.startswith(wanted) and (m.isfile() or m.isdir()):
                m.name = rest
                members.append(m)
        if not any(m.name == "convert_hf_to_gguf.py" for m in members):
            raise ExportError(f"{archive.name} holds no vendor/llama.cpp/convert_hf_to_gguf.py; give --llama-cpp")
        dest.mkdir(parents=True)
        tar.extractall(dest, members=members, filter="data")


def _gguf_module(converter: Path):
    """The gguf-py that ships with this converter (the one it writes with)."""
    path = str(converter / "gguf-py")
    if path not in sys.path:
        sys.path.insert(0, path)
    for name in [m for m in sys.modules if m == "gguf" or m.startswith("gguf.")]:
        if not str(getattr(sys.modules[name], "__file__", "") or "").startswith(path):
            del sys.modules[name]  # another gguf was imported first: use the converter's
    import gguf

    return gguf


# ---------------------------------------------------------------- what GGUF can express

def _model_type(ckpt: Checkpoint) -> str:
    """The decoder's model type (gemma3_text inside a gemma3 config)."""
    return str(ckpt.decoder_config.get("model_type") or ckpt.config.get("model_type") or "")


def per_layer_metadata(model_type: str, decoder_config: dict) -> dict[str, list[bool]]:
    """{key suffix: per-layer values} that hfprune writes for this model (empty when the converter's are enough)."""
    types = decoder_config.get("layer_types")
    if llama_cpp_sliding(model_type) != "per-layer" or not isinstance(types, list) or SLIDING_LAYER not in types:
        return {}
    return {"attention.sliding_window_pattern": [t == SLIDING_LAYER for t in types]}


def gguf_blockers(ckpt: Checkpoint) -> list[str]:
    """Why this checkpoint has no faithful GGUF form (empty: it has one)."""
    dec = ckpt.decoder_config
    model_type = str(ckpt.config.get("model_type", ""))
    base_type = _model_type(ckpt)
    out = []
    if model_type.startswith(SKIP_MODEL_TYPE_PREFIX) or dec.get("per_layer_config"):
        out.append("it skips attention or FFN sub-blocks in some layers, which GGUF runtimes cannot express; "
                   "export a whole-layer plan (--drop-layers/--drop-last) instead")
    spec = llama_cpp_period(base_type)
    if spec is not None and spec.in_code:
        key, marker, period, what = spec.config_list, spec.marker, spec.default, spec.what
        values = dec.get(key)
        n = ckpt.num_layers
        if isinstance(values, list) and len(values) == n:
            expected = [(i + 1) % period != 0 if marker == 0 else (i + 1) % period == 0 for i in range(n)]
            actual = [v != marker for v in values] if marker == 0 else [v == marker for v in values]
            if actual != expected:
                wrong = [i for i in range(n) if actual[i] != expected[i]]
                out.append(f"llama.cpp runs {base_type} with a {what} layer every {period} layers, fixed "
                           f"in its code; after pruning layers {', '.join(map(str, wrong[:8]))} are off that period "
                           f"and no GGUF metadata can say so; prune whole aligned blocks of {period} layers to "
                           "export")
    return out


def gguf_warnings(model_type: str, decoder_config: dict) -> list[str]:
    """What the GGUF runs differently from transformers without being wrong for short inputs (not refused: the
    unpruned source converts the same way)."""
    types = decoder_config.get("layer_types")
    window = decoder_config.get("sliding_window")
    sliding = (isinstance(types, list) and "sliding_attention" in types) or (
        isinstance(types, list) is False and isinstance(window, int) and window > 0
        and decoder_config.get("use_sliding_window", True) is not False)
    if not sliding or llama_cpp_sliding(model_type) is not None:
        return []
    layers = ""
    if isinstance(types, list):
        idx = [i for i, t in enumerate(types) if t == "sliding_attention"]
        layers = f" on layers {', '.join(map(str, idx[:8]))}{'...' if len(idx) > 8 else ''}"
    return [f"llama.cpp runs {model_type} without the sliding window of {window} tokens that transformers applies"
            f"{layers}: the GGUF's outputs differ from the model's on inputs longer than {window} tokens (the "
            "unpruned source converts the same way)"]


# ---------------------------------------------------------------- export

def export_gguf(model: str | Path, output: str | Path | None = None, *, outtype: str = "auto",
                llama_cpp: str | Path | None = None, overwrite: bool = False, echo=print) -> ExportResult:
    """Convert the checkpoint folder `model` to `output` (default: <model>.gguf, or <model>-<outtype>.gguf for an
    explicit type, beside the folder). `auto` keeps the checkpoint's own precision (bf16 stays bf16)."""
    model = Path(model)
    if outtype not in OUTTYPES:
        raise ExportError(f"--outtype {outtype}: choose one of {', '.join(OUTTYPES)}")
    ckpt = Checkpoint.open(model)
    blockers = gguf_blockers(ckpt)
    if blockers:
        raise ExportError(f"{model.name} cannot be exported to GGUF faithfully: {blockers[0]}")
    suffix = "" if outtype == "auto" else f"-{outtype}"
    output = Path(output) if output is not None else model.parent / f"{model.name}{suffix}.gguf"
    if output.suffix != ".gguf":
        raise ExportError(f"{output}: the output file name must end in .gguf")
    check_writable_file(output, "GGUF file")
    check_not_input(output, {"model": model}, "GGUF file")
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} already exists; pass --overwrite to replace it or choose another -o")
    converter = converter_dir(llama_cpp, echo)
    wanted = per_layer_metadata(_model_type(ckpt), ckpt.decoder_config)
    with tempfile.TemporaryDirectory(prefix=".hfprune-gguf-", dir=output.parent) as tmp:
        raw = Path(tmp) / "converted.gguf"
        _convert(converter, model, raw, outtype)
        gguf = _gguf_module(converter)
        written = _fix_metadata(gguf, raw, wanted, Path(tmp) / "fixed.gguf")
        final = Path(tmp) / ("fixed.gguf" if written else "converted.gguf")
        _verify(gguf, final, ckpt.num_layers, wanted)
        with atomic_file(output) as dst:
            os.replace(final, dst)
    return ExportResult(output, output.stat().st_size, ckpt.num_layers, written, str(converter),
                        gguf_warnings(_model_type(ckpt), ckpt.decoder_config))


def _convert(converter: Path, model: Path, out: Path, outtype: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # the converter's own gguf-py
    run = subprocess.run([sys.executable, str(converter / "convert_hf_to_gguf.py"), str(model), "--outfile",
                          str(out), "--outtype", outtype], capture_output=True, text=True, env=env)
    if run.returncode != 0 or not out.is_file():
        lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        hint = ""
        if "pre-tokenizer was not recognized" in last:
            hint = "; this llama.cpp does not know the tokenizer (new or custom): use a newer llama.cpp checkout with --llama-cpp PATH"
        elif "No module named" in last:
            hint = "; install what the converter imports: pip install 'hfprune[gguf]'"
        raise ExportError(f"llama.cpp's converter failed on {model.name}: {last}{hint}")


def _field(reader, key: str):
    f = reader.get_field(key)
    return None if f is None else f.contents()


def _fix_metadata(gguf, src: Path, wanted: dict[str, list[bool]], dst: Path) -> dict[str, list]:
    """Rewrite `src` into `dst` with the per-layer arrays in `wanted` (nothing when the converter wrote them)."""
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(src, "r")
    arch = _field(reader, gguf.Keys.General.ARCHITECTURE)
    new = {}
    for suffix, values in wanted.items():
        key = f"{arch}.{suffix}"
        if _field(reader, key) != values:
            new[key] = MetadataDetails(gguf.GGUFValueType.ARRAY, list(values), sub_type=gguf.GGUFValueType.BOOL)
    if not new:
        return {}
    written = {k: list(v.value) for k, v in new.items()}
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    import logging

    logging.getLogger("gguf-new-metadata").setLevel(logging.WARNING)
    copy_with_new_metadata(reader, writer, new, [])
    return written


def _verify(gguf, path: Path, layers: int, wanted: dict[str, list[bool]]) -> None:
    reader = gguf.GGUFReader(path, "r")
    arch = _field(reader, gguf.Keys.General.ARCHITECTURE)
    blocks = _field(reader, f"{arch}.block_count")
    if blocks != layers:
        raise CheckpointError(f"the GGUF file declares {blocks} layers but the checkpoint has {layers}")
    for suffix, values in wanted.items():
        if _field(reader, f"{arch}.{suffix}") != values:
            raise CheckpointError(f"the GGUF file's {arch}.{suffix} does not match config.json after rewriting")
