"""Layer-streaming scoring: the same scores and choices as in-memory scoring, in memory that holds one layer."""

import json
import subprocess
import sys
import textwrap

import pytest

from hfprune.cli import main
from hfprune.scoring.score import score
from hfprune.settings import ScoreOptions
from hfprune.tiny import build_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    made = {}

    def get(arch, **kw):
        if arch not in made:
            made[arch] = build_tiny_checkpoint(root / arch, arch, num_layers=6, **kw)
        return made[arch]

    return get


def scores_of(src, calib_text, stream, **kw):
    opts = ScoreOptions(data=str(calib_text), samples=5, seq_len=24, batch_size=2, stream=stream, **kw)
    return score(src, opts, cache_dir=None).scores


def assert_same(a, b):
    assert a["plan"] == b["plan"]
    assert a["layer_by_layer"] is False and b["layer_by_layer"] is True
    if "steps" in a:
        for x, y in zip(a["steps"], b["steps"]):
            assert x["removed"] == y["removed"]
            assert [c["distance"] for c in x["candidates"]] == pytest.approx(
                [c["distance"] for c in y["candidates"]], rel=1e-6, abs=1e-12)
    else:
        for x, y in zip(a.get("rounds", [a]), b.get("rounds", [b])):
            assert [s is None for s in x["scores"]] == [s is None for s in y["scores"]]
            assert [s for s in x["scores"] if s is not None] == pytest.approx(
                [s for s in y["scores"] if s is not None], rel=1e-6)


# llama: plain; gemma3_text: sliding-window and local/global RoPE per layer, post-norms; qwen2: tied head;
# gpt_oss: FFN returns a pair; falcon_h1: the model's loop reads layer(...)[0]; gemma2: logit soft-capping;
# gemma3: the multimodal wrapper (text layers under model.language_model)
CASES = [
    ("llama", "block-influence", 2, {}),
    ("llama", "ppl", 2, {"iterative_step": 1}),
    ("llama", "angular", 2, {}),
    ("llama", "finercut", 3, {}),
    ("gemma3_text", "ppl", 2, {}),
    ("gemma3_text", "finercut", 3, {}),
    ("qwen2", "block-influence", 2, {"iterative_step": 1}),
    ("gpt_oss", "finercut", 2, {}),
    ("falcon_h1", "ppl", 2, {}),
    ("gemma2", "angular", 3, {}),
    ("llama", "taylor", 2, {"iterative_step": 1}),
    ("gemma3_text", "taylor", 2, {}),
    ("falcon_h1", "taylor", 2, {}),
    # transformers converts these while loading (per-expert weights fused, VLM prefixes renamed): each layer goes
    # through its own weight conversion
    ("qwen2_moe", "ppl", 2, {}),
    ("deepseek_v3", "finercut", 2, {}),
    ("mixtral", "taylor", 2, {}),
    ("gemma3", "block-influence", 2, {}),
]


@pytest.mark.parametrize("arch,metric,remove,kw", CASES, ids=[f"{a}-{m}" for a, m, _, _ in CASES])
def test_layer_by_layer_chooses_what_in_memory_scoring_chooses(arch, metric, remove, kw, checkpoints, calib_text):
    src = checkpoints(arch)
    in_memory = scores_of(src, calib_text, "off", metric=metric, remove=remove, **kw)
    streamed = scores_of(src, calib_text, "on", metric=metric, remove=remove, **kw)
    assert_same(in_memory, streamed)


def test_a_small_stream_budget_splits_the_candidates_into_passes(checkpoints, calib_text, monkeypatch):
    src = checkpoints("llama")
    whole = scores_of(src, calib_text, "on", metric="finercut", remove=2)
    monkeypatch.setenv("HFPRUNE_STREAM_BUDGET", "1")  # one candidate stream per pass over the layers
    split = scores_of(src, calib_text, "on", metric="finercut", remove=2)
    assert split["steps"] == whole["steps"]


@pytest.mark.parametrize("args,needle", [
    (["--metric", "ppl", "--remove", "1", "--stream", "on", "--device-map", "auto"], "exclude each other"),
])
def test_what_cannot_stream_is_one_line(args, needle, checkpoints, calib_text, capsys):
    code = main(["score", str(checkpoints("llama")), "--data", str(calib_text), "--samples", "2", "--seq-len", "16", *args])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


_PEAK = textwrap.dedent("""
    import json, sys, warnings
    warnings.filterwarnings("ignore")
    from hfprune.scoring.score import score
    from hfprune.settings import ScoreOptions

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    small, big, calib_text, stream = sys.argv[1:5]
    opts = ScoreOptions(metric="block-influence", remove=2, data=calib_text, samples=4, seq_len=32, batch_size=2,
                        stream=stream)
    score(small, opts, cache_dir=None)  # every import and the tokenizer loaded: what remains is the model's share
    base = status("VmRSS:")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak
    rec = score(big, opts, cache_dir=None).scores
    print(json.dumps({"extra": status("VmHWM:") - base, "plan": rec["plan"], "streamed": rec["layer_by_layer"]}))
""")


def _peak(small, big, calib_text, stream):
    out = subprocess.run([sys.executable, "-c", _PEAK, str(small), str(big), str(calib_text), stream],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_layer_by_layer_scoring_holds_one_layer_not_the_model(tmp_path, checkpoints, calib_text):
    """Peak resident memory above the process's baseline: in memory ~ the weights; streamed ~ one layer.
    (bench/bench_score_memory.py runs the same under a cgroup memory cap at half the weights.)"""
    big = build_tiny_checkpoint(tmp_path / "big", "llama", num_layers=16, hidden_size=384, intermediate_size=1536,
                                num_attention_heads=6, num_key_value_heads=2)
    weights = sum(f.stat().st_size for f in big.glob("*.safetensors"))  # ~150 MB, one layer ~9 MB
    small = checkpoints("llama")
    whole = _peak(small, big, calib_text, "off")
    layered = _peak(small, big, calib_text, "on")
    assert whole["extra"] > 0.9 * weights
    assert layered["extra"] < 0.3 * weights
    assert layered["plan"] == whole["plan"] and layered["streamed"] and not whole["streamed"]


def test_auto_streams_when_the_model_does_not_fit(checkpoints, calib_text, monkeypatch, capsys):
    from hfprune.scoring import streamed_model
    from hfprune.scoring.drivers import should_stream as _should_stream
    from hfprune.disk.checkpoint import Checkpoint

    ckpt = Checkpoint.open(checkpoints("llama"))
    opts = ScoreOptions(metric="ppl", remove=1, data=str(calib_text))
    assert not _should_stream(opts, ckpt, progress=True)  # a tiny model fits
    from hfprune.scoring.streamed_model import in_memory_bytes

    need = in_memory_bytes(ckpt, 4)
    monkeypatch.setattr(streamed_model, "available_memory", lambda: need // 2)
    assert _should_stream(opts, ckpt, progress=True)
    assert "scoring it layer by layer" in capsys.readouterr().err
    assert not _should_stream(opts.model_copy(update={"stream": "off"}), ckpt, progress=False)
    assert not _should_stream(opts.model_copy(update={"device_map": "auto"}), ckpt, progress=False)
