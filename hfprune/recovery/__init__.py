"""Healing a pruned checkpoint: instruction data, partial-layer / LoRA / QLoRA training, distillation."""
