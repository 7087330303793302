"""nbexplain.core — the algorithms, in plain torch (no widget imports, ever).

Each area below adds its public names to ``__all__``; :mod:`nbexplain` re-exports all of them.
"""

from .capturing import CONV_MODES, Captured, activations, capture, to_features
from .hygiene import preserved
from .layer_select import LAYER_KINDS, layers

__all__ = ["CONV_MODES", "Captured", "LAYER_KINDS", "activations", "capture", "layers", "preserved", "to_features"]

# --- saturation & δ projection (issue 3) ---

# --- representation similarity (issue 4) ---

# --- attribution: LRP (issue 5) ---

# --- attribution: sensitivity, rate-distortion, continuity (issue 5) ---

# --- activation maximization (issue 6) ---
from .actmax import (
    ActivationMaximization,
    Objective,
    TopActivating,
    channel,
    class_logit,
    direction,
    diversity,
    maximize_activation,
    neuron,
    top_activating,
)

__all__ += ["ActivationMaximization", "Objective", "TopActivating", "channel", "class_logit", "direction",
            "diversity", "maximize_activation", "neuron", "top_activating"]

# --- complexity decomposition (issue 7) ---
