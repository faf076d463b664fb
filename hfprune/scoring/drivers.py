"""Choosing and opening a driver (passes.Driver) for a checkpoint: the whole model in memory, or layer by layer
from disk when it would not fit; the calibration batches tokenized for it."""

from __future__ import annotations

import sys
from pathlib import Path

from ..disk.checkpoint import Checkpoint
from ..disk.remote_code import load_model, load_tokenizer
from ..errors import DataError, PlanError
from ..settings import ScoreOptions
from .calibration import Calibration, load_calibration


def open_driver(path: Path, ckpt: Checkpoint, options: ScoreOptions, data: str, texts: list[str], *, samples: int,
                seq_len: int, seed: int, needs_logits: bool, progress: bool, naive: bool = False) -> tuple[object, Calibration, bool]:
    """(driver, calibration, streamed) for scoring or fitting on `path` with `options` (stream, dtype, batch size,
    device map); `texts` is `data` already read, so bad data fails before any model is loaded."""
    streamed = should_stream(options, ckpt, progress)
    if streamed:
        from .streamed_model import StreamedModel
        from .streaming import StreamingDriver, default_budget

        tokenizer = checkpoint_tokenizer(path, options)
        calib = load_calibration(data, tokenizer, samples=samples, seq_len=seq_len, seed=seed, texts=texts)
        model = StreamedModel(path, ckpt, options.dtype, options.trust_remote_code, stream_device(),
                              needs_logits=needs_logits)
        batches = model.prepare(list(calib.input_ids.split(options.batch_size)))
        return StreamingDriver(model, batches, default_budget(), progress=progress), calib, True
    from .forward import LayerStack
    from .in_memory import InMemoryDriver

    model, tokenizer = load_scoring_model(path, options)
    calib = load_calibration(data, tokenizer, samples=samples, seq_len=seq_len, seed=seed, texts=texts)
    device = next(model.parameters()).device
    ids = calib.input_ids.to(device)
    driver = InMemoryDriver(LayerStack(model, ckpt.arch), list(ids.split(options.batch_size)), cached=not naive,
                            progress=progress)
    return driver, calib, False


def _check_dtype(options: ScoreOptions) -> None:
    if options.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise PlanError(f"--dtype {options.dtype}: choose float32, bfloat16, float16 or auto")


def should_stream(options: ScoreOptions, ckpt: Checkpoint, progress: bool) -> bool:
    """--stream on/off as given; auto streams when the whole model would not fit in the memory left."""
    from .streamed_model import available_memory, in_memory_bytes
    from .streaming import STREAMED_METRICS

    _check_dtype(options)
    if options.stream == "off":
        return False
    if options.stream == "on":
        if options.metric not in STREAMED_METRICS:
            raise PlanError(f"--stream on scores {', '.join(STREAMED_METRICS)} layer by layer; {options.metric} needs "
                            "the whole model in memory (--stream off)")
        if options.device_map:
            raise PlanError("--stream on and --device-map exclude each other: give one")
        return True
    if options.device_map or options.metric not in STREAMED_METRICS:
        return False
    size = {"float32": 4, "bfloat16": 2, "float16": 2}.get(options.dtype)
    need, free = in_memory_bytes(ckpt, size), available_memory()
    if need <= free:
        return False
    if progress:
        print(f"the model needs ~{need / 2**30:.1f} GiB in memory and {free / 2**30:.1f} GiB is free: scoring it "
              "layer by layer (--stream off to load it whole)", file=sys.stderr)
    return True


def stream_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def checkpoint_tokenizer(path: Path, options: ScoreOptions):
    try:
        return load_tokenizer(path, options.trust_remote_code)
    except (OSError, ValueError):
        raise DataError(f"{path} has no tokenizer; data-driven metrics need the checkpoint's tokenizer") from None


def load_scoring_model(path: Path, options: ScoreOptions):
    """(model, tokenizer) loaded whole at the options' dtype (and device map), in eval mode."""
    import torch

    _check_dtype(options)
    dtype = "auto" if options.dtype == "auto" else getattr(torch, options.dtype)
    kwargs = {"dtype": dtype}
    if options.device_map:
        kwargs["device_map"] = options.device_map
    model = load_model(path, options.trust_remote_code, **kwargs).eval()
    return model, checkpoint_tokenizer(path, options)
