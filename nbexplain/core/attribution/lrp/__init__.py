"""Layer-wise relevance propagation (LRP): rules, composites, canonizers and the :func:`lrp` entry point.

Rules are modified gradients (:mod:`.rules`), composites assign them to layers (:mod:`.composites`),
canonizers put a model into a form the rules apply to and always undo it (:mod:`.canonizers`: batch norms
merged into the layer before them, residual sums and layer scales as modules with rules of their own), and
:func:`lrp` (:mod:`.entry`) runs one forward and one backward pass with the rules hooked in
(:mod:`.session`, :mod:`.engine`). :func:`lrp_rules` (:mod:`.context`) puts the same rules on a model for a
``with`` block, so that any gradient-based method computes with them. With
``strict=False``, functional operations outside modules get rules consistent with gradient × input
(:mod:`.functional`; non-linear ones are named in a :class:`FunctionalOpsWarning`).

Layers with rules of their own: Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d (every rule of convolutions, with the
transposed operator), batch norm (merged into the layer before it, else an affine layer), average pooling, layer
scales (element-wise products with a constant factor, :class:`Scale`) and residual sums (:class:`Sum`);
element-wise activations pass relevance on; max pooling, reshapes and dropout follow the gradient. Anything
else (LSTM, GRU, attention, LayerNorm, custom blocks) can be mapped to :class:`Gradient`.

The public spellings are ``nx.rules.<Rule>`` (:mod:`nbexplain.rules`) and ``nx.canonizers.<Canonizer>``
(:mod:`nbexplain.canonizers`).
"""

from .canonizers import Canonizer, ExplicitResidual, ExplicitScale, MergeBatchNorm, default_canonizers
from .composites import (
    COMPOSITES,
    Composite,
    Scale,
    Sum,
    get_composite,
    register_composite,
    unregister_composite,
)
from .context import lrp_rules
from .engine import LRPResult, UnsupportedModuleError
from .entry import lrp
from .functional import FunctionalOpsWarning
from .rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    Norm,
    NormIdentity,
    Pass,
    Rule,
    WSquare,
    ZBox,
    ZeroRule,
    ZPlus,
)

__all__ = [
    "lrp",
    "lrp_rules",
    "LRPResult",
    "UnsupportedModuleError",
    "FunctionalOpsWarning",
    "Rule",
    "ZeroRule",
    "Epsilon",
    "Gamma",
    "AlphaBeta",
    "ZPlus",
    "ZBox",
    "Flat",
    "WSquare",
    "Norm",
    "Pass",
    "Gradient",
    "NormIdentity",
    "Composite",
    "COMPOSITES",
    "get_composite",
    "register_composite",
    "unregister_composite",
    "Sum",
    "Scale",
    "Canonizer",
    "MergeBatchNorm",
    "ExplicitResidual",
    "ExplicitScale",
    "default_canonizers",
]
