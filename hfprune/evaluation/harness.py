"""Evaluation with lm-evaluation-harness on the in-memory model, plus size.

The model runs in the dtype the hardware computes fastest (hardware.resolve_eval_dtype) through lm-eval's HFLM with
logits computed only where lm-eval reads them and batches sized by memory (bounded_lm). The dense baseline is cached
by source identity, dtype and task settings, so a second recipe on the same base reuses it. Bundled offline tasks
(`hfprune_demo_mc`, `hfprune_demo_ppl`) are always available; `include_path` adds yours. Decode speed is measured
apart (speed.py), as a ratio between models in one process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import time
from pathlib import Path

from .. import __version__
from ..errors import EvalError
from ..workdir import write_json

CITATION = "A framework for few-shot language model evaluation (Gao et al.), EleutherAI lm-evaluation-harness"

DATA_DIR = Path(__file__).resolve().parents[1] / "resources"
PRIMARY_METRICS = ("acc", "acc_norm", "word_perplexity", "byte_perplexity", "exact_match")
DEFAULT_MAX_LENGTH = 2048
DEFAULT_CPU_BATCH_MEMORY_GIB = 1


def bundled_tasks_dir(tmp: Path) -> Path:
    """Write the bundled offline lm-eval task YAMLs (resources/tasks), with absolute data paths, into `tmp`."""
    resources = json.dumps(str(DATA_DIR.resolve()))[1:-1]  # escaped for a double-quoted YAML string
    for template in sorted((DATA_DIR / "tasks").glob("*.yaml.in")):
        (tmp / template.name.removesuffix(".in")).write_text(template.read_text().replace("@RESOURCES@", resources))
    return tmp


def load_for_eval(model_path: Path, trust_remote_code: bool = False, dtype: str = "float32"):
    import torch

    from ..disk.remote_code import load_model, load_tokenizer

    model = load_model(model_path, trust_remote_code, dtype=getattr(torch, dtype)).eval()
    if torch.cuda.is_available():
        model = model.to("cuda")
    try:
        tokenizer = load_tokenizer(model_path, trust_remote_code)
    except (OSError, ValueError) as e:
        raise EvalError(f"cannot load the tokenizer of {model_path}: {str(e).splitlines()[0]}") from None
    return model, tokenizer


def batch_memory_bytes(setting_gib: float | None) -> int:
    """The memory one evaluation batch may use beyond the weights: as set, else 1 GiB on a CPU and a quarter of
    the free memory of a GPU."""
    import torch

    if setting_gib is not None:
        return int(setting_gib * 2**30)
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return int(free / 4)
    return DEFAULT_CPU_BATCH_MEMORY_GIB * 2**30


def context_length(model, setting: int | None) -> int:
    """Tokens per lm-eval window: as set, else the model's context capped at DEFAULT_MAX_LENGTH. lm-eval's own
    default is the full context, whose rolling-perplexity windows need context x vocabulary x 10 bytes of logits
    (131k x 128k for Llama 3.1: 160 GB); the cap is recorded with the results."""
    if setting is not None:
        return setting
    config = model.config.get_text_config()
    context = next((getattr(config, k) for k in ("max_position_embeddings", "n_positions", "n_ctx")
                    if isinstance(getattr(config, k, None), int)), DEFAULT_MAX_LENGTH)
    return min(context, DEFAULT_MAX_LENGTH)


def evaluate_model(model_path: str | Path, tasks: list[str], *, limit: int | float | None = None,
                   batch_size: int = 32, include_path: str | None = None, dtype: str = "auto",
                   max_length: int | None = None, batch_memory_gib: float | None = None,
                   trust_remote_code: bool = False, log_samples: bool = False, progress: bool = True) -> dict:
    """Run lm-eval tasks on the checkpoint (in `dtype`: auto picks bfloat16 where the hardware computes it) and
    measure its size. `batch_size` caps the requests per forward; the memory budget may take fewer."""
    import lm_eval

    from ..hardware import resolve_eval_dtype
    from .bounded_lm import BoundedHFLM

    dtype, dtype_reason = resolve_eval_dtype(dtype)
    model_path = Path(model_path)
    with tempfile.TemporaryDirectory(prefix="hfprune-tasks-") as tmp:
        manager = _task_manager(tasks, [str(bundled_tasks_dir(Path(tmp)))] + ([include_path] if include_path else []))
        model, tokenizer = load_for_eval(model_path, trust_remote_code, dtype)  # after the tasks' data is at hand
        import logging

        # lm-eval warns that an in-memory model is "not of type str": passing it is the point, silence that
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        window = context_length(model, max_length)
        budget = batch_memory_bytes(batch_memory_gib)
        lm = BoundedHFLM(pretrained=model, tokenizer=tokenizer, device=str(model.device), max_length=window,
                         batch_memory_bytes=budget, max_batch_size=batch_size,
                         softmax_dtype="float32" if dtype != "float32" else None)
        import lm_eval.evaluator

        # lm-eval records the git hash of the current directory by running `git describe`, which prints
        # "fatal: not a git repository" outside a checkout; that hash says nothing about the model
        lm_eval.evaluator.get_git_commit_hash = lambda: None
        start = time.perf_counter()
        with _task_data_errors(tasks), _quiet_bars(not progress):
            out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), limit=limit, task_manager=manager,
                                          log_samples=log_samples, bootstrap_iters=1000, verbosity="ERROR")
        seconds = time.perf_counter() - start
    raw = {k: out.get(k) for k in ("results", "versions", "n-samples", "higher_is_better", "configs")}
    raw = json.loads(json.dumps(raw, default=str))
    result = {
        "model": str(model_path),
        "tasks": summarize(raw["results"]),
        "size": model_size(model, model_path),
        "settings": {"tasks": list(tasks), "limit": limit, "batch_size": batch_size, "dtype": dtype,
                     "dtype_reason": dtype_reason, "max_length": window, "batch_memory_gib": round(budget / 2**30, 3),
                     "device": str(model.device),
                     "lm_eval_version": getattr(lm_eval, "__version__", "unknown"), "hfprune_version": __version__},
        "cost": {"seconds": round(seconds, 1), **lm.calls},
        "raw": raw,
    }
    if log_samples:
        result["samples"] = out.get("samples")
    return result


@contextlib.contextmanager
def _quiet_bars(quiet: bool):
    """lm-eval's own progress bars (building requests, tokenizing, running them) and its batch-size chatter on
    stdout follow --no-progress. Its bars pass `disable=` explicitly and tqdm reads TQDM_DISABLE only when it is
    imported, so every tqdm made inside the context is switched off at its constructor."""
    if not quiet:
        yield
        return
    import io

    from tqdm import std

    original = std.tqdm.__init__

    def silenced(self, *args, **kwargs):
        if len(args) > 10:  # disable given positionally (the 11th parameter)
            args = args[:10] + (True,) + args[11:]
        else:
            kwargs["disable"] = True
        original(self, *args, **kwargs)

    std.tqdm.__init__ = silenced
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "Passed argument batch_size = auto ..."
            yield
    finally:
        std.tqdm.__init__ = original


def _task_manager(tasks: list[str], paths: list[str]):
    """lm-eval's TaskManager over the bundled and --include-path tasks (and lm-eval's own only when a task needs
    them); every task checked to exist and its data fetched (or found cached) before any model is loaded."""
    from lm_eval.tasks import TaskManager

    local = _local_task_names(paths)
    # indexing lm-eval's thousands of built-in tasks takes ~10 s: only when a task needs them
    manager = TaskManager(include_path=paths, include_defaults=any(t not in local for t in tasks))
    if any(t not in local for t in tasks):
        from ..hub import offline_unless_reachable

        offline_unless_reachable()  # Hub task data while offline: the cache, or one clear error at once
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise EvalError(f"unknown lm-eval task {unknown[0]!r}; see `lm_eval ls tasks`, or give --include-path "
                        "with your task YAML")
    with _task_data_errors(tasks):
        from lm_eval.tasks import get_task_dict

        get_task_dict(list(tasks), manager)
    return manager


@contextlib.contextmanager
def _task_data_errors(tasks: list[str]):
    """Task data that cannot be fetched becomes one EvalError naming the offline alternatives; the rest re-raise."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - only data-access failures are translated
        if not _is_data_access_error(e):
            raise
        raise EvalError(f"cannot fetch the data of tasks {', '.join(tasks)} ({str(e).splitlines()[0]}); "
                        "retry online, or evaluate offline: the bundled tasks hfprune_demo_mc and "
                        "hfprune_demo_ppl, or your own task YAMLs via --include-path") from None


