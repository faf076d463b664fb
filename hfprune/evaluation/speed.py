"""Decode speed as what it is: a ratio between models, measured in one process, interleaved.

An absolute latency on a shared machine moves by 2x between repeats; the ratio of two models measured in
alternation moves far less, because drift hits both. Each round times a short greedy generation of every model,
in an order that alternates between rounds; the result is each model's median tokens/s and its ratio to the
reference. Models are held in memory together when they fit (else measured one after the other, and said so).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

PROMPT = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def _fits_together(paths: list[Path], dtype: str) -> bool:
    import torch

    from ..disk.checkpoint import Checkpoint

    element = 2 if dtype in ("bfloat16", "float16") else 4
    need = 0
    for path in paths:
        try:
            need += sum(t.numel for t in Checkpoint.open(path).tensors()) * element
        except Exception:  # noqa: BLE001 - an unreadable size means: do not risk holding them together
            return False
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return need < 0.8 * free
    from ..scoring.streamed_model import available_memory

    return need < 0.6 * available_memory()


def decode_speed(models: dict[str, Path], *, dtype: str, new_tokens: int = 16, rounds: int = 5,
                 reference: str | None = None, trust_remote_code: bool = False) -> dict:
    """{"models": {name: {tokens_per_s, latency_s, min, max}}, "relative": {name: x reference}, "method": ...}."""
    import torch

    from .harness import load_for_eval

    names = list(models)
    together = len(names) > 1 and _fits_together([models[n] for n in names], dtype)
    times: dict[str, list[float]] = {n: [] for n in names}
    prompt_tokens = None

    def timed(model, tokenizer) -> float:
        nonlocal prompt_tokens
        ids = tokenizer(PROMPT, return_tensors="pt").input_ids.to(model.device)
        prompt_tokens = int(ids.shape[1])
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def warm(model, tokenizer) -> None:
        ids = tokenizer(PROMPT, return_tensors="pt").input_ids.to(model.device)
        with torch.no_grad():
            model.generate(ids, max_new_tokens=2, min_new_tokens=2, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)

    if together:
        loaded = {n: load_for_eval(models[n], trust_remote_code, dtype) for n in names}
        for pair in loaded.values():
            warm(*pair)
        for r in range(rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                times[n].append(timed(*loaded[n]))
        del loaded
    else:
        for n in names:
            pair = load_for_eval(models[n], trust_remote_code, dtype)
            warm(*pair)
            times[n] = [timed(*pair) for _ in range(rounds)]
            del pair
    out = {}
    for n in names:
        median = statistics.median(times[n])
        out[n] = {"tokens_per_s": new_tokens / median, "latency_s": median, "latency_min_s": min(times[n]),
                  "latency_max_s": max(times[n])}
    reference = reference or names[0]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "models": out,
        "relative": {n: out[n]["tokens_per_s"] / out[reference]["tokens_per_s"] for n in names},
        "reference": reference,
        "method": {"new_tokens": new_tokens, "rounds": rounds, "prompt_tokens": prompt_tokens, "batch": 1,
                   "dtype": dtype, "device": device,
                   "schedule": "interleaved in one process" if together else "one model after the other"},
    }
