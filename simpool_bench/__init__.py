"""simpool-bench: evaluate attention-based pooling by the published protocols."""

__version__ = "0.1.0"


def __getattr__(name: str):  # ``simpool_bench.api`` without an import of its own, loaded on first use
    if name == "api":
        import importlib

        return importlib.import_module(".api", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
