"""Calibration data: text from a local file or a Hub dataset, cut into seeded fixed-length token windows."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from ..datasets_io import check_local_data, load_dataset, read_json_rows, string_field
from ..errors import DataError
TEXT_COLUMNS = ("text", "content", "document")


@dataclass(frozen=True)
class Calibration:
    """Token windows [samples, seq_len] plus everything needed to reproduce and audit them."""

    input_ids: "object"  # torch.LongTensor
    source: str
    sha256: str
    samples: int
    seq_len: int
    seed: int

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "samples": self.samples, "seq_len": self.seq_len,
                "seed": self.seed}


def load_texts(data: str, split: str | None = None) -> tuple[list[str], str]:
    """Texts from a .txt/.json/.jsonl file or a Hub dataset id ('name' or 'name:config'); also a content hash.
    JSON rows are checked one by one: a malformed line, a missing text field or a non-string value is refused
    naming the line."""
    check_local_data(data)
    path = Path(data).expanduser()
    if path.exists():
        if path.is_dir():
            raise DataError(f"--data {data} is a folder; give a .txt, .json or .jsonl file or a Hub dataset id")
        if not path.read_bytes().strip():
            raise DataError(f"data file {data} is empty")
        if path.suffix in (".json", ".jsonl"):
            texts = rows_to_texts(read_json_rows(path), data)
        else:
            ds = load_dataset("text", data_files=str(path), split="train")
            texts = [t for t in ds["text"] if t.strip()]
    else:
        name, _, config = data.partition(":")
        ds = load_dataset(name, config or None, split=split or "test" if name == "wikitext" else split or "train")
        texts = rows_to_texts([(f"{data} row {i + 1}", r) for i, r in enumerate(ds)], data)
    digest = hashlib.sha256("\n\n".join(texts).encode()).hexdigest()
    return texts, digest


def rows_to_texts(rows: list[tuple[str, dict]], what: str) -> list[str]:
    """One text per (where, row): the text column (named by the first row), or instruction-style rows flattened.
    Empty texts are dropped (they hold no tokens); a row without the field, or with a non-string, is refused."""
    columns = set(rows[0][1]) if rows else set()
    col = next((c for c in TEXT_COLUMNS if c in columns), None)
    if col is not None:
        texts = [string_field(r, col, where, "--data") for where, r in rows]
        return [t for t in texts if t.strip()]
    if "instruction" in columns:
        out = []
        for where, row in rows:
            ctx = "input" if "input" in row else "context"
            ans = "output" if "output" in row or "response" not in row else "response"
            parts = [string_field(row, "instruction", where, "--data"), string_field(row, ctx, where, "--data", False),
                     string_field(row, ans, where, "--data")]
            out.append("\n".join(p for p in parts if p))
        return [t for t in out if t.strip()]
    raise DataError(f"{what} has no text column (looked for {', '.join(TEXT_COLUMNS)} or instruction/input/output); "
                    f"its first row has {sorted(columns)}")


def calibration_windows(texts: list[str], tokenizer, *, samples: int, seq_len: int, seed: int, source: str,
                        sha256: str) -> Calibration:
    """`samples` windows of `seq_len` tokens at seeded random offsets of the concatenated, tokenized texts."""
    import torch

    if samples < 1 or seq_len < 2:
        raise DataError(f"--samples {samples} --seq-len {seq_len}: need at least 1 sample of 2 tokens")
    if not texts:
        raise DataError(f"calibration data {source} is empty")
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]
    if len(ids) < seq_len:
        raise DataError(
            f"calibration data {source} has {len(ids)} tokens, fewer than one window of --seq-len {seq_len}; "
            "give more text or a smaller --seq-len"
        )
    rng = random.Random(seed)
    starts = [rng.randrange(0, len(ids) - seq_len + 1) for _ in range(samples)]
    windows = torch.tensor([ids[s:s + seq_len] for s in starts], dtype=torch.long)
    return Calibration(windows, source, sha256, samples, seq_len, seed)


def load_calibration(data: str, tokenizer, *, samples: int = 10, seq_len: int = 128, seed: int = 0,
                     texts: tuple[list[str], str] | None = None) -> Calibration:
    """Load `data` (or use `texts`, already loaded) and cut it into calibration windows."""
    texts, digest = texts or load_texts(data)
    return calibration_windows(texts, tokenizer, samples=samples, seq_len=seq_len, seed=seed, source=data,
                               sha256=digest)
