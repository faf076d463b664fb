"""Flags and recipe overrides shared by several commands: defined once."""

from __future__ import annotations

import argparse


def add_plan_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to remove (0-based layer indices of the source model)")
    g.add_argument("--drop-last", type=int, metavar="N", help="drop the last N layers (reverse-order pruning)")
    g.add_argument("--drop-layers", metavar="LIST", help="drop these layers, e.g. 3,7,9-11")
    g.add_argument("--skip-attention", metavar="LIST", help="remove only the attention sub-block of these layers")
    g.add_argument("--skip-mlp", metavar="LIST", help="remove only the FFN/MoE sub-block of these layers")
    g.add_argument("--plan", dest="plan_file", metavar="FILE", help="a plan JSON written by `hfprune score`")


DISTILL_FIELDS = ("teacher", "kd_temperature", "kd_alpha", "teacher_logits", "teacher_top_k", "answers",
                  "answer_max_tokens")
# the recovery settings push and sweep take as flags (the rest through --recipe); renamed where a flag of the
# pipeline itself has the name
PIPELINE_RECOVERY_FIELDS = ("lr", "epochs", "batch_size", "micro_batch_size", "last_k", "lora_r", "max_samples",
                            "max_length", "warmup_steps", "tied_embeddings", "prompt") + DISTILL_FIELDS[1:]
PIPELINE_RENAMES = {"batch_size": "--recover-batch-size", "micro_batch_size": "--recover-micro-batch-size"}


def add_recovery_flags(p: argparse.ArgumentParser) -> None:
    from ..cli_options import add_model_flags
    from ..settings import RecoverOptions

    g = p.add_argument_group("recovery hyper-parameters (override the recipe)")
    add_model_flags(g, RecoverOptions, fields=PIPELINE_RECOVERY_FIELDS, rename=PIPELINE_RENAMES, prefix="recover_",
                    override=True)


def recovery_overrides(args) -> dict:
    return {f"recover.{k[len('recover_'):]}": v for k, v in vars(args).items()
            if k.startswith("recover_") and v is not None}


# push/sweep carry recovery flags too: the evaluation's own take a prefix where the names would clash
EVAL_RENAMES = {"dtype": "--eval-dtype", "max_length": "--eval-max-length"}


def add_eval_options(p: argparse.ArgumentParser) -> None:
    from ..cli_options import add_model_flags
    from ..settings import EvalSection

    add_model_flags(p, EvalSection, fields=("tasks", "limit", "include_path", "dtype", "max_length", "speed_rounds",
                                               "latency_tokens"),
                    prefix="eval_", override=True, rename=EVAL_RENAMES)


def eval_overrides(args) -> dict:
    from ..cli_options import values_from_args
    from ..settings import EvalSection

    return {f"eval.{k}": v for k, v in values_from_args(args, EvalSection, prefix="eval_",
                                                         rename=EVAL_RENAMES).items()}


def add_calibration_options(p: argparse.ArgumentParser, fields) -> None:
    from ..cli_options import add_model_flags
    from ..settings import CalibrationSettings

    add_model_flags(p, CalibrationSettings, fields=fields, prefix="prune_", override=True)


def calibration_overrides(args) -> dict:
    from ..cli_options import values_from_args
    from ..settings import CalibrationSettings, ReplaceSettings

    values = {**values_from_args(args, CalibrationSettings, prefix="prune_"),
              **values_from_args(args, ReplaceSettings, prefix="prune_")}
    return {f"prune.{k}": v for k, v in values.items()}


def add_replace_options(p: argparse.ArgumentParser, axis: bool = False) -> None:
    """The --replace settings; a sweep takes --replace as a list (one more axis of entries)."""
    from ..cli_options import add_model_flags
    from ..settings import ReplaceSettings

    g = p.add_argument_group("training-free replacement of the removed layers (ReplaceMe)")
    if axis:
        g.add_argument("--replace", dest="replace_axis", default="none", metavar="LIST",
                       help="comma list of none, linear: each entry with each (default: %(default)s)")
    add_model_flags(g, ReplaceSettings, exclude=("replace",) if axis else (), prefix="prune_", override=True)


# ---------------------------------------------------------------- flags every command that needs them shares

def add_token(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", help="Hub token (default: the logged-in one); never printed or stored")


def add_no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_trust_remote_code(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the checkpoint's own modeling code (read it first)")


def add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} (only what hfprune wrote)")


def add_run_flags(p: argparse.ArgumentParser, overwrite_what: str) -> None:
    """--overwrite, --token, --trust-remote-code, --no-progress: what every command that runs a model takes."""
    add_overwrite(p, overwrite_what)
    add_token(p)
    add_trust_remote_code(p)
    add_no_progress(p)
