"""What a published folder tells the Hub: licence fields, lineage, dataset ids in the model-index, notices; the
card's number formats and the published recipe's redaction."""

import json

import yaml
from huggingface_hub import ModelCard

from hfprune.api import prune
from hfprune.publish.card import _task_dataset, required_notices
from hfprune.hub import Source, source_license
from hfprune.tiny import build_tiny_checkpoint


def _card(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(text)
    return Source(folder, "org/base", None, "abc")


def test_licence_other_keeps_its_name_and_link_and_is_never_bare(tmp_path):
    src = _card(tmp_path / "a", "---\nlicense: other\nlicense_name: nvidia-open-model-license\n"
                                "license_link: https://example.com/license\n---\n# a\n")
    assert source_license(src, None) == {"license": "other", "license_name": "nvidia-open-model-license",
                                         "license_link": "https://example.com/license"}
    bare = source_license(_card(tmp_path / "b", "---\nlicense: other\n---\n# b\n"), None)
    assert bare == {"license": "other", "license_name": "base-license", "license_link": "https://huggingface.co/org/base"}
    assert source_license(_card(tmp_path / "c", "---\nlicense: mit\n---\n"), None) == {"license": "mit"}
    assert source_license(_card(tmp_path / "d", "# no metadata\n"), None) is None


def test_model_index_names_the_hub_dataset_of_each_task():
    raw = {"configs": {"arc_easy": {"dataset_path": "allenai/ai2_arc", "dataset_name": "ARC-Easy",
                                    "test_split": "test"},
                       "local": {"dataset_path": "json", "dataset_name": None, "test_split": "test"}}}
    assert _task_dataset(raw, "arc_easy") == {"id": "allenai/ai2_arc", "config": "ARC-Easy", "split": "test"}
    assert _task_dataset(raw, "local") == {} and _task_dataset(None, "arc_easy") == {}


def test_required_notices():
    assert required_notices("llama3.1", "meta-llama/Llama-3.1-8B-Instruct")[0].startswith("Built with Llama")
    assert "Gemma Terms of Use" in required_notices("gemma", None)[0]
    assert "Gemma Terms of Use" in required_notices(None, "google/gemma-3-270m")[0]
    assert required_notices("apache-2.0", "Qwen/Qwen3-8B") == []


def test_pruned_folder_has_a_short_card_with_lineage_and_no_local_paths(tmp_path):
    src = build_tiny_checkpoint(tmp_path / "src", "llama", num_layers=4)
    (src / "README.md").write_text("---\nlicense: llama3.1\n---\n# base\n")
    prune(src, tmp_path / "out", drop_layers="1,2")
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.license == "llama3.1" and "pruned" in card.data.tags
    assert "2 of 4 decoder layers removed" in card.text and "Built with Llama" in card.text
    assert str(tmp_path) not in (tmp_path / "out" / "README.md").read_text()


def test_a_plan_that_breaks_llama_cpps_layer_period_is_flagged(tmp_path):
    """Gemma 3 puts a full-attention layer every 6th layer and llama.cpp assumes that period; SmolLM3 drops RoPE
    every 4th layer. Whole aligned periods keep it; anything else gets a warning with a plan that keeps it."""
    from hfprune.disk.runtimes import period_warnings
    from hfprune.plan import Plan

    gemma = {"model_type": "gemma3_text", "num_hidden_layers": 18, "sliding_window_pattern": 6}
    assert period_warnings("gemma3_text", gemma, Plan.build(18, drop_layers=list(range(12, 18)))) == []
    assert period_warnings("gemma3_text", gemma, Plan.build(18, drop_layers=[6, 7, 8, 9, 10, 11])) == []
    (warning,) = period_warnings("gemma3_text", gemma, Plan.build(18, drop_layers=[0]))
    assert "every 6 layers" in warning and "--drop-layers 12-17" in warning
    smol = {"model_type": "smollm3", "num_hidden_layers": 8, "no_rope_layer_interval": 4}
    assert period_warnings("smollm3", smol, Plan.build(8, drop_layers=[4, 5, 6, 7])) == []
    assert period_warnings("smollm3", smol, Plan.build(8, drop_layers=[1]))
    assert period_warnings("llama", {"num_hidden_layers": 8}, Plan.build(8, drop_layers=[1])) == []

    src = build_tiny_checkpoint(tmp_path / "g", "gemma3_text", num_layers=6)  # tiny config: period 3
    result = prune(src, tmp_path / "out", drop_layers="0")
    assert any("hfprune export-gguf" in line and "every 3 layers" in line for line in result.describe())
    assert not prune(src, tmp_path / "out2", drop_layers="3-5").warnings


def test_eval_results_files_follow_the_hubs_format():
    """.eval_results/<task>.yaml (huggingface.co/docs/hub/eval-results) for tasks with a Hub dataset; the final
    model's scores; local tasks get none."""
    from huggingface_hub import parse_eval_result_entries

    from hfprune.publish.card import eval_results_files

    raw = {"configs": {"arc_easy": {"dataset_path": "allenai/ai2_arc", "dataset_name": "ARC-Easy", "test_split": "test"},
                       "mine": {"dataset_path": "json", "test_split": "test"}}}
    run = {"tasks": {"arc_easy": {"acc": 0.5, "acc_norm": 0.625, "acc_stderr": 0.01}, "mine": {"acc": 0.9}},
           "raw": raw, "settings": {"limit": 100, "lm_eval_version": "0.4.9"}}
    files = eval_results_files({"pruned": dict(run, tasks={"arc_easy": {"acc": 0.1}}), "recovered": run},
                               date="2026-11-29T00:00:00Z")
    assert list(files) == ["arc_easy.yaml"]
    (entry,) = parse_eval_result_entries(yaml.safe_load(files["arc_easy.yaml"]))
    assert (entry.dataset_id, entry.task_id, entry.value) == ("allenai/ai2_arc", "ARC-Easy", 0.625)
    assert entry.date == "2026-11-29T00:00:00Z" and "acc_norm" in entry.notes and "100 examples" in entry.notes


def test_upload_publishes_eval_results_but_no_other_hidden_file(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from ..hub_server import FakeHub

    folder = tmp_path / "final"
    (folder / ".eval_results").mkdir(parents=True)
    (folder / ".eval_results" / "arc_easy.yaml").write_text("- dataset: {id: allenai/ai2_arc, task_id: ARC-Easy}\n"
                                                            "  value: 0.5\n")
    (folder / ".hfprune-owner").write_text("x")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x").write_text("x")
    (folder / "config.json").write_text("{}")
    with FakeHub() as hub:
        env = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_write", HF_HUB_DISABLE_XET="1",
                   HF_HUB_OFFLINE="0")
        code = ("import sys; from pathlib import Path; from hfprune.hub import upload_model_folder; "
                "upload_model_folder(Path(sys.argv[1]), 'tester/m', token='hf_write', private=False)")
        run = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env,
                             timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        files = set(dict(hub.state.repos["tester/m"].commits[-1][1]))
    assert ".eval_results/arc_easy.yaml" in files and "config.json" in files
    assert not any(name.startswith((".hfprune", ".cache")) for name in files)


def test_card_formats_and_wording():
    from hfprune.publish.card import format_delta, layer_map_svg, publishable_recipe
    from hfprune.plan import Plan

    assert format_delta("acc", 0.5, 0.4312) == "-6.88 pt"
    assert format_delta("word_perplexity", 20.0, 25.0) == "+25.0%"
    assert format_delta("word_perplexity", 20.0, 5.2e6) == "+25,999,900.0%"
    svg = layer_map_svg(Plan.build(3, skip_attention=[1]))
    width = int(svg.split('width="')[1].split('"')[0])
    assert width >= 44 + 6 * len("layer map: 3 source layers, 3 kept")
    recipe = {"source": "/home/me/models/base", "prune": {"data": "/home/me/calib.jsonl"},
              "recover": {"method": "partial", "dataset": "/home/me/heal.jsonl", "lora_r": 8, "last_k": 3},
              "eval": {"include_path": None}, "push": {}}
    out = publishable_recipe(recipe)
    assert out["source"] == "base" and out["prune"]["data"] == "calib.jsonl"
    assert out["recover"]["dataset"] == "heal.jsonl" and "lora_r" not in out["recover"]
    assert "/home/me" not in json.dumps(out)


def test_the_card_cites_the_papers_behind_what_ran_each_once():
    from hfprune.plan import Plan
    from hfprune.publish.card import cited

    seed = cited(Plan.build(6, drop_layers=[4, 5], metric="reverse-order"), False, "partial")
    assert len(seed) == 2 and "arXiv:2411.15558" in seed[0] and "lm-evaluation-harness" in seed[1]
    skips = cited(Plan.build(6, drop_layers=[3], skip_mlp=[1], metric="finercut"), True, "lora")
    assert [c.split(":")[0] for c in skips[:3]] == ["FinerCut", "ReplaceMe", "LoRA"] and len(skips) == 4
    assert len(cited(Plan.build(6, drop_layers=[2]), False, None)) == 2  # no metric recorded: the seed paper's order
