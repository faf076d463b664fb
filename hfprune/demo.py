"""`hfprune demo`: the whole pipeline offline on an embedded default, leaving every artifact in one folder."""

from __future__ import annotations

from pathlib import Path

from .errors import OutputExistsError
from .workdir import remove_hfprune_folder

SOURCE_DIR = "demo-source"


def demo_recipe(source: Path):
    from .evaluation.harness import DATA_DIR
    from .settings import Recipe

    return Recipe.parse({
        "source": str(source),
        "prune": {"drop_last": 2},
        "recover": {"method": "partial", "dataset": str(DATA_DIR / "demo_instructions.jsonl"), "last_k": 2,
                    "lr": 3e-3, "batch_size": 8, "micro_batch_size": 8, "warmup_steps": 0, "epochs": 4},
        "eval": {"tasks": ["hfprune_demo_mc", "hfprune_demo_ppl"], "batch_size": 8, "latency_tokens": 8},
        "push": {"enabled": False},
    }, "demo recipe")


def run_demo(work_dir: str | Path, overwrite: bool = False, echo=print):
    """Build a tiny Llama-style model and tokenizer, then prune (drop the last 2 of 8 layers), heal (partial
    fine-tuning on bundled instructions), evaluate (bundled lm-eval tasks) and write the final repo folder."""
    from .pipeline import Pipeline
    from .tiny import build_tiny_checkpoint

    work = Path(work_dir)
    if work.exists() and (not work.is_dir() or any(work.iterdir())):
        if not overwrite:
            raise OutputExistsError(f"{work} already exists; pass --overwrite or choose another --work-dir")
        remove_hfprune_folder(work)  # only a folder an earlier demo (or push) made
    work.mkdir(parents=True, exist_ok=True)
    source = build_tiny_checkpoint(work / SOURCE_DIR, "llama", num_layers=8)
    echo(f"built a tiny 8-layer Llama-style model and a tokenizer trained on the fly: {source}")
    result = Pipeline(demo_recipe(source), work, keep=(SOURCE_DIR,), echo=echo,
                      eval_cache=work / ".cache" / "eval", score_cache=work / ".cache" / "scores").run()
    echo(f"final repo folder with its model card: {result.final_dir}")
    echo(f"load it: AutoModelForCausalLM.from_pretrained({str(result.final_dir)!r})")
    return result
