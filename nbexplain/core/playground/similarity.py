"""How each layer's representation converges during training: CKA of a recorded state against the latest.

A *snapshot* is a dict ``layer → (n_probe, units)`` activations of a fixed set of probe points
(:func:`layer_activations`); :class:`~nbexplain.core.playground.trainer.PlaygroundTrainer` records one
before training and one after every epoch (``trainer.snapshots``). :func:`layer_similarity` compares each
snapshot with a reference (the latest by default) with linear CKA (the value of :func:`nbexplain.cka`,
batched: :func:`linear_cka_against`), layer by layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._base.validation import check_model
from .network import hidden_layers
from .plane import run_layers

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
    _, outs = run_layers(net, pts, names)
    return {n: outs[n].float().reshape(len(pts), -1).cpu() for n in names}


def linear_cka_against(stack: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Linear CKA of each ``stack[e]`` ``(n, d)`` against ``ref`` ``(n, d')``, all at once: ``(E,)`` float64.

    ``CKA(X, Y) = ‖Ỹᵀ X̃‖²_F / (‖X̃ᵀ X̃‖_F ‖Ỹᵀ Ỹ‖_F)`` with column-centred ``X̃, Ỹ`` — the value of
    :func:`nbexplain.cka` (kernel ``"linear"``, tested equal), in one batched product instead of one call per
    snapshot: the trainer compares every epoch with the latest after each epoch, ``E`` calls of ``nx.cka``
    (≈1 ms each) per epoch would make a long run quadratic. NaN where either side has no variance."""
    x = stack.double()
    x = x - x.mean(1, keepdim=True)
    y = ref.double()
    y = y - y.mean(0, keepdim=True)
    cross = torch.einsum("nj,eni->eji", y, x).pow(2).sum((1, 2))
    self_x = torch.einsum("eni,enk->eik", x, x).pow(2).sum((1, 2)).sqrt()
    self_y = (y.T @ y).pow(2).sum().sqrt()
    den = self_x * self_y
    return torch.where(den > 0, cross / den.clamp_min(torch.finfo(torch.float64).tiny), torch.nan)


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
    >>> nx.layer_similarity([a, {"h": 2 * a["h"]}]).round(decimals=6)  # CKA is scale-invariant: 1 up to rounding
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
        b = torch.as_tensor(ref[n])
        shapes = {tuple(torch.as_tensor(snap[n]).shape) for snap in snapshots}
        if b.ndim != 2 or len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[0] != len(b):
            raise ValueError(f"Layer {n!r}: the snapshots have shapes {sorted(shapes)} and the reference "
                             f"{tuple(b.shape)}; all must be (n_probe, units) on the same probe points.")
        out[:, j] = linear_cka_against(torch.stack([torch.as_tensor(snap[n]) for snap in snapshots]), b)
    return out
