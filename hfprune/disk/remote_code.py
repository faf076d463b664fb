"""hfprune's own modeling code for skip-map checkpoints, and the one decision of when loading may run code.

The shipped `modeling_hfprune.py` is rendered from a template with values taken only from hfprune's tables and
transformers' own registries, keyed by the *base model type*; nothing from the checkpoint is pasted into it. So for
each supported base type there is exactly one file hfprune can write, and a folder is trusted without
`--trust-remote-code` only when its modeling file is byte-identical to that file, its `auto_map` names exactly
hfprune's two classes in it, and no other code file would be imported. The trust covers the model (and its
config) class only: tokenizers are never loaded with remote code unless the user passes --trust-remote-code.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from ..errors import CheckpointError
from .architectures import ARCHITECTURES, SKIP_MODEL_TYPE_PREFIX

MODELING_FILE = "modeling_hfprune.py"
SKIP_CONFIG_CLASS = "HfprunePrunedConfig"
SKIP_MODEL_CLASS = "HfprunePrunedForCausalLM"
AUTO_MAP = {"AutoConfig": f"{MODELING_FILE[:-3]}.{SKIP_CONFIG_CLASS}",
            "AutoModelForCausalLM": f"{MODELING_FILE[:-3]}.{SKIP_MODEL_CLASS}"}
_TEMPLATE = Path(__file__).resolve().parents[1] / "resources" / f"{MODELING_FILE}.in"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _identifier(value: str, what: str, pattern=_IDENTIFIER) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise CheckpointError(f"{what} {value!r} is not a valid Python name; refusing to write it into code")
    return value


# transformers' names for each text-only base type that can carry a skip map: (models/ folder, config class, causal
# LM class). Kept as data so that a skip-map prune does not import transformers (seconds and ~250 MB); a test
# checks every row against transformers' own registries.
CLASS_NAMES = {
    "cohere": ("cohere", "CohereConfig", "CohereForCausalLM"),
    "deepseek_v3": ("deepseek_v3", "DeepseekV3Config", "DeepseekV3ForCausalLM"),
    "gemma": ("gemma", "GemmaConfig", "GemmaForCausalLM"),
    "gemma2": ("gemma2", "Gemma2Config", "Gemma2ForCausalLM"),
    "gemma3_text": ("gemma3", "Gemma3TextConfig", "Gemma3ForCausalLM"),
    "gpt_neox": ("gpt_neox", "GPTNeoXConfig", "GPTNeoXForCausalLM"),
    "granite": ("granite", "GraniteConfig", "GraniteForCausalLM"),
    "llama": ("llama", "LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("mistral", "MistralConfig", "MistralForCausalLM"),
    "mixtral": ("mixtral", "MixtralConfig", "MixtralForCausalLM"),
    "olmo2": ("olmo2", "Olmo2Config", "Olmo2ForCausalLM"),
    "olmo3": ("olmo3", "Olmo3Config", "Olmo3ForCausalLM"),
    "phi": ("phi", "PhiConfig", "PhiForCausalLM"),
    "phi3": ("phi3", "Phi3Config", "Phi3ForCausalLM"),
    "qwen2": ("qwen2", "Qwen2Config", "Qwen2ForCausalLM"),
    "qwen2_moe": ("qwen2_moe", "Qwen2MoeConfig", "Qwen2MoeForCausalLM"),
    "qwen3": ("qwen3", "Qwen3Config", "Qwen3ForCausalLM"),
    "qwen3_moe": ("qwen3_moe", "Qwen3MoeConfig", "Qwen3MoeForCausalLM"),
    "smollm3": ("smollm3", "SmolLM3Config", "SmolLM3ForCausalLM"),
    "ernie4_5": ("ernie4_5", "Ernie4_5Config", "Ernie4_5ForCausalLM"),
    "helium": ("helium", "HeliumConfig", "HeliumForCausalLM"),
    "seed_oss": ("seed_oss", "SeedOssConfig", "SeedOssForCausalLM"),
    "arcee": ("arcee", "ArceeConfig", "ArceeForCausalLM"),
    "starcoder2": ("starcoder2", "Starcoder2Config", "Starcoder2ForCausalLM"),
    "stablelm": ("stablelm", "StableLmConfig", "StableLmForCausalLM"),
    "ministral": ("ministral", "MinistralConfig", "MinistralForCausalLM"),
    "gpt_oss": ("gpt_oss", "GptOssConfig", "GptOssForCausalLM"),
    "glm4": ("glm4", "Glm4Config", "Glm4ForCausalLM"),
    "glm4_moe": ("glm4_moe", "Glm4MoeConfig", "Glm4MoeForCausalLM"),
    "exaone4": ("exaone4", "Exaone4Config", "Exaone4ForCausalLM"),
    "cohere2": ("cohere2", "Cohere2Config", "Cohere2ForCausalLM"),
    "apertus": ("apertus", "ApertusConfig", "ApertusForCausalLM"),
    "qwen3_next": ("qwen3_next", "Qwen3NextConfig", "Qwen3NextForCausalLM"),
    "qwen3_5_text": ("qwen3_5", "Qwen3_5TextConfig", "Qwen3_5ForCausalLM"),
    "llama4_text": ("llama4", "Llama4TextConfig", "Llama4ForCausalLM"),
}


@lru_cache(maxsize=None)
def modeling_code(base_model_type: str) -> str:
    """The exact text of the modeling file hfprune ships for skip-map checkpoints of `base_model_type`."""
    arch = ARCHITECTURES.get(base_model_type)
    if arch is None or arch.text_config_key or base_model_type not in CLASS_NAMES:
        raise CheckpointError(f"attention/FFN skips are not supported for model type {base_model_type!r}; "
                              "drop whole layers instead")
    folder, config_class, model_class = CLASS_NAMES[base_model_type]
    _identifier(folder, "module")
    for name in (*arch.attention, *arch.mlp):
        _identifier(name, "module name")
    return _TEMPLATE.read_text().format(
        base_model_type=_identifier(base_model_type, "model type"),
        config_module=f"transformers.models.{folder}.configuration_{folder}",
        config_class=_identifier(config_class, "config class"),
        model_module=f"transformers.models.{folder}.modeling_{folder}",
        model_class=_identifier(model_class, "model class"),
        model_type=SKIP_MODEL_TYPE_PREFIX + base_model_type,
        attention_modules=tuple(arch.attention),
        mlp_modules=tuple(arch.mlp),
        mlp_returns_tuple=bool(arch.mlp_returns_tuple),
    )


def skip_base(model_type: str) -> str | None:
    """'hfprune_llama' -> 'llama' for a known base type; None for anything else."""
    if isinstance(model_type, str) and model_type.startswith(SKIP_MODEL_TYPE_PREFIX):
        base = model_type[len(SKIP_MODEL_TYPE_PREFIX):]
        if base in ARCHITECTURES:
            return base
    return None


def write_modeling_file(folder: Path, base_model_type: str) -> None:
    """Ship the modeling code that makes a skip-map checkpoint compute exactly the pruned network."""
    (Path(folder) / MODELING_FILE).write_text(modeling_code(base_model_type))


def is_own_modeling_code(folder: str | Path) -> bool:
    """True when loading `folder`'s model with trust_remote_code runs nothing but hfprune's own modeling file."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
        shipped = (folder / MODELING_FILE).read_bytes()
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or config.get("auto_map") != AUTO_MAP:
        return False
    base = skip_base(config.get("model_type"))
    if base is None:
        return False
    try:
        return shipped == modeling_code(base).encode()
    except CheckpointError:
        return False


