"""nbexplain.core — the algorithms, in plain torch (no widget imports, ever).

Each area below adds its public names to ``__all__``; :mod:`nbexplain` re-exports all of them. The imports are
sectioned on purpose, each area's beside the names it adds (hence the ``# noqa: E402`` on the later sections).
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
from .feature_space.delta_projection import DeltaCurveResult, DeltaProjection, delta_curve, projected_outputs
from .feature_space.probes import probe_accuracy
from .feature_space.tracking import (
    EpochRecord,
    SaturationTracker,
    intrinsic_dimension,
    layer_statistics,
    saturation,
)
from .feature_space.widths import WidthSuggestionResult, suggest_widths

__all__ += ["RunningMoments", "SaturationTracker", "intrinsic_dimension", "layer_statistics", "saturation"]
__all__ += ["DeltaCurveResult", "DeltaProjection", "EpochRecord", "delta_curve", "projected_outputs", "probe_accuracy"]
__all__ += ["suggest_widths", "WidthSuggestionResult"]

# --- representation similarity ---
from .similarity.class_sensitivity import ClassSensitivityResult, class_sensitivity  # noqa: E402 (sectioned)
from .similarity.compression import CompressionResult, svcca_compression  # noqa: E402 (sectioned)
from .similarity.dft import DFTCCAResult, StreamingDFTCCA, dft_cca  # noqa: E402 (sectioned)
from .similarity.directions import SVCCADirectionsResult, svcca_directions  # noqa: E402 (sectioned)
from .similarity.grids import SimilarityGridResult, model_similarity, similarity_grid  # noqa: E402 (sectioned)
from .similarity.metrics import CCAResult, CKAResult, PWCCAResult, SVCCAResult, cca, cka, pwcca, svcca  # noqa: E402 (sectioned)
from .similarity.streaming import StreamingSimilarity  # noqa: E402 (sectioned)

__all__ += ["cca", "svcca", "pwcca", "cka", "CCAResult", "SVCCAResult", "PWCCAResult", "CKAResult"]
__all__ += ["StreamingSimilarity", "similarity_grid", "model_similarity", "SimilarityGridResult"]
__all__ += ["dft_cca", "DFTCCAResult", "StreamingDFTCCA", "svcca_directions", "SVCCADirectionsResult"]
__all__ += ["class_sensitivity", "ClassSensitivityResult", "svcca_compression", "CompressionResult"]

# --- attribution: LRP (rules in nx.rules, canonizers in nx.canonizers: nbexplain/rules.py, canonizers.py) ---
from .attribution.lrp import (  # noqa: E402 (sectioned)
    COMPOSITES,
    Composite,
    FunctionalOpsWarning,
    LRPResult,
    UnsupportedModuleError,
    lrp,
    lrp_rules,
    register_composite,
    unregister_composite,
)

__all__ += ["lrp", "lrp_rules", "LRPResult", "UnsupportedModuleError", "Composite", "COMPOSITES"]
from .attribution.lrp.flow import RelevanceFlowResult, relevance_flow  # noqa: E402 (sectioned)

__all__ += ["relevance_flow", "RelevanceFlowResult"]
__all__ += ["register_composite", "unregister_composite", "FunctionalOpsWarning"]

# --- attribution: sensitivity, rate-distortion, continuity ---
from ._base.targets import Target  # noqa: E402 (sectioned)
from .attribution.continuity import ContinuityResult, continuity  # noqa: E402 (sectioned)
from .attribution.gradients import gradient, gradient_x_input, integrated_gradients  # noqa: E402 (sectioned)
from .attribution.noise import noise_tunnel, smoothgrad  # noqa: E402 (sectioned)
from .attribution.rate_distortion import RDEResult, rde  # noqa: E402 (sectioned)
from .attribution.result import AttributionResult, IntegratedGradientsResult  # noqa: E402 (sectioned)
from .attribution.rollout import AttentionRolloutResult, attention_rollout  # noqa: E402 (sectioned)

__all__ += ["AttributionResult", "ContinuityResult", "IntegratedGradientsResult", "RDEResult", "continuity",
            "gradient", "gradient_x_input", "integrated_gradients", "noise_tunnel", "rde", "smoothgrad", "Target"]
__all__ += ["attention_rollout", "AttentionRolloutResult"]

# --- activation maximization (objectives: the nbexplain.objectives namespace) ---
from .actmax import ActivationMaximizationResult, TopActivatingResult, maximize_activation, top_activating  # noqa: E402 (sectioned)

__all__ += ["ActivationMaximizationResult", "TopActivatingResult", "maximize_activation", "top_activating"]

# --- complexity decomposition ---
from .complexity.decompose import ComplexityResult, decompose_complexity  # noqa: E402 (sectioned)
from .complexity.shapley import ShapleyResult, shapley_values  # noqa: E402 (sectioned)

__all__ += ["ComplexityResult", "decompose_complexity", "ShapleyResult", "shapley_values"]

# --- playground (toy data, small MLPs, everything drawn on the plane; the widget is nx.widgets.Playground) ---
from .playground import (  # noqa: E402 (sectioned)
    EpochMetrics,
    FeatureMap,
    PlaygroundTrainer,
    RelevanceFieldResult,
    ToyDataset,
    as_toy_dataset,
    decision_surface,
    hidden_layers,
    layer_similarity,
    neuron_maps,
    plane_grid,
    playground_network,
    projected_surface,
    projected_surfaces,
    relevance_field,
    toy_dataset,
)

__all__ += ["toy_dataset", "ToyDataset", "as_toy_dataset", "playground_network", "FeatureMap", "hidden_layers",
            "PlaygroundTrainer", "EpochMetrics", "decision_surface", "neuron_maps", "relevance_field",
            "RelevanceFieldResult", "projected_surface", "projected_surfaces", "plane_grid", "layer_similarity"]
