"""Real evaluation and healing data, offline, from packages of the registries this project can reach.

- heal.jsonl: 4,000 Alpaca-shaped (instruction, output) pairs of consecutive turns of real human conversations
  from the PyPI package chitchat-dataset 0.9.0 (BYU PCC lab's open-domain chit-chat corpus), conversations
  0..5999 of the sorted ids.
- chat_heldout.jsonl: 120 turns of conversations 6000.. (never used for healing): in-domain held-out text.
- python_tutorial.jsonl: the first 250 paragraphs (of 12+ words) of the Python 3.11 tutorial from Debian's python3.11-doc package:
  out-of-domain held-out English prose.
- capitals_mc.jsonl: "What is the capital of X?" with 4 choices (the true capital and 3 capitals of other
  countries, seeded), for every country with one capital in the PyPI package countryinfo 1.0.1.
- tasks/: lm-eval task YAMLs for the three held-out sets (absolute data paths): real_capitals_mc (acc),
  real_ppl_python and real_ppl_chat (word perplexity).

    python bench/real/build_data.py        # -> $HFPRUNE_REAL/data (default ~/.cache/hfprune/real/data)
"""

from __future__ import annotations

import html.parser
import json
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from build_checkpoints import _download_wheels, real_root  # noqa: E402

HEAL_ROWS, CHAT_HELDOUT, PYTHON_HELDOUT, SPLIT = 4000, 120, 250, 6000


def _turns(conversation: dict) -> list[str]:
    return [" ".join(m["text"].strip() for m in turn if m.get("text", "").strip()) for turn in conversation["messages"]]


def chitchat(work: Path, out: Path) -> None:
    wheel = next(w for w in _download_wheels(["chitchat-dataset==0.9.0"], work) if w.name.startswith("chitchat"))
    with zipfile.ZipFile(wheel) as z:
        data = json.loads(z.read("chitchat_dataset/dataset.json"))
    ids = sorted(data)
    pairs = []
    for cid in ids[:SPLIT]:
        turns = [t for t in _turns(data[cid]) if t]
        pairs += [{"instruction": a, "input": "", "output": b} for a, b in zip(turns, turns[1:])
                  if 3 <= len(a.split()) <= 60 and 3 <= len(b.split()) <= 60]
    random.Random(0).shuffle(pairs)
    _jsonl(out / "heal.jsonl", pairs[:HEAL_ROWS])
    held = [t for cid in ids[SPLIT:] for t in _turns(data[cid]) if len(t.split()) >= 8][:CHAT_HELDOUT]
    _jsonl(out / "chat_heldout.jsonl", [{"text": t} for t in held])


class _Paragraphs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.paragraphs, self._buf, self._depth = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "p":
            self._depth, self._buf = 1, []

    def handle_endtag(self, tag):
        if tag == "p" and self._depth:
            text = " ".join("".join(self._buf).split())
            if len(text.split()) >= 12:
                self.paragraphs.append(text)
            self._depth = 0

    def handle_data(self, data):
        if self._depth:
            self._buf.append(data)


def python_tutorial(out: Path) -> None:
    docs = Path("/usr/share/doc/python3.11/html/tutorial")
    if not docs.is_dir():
        subprocess.run(["apt-get", "install", "-y", "-qq", "python3.11-doc"], check=True)
    parser = _Paragraphs()
    for page in sorted(docs.glob("*.html")):
        parser.feed(page.read_text(encoding="utf-8"))
    _jsonl(out / "python_tutorial.jsonl", [{"text": p} for p in parser.paragraphs[:PYTHON_HELDOUT]])


def capitals(work: Path, out: Path) -> None:
    wheel = next(w for w in _download_wheels(["countryinfo==1.0.1"], work) if w.name.startswith("countryinfo"))
    rows = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("countryinfo/data/") and name.endswith(".json"):
                info = json.loads(z.read(name))
                country, capital = info.get("name"), info.get("capital")
                if isinstance(country, str) and isinstance(capital, str) and capital.strip() and country.strip():
                    rows[country.strip()] = capital.strip()
    rng = random.Random(0)
    all_capitals = sorted(set(rows.values()))
    items = []
    for country, capital in sorted(rows.items()):
        wrong = rng.sample([c for c in all_capitals if c != capital], 3)
        choices = wrong + [capital]
        rng.shuffle(choices)
        items.append({"question": f"What is the capital of {country}?", "choices": choices,
                      "label": choices.index(capital)})
    _jsonl(out / "capitals_mc.jsonl", items)


def task_yamls(out: Path) -> None:
    tasks = out / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "real_capitals_mc.yaml").write_text(
        "task: real_capitals_mc\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(out / 'capitals_mc.jsonl'))}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: "{{label}}"\ndoc_to_choice: "{{choices}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n")
    for name, file in (("real_ppl_python", "python_tutorial.jsonl"), ("real_ppl_chat", "chat_heldout.jsonl")):
        (tasks / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(out / file))}\n"
            "test_split: test\noutput_type: loglikelihood_rolling\ndoc_to_text: \"\"\ndoc_to_target: \"{{text}}\"\n"
            "metric_list:\n  - metric: word_perplexity\n    aggregation: weighted_perplexity\n"
            "    higher_is_better: false\nmetadata:\n  version: 1.0\n")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{path.name}: {len(rows)} rows")


def main() -> int:
    out = real_root() / "data"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        chitchat(Path(tmp), out)
        capitals(Path(tmp), out)
    python_tutorial(out)
    task_yamls(out)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
