"""Every setting and its default, in one place: scoring, recovery, evaluation, push, and the recipe that holds them.

The command line is generated from these models (hfprune/cli_options.py), a recipe YAML is validated by them, and
the library functions take them: a default is written once, here, and `--help` shows it. The recipe schema is
strict: an unknown or misspelled key is an error that names its path, before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import RecipeError

# The Hub dataset calibration defaults to: WikiText-2, as the papers this tool follows calibrate and report on it.
WIKITEXT2 = "wikitext:wikitext-2-raw-v1"
# Every metric a recipe can name and what it chooses (its registry, scoring.metrics.METRICS, has exactly these).
METRIC_KINDS = {"reverse-order": "layer", "random": "layer", "magnitude-l1": "layer", "magnitude-l2": "layer",
                "taylor": "layer", "ppl": "layer", "block-influence": "layer", "angular": "block",
                "finercut": "sub-block"}

DEFAULT_TASKS = ["piqa", "hellaswag", "openbookqa", "arc_easy", "arc_challenge", "mmlu", "cmmlu", "winogrande",
                 "wikitext"]
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RECOVERY_METHODS = ("partial", "lora", "qlora", "partial-kd", "lora-kd")


class _Strict(BaseModel):
    # allow_inf_nan=False: an infinite or NaN number is never a setting (lr=inf trained a model of NaNs)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# ---------------------------------------------------------------- scoring

class CalibrationSettings(_Strict):
    """How a data-driven metric sees the model: shared by `hfprune score` and a recipe's prune: section."""

    data: str | None = Field(default=None, description="calibration text: a .txt/.json/.jsonl file or a Hub dataset "
                                                       "id[:config] (ppl defaults to WikiText-2)")
    samples: int = Field(default=10, ge=1, description="calibration windows")
    seq_len: int = Field(default=128, ge=2, description="tokens per window")
    seed: int = Field(default=0, description="calibration windows' offsets")
    distance: Literal["js", "angular", "euclidean"] = Field(default="js", description="finercut's output distance")
    iterative_step: int | None = Field(default=None, ge=1, description="remove K layers at a time and rescore in "
                                                                       "between (layer metrics)")


class ReplaceSettings(_Strict):
    """Training-free replacement of removed layers (ReplaceMe): a linear map fitted on calibration activations,
    folded into the FFN output projection of the layer before each removed block."""

    replace: Literal["none", "linear"] = Field(default="none", description="linear: replace each removed block by "
                                                                           "a fitted linear map (stock checkpoint, "
                                                                           "one matrix per block changed)")
    replace_data: str | None = Field(default=None, description="calibration text for the fit (a .txt/.json/.jsonl "
                                                               "file or a Hub dataset id[:config]); unset: --data")
    replace_samples: int = Field(default=128, ge=1, description="calibration windows for the fit")
    replace_seq_len: int = Field(default=256, ge=2, description="tokens per fit window")
    replace_ridge: float = Field(default=1e-3, ge=0, allow_inf_nan=False,
                                 description="ridge, relative to the mean diagonal of M^T.M")
    replace_weighting: Literal["token", "none"] = Field(
        default="token", description="token: each token's error relative to its own size (attention-sink tokens "
                                     "with 100x norms would otherwise own the fit); none: plain least squares")
    replace_objective: Literal["lstsq", "cosine"] = Field(
        default="lstsq", description="lstsq: closed-form least squares; cosine: then refined (Adam, 300 steps on "
                                     "16k tokens) to minimise the cosine distance to the original stream")
    replace_stream: Literal["auto", "on", "off"] = Field(
        default="auto", description="fit layer by layer from disk (same maps); auto: when the model does not fit "
                                    "in memory")


class ScoreOptions(CalibrationSettings):
    """Everything that determines a score run (and its cache key)."""

    metric: str = Field(description="reverse-order, random, magnitude-l1, magnitude-l2, taylor, ppl, "
                                    "block-influence, angular, finercut")
    remove: int | None = Field(default=None, ge=1, description="layers to remove (angular: the block size; "
                                                               "finercut: attention/FFN sub-blocks)")
    target_params: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                        description="instead of --remove: remove until the model has at most this "
                                                    "many parameters, a fraction of the source's (0.85) or a count "
                                                    "(1.3e9)")
    batch_size: int = Field(default=10, ge=1, description="windows per forward pass")
    dtype: str = Field(default="float32", description="float32, bfloat16, float16 or auto")
    device_map: str | None = Field(default=None, description="e.g. auto: spread/offload a model larger than memory "
                                                             "with accelerate")
    trust_remote_code: bool = Field(default=False, description="allow the source's own modeling code")
    stream: Literal["auto", "on", "off"] = Field(
        default="auto", description="score one decoder layer at a time, read from disk, in memory that holds one "
                                    "layer (same scores and choices); auto: when the model does not fit in memory")

    @model_validator(mode="after")
    def _one_size(self):
        if (self.remove is None) == (self.target_params is None):
            raise ValueError("give --remove N or --target-params T (one of them)")
        return self


