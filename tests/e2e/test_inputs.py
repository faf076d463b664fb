"""Every input checked at the door: numbers that are numbers but not sane, datasets with bad rows, recipes with
duplicate keys, repo ids, dtypes, tensors stored twice, plans the model cannot take, and two runs on one work dir.
Each refusal is one line, exit status 2, nothing written, no weights changed."""

import json
import os
import signal
import subprocess
import sys

import pytest

from hfprune.cli import main

from ..helpers import one_line_error

TASKS = ["--tasks", "hfprune_demo_mc", "--limit", "4", "--speed-rounds", "0"]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    from hfprune.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("in") / "src", "llama", num_layers=4, tokenizer=True)


@pytest.fixture(scope="module")
def instructions(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ok.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Say {w}.", "input": "", "output": w}) + "\n"
                            for w in ("yes", "no", "maybe", "never", "always", "often", "rarely", "soon")))
    return path


@pytest.mark.parametrize("flag,value,needle", [
    ("--lr", "inf", "finite"), ("--lr", "nan", "finite"), ("--lr", "0", "above 0"),
    ("--epochs", "inf", "finite"), ("--max-steps", "-5", "at least -1"), ("--max-steps", "0", "trains nothing"),
    ("--kd-temperature", "inf", "finite"), ("--kd-temperature", "0", "above 0"),
])
def test_insane_hyper_parameters_are_refused(flag, value, needle, src, instructions, tmp_path, capsys):
    code = main(["recover", str(src), "-o", str(tmp_path / "out"), "--dataset", str(instructions),
                 f"{flag}={value}", "--no-progress"])
    one_line_error(capsys, code, flag, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value,needle", [("-1", "above 0"), ("0", "above 0"), ("2.5", "whole number"),
                                          ("inf", "finite")])
def test_eval_limit_is_a_count_or_a_fraction(value, needle, src, tmp_path, capsys):
    code = main(["eval", str(src), "--tasks", "hfprune_demo_mc", f"--limit={value}", "-o", str(tmp_path / "e.json")])
    one_line_error(capsys, code, needle)
    assert not (tmp_path / "e.json").exists()


def test_the_same_limit_rules_hold_in_recipes(src, tmp_path, capsys):
    (tmp_path / "r.yaml").write_text("eval:\n  limit: 0\nrecover:\n  method: partial\n  lr: .inf\n")
    code = main(["push", str(src), "--drop-last", "1", "--recipe", str(tmp_path / "r.yaml"), "--no-push",
                 "--work-dir", str(tmp_path / "w")])
    one_line_error(capsys, code, str(tmp_path / "r.yaml"))
    assert not (tmp_path / "w").exists()


def test_a_fractional_limit_evaluates_that_share(src, tmp_path):
    assert main(["eval", str(src), "--tasks", "hfprune_demo_mc", "--limit", "0.25", "--speed-rounds", "0",
                 "-o", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["settings"]["limit"] == 0.25 and result["raw"]["n-samples"]["hfprune_demo_mc"]["effective"] == 6


@pytest.mark.parametrize("rows,needles", [
    (['{"instruction": "a", "output": "b"}', '{"instruction": "c", "output": ', '{"instruction": "d", "output": "e"}'],
     ["bad.jsonl line 2", "not valid JSON"]),
    (['{"instruction": "a", "output": "b"}', '{"instruction": "c"}'], ["bad.jsonl line 2", "no 'output'"]),
    (['{"instruction": "a", "output": "b"}', '{"instruction": "c", "output": {"x": 1}}'],
     ["bad.jsonl line 2", "'output' is a dict"]),
    (['{"instruction": "a", "output": "b"}', '{"instruction": ["c"], "output": "d"}'],
     ["bad.jsonl line 2", "'instruction' is a list"]),
    (['{"instruction": "a", "output": "b"}', '[1, 2]'], ["bad.jsonl line 2", "JSON object"]),
])
def test_bad_rows_are_refused_naming_the_line_in_recovery_and_calibration(rows, needles, src, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows) + "\n")
    code = main(["recover", str(src), "-o", str(tmp_path / "out"), "--dataset", str(bad), "--no-progress"])
    one_line_error(capsys, code, *needles)
    assert not (tmp_path / "out").exists()
    code = main(["score", str(src), "--metric", "block-influence", "--remove", "1", "--data", str(bad),
                 "-o", str(tmp_path / "plan.json"), "--no-progress", "--cache-dir", str(tmp_path / "c")])
    one_line_error(capsys, code, *needles)
    assert not (tmp_path / "plan.json").exists()


def test_rows_with_an_empty_answer_are_skipped_and_counted(src, instructions, tmp_path):
    data = tmp_path / "some-empty.jsonl"
    data.write_text(instructions.read_text() + json.dumps({"instruction": "Say nothing.", "output": ""}) + "\n")
    assert main(["recover", str(src), "-o", str(tmp_path / "out"), "--dataset", str(data), "--max-steps", "1",
                 "--batch-size", "4", "--micro-batch-size", "4", "--lr", "1e-3", "--no-progress"]) == 0
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())
    assert any("1 rows of" in w and "skipped" in w for w in record["recovery_run"]["warnings"])


def test_a_duplicated_recipe_key_is_refused_with_its_lines(src, tmp_path, capsys):
    (tmp_path / "r.yaml").write_text("prune:\n  drop_last: 1\n  drop_last: 3\n")
    code = main(["push", str(src), "--recipe", str(tmp_path / "r.yaml"), "--no-push", "--work-dir",
                 str(tmp_path / "w")])
    one_line_error(capsys, code, "'drop_last' is given twice", "lines 2 and 3")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("repo_id", ["../x", "a/b/c", "bad name!", "x--y"])
