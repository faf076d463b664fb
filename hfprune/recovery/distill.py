"""Healing by distillation from the dense model: the KD objective, the teacher's stored top-k logits, and
self-data distillation (the teacher's own greedy answers replace the dataset's).

The loss is KL(teacher || student) on the next-token distributions at the response positions (the tokens SFT
trains on), at temperature T and scaled by T^2 (Hinton et al.), optionally mixed with the SFT cross-entropy:
    loss = alpha * T^2 * KL + (1 - alpha) * CE
Both terms are sums over response tokens divided by the number of response tokens of the whole accumulated batch,
so gradient accumulation gives the same gradient as one large batch (as transformers does for CE).

The teacher runs alongside the student ("live": one extra forward per micro-batch, the teacher's weights in memory)
or once, before training, storing each response token's top-k logits in a safetensors file keyed by the teacher,
the tokenized data and k ("cached"): every healing run of a sweep reuses it, and training holds no teacher.
With top-k, the teacher's distribution is renormalised over its k most likely tokens (the usual sparse KD).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecoveryError
from ..workdir import atomic_file, write_text
from .instructions import IGNORE_INDEX, Example, alpaca_prompt, chat_prompt, pad_rows

TOPK_FORMAT = 1
ANSWERS_FORMAT = 1


# ---------------------------------------------------------------- the objective

def kd_loss_sum(student_logits, teacher, temperature: float = 1.0):
    """Sum over tokens of T^2 * KL(p_teacher || p_student) at temperature T.

    student_logits: [n, vocab]. teacher: full logits [n, vocab], or (indices [n, k], logits [n, k]) of the
    teacher's top-k tokens, renormalised over those k.
    """
    import torch
    import torch.nn.functional as F

    t = float(temperature)
    log_q = F.log_softmax(student_logits.float() / t, dim=-1)
    if isinstance(teacher, tuple):
        idx, values = teacher
        log_p = F.log_softmax(values.float() / t, dim=-1)
        log_q = log_q.gather(-1, idx.long())
    else:
        log_p = F.log_softmax(teacher.float() / t, dim=-1)
    kl = torch.sum(log_p.exp() * (log_p - log_q))
    return kl * (t * t)


def response_mask(labels):
    """Positions whose next token is a response token: the positions the (shifted) SFT loss covers."""
    return labels[:, 1:] != IGNORE_INDEX


def distill_loss(student_logits, labels, teacher, *, temperature: float, alpha: float, normalizer):
    """The mixed objective over the response tokens of one micro-batch, divided by `normalizer` (the response
    tokens of the whole accumulated batch). `teacher` is full logits [batch, seq, vocab] or top-k (indices, logits)
    already gathered for this batch's response tokens in row-major order."""
    import torch.nn.functional as F

    mask = response_mask(labels)
    student = student_logits[:, :-1][mask]
    if not isinstance(teacher, tuple):
        teacher = teacher[:, :-1][mask]
    loss = alpha * kd_loss_sum(student, teacher, temperature) if alpha > 0 else student.sum() * 0.0
    if alpha < 1:
        ce = F.cross_entropy(student.float(), labels[:, 1:][mask], reduction="sum")
        loss = loss + (1 - alpha) * ce
    return loss / normalizer


# ---------------------------------------------------------------- the teacher

@dataclass
class Teacher:
    """Where the teacher is and how results derived from it are keyed."""

    path: Path
    label: str  # what the card and hfprune.json say: repo@sha or 'local folder NAME'
    identity: dict


def resolve_teacher(teacher, student_path: Path, *, token: str | None = None) -> Teacher:
    """The teacher: a resolved hub.Source (the pipeline's dense source), a folder or Hub id, or None for the dense
    source recorded in the student's hfprune.json (Hub sources only: a local folder's path is never recorded)."""
    from ..hub import Source, resolve_source
    from ..workdir import PROVENANCE_FILE

    if isinstance(teacher, Source):
        src = teacher
        label = f"{src.repo_id}@{src.sha}" if src.repo_id else f"local folder {src.path.name}"
        check_compatible(src.path, student_path)
        return Teacher(src.path, label, src.identity())
    if teacher is None:
        record_path = student_path / PROVENANCE_FILE
        source = {}
        if record_path.is_file():
            source = (json.loads(record_path.read_text()).get("source") or {})
        if not source.get("repo_id"):
            raise RecoveryError(f"{student_path} does not record a Hub source to distil from (it was pruned from a "
                                "local folder, or not by hfprune); pass --teacher DENSE_MODEL")
        teacher = source["repo_id"] + (f"@{source['sha']}" if source.get("sha") else "")
    src = resolve_source(teacher, token=token)
    label = f"{src.repo_id}@{src.sha}" if src.repo_id else f"local folder {src.path.name}"
    check_compatible(src.path, student_path)
    return Teacher(src.path, label, src.identity())


def check_compatible(teacher_path: Path, student_path: Path) -> None:
    """The teacher must predict over the student's vocabulary: the same token ids mean the same tokens."""
    from ..disk.checkpoint import read_config

    def vocab(path):
        c = read_config(path)
        return c.get("vocab_size") or (c.get("text_config") or {}).get("vocab_size")

    tv, sv = vocab(teacher_path), vocab(student_path)
    if tv != sv:
        raise RecoveryError(f"the teacher {teacher_path.name} has a vocabulary of {tv} tokens and the student "
                            f"{sv}: distillation needs the same tokenizer; pass the dense model it was pruned from")
    for name in ("tokenizer.json", "tokenizer.model"):
        a, b = teacher_path / name, student_path / name
        if a.is_file() and b.is_file() and _sha256(a) != _sha256(b):
            raise RecoveryError(f"the teacher's {name} differs from the student's: distillation needs the same "
                                "tokenizer; pass the dense model it was pruned from")


