"""`hfprune recover`: heal a pruned checkpoint with partial-layer fine-tuning, LoRA or QLoRA.

Partial (the seed paper's winner) trains lm_head, the final norm and the last k layers; everything before them is
frozen, so it runs without autograd and has no gradients or optimizer state. LoRA/QLoRA adapters are merged before
saving, so the output loads without peft. The output has the same on-disk form as surgery: safetensors shards,
the source config.json changed only where training changed the model, tokenizer and licence files copied.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..disk.model_types import architecture_for
from ..disk.checkpoint import copy_aux_files, read_config
from ..disk.remote_code import MODELING_FILE, load_model, load_tokenizer
from ..errors import DataError, PlanError, RecoveryError
from ..settings import RecoverOptions
from ..workdir import (
    CHECKPOINTS_MARKER,
    COMPLETE_MARKER,
    PROVENANCE_FILE,
    check_not_input,
    check_output,
    remove_hfprune_folder,
    staged_folder,
)
from .record import RecoveryRun
from .instructions import (
    IGNORE_INDEX,
    load_examples,
    resolve_dataset,
    tokenize_example,
)


def is_distillation(options: RecoverOptions) -> bool:
    return options.objective == "kd"


@dataclass
class RecoverResult:
    output: Path
    trainable_params: int
    total_params: int
    losses: list[float]
    tokens_per_s: float
    tied_embeddings: str | None
    train_layers: list[int] | None
    resumed_from: str | None
    run: RecoveryRun  # what actually ran: steps, warm-up, prompt, examples, tokens, first/last loss
    warnings: list[str]
    main_process: bool = True  # False on the other ranks of a multi-process run, which write nothing


def world() -> tuple[int, int]:
    """(rank, world size) of this process as set by accelerate launch / torchrun; (0, 1) when run alone."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def checkpoints_dir(output: Path) -> Path:
    return output.parent / f"{output.name}.checkpoints"


def recover(model_path: str | Path, output: str | Path, options: RecoverOptions, *, overwrite: bool = False,
            resume: bool = False, progress: bool = False, cache_dir: Path | None = None, echo=print,
            teacher_source=None, callbacks: list | None = None) -> RecoverResult:
    """Fine-tune the checkpoint at `model_path` and write the healed checkpoint to `output`.

    Distillation (a KD objective, or answers="teacher") caches the teacher's answers and stored logits in
    `cache_dir` (default: hfprune's cache folder), keyed by the teacher and the data. `teacher_source` (a
    resolved hub.Source) is the teacher when options.teacher is not set: the pipeline's dense source.
    `callbacks`: more transformers TrainerCallbacks for the run (a caller's logging, or a test's interruption).

    Phases: check the run, load the teacher and the training rows, set up the student, train, judge and record
    the run, merge and save.
    """
    import torch

    model_path, output = Path(model_path), Path(output)
    rank, world_size = world()
    ckpt_dir, config, train_layers = _check_run(model_path, output, options, overwrite, resume, rank)
    if cache_dir is None:
        from .. import cache_root

        cache_dir = cache_root() / "distill"
    bf16, precision_note = _mixed_precision(options)
    train_dtype = torch.bfloat16 if bf16 else torch.float32
    teacher = None
    if is_distillation(options) or options.answers == "teacher":
        from .distill import resolve_teacher

        teacher = resolve_teacher(options.teacher or teacher_source, model_path)
    tokenizer, rows, prompt, skipped = _training_rows(model_path, options, teacher, cache_dir, train_dtype, progress,
                                                      echo)
    kd = None
    if is_distillation(options):  # before the student loads: stored logits never share memory with it
        kd = _teacher_signal(teacher, rows, options, cache_dir, train_dtype, progress, echo)
    model, tied, total, trainable = _student(model_path, options, config, train_layers, bf16)

    steps, warmup, warnings = schedule(options, len(rows))
    if precision_note:
        warnings.append(precision_note)
    if skipped:
        warnings.append(f"{skipped} rows of {options.dataset} were skipped: their instruction or response is empty")
    prefix, prefix_note = _prefix_cache(model, options, config, train_layers, rows, world_size, ckpt_dir)
    tracker, resumed_from = _train(model, tokenizer, rows, options, warmup, ckpt_dir, resume, progress,
                                   callbacks or [], kd, prefix, bf16)
    trend = _loss_trend_warning(tracker.losses)
    if trend:
        warnings.append(trend)
    run = _run_record(options, tracker, steps, warmup, prompt, len(rows), warnings, world_size, bf16, prefix,
                      prefix_note, teacher, kd)
    if prefix is not None:
        prefix.close()
    model.eval()  # no dropout from here on: merging and saving see the deterministic network
    result = RecoverResult(output, trainable, total, tracker.losses, tracker.tokens_per_s(), tied, train_layers,
                           resumed_from, run, warnings, main_process=rank == 0)
    if rank != 0:  # data parallel: every rank holds the same weights; rank 0 writes them
        return result
    if options.method != "partial":
        model = _merge(model, model_path, options, ckpt_dir)
    _save(model, model_path, output, config, options, tied, train_layers, overwrite, run, tracker.state_dict)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result


