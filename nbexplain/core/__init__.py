"""nbexplain.core — the algorithms, in plain torch (no widget imports, ever).

Each area below adds its public names to ``__all__``; :mod:`nbexplain` re-exports all of them.
"""

from ._base.capturing import CONV_MODES, Captured, StaleCaptureError, activations, capture, to_features
from ._base.hygiene import ModelSnapshot, preserved
from ._base.layer_select import LAYER_KINDS, LayerList, list_layers
from ._base.layouts import LAYOUTS
from ._base.model_inputs import Inputs

__all__ = ["CONV_MODES", "Captured", "LAYER_KINDS", "LAYOUTS", "LayerList", "Inputs", "StaleCaptureError", "activations",
           "capture", "list_layers", "ModelSnapshot", "preserved", "to_features"]

# --- saturation & δ projection ---
from ._base.moments import RunningMoments
from .feature_space.tracking import EpochRecord, SaturationTracker, intrinsic_dimension, layer_statistics, saturation
from .feature_space.delta_projection import DeltaCurveResult, DeltaProjection, delta_curve, projected_outputs
from .feature_space.probes import probe_accuracy

__all__ += ["RunningMoments", "SaturationTracker", "intrinsic_dimension", "layer_statistics", "saturation"]
__all__ += ["DeltaCurveResult", "DeltaProjection", "EpochRecord", "delta_curve", "projected_outputs", "probe_accuracy"]

# --- representation similarity ---
from .similarity.metrics import CCAResult, CKAResult, PWCCAResult, SVCCAResult, cca, cka, pwcca, svcca
from .similarity.grids import SimilarityGridResult, model_similarity, similarity_grid
from .similarity.streaming import StreamingSimilarity

__all__ += ["cca", "svcca", "pwcca", "cka", "CCAResult", "SVCCAResult", "PWCCAResult", "CKAResult"]
__all__ += ["StreamingSimilarity", "similarity_grid", "model_similarity", "SimilarityGridResult"]

# --- attribution: LRP ---
from .attribution.lrp import (
    COMPOSITES,
    AlphaBeta,
    Canonizer,
    Composite,
    Epsilon,
    ExplicitResidual,
    ExplicitScale,
    Flat,
    FunctionalOpsWarning,
    Gamma,
    Gradient,
    LRPResult,
    MergeBatchNorm,
    Norm,
    Pass,
    Rule,
    Scale,
    UnsupportedModuleError,
    WSquare,
    ZBox,
    ZeroRule,
    ZPlus,
    lrp,
    register_composite,
    unregister_composite,
)

__all__ += ["lrp", "LRPResult", "UnsupportedModuleError", "Rule", "ZeroRule", "Epsilon", "Gamma", "AlphaBeta"]
__all__ += ["ZPlus", "ZBox", "Flat", "WSquare", "Norm", "Pass", "Gradient", "Composite", "COMPOSITES"]
__all__ += ["register_composite", "unregister_composite"]
__all__ += ["Canonizer", "MergeBatchNorm", "ExplicitResidual", "ExplicitScale", "Scale", "FunctionalOpsWarning"]

# --- attribution: sensitivity, rate-distortion, continuity ---
from .attribution.continuity import ContinuityResult, continuity
from .attribution.rate_distortion import RDEResult, rde
from .attribution.gradients import gradient, gradient_x_input, integrated_gradients, smoothgrad
from ._base.targets import Target

__all__ += ["ContinuityResult", "RDEResult", "continuity", "gradient", "gradient_x_input",
            "integrated_gradients", "rde", "smoothgrad", "Target"]

# --- activation maximization (objectives: the nbexplain.objectives namespace) ---
from .actmax import ActivationMaximizationResult, TopActivatingResult, maximize_activation, top_activating

__all__ += ["ActivationMaximizationResult", "TopActivatingResult", "maximize_activation", "top_activating"]

# --- complexity decomposition ---
from .complexity.decompose import ComplexityResult, decompose_complexity
from .complexity.shapley import ShapleyResult, shapley_values

__all__ += ["ComplexityResult", "decompose_complexity", "ShapleyResult", "shapley_values"]
