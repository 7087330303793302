"""One run's model over its plane: the model checked and the grids built once, for the many frames of a run.

A playground draws a frame many times a second — the decision surface, every neuron's map, the relevance field
and the predictions at the data points — always for the same model, plane and resolutions while a run lasts.
:class:`PlaneSampler` validates the model and builds each resolution's grid once; its methods give exactly what
:func:`~nbexplain.core.playground.plane.decision_surface`, :func:`~nbexplain.core.playground.plane.neuron_maps`
and :func:`~nbexplain.core.playground.relevance.relevance_field` give (tested), without redoing that work.
A new model, plane or resolution needs a new sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._base.validation import check_choice, check_model
from .network import hidden_layers
from .plane import (
    Extent,
    check_extent,
    check_resolution,
    maps_from_outputs,
    plane_grid,
    probabilities,
    run_layers,
)
from .relevance import RELEVANCE_METHODS, RelevanceFieldResult, relevance_on_grid

__all__ = ["PlaneSampler"]


class PlaneSampler:
    """A model and the grids over its plane, checked and built once.

    Parameters
    ----------
    model
        A network from points ``(N, 2)`` to class logits (as for :func:`nbexplain.decision_surface`).
    extent
        ``(xmin, xmax, ymin, ymax)`` or a :class:`ToyDataset`.

    Examples
    --------
    >>> import nbexplain as nx
    >>> from nbexplain.core.playground.sampler import PlaneSampler
    >>> net = nx.playground_network(hidden=(3,))
    >>> plane = PlaneSampler(net, (-1, 1, -1, 1))
    >>> bool((plane.surface(8) == nx.decision_surface(net, (-1, 1, -1, 1), 8)).all())
    True
    """

    def __init__(self, model: nn.Module, extent: Any) -> None:
        self.model: nn.Module = check_model(model, what="the playground")
        self.extent: Extent = check_extent(extent)
        self._grids: dict[int, torch.Tensor] = {}

    def grid(self, resolution: int) -> torch.Tensor:
        """:func:`plane_grid` of the plane at ``resolution``, built on first use and kept."""
        r = check_resolution(resolution)
        grid = self._grids.get(r)
        if grid is None:
            grid = self._grids[r] = plane_grid(self.extent, r)
        return grid

    def surface(self, resolution: int) -> torch.Tensor:
        """Class probabilities ``(C, R, R)`` (as :func:`nbexplain.decision_surface`)."""
        logits, _ = run_layers(self.model, self.grid(resolution))
        return probabilities(logits, resolution)

    def neuron_maps(self, resolution: int, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Layer → ``(units, r, r)`` activation maps (as :func:`nbexplain.neuron_maps`)."""
        names = hidden_layers(self.model) if layers is None else list(layers)
        _, outs = run_layers(self.model, self.grid(resolution), names)
        return maps_from_outputs(outs, names, resolution)

    def relevance(self, resolution: int, method: str = "lrp", epsilon: float = 0.01) -> RelevanceFieldResult:
        """The relevance field of the predicted class (as :func:`nbexplain.relevance_field`)."""
        check_choice(method, "method", RELEVANCE_METHODS)
        return relevance_on_grid(self.model, self.grid(resolution), resolution, method, None, epsilon)

    def predict(self, points: torch.Tensor) -> torch.Tensor:
        """The predicted class of each of ``points`` ``(N, 2)`` (int64, on the model's device)."""
        logits, _ = run_layers(self.model, points)
        return logits.argmax(1)
