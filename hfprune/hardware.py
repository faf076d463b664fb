"""What this machine computes natively, detected rather than guessed: it picks the evaluation dtype."""

from __future__ import annotations

from pathlib import Path

DTYPES = ("auto", "bfloat16", "float32")


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bfloat16 matrix products in hardware: Intel AMX-BF16 or AVX512-BF16, or the
    Arm BF16 extension. Elsewhere torch emulates bf16 through float32 and it is slower than float32 itself."""
    import torch

    capabilities = {}
    try:
        capabilities = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):
        pass
    if capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"):
        return True
    if capabilities:  # torch answered for this CPU: trust it for x86; Arm's flag is read from the kernel below
        if capabilities.get("architecture", "").startswith(("x86", "amd64", "i686")):
            return False
    return "bf16" in _cpu_flags()


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def resolve_eval_dtype(setting: str = "auto") -> tuple[str, str]:
    """(dtype name, why) for evaluation. auto: bfloat16 on a GPU that supports it and on CPUs that compute it
    natively, float32 elsewhere; bfloat16/float32: as asked."""
    import torch

    if setting not in DTYPES:
        raise ValueError(f"unknown evaluation dtype {setting!r}; choose one of {', '.join(DTYPES)}")
    if setting != "auto":
        return setting, "asked for"
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "GPU with bfloat16 support"
        return "float32", "GPU without bfloat16 support"
    if cpu_has_native_bf16():
        return "bfloat16", "CPU with native bfloat16 (AMX / AVX512-BF16 / Arm BF16)"
    return "float32", "CPU without native bfloat16"
