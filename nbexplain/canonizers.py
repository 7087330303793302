"""Canonizers: reversible rewrites that put a model into a form LRP rules apply to (``nx.canonizers``).

:func:`nbexplain.lrp` and :func:`nbexplain.lrp_rules` take them as ``canonizers=[...]`` (``"auto"``: the first
three below). Each acts only while the explained model runs and leaves it exactly as found (the mathematics in
:mod:`nbexplain.core.attribution.lrp.canonizers`):

- :class:`Canonizer` — the base class (write your own by subclassing it; :meth:`~Canonizer.apply` is a context
  manager that changes the model and always undoes it).
- :class:`MergeBatchNorm` — folds each batch norm into the Linear/Conv whose output it normalises.
- :class:`ExplicitResidual` — routes the sum of two activations (a residual connection) through a module with
  a rule of its own (split in proportion to the summands).
- :class:`ExplicitScale` — routes products with a constant factor (a layer scale ``x * self.gamma``) through a
  :class:`Scale` module.
- :class:`Scale` — that module: a diagonal linear layer; map a rule to ``nx.canonizers.Scale`` in a composite
  to choose how layer scales pass relevance (default: ε).

Examples
--------
>>> import torch
>>> import nbexplain as nx
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).eval()
>>> res = nx.lrp(net, torch.rand(1, 1, 5, 5), lambda out: out.sum((1, 2, 3)),
...              canonizers=[nx.canonizers.MergeBatchNorm()])
>>> res.attribution.shape
torch.Size([1, 1, 5, 5])
"""

from __future__ import annotations

from .core.attribution.lrp.canonizers import Canonizer, ExplicitResidual, ExplicitScale, MergeBatchNorm
from .core.attribution.lrp.ops import Scale

__all__ = ["Canonizer", "MergeBatchNorm", "ExplicitResidual", "ExplicitScale", "Scale"]
