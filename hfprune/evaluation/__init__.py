"""Measuring dense and pruned models with lm-evaluation-harness, and the model card that reports it."""
