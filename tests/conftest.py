import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "HFPRUNE_CACHE" not in os.environ:  # keep test runs from reading or filling the user's score/eval caches
    import tempfile

    os.environ["HFPRUNE_CACHE"] = tempfile.mkdtemp(prefix="hfprune-test-cache-")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """model_type -> folder of a saved tiny random checkpoint (built once per session, on demand)."""
    from transformers.utils import logging as hf_logging

    from hfprune.tiny import build_tiny_checkpoint

    hf_logging.disable_progress_bar()

    cache = {}
    root = tmp_path_factory.mktemp("tiny")

    def get(model_type: str, num_layers: int = 6, **kw):
        key = (model_type, num_layers, tuple(sorted(kw.items())))
        if key not in cache:
            folder = root / f"{model_type}-{num_layers}-{len(cache)}"
            cache[key] = build_tiny_checkpoint(folder, model_type, num_layers=num_layers, tokenizer=False, **kw)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def calib_text(tmp_path_factory):
    """A calibration text file (the demo text, repeated): enough tokens for any metric's or fit's windows here."""
    from hfprune.tiny import DEMO_TEXT

    path = tmp_path_factory.mktemp("calib") / "calib.txt"
    path.write_text((DEMO_TEXT + "\n") * 20)
    return path
