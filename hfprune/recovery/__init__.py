"""Healing a pruned checkpoint: instruction data, partial-layer / LoRA / QLoRA training, distillation."""

from ..scoring.metrics import SEED_PAPER

# The paper each healing method follows, cited by the model card (distillation variants cite their method's).
METHOD_CITATIONS = {
    "partial": SEED_PAPER,  # partial-layer fine-tuning is the seed paper's healing
    "lora": "LoRA: Low-Rank Adaptation of Large Language Models (Hu et al., 2021), arXiv:2106.09685",
    "qlora": "QLoRA: Efficient Finetuning of Quantized LLMs (Dettmers et al., 2023), arXiv:2305.14314",
}
