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
    # Why attention sub-blocks cannot be skipped exactly (None: they can). Whole layers and FFN skips still work.
    no_attention_skip: str | None = None
    # A layer type (layer_types value) that a pruned model must keep at least one layer of: transformers' hybrid
    # cache reads the sequence length from a full-attention layer.
    keep_one_of: str | None = None
    # The FFN module returns (hidden_states, router scores) rather than hidden_states (GPT-OSS).
    mlp_returns_tuple: bool = False
    # Why no sub-block can be skipped with the shipped modeling file (None: they can).
    no_skips: str | None = None
    # The model's loop reads `layer(...)[0]` (Falcon-H1): a bypassed layer must return a tuple too.
    layer_returns_tuple: bool = False

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
# GLM-4: sandwich norms, the attention and FFN outputs are normed before the residual add.
_GLM4 = Architecture("glm4", attention=("self_attn", "input_layernorm", "post_self_attn_layernorm"),
                     mlp=("mlp", "post_attention_layernorm", "post_mlp_layernorm"))
# EXAONE 4: post-norm only (as OLMo 2), with a sliding-window layer pattern.
_EXAONE4 = Architecture("exaone4", attention=("self_attn", "post_attention_layernorm"),
                        mlp=("mlp", "post_feedforward_layernorm"), mlp_entry="mlp", derived_lists=("layer_types",))
# Apertus: Llama-shaped with its own norm names.
_APERTUS = Architecture("apertus", attention=("self_attn", "attention_layernorm"),
                        mlp=("mlp", "feedforward_layernorm"), mlp_entry="feedforward_layernorm")
# Hybrid linear/full attention (Qwen3-Next, Qwen3.5): a layer has either `linear_attn` (a gated DeltaNet with its
# own recurrent cache) or `self_attn`, as layer_types says.
_HYBRID_LINEAR = Architecture(
    "qwen3_next", attention=("self_attn", "linear_attn", "input_layernorm"), derived_lists=("layer_types",),
    keep_one_of="full_attention",
    no_attention_skip="its layers mix linear (recurrent) and full attention, and a skipped linear-attention block "
                      "has no exact cache stand-in yet",
)
# Falcon-H1: a Mamba-2 mixer and attention run in parallel on the same normed input and are summed; the FFN is
# sequential after them.
_FALCON_H1 = Architecture(
    "falcon_h1", attention=("self_attn", "mamba", "input_layernorm"), mlp=("feed_forward", "pre_ff_layernorm"),
    mlp_entry="pre_ff_layernorm",
    no_attention_skip="its mixer is attention and a Mamba-2 block in parallel; skipping one of them is not a "
                      "sub-block removal of the seed papers",
    no_skips="the skip-map modeling file does not restore Falcon-H1's non-persistent muP buffers yet (its outputs "
             "were NaN in hfprune's exactness test)",
    layer_returns_tuple=True,
)
# Llama 4 text: MoE (`feed_forward`) on some layers, chunked attention and NoPE layers by pattern.
_LLAMA4 = Architecture("llama4_text", mlp=("feed_forward", "post_attention_layernorm"),
                       derived_lists=("layer_types", "no_rope_layers", "moe_layers"))

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
_COHERE2 = Architecture("cohere2", attention=("self_attn",), mlp=("mlp",), shared=("input_layernorm",),
                        parallel=True, mlp_entry=None, derived_lists=("layer_types",))
# StableLM with use_parallel_residual: x + attn(ln(x)) + mlp(ln(x)), no post-attention norm.
_STABLELM_PARALLEL = Architecture(
    "stablelm", attention=("self_attn",), mlp=("mlp",), shared=("input_layernorm",), parallel=True, mlp_entry=None,
    no_skips="the skip-map modeling file for stablelm is written for its sequential layout, and this config sets "
             "use_parallel_residual",
)
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
    # Llama-shaped (attention + input norm, FFN + post-attention norm), whatever their FFN holds
    "ernie4_5": _LLAMA,
    "helium": _LLAMA,
    "seed_oss": _LLAMA,
    "arcee": _LLAMA,
    "starcoder2": _LLAMA,
    "stablelm": _LLAMA,  # use_parallel_residual configs: _STABLELM_PARALLEL (see architecture_for)
    "internlm3": Architecture("internlm3", no_skips="transformers has no InternLM3 model class to build the skip-map "
                                                  "modeling file on"),
    "glm4_moe": _LLAMA,
    "ministral": _DERIVED,
    "gpt_oss": Architecture("gpt_oss", derived_lists=("layer_types",), mlp_returns_tuple=True),
    "glm4": _GLM4,
    "exaone4": _EXAONE4,
    "cohere2": _COHERE2,
    "apertus": _APERTUS,
    "qwen3_next": _HYBRID_LINEAR,
    "qwen3_5_text": _HYBRID_LINEAR,
    "falcon_h1": _FALCON_H1,
    "llama4_text": _LLAMA4,
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
            f"hfprune has no layer layout for model_type {config.get('model_type')!r} yet, so it cannot tell which "
            "tensors make up a layer's attention and FFN; supported: " + ", ".join(sorted(ARCHITECTURES))
        )
    if model_type == "stablelm" and config.get("use_parallel_residual"):
        arch = _STABLELM_PARALLEL
    archs = config.get("architectures") or []
    if archs and not any(a.endswith(arch.heads) for a in archs):
        raise CheckpointError(
            f"architectures {archs} has no {' or '.join('*' + h for h in arch.heads)} head; "
            "hfprune prunes causal LM checkpoints only"
        )
    return arch
