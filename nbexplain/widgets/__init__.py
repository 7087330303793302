"""nbexplain.widgets — anywidget views of core results (no algorithms here).

Views are imported lazily so that ``import nbexplain.widgets`` stays cheap and one view's optional
dependency (bqplot) is only imported when that view is used.
"""

from __future__ import annotations

import importlib
from typing import Any

#: View class → module inside this package.
_VIEWS = {
    "Heatmap": "heatmap",
    "DeltaExplorer": "delta_explorer",
    "SaturationDashboard": "saturation_dashboard",
    "SimilarityGrid": "similarity_grid",
    "ExplanationExplorer": "explanation_explorer",
    "FeatureGallery": "feature_gallery",
    "ComplexityViewer": "complexity_viewer",
    "AlignedDirections": "aligned_directions",
    "ClassSensitivity": "class_sensitivity",
    "RelevanceFlow": "relevance_flow",
    "TokenHeatmap": "token_heatmap",
    "Playground": "playground",
}

__all__ = list(_VIEWS)


def __getattr__(name: str) -> Any:
    if name in _VIEWS:
        module = importlib.import_module(f".{_VIEWS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'nbexplain.widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_VIEWS))