@pytest.mark.parametrize("mode", ["--dry-run", "--no-push"])
def test_repo_ids_follow_the_hubs_rules_before_any_work(repo_id, mode, src, tmp_path, capsys):
    code = main(["push", str(src), "--drop-last", "1", "--repo-id", repo_id, mode, "--work-dir", str(tmp_path / "w"),
                 *TASKS])
    one_line_error(capsys, code, "--repo-id", "not a Hub repo id")
    assert not (tmp_path / "w").exists()


def test_no_push_cards_show_the_repo_id_given(src, tmp_path):
    from huggingface_hub import ModelCard

    assert main(["push", str(src), "--drop-last", "1", "--repo-id", "me/tiny-drop1", "--no-push", "--work-dir",
                 str(tmp_path / "w"), "--no-progress", *TASKS]) == 0
    card = ModelCard.load(tmp_path / "w" / "final" / "README.md")
    assert 'from_pretrained("me/tiny-drop1")' in card.text and "<you>/" not in card.text


def _with_config(src, tmp_path, **changes):
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(src, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("command", ["prune", "eval", "score", "recover"])
def test_an_unknown_dtype_is_one_line_wherever_a_config_is_read(command, src, instructions, tmp_path, capsys):
    folder = _with_config(src, tmp_path, dtype="float13")
    args = {"prune": ["prune", str(folder), "--drop-last", "1", "-o", str(tmp_path / "out")],
            "eval": ["eval", str(folder), "--tasks", "hfprune_demo_mc", "-o", str(tmp_path / "out")],
            "score": ["score", str(folder), "--metric", "block-influence", "--remove", "1", "--data",
                      str(instructions), "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")],
            "recover": ["recover", str(folder), "-o", str(tmp_path / "out"), "--dataset", str(instructions)]}[command]
    one_line_error(capsys, main(args + ["--no-progress"] if command != "eval" else args), "'float13'",
                   "not a torch dtype")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("named", [0, 1])
def test_a_tensor_stored_in_two_shards_is_refused_whichever_copy_the_index_names(named, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from hfprune.tiny import build_tiny_checkpoint

    folder = build_tiny_checkpoint(tmp_path / "m", "llama", num_layers=2, tokenizer=False, max_shard_size="200KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2
    name = next(n for n, s in index["weight_map"].items() if s == shards[0])
    first, second = load_file(folder / shards[0]), load_file(folder / shards[1])
    second[name] = first[name].clone()  # the same tensor in both shards
    save_file(second, folder / shards[1], metadata={"format": "pt"})
    index["weight_map"][name] = shards[named]
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    code = main(["prune", str(folder), "--drop-last", "1", "-o", str(tmp_path / "out")])
    one_line_error(capsys, code, name, "stored in both", shards[0], shards[1])
    assert not (tmp_path / "out").exists()


def test_an_impossible_plan_is_refused_before_the_work_dir_is_touched(src, tmp_path, capsys):
    work = tmp_path / "w"
    code = main(["push", str(src), "--drop-last", "4", "--no-push", "--work-dir", str(work), *TASKS])
    one_line_error(capsys, code, "--drop-last 4", "at most 3")
    assert not work.exists()
    code = main(["push", str(src), "--metric", "reverse-order", "--remove", "9", "--no-push", "--work-dir",
                 str(work), *TASKS])
    one_line_error(capsys, code, "--remove 9")
    assert not work.exists()
    # the corrected retry needs no --overwrite
    assert main(["push", str(src), "--drop-last", "1", "--no-push", "--work-dir", str(work), "--no-progress",
                 *TASKS]) == 0


def test_a_work_dir_held_by_a_live_run_is_refused_and_a_dead_runs_lock_is_not_stuck(src, tmp_path, capsys):
    from hfprune.workdir import work_dir_lock

    work = tmp_path / "w"
    with work_dir_lock(work):  # another run holds it
        code = main(["push", str(src), "--drop-last", "1", "--no-push", "--work-dir", str(work), *TASKS])
        one_line_error(capsys, code, "in use by another hfprune run", f"pid {os.getpid()}")
    assert [p.name for p in work.iterdir()] == [".hfprune-lock"]  # the refused run wrote nothing
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom hfprune.workdir import work_dir_lock\n"
        f"with work_dir_lock({str(work)!r}):\n    print('held', flush=True)\n    time.sleep(600)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    code = main(["push", str(src), "--drop-last", "1", "--no-push", "--work-dir", str(work), *TASKS])
    one_line_error(capsys, code, "in use", f"pid {holder.pid}")
    holder.send_signal(signal.SIGKILL)  # a crashed run: the kernel drops its lock
    holder.wait()
    assert main(["push", str(src), "--drop-last", "1", "--no-push", "--work-dir", str(work), "--no-progress",
                 *TASKS]) == 0


def test_two_sweeps_on_one_dir_the_second_is_refused(src, tmp_path, capsys):
    from hfprune.workdir import work_dir_lock

    work = tmp_path / "s"
    with work_dir_lock(work, "sweep dir"):
        code = main(["sweep", str(src), "--remove", "1", "--metrics", "reverse-order", "--work-dir", str(work),
                     *TASKS])
        one_line_error(capsys, code, "sweep dir", "in use")
