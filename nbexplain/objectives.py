"""Activation-maximization objectives: ``nx.objectives.channel("conv2", 3) + 0.1 * nx.objectives.diversity("conv1")``.

An objective maps a batch's layer outputs to one value per image; pass it to
:func:`nbexplain.maximize_activation` as ``objective=``. Objectives add and scale, and a batch can optimise a
different unit per image.

- :class:`Objective`: the base class, with ``+``, ``-`` and scalar ``*``.
- :func:`neuron`, :func:`channel`, :func:`class_logit`, :func:`direction`: what an image is scored by.
- :func:`diversity`: Olah et al.'s term pushing the images of one unit apart (add it with a weight).

Examples
--------
>>> import torch, nbexplain as nx
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
>>> objective = nx.objectives.channel("2", [0, 1]) + 0.1 * nx.objectives.diversity("1")
>>> res = nx.maximize_activation(net, None, None, (1, 12, 12), (0, 1), objective=objective, steps=5,
...                              progress=False)
>>> res.images.shape
torch.Size([2, 1, 12, 12])
"""

from __future__ import annotations

from .core.actmax.objectives import Objective, channel, class_logit, direction, diversity, neuron

__all__ = ["Objective", "channel", "class_logit", "direction", "diversity", "neuron"]
