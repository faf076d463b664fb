"""What a published folder tells the Hub: licence fields, lineage, dataset ids in the model-index, notices."""

from huggingface_hub import ModelCard

from hfprune.api import prune
from hfprune.evaluation.card import _task_dataset, required_notices
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
