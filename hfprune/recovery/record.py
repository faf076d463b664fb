"""What a recovery run did, as one typed record: written to the healed checkpoint's hfprune.json
("recovery_run"), read back by the card and the command line."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class RecoveryRun:
    optimizer_steps: int
    warmup_steps: int
    lr: float
    prompt: str
    examples: int
    tokens: int
    first_loss: float | None = None
    last_loss: float | None = None
    warnings: list[str] = field(default_factory=list)
    processes: int = 1
    rows_per_process: list[int] | None = None
    distributed: str | None = None
    precision: str = "fp32"
    peak_cuda_bytes: int | None = None
    frozen_prefix_cache: dict | None = None  # partial: what the frozen-prefix replay did (or why it was off)
    teacher: str | None = None  # distillation: the teacher's repo@sha or folder name, never a local path
    objective: str = "SFT"
    answers: str = "dataset"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "RecoveryRun | None":
        """The record of an hfprune.json (fields an older hfprune did not write take their defaults)."""
        if not data:
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for required in ("optimizer_steps", "warmup_steps", "lr", "prompt", "examples", "tokens"):
            values.setdefault(required, 0 if required != "prompt" else "unknown")
        return cls(**values)
