"""The model over the plane: a grid of points, the class-probability surface and every neuron's map.

All maps are images ``(…, R, R)`` of the plane's ``extent``: row 0 is the top (``ymax``), column 0 the left
(``xmin``); :func:`plane_grid` lists the points in that row-major order. The model runs on its own device in
no-grad mode; the returned tensors are float32 on the CPU.

A :func:`~nbexplain.core.playground.network.playground_network` without hooks is run module by module (no
hooks, no mode switch: it has no dropout or batch norm, so train and eval modes compute the same); any other
model is run in eval mode, its layers' outputs read through :func:`~nbexplain.capture` (the shared hooks),
and left as found. :class:`PlaneSampler` holds a model with its grids for the many frames of one run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import torch
from torch import nn

from .._base.capturing import capture
from .._base.hygiene import model_device, model_dtype, preserved
from .._base.model_io import describe_output
from .._base.validation import check_model
from .network import hidden_layers, is_playground_network

__all__ = ["plane_grid", "decision_surface", "neuron_maps", "check_extent", "check_resolution", "forward_layers",
           "run_layers", "probabilities"]

Extent = tuple[float, float, float, float]


def check_extent(extent: Any) -> Extent:
    """``extent`` as ``(xmin, xmax, ymin, ymax)`` floats (a :class:`ToyDataset` gives its own)."""
    if hasattr(extent, "extent") and not isinstance(extent, (tuple, list)):
        extent = extent.extent
    if isinstance(extent, torch.Tensor):
        extent = extent.tolist()
    if not isinstance(extent, (tuple, list)) or len(extent) != 4:
        raise TypeError(f"`extent` must be (xmin, xmax, ymin, ymax), e.g. data.extent of a ToyDataset; got {extent!r}.")
    vals = []
    for v in extent:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ValueError(f"`extent` must hold 4 finite numbers (xmin, xmax, ymin, ymax), got {extent!r}.")
        vals.append(float(v))
    if not (vals[0] < vals[1] and vals[2] < vals[3]):
        raise ValueError(f"`extent` must have xmin < xmax and ymin < ymax, got {tuple(vals)}.")
    return (vals[0], vals[1], vals[2], vals[3])


def check_resolution(resolution: Any) -> int:
    """``resolution`` as an int in 2 … 1024."""
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral):
        raise TypeError(f"`resolution` must be an integer (pixels per side, e.g. 64), got {resolution!r}.")
    if not 2 <= int(resolution) <= 1024:
        raise ValueError(f"`resolution` must lie in 2 … 1024 (pixels per side), got {resolution}.")
    return int(resolution)


def plane_grid(extent: Any, resolution: int = 64) -> torch.Tensor:
    """Points of an ``R × R`` grid over the plane, row-major, row 0 at the top (``ymax``).

    Parameters
    ----------
    extent
        ``(xmin, xmax, ymin, ymax)`` (or a :class:`ToyDataset`, whose extent is used).
    resolution
        Points per side ``R``; the corners are points of the grid.

    Returns
    -------
    Tensor
        ``(R·R, 2)`` float32: point ``i·R + j`` is ``(x_j, y_i)`` with ``x_j`` rising from ``xmin`` and
        ``y_i`` falling from ``ymax``.

    Examples
    --------
    >>> import nbexplain as nx
    >>> nx.plane_grid((0, 1, 0, 1), 2)
    tensor([[0., 1.],
            [1., 1.],
            [0., 0.],
            [1., 0.]])
    """
    xmin, xmax, ymin, ymax = check_extent(extent)
    r = check_resolution(resolution)
    xs = torch.linspace(xmin, xmax, r, dtype=torch.float64)
    ys = torch.linspace(ymax, ymin, r, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1).to(torch.float32)


def _logits_2d(out: Any) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"The model returned {describe_output(out)}; the playground needs one tensor of class logits (N, C). "
            "Choose it with `output=`: nx.widgets.Playground(data, model=model, output=0) (an index, a key or "
            "attribute name such as output='logits', or a function of the model's output), or for the core "
            "functions wrap the model: nbexplain.core.playground.SelectedOutput(model, output=0)."
        )
    if out.ndim != 2 or out.shape[1] < 2:
        raise ValueError(
            f"The model must return class logits of shape (N, C) with C ≥ 2 for points (N, 2), got {tuple(out.shape)}; for a "
            "single logit z return torch.cat([-z / 2, z / 2], 1), and return logits, not probabilities."
        )
    return out


def forward_layers(model: nn.Module, points: torch.Tensor,
                   layers: Sequence[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits ``(N, C)`` and the outputs of ``layers`` for ``points`` ``(N, 2)``, on the model's device (no grad).

    The model is left as found (see the module's notes)."""
    if is_playground_network(model):
        return run_layers(model, points, layers)
    return run_layers(check_model(model, what="the playground"), points, layers)


