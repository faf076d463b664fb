"""Everything hfprune knows about one model type, in one record: its layer layout, transformers' class names for
the skip-map modeling file, what llama.cpp assumes about its layers, and the tiny config tests and demo build.

A model type that is not here is refused. Exceptions that a table cannot say (StableLM's parallel-residual configs)
are code in `architecture_for`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CheckpointError
from .architectures import (
    APERTUS,
    COHERE2,
    DERIVED,
    EXAONE4,
    FALCON_H1,
    GEMMA,
    GEMMA3_VLM,
    GLM4,
    GPT_NEOX,
    HYBRID_LINEAR,
    LLAMA,
    LLAMA4,
    MIXTRAL,
    OLMO2,
    OLMO3,
    PARALLEL,
    STABLELM_PARALLEL,
    Architecture,
)


@dataclass(frozen=True)
class LlamaCppPeriod:
    """A per-layer property that llama.cpp derives from a fixed period instead of reading it per layer."""

    config_list: str  # the config's per-layer list that transformers reads ("layer_types", "no_rope_layers")
    marker: object  # the list value that marks the periodic layer
    what: str  # "full-attention", "no-RoPE"
    period_keys: tuple[str, ...]  # config keys that give the period
    default: int  # the period when none of them is set (and the one llama.cpp's code fixes when in_code)
    in_code: bool  # fixed in llama.cpp's code, so no GGUF metadata can move it (else a per-layer array can)


@dataclass(frozen=True)
class ModelType:
    name: str
    layout: Architecture
    # transformers' models/ folder, config class and causal LM class, for the skip-map modeling file (None: that
    # file is not offered for this type); kept as data so that a skip-map prune does not import transformers, and
    # checked against transformers' own registries by a test
    classes: tuple[str, str, str] | None = None
    # how llama.cpp applies a sliding window: "per-layer" (its loader reads a per-layer array, which
    # export-gguf writes), "all-layers", or None (not at all)
    llama_cpp_sliding: str | None = None
    llama_cpp_period: LlamaCppPeriod | None = None
    # tiny random configs for tests and the demo: variant name -> config values over tiny.TINY_SHAPE
    tiny: dict[str, dict] = field(default_factory=dict)


MODEL_TYPES: dict[str, ModelType] = {t.name: t for t in [
    ModelType("llama", LLAMA, classes=("llama", "LlamaConfig", "LlamaForCausalLM"),
              tiny={
                  "llama": dict(tie_word_embeddings=False),
                  "llama-tied": dict(tie_word_embeddings=True)}),
    ModelType("mistral", LLAMA, classes=("mistral", "MistralConfig", "MistralForCausalLM"),
              tiny={"mistral": dict(sliding_window=8)}),
    ModelType("qwen2", DERIVED, classes=("qwen2", "Qwen2Config", "Qwen2ForCausalLM"),
              tiny={"qwen2": dict(use_sliding_window=True, sliding_window=8, max_window_layers=3,
                              tie_word_embeddings=True)}),
    ModelType("qwen3", DERIVED, classes=("qwen3", "Qwen3Config", "Qwen3ForCausalLM"),
              tiny={"qwen3": dict(head_dim=16)}),
    ModelType("phi3", LLAMA, classes=("phi3", "Phi3Config", "Phi3ForCausalLM"), llama_cpp_sliding="all-layers",
              tiny={"phi3": dict(num_key_value_heads=4)}),
    ModelType("smollm3", Architecture("smollm3", derived_lists=("layer_types", "no_rope_layers")),
              classes=("smollm3", "SmolLM3Config", "SmolLM3ForCausalLM"),
              llama_cpp_period=LlamaCppPeriod("no_rope_layers", 0, "no-RoPE", ("no_rope_layer_interval",), 4,
                                              in_code=True),
              tiny={"smollm3": dict(no_rope_layer_interval=3)}),
    ModelType("granite", LLAMA, classes=("granite", "GraniteConfig", "GraniteForCausalLM"),
              tiny={"granite": dict(residual_multiplier=0.5, embedding_multiplier=2.0, logits_scaling=4.0,
                              attention_multiplier=0.2)}),
    ModelType("qwen2_moe", DERIVED, classes=("qwen2_moe", "Qwen2MoeConfig", "Qwen2MoeForCausalLM"),
              tiny={"qwen2_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                              shared_expert_intermediate_size=64, decoder_sparse_step=2, mlp_only_layers=[4])}),
    ModelType("qwen3_moe", LLAMA, classes=("qwen3_moe", "Qwen3MoeConfig", "Qwen3MoeForCausalLM"),
              tiny={"qwen3_moe": dict(head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                              decoder_sparse_step=1, mlp_only_layers=[0, 3])}),
    ModelType("mixtral", MIXTRAL, classes=("mixtral", "MixtralConfig", "MixtralForCausalLM"),
              tiny={"mixtral": dict(num_local_experts=4, num_experts_per_tok=2)}),
    ModelType("gemma", LLAMA, classes=("gemma", "GemmaConfig", "GemmaForCausalLM"),
              tiny={"gemma": dict(head_dim=16)}),
    ModelType("gemma2", GEMMA, classes=("gemma2", "Gemma2Config", "Gemma2ForCausalLM"), llama_cpp_sliding="per-layer",
              llama_cpp_period=LlamaCppPeriod("layer_types", "full_attention", "full-attention", (), 2,
                                              in_code=False),
              tiny={"gemma2": dict(head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                              attn_logit_softcapping=50.0, final_logit_softcapping=30.0)}),
    ModelType("gemma3_text", GEMMA, classes=("gemma3", "Gemma3TextConfig", "Gemma3ForCausalLM"),
              llama_cpp_sliding="per-layer",
              llama_cpp_period=LlamaCppPeriod("layer_types", "full_attention", "full-attention",
                                              ("sliding_window_pattern", "_sliding_window_pattern"), 6,
                                              in_code=False),
              tiny={"gemma3_text": dict(head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                              sliding_window_pattern=3)}),
    ModelType("gemma3", GEMMA3_VLM, llama_cpp_sliding="per-layer",
              llama_cpp_period=LlamaCppPeriod("layer_types", "full_attention", "full-attention",
                                              ("sliding_window_pattern", "_sliding_window_pattern"), 6,
                                              in_code=False),
              # multimodal wrapper: a Gemma 3 decoder nested under text_config, with a one-layer vision tower
              tiny={"gemma3": dict(mm_tokens_per_image=4, image_token_index=5, boi_token_index=6,
                                   eoi_token_index=7,
                                   text_config=dict(head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                                                    sliding_window_pattern=3),
                                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                      num_attention_heads=2, image_size=28, patch_size=14))}),
    ModelType("olmo2", OLMO2, classes=("olmo2", "Olmo2Config", "Olmo2ForCausalLM"),
              tiny={"olmo2": dict(num_key_value_heads=4)}),
    ModelType("olmo3", OLMO3, classes=("olmo3", "Olmo3Config", "Olmo3ForCausalLM"), llama_cpp_sliding="per-layer",
              tiny={"olmo3": dict(num_key_value_heads=4, sliding_window=8)}),
    ModelType("cohere", PARALLEL, classes=("cohere", "CohereConfig", "CohereForCausalLM"),
              tiny={"cohere": dict(logit_scale=0.5)}),
    ModelType("phi", PARALLEL, classes=("phi", "PhiConfig", "PhiForCausalLM"),
              tiny={"phi": dict(num_key_value_heads=4, partial_rotary_factor=0.5)}),
    ModelType("gpt_neox", GPT_NEOX, classes=("gpt_neox", "GPTNeoXConfig", "GPTNeoXForCausalLM"),
              tiny={
                  "gpt_neox": dict(num_key_value_heads=4, rotary_pct=0.5),
                  "gpt_neox-sequential": dict(num_key_value_heads=4, use_parallel_residual=False)}),
    ModelType("deepseek_v3", LLAMA, classes=("deepseek_v3", "DeepseekV3Config", "DeepseekV3ForCausalLM"),
              tiny={"deepseek_v3": dict(num_key_value_heads=4, n_routed_experts=4, num_experts_per_tok=2,
                              first_k_dense_replace=2, moe_intermediate_size=32, q_lora_rank=32, kv_lora_rank=16,
                              qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, n_group=1, topk_group=1,
                              num_nextn_predict_layers=0)}),
    ModelType("ernie4_5", LLAMA, classes=("ernie4_5", "Ernie4_5Config", "Ernie4_5ForCausalLM"),
              tiny={"ernie4_5": dict(head_dim=16)}),
    ModelType("helium", LLAMA, classes=("helium", "HeliumConfig", "HeliumForCausalLM"),
              tiny={"helium": dict(head_dim=16)}),
    ModelType("seed_oss", LLAMA, classes=("seed_oss", "SeedOssConfig", "SeedOssForCausalLM"),
              tiny={"seed_oss": dict(head_dim=16)}),
    ModelType("arcee", LLAMA, classes=("arcee", "ArceeConfig", "ArceeForCausalLM"),
              tiny={"arcee": dict()}),
    ModelType("starcoder2", LLAMA, classes=("starcoder2", "Starcoder2Config", "Starcoder2ForCausalLM"),
              tiny={"starcoder2": dict(sliding_window=8)}),
    ModelType("stablelm", LLAMA, classes=("stablelm", "StableLmConfig", "StableLmForCausalLM"),
              tiny={
                  "stablelm": dict(qk_layernorm=True),
                  "stablelm-parallel": dict(use_parallel_residual=True)}),
    ModelType("internlm3", Architecture("internlm3", no_skips="transformers has no InternLM3 model class to "
                                                                 "build the skip-map modeling file on"),
              tiny={"internlm3": dict(head_dim=16)}),
    ModelType("glm4_moe", LLAMA, classes=("glm4_moe", "Glm4MoeConfig", "Glm4MoeForCausalLM"),
              tiny={"glm4_moe": dict(head_dim=16, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
                              moe_intermediate_size=32, first_k_dense_replace=2, n_group=1, topk_group=1)}),
    ModelType("ministral", DERIVED, classes=("ministral", "MinistralConfig", "MinistralForCausalLM"),
              tiny={"ministral": dict(head_dim=16, sliding_window=8,
                              layer_types=["sliding_attention", "full_attention"] * 3)}),
    ModelType("gpt_oss", Architecture("gpt_oss", derived_lists=("layer_types",), mlp_returns_tuple=True),
              classes=("gpt_oss", "GptOssConfig", "GptOssForCausalLM"),
              llama_cpp_sliding="per-layer",
              tiny={"gpt_oss": dict(head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=8)}),
    ModelType("glm4", GLM4, classes=("glm4", "Glm4Config", "Glm4ForCausalLM"),
              tiny={"glm4": dict(head_dim=16)}),
    ModelType("exaone4", EXAONE4, classes=("exaone4", "Exaone4Config", "Exaone4ForCausalLM"),
              llama_cpp_sliding="per-layer",
              tiny={"exaone4": dict(head_dim=16, sliding_window=8, sliding_window_pattern=3)}),
    ModelType("cohere2", COHERE2, classes=("cohere2", "Cohere2Config", "Cohere2ForCausalLM"),
              llama_cpp_sliding="per-layer",
              llama_cpp_period=LlamaCppPeriod("layer_types", "full_attention", "full-attention",
                                              ("sliding_window_pattern",), 4, in_code=False),
              tiny={"cohere2": dict(head_dim=16, sliding_window=8, sliding_window_pattern=3)}),
    ModelType("apertus", APERTUS, classes=("apertus", "ApertusConfig", "ApertusForCausalLM"),
              tiny={"apertus": dict(head_dim=16)}),
    ModelType("qwen3_next", HYBRID_LINEAR, classes=("qwen3_next", "Qwen3NextConfig", "Qwen3NextForCausalLM"),
              tiny={"qwen3_next": dict(head_dim=16, linear_num_value_heads=2, linear_num_key_heads=2,
                              linear_key_head_dim=8, linear_value_head_dim=8, linear_conv_kernel_dim=4, num_experts=4,
                              num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
                              full_attention_interval=3)}),
    ModelType("qwen3_5_text", HYBRID_LINEAR, classes=("qwen3_5", "Qwen3_5TextConfig", "Qwen3_5ForCausalLM"),
              tiny={"qwen3_5_text": dict(head_dim=16, linear_num_value_heads=2, linear_num_key_heads=2,
                              linear_key_head_dim=8, linear_value_head_dim=8, linear_conv_kernel_dim=4,
                              full_attention_interval=3)}),
    ModelType("falcon_h1", FALCON_H1,
              tiny={"falcon_h1": dict(head_dim=16, mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=8,
                              mamba_n_groups=1, mamba_chunk_size=8, mamba_d_conv=4)}),
    ModelType("llama4_text", LLAMA4, classes=("llama4", "Llama4TextConfig", "Llama4ForCausalLM"),
              tiny={"llama4_text": dict(intermediate_size=64, head_dim=16, num_local_experts=4, num_experts_per_tok=1,
                              intermediate_size_mlp=128, interleave_moe_layer_step=2, attention_chunk_size=8,
                              no_rope_layer_interval=3)}),
]}

ARCHITECTURES: dict[str, Architecture] = {name: t.layout for name, t in MODEL_TYPES.items()}


def llama_cpp_period(model_type: str) -> LlamaCppPeriod | None:
    known = MODEL_TYPES.get(model_type)
    return known.llama_cpp_period if known is not None else None


def llama_cpp_sliding(model_type: str) -> str | None:
    known = MODEL_TYPES.get(model_type)
    return known.llama_cpp_sliding if known is not None else None

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
        arch = STABLELM_PARALLEL
    archs = config.get("architectures") or []
    if archs and not any(a.endswith(arch.heads) for a in archs):
        raise CheckpointError(
            f"architectures {archs} has no {' or '.join('*' + h for h in arch.heads)} head; "
            "hfprune prunes causal LM checkpoints only"
        )
    return arch
