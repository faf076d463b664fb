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
from .model_types import MODEL_TYPES, SKIP_MODEL_TYPE_PREFIX

MODELING_FILE = "modeling_hfprune.py"
SKIP_CONFIG_CLASS = "HfprunePrunedConfig"
SKIP_MODEL_CLASS = "HfprunePrunedForCausalLM"
AUTO_MAP = {"AutoConfig": f"{MODELING_FILE[:-3]}.{SKIP_CONFIG_CLASS}",
            "AutoModelForCausalLM": f"{MODELING_FILE[:-3]}.{SKIP_MODEL_CLASS}"}
_TEMPLATE = Path(__file__).resolve().parents[1] / "resources" / f"{MODELING_FILE}.in"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _identifier(value: str, what: str, pattern=_IDENTIFIER) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise CheckpointError(f"{what} {value!r} is not a valid Python name; refusing to write it into code")
    return value


@lru_cache(maxsize=None)
def modeling_code(base_model_type: str) -> str:
    """The exact text of the modeling file hfprune ships for skip-map checkpoints of `base_model_type`."""
    known = MODEL_TYPES.get(base_model_type)
    if known is None or known.layout.text_config_key or known.classes is None:
        raise CheckpointError(f"attention/FFN skips are not supported for model type {base_model_type!r}; "
                              "drop whole layers instead")
    arch = known.layout
    folder, config_class, model_class = known.classes
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
        if base in MODEL_TYPES:
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
