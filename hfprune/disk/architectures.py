"""Layer layouts, kept as data: where the decoder layers live in a checkpoint and which submodules make up a
layer's attention sub-block and its feed-forward (FFN/MoE) sub-block.

Surgery uses a layout to delete and renumber tensors; scoring and the shipped modeling code use its in-memory names
to bypass skipped sub-blocks. Which model type has which layout is in model_types.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field



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


LLAMA = Architecture("llama")
DERIVED = Architecture("qwen2", derived_lists=("layer_types",))
GEMMA = Architecture(
    "gemma2",
    derived_lists=("layer_types",),
    attention=("self_attn", "input_layernorm", "post_attention_layernorm"),
    mlp=("mlp", "pre_feedforward_layernorm", "post_feedforward_layernorm"),
    mlp_entry="pre_feedforward_layernorm",
)
OLMO2 = Architecture(
    "olmo2", attention=("self_attn", "post_attention_layernorm"), mlp=("mlp", "post_feedforward_layernorm"),
    mlp_entry="mlp",
)
OLMO3 = Architecture(
    "olmo3", attention=("self_attn", "post_attention_layernorm"), mlp=("mlp", "post_feedforward_layernorm"),
    mlp_entry="mlp", derived_lists=("layer_types",),
)
MIXTRAL = Architecture("mixtral", disk_aliases={"block_sparse_moe": "mlp"})
# GLM-4: sandwich norms, the attention and FFN outputs are normed before the residual add.
GLM4 = Architecture("glm4", attention=("self_attn", "input_layernorm", "post_self_attn_layernorm"),
                     mlp=("mlp", "post_attention_layernorm", "post_mlp_layernorm"))
# EXAONE 4: post-norm only (as OLMo 2), with a sliding-window layer pattern.
EXAONE4 = Architecture("exaone4", attention=("self_attn", "post_attention_layernorm"),
                        mlp=("mlp", "post_feedforward_layernorm"), mlp_entry="mlp", derived_lists=("layer_types",))
# Apertus: Llama-shaped with its own norm names.
APERTUS = Architecture("apertus", attention=("self_attn", "attention_layernorm"),
                        mlp=("mlp", "feedforward_layernorm"), mlp_entry="feedforward_layernorm")
# Hybrid linear/full attention (Qwen3-Next, Qwen3.5): a layer has either `linear_attn` (a gated DeltaNet with its
# own recurrent cache) or `self_attn`, as layer_types says.
HYBRID_LINEAR = Architecture(
    "qwen3_next", attention=("self_attn", "linear_attn", "input_layernorm"), derived_lists=("layer_types",),
    keep_one_of="full_attention",
    no_attention_skip="its layers mix linear (recurrent) and full attention, and a skipped linear-attention block "
                      "has no exact cache stand-in yet",
)
# Falcon-H1: a Mamba-2 mixer and attention run in parallel on the same normed input and are summed; the FFN is
# sequential after them.
FALCON_H1 = Architecture(
    "falcon_h1", attention=("self_attn", "mamba", "input_layernorm"), mlp=("feed_forward", "pre_ff_layernorm"),
    mlp_entry="pre_ff_layernorm",
    no_attention_skip="its mixer is attention and a Mamba-2 block in parallel; skipping one of them is not a "
                      "sub-block removal of the seed papers",
    no_skips="the skip-map modeling file does not restore Falcon-H1's non-persistent muP buffers yet (its outputs "
             "were NaN in hfprune's exactness test)",
    layer_returns_tuple=True,
)
# Llama 4 text: MoE (`feed_forward`) on some layers, chunked attention and NoPE layers by pattern.
LLAMA4 = Architecture("llama4_text", mlp=("feed_forward", "post_attention_layernorm"),
                       derived_lists=("layer_types", "no_rope_layers", "moe_layers"))

# Multimodal wrapper: the decoder's layers and config are nested (text_config); only whole layers can be dropped.
GEMMA3_VLM = Architecture(
    "gemma3",
    layer_prefixes=("language_model.model.layers.", "model.language_model.layers."),
    attention=GEMMA.attention, mlp=GEMMA.mlp, mlp_entry=GEMMA.mlp_entry,
    text_config_key="text_config", heads=("ForConditionalGeneration", "ForCausalLM"),
    derived_lists=("layer_types",),
)

# Parallel blocks: x + attn(ln(x)) + mlp(ln(x)) with one shared input norm.
PARALLEL = Architecture("cohere", attention=("self_attn",), mlp=("mlp",), shared=("input_layernorm",),
                         parallel=True, mlp_entry=None)
COHERE2 = Architecture("cohere2", attention=("self_attn",), mlp=("mlp",), shared=("input_layernorm",),
                        parallel=True, mlp_entry=None, derived_lists=("layer_types",))
# StableLM with use_parallel_residual: x + attn(ln(x)) + mlp(ln(x)), no post-attention norm.
STABLELM_PARALLEL = Architecture(
    "stablelm", attention=("self_attn",), mlp=("mlp",), shared=("input_layernorm",), parallel=True, mlp_entry=None,
    no_skips="the skip-map modeling file for stablelm is written for its sequential layout, and this config sets "
             "use_parallel_residual",
)
# GPT-NeoX (Pythia): its own names; parallel residual by default (use_parallel_residual), sequential otherwise,
# both exact with zeroed sub-blocks. Separate norms per sub-block.
GPT_NEOX = Architecture("gpt_neox", layer_prefixes=("gpt_neox.layers.",), attention=("attention", "input_layernorm"),
                         mlp=("mlp", "post_attention_layernorm"), parallel=True)