# ---------------------------------------------------------------- recovery

class RecoverOptions(_Strict):
    """Training recipe. Defaults are the seed paper's (AdamW, lr 1e-5, batch 64, 2 epochs; warm-up scaled to the
    run) except where they fail on real checkpoints (see bench/RESULTS.md). It is also a recipe's `recover:`."""

    # the CLI and recipes spell distillation as one word (partial-kd); it is two settings: which parameters train
    # (method) and what they are trained on (objective). A -kd spelling is split on the way in.
    method: Literal[RECOVERY_METHODS] = Field(
        default="partial", description="partial-layer fine-tuning, LoRA, or QLoRA (CUDA + bitsandbytes); *-kd: the "
                                       "same parameters trained to match the dense teacher's next-token "
                                       "distributions (the same as --objective kd)")
    objective: Literal["sft", "kd"] = Field(
        default="sft", description="sft: cross-entropy on the dataset's (or the teacher's) answers; kd: KL to the "
                                   "dense teacher's next-token distributions")
    dataset: str = Field(default="alpaca", description="alpaca (yahma/alpaca-cleaned), dolly "
                                                       "(databricks/databricks-dolly-15k), a Hub id, or a local "
                                                       ".json/.jsonl in either shape")
    last_k: int = Field(default=3, ge=1, description="partial: train the last K layers")
    train_layers: list[int] | None = Field(default=None, description="partial: train exactly these layers instead, "
                                                                     "e.g. 20-23")
    tied_embeddings: Literal["freeze", "untie"] = Field(
        default="freeze", description="tied lm_head: keep it tied and frozen (the model keeps its size win) or "
                                      "untie it and train a copy (adds vocab x hidden parameters)")
    lora_r: int = Field(default=8, ge=1, description="LoRA rank")
    lora_alpha: int = Field(default=16, ge=1, description="LoRA alpha")
    lora_dropout: float = Field(default=0.05, ge=0, lt=1, description="LoRA dropout")
    lora_targets: list[str] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS),
                                    description="module names that get adapters")
    lr: float = Field(default=1e-5, gt=0, description="peak learning rate, AdamW, linear decay (the paper's, set "
                                                      "for 8B models; small models need ~2e-4)")
    epochs: float = Field(default=2.0, gt=0, le=10_000, description="passes over the data")
    batch_size: int = Field(default=64, ge=1, description="effective batch")
    micro_batch_size: int = Field(default=4, ge=1, description="per step; the rest is gradient accumulation")
    warmup_steps: int | None = Field(default=None, ge=0, description="warm-up steps; unset: 10% of the optimizer "
                                                                     "steps, at most 100 (the paper's value, set "
                                                                     "for 52k examples)")
    max_length: int | None = Field(default=None, ge=2, description="tokens per example; unset: 256 for Alpaca, "
                                                                   "1024 for Dolly")
    max_steps: int = Field(default=-1, ge=-1, description="stop after N optimizer steps (-1: run the epochs)")
    max_samples: int | None = Field(default=None, ge=1, description="use only the first N examples")
    prompt: Literal["auto", "alpaca", "chat"] = Field(
        default="auto", description="auto: the model's chat template when it has one, else the Alpaca prompt")
    seed: int = Field(default=0, description="data order and initialisation")
    save_steps: int = Field(default=200, ge=1, description="checkpoint every N optimizer steps")
    trust_remote_code: bool = Field(default=False, description="allow the model's own code (read it first)")
    teacher: str | None = Field(default=None, description="*-kd / answers teacher: the dense model; unset: the "
                                                          "source (pipeline) or the Hub source recorded in the "
                                                          "model's hfprune.json")
    kd_temperature: float = Field(default=1.0, gt=0, description="*-kd: softmax temperature of teacher and student")
    kd_alpha: float = Field(default=1.0, ge=0, le=1, description="*-kd: loss = A x KD + (1 - A) x SFT "
                                                                  "cross-entropy (1: pure KD)")
    teacher_logits: Literal["live", "cached"] = Field(
        default="live", description="*-kd: run the teacher alongside (live) or store its top-k logits once in the "
                                    "cache and reuse them (cached: no teacher in memory while training)")
    teacher_top_k: int = Field(default=64, ge=1, description="with teacher logits cached: logits kept per token")
    answers: Literal["dataset", "teacher"] = Field(
        default="dataset", description="train on the dataset's answers or on the teacher's own greedy answers to "
                                       "the same instructions (self-data distillation; generated once, cached)")
    answer_max_tokens: int = Field(default=256, ge=1, description="with answers teacher: longest generated answer")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="auto: bf16 mixed precision on a GPU, fp32 on a CPU; bf16 on a CPU with AMX or "
                                    "AVX512-BF16 trains several times faster (frozen weights bf16, trained ones "
                                    "fp32 masters, matmuls autocast to bf16)")
    prefix_cache_gib: float = Field(default=4.0, ge=0, description="partial, more than one epoch: keep the frozen "
                                                                 "layers' output per example (up to this many GiB) "
                                                                 "and replay it in later epochs instead of "
                                                                 "recomputing it; 0: off")
    @model_validator(mode="before")
    @classmethod
    def _split_kd(cls, data):
        if isinstance(data, dict) and isinstance(data.get("method"), str) and data["method"].endswith("-kd"):
            data = {**data, "method": data["method"].removesuffix("-kd"), "objective": "kd"}
        return data

    @property
    def label(self) -> str:
        """The method as the CLI spells it: partial, lora, qlora, partial-kd, lora-kd."""
        return self.method + ("-kd" if self.objective == "kd" and self.method != "none" else "")

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value):
        if value == 0:
            raise ValueError("0 trains nothing: give -1 (run the epochs) or at least 1")
        return value

    prefix_cache_store: Literal["auto", "memory", "disk"] = Field(
        default="auto", description="where the frozen layers' output is kept: memory, a memory-mapped file beside "
                                    "the training checkpoints, or auto (memory up to --prefix-cache-gib, else the "
                                    "file when the disk has room)")


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
# What `push SOURCE --target-params T` does when it is told nothing else, from the real checkpoints of
# bench/RESULTS.md: Block Influence chose the layers that kept a usable model on SmolLM2, Gemma 3 and Qwen2.5-Coder
# (reverse-order kept more of Qwen's MMLU letter-choice accuracy but broke its text), and the fitted linear map
# lowered its perplexity further. Data-driven, so it calibrates on WikiText-2 unless told otherwise.
DEFAULT_SIZE_METRIC, DEFAULT_SIZE_REPLACE = "block-influence", "linear"
DEFAULT_SIZE_DATA = WIKITEXT2
# ... and when it heals: the seed paper's reverse-order, which partial fine-tuning brought back to 92% of the dense
# 1.5B's MMLU (fluent again), the best healed result measured
DEFAULT_HEALED_SIZE_METRIC = "reverse-order"


