"""Instruction-formatted calibration text: the Alpaca pairs rendered through a model's own chat template, one
{"text": ...} row per pair, for fitting the linear map on the kind of text an instruct model is asked (the
default calibration, C4 web text, is not).

    python bench/real/chat_calibration.py MODEL_DIR ALPACA_JSON OUT_JSONL
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    model, alpaca, out = (Path(a) for a in sys.argv[1:4])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = json.loads(alpaca.read_text())
    with out.open("w") as f:
        for row in rows:
            prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                                  {"role": "assistant", "content": row["output"]}], tokenize=False)
            f.write(json.dumps({"text": text}) + "\n")
    print(f"{len(rows)} conversations -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
