"""lm-eval's HFLM with two changes that leave its numbers alone, so evaluation runs near one forward per question
in bounded memory.

- Logits only where lm-eval reads them. lm-eval takes the log-softmax over the full vocabulary at every position of
  a batch and then keeps the continuation's few positions; on a 150k-vocabulary model that is most of the memory
  and, on a small model, a quarter of the compute. Here the model computes logits from the first position any row
  of the batch scores (`logits_to_keep`), and lm-eval's own offset for a logits tensor shorter than the input
  (`inplen + (logits.shape[0] - padding_len_inp)`, meant for virtual tokens) selects the same positions. Rows that
  cannot be matched to their request fall back to full logits.
- Batches sized by memory. Each batch takes as many of lm-eval's (length-sorted) requests as fit a byte budget for
  the activations and the kept logits, instead of a fixed count that is wasteful for short prompts and explodes
  for long ones; lm-eval's scheduler (`batch_size="auto"`) calls this once per batch.

The loop, the request grouping (one forward for all single-token answers of a question), the log-softmax, the
selection and every metric stay lm-eval's.
"""

from __future__ import annotations

import inspect

import torch
from lm_eval.models.huggingface import HFLM

LOGIT_BYTES_PER_ELEMENT = 10  # the model's logits (bf16: 2) + lm-eval's float32 copy (4) + its log-softmax (4)


class BoundedHFLM(HFLM):
    def __init__(self, *args, batch_memory_bytes: int, max_batch_size: int = 64, **kwargs):
        super().__init__(*args, batch_size="auto", max_batch_size=max_batch_size, **kwargs)
        self.batch_memory_bytes = int(batch_memory_bytes)
        # a model that takes logits_to_keep but returns every position anyway is still scored right: lm-eval's
        # offset is computed from the logits' actual length
        self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        config = self.model.config.get_text_config()
        hidden = int(getattr(config, "hidden_size", 0) or 0)
        inter = int(getattr(config, "intermediate_size", 0) or 4 * hidden)
        heads = int(getattr(config, "num_attention_heads", 0) or 1)
        head = self.model.get_output_embeddings()
        self._vocab = int(head.weight.shape[0]) if head is not None else int(config.vocab_size)
        element = torch.finfo(self.model.dtype).bits // 8 if self.model.dtype.is_floating_point else 4
        self._token_bytes = element * (6 * hidden + 3 * inter)  # residual, norms, attention and FFN intermediates
        self._heads = heads
        self._needed: dict[tuple, int] = {}
        self._schedule: tuple[object, int, int] | None = None  # (requests, batch start, batch size)
        self.calls = {"trimmed": 0, "full": 0, "positions_computed": 0, "positions_in_batches": 0}

    # ------------------------------------------------------------ memory-sized batches
    def _row_bytes(self, length: int, kept: int) -> int:
        return length * (self._token_bytes + 4 * self._heads * length) + kept * self._vocab * LOGIT_BYTES_PER_ELEMENT

    def _rows_fitting(self, requests, pos: int) -> int:
        """How many requests from `pos` (sorted longest first) one batch holds within the memory budget."""
        first = self._input(requests[pos])
        length, start, rows = len(first), len(first), 0
        while pos + rows < len(requests) and rows < self.max_batch_size:
            _, _, continuation = requests[pos + rows]
            start = min(start, len(self._input(requests[pos + rows])) - len(continuation))
            kept = length - start if self._keeps_logits else length
            if rows and (rows + 1) * self._row_bytes(length, kept) > self.batch_memory_bytes:
                break
            rows += 1
        return max(rows, 1)

    def _batch_scheduler(self, pos, n_reordered_requests):
        # lm-eval asks at every element; a new batch starts where the previous one's size runs out
        requests, start, size = self._schedule or (None, 0, 0)
        if requests is not n_reordered_requests or pos == 0:
            self._schedule = (n_reordered_requests, 0, self._rows_fitting(n_reordered_requests, 0))
        elif pos >= start + size:
            self._schedule = (n_reordered_requests, pos, self._rows_fitting(n_reordered_requests, pos))
        return self._schedule[2]

    def _detect_batch_size(self, requests=None, pos: int = 0):
        if requests:
            return self._rows_fitting(requests, pos)
        # rolling perplexity windows and generation: a full window, scored at every position
        return max(1, min(self.max_batch_size, self.batch_memory_bytes // self._row_bytes(self.max_length,
                                                                                          self.max_length)))

    # ------------------------------------------------------------ logits where they are read
    def _input(self, request) -> list[int]:
        _, context, continuation = request
        return (context + continuation)[-(self.max_length + 1):][:-1]

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        needed: dict[tuple, int] = {}
        for request in requests:
            key = tuple(self._input(request))
            needed[key] = max(needed.get(key, 0), len(request[2]))
        self._needed, self._schedule = needed, None
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        finally:
            self._needed, self._schedule = {}, None

    def _first_scored_position(self, inps: torch.Tensor) -> int | None:
        """The first position any row of the batch scores, or None when a row matches no request. lm-eval pads
        on the right with token 0, so a row's true length is found by trying each length down its trailing
        zeros; the smallest start over all candidates is kept (never fewer positions than needed)."""
        first = inps.shape[1]
        for row in inps.tolist():
            found = None
            length = len(row)
            while length > 0:
                contlen = self._needed.get(tuple(row[:length]))
                if contlen is not None:
                    found = min(found, length - contlen) if found is not None else length - contlen
                if row[length - 1] != 0:
                    break
                length -= 1
            if found is None:
                return None
            first = min(first, found)
        return max(first, 0)

    def _model_call(self, inps, attn_mask=None, labels=None):
        if attn_mask is not None or labels is not None or not self._needed or not self._keeps_logits:
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        start = self._first_scored_position(inps)
        self.calls["positions_in_batches"] += inps.numel()
        if start is None or start == 0:
            self.calls["full"] += 1
            self.calls["positions_computed"] += inps.numel()
            return super()._model_call(inps)
        keep = inps.shape[1] - start
        self.calls["trimmed"] += 1
        self.calls["positions_computed"] += inps.shape[0] * keep
        with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                             enabled=self.mixed_precision_dtype is not None):
            return self.model(inps, logits_to_keep=keep).logits

