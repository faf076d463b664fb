"""Hostile and clumsy input: no code runs without consent, nothing the user owns is deleted, corrupt input is
refused with one line and exit 2, and interrupted runs leave nothing behind (one test group per class)."""

import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from hfprune.cli import main
from hfprune.disk.remote_code import AUTO_MAP, MODELING_FILE, is_own_modeling_code

from ..helpers import interrupt_after, one_line_error

TASKS = ["--tasks", "hfprune_demo_mc", "--limit", "2"]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def src(tmp_path):
    from hfprune.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=4)


@pytest.fixture(scope="module")
def skip_output(tmp_path_factory):
    """A genuine skip-map output (hfprune's own modeling file)."""
    from hfprune.api import prune
    from hfprune.tiny import build_tiny_checkpoint

    tmp = tmp_path_factory.mktemp("skip")
    src = build_tiny_checkpoint(tmp / "src", "llama", num_layers=4)
    prune(src, tmp / "out", skip_attention=[1])
    return tmp / "out"


# ---------------------------------------------------------------- 1. remote code only with consent

def _sentinel_code(sentinel: Path, body: str) -> str:
    return f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('ran')\n{body}"


def test_genuine_skip_map_output_is_trusted_for_the_model_only(skip_output):
    assert is_own_modeling_code(skip_output)


