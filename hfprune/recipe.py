"""Recipes: one YAML file (configs/*.yaml) that says what `hfprune push` does; CLI flags override it.

The schema is strict: an unknown or misspelled key is an error that names its path, before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import RecipeError
from .recover import RecoverOptions

DEFAULT_TASKS = ["piqa", "hellaswag", "openbookqa", "arc_easy", "arc_challenge", "mmlu", "cmmlu", "winogrande",
                 "wikitext"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PlanSection(_Strict):
    """A plan given whole (from `--plan FILE`): source numbering, checked against the model's depth."""

    num_layers: int = Field(ge=1, strict=True)
    drop_layers: list[int] = Field(default_factory=list, strict=True)
    skip_attention: list[int] = Field(default_factory=list, strict=True)
    skip_mlp: list[int] = Field(default_factory=list, strict=True)
    metric: str | None = None

    @classmethod
    def from_plan(cls, plan) -> "PlanSection":
        return cls(num_layers=plan.num_layers, drop_layers=list(plan.drop_layers),
                   skip_attention=list(plan.skip_attention), skip_mlp=list(plan.skip_mlp), metric=plan.metric)

    def as_plan_dict(self) -> dict:
        from .plan import PLAN_FORMAT, PLAN_VERSION

        return {"format": PLAN_FORMAT, "version": PLAN_VERSION, **self.model_dump(exclude_none=True)}


EXPLICIT = ("drop_last", "drop_layers", "skip_attention", "skip_mlp", "plan")


class PruneSection(_Strict):
    """What to remove: explicit layers, a whole plan, or a metric that chooses `remove` of them."""

    plan: PlanSection | None = None
    drop_last: int | None = Field(default=None, ge=1)
    drop_layers: list[int] | str | None = None
    skip_attention: list[int] | str | None = None
    skip_mlp: list[int] | str | None = None
    metric: str | None = None
    remove: int | None = Field(default=None, ge=1)
    data: str | None = None
    samples: int = Field(default=10, ge=1)
    seq_len: int = Field(default=128, ge=2)
    seed: int = 0
    distance: Literal["js", "angular", "euclidean"] = "js"
    iterative_step: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_way(self):
        explicit = self.drop_last is not None or self.drop_layers or self.skip_attention or self.skip_mlp
        if self.plan is not None and (explicit or self.metric):
            raise ValueError("give a plan, explicit layers (drop_last/drop_layers/skip_*) or a metric; not two")
        if explicit and self.metric:
            raise ValueError("give explicit layers (drop_last/drop_layers/skip_*) or a metric, not both")
        if self.metric and self.remove is None:
            raise ValueError("a metric needs remove: N")
        if self.remove is not None and not self.metric:
            raise ValueError("remove: N needs a metric")
        if self.metric:
            from .metrics import METRICS

            if self.metric not in METRICS:
                raise ValueError(f"unknown metric {self.metric!r}; choose one of: {', '.join(METRICS)}")
            if self.iterative_step and METRICS[self.metric].kind != "layer":
                raise ValueError(f"iterative_step needs a layer metric; {self.metric} scores "
                                 f"{METRICS[self.metric].kind}s")
        return self

    @property
    def is_empty(self) -> bool:
        return not (self.plan or self.drop_last or self.drop_layers or self.skip_attention or self.skip_mlp
                    or self.metric)


class RecoverSection(RecoverOptions):
    """recover.RecoverOptions, plus "none" (no recovery, the default in a recipe)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    method: Literal["partial", "lora", "qlora", "partial-kd", "lora-kd", "none"] = "none"


class EvalSection(_Strict):
    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_TASKS))
    limit: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=8, ge=1)
    include_path: str | None = None
    latency_tokens: int = Field(default=32, ge=1)


class PushSection(_Strict):
    repo_id: str | None = None
    private: bool = False
    enabled: bool = True


class Recipe(_Strict):
    """The whole pipeline's settings."""

    source: str | None = None
    prune: PruneSection = Field(default_factory=PruneSection)
    recover: RecoverSection = Field(default_factory=RecoverSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    push: PushSection = Field(default_factory=PushSection)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        """Read and validate a recipe YAML file."""
        import yaml

        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise RecipeError(f"recipe {p} does not exist") from None
        except yaml.YAMLError as e:
            raise RecipeError(f"recipe {p} is not valid YAML: {str(e).splitlines()[0]}") from None
        return cls.parse(data, str(p))

    @classmethod
    def parse(cls, data: dict, where: str = "recipe") -> "Recipe":
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise RecipeError(f"{where}: {_first_error(e)}") from None

    def override(self, **flags) -> "Recipe":
        """A copy with 'section.key' (or top-level) values replaced; None values are ignored."""
        data = self.model_dump()
        for dotted, value in flags.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if key:
                data[section][key] = value
            else:
                data[section] = value
        if any(k.startswith("prune.") and flags[k] is not None for k in flags):
            explicit = {k.split(".", 1)[1] for k, v in flags.items() if k.startswith("prune.") and v is not None}
            if explicit & set(EXPLICIT):
                data["prune"]["metric"] = data["prune"]["remove"] = None
                for k in set(EXPLICIT) - explicit:  # the flags given replace the recipe's way of choosing
                    data["prune"][k] = None
            if "metric" in explicit:
                for k in EXPLICIT:
                    data["prune"][k] = None
        return Recipe.parse(data, "flags")

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "recipe"
    if err["type"] == "extra_forbidden":
        return f"unknown key {loc!r}; check its spelling against configs/README.md"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}"
