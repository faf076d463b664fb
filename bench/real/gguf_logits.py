"""llama.cpp vs transformers on a pruned checkpoint: hfprune export-gguf's file and the plain converter's.

Needs a llama.cpp build (`pip install llama-cpp-python diskcache`, ~10-30 min of compiling on 2 cores).
Usage: python bench/real/gguf_logits.py PRUNED_DIR TEXT_FILE [--tokens 256]
It exports PRUNED_DIR with `hfprune export-gguf` (f32), converts it again with llama.cpp's converter alone, runs
the same tokens through transformers and through llama.cpp (f32 KV cache) and prints, for each file, how often
the next-token argmax agrees with transformers and the largest logit difference.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("text")
    ap.add_argument("--tokens", type=int, default=256)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import llama_cpp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hfprune.gguf_export import _convert, converter_dir, export_gguf

    model = Path(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        fixed = export_gguf(model, Path(tmp) / "hfprune.gguf", outtype="f32", echo=lambda m: None).output
        plain = Path(tmp) / "plain.gguf"
        _convert(converter_dir(), model, plain, "f32")
        ids = AutoTokenizer.from_pretrained(model)(Path(args.text).read_text()).input_ids[: args.tokens]
        with torch.no_grad():
            ref = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)(torch.tensor([ids])).logits[0]
        for name, path in (("hfprune export-gguf", fixed), ("plain convert_hf_to_gguf.py", plain)):
            llm = llama_cpp.Llama(str(path), logits_all=True, n_ctx=len(ids) + 8, verbose=False, type_k=0, type_v=0)
            llm.eval(ids)
            got = torch.from_numpy(llm.scores[: len(ids), : ref.shape[-1]].copy())
            llm.close()
            agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
            print(f"{name}: {len(ids)} tokens, argmax agreement with transformers {agree:.1%}, "
                  f"max |logit diff| {float((got - ref).abs().max()):.3g}", flush=True)


if __name__ == "__main__":
    main()
