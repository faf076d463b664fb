"""Checkpoints on disk, without torch: safetensors headers and tensors, weight maps, the architecture tables,
config.json edits, the surgery itself and hfprune's own modeling file for skip maps."""