class PruneSection(CalibrationSettings, ReplaceSettings):
    """What to remove: explicit layers, a whole plan, or a metric that chooses `remove` of them (with the
    calibration settings of `hfprune score`), and whether the removed blocks are replaced by linear maps."""

    plan: PlanSection | None = None
    drop_last: int | None = Field(default=None, ge=1)
    drop_layers: list[int] | str | None = None
    skip_attention: list[int] | str | None = None
    skip_mlp: list[int] | str | None = None
    metric: str | None = None
    remove: int | None = Field(default=None, ge=1)
    target_params: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    def score_options(self, trust_remote_code: bool = False) -> ScoreOptions:
        """The `hfprune score` settings this section implies (metric recipes only)."""
        fields = set(CalibrationSettings.model_fields) | {"metric", "remove", "target_params"}
        return ScoreOptions(**self.model_dump(include=fields), trust_remote_code=trust_remote_code)

    @model_validator(mode="after")
    def _one_way(self):
        explicit = self.drop_last is not None or self.drop_layers or self.skip_attention or self.skip_mlp
        if self.plan is not None and (explicit or self.metric):
            raise ValueError("give a plan, explicit layers (drop_last/drop_layers/skip_*) or a metric; not two")
        if explicit and self.metric:
            raise ValueError("give explicit layers (drop_last/drop_layers/skip_*) or a metric, not both")
        if self.target_params is not None and not self.metric and not explicit and self.plan is None:
            object.__setattr__(self, "metric", DEFAULT_SIZE_METRIC)  # a size alone: the recipe measured best
            if self.data is None:
                object.__setattr__(self, "data", DEFAULT_SIZE_DATA)
        if self.metric and (self.remove is None) == (self.target_params is None):
            raise ValueError("a metric needs remove: N or target_params: T (one of them)")
        if (self.remove is not None or self.target_params is not None) and not self.metric:
            raise ValueError("remove / target_params need a metric (reverse-order takes the last layers)")
        if self.target_params is not None and self.iterative_step:
            raise ValueError("target_params and iterative_step do not combine yet: give remove: N")
        if self.replace != "none" and self.iterative_step:
            raise ValueError("replace and iterative_step do not combine yet: the rounds heal in between, the fit "
                             "needs the final plan")
        if self.metric:
            if self.metric not in METRIC_KINDS:
                raise ValueError(f"unknown metric {self.metric!r}; choose one of: {', '.join(METRIC_KINDS)}")
            if self.iterative_step and METRIC_KINDS[self.metric] != "layer":
                raise ValueError(f"iterative_step needs a layer metric; {self.metric} scores "
                                 f"{METRIC_KINDS[self.metric]}s")
        return self

    @property
    def is_empty(self) -> bool:
        return not (self.plan or self.drop_last or self.drop_layers or self.skip_attention or self.skip_mlp
                    or self.metric)


