"""Compression by projection onto a layer's top SVCCA directions (SVCCA paper, §4 "compressing models").

Raghu et al. observe that a layer's top SVCCA directions — the directions it shares with another network (or
with itself later in training) — carry what the network uses: projecting the layer onto a few of them keeps
accuracy, where as many of its highest-variance directions, or random ones, do not necessarily.
:func:`svcca_compression` measures that: test accuracy with the layer's output replaced, in every forward pass,
by its projection onto the top ``k`` SVCCA directions, beside the projection onto its top ``k`` eigen-directions
(the δ projection of feature-space saturation) and onto ``k`` random directions (the control).

The SVCCA projection is the least-squares reconstruction of the features from their top ``k`` canonical
variates, ``h ↦ μ + ((h − μ) A_k) L_kᵀ`` with ``L_k = Σ A_k`` (:meth:`SVCCADirectionsResult.project_x`): an
oblique projection, since canonical directions are not orthogonal in feature space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._base.hygiene import preserved
from .._base.machinery import check_progress, progress_bar
from .._base.model_io import OutputArg
from .._base.validation import check_choice, check_positive_int
from ..feature_space.delta_projection import DeltaProjection, _check_call, _run, inserted_map
from ..feature_space.tracking import layer_statistics
from .directions import SVCCADirectionsResult

__all__ = ["CompressionResult", "svcca_compression"]


@dataclass
class CompressionResult:
    """Accuracy with a layer projected onto ``k`` directions (see :func:`svcca_compression`).

    Attributes
    ----------
    ks
        The numbers of kept directions.
    svcca, eigen, random
        float64 ``(len(ks),)`` — accuracy with the layer projected onto its top ``k`` SVCCA directions, its top
        ``k`` eigen-directions, and ``k`` random directions.
    baseline
        Accuracy of the unchanged model on the same inputs.
    layer, width
        The projected layer and its number of features.
    """

    ks: list[int]
    svcca: torch.Tensor
    eigen: torch.Tensor
    random: torch.Tensor
    baseline: float
    layer: str
    width: int
    settings: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"CompressionResult(layer={self.layer!r}, width={self.width}, ks={self.ks}, baseline={self.baseline:.3f}, "
            f"svcca={[round(float(v), 3) for v in self.svcca]})"
        )


def _svcca_map(directions: SVCCADirectionsResult, side: str, k: int, width: int) -> Any:
    """``project(output, channel_first)`` for :func:`inserted_map`: the SVCCA projection of every sample (every
    position of a conv map), computed in float64 and returned in the layer's dtype."""
    proj = directions.project_x if side == "x" else directions.project_y

    def project(features: torch.Tensor, channel_first: bool) -> torch.Tensor:
        moved = features.movedim(1, -1) if channel_first and features.ndim > 2 else features
        flat = moved.reshape(-1, moved.shape[-1])
        if flat.shape[1] != width:
            raise ValueError(
                f"The layer has {flat.shape[1]} features but the SVCCA directions were fitted on {width}: "
                "compute them from nx.activations(model, inputs, layer) of this layer (conv maps: channels)."
            )
        out = proj(flat.detach().to(torch.float64), k).to(features.device, features.dtype).reshape(moved.shape)
        return out.movedim(-1, 1) if moved is not features else out

    return project


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean())