def load_teacher(teacher: Teacher, dtype, trust_remote_code: bool):
    from ..disk.remote_code import load_model

    model = load_model(teacher.path, trust_remote_code, dtype=dtype)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ---------------------------------------------------------------- stored top-k logits

def rows_digest(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["input_ids"], r["labels"]]).encode())
    return h.hexdigest()


def teacher_topk_file(teacher: Teacher, rows: list[dict], k: int, cache_dir: Path, *, dtype, batch_size: int,
                      trust_remote_code: bool = False, progress: bool = False, echo=print) -> Path:
    """The teacher's top-k logits at every response position of `rows`, computed once and cached.

    The file holds `indices` [tokens, k] int32, `logits` [tokens, k] float32 and `offsets` [rows + 1] int64
    (row i's tokens are offsets[i]:offsets[i+1], in position order).
    """
    import torch
    from safetensors.torch import save_file

    key = _key({"format": TOPK_FORMAT, "teacher": teacher.identity, "rows": rows_digest(rows), "k": k})
    path = cache_dir / f"teacher-topk-{key[:24]}.safetensors"
    if path.is_file():
        echo(f"  teacher top-{k} logits: reused {path.name}")
        return path
    model = load_teacher(teacher, dtype, trust_remote_code)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    indices, values, counts = [], [], []
    order = range(0, len(rows), batch_size)
    if progress:
        from tqdm.auto import tqdm

        order = tqdm(order, desc=f"teacher top-{k} logits", unit="batch")
    with torch.no_grad():
        for start in order:
            batch = rows[start:start + batch_size]
            ids, mask, labels = pad_rows(batch, 0)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1]
            for i, row in enumerate(batch):
                keep = response_mask(labels[i:i + 1])[0].to(device)
                top = logits[i][keep].float().topk(min(k, logits.shape[-1]), dim=-1)
                indices.append(top.indices.to(torch.int32).cpu())
                values.append(top.values.cpu())
                counts.append(int(keep.sum()))
    offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0)
    with atomic_file(path) as tmp:
        save_file({"indices": torch.cat(indices).contiguous(), "logits": torch.cat(values).contiguous(),
                   "offsets": offsets}, str(tmp), metadata={"k": str(k), "rows": str(len(rows))})
    del model
    return path


class TopkStore:
    """Reads the stored top-k logits of given rows (memory-mapped: the file is never loaded whole)."""

    def __init__(self, path: Path):
        from safetensors import safe_open

        self._file = safe_open(str(path), framework="pt")
        self.offsets = self._file.get_tensor("offsets").tolist()
        self._indices = self._file.get_slice("indices")
        self._logits = self._file.get_slice("logits")

    def gather(self, row_ids) -> tuple:
        import torch

        parts = [(self.offsets[r], self.offsets[r + 1]) for r in row_ids]
        idx = torch.cat([self._indices[a:b] for a, b in parts])
        val = torch.cat([self._logits[a:b] for a, b in parts])
        return idx, val


# ---------------------------------------------------------------- self-data distillation

def teacher_answers(teacher: Teacher, examples: list[Example], tokenizer, prompt_style: str, max_new_tokens: int,
                    cache_dir: Path, *, dtype, batch_size: int = 16, trust_remote_code: bool = False,
                    progress: bool = False, echo=print) -> list[Example]:
    """The examples with each answer replaced by the teacher's greedy answer to the same prompt (cached)."""
    import torch

    prompts = [alpaca_prompt(ex) if prompt_style == "alpaca" else chat_prompt(ex, tokenizer) for ex in examples]
    key = _key({"format": ANSWERS_FORMAT, "teacher": teacher.identity, "prompts": hashlib.sha256(
        json.dumps(prompts).encode()).hexdigest(), "max_new_tokens": max_new_tokens, "style": prompt_style})
    path = cache_dir / f"teacher-answers-{key[:24]}.jsonl"
    if path.is_file():
        echo(f"  teacher answers: reused {path.name}")
        answers = [json.loads(line)["output"] for line in path.read_text().splitlines()]
    else:
        model = load_teacher(teacher, dtype, trust_remote_code)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
        side = tokenizer.padding_side
        tokenizer.padding_side = "left"
        answers = [""] * len(prompts)
        # longest prompts first: batches of similar lengths waste little on padding
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="teacher answers", unit="batch")
        try:
            with torch.no_grad():
                for batch in batches:
                    enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                                    add_special_tokens=prompt_style == "alpaca").to(device)
                    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                         pad_token_id=tokenizer.pad_token_id)
                    new = out[:, enc["input_ids"].shape[1]:]
                    for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
                        answers[i] = text.strip()
        finally:
            tokenizer.padding_side = side
        del model
        write_text(path, "".join(json.dumps({"output": a}) + "\n" for a in answers))
    out = [Example(ex.instruction, ex.input, a) for ex, a in zip(examples, answers) if a]
    if not out:
        raise RecoveryError("the teacher answered every instruction with nothing; use --answers dataset")
    return out


# ---------------------------------------------------------------- helpers

def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

