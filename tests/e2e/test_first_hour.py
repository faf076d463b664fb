"""A new user's first hour: errors that lead somewhere at once, offline runs that fail fast and name the offline
alternatives, outputs where they are expected, a card that tells the truth, help that explains every option and
imports nothing heavy, the offline demo, an installed wheel that finds its resources."""

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hfprune.cli import build_parser, main

from ..helpers import one_line_error
from ..hub_server import FakeHub


@pytest.fixture
def src(tmp_path):
    from hfprune.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=4)


@pytest.fixture
def hub_down(monkeypatch):
    """The Hub endpoint is a closed port on loopback and HF_HUB_OFFLINE is not set: the retry path."""
    import hfprune.hub as hub

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_REACHABLE", {})
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    yield
    os.environ.pop("HF_HUB_OFFLINE", None)


def test_a_data_path_typo_fails_at_once_before_any_model_is_loaded(src, tmp_path, capsys, monkeypatch):
    import hfprune.scoring.drivers as drivers

    monkeypatch.setattr(drivers, "load_scoring_model", lambda *a: pytest.fail("loaded the model before checking data"))
    code = main(["score", str(src), "--metric", "block-influence", "--remove", "1", "--data", "nope.txt",
                 "-o", str(tmp_path / "plan.json")])
    one_line_error(capsys, code, "nope.txt", "no such file")
    (tmp_path / "d.jsonl").write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    code = main(["recover", str(src), "-o", str(tmp_path / "out"), "--dataset", "data/missing.jsonl"])
    one_line_error(capsys, code, "--dataset", "no such file")


def test_offline_calibration_default_fails_fast_with_the_alternative(src, tmp_path, capsys, hub_down):
    code = main(["score", str(src), "--metric", "ppl", "--remove", "1", "-o", str(tmp_path / "plan.json")])
    one_line_error(capsys, code, "wikitext", "local .txt/.json/.jsonl")


def test_offline_eval_names_the_bundled_tasks(src, tmp_path, capsys, hub_down):
    code = main(["eval", str(src), "--tasks", "piqa", "--limit", "2", "-o", str(tmp_path / "e.json")])
    one_line_error(capsys, code, "piqa", "hfprune_demo_mc", "hfprune_demo_ppl", "--include-path")


def test_eval_takes_a_hub_id_and_prints_no_git_noise(tmp_path):
    from hfprune.tiny import build_tiny_checkpoint

    src = build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=3)
    cwd = tmp_path / "not-a-repo"
    cwd.mkdir()
    with FakeHub() as hub:
        hub.add_repo("org/tiny", src)
        env = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"),
                   HF_HUB_CACHE=str(tmp_path / "hf-cache"), HF_HUB_DISABLE_XET="1", GIT_CEILING_DIRECTORIES=str(tmp_path))
        proc = subprocess.run([sys.executable, "-m", "hfprune", "eval", "org/tiny", "--tasks", "hfprune_demo_mc",
                               "--limit", "2", "-o", "e.json"], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not a git repository" not in proc.stderr
    assert "hfprune_demo_mc" in json.loads((cwd / "e.json").read_text())["tasks"]


def test_score_writes_scores_beside_the_plan_and_names_the_real_source(src, tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    assert main(["score", str(src), "--metric", "magnitude-l2", "--remove", "1",
                 "-o", str(tmp_path / "sub" / "plan.json"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "sub" / "scores.json").is_file() and not (tmp_path / "scores.json").exists()
    assert f"hfprune prune {src} --plan {tmp_path / 'sub' / 'plan.json'}" in out


def test_outputs_are_ordinary_folders(src, tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["prune", str(src), "--drop-last", "1", "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_skip_only_card_and_no_push_card_tell_the_truth(src, tmp_path):
    from huggingface_hub import ModelCard

    assert main(["push", str(src), "--skip-attention", "1", "--tasks", "hfprune_demo_mc", "--limit", "2",
                 "--work-dir", str(tmp_path / "w"), "--no-push", "--no-progress"]) == 0
    card = ModelCard.load(tmp_path / "w" / "final" / "README.md")
    assert "all 4 decoder layers, some without a sub-block" in card.text
    assert "local/" not in card.text and str(tmp_path) not in card.text
    assert "median of 5 rounds, the models timed interleaved in one process" in card.text
    assert "decode tokens/s (x dense)" in card.text and "(1.00x)" in card.text  # the dense model's own ratio
    assert 'AutoTokenizer.from_pretrained("<you>/' in card.text and "trust_remote_code=True)\ntokenizer" in card.text
    recipe = (tmp_path / "w" / "final" / "recipe.yaml").read_text()
    assert str(tmp_path) not in recipe and "lora_r" not in recipe


def test_every_option_of_every_command_is_explained():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = []
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.help is None and "-h" not in action.option_strings:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_every_help_works_without_heavy_imports():
    """--help is instant because it imports neither torch nor transformers nor lm-eval (timing lives in bench/)."""
    probe = ("import runpy, sys\n"
             "sys.argv = ['hfprune'] + sys.argv[1:] + ['--help']\n"
             "try:\n    runpy.run_module('hfprune', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules))\n")
    for args in ([], ["prune"], ["score"], ["recover"], ["eval"], ["push"], ["sweep"], ["demo"], ["export-gguf"]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True)
        assert "usage:" in proc.stdout, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "HEAVY []", (args, proc.stdout[-300:])


def test_card_template_renders_from_an_installed_wheel(tmp_path):
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "whl")], check=True, capture_output=True)
    wheel = next((tmp_path / "whl").glob("hfprune-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    code = ("import hfprune.publish.card as c, sys; p = c.template_path(); print(p); "
            "assert str(p).startswith(sys.argv[1]), p; "
            "from hfprune.evaluation.harness import DATA_DIR; assert (DATA_DIR / 'demo_mc.jsonl').is_file(); "
            "from hfprune.disk.remote_code import _TEMPLATE as t; assert t.is_file() and str(t).startswith(sys.argv[1]), t")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_demo_runs_the_whole_pipeline_offline(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-m", "hfprune", "demo", "--work-dir", str(tmp_path / "demo")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "demo"
    for artifact in ("source.json", "plan.json", "pruned", "recovered", "eval.json", "final/README.md",
                     "final/model.safetensors", "final/layer_map.svg"):
        assert (work / artifact).exists(), artifact
    evaluation = json.loads((work / "eval.json").read_text())
    assert set(evaluation) == {"dense", "pruned", "recovered"}
    card = ModelCard.load(work / "final" / "README.md")
    assert card.data.eval_results