def _local_task_names(paths: list[str]) -> set[str]:
    """Task names defined by YAML files in `paths` (bundled and --include-path)."""
    import yaml

    names = set()
    for folder in paths:
        for f in Path(folder).rglob("*.yaml"):
            try:
                data = yaml.safe_load(f.read_text())
            except (yaml.YAMLError, OSError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and isinstance(data.get("task"), str):
                names.add(data["task"])
    return names


def _is_data_access_error(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        if isinstance(exc, (ConnectionError, TimeoutError)) or name in (
                "DatasetNotFoundError", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError",
                "HfHubHTTPError"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def summarize(results: dict) -> dict:
    """{task: {metric: value, metric_stderr: value}} for the primary metrics of each task."""
    out = {}
    for task, metrics in results.items():
        row = {}
        for key, value in metrics.items():
            name, _, filt = key.partition(",")
            if name in PRIMARY_METRICS and isinstance(value, (int, float)):
                row[name] = float(value)
                stderr = metrics.get(f"{name}_stderr,{filt}")
                if isinstance(stderr, (int, float)):
                    row[f"{name}_stderr"] = float(stderr)
        if row:
            out[task] = row
    return out


def model_size(model, model_path: Path) -> dict:
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    disk = sum(p.stat().st_size for p in model_path.glob("*.safetensors"))
    return {"parameters": params, "bytes_on_disk": disk, "num_layers": model.config.num_hidden_layers}


def tasks_fingerprint(include_path: str | None) -> str | None:
    """A hash of the task YAMLs in `include_path` and of the local data files they name: editing a local task
    or its data must not reuse a cached result."""
    if not include_path or not Path(include_path).is_dir():
        return None
    import yaml

    h = hashlib.sha256()
    for f in sorted(Path(include_path).rglob("*.yaml")):
        raw = f.read_bytes()
        h.update(f.name.encode() + raw)
        try:
            data = yaml.safe_load(raw) or {}
        except yaml.YAMLError:
            continue
        files = ((data.get("dataset_kwargs") or {}).get("data_files") if isinstance(data, dict) else None) or {}
        for value in (files.values() if isinstance(files, dict) else [files]):
            for name in (value if isinstance(value, list) else [value]):
                if isinstance(name, str) and Path(name).is_file():
                    h.update(Path(name).read_bytes())
    return h.hexdigest()


def cached_evaluation(identity: dict, model_path: Path, tasks: list[str], cache_dir: Path | None, **kwargs) -> dict:
    """evaluate_model, cached under a key of the model identity, every setting and the local tasks' content."""
    fingerprint = tasks_fingerprint(kwargs.get("include_path"))
    keyed = {k: v for k, v in kwargs.items() if k != "progress"}  # how it is shown changes no number
    key = hashlib.sha256(json.dumps({"id": identity, "tasks": tasks, **keyed, "tasks_content": fingerprint,
                                     "v": __version__}, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = cache_dir / f"{key}.json" if cache_dir else None
    if path is not None and path.is_file():
        result = json.loads(path.read_text())
        result["cached"] = True
        return result
    result = evaluate_model(model_path, tasks, **kwargs)
    if path is not None:
        write_json(path, result, indent=None)
    result["cached"] = False
    return result
