"""simpool-bench: evaluate attention-based pooling by the published protocols."""

__version__ = "0.1.0"