def svcca_compression(
    model: nn.Module,
    inputs: Any,
    layer: str,
    directions: SVCCADirectionsResult,
    *,
    labels: torch.Tensor,
    side: str = "x",
    ks: list[int] | None = None,
    seed: int = 0,
    output: OutputArg = None,
    batch_size: int = 256,
    progress: bool | None = None,
) -> CompressionResult:
    """Accuracy when ``layer`` is projected onto its top ``k`` SVCCA directions, its top ``k`` eigen-directions,
    or ``k`` random directions.

    Parameters
    ----------
    model
        The classifier whose ``layer`` is projected (run in eval mode; left as found).
    inputs
        One batch of test inputs (a tensor, or a tuple / dict / ``nx.Inputs`` of several).
    layer
        The layer whose output is replaced by its projection in every forward pass.
    directions
        :func:`nbexplain.svcca_directions` of this layer's features — ``nx.activations(model, x, layer)``
        (conv maps read per position, ``conv="channels"``) — against another network's layer or a later
        checkpoint of this one, on the same inputs.
    labels
        ``(N,)`` true classes of ``inputs``.
    side
        Which side of ``directions`` this layer is: ``"x"`` (default) or ``"y"``.
    ks
        Numbers of directions to keep (default: 1, 2, 4, … up to the number of directions).
    seed
        Seed of the random control.
    output, batch_size, progress
        Which output holds the class scores; inputs per forward pass; progress policy (None: a bar after 2 s).

    Returns
    -------
    CompressionResult
        ``.svcca``, ``.eigen``, ``.random`` accuracies per ``k`` and the ``.baseline``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> x = torch.randn(400, 8); y = (x[:, 0] > 0).long()
    >>> net_a, net_b = mlp(8, (16,), n_classes=2, seed=0), mlp(8, (16,), n_classes=2, seed=1)
    >>> feats = lambda net: nx.activations(net, x, "fc1")["fc1"]
    >>> d = nx.svcca_directions(feats(net_a), feats(net_b), keep=1.0)
    >>> res = nx.svcca_compression(net_a, x, "fc1", d, labels=y, ks=[2, 8])
    >>> res.ks, res.svcca.shape
    ([2, 8], torch.Size([2]))
    """
    if not isinstance(directions, SVCCADirectionsResult):
        raise TypeError(f"`directions` must be what nx.svcca_directions returned, got {type(directions).__name__}.")
    check_choice(side, "side", ("x", "y"))
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_progress(progress)
    model, batch, output = _check_call(model, inputs, output, "nx.svcca_compression")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != batch.n:
        raise ValueError(f"`labels` must be a 1-D tensor of the {batch.n} inputs' classes, got {labels!r:.80}.")
    labels = labels.detach().cpu().long()
    n_dir = directions.coefficients.numel()
    if ks is None:
        ks = sorted({min(2**i, n_dir) for i in range(max(n_dir, 1).bit_length() + 1)})
    ks = [check_positive_int(k, "ks") for k in ks]
    if any(k > n_dir for k in ks):
        raise ValueError(f"`ks` must be ≤ the number of SVCCA directions ({n_dir}), got {max(ks)}.")
    width = int((directions.x_weights if side == "x" else directions.y_weights).shape[0])
    with preserved(model), torch.no_grad():
        model.eval()
        stats = layer_statistics(model, batch, [layer], batch_size=batch_size, progress=False)[layer]
        if stats.n_features != width:
            raise ValueError(
                f"Layer {layer!r} has {stats.n_features} features but the SVCCA directions ({side!r} side) have {width}: "
                "pass directions computed from this layer."
            )
        baseline = _accuracy(_run(model, batch, batch_size, output), labels)
        acc = {name: torch.zeros(len(ks), dtype=torch.float64) for name in ("svcca", "eigen", "random")}
        with progress_bar(total=3 * len(ks), desc="compression", progress=progress) as bar:
            for i, k in enumerate(ks):
                maps = {
                    "svcca": _svcca_map(directions, side, k, width),
                    "eigen": DeltaProjection(stats, k=k).project,
                    "random": DeltaProjection(stats, k=k, subspace="random", seed=seed).project,
                }
                for name, project in maps.items():
                    with inserted_map(model, layer, project, what="nx.svcca_compression"):
                        acc[name][i] = _accuracy(_run(model, batch, batch_size, output), labels)
                    bar.update(1)
    return CompressionResult(
        ks=list(ks), svcca=acc["svcca"], eigen=acc["eigen"], random=acc["random"], baseline=baseline,
        layer=layer, width=width, settings={"side": side, "seed": seed, "n_samples": batch.n},
    )
