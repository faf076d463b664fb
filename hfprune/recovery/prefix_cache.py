"""Partial fine-tuning's frozen prefix, computed once per training row and replayed in later epochs.

With lm_head, the final norm and the last k layers trained, the output of the frozen layers before the first
trained one is the same every time a row is seen. The first time, the prefix runs as usual and its output at the
row's real (non-padding) positions is kept; every later batch whose rows are all kept skips the prefix: its layers
return the stored residual stream, assembled for that batch (padding positions are zeros, which a real token never
attends to under right padding and causal attention). The result equals the plain run: the stored tensors are
the ones the prefix computed, in the compute dtype. The store is memory, or, for runs whose prefix outputs do not
fit in memory, one memory-mapped file (tokens x hidden, in the compute dtype) that the OS pages in and out.
"""

from __future__ import annotations

import contextlib

from ..scoring.forward import decoder_of, forwards_replaced, replaying


class FrozenPrefixCache:
    """Per-row outputs of decoder layers [0, first) of `model`, replayed when a whole batch is cached."""

    def __init__(self, model, arch, first: int, path=None, tokens: int = 0):
        self.arch = arch  # disk.architectures.Architecture: what a replaying layer returns
        self.layers = decoder_of(model).layers
        self.first = first
        self.store: dict[int, object] = {}
        self.path = path  # a file for the memory-mapped store (None: memory)
        self.tokens = tokens  # the file's rows: every training row's real tokens
        self._flat = None
        self._next = 0
        self.bytes = 0
        self.replayed = 0  # batches whose prefix was skipped
        self.computed = 0
        self._pending: tuple[list[int], list[int]] | None = None
        self._hook = self.layers[first - 1].register_forward_hook(self._capture)

    def _capture(self, module, args, output):
        if self._pending is None:
            return
        rows, lengths = self._pending
        hidden = output[0] if isinstance(output, tuple) else output
        for i, (row, n) in enumerate(zip(rows, lengths)):
            if row in self.store:
                continue
            if self.path is None:
                kept = hidden[i, :n].detach().clone()
            else:
                kept = self._file_rows(hidden)[self._next:self._next + n]
                kept.copy_(hidden[i, :n].detach())
                self._next += n
            self.store[row] = kept
            self.bytes += kept.numel() * kept.element_size()

    def _file_rows(self, like):
        """The memory-mapped [tokens, hidden] store, created at the first capture (the compute dtype is known)."""
        import torch

        if self._flat is None:
            self._flat = torch.from_file(str(self.path), shared=True, size=self.tokens * like.shape[-1],
                                         dtype=like.dtype).view(self.tokens, like.shape[-1])
        return self._flat

    @contextlib.contextmanager
    def batch(self, row_ids, attention_mask):
        """Run one micro-batch: replay the prefix when every row is stored, else compute it and store new rows."""
        import torch

        rows = [int(r) for r in row_ids]
        lengths = [int(n) for n in attention_mask.sum(dim=1)]
        stand_ins = []
        if all(r in self.store for r in rows):
            first = self.store[rows[0]]
            hidden = torch.zeros(len(rows), attention_mask.shape[1], first.shape[-1], dtype=first.dtype,
                                 device=first.device)
            for i, (row, n) in enumerate(zip(rows, lengths)):
                hidden[i, :n] = self.store[row].to(hidden.device)
            stand_ins = [(layer, replaying(self.arch, hidden)) for layer in self.layers[: self.first]]
            self.replayed += 1
        else:
            self._pending = (rows, lengths)
            self.computed += 1
        try:
            with forwards_replaced(stand_ins):
                yield
        finally:
            self._pending = None

    def close(self) -> None:
        self._hook.remove()
        self.store.clear()
        self._flat = None
        if self.path is not None:
            from pathlib import Path

            Path(self.path).unlink(missing_ok=True)


def prefix_cache_plan(model_config: dict, train_layers: list[int] | None, epochs: float, max_steps: int,
                      tokens: int, hidden_size: int, bytes_per_value: int, limit_bytes: int,
                      store: str = "memory", disk_free: int | None = None) -> tuple[int, str, str]:
    """(first trained layer to cache up to, or 0 for no cache; why; "memory" or "disk") for a partial run."""
    if limit_bytes <= 0:
        return 0, "--prefix-cache-gib 0", "memory"
    if not train_layers or min(train_layers) == 0:
        return 0, "no frozen prefix (the first layer is trained)", "memory"
    if epochs <= 1 and max_steps <= 0:
        return 0, "one epoch: every row is seen once, nothing to replay", "memory"
    dropout = [k for k, v in model_config.items() if "dropout" in k and isinstance(v, (int, float)) and v > 0]
    if dropout:
        return 0, f"the frozen layers use dropout ({dropout[0]}), so their output differs each time", "memory"
    need = tokens * hidden_size * bytes_per_value
    size = f"{need / 2**20:.0f} MiB for {tokens:,} tokens"
    if store == "memory" or (store == "auto" and need <= limit_bytes):
        if need > limit_bytes:
            return 0, (f"the cache would take {need / 2**30:.1f} GiB, more than the {limit_bytes / 2**30:.1f} GiB "
                       "allowed (--prefix-cache-gib)"), "memory"
        return min(train_layers), size, "memory"
    if disk_free is not None and need > 0.9 * disk_free:
        return 0, (f"the cache would take {need / 2**30:.1f} GiB, more than --prefix-cache-gib in memory and more "
                   f"than the disk's {disk_free / 2**30:.1f} GiB free"), "disk"
    return min(train_layers), f"{size}, in a memory-mapped file", "disk"
