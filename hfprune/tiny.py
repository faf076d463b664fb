"""Tiny random checkpoints and a tokenizer trained on the fly: the offline stand-ins for demo, tests and bench.

Shapes are small but every architectural feature that surgery must respect is switched on: GQA, q/k norms,
attention biases, sliding-window layer patterns, post-norms, fused projections, MoE experts and routers.
"""

from __future__ import annotations

from pathlib import Path

TINY_VOCAB = 384

_COMMON = dict(vocab_size=TINY_VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=256,
               pad_token_id=0, bos_token_id=1, eos_token_id=2)

TINY_CONFIGS: dict[str, dict] = {
    "llama": dict(_COMMON, model_type="llama", tie_word_embeddings=False),
    "llama-tied": dict(_COMMON, model_type="llama", tie_word_embeddings=True),
    "mistral": dict(_COMMON, model_type="mistral", sliding_window=8),
    "qwen2": dict(_COMMON, model_type="qwen2", use_sliding_window=True, sliding_window=8, max_window_layers=3,
                  tie_word_embeddings=True),
    "qwen3": dict(_COMMON, model_type="qwen3", head_dim=16),
    "gemma2": dict(_COMMON, model_type="gemma2", head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                   attn_logit_softcapping=50.0, final_logit_softcapping=30.0),
    "gemma3_text": dict(_COMMON, model_type="gemma3_text", head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                        sliding_window_pattern=3),
    "phi3": dict(_COMMON, model_type="phi3", num_key_value_heads=4),
    "mixtral": dict(_COMMON, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(_COMMON, model_type="qwen2_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                      shared_expert_intermediate_size=64, decoder_sparse_step=2, mlp_only_layers=[4]),
    "olmo2": dict(_COMMON, model_type="olmo2", num_key_value_heads=4),
    "olmo3": dict(_COMMON, model_type="olmo3", num_key_value_heads=4, sliding_window=8),
    "qwen3_moe": dict(_COMMON, model_type="qwen3_moe", head_dim=16, num_experts=4, num_experts_per_tok=2,
                      moe_intermediate_size=32, decoder_sparse_step=1, mlp_only_layers=[0, 3]),
    "smollm3": dict(_COMMON, model_type="smollm3", no_rope_layer_interval=3),
    "granite": dict(_COMMON, model_type="granite", residual_multiplier=0.5, embedding_multiplier=2.0,
                    logits_scaling=4.0, attention_multiplier=0.2),
    "gemma": dict(_COMMON, model_type="gemma", head_dim=16),
    "cohere": dict(_COMMON, model_type="cohere", logit_scale=0.5),
    "phi": dict(_COMMON, model_type="phi", num_key_value_heads=4, partial_rotary_factor=0.5),
    "gpt_neox": dict(_COMMON, model_type="gpt_neox", num_key_value_heads=4, rotary_pct=0.5),
    "gpt_neox-sequential": dict(_COMMON, model_type="gpt_neox", num_key_value_heads=4, use_parallel_residual=False),
    "deepseek_v3": dict(_COMMON, model_type="deepseek_v3", num_key_value_heads=4, n_routed_experts=4,
                        num_experts_per_tok=2, first_k_dense_replace=2, moe_intermediate_size=32, q_lora_rank=32,
                        kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, n_group=1,
                        topk_group=1, num_nextn_predict_layers=0),
    "ernie4_5": dict(_COMMON, model_type="ernie4_5", head_dim=16),
    "helium": dict(_COMMON, model_type="helium", head_dim=16),
    "seed_oss": dict(_COMMON, model_type="seed_oss", head_dim=16),
    "arcee": dict(_COMMON, model_type="arcee"),
    "starcoder2": dict(_COMMON, model_type="starcoder2", sliding_window=8),
    "stablelm": dict(_COMMON, model_type="stablelm", qk_layernorm=True),
    "stablelm-parallel": dict(_COMMON, model_type="stablelm", use_parallel_residual=True),
    "internlm3": dict(_COMMON, model_type="internlm3", head_dim=16),
    "ministral": dict(_COMMON, model_type="ministral", head_dim=16, sliding_window=8,
                      layer_types=["sliding_attention", "full_attention"] * 3),
    "gpt_oss": dict(_COMMON, model_type="gpt_oss", head_dim=16, num_local_experts=4, num_experts_per_tok=2,
                    sliding_window=8),
    "glm4": dict(_COMMON, model_type="glm4", head_dim=16),
    "glm4_moe": dict(_COMMON, model_type="glm4_moe", head_dim=16, n_routed_experts=4, num_experts_per_tok=2,
                     n_shared_experts=1, moe_intermediate_size=32, first_k_dense_replace=2, n_group=1,
                     topk_group=1),
    "exaone4": dict(_COMMON, model_type="exaone4", head_dim=16, sliding_window=8, sliding_window_pattern=3),
    "cohere2": dict(_COMMON, model_type="cohere2", head_dim=16, sliding_window=8, sliding_window_pattern=3),
    "apertus": dict(_COMMON, model_type="apertus", head_dim=16),
    "qwen3_next": dict(_COMMON, model_type="qwen3_next", head_dim=16, linear_num_value_heads=2,
                       linear_num_key_heads=2, linear_key_head_dim=8, linear_value_head_dim=8,
                       linear_conv_kernel_dim=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                       shared_expert_intermediate_size=32, full_attention_interval=3),
    "qwen3_5_text": dict(_COMMON, model_type="qwen3_5_text", head_dim=16, linear_num_value_heads=2,
                         linear_num_key_heads=2, linear_key_head_dim=8, linear_value_head_dim=8,
                         linear_conv_kernel_dim=4, full_attention_interval=3),
    "falcon_h1": dict(_COMMON, model_type="falcon_h1", head_dim=16, mamba_d_ssm=64, mamba_n_heads=4,
                      mamba_d_head=16, mamba_d_state=8, mamba_n_groups=1, mamba_chunk_size=8, mamba_d_conv=4),
    "llama4_text": dict(_COMMON, model_type="llama4_text", head_dim=16, num_local_experts=4, num_experts_per_tok=1,
                        intermediate_size=64, intermediate_size_mlp=128, interleave_moe_layer_step=2,
                        attention_chunk_size=8, no_rope_layer_interval=3),
    # multimodal wrapper: a Gemma 3 decoder nested under text_config, with a one-layer vision tower
    "gemma3": dict(model_type="gemma3", mm_tokens_per_image=4, image_token_index=5, boi_token_index=6,
                   eoi_token_index=7,
                   text_config=dict(_COMMON, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                                    sliding_window_pattern=3),
                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, image_size=28, patch_size=14)),
}

DEMO_TEXT = (
    "Pruning removes decoder layers from a language model. The last layers of a deep network often change the "
    "hidden state least, so dropping them costs little accuracy, and a short fine-tuning heals most of the rest. "
    "Attention blocks and feed-forward blocks can also be removed one at a time. A pruned checkpoint must compute "
    "exactly the network that was intended: the same logits as the original with the removed blocks bypassed. "
    "The quick brown fox jumps over the lazy dog. Below is an instruction that describes a task. Write a response "
    "that appropriately completes the request. What is the capital of France? The capital of France is Paris. "
)


def tiny_config(model_type: str, num_layers: int = 6, **overrides):
    """A transformers config for a tiny model of `model_type` (a key of TINY_CONFIGS)."""
    from transformers import AutoConfig

    spec = dict(TINY_CONFIGS[model_type])
    kind = spec.pop("model_type")
    if "text_config" in spec:
        spec["text_config"] = dict(spec["text_config"], num_hidden_layers=num_layers, **overrides)
        return AutoConfig.for_model(kind, **spec)
    spec.update(overrides)
    return AutoConfig.for_model(kind, num_hidden_layers=num_layers, **spec)


def build_tiny_model(model_type: str = "llama", num_layers: int = 6, seed: int = 0, **overrides):
    """A randomly initialised tiny causal LM (fp32, eval mode). Weights are perturbed so norms are not all ones."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type, num_layers, **overrides), dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def train_tokenizer(folder: str | Path | None = None, vocab_size: int = TINY_VOCAB, text: str = DEMO_TEXT):
    """Train a byte-level BPE tokenizer on `text` and return it (saved to `folder` when given)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|bos|>", "<|eos|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>",
                                   eos_token="<|eos|>")
    fast.chat_template = (
        "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
    )
    if folder is not None:
        fast.save_pretrained(str(folder))
    return fast


def train_sentencepiece(folder: str | Path, vocab_size: int = 300, text: str = DEMO_TEXT) -> Path:
    """Write a SentencePiece `tokenizer.model` trained on `text` into `folder` (ids 0-2: unk, bos, eos): a
    tokenizer that llama.cpp's converter reads without knowing the model (byte-level BPE needs a known hash)."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text.split(". ") * 5), model_writer=buf,
                                   vocab_size=vocab_size, model_type="bpe", hard_vocab_limit=False, unk_id=0,
                                   bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    path = Path(folder) / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    return path


def build_tiny_checkpoint(folder: str | Path, model_type: str = "llama", num_layers: int = 6, seed: int = 0,
                          tokenizer: bool = True, max_shard_size: str | None = None, **overrides) -> Path:
    """Save a tiny random model (and a trained tokenizer) to `folder`, ready to prune; return the folder."""
    folder = Path(folder)
    model = build_tiny_model(model_type, num_layers, seed, **overrides)
    tok = train_tokenizer(folder) if tokenizer else None
    if tok is not None:
        target = model.config.get_text_config()
        target.pad_token_id, target.bos_token_id, target.eos_token_id = tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(folder), **kwargs)
    return folder