def test_tokenizer_code_of_a_skip_map_output_never_runs(tmp_path, src, capsys):
    sentinel = tmp_path / "TOKENIZER_CODE_RAN"
    (src / "tokenizer_evil.py").write_text(_sentinel_code(
        sentinel, "from transformers import PreTrainedTokenizerFast\nclass Evil(PreTrainedTokenizerFast):\n    pass\n"))
    config = json.loads((src / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": [None, "tokenizer_evil.Evil"]}
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    assert main(["prune", str(src), "-o", str(tmp_path / "out"), "--skip-attention", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert (tmp_path / "out" / "tokenizer_evil.py").is_file() and is_own_modeling_code(tmp_path / "out")
    assert main(["eval", str(tmp_path / "out"), *TASKS, "-o", str(tmp_path / "eval.json")]) == 0
    assert not sentinel.exists()


@pytest.mark.parametrize("attack", ["architecture", "model_type", "auto_map"])
def test_checkpoint_content_cannot_make_its_code_trusted(attack, tmp_path, skip_output, capsys):
    """Values pasted into code, or an auto_map to another file: the folder is not trusted and nothing runs."""
    out = tmp_path / "out"
    shutil.copytree(skip_output, out)
    sentinel = tmp_path / "MODEL_CODE_RAN"
    config = json.loads((out / "config.json").read_text())
    code = (out / MODELING_FILE).read_text()
    if attack == "architecture":
        evil = "LlamaForCausalLM\nimport pathlib; pathlib.Path(%r).write_text('ran')\nX = LlamaForCausalLM" % str(sentinel)
        config["hfprune_base"]["architecture"] = evil
        (out / MODELING_FILE).write_text(code.replace("LlamaForCausalLM as _BaseForCausalLM",
                                                      f"{evil} as _BaseForCausalLM"))
    elif attack == "model_type":
        config["model_type"] = "hfprune_llama\nimport os"
        (out / MODELING_FILE).write_text(_sentinel_code(sentinel, code))
    else:
        (out / "evil.py").write_text(_sentinel_code(sentinel, code))
        config["auto_map"] = {"AutoConfig": "evil.HfprunePrunedConfig", "AutoModelForCausalLM": "evil.HfprunePrunedForCausalLM"}
    (out / "config.json").write_text(json.dumps(config))
    assert not is_own_modeling_code(out)
    code_ = main(["eval", str(out), *TASKS, "-o", str(tmp_path / "eval.json")])
    assert code_ != 0
    assert not sentinel.exists()


def test_auto_map_must_be_exactly_hfprunes(skip_output, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(skip_output, out)
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP
    config["auto_map"] = dict(AUTO_MAP, AutoTokenizer=["tokenizer_evil.Evil", None])
    (out / "config.json").write_text(json.dumps(config))
    assert not is_own_modeling_code(out)


def test_source_with_its_own_auto_map_prunes_whole_layers(src, tmp_path, capsys):
    """Many real repos (e.g. Phi-3) carry an auto_map; a whole-layer drop keeps it and ships no code of ours."""
    config = json.loads((src / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (src / "config.json").write_text(json.dumps(config))
    assert main(["prune", str(src), "-o", str(tmp_path / "out"), "--drop-last", "1", "--no-progress"]) == 0
    out = json.loads((tmp_path / "out" / "config.json").read_text())
    assert out["auto_map"] == config["auto_map"] and not (tmp_path / "out" / MODELING_FILE).exists()


# ---------------------------------------------------------------- 2. never delete what the user did not ask to delete

def test_prune_output_that_contains_or_is_the_source_is_refused(tmp_path, src, capsys):
    before = snapshot(src)
    code = main(["prune", str(src), "--drop-last", "1", "-o", str(tmp_path), "--overwrite"])
    one_line_error(capsys, code, "contains the source")
    code = main(["prune", str(src), "--drop-last", "1", "-o", str(src), "--overwrite"])
    one_line_error(capsys, code, "is the source")
    code = main(["prune", str(src), "--drop-last", "1", "-o", str(src / "inner")])
    one_line_error(capsys, code, "lies inside the source")
    assert snapshot(src) == before


def test_push_work_dir_around_the_source_is_refused(tmp_path, src, capsys):
    before = snapshot(src)
    code = main(["push", str(src), "--drop-last", "1", "--work-dir", str(tmp_path), "--overwrite", "--no-push"])
    one_line_error(capsys, code, "work dir", "contains the source")
    code = main(["push", str(src), "--drop-last", "1", "--work-dir", str(src), "--overwrite", "--no-push"])
    one_line_error(capsys, code, "work dir", "is the source")
    assert snapshot(src) == before


def test_overwrite_never_clears_a_folder_hfprune_did_not_make(tmp_path, src, capsys):
    work = tmp_path / "mine"
    work.mkdir()
    (work / "thesis.tex").write_text("years of work")
    code = main(["push", str(src), "--drop-last", "1", "--work-dir", str(work), "--overwrite", "--no-push"])
    one_line_error(capsys, code, "not made by hfprune")
    code = main(["demo", "--work-dir", str(work), "--overwrite"])
    one_line_error(capsys, code, "not written by hfprune")
    assert (work / "thesis.tex").read_text() == "years of work"


def test_recover_never_destroys_its_input(tmp_path, src, capsys):
    (tmp_path / "data.jsonl").write_text(json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n")
    common = ["--dataset", str(tmp_path / "data.jsonl"), "--max-steps", "1", "--no-progress"]
    before = snapshot(src)
    code = main(["recover", str(src), "-o", str(tmp_path), "--overwrite", *common])
    one_line_error(capsys, code, "contains the model")
    # the OUT.checkpoints folder of OUT is the input: it must not be wiped at start-up (no --overwrite given)
    model = tmp_path / "m.checkpoints"
    shutil.copytree(src, model)
    code = main(["recover", str(model), "-o", str(tmp_path / "m"), *common])
    one_line_error(capsys, code, "checkpoint folder", "is the model")
    assert snapshot(model) == before and snapshot(src) == before


# ---------------------------------------------------------------- 3. interrupted runs and resumes

def test_resume_uses_the_newest_complete_checkpoint(tmp_path, src):
    from hfprune.recovery.train import checkpoints_dir, recover
    from hfprune.workdir import COMPLETE_MARKER
    from hfprune.settings import RecoverOptions

    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"instruction": f"Count to {i}.", "output": "1 2 3"}) + "\n"
                                                 for i in range(16)))
    opts = RecoverOptions(dataset=str(tmp_path / "data.jsonl"), lr=1e-3, batch_size=2, micro_batch_size=2,
                          warmup_steps=0, max_steps=4, save_steps=2, last_k=1)
    with pytest.raises(KeyboardInterrupt):
        recover(src, tmp_path / "out", opts, callbacks=interrupt_after(3))
    ckpts = checkpoints_dir(tmp_path / "out")
    assert (ckpts / "checkpoint-2" / COMPLETE_MARKER).is_file()
    # a kill while checkpoint-3 was being written: some files, no completion marker
    shutil.copytree(ckpts / "checkpoint-2", ckpts / "checkpoint-3")
    (ckpts / "checkpoint-3" / COMPLETE_MARKER).unlink()
    (ckpts / "checkpoint-3" / "trainer_state.json").unlink()
    result = recover(src, tmp_path / "out", opts, resume=True)
    assert result.resumed_from == "checkpoint-2"


def _prune_killed_by(sig_name: str, src: Path, out: Path) -> subprocess.CompletedProcess:
    """Run `hfprune prune` in a child that receives `sig_name` from itself while writing weights."""
    code = (
        "import os, signal, sys, time\n"
        f"signal.signal(signal.{sig_name}, signal.SIG_DFL)\n"  # as in a terminal, even when pytest runs under nohup
        "import hfprune.disk.surgery as s\n"
        "real = s._write_weights\n"
        "def killed(*a, **k):\n"
        "    real(*a, **k)\n"
        f"    os.kill(os.getpid(), signal.{sig_name})\n"
        "    time.sleep(30)\n"
        "s._write_weights = killed\n"
        "from hfprune.cli import main\n"
        f"sys.exit(main(['prune', {str(src)!r}, '-o', {str(out)!r}, '--drop-last', '1', '--no-progress']))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_leave_no_partial_folder(sig, tmp_path, src):
    proc = _prune_killed_by(sig, src, tmp_path / "out")
    assert proc.returncode == 128 + getattr(signal, sig), proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_stale_partial_folders_of_dead_runs_are_removed(tmp_path, src):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for name, pid in ((".out.partial-dead", dead_pid), (".out.partial-live", live.pid)):
            (tmp_path / name).mkdir()
            (tmp_path / name / ".hfprune-owner").write_text(str(pid))
            (tmp_path / name / "model.safetensors").write_bytes(b"x" * 1000)
        (tmp_path / ".out.partial-noowner").mkdir()  # an older hfprune's leftover (SIGKILL)
        assert main(["prune", str(src), "-o", str(tmp_path / "out"), "--drop-last", "1", "--no-progress"]) == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == [".out.partial-live", "out", "src"]
    finally:
        live.kill()


def test_failed_push_preflight_writes_nothing_and_no_push_then_works(tmp_path, src, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    work = tmp_path / "work"
    code = main(["push", str(src), "--drop-last", "1", "--work-dir", str(work), *TASKS, "--no-progress"])
    one_line_error(capsys, code, "no Hub token", "--no-push")
    assert not work.exists() or not any(work.iterdir())
    assert main(["push", str(src), "--drop-last", "1", "--work-dir", str(work), *TASKS, "--no-progress",
                 "--no-push"]) == 0
    assert (work / "final" / "README.md").is_file()


# ---------------------------------------------------------------- 4. input that would silently give a wrong model

@pytest.mark.parametrize("field,value,needle", [
    ("drop_layers", "24", "valid list"),
    ("drop_layers", [2.7], "valid integer"),
    ("num_layers", 6.9, "valid integer"),
    ("drop_layers", [True], "valid integer"),
    ("num_layers", True, "valid integer"),
    ("skip_mlp", {"1": 1}, "valid list"),
    ("metric", 3, "valid string"),
])
def test_plan_files_are_strictly_typed(field, value, needle, tmp_path, src, capsys):
    plan = {"format": "hfprune-plan", "version": 1, "num_layers": 4, "drop_layers": [1], field: value}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    code = main(["prune", str(src), "--plan", str(tmp_path / "plan.json"), "-o", str(tmp_path / "out")])
    one_line_error(capsys, code, field, needle)
    assert not (tmp_path / "out").exists()


def test_push_plan_keeps_its_depth_and_metric(tmp_path, src, capsys):
    wrong = {"format": "hfprune-plan", "version": 1, "num_layers": 8, "drop_layers": [1]}
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    code = main(["push", str(src), "--plan", str(tmp_path / "wrong.json"), "--no-push",
                 "--work-dir", str(tmp_path / "w1"), *TASKS])
    one_line_error(capsys, code, "8-layer model", "4 layers")
    right = {"format": "hfprune-plan", "version": 1, "num_layers": 4, "drop_layers": [1, 2], "metric": "angular"}
    (tmp_path / "right.json").write_text(json.dumps(right))
    assert main(["push", str(src), "--plan", str(tmp_path / "right.json"), "--no-push",
                 "--work-dir", str(tmp_path / "w2"), *TASKS, "--no-progress"]) == 0
    plan = json.loads((tmp_path / "w2" / "plan.json").read_text())
    assert plan["metric"] == "angular" and plan["drop_layers"] == [1, 2]
    assert "Unreasonable Ineffectiveness" in (tmp_path / "w2" / "final" / "README.md").read_text()


def test_config_declaring_more_layers_than_the_weights_hold(tmp_path, src, capsys):
    config = json.loads((src / "config.json").read_text())
    config["num_hidden_layers"] = 6
    (src / "config.json").write_text(json.dumps(config))
    code = main(["prune", str(src), "--drop-last", "1", "-o", str(tmp_path / "out")])
    one_line_error(capsys, code, "layer 4 has no attention weights", "6 layers")


def _rewrite_header(path: Path, edit) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])


def _first_two(header):
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    return header[names[0]], header[names[1]]


def _overlap(h):
    a, b = _first_two(h)
    b["data_offsets"] = [b["data_offsets"][0] - 4, b["data_offsets"][1] - 4]


def _gap(h):
    last = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
    h[last]["data_offsets"] = [o + 4 for o in h[last]["data_offsets"]]


def _negative_shape(h):
    a, _ = _first_two(h)
    a["shape"] = [-1] + a["shape"][1:]


def _negative_begin(h):
    a, _ = _first_two(h)
    a["data_offsets"][0] = -8


def _nested_metadata(h):
    h["__metadata__"] = {"format": {"nested": "dict"}}


@pytest.mark.parametrize("edit,needle", [(_overlap, "overlaps"), (_gap, "gap"), (_negative_shape, "malformed"),
                                         (_negative_begin, "malformed"), (_nested_metadata, "__metadata__")])
def test_corrupt_safetensors_headers_are_refused(edit, needle, tmp_path, src, capsys):
    _rewrite_header(src / "model.safetensors", edit)
    code = main(["prune", str(src), "--drop-last", "1", "-o", str(tmp_path / "out")])
    one_line_error(capsys, code, needle)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def sharded(tmp_path):
    from hfprune.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path / "sharded", "llama", num_layers=4, max_shard_size="100KB")


@pytest.mark.parametrize("corrupt,needle", [
    ("omit_shard", "does not list"),
    ("list_map", "no weight_map object"),
    ("non_string", "names shard"),
    ("outside", "names shard"),
])
def test_corrupt_indexes_are_refused(corrupt, needle, sharded, tmp_path, capsys):
    index_path = sharded / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2
    if corrupt == "omit_shard":
        index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != shards[-1]}
    elif corrupt == "list_map":
        index["weight_map"] = list(index["weight_map"])
    elif corrupt == "non_string":
        index["weight_map"][next(iter(index["weight_map"]))] = 7
    else:
        index["weight_map"][next(iter(index["weight_map"]))] = "../outside/model.safetensors"
    index_path.write_text(json.dumps(index))
    code = main(["prune", str(sharded), "--drop-last", "1", "-o", str(tmp_path / "out")])
    one_line_error(capsys, code, needle)
    assert not (tmp_path / "out").exists()


def test_pickle_index_cannot_reach_outside_the_source(tmp_path, capsys):
    import torch

    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "outside").mkdir()
    torch.save({"x": torch.zeros(1)}, tmp_path / "outside" / "x.bin")
    (src / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2,
                                                 "architectures": ["LlamaForCausalLM"]}))
    (src / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"x": "../outside/x.bin"}}))
    (src / "pytorch_model-00001-of-00001.bin").write_bytes(b"")
    code = main(["prune", str(src), "--drop-last", "1", "-o", str(tmp_path / "out"), "--allow-pickle"])
    one_line_error(capsys, code, "names shard", "../outside/x.bin")


