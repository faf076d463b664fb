"""Recovery across processes: `accelerate launch` with 2 CPU processes (gloo) splits every global batch and trains
the weights a single process trains on the same global batch.

accelerate (1.15) runs FSDP only on accelerators: on CPU its state stays MULTI_CPU (data parallel, DDP over gloo)
even with --use_fsdp, so FSDP itself is exercised only where GPUs are (configs/README.md has the commands)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from hfprune.api import prune
from hfprune.tiny import build_tiny_checkpoint

ROWS = [{"instruction": f"Say the number {i}.", "input": "", "output": f"The number is {i}, and {i} it stays."}
        for i in range(32)]

needs_launcher = pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate's launcher is not installed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    src = build_tiny_checkpoint(root / "src", "llama", num_layers=6)
    prune(src, root / "pruned", drop_last=2)
    data = root / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return root, data


def _recover(root, data, out, method, launcher):
    cmd = ["-m", "hfprune", "recover", str(root / "pruned"), "-o", str(root / out), "--method", method,
           "--dataset", str(data), "--batch-size", "8", "--micro-batch-size", "2", "--max-steps", "3",
           "--epochs", "1", "--lr", "1e-3", "--warmup-steps", "0", "--save-steps", "1000", "--no-progress"]
    if method == "lora":
        cmd += ["--lora-dropout", "0"]  # dropout masks come from each process's own random stream
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if launcher:
        cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--main_process_port", "29517", "--mixed_precision", "no", "--dynamo_backend", "no", *cmd]
        env["ACCELERATE_USE_CPU"] = "true"
    else:
        cmd = [sys.executable, *cmd]
    out_run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out_run.returncode == 0, out_run.stderr[-3000:]
    return root / out, out_run.stdout


@needs_launcher
@pytest.mark.parametrize("method", ["partial", "lora"])
def test_two_processes_split_the_batch_and_train_what_one_process_trains(setup, method):
    root, data = setup
    single, _ = _recover(root, data, f"single-{method}", method, launcher=False)
    double, stdout = _recover(root, data, f"double-{method}", method, launcher=True)
    run_single = json.loads((single / "hfprune.json").read_text())["recovery_run"]
    run = json.loads((double / "hfprune.json").read_text())["recovery_run"]
    # the work is split: two processes, each trained on half of every global batch of 8 rows, 3 steps
    assert run_single["processes"] == 1 and run_single["rows_per_process"] == [24]
    assert run["processes"] == 2 and run["rows_per_process"] == [12, 12], stdout
    assert run["distributed"] == "MULTI_CPU"  # accelerate's data parallel over gloo (FSDP needs GPUs in accelerate)
    assert run["optimizer_steps"] == run_single["optimizer_steps"] == 3
    # and it trains the same weights: the same global batches, gradients summed across processes (gloo all-reduce
    # sums in another order than one process does, so equal to float32 rounding)
    a = load_file(str(single / "model.safetensors"))
    b = load_file(str(double / "model.safetensors"))
    base = load_file(str(root / "pruned" / "model.safetensors"))
    assert a.keys() == b.keys()
    moved = [k for k in a if not (a[k] == base[k]).all()]
    assert moved  # training changed weights, so the comparison below means something
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-5 + 1e-4 * a[k].abs().max(), k
