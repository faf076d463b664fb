"""hfprune: remove decoder layers (or their attention/FFN sub-blocks) from causal LMs and publish the result.

Heavy libraries (torch, transformers, lm-eval) are imported inside the functions that need them, so importing
hfprune and running `hfprune --help` stay instant.
"""

__version__ = "0.1.0"
