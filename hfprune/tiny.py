"""Tiny random checkpoints and a tokenizer trained on the fly: the offline stand-ins for demo, tests and bench.

Shapes are small but every architectural feature that surgery must respect is switched on: GQA, q/k norms,
attention biases, sliding-window layer patterns, post-norms, fused projections, MoE experts and routers.
"""

from __future__ import annotations

from pathlib import Path

from .disk.model_types import MODEL_TYPES

TINY_VOCAB = 384

# the shape every tiny config starts from; each model type's own values are in disk/model_types.py
TINY_SHAPE = dict(vocab_size=TINY_VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _tiny_configs() -> dict[str, dict]:
    """Variant name -> full config values (model_type included) of every model type's tiny configs."""
    out = {}
    for name, known in MODEL_TYPES.items():
        for variant, values in known.tiny.items():
            if "text_config" in values:  # a multimodal wrapper: the tiny shape is the nested decoder's
                out[variant] = dict(values, model_type=name, text_config=dict(TINY_SHAPE, **values["text_config"]))
            else:
                out[variant] = dict(TINY_SHAPE, model_type=name, **values)
    return out


TINY_CONFIGS: dict[str, dict] = _tiny_configs()

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