def model_trust(folder: str | Path, explicit: bool) -> bool:
    """trust_remote_code for loading the *model* of `folder`: the user's explicit choice, or hfprune's own file."""
    return bool(explicit) or is_own_modeling_code(folder)


def tokenizer_trust(explicit: bool) -> bool:
    """trust_remote_code for loading a tokenizer: only ever the user's explicit choice."""
    return bool(explicit)


def _custom_code_refused(e: Exception) -> bool:
    return isinstance(e, ValueError) and "trust_remote_code=True" in str(e)


def load_model(folder: str | Path, trust_remote_code: bool = False, **kwargs):
    """AutoModelForCausalLM.from_pretrained with hfprune's trust rule; refused custom code is one clear error."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a local load takes seconds; its bar would break one-line errors
    if Path(folder).is_dir():
        from .checkpoint import read_config

        read_config(Path(folder))  # a broken config (unknown dtype, not JSON) is one line, not a torch traceback
    try:
        return AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=model_trust(folder, trust_remote_code),
                                                    **kwargs)
    except ValueError as e:
        if not _custom_code_refused(e):
            raise
        raise CheckpointError(f"{folder} ships its own modeling code, which hfprune runs only with "
                              "--trust-remote-code (read it first)") from None


def load_tokenizer(folder: str | Path, trust_remote_code: bool = False):
    """AutoTokenizer.from_pretrained; a tokenizer's own code runs only with the user's explicit trust."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=tokenizer_trust(trust_remote_code))
    except ValueError as e:
        if not _custom_code_refused(e):
            raise
        raise CheckpointError(f"the tokenizer of {folder} needs its own code, which hfprune runs only with "
                              "--trust-remote-code (read it first)") from None