def run_layers(net: nn.Module, points: torch.Tensor,
               layers: Sequence[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`forward_layers` for a model already through ``check_model`` (what a run's :class:`PlaneSampler`
    holds): a playground network module by module, any other model through :func:`nbexplain.capture`."""
    dev, dtype = model_device(net), model_dtype(net)
    pts = points.to(dev, dtype)
    if is_playground_network(net):
        wanted = set(layers)
        outs: dict[str, torch.Tensor] = {}
        children = [n for n, _ in net.named_children()]
        unknown = [n for n in layers if n not in children]
        if unknown:
            raise ValueError(f"`layers` {unknown} are not layers of this network; its layers: {children}.")
        h = pts
        with torch.no_grad():
            for name, mod in net.named_children():
                h = mod(h)
                if name in wanted:
                    outs[name] = h
        return _logits_2d(h), outs
    with ExitStack() as stack:
        # capture restores the model (hooks, mode, …) on exit; preserved covers a forward pass without layers
        stack.enter_context(preserved(net))
        captured = stack.enter_context(capture(net, list(layers))) if layers else {}
        stack.enter_context(torch.no_grad())
        net.eval()
        try:
            out = net(pts)
        except RuntimeError as e:
            raise ValueError(f"`model` could not run on points of shape (N, 2): {e} — the playground needs a model "
                             "from 2 inputs (x, y) to class logits.") from e
        logits = _logits_2d(out)
        missing = [n for n in layers if n not in captured]
        if missing:
            raise ValueError(f"`layers` {missing} did not run in the model's forward pass; pick from the modules it "
                             "calls.")
        outs = {n: captured[n] for n in layers}
    return logits, outs


def as_images(t: torch.Tensor, r: int) -> torch.Tensor:
    """``(R·R, K)`` values at the grid points as ``(K, R, R)`` float32 CPU images."""
    return t.float().T.reshape(t.shape[1], r, r).cpu().contiguous()


def probabilities(logits: torch.Tensor, resolution: int) -> torch.Tensor:
    """Softmax of ``(R·R, C)`` logits as ``(C, R, R)`` float32 images on the CPU."""
    return as_images(torch.softmax(logits.float(), dim=1), resolution)


def decision_surface(model: nn.Module, extent: Any, resolution: int = 64) -> torch.Tensor:
    """Class probabilities (softmax of the logits) over the plane.

    Parameters
    ----------
    model
        A network from points ``(N, 2)`` to class logits ``(N, C)`` (e.g. :func:`playground_network`).
    extent
        ``(xmin, xmax, ymin, ymax)`` or a :class:`ToyDataset`.
    resolution
        Pixels per side ``R``.

    Returns
    -------
    Tensor
        ``(C, R, R)`` float32 on the CPU, summing to 1 over classes; layout as :func:`plane_grid`.

    Examples
    --------
    >>> import nbexplain as nx
    >>> data = nx.toy_dataset("xor", 200)
    >>> nx.decision_surface(nx.playground_network(), data.extent, 16).shape
    torch.Size([2, 16, 16])
    """
    r = check_resolution(resolution)
    logits, _ = run_layers(check_model(model, what="nx.decision_surface"), plane_grid(extent, r))
    return probabilities(logits, r)


def _check_layers(model: nn.Module, layers: Any) -> list[str]:
    if layers is None:
        return hidden_layers(model)
    if isinstance(layers, str):
        return [layers]
    if not isinstance(layers, Sequence) or not layers or not all(isinstance(n, str) for n in layers):
        raise TypeError(f"`layers` must be a layer name or a non-empty list of names (see nx.hidden_layers(model)), "
                        f"got {layers!r}.")
    return list(layers)


def neuron_maps(model: nn.Module, extent: Any, resolution: int = 64,
                layers: str | Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Every neuron's activation over the plane.

    Parameters
    ----------
    model
        A network from points ``(N, 2)`` to class logits.
    extent, resolution
        The plane, as in :func:`decision_surface`.
    layers
        Layer names whose outputs to draw (each output must be ``(N, units)``); default
        :func:`hidden_layers` — each hidden activation and the output layer's logits.

    Returns
    -------
    dict[str, Tensor]
        Layer → ``(units, R, R)`` float32 on the CPU, in the order of ``layers``.

    Examples
    --------
    >>> import nbexplain as nx
    >>> maps = nx.neuron_maps(nx.playground_network(hidden=(3, 2)), (-1, 1, -1, 1), 8)
    >>> {name: tuple(m.shape) for name, m in maps.items()}
    {'act1': (3, 8, 8), 'act2': (2, 8, 8), 'out': (2, 8, 8)}
    """
    net = check_model(model, what="nx.neuron_maps")
    r = check_resolution(resolution)
    names = _check_layers(net, layers)
    _, outs = run_layers(net, plane_grid(extent, r), names)
    return maps_from_outputs(outs, names, r)


def maps_from_outputs(outs: Mapping[str, torch.Tensor], names: Sequence[str], r: int) -> dict[str, torch.Tensor]:
    """``(R·R, units)`` layer outputs as ``(units, R, R)`` float32 CPU images."""
    maps = {}
    for n in names:
        o = outs[n]
        if o.ndim != 2:
            raise ValueError(f"Layer {n!r} gives outputs of shape {tuple(o.shape)} for a batch of points; a neuron "
                             "map needs (N, units). Pick layers of the MLP part (see nx.hidden_layers(model)).")
        maps[n] = as_images(o, r)
    return maps
