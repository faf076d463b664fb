"""transformers' Trainer as hfprune runs it: counting what each process trains on, replaying the frozen prefix,
optionally training on the distillation objective; the batch collator; the progress and checkpoint callback."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import Trainer, TrainerCallback

from ..workdir import COMPLETE_MARKER
from .instructions import pad_rows


class Tracker:
    """Collects losses and measures tokens/s (non-padding tokens) for the progress display and the result."""

    def __init__(self):
        self.losses: list[float] = []
        self.tokens = 0
        self.rows = 0  # rows this process trained on
        self.rows_per_process: list[int] = []
        self.distributed = "NO"  # accelerate's distributed type: NO, MULTI_CPU, MULTI_GPU, FSDP, DEEPSPEED
        self.sharded = False  # parameters are FSDP shards (DTensor) after training
        self.state_dict = None  # the gathered full weights when sharded
        self.seconds = 0.0

    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class TeacherSignal:
    """What the KD loss compares the student with: a live teacher model or the stored top-k logits."""

    model: object | None
    store: object | None
    temperature: float
    alpha: float


class Collator:
    """Pads a micro-batch; adds the rows' ids when the loss or the prefix replay looks rows up."""

    def __init__(self, pad_token_id: int, row_ids: bool):
        self.pad_token_id, self.row_ids = pad_token_id, row_ids

    def __call__(self, batch):
        import torch

        ids, mask, labels = pad_rows(batch, self.pad_token_id)
        out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if self.row_ids:
            out["row_ids"] = torch.tensor([b["row"] for b in batch])
        return out


class Progress(TrainerCallback):
    """Times the steps, records the losses and marks each checkpoint once Trainer has written it completely."""

    def __init__(self, tracker: Tracker, ckpt_dir: Path):
        self.tracker, self.ckpt_dir = tracker, ckpt_dir
        self.t0 = None

    def on_step_begin(self, args, state, control, **kw):
        if self.t0 is None:
            self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.tracker.seconds = time.perf_counter() - self.t0

    def on_save(self, args, state, control, **kw):
        if state.is_world_process_zero:
            (self.ckpt_dir / f"checkpoint-{state.global_step}" / COMPLETE_MARKER).write_text("complete\n")

    def on_log(self, args, state, control, logs=None, **kw):
        if logs is not None and "loss" in logs:
            self.tracker.losses.append(float(logs["loss"]))
            logs["tokens_per_s"] = round(self.tracker.tokens_per_s(), 1)


class HfpruneTrainer(Trainer):
    """Trainer counting the rows and tokens each process trains on, replaying the frozen prefix (`prefix`) and/or
    taking the distillation objective of hfprune.recovery.distill as its loss (`kd`)."""

    def __init__(self, *args, kd: TeacherSignal | None = None, prefix=None, tracker: Tracker | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.kd, self.prefix, self.tracker = kd, prefix, tracker

    def training_step(self, model, inputs, num_items_in_batch=None):
        # counted here, not in the collator: the data loader prepares one batch ahead
        if self.tracker is not None:
            self.tracker.rows += int(inputs["input_ids"].shape[0])
            self.tracker.tokens += int(inputs["attention_mask"].sum())
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.kd is None and self.prefix is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        row_ids = inputs.pop("row_ids")
        replay = (self.prefix.batch(row_ids, inputs["attention_mask"]) if self.prefix is not None
                  else contextlib.nullcontext())
        with replay:
            if self.kd is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return self._distill(model, inputs, row_ids, return_outputs, num_items_in_batch)

    def _distill(self, model, inputs, row_ids, return_outputs, num_items_in_batch):
        import torch

        from .distill import distill_loss, response_mask

        kd = self.kd
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        if kd.store is not None:
            idx, val = kd.store.gather(row_ids.tolist())
            teacher = (idx.to(labels.device), val.to(labels.device))
        else:
            if next(kd.model.parameters()).device != labels.device:
                kd.model.to(labels.device)
            with torch.no_grad():
                teacher = kd.model(**inputs).logits
        normalizer = num_items_in_batch if num_items_in_batch is not None else response_mask(labels).sum()
        loss = distill_loss(outputs.logits, labels, teacher, temperature=kd.temperature, alpha=kd.alpha,
                            normalizer=normalizer)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes  # as Trainer does for its token-averaged CE
        return (loss, outputs) if return_outputs else loss
