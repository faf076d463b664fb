"""`hfprune demo`: the main job end to end on an embedded default, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import OutputExistsError


def run_demo(work_dir: str | Path, overwrite: bool = False):
    """Build a tiny checkpoint, prune its last 2 layers and skip two sub-blocks, verify; yield progress lines."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .api import prune
    from .tiny import build_tiny_checkpoint

    work = Path(work_dir)
    if work.exists():
        if not overwrite:
            raise OutputExistsError(f"{work} already exists; pass --overwrite or choose another --work-dir")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    source = build_tiny_checkpoint(work / "source", "llama", num_layers=8)
    yield f"built a tiny 8-layer Llama-style checkpoint and tokenizer in {source}"
    result = prune(source, work / "pruned", drop_last=2, skip_attention="1", skip_mlp="4")
    yield from result.describe()

    tok = AutoTokenizer.from_pretrained(work / "pruned", trust_remote_code=True)  # our own shipped code
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    pruned, info = AutoModelForCausalLM.from_pretrained(work / "pruned", trust_remote_code=True,
                                                        output_loading_info=True)
    missing = info["missing_keys"] or info["unexpected_keys"]
    with torch.no_grad():
        out = pruned.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    yield f"reloaded with AutoModelForCausalLM: {'MISSING/UNEXPECTED KEYS ' + str(missing) if missing else 'no missing or unexpected keys'}"
    yield f"greedy continuation (random weights, so gibberish): {tok.decode(out[0, ids.shape[1]:])!r}"