class RecoverSection(RecoverOptions):
    """RecoverOptions, plus "none" (no recovery, the default in a recipe)."""

    method: Literal[RECOVERY_METHODS + ("none",)] = "none"

    def options(self) -> RecoverOptions:
        """The settings `recover` runs with (method is not none)."""
        return RecoverOptions(**self.model_dump())


class EvalSection(_Strict):
    """How dense, pruned and healed models are evaluated (lm-eval) and timed; every field except speed is part of
    the evaluation cache's key."""

    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_TASKS),
                             description="lm-eval tasks (offline: hfprune_demo_mc, hfprune_demo_ppl or your own "
                                         "YAMLs with --include-path)")
    limit: float | None = Field(default=None, gt=0, description="at most N examples per task, or a fraction in "
                                                                "(0, 1) of each")
    batch_size: int = Field(default=32, ge=1, description="most requests per forward pass (the memory budget may "
                                                          "take fewer)")
    include_path: str | None = Field(default=None, description="a folder of extra lm-eval task YAMLs")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="evaluation dtype; auto: bfloat16 on GPUs and on CPUs that compute it natively "
                                    "(AMX, AVX512-BF16), float32 elsewhere")
    max_length: int | None = Field(default=None, ge=16, description="tokens per lm-eval window; unset: the model's "
                                                                    "context, at most 2048")
    batch_memory_gib: float | None = Field(default=None, gt=0, description="memory a batch may use beyond the "
                                                                           "weights; unset: 1 on a CPU, a quarter "
                                                                           "of a GPU's free memory")
    speed_rounds: int = Field(default=5, ge=0, description="rounds of the decode-speed measurement (final vs dense "
                                                           "model, interleaved in one process); 0: skip it")
    latency_tokens: int = Field(default=16, ge=1, description="tokens generated per timed decode")

    @field_validator("limit")
    @classmethod
    def _whole_limit(cls, value):
        if value is not None and value >= 1:
            if value != int(value):
                raise ValueError("give a whole number of examples, or a fraction below 1")
            return int(value)
        return value


class PushSection(_Strict):
    repo_id: str | None = None
    private: bool = False
    enabled: bool = True

    @field_validator("repo_id")
    @classmethod
    def _hub_repo_id(cls, value):
        if value is not None:
            check_repo_id(value, "--repo-id")
        return value


def check_repo_id(repo_id: str, what: str) -> None:
    """huggingface_hub's own rules for a repo id ('name' or 'namespace/name'), as one line naming `what`."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"{what} {repo_id!r} is not a Hub repo id: {str(e).split(':')[0]}") from None


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
            data = yaml.load(p.read_text(), Loader=_unique_key_loader()) or {}
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
            text = _first_error(e)
            raise RecipeError(text if text.startswith("--") else f"{where}: {text}") from None

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
                data["prune"]["metric"] = data["prune"]["remove"] = data["prune"]["target_params"] = None
                for k in set(EXPLICIT) - explicit:  # the flags given replace the recipe's way of choosing
                    data["prune"][k] = None
            if "metric" in explicit:
                for k in EXPLICIT:
                    data["prune"][k] = None
            if "remove" in explicit:
                data["prune"]["target_params"] = None
            if "target_params" in explicit:
                data["prune"]["remove"] = None
        return Recipe.parse(data, "flags")

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """safe_load that refuses a key given twice in one mapping (YAML would keep the last one silently)."""

        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.YAMLError(f"key {key!r} is given twice (lines {seen[key]} and "
                                         f"{key_node.start_mark.line + 1}); keep one")
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "recipe"
    if err["type"] == "extra_forbidden":
        return f"unknown key {loc!r}; check its spelling against configs/README.md"
    text = error_text(err)
    return text if text.startswith("--") else f"{loc}: {text}"


_MESSAGES = {"greater_than_equal": "must be at least {ge}", "greater_than": "must be above {gt}",
             "finite_number": "must be a finite number",
             "less_than_equal": "must be at most {le}", "less_than": "must be below {lt}",
             "literal_error": "must be {expected}"}


def error_text(err: dict) -> str:
    """One pydantic error as a short phrase: 'must be at least 1'."""
    template = _MESSAGES.get(err["type"])
    return template.format(**(err.get("ctx") or {})) if template else err["msg"].removeprefix("Value error, ")
