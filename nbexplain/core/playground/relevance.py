"""Which input decides where: the relevance of the two inputs ``(x, y)`` at every point of the plane.

Methods
-------
``"lrp"``
    LRP-ε (the ``"epsilon"`` composite of :func:`nbexplain.lrp`: ε on every Linear layer, relevance passed
    through the activations unchanged), started from the explained logit (``init="logit"``). For a
    :func:`~nbexplain.core.playground.network.playground_network` it is computed in closed form, layer by layer
    (one forward and one backward matrix product per layer, equal to ``nx.lrp`` to float rounding — tested); any
    other model goes through ``nx.lrp`` itself.
``"gradient_x_input"``
    ``input ⊙ ∂logit/∂input``.

With engineered input features (``x²``, ``xy``, ``sin x`` …) the relevance is computed on the features — the
network's real inputs — and each feature's relevance is handed to the raw input it is made of: ``x``, ``x²``
and ``sin x`` to ``x``; ``y``, ``y²``, ``sin y`` to ``y``; ``xy`` half to each. The per-feature relevance is
kept in :attr:`RelevanceFieldResult.feature_relevance`.

Conservation: LRP-ε hands the explained logit down except for what the biases take (each layer's bias
keeps its share ``b_j / (z_j + ε sign z_j)`` of ``R_j``, and ε absorbs a little more), so ``total`` (Σ of the
inputs' relevance) equals ``output`` minus those shares — the view shows both.
"""

from __future__ import annotations

import numbers
import typing
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._base.hygiene import model_device, model_dtype
from .._base.validation import check_choice, check_model
from ..attribution.lrp.rules import stabilize
from .network import FEATURE_SOURCES, FeatureMap, is_playground_network
from .plane import as_images, check_resolution, plane_grid, run_layers

__all__ = ["RelevanceFieldResult", "relevance_field", "relevance_on_grid", "RELEVANCE_METHODS", "mlp_lrp_epsilon"]

#: Methods :func:`relevance_field` computes.
RELEVANCE_METHODS = ("lrp", "gradient_x_input")


@dataclass
class RelevanceFieldResult:
    """The relevance of the two inputs over the plane (float32, CPU; layout as :func:`nbexplain.plane_grid`).

    Attributes
    ----------
    relevance
        ``(2, R, R)``: relevance of ``x`` (index 0) and ``y`` (index 1) at every grid point.
    output
        ``(R, R)``: the explained logit at every point.
    total
        ``(R, R)``: ``relevance.sum(0)`` — compare with ``output`` for conservation.
    target
        ``(R, R)`` int64: the class explained at every point.
    feature_relevance
        ``(F, R, R)``: relevance of each input feature before it is handed to ``x``/``y``.
    features
        The features' names (``("x", "y")`` for a model taking the raw points).
    method
        ``"lrp"`` or ``"gradient_x_input"``.
    """

    relevance: torch.Tensor
    output: torch.Tensor
    total: torch.Tensor
    target: torch.Tensor
    feature_relevance: torch.Tensor
    features: tuple[str, ...]
    method: str

    def __repr__(self) -> str:
        r = self.output.shape[-1]
        return f"RelevanceFieldResult(method={self.method!r}, {r}×{r}, features={list(self.features)})"


