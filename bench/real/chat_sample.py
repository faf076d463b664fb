"""Greedy answers of checkpoints to chat-template prompts: does a healed model still answer in sentences?

    python bench/real/chat_sample.py DENSE PRUNED HEALED ...   # prints a markdown table
"""

from __future__ import annotations

import sys
from pathlib import Path

PROMPTS = ["What is the capital of France?", "Give me three tips for staying healthy."]


def answer(folder: str, prompt: str, tokens: int = 40) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True).strip()


def main() -> int:
    rows = ["| model | prompt | greedy answer (40 tokens) |", "|---|---|---|"]
    for folder in sys.argv[1:]:
        label = "/".join(Path(folder).parts[-2:])
        for prompt in PROMPTS:
            text = answer(folder, prompt).replace("\n", " ").replace("|", "\\|")
            rows.append(f"| {label} | {prompt} | {text!r} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
