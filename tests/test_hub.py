"""Prune straight from a Hub repo id through huggingface_hub's real snapshot_download, against a local Hub."""

import json
import os
import subprocess
import sys

import pytest

from .hub_server import FakeHub


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    with FakeHub() as server:
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        yield server


def _cli(hub, *args, token="hf_read"):
    env = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_TOKEN=token,
               HF_HUB_DISABLE_XET="1")
    return subprocess.run([sys.executable, "-m", "hfprune", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_prune_from_hub_downloads_only_needed_files_and_records_sha(hub, tiny_checkpoints, tmp_path):
    src = tiny_checkpoints("llama")
    extra = tmp_path / "repo"
    import shutil

    shutil.copytree(src, extra)
    (extra / "pytorch_model.bin").write_bytes(b"x" * 100)
    (extra / "original").mkdir()
    (extra / "original" / "consolidated.00.pth").write_bytes(b"y" * 100)
    (extra / "LICENSE").write_text("licence text")
    sha = hub.add_repo("org/tiny", extra)
    proc = _cli(hub, "prune", "org/tiny@main", "-o", tmp_path / "out", "--drop-last", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "out" / "hfprune.json").read_text())
    assert record["source"] == {"repo_id": "org/tiny", "revision": "main", "sha": sha}
    assert (tmp_path / "out" / "LICENSE").read_text() == "licence text"
    fetched = [r for r in hub.state.requests if "/resolve/" in r]
    assert fetched and not any(".bin" in r or "original/" in r for r in fetched)


@pytest.mark.parametrize("case,needle", [
    ("missing", "was not found"),
    ("gated", "is gated"),
    ("revision", "no revision"),
])
def test_hub_errors_are_one_line(hub, tiny_checkpoints, tmp_path, case, needle):
    hub.add_repo("org/tiny", tiny_checkpoints("llama"))
    hub.add_repo("org/gated", tiny_checkpoints("llama"), gated=True)
    source = {"missing": "org/nope", "gated": "org/gated", "revision": "org/tiny@v9"}[case]
    proc = _cli(hub, "prune", source, "-o", tmp_path / "out", "--drop-last", "1", token="")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_no_network_is_one_line(tmp_path):
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="0", HF_HUB_CACHE=str(tmp_path / "c"))
    proc = subprocess.run([sys.executable, "-m", "hfprune", "prune", "org/tiny", "-o", str(tmp_path / "out"),
                           "--drop-last", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Hub" in lines[0], proc.stderr


def test_dry_run_from_hub_reads_headers_only(hub, tmp_path):
    from hfprune.tiny import build_tiny_checkpoint

    src = build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=6, tokenizer=False, max_shard_size="300KB")
    hub.add_repo("org/sharded", src)
    proc = _cli(hub, "prune", "org/sharded", "--drop-last", "2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    local = _cli(hub, "prune", str(src), "--drop-last", "2", "--dry-run")
    # the same plan and sizes as a dry run on the local copy
    assert proc.stdout.splitlines()[2:] == local.stdout.splitlines()[2:]
    weight_gets = [r for r in hub.state.requests
                   if r.startswith("GET") and "resolve" in r and r.split(" ")[1].endswith(".safetensors")]
    assert weight_gets and all(" range=bytes=" in r for r in weight_gets), weight_gets  # header ranges only
    assert not list((tmp_path / "hf-cache").rglob("*.safetensors"))


def test_a_push_run_records_the_real_source_in_scores_json(hub, tmp_path):
    """Typed artifacts between stages: the pipeline hands score() its resolved Source, so scores.json names the
    Hub repo and commit (it once recorded a source of all nulls)."""
    from hfprune.tiny import build_tiny_checkpoint

    sha = hub.add_repo("org/scored", build_tiny_checkpoint(tmp_path / "repo", "llama", num_layers=4))
    proc = _cli(hub, "push", "org/scored@main", "--metric", "magnitude-l2", "--remove", "1", "--no-push",
                "--work-dir", tmp_path / "w", "--tasks", "hfprune_demo_mc", "--limit", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((tmp_path / "w" / "scores.json").read_text())
    assert scores["source"] == {"repo_id": "org/scored", "revision": "main", "sha": sha}
    assert json.loads((tmp_path / "w" / "plan.json").read_text())["metric"] == "magnitude-l2"