# ---------------------------------------------------------------- 5. one line, never a traceback

def test_unreadable_inputs_give_one_line(tmp_path, src, capsys):
    plan = tmp_path / "plan.json"
    cases = [
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (b'{"format": "hfprune-plan", "version": 1, "num_layers": 1e400, "drop_layers": [1]}', "valid integer"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ]
    for content, needle in cases:
        plan.write_bytes(content)
        code = main(["prune", str(src), "--plan", str(plan), "-o", str(tmp_path / "out")])
        one_line_error(capsys, code, needle)
    code = main(["prune", str(src), "--plan", str(tmp_path), "-o", str(tmp_path / "out")])
    one_line_error(capsys, code, "is a folder")
    code = main(["prune", str(src), "--drop-layers", "0-99999999999", "-o", str(tmp_path / "out")])
    one_line_error(capsys, code, "out of range", "0-3")
    (src / "config.json").write_bytes(b"\xff\xfe{")
    code = main(["prune", str(src), "--drop-last", "1", "-o", str(tmp_path / "out")])
    one_line_error(capsys, code, "not UTF-8")
    assert not (tmp_path / "out").exists()


def test_output_dot_and_missing_eval_folder_are_refused_before_work(tmp_path, src, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["prune", str(src), "--drop-last", "1", "-o", ".", "--overwrite"])
    one_line_error(capsys, code, "contains the source")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "cwd")
    code = main(["prune", str(src), "--drop-last", "1", "-o", "."])
    one_line_error(capsys, code, "already exists")
    code = main(["prune", str(src), "--drop-last", "1", "-o", ".", "--overwrite"])
    one_line_error(capsys, code, "not written by hfprune")
    assert (tmp_path / "cwd" / "notes.txt").read_text() == "mine"
    import hfprune.evaluation.harness as ev

    monkeypatch.setattr(ev, "evaluate_model", lambda *a, **k: pytest.fail("evaluated before checking -o"))
    code = main(["eval", str(src), *TASKS, "-o", "missing_dir/x.json"])
    one_line_error(capsys, code, "does not exist")


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, src, capsys, monkeypatch):
    import hfprune.disk.surgery as surgery

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out" / "model.safetensors"))

    monkeypatch.setattr(surgery, "copy_file", full)
    monkeypatch.setattr(surgery, "write_renamed", full)
    code = main(["prune", str(src), "--drop-last", "1", "-o", str(tmp_path / "out"), "--no-progress"])
    one_line_error(capsys, code, "No space left on device", "free some space")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
