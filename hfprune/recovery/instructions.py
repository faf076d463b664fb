"""Instruction data for recovery: Alpaca-cleaned and Dolly-15k (or local files in either shape), prompts, and
response-only labels (prompt tokens carry -100)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..datasets_io import check_local_data, load_dataset, read_json_rows, string_field
from ..errors import DataError

DATASETS = {
    "alpaca": ("yahma/alpaca-cleaned", 256),
    "dolly": ("databricks/databricks-dolly-15k", 1024),
}
SHAPES = {
    "alpaca": ("instruction", "input", "output"),
    "dolly": ("instruction", "context", "response"),
}
IGNORE_INDEX = -100

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


@dataclass(frozen=True)
class Example:
    instruction: str
    input: str
    output: str


def resolve_dataset(name: str) -> tuple[str, int]:
    """(dataset id or path, default max length) for 'alpaca', 'dolly', a Hub id or a local file."""
    if name in DATASETS:
        return DATASETS[name]
    return name, 1024 if "dolly" in name.lower() else 256


def load_examples(dataset: str) -> tuple[list[Example], int]:
    """(rows of an Alpaca- or Dolly-shaped dataset as Examples, how many rows were skipped because their
    instruction or response is empty). A row missing a column of its shape, or holding a non-string there, is
    refused with its line; the file's shape is read from its first row."""
    source, _ = resolve_dataset(dataset)
    check_local_data(source, "--dataset")
    path = Path(source).expanduser()
    if path.exists():
        if path.suffix not in (".json", ".jsonl"):
            raise DataError(f"{source}: instruction data must be a .json or .jsonl file (Alpaca or Dolly columns)")
        rows = read_json_rows(path, "--dataset")
    else:
        ds = load_dataset(source, split="train")
        rows = [(f"{source} row {i + 1}", r) for i, r in enumerate(ds)]
    columns = set(rows[0][1]) if rows else set()
    shape = next(((ins, ctx, out) for ins, ctx, out in SHAPES.values() if {ins, out} <= columns), None)
    if shape is None:
        raise DataError(
            f"dataset {source} needs columns instruction + output (Alpaca, optional input) or instruction + response "
            f"(Dolly, optional context); its first row has {sorted(columns)}"
        )
    ins, ctx, out = shape
    examples = [Example(string_field(r, ins, where, "--dataset"), string_field(r, ctx, where, "--dataset", False),
                        string_field(r, out, where, "--dataset")) for where, r in rows]
    usable = [e for e in examples if e.instruction.strip() and e.output.strip()]
    if not usable:
        raise DataError(f"dataset {source} has no usable rows (every instruction or response is empty)")
    return usable, len(examples) - len(usable)


def alpaca_prompt(ex: Example) -> str:
    """The standard Alpaca prompt, with or without the input section."""
    if ex.input.strip():
        return ALPACA_WITH_INPUT.format(instruction=ex.instruction, input=ex.input)
    return ALPACA_NO_INPUT.format(instruction=ex.instruction)


def chat_prompt(ex: Example, tokenizer) -> str:
    """The model's own chat template, ending with the assistant turn's opening."""
    user = ex.instruction if not ex.input.strip() else f"{ex.instruction}\n\n{ex.input}"
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)


def tokenize_example(ex: Example, tokenizer, max_length: int, prompt_style: str = "alpaca") -> dict:
    """input_ids and labels; labels are -100 on the prompt so the loss covers the response (and EOS) only."""
    prompt = alpaca_prompt(ex) if prompt_style == "alpaca" else chat_prompt(ex, tokenizer)
    add_bos = prompt_style == "alpaca"
    prompt_ids = tokenizer(prompt, add_special_tokens=add_bos)["input_ids"]
    response_ids = tokenizer(ex.output, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        response_ids = response_ids + [tokenizer.eos_token_id]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": ids, "labels": labels}


def pad_rows(batch: list[dict], pad_id: int):
    """(input_ids, attention_mask, labels) tensors of tokenized rows, right-padded to the longest (labels -100)."""
    import torch

    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[i, :n] = torch.tensor(b["input_ids"])
        labels[i, :n] = torch.tensor(b["labels"])
        mask[i, :n] = 1
    return ids, mask, labels
