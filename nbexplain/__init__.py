"""nbexplain — see inside PyTorch models from a notebook.

Everything public in :mod:`nbexplain.core` is re-exported here (``import nbexplain as nx``), plus the
namespaces ``nx.rules`` (LRP rules), ``nx.canonizers`` and ``nx.objectives`` (activation-maximization objectives), and the ``widgets``, ``data``, ``zoo`` and
``architectures`` submodules. See docs/architecture.md for the contract.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import canonizers, rules
from . import core as _core
from .core import *  # noqa: F403 - the public API is core's __all__

__version__ = "0.1.0"

# the lazily imported submodules are named as strings: they are attributes only once imported (see __getattr__)
__all__ = ["__version__", "objectives", "rules", "canonizers", "widgets", "data", "zoo", "architectures", *_core.__all__]  # noqa: F405

_LAZY = ("objectives", "widgets", "data", "zoo", "architectures")

#: Public names that were renamed (one vocabulary across the API): the old name fails with the new spelling.
_RENAMED: dict[str, str] = {
    "layers": "list_layers",
    "Objective": "objectives.Objective",
    "channel": "objectives.channel",
    "neuron": "objectives.neuron",
    "class_logit": "objectives.class_logit",
    "direction": "objectives.direction",
    "diversity": "objectives.diversity",
    "ActivationMaximization": "ActivationMaximizationResult",
    "TopActivating": "TopActivatingResult",
    "ComplexityDecomposition": "ComplexityResult",
    "ShapleyValues": "ShapleyResult",
    "DeltaCurve": "DeltaCurveResult",
    # LRP rules and canonizers live in their namespaces (nx.Gradient, a rule, read like nx.gradient)
    **{n: f"rules.{n}" for n in rules.__all__},
    **{n: f"canonizers.{n}" for n in canonizers.__all__},
}


def __getattr__(name: str) -> Any:
    # Lazy: `import nbexplain` must not import ipywidgets (core works in plain scripts), nor sklearn.
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name in _RENAMED:
        raise AttributeError(
            f"nx.{name} was renamed: use nx.{_RENAMED[name]} (nbexplain uses one vocabulary across the API; "
            "see docs/architecture.md)."
        )
    raise AttributeError(f"module 'nbexplain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
