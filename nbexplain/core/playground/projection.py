"""The decision surface when one layer keeps only ``k`` directions of its features (δ projection).

A layer's output ``h`` is replaced by ``μ + P_k P_kᵀ (h − μ)`` — :class:`nbexplain.DeltaProjection` with the
layer's statistics ``stats`` (mean ``μ``, eigenvectors of the covariance) — and the rest of the network runs on
it. ``basis="eigen"`` keeps the top-``k`` eigen-directions; ``basis="random"`` a random orthonormal ``k``-dim
subspace through the same mean (the control).
"""

from __future__ import annotations

import typing
from typing import Any

import torch
from torch import nn

from .._base.moments import RunningMoments
from .._base.validation import check_choice, check_model, check_positive_int
from ..feature_space.delta_projection import SUBSPACES, DeltaProjection
from .network import is_playground_network
from .plane import check_resolution, plane_grid, probabilities, run_layers

__all__ = ["projected_surface", "projected_surfaces"]


def _check(model: Any, layer: Any, stats: Any, what: str) -> nn.Module:
    net = check_model(model, what=what)
    if not isinstance(layer, str):
        raise TypeError(f"`layer` must be a layer name (see nx.hidden_layers(model)), got {layer!r}.")
    names = [n for n, _ in net.named_modules() if n]
    if layer not in names:
        raise ValueError(f"`layer` {layer!r} is not a module of the model; its modules: {names[:20]}.")
    if not isinstance(stats, RunningMoments):
        raise TypeError("`stats` must be the layer's RunningMoments (e.g. trainer.layer_statistics()[layer] or "
                        f"nx.layer_statistics(model, x, [layer])[layer]), got {type(stats).__name__}.")
    return net


def _surface_fast(net: nn.Sequential, points: torch.Tensor, layer: str,
                  projections: list[DeltaProjection], r: int) -> list[torch.Tensor]:
    """Run the playground network up to ``layer`` once, then each projection's rest of the network."""
    children = list(net.named_children())
    idx = [n for n, _ in children].index(layer)
    p = next(net.parameters())
    with torch.no_grad():
        h = points.to(p.device, p.dtype)
        for _, mod in children[: idx + 1]:
            h = mod(h)
        if h.shape[1] != projections[0].width:
            raise ValueError(f"`stats` describe {projections[0].width} features but layer {layer!r} has "
                             f"{h.shape[1]}; pass the statistics of that layer.")
        out = []
        for proj in projections:
            z = proj.project(h)
            for _, mod in children[idx + 1:]:
                z = mod(z)
            out.append(probabilities(z, r))
    return out


def _surfaces(net: nn.Module, layer: str, projections: list[DeltaProjection], extent: Any,
              r: int) -> list[torch.Tensor]:
    """Each projection's ``(C, R, R)`` surface: a playground network through :func:`_surface_fast`, any other
    model with the projection inserted as a hook."""
    points = plane_grid(extent, r)
    if is_playground_network(net):
        return _surface_fast(typing.cast(nn.Sequential, net), points, layer, projections, r)
    out = []
    for proj in projections:
        with proj.inserted(net, layer):
            logits, _ = run_layers(net, points)
        out.append(probabilities(logits, r))
    return out


def projected_surface(
    model: nn.Module,
    layer: str,
    stats: RunningMoments,
    *,
    k: int,
    extent: Any,
    resolution: int = 64,
    basis: str = "eigen",
    seed: int = 0,
) -> torch.Tensor:
    """Class probabilities over the plane with ``layer``'s output projected onto ``k`` directions.

    Parameters
    ----------
    model
        A network from points ``(N, 2)`` to class logits.
    layer
        The layer whose output is projected (e.g. ``"act1"``).
    stats
        That layer's :class:`~nbexplain.RunningMoments` (``trainer.layer_statistics()[layer]``).
    k
        Number of kept directions, 1 … the layer's width.
    extent, resolution
        The plane, as in :func:`nbexplain.decision_surface`.
    basis
        ``"eigen"`` (top-``k`` eigenvectors of the covariance) or ``"random"`` (a random ``k``-dim subspace,
        drawn from ``seed``).
    seed
        Seed of the random subspace.

    Returns
    -------
    Tensor
        ``(C, R, R)`` float32 on the CPU.

    Examples
    --------
    >>> import nbexplain as nx
    >>> data = nx.toy_dataset("moons", 200)
    >>> net = nx.playground_network(hidden=(6,))
    >>> stats = nx.layer_statistics(net, data.x_train, ["act1"])["act1"]
    >>> nx.projected_surface(net, "act1", stats, k=2, extent=data.extent, resolution=8).shape
    torch.Size([2, 8, 8])
    """
    net = _check(model, layer, stats, "nx.projected_surface")
    check_choice(basis, "basis", SUBSPACES)
    k = check_positive_int(k, "k")
    if k > stats.n_features:
        raise ValueError(f"`k` must be ≤ the layer's width {stats.n_features}, got {k}.")
    r = check_resolution(resolution)
    proj = DeltaProjection(stats, k=k, subspace=basis, seed=seed)
    return _surfaces(net, layer, [proj], extent, r)[0]


def projected_surfaces(
    model: nn.Module,
    layer: str,
    stats: RunningMoments,
    *,
    extent: Any,
    resolution: int = 64,
    basis: str = "eigen",
    seed: int = 0,
) -> torch.Tensor:
    """:func:`projected_surface` for every ``k`` = 1 … width at once (what a δ slider can reach).

    Returns
    -------
    Tensor
        ``(width, C, R, R)`` float32 on the CPU: entry ``k − 1`` keeps ``k`` directions.

    Examples
    --------
    >>> import nbexplain as nx
    >>> data = nx.toy_dataset("moons", 200)
    >>> net = nx.playground_network(hidden=(3,))
    >>> stats = nx.layer_statistics(net, data.x_train, ["act1"])["act1"]
    >>> nx.projected_surfaces(net, "act1", stats, extent=data.extent, resolution=8).shape
    torch.Size([3, 2, 8, 8])
    """
    net = _check(model, layer, stats, "nx.projected_surfaces")
    check_choice(basis, "basis", SUBSPACES)
    r = check_resolution(resolution)
    projs = [DeltaProjection(stats, k=k, subspace=basis, seed=seed) for k in range(1, stats.n_features + 1)]
    return torch.stack(_surfaces(net, layer, projs, extent, r))
