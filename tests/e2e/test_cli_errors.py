"""Bad input: one line naming the problem and the fix, exit status 2, no traceback, nothing written."""

import json
import struct
import subprocess
import sys

import pytest

from hfprune.cli import main

from ..helpers import one_line_error


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "hfprune", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("args,needles", [
    (["--drop-layers", "2,9"], ["out of range", "0-5"]),
    (["--drop-layers", "2,2"], ["listed twice"]),
    (["--drop-layers", "1-3", "--skip-mlp", "2"], ["dropped and also in skip_mlp"]),
    (["--drop-last", "6"], ["every layer", "at most 5"]),
    (["--drop-layers", "0-5"], ["removes all 6 layers"]),
    (["--skip-attention", "x"], ["is not an index"]),
    ([], ["removes nothing"]),
])
def test_bad_plans(args, needles, tiny_checkpoints, tmp_path, capsys):
    code = main(["prune", str(tiny_checkpoints("llama")), "-o", str(tmp_path / "out"), *args])
    one_line_error(capsys, code, *needles)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_output_exists_needs_overwrite(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code = main(["prune", str(tiny_checkpoints("llama")), "-o", str(out), "--drop-last", "1"])
    one_line_error(capsys, code, "already exists", "--overwrite")
    assert (out / "precious.txt").read_text() == "keep me"
    # --overwrite never deletes a folder hfprune did not write
    code = main(["prune", str(tiny_checkpoints("llama")), "-o", str(out), "--drop-last", "1", "--overwrite"])
    one_line_error(capsys, code, "not written by hfprune")
    assert (out / "precious.txt").read_text() == "keep me"
    # ... but replaces its own output
    hf_out = tmp_path / "hf-out"
    assert main(["prune", str(tiny_checkpoints("llama")), "-o", str(hf_out), "--drop-last", "2", "--no-progress"]) == 0
    assert main(["prune", str(tiny_checkpoints("llama")), "-o", str(hf_out), "--drop-last", "1", "--overwrite",
                 "--no-progress"]) == 0
    assert json.loads((hf_out / "config.json").read_text())["num_hidden_layers"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf-out", "out"]  # no staging or trash left beside it


def test_not_a_causal_lm(tmp_path, capsys):
    from transformers import T5Config

    src = tmp_path / "t5"
    src.mkdir()
    T5Config(num_layers=2).save_pretrained(src)
    code = main(["prune", str(src), "-o", str(tmp_path / "out"), "--drop-last", "1"])
    one_line_error(capsys, code, "encoder-decoder")


def test_unknown_model_type(tiny_checkpoints, tmp_path, capsys):
    src = _copy(tiny_checkpoints("llama"), tmp_path / "src")
    c = json.loads((src / "config.json").read_text())
    c["model_type"], c["architectures"] = "bert", ["BertForMaskedLM"]
    (src / "config.json").write_text(json.dumps(c))
    code = main(["prune", str(src), "-o", str(tmp_path / "out"), "--drop-last", "1"])
    one_line_error(capsys, code, "'bert'", "no layer layout", "supported:")


def test_unknown_causal_lm_is_not_called_something_else(tiny_checkpoints, tmp_path, capsys):
    src = _copy(tiny_checkpoints("llama"), tmp_path / "src")
    c = json.loads((src / "config.json").read_text())
    c["model_type"], c["architectures"] = "brand_new_lm", ["BrandNewLMForCausalLM"]
    (src / "config.json").write_text(json.dumps(c))
    code = main(["prune", str(src), "-o", str(tmp_path / "out"), "--drop-last", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "no layer layout for model_type 'brand_new_lm'" in err and "not a" not in err


def test_pickle_only_refused(tiny_checkpoints, tmp_path, capsys):
    src = _copy(tiny_checkpoints("llama"), tmp_path / "src")
    (src / "model.safetensors").unlink()
    (src / "pytorch_model.bin").write_bytes(b"not really")
    code = main(["prune", str(src), "-o", str(tmp_path / "out"), "--drop-last", "1"])
    one_line_error(capsys, code, "pickle", "--allow-pickle")
    assert not (tmp_path / "out").exists()


def test_unknown_per_layer_field_refused(tiny_checkpoints, tmp_path, capsys):
    src = _copy(tiny_checkpoints("llama"), tmp_path / "src")
    c = json.loads((src / "config.json").read_text())
    c["attention_window_per_layer"] = [4, 8, 4, 8, 4, 8]
    (src / "config.json").write_text(json.dumps(c))
    code = main(["prune", str(src), "-o", str(tmp_path / "out"), "--drop-last", "1"])
    one_line_error(capsys, code, "attention_window_per_layer", "per-layer")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_corrupt_safetensors(damage, tiny_checkpoints, tmp_path, capsys):
    src = _copy(tiny_checkpoints("llama"), tmp_path / "src")
    path = src / "model.safetensors"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        (n,) = struct.unpack("<Q", data[:8])
        path.write_bytes(data[:8] + b"{garbage" + data[16:])
    code = main(["prune", str(src), "-o", str(tmp_path / "out"), "--drop-last", "1"])
    line = one_line_error(capsys, code, "model.safetensors")
    assert ("truncated" in line) or ("corrupt" in line)
    assert not (tmp_path / "out").exists()


def test_plan_for_another_model(tiny_checkpoints, tmp_path, capsys):
    (tmp_path / "plan.json").write_text(json.dumps(
        {"format": "hfprune-plan", "version": 1, "num_layers": 32, "drop_layers": [31]}))
    code = main(["prune", str(tiny_checkpoints("llama")), "-o", str(tmp_path / "out"), "--plan",
                 str(tmp_path / "plan.json")])
    one_line_error(capsys, code, "32-layer", "6 layers")


def test_bad_source(tmp_path, capsys):
    code = main(["prune", "./no/such/folder", "-o", str(tmp_path / "out"), "--drop-last", "1"])
    one_line_error(capsys, code, "neither an existing folder nor a Hub repo id")


def test_dry_run_prints_plan_and_writes_nothing(tiny_checkpoints, tmp_path, capsys):
    code = main(["prune", str(tiny_checkpoints("llama")), "-o", str(tmp_path / "out"), "--drop-last", "2",
                 "--skip-attention", "0", "--dry-run"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "dry run" in out and "6 -> 4" in out and "parameters:" in out and "weights:" in out
    assert "0:attention" in out
    assert list(tmp_path.iterdir()) == []


def test_argparse_errors_are_one_line():
    code, out, err = run_cli("prune", "--drop-last", "two")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "invalid int value" in err


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst
