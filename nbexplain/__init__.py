"""nbexplain — see inside PyTorch models from a notebook.

The public API is re-exported here; see DESIGN.md for the contract.
"""

from __future__ import annotations

from .core import activations, capture, layers

__version__ = "0.1.0"

__all__ = ["__version__", "activations", "capture", "layers", "widgets"]


def __getattr__(name: str):  # lazy: importing the core must not import ipywidgets
    if name == "widgets":
        import importlib

        return importlib.import_module(".widgets", __name__)
    raise AttributeError(f"module 'nbexplain' has no attribute {name!r}")
