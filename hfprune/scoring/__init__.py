"""Choosing what to remove: calibration data, forwards with blocks bypassed, the seed papers' metrics, the plan."""
