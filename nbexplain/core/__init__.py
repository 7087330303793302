"""nbexplain.core — the algorithms, in plain torch (no widget imports, ever)."""

from .capture import CONV_MODES, Captured, activations, capture, to_features
from .hygiene import preserved
from .layers import LAYER_KINDS, layers

__all__ = [
    "CONV_MODES",
    "Captured",
    "LAYER_KINDS",
    "activations",
    "capture",
    "layers",
    "preserved",
    "to_features",
]