# ---------------------------------------------------------------- the phases

def _check_run(model_path: Path, output: Path, options: RecoverOptions, overwrite: bool, resume: bool,
               rank: int) -> tuple[Path, dict, list[int] | None]:
    """(training-checkpoint folder, config, layers partial fine-tuning trains) once every refusal is passed."""
    validate_options(options)
    ckpt_dir = checkpoints_dir(output)
    check_output(output, overwrite, {"model": model_path})
    check_not_input(ckpt_dir, {"model": model_path}, "checkpoint folder")
    config = read_config(model_path)
    num_layers = config.get("num_hidden_layers") or config.get("text_config", {}).get("num_hidden_layers")
    train_layers = _train_layers(options, num_layers) if options.method == "partial" else None
    if resume and not last_complete_checkpoint(ckpt_dir):
        raise RecoveryError(f"--resume: no checkpoint to resume in {ckpt_dir} (none was completely written); run "
                            "without --resume to start")
    sharding = [k for k in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED") if os.environ.get(k, "").lower() == "true"]
    if sharding and options.method != "partial":
        raise RecoveryError(f"--method {options.label} under {'FSDP' if 'FSDP' in sharding[0] else 'DeepSpeed'}: "
                            "hfprune merges LoRA adapters into full weights, which it does not gather from shards "
                            "yet; use partial, or data parallel (accelerate launch --multi_gpu) where each GPU holds "
                            "the model")
    if options.method == "qlora":
        _require_qlora()
    if not resume and rank == 0:
        remove_hfprune_folder(ckpt_dir)  # refuses a folder hfprune did not write (the other ranks wait in _train)
    return ckpt_dir, config, train_layers


def _training_rows(model_path: Path, options: RecoverOptions, teacher, cache_dir: Path, train_dtype, progress: bool,
                   echo) -> tuple[object, list[dict], str, int]:
    """(tokenizer, tokenized rows with their row index, the prompt format, rows skipped as empty)."""
    tokenizer = load_tokenizer(model_path, options.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, skipped = load_examples(options.dataset)
    if options.max_samples:
        examples = examples[: options.max_samples]
    max_length = options.max_length or resolve_dataset(options.dataset)[1]
    prompt = resolve_prompt(options.prompt, tokenizer)
    if options.answers == "teacher":
        from .distill import teacher_answers

        examples = teacher_answers(teacher, examples, tokenizer, prompt, options.answer_max_tokens, cache_dir,
                                   dtype=train_dtype, trust_remote_code=options.trust_remote_code,
                                   progress=progress, echo=echo)
    rows = [tokenize_example(ex, tokenizer, max_length, prompt) for ex in examples]
    rows = [r for r in rows if any(label != IGNORE_INDEX for label in r["labels"])]
    for i, r in enumerate(rows):
        r["row"] = i  # stored teacher logits are looked up by row
    if not rows:
        raise DataError(f"every example of {options.dataset} has its response cut off by --max-length {max_length}")
    return tokenizer, rows, prompt, skipped


def _student(model_path: Path, options: RecoverOptions, config: dict, train_layers, bf16: bool):
    """(model set up for training, how tied embeddings are handled, total and trainable parameter counts)."""
    import torch

    # frozen weights are loaded in the checkpoint's own dtype (bf16 mode: bf16 for a bf16 checkpoint), never
    # rounded: a float32 checkpoint trained in bf16 mode keeps float32 weights and autocasts its matmuls
    stored = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    load_dtype = getattr(torch, stored) if bf16 and stored in ("bfloat16", "float16") else torch.float32
    model, tied = _load_for_training(model_path, options, config, load_dtype)
    total = sum(p.numel() for p in model.parameters())
    if options.method == "partial":
        tied = _setup_partial(model, train_layers, options.tied_embeddings, config)
    else:
        model = _setup_lora(model, options)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16):
            # master weights in fp32: a 1e-5 step is below bf16's resolution for most weights (autocast keeps
            # the matmuls in bf16); the frozen rest stays in the low-precision dtype
            p.data = p.data.float()
    return model, tied, total, trainable


def _loss_trend_warning(losses: list[float]) -> str | None:
    if len(losses) < 2:
        return None
    k = max(1, len(losses) // 10)  # per-step losses are noisy: compare the first and last tenth of the run
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    if last >= first * (1 - 1e-3):
        return (f"the training loss did not go down ({first:.4f} -> {last:.4f} over {len(losses)} logged steps): "
                "the run healed nothing; raise --lr or train longer")
    return None


def _run_record(options: RecoverOptions, tracker, steps: int, warmup: int, prompt: str, examples: int,
                warnings: list[str], world_size: int, bf16: bool, prefix, prefix_note: str, teacher,
                kd) -> RecoveryRun:
    import torch

    losses = tracker.losses
    run = RecoveryRun(optimizer_steps=steps, warmup_steps=warmup, lr=options.lr, prompt=prompt, examples=examples,
                      tokens=tracker.tokens, first_loss=losses[0] if losses else None,
                      last_loss=losses[-1] if losses else None, warnings=warnings, processes=world_size,
                      rows_per_process=tracker.rows_per_process, distributed=tracker.distributed,
                      precision="bf16 mixed" if bf16 else "fp32")
    if torch.cuda.is_available():
        run.peak_cuda_bytes = torch.cuda.max_memory_allocated()
    if options.method == "partial":
        run.frozen_prefix_cache = ({"layers": prefix.first, "replayed_batches": prefix.replayed,
                                    "computed_batches": prefix.computed, "bytes": prefix.bytes,
                                    "store": "memory-mapped file" if prefix.path else "memory"}
                                   if prefix is not None else {"off": prefix_note})
    if teacher is not None:
        run.teacher = teacher.label
        run.objective = (f"KL(teacher || student), T={options.kd_temperature:g}"
                         + (f", {options.kd_alpha:g} KD + {1 - options.kd_alpha:g} SFT" if options.kd_alpha < 1 else "")
                         + (f", teacher top-{options.teacher_top_k} logits stored" if options.teacher_logits == "cached"
                            else ", teacher run alongside")
                         if kd is not None else "SFT")
        run.answers = options.answers
    return run


# ---------------------------------------------------------------- validation and setup

def validate_options(o: RecoverOptions) -> None:
    """Refuse settings that are valid one by one but not together, before any data or model is loaded (each
    field's own range and choices are checked by RecoverOptions itself)."""
    if o.batch_size % o.micro_batch_size:
        raise PlanError(f"--batch-size {o.batch_size} must be a multiple of --micro-batch-size {o.micro_batch_size}")
    _, world_size = world()
    if o.batch_size % (o.micro_batch_size * world_size):
        raise PlanError(f"--batch-size {o.batch_size} must be a multiple of --micro-batch-size x processes "
                        f"({o.micro_batch_size} x {world_size}): the global batch stays --batch-size")


def resolve_prompt(prompt: str, tokenizer) -> str:
    """'auto' is the model's chat template when it has one (an instruct model is healed in its own format)."""
    if prompt != "auto":
        return prompt
    return "chat" if getattr(tokenizer, "chat_template", None) else "alpaca"


def schedule(o: RecoverOptions, examples: int) -> tuple[int, int, list[str]]:
    """(optimizer steps, warm-up steps, warnings) for `examples` training rows.

    The paper's 100 warm-up steps were set for 52k examples at batch 64 (~1,600 steps); on a small dataset they
    would outlast the whole run, so the default scales warm-up to 10% of the steps (at most 100). An explicit
    warm-up longer than the run, or an effective batch larger than the dataset, gets a one-line warning.
    """
    import math

    accum = o.batch_size // o.micro_batch_size
    per_epoch = max(1, math.ceil(math.ceil(examples / o.micro_batch_size) / accum))
    steps = o.max_steps if o.max_steps and o.max_steps > 0 else max(1, math.ceil(per_epoch * o.epochs))
    warnings = []
    if o.batch_size > examples:
        warnings.append(f"--batch-size {o.batch_size} is larger than the {examples} training examples: each epoch "
                        "is a single optimizer step; use a smaller --batch-size or more data")
    if o.warmup_steps is None:
        warmup = min(100, round(0.1 * steps))
    else:
        warmup = o.warmup_steps
        if warmup >= steps:
            warnings.append(f"--warmup-steps {warmup} is not shorter than the run ({steps} optimizer steps): the "
                            "learning rate never reaches --lr; leave --warmup-steps unset to scale it to the run")
    return steps, warmup, warnings


def _train_layers(o: RecoverOptions, num_layers: int) -> list[int]:
    if o.train_layers is not None:
        bad = [i for i in o.train_layers if not 0 <= i < num_layers]
        if bad:
            raise PlanError(f"--train-layers: layer {bad[0]} is out of range; the model has layers 0-{num_layers - 1}")
        return sorted(set(o.train_layers))
    if o.last_k > num_layers:
        raise PlanError(f"--last-k {o.last_k} is larger than the model's {num_layers} layers; use at most {num_layers}")
    return list(range(num_layers - o.last_k, num_layers))


def _require_qlora() -> None:
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise RecoveryError("qlora needs a CUDA GPU (4-bit bitsandbytes kernels); use --method partial or lora here")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RecoveryError("qlora needs bitsandbytes: pip install 'hfprune[qlora]'")


def _mixed_precision(o: RecoverOptions) -> tuple[bool, str | None]:
    """(train in bf16 mixed precision, a warning): auto is bf16 on a GPU only; bf16 asked for on a CPU that
    emulates it trains slower than fp32, which is said."""
    import torch

    if torch.cuda.is_available():
        return o.precision != "fp32", None
    if o.precision != "bf16":
        return False, None
    from ..hardware import cpu_has_native_bf16

    if cpu_has_native_bf16():
        return True, None
    return True, ("--precision bf16 on a CPU without native bfloat16 (AMX, AVX512-BF16): torch emulates it, which "
                  "is slower than fp32")


def _load_for_training(model_path: Path, o: RecoverOptions, config: dict, dtype=None):
    import torch

    kwargs = {}
    if o.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": 0}
    else:
        kwargs["dtype"] = dtype or torch.float32
    # Device placement is left to Trainer, so FSDP/DeepSpeed launches get an unplaced model.
    model = load_model(model_path, o.trust_remote_code, **kwargs)
    tied = bool(config.get("tie_word_embeddings", False))
    return model, ("tied" if tied else None)


def _setup_partial(model, train_layers: list[int], tied_choice: str, config: dict) -> str | None:
    """Freeze everything but lm_head, the final norm and `train_layers`; handle tied embeddings explicitly."""
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    decision = None
    if tied and tied_choice == "untie":
        head = model.get_output_embeddings()
        head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())
        model.config.tie_word_embeddings = False
        if hasattr(model, "_tied_weights_keys"):
            model._tied_weights_keys = None
        decision = "untied"
    elif tied:
        decision = "frozen"
    if decision != "frozen":
        model.get_output_embeddings().weight.requires_grad_(True)
    from ..scoring.forward import decoder_of

    decoder = decoder_of(model)
    if getattr(decoder, "norm", None) is not None:
        for p in decoder.norm.parameters():
            p.requires_grad_(True)
    for i in train_layers:
        for p in decoder.layers[i].parameters():
            p.requires_grad_(True)
    return decision


def _setup_lora(model, o: RecoverOptions):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in o.lora_targets if t in names]
    if not targets:
        raise PlanError(f"--lora-targets {','.join(o.lora_targets)}: none of these module names exist in this model")
    if o.method == "qlora":
        model = prepare_model_for_kbit_training(model)
    cfg = LoraConfig(r=o.lora_r, lora_alpha=o.lora_alpha, lora_dropout=o.lora_dropout, target_modules=targets,
                     task_type="CAUSAL_LM", bias="none")
    from transformers import set_seed

    set_seed(o.seed)  # the adapters' random init: --seed makes a LoRA run reproducible, alone or across processes
    return get_peft_model(model, cfg)


