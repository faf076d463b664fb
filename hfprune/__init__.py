"""hfprune: remove decoder layers (or their attention/FFN sub-blocks) from causal LMs and publish the result.

Heavy libraries (torch, transformers, lm-eval) are imported inside the functions that need them, so importing
hfprune and running `hfprune --help` stay instant.
"""

__version__ = "0.1.0"


def cache_root():
    """Where scores and dense baselines are cached: $HFPRUNE_CACHE, else $XDG_CACHE_HOME/hfprune, else ~/.cache."""
    import os
    from pathlib import Path

    if os.environ.get("HFPRUNE_CACHE"):
        return Path(os.environ["HFPRUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hfprune"
