"""LRP rules: how one layer hands the relevance of its outputs to its inputs (``nx.rules``).

A :class:`~nbexplain.Composite` maps rules to layers (by type or name); :func:`nbexplain.lrp` and
:func:`nbexplain.lrp_rules` apply them. The rules (the mathematics of each in
:mod:`nbexplain.core.attribution.lrp.rules`):

- :class:`Rule` — the base class of every rule (write your own by subclassing it).
- :class:`Epsilon` — LRP-ε: the proportional split, stabilised by ε (dense layers; ε → 0 is LRP-0).
- :class:`ZeroRule` — LRP-0, the proportional split without a stabiliser (outputs with z = 0 pass none).
- :class:`Gamma` — LRP-γ: positive contributions boosted by γ (convolutions in lower layers).
- :class:`AlphaBeta` — LRP-αβ: positive and negative contributions weighted α and β (α − β = 1).
- :class:`ZPlus` — LRP-z⁺: positive contributions only (αβ with α = 1, β = 0).
- :class:`ZBox` — LRP-zᴮ: for the first layer of inputs bounded by ``low`` and ``high`` (pixels).
- :class:`Flat` — relevance spread evenly over each output's receptive field (the first layer).
- :class:`WSquare` — LRP-w²: by squared weights (the first layer of unbounded inputs).
- :class:`Norm` — the proportional split with a tiny stabiliser (average pooling, residual sums).
- :class:`Pass` — relevance passes unchanged (element-wise activations).
- :class:`Gradient` — gradient × input through a module LRP has no rule for (LSTM, attention, a custom block).
- :class:`NormIdentity` — AttnLRP's rule for LayerNorm / RMSNorm / GroupNorm (the normaliser as a constant).

Examples
--------
>>> import torch
>>> import nbexplain as nx
>>> comp = nx.Composite({torch.nn.Conv2d: nx.rules.ZPlus(), torch.nn.Linear: nx.rules.Epsilon(0.1)},
...                     first=nx.rules.Flat())
>>> comp.rule_for("fc", torch.nn.Linear(3, 2))
Epsilon(epsilon=0.1, bias=True)
"""

from __future__ import annotations

from .core.attribution.lrp.rules import (
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

__all__ = ["Rule", "ZeroRule", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat", "WSquare", "Norm", "Pass",
           "Gradient", "NormIdentity"]