def mlp_lrp_epsilon(head: list[nn.Module], features: torch.Tensor, target: torch.Tensor | None,
                    epsilon: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form LRP-ε of an MLP given as its modules ``[Linear, act, …, Linear]`` (activations pass relevance).

    Returns the features' relevance ``(N, F)``, the explained logits ``(N,)`` and the explained classes ``(N,)``."""
    with torch.no_grad():
        inputs, zs, linears = [], [], []
        h = features
        for mod in head:
            if isinstance(mod, nn.Linear):
                inputs.append(h)
                h = mod(h)
                zs.append(h)
                linears.append(mod)
            else:
                h = mod(h)
        logits = h
        tgt = logits.argmax(1) if target is None else target.to(logits.device)
        picked = logits.gather(1, tgt[:, None])
        rel = torch.zeros_like(logits).scatter_(1, tgt[:, None], picked)
        for a, z, lin in zip(reversed(inputs), reversed(zs), reversed(linears), strict=True):
            rel = a * ((rel / stabilize(z, epsilon)) @ lin.weight)
    return rel, picked[:, 0], tgt


def _check_target(target: Any, classes: int) -> int | None:
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(f"`target` must be None (the predicted class at each point) or a class index, got {target!r}.")
    if not 0 <= int(target) < classes:
        raise ValueError(f"`target` must be a class in 0 … {classes - 1}, got {target}.")
    return int(target)


def _to_raw(feature_rel: torch.Tensor, features: tuple[str, ...]) -> torch.Tensor:
    raw = feature_rel.new_zeros(feature_rel.shape[0], 2)
    for i, f in enumerate(features):
        for j, share in FEATURE_SOURCES[f]:
            raw[:, j] += share * feature_rel[:, i]
    return raw


def relevance_field(
    model: nn.Module,
    extent: Any,
    resolution: int = 64,
    *,
    method: str = "lrp",
    target: int | None = None,
    epsilon: float = 0.01,
) -> RelevanceFieldResult:
    """Relevance of the two inputs ``(x, y)`` at every point of the plane: which input decides where.

    Parameters
    ----------
    model
        A network from points ``(N, 2)`` to class logits (a :func:`playground_network` or your own).
    extent, resolution
        The plane, as in :func:`nbexplain.decision_surface`.
    method
        ``"lrp"`` (LRP-ε, default) or ``"gradient_x_input"`` (see the module notes).
    target
        The class explained: ``None`` (default) the predicted class at each point, or a class index.
    epsilon
        ε of LRP-ε (> 0; ignored by ``"gradient_x_input"``).

    Returns
    -------
    RelevanceFieldResult
        ``.relevance (2, R, R)``, ``.output (R, R)``, ``.total (R, R)``, ``.target``, ``.feature_relevance``.

    Examples
    --------
    >>> import nbexplain as nx
    >>> net = nx.playground_network(("x", "y", "xy"), hidden=(4,))
    >>> field = nx.relevance_field(net, (-1, 1, -1, 1), 16)
    >>> field.relevance.shape, field.feature_relevance.shape
    (torch.Size([2, 16, 16]), torch.Size([3, 16, 16]))
    """
    net = check_model(model, what="nx.relevance_field")
    check_choice(method, "method", RELEVANCE_METHODS)
    r = check_resolution(resolution)
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not float(epsilon) > 0:
        raise ValueError(f"`epsilon` must be a number > 0 (LRP-ε's stabiliser, e.g. 0.01), got {epsilon!r}.")
    return relevance_on_grid(net, plane_grid(extent, r), r, method, target, float(epsilon))


def relevance_on_grid(net: nn.Module, points: torch.Tensor, r: int, method: str, target: int | None,
                      epsilon: float) -> RelevanceFieldResult:
    """:func:`relevance_field` on the ``(r·r, 2)`` points of a plane grid, for a model and arguments already
    checked (what a run's :class:`~nbexplain.core.playground.sampler.PlaneSampler` calls every frame)."""
    children = list(net.children()) if isinstance(net, nn.Sequential) else []
    if is_playground_network(net):
        fmap = typing.cast(FeatureMap, children[0])
        features = fmap.features
        dev, dtype = model_device(net), model_dtype(net)
        feats = fmap(points.to(dev, dtype))
        head = children[1:]
        tgt = _check_target(target, typing.cast(nn.Linear, head[-1]).out_features)
        tvec = None if tgt is None else torch.full((len(points),), tgt, dtype=torch.int64, device=dev)
        if method == "lrp":
            frel, out, tvec_used = mlp_lrp_epsilon(head, feats, tvec, float(epsilon))
        else:
            frel, out, tvec_used = _gradient_x_input(nn.Sequential(*head), feats, tvec)
    elif children and isinstance(children[0], FeatureMap) and len(children) > 1:
        # a playground-shaped Sequential the fast path leaves alone (e.g. it carries hooks): explain its layers
        # after the feature map on the features, through nbexplain's own entry points (the hooks fire)
        features = children[0].features
        with torch.no_grad():
            feats = children[0](points.to(model_device(net), model_dtype(net)))
        frel, out, tvec_used = _generic(nn.Sequential(*children[1:]), feats, target, method, float(epsilon))
    else:
        features = ("x", "y")
        frel, out, tvec_used = _generic(net, points, target, method, float(epsilon))
    raw = _to_raw(frel.float(), features)

    def img(t: torch.Tensor) -> torch.Tensor:
        return as_images(t, r) if t.ndim == 2 else t.reshape(r, r).cpu().contiguous()

    relevance = img(raw)
    return RelevanceFieldResult(
        relevance=relevance, output=img(out.float()), total=relevance.sum(0), target=img(tvec_used.long()),
        feature_relevance=img(frel.float()), features=tuple(features), method=method,
    )


def _gradient_x_input(head: nn.Module, inputs: torch.Tensor,
                      target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        x = inputs.detach().requires_grad_(True)
        logits = head(x)
        tgt = logits.argmax(1).detach() if target is None else target
        picked = logits.gather(1, tgt[:, None])[:, 0]
        (grad,) = torch.autograd.grad(picked.sum(), x)  # only w.r.t. x: no parameter's .grad is touched
    return (x * grad).detach(), picked.detach(), tgt


def _generic(model: nn.Module, points: torch.Tensor, target: int | None, method: str,
             epsilon: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # nbexplain's own entry points: each runs the model in eval mode and leaves it exactly as found.
    from ..attribution.gradients import gradient_x_input
    from ..attribution.lrp import lrp

    logits, _ = run_layers(model, points)  # model: checked by relevance_field (or a Sequential of its parts)
    tgt_int = _check_target(target, logits.shape[1])
    tvec = logits.argmax(1).cpu() if tgt_int is None else torch.full((len(points),), tgt_int, dtype=torch.int64)
    picked = logits.gather(1, tvec.to(logits.device)[:, None])[:, 0]
    if method == "lrp":
        res = lrp(model, points, tvec, composite="epsilon", epsilon=epsilon, batch_size=None)
        rel = res.attribution
    else:
        rel = gradient_x_input(model, points, tvec, batch_size=4096).attribution
    return rel.detach(), picked, tvec
