"""Per-architecture layer layout, kept as data.

Each entry says where the decoder layers live in the checkpoint and which submodules make up a layer's attention
sub-block and its feed-forward (FFN/MoE) sub-block. Surgery uses it to delete and renumber tensors; the shipped
modeling code uses the in-memory names to bypass skipped sub-blocks. A model type that is not here is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CheckpointError


@dataclass(frozen=True)
class Architecture:
    """Layout of one family of decoder-only causal LMs."""

    family: str
    # Tensor-name prefixes that precede the layer index, in the order they are tried.
    layer_prefixes: tuple[str, ...] = ("model.layers.",)
    # In-memory submodule names (also the on-disk names unless aliased below). The first of each is the
    # attention (resp. FFN) module itself, the rest are norms that only it uses.
    attention: tuple[str, ...] = ("self_attn", "input_layernorm")
    mlp: tuple[str, ...] = ("mlp", "post_attention_layernorm")
    # Norms that feed both sub-blocks (parallel attention/FFN layers): kept unless the whole layer goes.
    shared: tuple[str, ...] = ()
    # attention and FFN read the same input and their outputs are summed (no residual between them)
    parallel: bool = False
    # On-disk submodule names that differ from the in-memory ones (legacy checkpoints).
    disk_aliases: dict[str, str] = field(default_factory=dict)
    # Key of the nested decoder config, for multimodal wrappers; None when the decoder config is the top level.
    text_config_key: str | None = None
    # The module whose input is the residual stream between the attention and FFN sub-blocks (None when the two
    # are parallel and there is no such stream).
    mlp_entry: str | None = "post_attention_layernorm"
    # Class-name endings of the checkpoints this layout accepts.
    heads: tuple[str, ...] = ("ForCausalLM",)
    # Per-layer lists that transformers' config class computes when config.json omits them. Surgery asks
    # transformers for them (and only then imports it) so that they can be written out before slicing.
    derived_lists: tuple[str, ...] = ()

    @property
    def attention_module(self) -> str:
        return self.attention[0]

    @property
    def mlp_module(self) -> str:
        return self.mlp[0]

    def sub_block_of(self, submodule: str) -> str | None:
        """'attention', 'mlp', 'shared' or None for a layer-relative tensor name like 'self_attn.q_proj.weight'."""
        head = submodule.split(".", 1)[0]
        head = self.disk_aliases.get(head, head)
        if head in self.attention:
            return "attention"
        if head in self.mlp:
            return "mlp"
        if head in self.shared:
            return "shared"
        return None


_LLAMA = Architecture("llama")
_DERIVED = Architecture("qwen2", derived_lists=("layer_types",))
_GEMMA = Architecture(
    "gemma2",
    derived_lists=("layer_types",),
    attention=("self_attn", "input_layernorm", "post_attention_layernorm"),
    mlp=("mlp", "pre_feedforward_layernorm", "post_feedforward_layernorm"),
    mlp_entry="pre_feedforward_layernorm",
)
_OLMO2 = Architecture(
    "olmo2", attention=("self_attn", "post_attention_layernorm"), mlp=("mlp", "post_feedforward_layernorm"),
    mlp_entry="mlp",
)
_OLMO3 = Architecture(
    "olmo3", attention=("self_attn", "post_attention_layernorm"), mlp=("mlp", "post_feedforward_layernorm"),
    mlp_entry="mlp", derived_lists=("layer_types",),
)
_MIXTRAL = Architecture("mixtral", disk_aliases={"block_sparse_moe": "mlp"})

# Multimodal wrapper: the decoder's layers and config are nested (text_config); only whole layers can be dropped.
_GEMMA3_VLM = Architecture(
    "gemma3",
    layer_prefixes=("language_model.model.layers.", "model.language_model.layers."),
    attention=_GEMMA.attention, mlp=_GEMMA.mlp, mlp_entry=_GEMMA.mlp_entry,
    text_config_key="text_config", heads=("ForConditionalGeneration", "ForCausalLM"),
    derived_lists=("layer_types",),
)

# Parallel blocks: x + attn(ln(x)) + mlp(ln(x)) with one shared input norm.
_PARALLEL = Architecture("cohere", attention=("self_attn",), mlp=("mlp",), shared=("input_layernorm",),
                         parallel=True, mlp_entry=None)
# GPT-NeoX (Pythia): its own names; parallel residual by default (use_parallel_residual), sequential otherwise,
# both exact with zeroed sub-blocks. Separate norms per sub-block.
_GPT_NEOX = Architecture("gpt_neox", layer_prefixes=("gpt_neox.layers.",), attention=("attention", "input_layernorm"),
                         mlp=("mlp", "post_attention_layernorm"), parallel=True)

ARCHITECTURES: dict[str, Architecture] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _DERIVED,
    "qwen3": _DERIVED,
    "phi3": _LLAMA,
    "smollm3": Architecture("smollm3", derived_lists=("layer_types", "no_rope_layers")),
    "granite": _LLAMA,
    "qwen2_moe": _DERIVED,
    "qwen3_moe": _LLAMA,
    "mixtral": _MIXTRAL,
    "gemma": _LLAMA,
    "gemma2": _GEMMA,
    "gemma3_text": _GEMMA,
    "gemma3": _GEMMA3_VLM,
    "olmo2": _OLMO2,
    "olmo3": _OLMO3,
    "cohere": _PARALLEL,
    "phi": _PARALLEL,
    "gpt_neox": _GPT_NEOX,
    "deepseek_v3": _LLAMA,
}

# Model types that hfprune's own skip-map checkpoints carry: "hfprune_<base model type>".
SKIP_MODEL_TYPE_PREFIX = "hfprune_"


def base_model_type(model_type: str) -> str:
    """The transformers model type behind a (possibly hfprune skip-map) model type."""
    if model_type.startswith(SKIP_MODEL_TYPE_PREFIX):
        return model_type[len(SKIP_MODEL_TYPE_PREFIX):]
    return model_type


def architecture_for(config: dict) -> Architecture:
    """The layout for a parsed config.json, or a CheckpointError naming what is supported."""
    if config.get("is_encoder_decoder"):
        raise CheckpointError(
            f"model_type {config.get('model_type')!r} is an encoder-decoder model; hfprune prunes decoder-only "
            "causal LMs (supported: " + ", ".join(sorted(ARCHITECTURES)) + ")"
        )
    model_type = base_model_type(str(config.get("model_type", "")))
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise CheckpointError(
            f"model_type {config.get('model_type')!r} is not a decoder-only causal LM that hfprune knows; "
            "supported: " + ", ".join(sorted(ARCHITECTURES))
        )
    archs = config.get("architectures") or []
    if archs and not any(a.endswith(arch.heads) for a in archs):
        raise CheckpointError(
            f"architectures {archs} has no {' or '.join('*' + h for h in arch.heads)} head; "
            "hfprune prunes causal LM checkpoints only"
        )
    return arch
