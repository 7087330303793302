"""How each layer's representation converges during training: CKA of a recorded state against the latest.

A *snapshot* is a dict ``layer → (n_probe, units)`` activations of a fixed set of probe points
(:func:`layer_activations`); :class:`~nbexplain.core.playground.trainer.PlaygroundTrainer` records one
before training and one after every epoch (``trainer.snapshots``). :func:`layer_similarity` compares each
snapshot with a reference (the latest by default) with linear CKA (:func:`nbexplain.cka`), layer by layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._base.validation import check_model
from ..similarity.metrics import cka
from .network import hidden_layers
from .plane import forward_layers

__all__ = ["layer_activations", "layer_similarity"]


def layer_activations(model: nn.Module, x: Any, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` (default :func:`hidden_layers`) for points ``x`` ``(N, 2)``: float32 CPU ``(N, units)``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.core.playground import layer_activations
    >>> acts = layer_activations(nx.playground_network(hidden=(3,)), torch.zeros(5, 2))
    >>> {k: tuple(v.shape) for k, v in acts.items()}
    {'act1': (5, 3), 'out': (5, 2)}
    """
    net = check_model(model, what="layer_activations")
    names = list(hidden_layers(net) if layers is None else layers)
    pts = torch.as_tensor(x, dtype=torch.float32)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"`x` must be probe points of shape (N, 2), got {tuple(pts.shape)}.")
    _, outs = forward_layers(net, pts, names)
    return {n: outs[n].float().reshape(len(pts), -1).cpu() for n in names}


def _cka_or_nan(a: torch.Tensor, b: torch.Tensor) -> float:
    # A layer with no variance on the probe (all units dead or saturated) has no CKA: NaN, drawn as "no value".
    if float(a.double().var(0).sum()) == 0.0 or float(b.double().var(0).sum()) == 0.0:
        return math.nan
    return float(cka(a.double(), b.double()).value)


def layer_similarity(
    snapshots: Sequence[Mapping[str, torch.Tensor]],
    reference: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Linear CKA of each layer in each snapshot against the reference snapshot: ``(E, L)``.

    Parameters
    ----------
    snapshots
        ``E`` snapshots (``layer → (n_probe, units)``, the same probe points and layers in each), e.g.
        ``trainer.snapshots``.
    reference
        The snapshot compared against; default the last of ``snapshots`` (the latest state).

    Returns
    -------
    Tensor
        ``(E, L)`` float64, layers in the reference's key order; NaN for a layer without variance on the probe.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> a = {"h": torch.randn(50, 4)}
    >>> nx.layer_similarity([a, {"h": 2 * a["h"]}])
    tensor([[1.],
            [1.]], dtype=torch.float64)
    """
    if isinstance(snapshots, Mapping) or not isinstance(snapshots, Sequence) or not snapshots:
        raise TypeError("`snapshots` must be a non-empty list of dicts layer → (n_probe, units) activations "
                        "(e.g. trainer.snapshots).")
    ref = snapshots[-1] if reference is None else reference
    if not isinstance(ref, Mapping) or not ref:
        raise TypeError("`reference` must be a dict layer → (n_probe, units) activations.")
    layers = list(ref)
    out = torch.empty(len(snapshots), len(layers), dtype=torch.float64)
    for i, snap in enumerate(snapshots):
        if not isinstance(snap, Mapping):
            raise TypeError(f"`snapshots[{i}]` must be a dict layer → activations, got {type(snap).__name__}.")
        missing = [n for n in layers if n not in snap]
        if missing:
            raise ValueError(f"`snapshots[{i}]` lacks layers {missing}; every snapshot needs the reference's layers.")
        for j, n in enumerate(layers):
            a, b = torch.as_tensor(snap[n]), torch.as_tensor(ref[n])
            if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
                raise ValueError(f"Layer {n!r}: snapshot {i} has shape {tuple(a.shape)} and the reference "
                                 f"{tuple(b.shape)}; both must be (n_probe, units) on the same probe points.")
            out[i, j] = _cka_or_nan(a, b)
    return out