# ---------------------------------------------------------------- training

def _teacher_signal(teacher, rows, o: RecoverOptions, cache_dir: Path, dtype, progress: bool, echo):
    """trainer.TeacherSignal: the stored top-k logits (computed once, cached) or the live teacher."""
    from .distill import TopkStore, load_teacher, teacher_topk_file
    from .trainer import TeacherSignal

    if o.teacher_logits == "cached":
        path = teacher_topk_file(teacher, rows, o.teacher_top_k, cache_dir, dtype=dtype,
                                 batch_size=o.micro_batch_size, trust_remote_code=o.trust_remote_code,
                                 progress=progress, echo=echo)
        return TeacherSignal(None, TopkStore(path), o.kd_temperature, o.kd_alpha)
    return TeacherSignal(load_teacher(teacher, dtype, o.trust_remote_code), None, o.kd_temperature, o.kd_alpha)


def _prefix_cache(model, o: RecoverOptions, config: dict, train_layers, rows, world_size: int = 1,
                  folder: Path | None = None):
    """(FrozenPrefixCache or None, why) for this run; a disk store lives in `folder` (the checkpoint folder)."""
    from .prefix_cache import FrozenPrefixCache, prefix_cache_plan

    if o.method != "partial":
        return None, "not partial fine-tuning"
    if world_size > 1:
        # each rank sees other rows every epoch, so each would store most of the data set: not worth its memory
        return None, f"{world_size} processes"
    dec = config.get("text_config") or config
    frozen = next((p for p in model.parameters() if not p.requires_grad), None)
    tokens = sum(len(r["input_ids"]) for r in rows)
    disk_free = None
    if folder is not None:
        existing = next(p for p in [folder, *folder.parents] if p.exists())
        disk_free = shutil.disk_usage(existing).free
    first, why, where = prefix_cache_plan(dec, train_layers, o.epochs, o.max_steps, tokens,
                                          int(dec.get("hidden_size") or 0),
                                          frozen.element_size() if frozen is not None else 4,
                                          int(o.prefix_cache_gib * 2**30), o.prefix_cache_store, disk_free)
    if not first:
        return None, why
    path = folder / "frozen-prefix.bin" if where == "disk" and folder is not None else None
    if path is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CHECKPOINTS_MARKER).write_text("training checkpoints written by hfprune recover\n")
        path.unlink(missing_ok=True)  # never replay a previous run's outputs
    return FrozenPrefixCache(model, architecture_for(config), first, path=path, tokens=tokens), why


