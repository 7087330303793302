"""Activation maximization: objectives, optimisation, top-activating examples, image parameterisations and
robustness transforms.

- ``objectives.py``: :class:`Objective` and its constructors (``neuron``, ``channel``, ``class_logit``,
  ``direction``, ``diversity``).
- ``units.py``: unit arguments and :func:`layer_units` (every unit of a layer, what ``unit=None`` means).
- ``runner.py``: forward passes with the objective's layers captured, probing, the model's output as a layer.
- ``optimize.py``: :func:`maximize_activation`, in phases (arguments, objective, gradient ascent, result).
- ``top.py``: :func:`top_activating`.
- ``feed.py``: the other inputs of a model with several, held fixed.
- ``image_param.py``, ``transforms.py``: image parameterisations and robustness transforms.
"""

from .objectives import Objective, channel, class_logit, direction, diversity, neuron
from .optimize import ActivationMaximizationResult, maximize_activation
from .top import TopActivatingResult, top_activating
from .units import layer_units

__all__ = [
    "ActivationMaximizationResult",
    "Objective",
    "TopActivatingResult",
    "channel",
    "class_logit",
    "direction",
    "diversity",
    "layer_units",
    "maximize_activation",
    "neuron",
    "top_activating",
]
