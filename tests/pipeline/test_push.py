"""The whole pipeline: push to a local Hub endpoint and load back, the card, resume, recipes, errors."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hfprune.publish.card import benchmark_rows
from hfprune.pipeline import Pipeline
from hfprune.plan import Plan
from hfprune.settings import Recipe

from ..hub_server import FakeHub

TASKS = "hfprune_demo_mc,hfprune_demo_ppl"


def hub_env(hub, tmp_path, token="hf_write"):
    env = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf-home"),
               HF_HUB_CACHE=str(tmp_path / "hf-cache"), HF_HUB_DISABLE_XET="1")
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return env


def cli(env, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "hfprune", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, tiny_checkpoints):
    """One real push of a Hub-hosted tiny model through the local endpoint, shared by the assertions below."""
    tmp = tmp_path_factory.mktemp("push")
    from hfprune.tiny import build_tiny_checkpoint

    src = build_tiny_checkpoint(tmp / "src", "llama", num_layers=6)
    (src / "LICENSE").write_text("test licence")
    (src / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    with FakeHub() as hub:
        sha = hub.add_repo("org/tiny", src)
        env = hub_env(hub, tmp)
        proc = cli(env, "push", "org/tiny", "--drop-last", "2", "--skip-attention", "1", "--tasks", TASKS,
                   "--limit", "8", "--repo-id", "tester/tiny-pruned", "--work-dir", tmp / "work", "--no-progress")
        assert proc.returncode == 0, proc.stderr[-3000:]
        probe = (
            "import sys, torch, json\n"
            "from transformers import AutoModelForCausalLM\n"
            "ids = torch.arange(3, 40).view(1, -1)\n"
            "out = {}\n"
            "for name in ('tester/tiny-pruned', sys.argv[1]):\n"
            "    m = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=True)\n"
            "    out[name] = m(input_ids=ids).logits.tolist()\n"
            "print(json.dumps(out))\n"
        )
        load = subprocess.run([sys.executable, "-c", probe, str(tmp / "work" / "final")], capture_output=True,
                              text=True, env=env, timeout=300)
        assert load.returncode == 0, load.stderr[-3000:]
        repo = hub.state.repos["tester/tiny-pruned"]
        yield {"tmp": tmp, "hub_files": dict(repo.commits[-1][1]), "commits": len(repo.commits), "sha": sha,
               "logits": json.loads(load.stdout.strip().splitlines()[-1]), "stdout": proc.stdout,
               "requests": list(hub.state.requests)}


def test_push_uploads_one_commit_that_loads_with_the_same_logits(pushed):
    logits = list(pushed["logits"].values())
    assert logits[0] == logits[1]
    files = pushed["hub_files"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md", "eval.json", "recipe.yaml",
                 "layer_map.svg", "modeling_hfprune.py", "LICENSE", "generation_config.json"):
        assert name in files, name
    assert not any(n.endswith((".bin", ".pth", ".pt")) for n in files)
    assert pushed["commits"] == 2  # repo creation + exactly one upload commit
    assert any("/auth-check" in r for r in pushed["requests"])


def test_token_is_never_written(pushed):
    for path in (pushed["tmp"] / "work").rglob("*"):
        if path.is_file():
            assert b"hf_write" not in path.read_bytes(), path
    assert "hf_write" not in pushed["stdout"]


def test_card_parses_with_model_index_and_tables_matching_eval_json(pushed):
    final = pushed["tmp"] / "work" / "final"
    card = ModelCard.load(final / "README.md")
    evaluation = json.loads((final / "eval.json").read_text())
    d = card.data
    assert d.library_name == "transformers" and d.base_model == "org/tiny" and d.license == "apache-2.0"
    assert "## Intended use and limitations" in card.text
    assert {"pruned", "layer-pruning", "hfprune"} <= set(d.tags)
    results = {(r.dataset_type, r.metric_type): r.metric_value for r in d.eval_results}
    for task, metrics in evaluation["pruned"]["tasks"].items():
        for metric, value in metrics.items():
            if not metric.endswith("_stderr"):
                assert results[(task, metric)] == pytest.approx(value, rel=1e-5)
    table = {}
    for line in card.text.splitlines():
        m = re.match(r"\| (hfprune_\w+) \| (\w+) \| (.+) \|$", line)
        if m:
            table[(m.group(1), m.group(2))] = [c.strip() for c in m.group(3).split("|")]
    rows = benchmark_rows(evaluation)
    assert rows and len(table) == len(rows)
    for row in rows:
        cells = table[(row["task"], row["metric"])]
        dense, pruned = cells[0], cells[1]
        if row["metric"] == "acc":
            assert dense.split(" ± ")[0] == f"{100 * row['dense']:.2f}"
            assert pruned.split(" ± ")[0] == f"{100 * row['pruned']:.2f}"
            assert dense.split(" ± ")[1] == f"{100 * row['dense_stderr']:.2f}"
            assert cells[2] == f"{100 * (row['pruned'] - row['dense']):+.2f} pt"
        else:
            assert float(dense) == pytest.approx(row["dense"], rel=1e-3)
            assert cells[2] == f"{100 * (row['pruned'] - row['dense']) / row['dense']:+,.1f}%"
    assert "trust_remote_code=True" in card.text  # a skip map was shipped
    assert (final / "layer_map.svg").read_text().startswith("<svg")
    recorded = json.loads((pushed["tmp"] / "work" / "source.json").read_text())
    assert recorded["sha"] == pushed["sha"]


def _local_recipe(src, **extra):
    data = {"source": str(src), "prune": {"drop_last": 1},
            "eval": {"tasks": ["hfprune_demo_mc"], "limit": 4, "latency_tokens": 4}, "push": {"enabled": False}}
    data.update(extra)
    return Recipe.parse(data)


def test_resume_after_a_kill_skips_finished_stages(tiny_checkpoints, tmp_path, monkeypatch):
    from hfprune.tiny import build_tiny_checkpoint

    src = build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=4)
    recipe = _local_recipe(src)
    from hfprune.pipeline import stages

    original = stages.eval_stage

    def killed(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "eval_stage", killed)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(recipe, tmp_path / "w", eval_cache=tmp_path / "ec", echo=lambda *_: None).run()
    pruned_inode = (tmp_path / "w" / "pruned" / "model.safetensors").stat().st_ino
    monkeypatch.setattr(stages, "eval_stage", original)
    calls = []
    import hfprune.disk.surgery as surgery

    monkeypatch.setattr(surgery, "prune_checkpoint", lambda *a, **k: calls.append("prune"))
    result = Pipeline(recipe, tmp_path / "w", resume=True, eval_cache=tmp_path / "ec", echo=lambda *_: None).run()
    assert result.skipped == ["source", "plan", "prune"] and result.ran == ["eval", "final"]
    assert calls == []
    assert (tmp_path / "w" / "pruned" / "model.safetensors").stat().st_ino == pruned_inode
    assert (tmp_path / "w" / "final" / "README.md").exists()
    # without --resume or --overwrite a used work dir is refused
    with pytest.raises(Exception, match="--resume"):
        Pipeline(recipe, tmp_path / "w", echo=lambda *_: None).run()
    # resume per stage: new evaluation settings rerun evaluation (and the card) only
    changed = recipe.override(**{"eval.limit": 3})
    said = []
    result = Pipeline(changed, tmp_path / "w", resume=True, eval_cache=tmp_path / "ec", echo=said.append).run()
    assert result.skipped == ["source", "plan", "prune"] and result.ran == ["eval", "final"]
    assert "[eval] changed since the earlier run: eval.limit: redoing it" in said  # says what changed
    assert calls == []
    assert json.loads((tmp_path / "w" / "eval.json").read_text())["pruned"]["settings"]["limit"] == 3
    # ... and another plan redoes the plan and everything after it
    monkeypatch.undo()
    said.clear()
    result = Pipeline(changed.override(**{"prune.drop_last": 2}), tmp_path / "w", resume=True,
                      eval_cache=tmp_path / "ec", echo=said.append).run()
    assert result.skipped == ["source"] and result.ran == ["plan", "prune", "eval", "final"]
    assert "[plan] changed since the earlier run: prune.drop_last: redoing it" in said
    assert "[prune] an earlier stage ran again: redoing it" in said
    assert json.loads((tmp_path / "w" / "pruned" / "config.json").read_text())["num_hidden_layers"] == 2


def test_dense_baseline_is_cached_across_recipes(tmp_path):
    from hfprune.tiny import build_tiny_checkpoint

    src = build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=4)
    lines = []
    Pipeline(_local_recipe(src), tmp_path / "a", eval_cache=tmp_path / "ec", echo=lines.append).run()
    assert not any("reused" in str(x) for x in lines)
    Pipeline(_local_recipe(src, prune={"drop_layers": [1]}), tmp_path / "b", eval_cache=tmp_path / "ec",
             echo=lines.append).run()
    assert any("dense baseline: reused" in str(x) for x in lines)
    a = json.loads((tmp_path / "a" / "eval.json").read_text())["dense"]["tasks"]
    b = json.loads((tmp_path / "b" / "eval.json").read_text())["dense"]["tasks"]
    assert a == b


@pytest.mark.parametrize("case,needle", [
    ("no-token", "no Hub token"),
    ("read-token", "read-only"),
    ("gated", "is gated"),
    ("no-network", "cannot reach the Hub"),
])
def test_push_errors_are_one_line(case, needle, tiny_checkpoints, tmp_path):
    with FakeHub() as hub:
        hub.add_repo("org/tiny", tiny_checkpoints("llama"))
        hub.add_repo("org/gated", tiny_checkpoints("llama"), gated=True)
        token = {"no-token": None, "read-token": "hf_read"}.get(case, "hf_write")
        env = hub_env(hub, tmp_path, token=token)
        if case == "no-network":
            env["HF_ENDPOINT"] = "http://127.0.0.1:9"
        source = "org/gated" if case == "gated" else "org/tiny"
        proc = cli(env, "push", source, "--drop-last", "1", "--work-dir", tmp_path / "w", "--tasks", TASKS)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "w" / "pruned").exists()


def test_source_without_tokenizer_is_refused_before_pruning(tiny_checkpoints, tmp_path, capsys):
    from hfprune.cli import main

    code = main(["push", str(tiny_checkpoints("llama")), "--drop-last", "1", "--no-push", "--work-dir",
                 str(tmp_path / "w"), "--tasks", "hfprune_demo_mc"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "tokenizer" in err[0], err
    assert not (tmp_path / "w" / "pruned").exists()


def test_recipe_unknown_key_is_named(tmp_path):
    (tmp_path / "r.yaml").write_text("source: x\nprune:\n  drop_lats: 3\n")
    proc = subprocess.run([sys.executable, "-m", "hfprune", "push", "--recipe", str(tmp_path / "r.yaml"), "--no-push"],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "'prune.drop_lats'" in lines[0], proc.stderr


def test_shipped_recipes_are_valid():
    configs = Path(__file__).resolve().parents[2] / "configs"
    recipes = [p for p in configs.glob("*.yaml") if not p.name.startswith("accelerate")]
    assert len(recipes) >= 4
    methods = set()
    for p in recipes:
        r = Recipe.load(p)
        methods.add((r.prune.metric or "reverse-order", r.recover.method))
    assert {("reverse-order", "partial"), ("angular", "qlora"), ("finercut", "none")} <= methods


def test_iterative_pruning_with_recovery_between_steps(tmp_path):
    from safetensors.torch import load_file

    from hfprune.evaluation.harness import DATA_DIR
    from hfprune.tiny import build_tiny_checkpoint

    src = build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=6)
    (tmp_path / "calib.txt").write_text((DATA_DIR / "demo_text.jsonl").read_text() * 20)
    recipe = Recipe.parse({
        "source": str(src),
        "prune": {"metric": "block-influence", "remove": 2, "iterative_step": 1, "data": str(tmp_path / "calib.txt"),
                  "samples": 2, "seq_len": 16},
        "recover": {"method": "partial", "dataset": str(DATA_DIR / "demo_instructions.jsonl"), "last_k": 1,
                    "lr": 1e-2, "batch_size": 4, "micro_batch_size": 4, "warmup_steps": 0, "max_steps": 2},
        "eval": {"tasks": ["hfprune_demo_mc"], "limit": 4, "latency_tokens": 4}, "push": {"enabled": False}})
    Pipeline(recipe, tmp_path / "w", eval_cache=tmp_path / "ec", score_cache=tmp_path / "sc",
             echo=lambda *_: None).run()
    plan = Plan.from_dict(json.loads((tmp_path / "w" / "plan.json").read_text()))
    scores = json.loads((tmp_path / "w" / "scores.json").read_text())
    assert len(plan.drop_layers) == 2 and plan.extra["recovery_between_steps"] == "partial"
    assert [r["round"] for r in scores["rounds"]] == [0, 1]
    assert sorted(sum((r["removed_source_layers"] for r in scores["rounds"]), [])) == list(plan.drop_layers)
    assert scores["rounds"][0]["recovery_loss"] and "recovery_loss" not in scores["rounds"][1]
    # the first round's healing is in the pruned weights: they differ from one-shot surgery with the same plan
    from hfprune.disk.surgery import prune_checkpoint

    prune_checkpoint(src, tmp_path / "oneshot", plan)
    a = load_file(tmp_path / "w" / "pruned" / "model.safetensors")
    b = load_file(tmp_path / "oneshot" / "model.safetensors")
    assert a.keys() == b.keys() and any(not torch_equal(a[k], b[k]) for k in a)
    assert (tmp_path / "w" / "final" / "README.md").exists()


def torch_equal(x, y):
    import torch

    return torch.equal(x, y)


def test_push_dry_run_shows_the_plan_and_writes_nothing(tiny_checkpoints, tmp_path, capsys):
    from hfprune.cli import main

    code = main(["push", str(tiny_checkpoints("llama")), "--drop-last", "2", "--recover", "partial", "--work-dir",
                 str(tmp_path / "w"), "--dry-run", "--repo-id", "me/x"])
    out = capsys.readouterr().out
    assert code == 0 and "6 -> 4" in out and "recover:    partial" in out and "push:       me/x" in out
    assert not (tmp_path / "w").exists()


def test_eval_without_the_task_data_is_one_line(tmp_path, capsys):
    from hfprune.cli import main
    from hfprune.tiny import build_tiny_checkpoint

    src = build_tiny_checkpoint(tmp_path / "m", "llama", num_layers=2)
    code = main(["eval", str(src), "--tasks", "piqa", "--limit", "2", "-o", str(tmp_path / "e.json")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hfprune")]
    assert code == 2 and len(err) == 1 and "cannot fetch the data of tasks piqa" in err[0]
    assert not (tmp_path / "e.json").exists()