def _train(model, tokenizer, rows, o: RecoverOptions, warmup: int, ckpt_dir: Path, resume: bool, progress: bool,
           callbacks: list, kd=None, prefix=None, bf16: bool = False):
    import torch
    from transformers import TrainingArguments

    from .trainer import Collator, HfpruneTrainer, Progress, Tracker

    tracker = Tracker()
    rank, world_size = world()
    accum = o.batch_size // (o.micro_batch_size * world_size)  # the global batch stays --batch-size
    args = TrainingArguments(
        output_dir=str(ckpt_dir), per_device_train_batch_size=o.micro_batch_size, gradient_accumulation_steps=accum,
        learning_rate=o.lr, num_train_epochs=o.epochs, max_steps=o.max_steps, warmup_steps=warmup,
        optim="adamw_torch", lr_scheduler_type="linear", logging_steps=1, save_steps=o.save_steps,
        save_total_limit=2, seed=o.seed, data_seed=o.seed, report_to=[], disable_tqdm=not progress,
        remove_unused_columns=False, bf16=bf16, dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        save_only_model=False,
        use_cpu=not torch.cuda.is_available(),  # several CPU processes: accelerate's MULTI_CPU (gloo)
    )
    with args.main_process_first(desc="checkpoint folder"):  # the other ranks wait for rank 0's clean-up
        if args.process_index == 0:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (ckpt_dir / CHECKPOINTS_MARKER).write_text("training checkpoints written by hfprune recover\n")
    collator = Collator(tokenizer.pad_token_id, row_ids=kd is not None or prefix is not None)
    trainer = HfpruneTrainer(model=model, args=args, train_dataset=rows, data_collator=collator,
                             callbacks=[Progress(tracker, ckpt_dir), *callbacks], kd=kd, prefix=prefix,
                             tracker=tracker)
    last = last_complete_checkpoint(ckpt_dir, remove_incomplete=True) if resume else None
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    tracker.rows_per_process = _gather(tracker.rows, world_size)
    tracker.distributed = str(trainer.accelerator.distributed_type).split(".")[-1]
    tracker.sharded = tracker.distributed in ("FSDP", "DEEPSPEED") or any(
        type(p).__name__ == "DTensor" for p in model.parameters())
    if tracker.sharded:  # FSDP / ZeRO-3: every rank takes part in gathering the full weights; rank 0 writes them
        tracker.state_dict = trainer.accelerator.get_state_dict(trainer.model)
    return tracker, (last.name if last else None)


