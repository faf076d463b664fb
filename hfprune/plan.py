"""What to remove: a pure description (no torch, no I/O beyond JSON), validated against a layer count.

All indices are 0-based and refer to the *source* checkpoint's layers. A layer whose attention and FFN are both
skipped is a dropped layer; the normalised plan says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .errors import PlanError

PLAN_FORMAT = "hfprune-plan"
PLAN_VERSION = 1


MAX_LAYERS = 100_000  # no decoder has more; bounds a range before it is expanded


def parse_layer_list(text: str, what: str = "layer list", num_layers: int | None = None) -> list[int]:
    """Parse '3,7,9-11' into [3, 7, 9, 10, 11]; a repeated index, bad token or out-of-range index raises PlanError.

    With `num_layers`, indices must lie in 0..num_layers-1; every range is checked before it is expanded.
    """
    limit = num_layers if num_layers is not None else MAX_LAYERS
    out: list[int] = []
    for token in (t.strip() for t in str(text).split(",")):
        if not token:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", token)
        if not m:
            raise PlanError(f"{what}: {token!r} is not an index or a range like 9-11 (0-based layer indices)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise PlanError(f"{what}: range {token!r} runs backwards; write it as {hi}-{lo}")
        if hi >= limit:
            bound = f"this model has layers 0-{limit - 1}" if num_layers is not None else "no model has that many"
            raise PlanError(f"{what}: layer index {hi} is out of range; {bound} (0-based)")
        out.extend(range(lo, hi + 1))
    seen: set[int] = set()
    for i in out:
        if i in seen:
            raise PlanError(f"{what}: layer {i} is listed twice; list each layer once")
        seen.add(i)
    return out


def format_layer_list(indices) -> str:
    """[3, 7, 9, 10, 11] -> '3,7,9-11'."""
    idx = sorted(indices)
    parts: list[str] = []
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        parts.append(str(idx[i]) if i == j else f"{idx[i]}-{idx[j]}")
        i = j + 1
    return ",".join(parts) if parts else "none"


class _PlanFile(BaseModel):
    """The JSON schema of a plan file, validated strictly."""

    model_config = ConfigDict(strict=True)

    num_layers: int = Field(ge=1, le=MAX_LAYERS)
    drop_layers: list[int] = Field(default_factory=list)
    skip_attention: list[int] = Field(default_factory=list)
    skip_mlp: list[int] = Field(default_factory=list)
    metric: str | None = None


@dataclass(frozen=True)
class Plan:
    """Layers to drop and sub-blocks to skip, in source numbering, for a model of `num_layers` layers."""

    num_layers: int
    drop_layers: tuple[int, ...] = ()
    skip_attention: tuple[int, ...] = ()
    skip_mlp: tuple[int, ...] = ()
    metric: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def build(
        cls,
        num_layers: int,
        *,
        drop_last: int | None = None,
        drop_layers=(),
        skip_attention=(),
        skip_mlp=(),
        metric: str | None = None,
        extra: dict | None = None,
    ) -> "Plan":
        """Combine the CLI's plan options into one validated, normalised plan."""
        drops = list(drop_layers)
        if drop_last is not None:
            if drop_last < 1:
                raise PlanError(f"--drop-last {drop_last}: give a positive number of layers")
            if drop_last >= num_layers:
                raise PlanError(
                    f"--drop-last {drop_last} would remove every layer of a {num_layers}-layer model; "
                    f"use at most {num_layers - 1}"
                )
            tail = list(range(num_layers - drop_last, num_layers))
            both = sorted(set(tail) & set(drops))
            if both:
                raise PlanError(f"layers {format_layer_list(both)} are in both --drop-last and --drop-layers; give each once")
            drops += tail
        plan = cls(num_layers, tuple(drops), tuple(skip_attention), tuple(skip_mlp), metric, dict(extra or {}))
        return plan.validated()

    def validated(self) -> "Plan":
        """Check ranges, repeats and overlaps, then fold attention+FFN skips of one layer into a drop."""
        n = self.num_layers
        if n < 1:
            raise PlanError(f"the model reports {n} layers; nothing to prune")
        for what, idx in (("drop_layers", self.drop_layers), ("skip_attention", self.skip_attention),
                          ("skip_mlp", self.skip_mlp)):
            bad = [i for i in idx if type(i) is not int or i < 0 or i >= n]
            if bad:
                raise PlanError(
                    f"{what}: layer index {bad[0]} is out of range; this model has layers 0-{n - 1} (0-based)"
                )
            if len(set(idx)) != len(idx):
                dup = next(i for i in idx if list(idx).count(i) > 1)
                raise PlanError(f"{what}: layer {dup} is listed twice; list each layer once")
        drops = set(self.drop_layers)
        for what, idx in (("skip_attention", self.skip_attention), ("skip_mlp", self.skip_mlp)):
            both = sorted(drops & set(idx))
            if both:
                raise PlanError(
                    f"layers {format_layer_list(both)} are dropped and also in {what}; a dropped layer has no sub-blocks to skip"
                )
        whole = set(self.skip_attention) & set(self.skip_mlp)
        drops |= whole
        attn = sorted(set(self.skip_attention) - whole)
        mlp = sorted(set(self.skip_mlp) - whole)
        if len(drops) >= n:
            raise PlanError(f"the plan removes all {n} layers; keep at least one layer")
        if not drops and not attn and not mlp:
            raise PlanError("the plan removes nothing; give --drop-last, --drop-layers, --skip-attention, --skip-mlp or --plan")
        kept = [i for i in range(n) if i not in drops]
        if all(i in attn for i in kept):
            raise PlanError("the plan skips the attention of every kept layer; keep attention in at least one layer")
        return Plan(n, tuple(sorted(drops)), tuple(attn), tuple(mlp), self.metric, self.extra)

    @property
    def kept_layers(self) -> list[int]:
        """Source indices of the layers that remain, in order."""
        drops = set(self.drop_layers)
        return [i for i in range(self.num_layers) if i not in drops]

    @property
    def new_index(self) -> dict[int, int]:
        """Source layer index -> index in the pruned model, for kept layers."""
        return {old: new for new, old in enumerate(self.kept_layers)}

    @property
    def has_skips(self) -> bool:
        return bool(self.skip_attention or self.skip_mlp)

    def skip_map(self) -> dict[int, list[str]]:
        """Pruned-model layer index -> skipped sub-blocks, in transformers' per_layer_config vocabulary."""
        new = self.new_index
        out: dict[int, list[str]] = {}
        for i in self.skip_attention:
            out.setdefault(new[i], []).append("attention")
        for i in self.skip_mlp:
            out.setdefault(new[i], []).append("mlp")
        return {k: sorted(v) for k, v in sorted(out.items())}

    def tag(self) -> str:
        """A short name for repos and folders, e.g. 'drop8' or 'drop2-skip3a-1m'."""
        parts = []
        if self.drop_layers:
            parts.append(f"drop{len(self.drop_layers)}")
        if self.skip_attention:
            parts.append(f"skip{len(self.skip_attention)}a")
        if self.skip_mlp:
            parts.append(f"skip{len(self.skip_mlp)}m")
        return "-".join(parts)

    def summary(self) -> str:
        """One human line: what goes."""
        parts = [f"drop layers {format_layer_list(self.drop_layers)}" if self.drop_layers else None,
                 f"skip attention in {format_layer_list(self.skip_attention)}" if self.skip_attention else None,
                 f"skip FFN in {format_layer_list(self.skip_mlp)}" if self.skip_mlp else None]
        return "; ".join(p for p in parts if p) + f" ({self.num_layers} -> {len(self.kept_layers)} layers)"

    def to_dict(self) -> dict:
        d = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "num_layers": self.num_layers,
            "drop_layers": list(self.drop_layers),
            "skip_attention": list(self.skip_attention),
            "skip_mlp": list(self.skip_mlp),
        }
        if self.metric:
            d["metric"] = self.metric
        d.update(self.extra)
        return d

    def save(self, path: str | Path) -> None:
        """Write the plan as JSON (the format `hfprune prune --plan` reads)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict, source: str = "plan") -> "Plan":
        """A validated plan from its JSON form. Types are strict: indices and num_layers must be JSON integers
        (no strings, floats or booleans), the lists must be lists and the metric a string."""
        from pydantic import ValidationError

        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
            raise PlanError(f"{source} is not an hfprune plan (expected \"format\": \"{PLAN_FORMAT}\")")
        if d.get("version") != PLAN_VERSION:
            raise PlanError(f"{source} has plan version {d.get('version')!r}; this hfprune reads version {PLAN_VERSION}")
        known = {"format", "version", "num_layers", "drop_layers", "skip_attention", "skip_mlp", "metric"}
        try:
            spec = _PlanFile.model_validate({k: v for k, v in d.items() if k in known})
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            hint = "" if loc == "metric" else "; layer indices and num_layers must be JSON integers"
            raise PlanError(f"{source}: {loc} {err['msg'].lower()} (got {err.get('input')!r}){hint}") from None
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(spec.num_layers, tuple(spec.drop_layers), tuple(spec.skip_attention), tuple(spec.skip_mlp),
                   spec.metric, extra).validated()

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        """Read a plan JSON file written by `hfprune score` or by hand."""
        p = Path(path)
        if p.is_dir():
            raise PlanError(f"plan file {p} is a folder; give the plan's JSON file")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PlanError(f"plan file {p} does not exist") from None
        except UnicodeDecodeError:
            raise PlanError(f"plan file {p} is not UTF-8 text") from None
        except json.JSONDecodeError as e:
            raise PlanError(f"plan file {p} is not valid JSON ({e.msg} at line {e.lineno})") from None
        except RecursionError:
            raise PlanError(f"plan file {p} is nested too deeply to be a plan") from None
        return cls.from_dict(d, source=str(p))

    def check_model(self, num_layers: int) -> None:
        """Refuse a plan written for a model of a different depth."""
        if num_layers != self.num_layers:
            raise PlanError(
                f"the plan was made for a {self.num_layers}-layer model but this checkpoint has {num_layers} layers; "
                "score this checkpoint again to make a plan for it"
            )
