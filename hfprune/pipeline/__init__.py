"""`hfprune push`'s pipeline (run.py: the order; stages.py: one function per stage; runner.py: resume and timing),
and what runs on top of it: iterative pruning with healing between rounds, and sweeps of recipes."""

from .naming import name_stem
from .run import Pipeline, PipelineResult

__all__ = ["Pipeline", "PipelineResult", "name_stem"]