def _gather(value, world_size: int) -> list:
    """`value` from every process, in rank order."""
    import torch.distributed as dist

    if world_size == 1 or not dist.is_initialized():
        return [value]
    out = [None] * world_size
    dist.all_gather_object(out, value)
    return out




def last_complete_checkpoint(ckpt_dir: Path, remove_incomplete: bool = False) -> Path | None:
    """The newest training checkpoint that was completely written (a kill while saving leaves an incomplete one,
    which transformers' get_last_checkpoint would pick); with remove_incomplete, incomplete ones are deleted so
    Trainer's own rotation never sees them."""
    from transformers.trainer_utils import get_last_checkpoint

    if not ckpt_dir.is_dir():
        return None
    if remove_incomplete:
        for p in ckpt_dir.glob("checkpoint-*"):
            if p.is_dir() and not (p / COMPLETE_MARKER).is_file():
                shutil.rmtree(p, ignore_errors=True)
        last = get_last_checkpoint(str(ckpt_dir))
        return Path(last) if last else None
    complete = [p for p in ckpt_dir.glob("checkpoint-*")
                if p.name.split("-")[-1].isdigit() and (p / COMPLETE_MARKER).is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[-1])) if complete else None


def _merge(model, model_path: Path, o: RecoverOptions, ckpt_dir: Path):
    """Fold LoRA adapters into the weights. QLoRA adapters are merged into a bf16 reload of the base."""
    if o.method == "lora":
        return model.merge_and_unload()
    import torch
    from peft import PeftModel

    adapter = ckpt_dir / "final-adapter"
    model.save_pretrained(adapter)
    base = load_model(model_path, o.trust_remote_code, dtype=torch.bfloat16)
    return PeftModel.from_pretrained(base, adapter).merge_and_unload()


