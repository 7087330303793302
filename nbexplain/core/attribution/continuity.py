"""Explanation continuity (Montavon, Samek & Müller 2018, *Methods for interpreting and understanding
deep neural networks*, Section 7.1).

An explanation method is continuous when nearby inputs receive nearby explanations. Along a path of
inputs ``x_0 … x_{T−1}`` (translations of an image, or points on a line segment in input space) the
criterion is the largest ratio

    ``max_{i ≠ j} ‖R(x_i) − R(x_j)‖₁ / ‖x_i − x_j‖₂``

— an estimate of the explanation's Lipschitz constant along the path. Low is good. The teaching
example is ``f(x1, x2) = max(x1, x2)`` (:func:`nbexplain.zoo.max_net`): its gradient jumps from
``(1, 0)`` to ``(0, 1)`` on the diagonal, while deep-Taylor/LRP-z⁺ relevance changes smoothly.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._base.model_inputs import Inputs
from .._base.validation import check_choice, check_positive_int, check_tensor, renamed_arguments
from .result import AttributionResult

__all__ = ["continuity", "ContinuityResult", "translate"]

PATHS = ("auto", "translate", "line")


@dataclass
class ContinuityResult:
    """What :func:`continuity` returns.

    Attributes
    ----------
    score
        ``(N,)`` — the criterion ``max ‖R_i − R_j‖₁ / ‖x_i − x_j‖₂`` over all pairs of path points.
    inputs
        ``(N, T, …)`` — the perturbed inputs along the path.
    explanations
        ``(N, T, …)`` — the explanation of every path point.
    offsets
        ``(T,)`` — the path parameter: pixel shift for translations, ``t ∈ [0, 1]`` for a line.
    steps
        ``(N, T−1)`` — the same ratio for consecutive path points only (a local profile to plot).
    argmax
        ``(N, 2)`` — the indices ``(i, j)`` of the pair attaining ``score``.
    """

    score: torch.Tensor
    inputs: torch.Tensor
    explanations: torch.Tensor
    offsets: torch.Tensor
    steps: torch.Tensor
    argmax: torch.Tensor

    def __repr__(self) -> str:
        s = ", ".join(f"{v:.4g}" for v in self.score.tolist()[:6])
        more = ", …" if self.score.numel() > 6 else ""
        return (
            f"ContinuityResult(score=[{s}{more}], path points={self.offsets.numel()}, "
            f"explanations shape={tuple(self.explanations.shape)})"
        )


def translate(x: torch.Tensor, shift: int, axis: int = -1, fill: float = 0.0) -> torch.Tensor:
    """Shift ``x`` by ``shift`` positions along ``axis`` (positive: towards higher indices), filling the
    uncovered border with ``fill`` (no wrap-around).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.attribution.continuity import translate
    >>> translate(torch.tensor([[1.0, 2.0, 3.0]]), 1)
    tensor([[0., 1., 2.]])
    """
    out = torch.full_like(x, fill)
    n = x.shape[axis]
    s = int(shift)
    if abs(s) >= n:
        return out
    if s >= 0:
        out.narrow(axis, s, n - s).copy_(x.narrow(axis, 0, n - s))
    else:
        out.narrow(axis, 0, n + s).copy_(x.narrow(axis, -s, n + s))
    return out


def _call(explain: Callable[[torch.Tensor], Any], xt: torch.Tensor) -> torch.Tensor:
    """The map ``explain`` gives for one path point: ``.attribution`` of an attribution result, or a plain
    tensor (a custom method)."""
    r = explain(xt)
    if isinstance(r, AttributionResult):
        r = r.attribution
    if not isinstance(r, torch.Tensor):
        raise TypeError(
            f"`explain` must return an attribution result (e.g. nx.gradient(...)) or a tensor with the shape of its "
            f"input, got {type(r).__name__}. Wrap your method, e.g. explain=lambda z: nx.gradient(model, z, target)."
        )
    per_pixel = xt.ndim == 4 and tuple(r.shape) == (xt.shape[0], *xt.shape[2:])  # e.g. attention rollout's
    if tuple(r.shape) != tuple(xt.shape) and not per_pixel:
        raise ValueError(
            f"`explain` returned a map of shape {tuple(r.shape)} for an input of shape {tuple(xt.shape)}; "
            "an explanation must have its input's shape (or, for images (N, C, H, W), one value per pixel "
            "(N, H, W))."
        )
    return r.detach()


@renamed_arguments(x="inputs")
def continuity(
    explain: Callable[[torch.Tensor], AttributionResult | torch.Tensor],
    inputs: torch.Tensor,
    *,
    path: str | torch.Tensor = "auto",
    shifts: Sequence[int] | None = None,
    axis: str = "horizontal",
    fill: float = 0.0,
    to: torch.Tensor | None = None,
    steps: int = 21,
) -> ContinuityResult:
    """Montavon et al.'s explanation-continuity criterion along a path of perturbed inputs.

    Parameters
    ----------
    explain
        A function mapping an input batch ``(N, …)`` to its explanation: any attribution method's result (its
        ``.attribution`` is read), e.g. ``lambda z: nx.gradient(model, z, 3)``, ``lambda z: nx.lrp(model, z, 3)``
        or, for a model that returns a tuple or dict, ``lambda z: nx.gradient(model, z, 3, output="logits")``;
        or a tensor of the input's shape (a custom method). For images ``(N, C, H, W)`` a map with one value
        per pixel ``(N, H, W)`` is accepted too (e.g. ``lambda z: nx.attention_rollout(vit, z)``). It is called
        once per path point with all ``N`` samples.
    inputs
        Input batch ``(N, …)``: every sample gets its own path and score. For a model with several inputs,
        ``inputs`` is the one whose path is followed and ``explain`` binds the others, e.g.
        ``explain=lambda z: nx.gradient(model, (z, mask), t, wrt=0)``: every path point keeps the rows of
        ``inputs``, so each sample meets its own mask.
    path
        ``"translate"``: integer shifts of images (``inputs`` must have ≥ 3 dimensions, ``(N, H, W)`` or
        ``(N, C, H, W)``); ``"line"``: ``steps`` equally spaced points of the segment from ``inputs`` to
        ``to``; ``"auto"``: ``"line"`` when ``to`` is given, else ``"translate"``. A tensor of shape
        ``(T, *inputs.shape)`` is used as the path itself.
    shifts
        Pixel offsets of the translation path (default ``range(-4, 5)``).
    axis
        ``"horizontal"`` (last dimension) or ``"vertical"`` (second to last) for translations.
    fill
        Value for pixels uncovered by a translation.
    to
        End point of a line path: one sample (broadcast) or a batch shaped like ``inputs``.
    steps
        Number of points on a line path (including both ends).

    Returns
    -------
    ContinuityResult
        ``.score (N,)``, ``.inputs`` and ``.explanations`` ``(N, T, …)``, ``.offsets``, ``.steps``,
        ``.argmax``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import max_net
    >>> net = max_net()
    >>> x = torch.tensor([[1.0, 0.8]])
    >>> res = nx.continuity(lambda z: nx.gradient(net, z, 0), x, to=torch.tensor([[0.8, 1.0]]), steps=11)
    >>> res.explanations.shape, round(float(res.score[0]), 2)
    (torch.Size([1, 11, 2]), 70.71)
    """
    if not callable(explain):
        raise TypeError(
            f"`explain` must be a function of the input batch, got {type(explain).__name__}. "
            "E.g. explain=lambda x: nx.gradient(model, x, target)."
        )
    if isinstance(inputs, (tuple, Mapping, Inputs)):
        raise TypeError(
            "`inputs` of continuity is the one input whose path is followed, a tensor; got "
            f"{type(inputs).__name__}. For a model with several inputs pass the explained input as `inputs` and "
            "bind the others in `explain`, e.g. explain=lambda z: nx.gradient(model, (z, mask), target) — every "
            "path point keeps the rows of `inputs`, so each sample meets its own mask."
        )
    x = check_tensor(inputs, "inputs", min_ndim=2, finite=True)
    if not x.is_floating_point():
        raise TypeError(
            f"`inputs` must be a floating-point tensor, got {x.dtype}: continuity divides by distances "
            "‖x_i − x_j‖₂ between perturbed inputs, which integer token ids do not have. For text, pass "
            "floating points (e.g. embeddings) and an explain function that takes them."
        )
    if x.shape[0] == 0:
        raise ValueError("`inputs` is an empty batch; pass at least one sample.")
    axis = check_choice(axis, "axis", ("horizontal", "vertical"))
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real):
        raise TypeError(f"`fill` must be a number, got {fill!r}.")

    if isinstance(path, torch.Tensor) or type(path).__module__.startswith("numpy"):
        pts = check_tensor(path, "path", dtype_kind="float", finite=True).to(x.device, x.dtype)
        if tuple(pts.shape[1:]) != tuple(x.shape) or pts.shape[0] < 2:
            raise ValueError(
                f"`path` as a tensor must have shape (T, *inputs.shape) = (T, {', '.join(map(str, x.shape))}) "
                f"with T ≥ 2, got {tuple(pts.shape)}."
            )
        offsets = torch.arange(pts.shape[0], dtype=torch.float64)
    else:
        kind = check_choice(path, "path", PATHS)
        if kind == "auto":
            kind = "line" if to is not None else "translate"
        if kind == "line":
            if to is None:
                raise ValueError("path='line' needs an end point: pass `to=` (one sample or a batch like `inputs`).")
            steps = check_positive_int(steps, "steps")
            if steps < 2:
                raise ValueError(f"`steps` must be ≥ 2 (both ends of the segment), got {steps}.")
            end = check_tensor(to, "to", dtype_kind="float", finite=True).to(x.device, x.dtype)
            try:
                end = torch.broadcast_to(end, x.shape)
            except RuntimeError:
                raise ValueError(
                    f"`to` has shape {tuple(end.shape)}, which does not broadcast to the shape of `inputs`, {tuple(x.shape)}."
                ) from None
            offsets = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
            pts = torch.stack([x + float(t) * (end - x) for t in offsets])
        else:
            if x.ndim < 3:
                raise ValueError(
                    f"path='translate' needs images (N, H, W) or (N, C, H, W); `inputs` has shape {tuple(x.shape)}. "
                    "For other inputs use a line segment: pass `to=` (and path='line')."
                )
            if shifts is None:
                shifts = range(-4, 5)
            shift_list = [int(s) for s in shifts]
            if len(shift_list) < 2:
                raise ValueError("`shifts` must hold at least two offsets, e.g. range(-4, 5).")
            dim = -1 if axis == "horizontal" else -2
            pts = torch.stack([translate(x, s, dim, float(fill)) for s in shift_list])
            offsets = torch.tensor(shift_list, dtype=torch.float64)

    T = pts.shape[0]
    expl = torch.stack([_call(explain, pts[k]) for k in range(T)])  # (T, N, …)
    inputs = pts.transpose(0, 1).contiguous()
    explanations = expl.transpose(0, 1).contiguous().to(torch.float64)
    n = x.shape[0]
    xf = inputs.reshape(n, T, -1).to(torch.float64)
    rf = explanations.reshape(n, T, -1)
    dx = torch.cdist(xf, xf, p=2)  # (N, T, T)
    dr = torch.cdist(rf, rf, p=1)
    ratio = torch.where(dx > 0, dr / dx.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(dr))
    flat = ratio.reshape(n, -1)
    score, idx = flat.max(dim=1)
    argmax = torch.stack([idx // T, idx % T], dim=1)
    diag = torch.arange(T - 1)
    local = ratio[:, diag, diag + 1]
    return ContinuityResult(
        score=score,
        inputs=inputs,
        explanations=explanations.to(x.dtype) if x.dtype != torch.float64 else explanations,
        offsets=offsets,
        steps=local,
        argmax=argmax,
    )
