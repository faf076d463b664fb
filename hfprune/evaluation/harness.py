"""Evaluation with lm-evaluation-harness on the in-memory model, plus size and generation speed.

The dense baseline is cached by source identity and task settings, so a second recipe on the same base reuses it.
Bundled offline tasks (`hfprune_demo_mc`, `hfprune_demo_ppl`) are always available; `include_path` adds yours.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

from .. import __version__, cache_root
from ..errors import EvalError
from ..workdir import write_json

DATA_DIR = Path(__file__).resolve().parents[1] / "resources"
DEFAULT_EVAL_CACHE = cache_root() / "eval"
PRIMARY_METRICS = ("acc", "acc_norm", "word_perplexity", "byte_perplexity", "exact_match")
LATENCY_PROMPT = "Below is an instruction that describes a task. Write a response that appropriately completes"


def bundled_tasks_dir(tmp: Path) -> Path:
    """Write the bundled offline lm-eval task YAMLs (resources/tasks), with absolute data paths, into `tmp`."""
    resources = json.dumps(str(DATA_DIR.resolve()))[1:-1]  # escaped for a double-quoted YAML string
    for template in sorted((DATA_DIR / "tasks").glob("*.yaml.in")):
        (tmp / template.name.removesuffix(".in")).write_text(template.read_text().replace("@RESOURCES@", resources))
    return tmp


def load_for_eval(model_path: Path, trust_remote_code: bool = False):
    import torch

    from ..disk.remote_code import load_model, load_tokenizer

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = load_model(model_path, trust_remote_code, dtype=dtype).eval()
    if torch.cuda.is_available():
        model = model.to("cuda")
    try:
        tokenizer = load_tokenizer(model_path, trust_remote_code)
    except (OSError, ValueError) as e:
        raise EvalError(f"cannot load the tokenizer of {model_path}: {str(e).splitlines()[0]}") from None
    return model, tokenizer


def evaluate_model(model_path: str | Path, tasks: list[str], *, limit: int | None = None, batch_size: int = 8,
                   include_path: str | None = None, latency_tokens: int = 32, trust_remote_code: bool = False) -> dict:
    """Run lm-eval tasks on the checkpoint, and measure its size and generation speed."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model_path = Path(model_path)
    with tempfile.TemporaryDirectory(prefix="hfprune-tasks-") as tmp:
        paths = [str(bundled_tasks_dir(Path(tmp)))] + ([include_path] if include_path else [])
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
        with _task_data_errors(tasks):  # fetch (or find cached) every task's data before loading the model
            from lm_eval.tasks import get_task_dict

            get_task_dict(list(tasks), manager)
        model, tokenizer = load_for_eval(model_path, trust_remote_code)  # after the tasks' data is at hand
        import logging

        # lm-eval warns that an in-memory model is "not of type str": passing it is the point, silence that
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(model.device))
        import lm_eval.evaluator

        # lm-eval records the git hash of the current directory by running `git describe`, which prints
        # "fatal: not a git repository" outside a checkout; that hash says nothing about the model
        lm_eval.evaluator.get_git_commit_hash = lambda: None
        with _task_data_errors(tasks):
            out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), limit=limit, task_manager=manager,
                                          log_samples=False, bootstrap_iters=1000, verbosity="ERROR")
    raw = {k: out.get(k) for k in ("results", "versions", "n-samples", "higher_is_better", "configs")}
    raw = json.loads(json.dumps(raw, default=str))
    return {
        "model": str(model_path),
        "tasks": summarize(raw["results"]),
        "size": model_size(model, model_path),
        "speed": generation_speed(model, tokenizer, latency_tokens),
        "settings": {"tasks": list(tasks), "limit": limit, "batch_size": batch_size,
                     "lm_eval_version": getattr(lm_eval, "__version__", "unknown"), "hfprune_version": __version__},
        "raw": raw,
    }


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


def generation_speed(model, tokenizer, new_tokens: int, repeats: int = 5) -> dict:
    """Median wall time of greedy generation of `new_tokens` tokens (batch 1) on this machine, after a warm-up,
    with the spread (min/max) of the repeats so a noisy measurement shows as noisy."""
    import torch

    ids = tokenizer(LATENCY_PROMPT, return_tensors="pt").input_ids.to(model.device)
    times = []
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for _ in range(repeats):
            start = time.perf_counter()
            model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"device": str(model.device), "new_tokens": new_tokens, "latency_s": median,
            "latency_min_s": min(times), "latency_max_s": max(times), "repeats": repeats,
            "tokens_per_s": new_tokens / median, "prompt_tokens": int(ids.shape[1])}


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
    key = hashlib.sha256(json.dumps({"id": identity, "tasks": tasks, **kwargs, "tasks_content": fingerprint,
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