# ---------------------------------------------------------------- output

def _save(model, model_path: Path, output: Path, config: dict, o: RecoverOptions, tied: str | None,
          train_layers: list[int] | None, overwrite: bool, run: dict, full_state: dict | None = None) -> None:
    import torch

    dtype = getattr(torch, str(config.get("dtype") or config.get("torch_dtype") or "float32"), torch.float32)
    state = None
    if full_state is not None:  # FSDP: the weights gathered from every rank
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in full_state.items()}
    else:
        model = model.to(dtype)
    with staged_folder(output, overwrite) as staging:
        model.save_pretrained(staging, max_shard_size="5GB", state_dict=state)
        (staging / "generation_config.json").unlink(missing_ok=True)  # the source's own is copied below
        new_config = json.loads(json.dumps(config))
        if tied == "untied":
            new_config["tie_word_embeddings"] = False
        (staging / "config.json").write_text(json.dumps(new_config, indent=2) + "\n")
        copy_aux_files(model_path, staging)
        if (model_path / MODELING_FILE).is_file():
            shutil.copyfile(model_path / MODELING_FILE, staging / MODELING_FILE)
        record = {}
        if (model_path / PROVENANCE_FILE).is_file():
            record = json.loads((model_path / PROVENANCE_FILE).read_text())
        recipe = o.model_dump()
        recipe["teacher"] = run.teacher  # the teacher's repo@sha or folder name, never a local path
        recipe.update({"tied_embeddings_result": tied, "train_layers": train_layers})
        record.update({"hfprune_version": __version__, "recovery": recipe, "recovery_run": run.to_dict()})
        (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
