"""Greedy answers of checkpoints to chat-template prompts: does a pruned or healed model still answer in sentences?

    python bench/real/chat_sample.py DENSE PRUNED HEALED ...   # prints a markdown table

Each model is loaded once, in the dtype `hfprune eval` would choose on this machine (bf16 on CPUs that compute it).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROMPTS = ["What is the capital of France?", "Give me three tips for staying healthy."]
TOKENS = 40


def answers(folder: str, prompts: list[str], tokens: int = TOKENS) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hfprune.hardware import resolve_eval_dtype

    dtype = getattr(torch, resolve_eval_dtype("auto")[0])
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    out = []
    for prompt in prompts:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        out.append(tok.decode(gen[0, ids.input_ids.shape[1]:], skip_special_tokens=True).strip())
    return out


def main() -> int:
    rows = [f"| model | prompt | greedy answer ({TOKENS} tokens) |", "|---|---|---|"]
    for folder in sys.argv[1:]:
        label = "/".join(Path(folder).parts[-2:])
        for prompt, text in zip(PROMPTS, answers(folder, PROMPTS)):
            text = text.replace("\n", " ").replace("|", "\\|")
            rows.append(f"| {label} | {prompt} | {text!r} |")
        print("\n".join(rows[-len(PROMPTS):]), flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
