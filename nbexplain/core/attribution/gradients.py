"""Sensitivity analysis: input gradients, gradient × input, SmoothGrad and integrated gradients.

Every function takes ``(model, inputs, target=None, *, ...)`` and returns an
:class:`~nbexplain.core.attribution.result.AttributionResult` whose ``.attribution`` has the shape of the
explained input ``x`` (``target=None``: the predicted class).
The model is run in eval mode by default and left exactly as it was found
(:func:`~nbexplain.core._base.hygiene.preserved`): gradients are taken with respect to the input only, so no
``.grad`` ever appears on a parameter. Work is split into chunks of at most ``batch_size`` forward rows,
so SmoothGrad and integrated gradients over many samples and steps never hold more than one chunk's
graph in memory.

A model with several inputs gets them as one batch — a tuple ``(x, mask)``, a dict of keyword inputs or
``nx.Inputs`` — and ``wrt=`` chooses the one explained (the first by default): the others are held fixed,
each sample's rows travelling with it through every noisy copy and path point, and the attribution has the
shape of the ``wrt`` input (see :mod:`nbexplain.core._base.model_inputs`).

Inputs are cast to the model's device and floating dtype (:func:`~nbexplain.core._base.model_io.model_input`);
for floating ``x`` the attribution comes back on ``x``'s device in ``x``'s dtype. A model that returns a
tuple, dict or output object is explained through ``output=`` (an index, a key or a callable), checked by
one forward pass before any heavy work.

These functions need no hooks for floating ``x``, so they also run on TorchScript models
(``torch.jit.script``/``trace``); a ``torch.compile``'d model is explained through its eager module
(:mod:`~nbexplain.core._base.compiled`).

Token inputs
------------
For integer token ids ``x`` of shape ``(N, T)`` the attribution is computed at the output ``e`` of an
embedding layer (``embedding=``; found automatically when the model has exactly one ``nn.Embedding``),
``(N, T, D)``, and reduced over the ``D`` features to one value per token, ``(N, T)``, in float32 (float64
for a float64 model), on ``x``'s device. Each method is the float method applied in embedding space, and
the reduction follows what the per-feature values mean:

- products with the input (gradient × input, SmoothGrad × input, integrated gradients) are contributions
  that add up — to ``f(x) − f(baseline)`` for integrated gradients — so they are **summed, signed**, over
  the features; the completeness of integrated gradients carries over to ``Σ_t IG_t``;
- plain gradients (:func:`gradient`, :func:`smoothgrad`) are sensitivities, not contributions: their signed
  sum is the derivative along the arbitrary direction ``(1, …, 1)`` of embedding space and can cancel to
  0 for a token the output depends on strongly. They are reduced to the **L2 norm** ``‖∂f/∂e_t‖₂`` — the
  largest rate of change of ``f`` when token ``t``'s embedding moves (always ≥ 0, so ``absolute`` has no
  further effect).

References
----------
- Simonyan, Vedaldi, Zisserman (2014), *Deep inside convolutional networks* (gradient saliency).
- Shrikumar et al. (2016) / Ancona et al. (2018) (gradient × input).
- Smilkov et al. (2017), *SmoothGrad: removing noise by adding noise*.
- Sundararajan, Taly, Yan (2017), *Axiomatic attribution for deep networks* (integrated gradients; for
  text they integrate in embedding space from a zero or padding embedding, as here).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import nn

from .._base.machinery import batch_slices, check_progress, progress_bar
from .._base.model_inputs import InputKey
from .._base.model_io import OutputArg, model_input
from .._base.targets import Target, TargetArg, as_target
from .._base.validation import check_choice, check_positive_int, check_tensor, renamed_arguments
from .result import AttributionResult, IntegratedGradientsResult, resolved_target
from .space import (
    AttributionInputs,
    AttributionSpace,
    bind_target,
    predicted_classes,
    prepare_attribution,
    target_scores,
)

__all__ = [
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "IG_METHODS",
    "target_scores",
]

#: Quadrature rules accepted by :func:`integrated_gradients`.
IG_METHODS = ("gausslegendre", "riemann_trapezoid")


# ----------------------------------------------------------------------------------------------------
# shared plumbing
# ----------------------------------------------------------------------------------------------------


def _prepare(
    model: Any, x: Any, target: Any, batch_size: Any, output: Any, embedding: Any, wrt: Any, probe: bool = True
) -> tuple[AttributionSpace, Target | None, int]:
    """Validate everything before any work; the target is ``None`` when it is the predicted class (resolved from
    the first pass over the samples)."""
    batch_size = check_positive_int(batch_size, "batch_size")
    model, x, space = prepare_attribution(model, x, output, embedding, probe=probe, wrt=wrt)
    t = None if target is None else bind_target(target, x.shape[0])
    return space, t, batch_size


def _bar(total: int, desc: str, progress: bool | None) -> Any:
    """A bar over ``total`` model passes, by the one progress policy (``None``: once the call runs > 2 s)."""
    return progress_bar(total=total, desc=desc, progress=progress)


def _check_bool(value: Any, argname: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{argname}` must be True or False, got {value!r}.")
    return bool(value)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _joined_target(t: Target | None, parts: list[Target], n: int) -> Target:
    """The target over all ``n`` samples: the given one, or the predicted classes read chunk by chunk."""
    if t is not None:
        return t
    return as_target(_cat([p.classes for p in parts]), n)


def clean_pass(
    space: AttributionSpace, t: Target | None, batch_size: int, method: str
) -> tuple[Target, torch.Tensor, torch.Tensor]:
    """One no-grad pass over the samples at their own points (call inside ``space.active``): the target (the
    predicted classes for ``t=None``), the selected output (detached) and the explained score, float64 ``(N,)``."""
    outs, scores, parts = [], [], []
    with torch.no_grad():
        for sl in batch_slices(space.n, batch_size):
            out = space.forward(sl)[0]
            tb = as_target(predicted_classes(out, method), int(out.shape[0])) if t is None else t[sl]
            parts.append(tb)
            outs.append(out.detach())
            scores.append(target_scores(out, tb).detach().to(torch.float64))
    tt = _joined_target(t, parts, space.n)
    return tt, _cat(outs), _cat(scores).to(space.x.device)


# ----------------------------------------------------------------------------------------------------
# gradient and gradient × input
# ----------------------------------------------------------------------------------------------------

def _gradient_pass(
    space: AttributionSpace, t: Target | None, batch_size: int, eval_mode: bool, progress: bool | None,
    desc: str, method: str, times_input: bool = False, absolute: bool = False,
) -> tuple[torch.Tensor, Target, torch.Tensor, torch.Tensor]:
    """Input gradients (floating ``x``: per component; token ids: reduced per token) in chunks, with the target
    (resolved: the predicted class of each chunk's own pass for ``t=None``), the output and the scores."""
    x = space.x
    out = torch.empty(tuple(x.shape), dtype=space.result_dtype, device=x.device) if space.tokens else torch.empty_like(x)
    outs, scores, parts = [], [], []
    slices = list(batch_slices(space.n, batch_size))
    with space.active(eval_mode), _bar(len(slices), desc, progress) as bar:
        for sl in slices:
            g, z, o, tb, sc = space.grad_output(sl, None if t is None else t[sl], method=method)
            if space.tokens:
                r = space.reduce(g, times=z if times_input else None)
            else:
                r = g.abs() if absolute else g
            out[sl] = r.to(out.device, out.dtype)
            outs.append(o)
            scores.append(sc.to(torch.float64))
            parts.append(tb)
            bar.update(1)
    return out, _joined_target(t, parts, space.n), _cat(outs), _cat(scores).to(x.device)


@renamed_arguments(x="inputs", eval="eval_mode")
def gradient(
    model: nn.Module,
    inputs: AttributionInputs,
    target: TargetArg | None = None,
    *,
    wrt: InputKey | None = None,
    absolute: bool = False,
    output: OutputArg = None,
    embedding: str | None = None,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
) -> AttributionResult:
    """Input gradient ∂f_target/∂x (sensitivity analysis), signed or absolute.

    Parameters
    ----------
    model
        Any ``nn.Module``: class scores ``(N, C)`` (``(N,)`` is read as one output), a sequence
        ``(N, T, V)`` (a language model) or a dense map ``(N, C, H, W)`` (segmentation); also a TorchScript
        model (floating inputs only) or a ``torch.compile``'d one.
    inputs
        Input batch ``(N, …)``, floating point, or integer token ids ``(N, T)``. A model with several inputs
        gets them as one batch: a tuple ``(x, mask)`` is ``model(x, mask)``, a dict ``{"input_ids": ids,
        "attention_mask": m}`` is ``model(**inputs)``, ``nx.Inputs(x, mask=m)`` is ``model(x, mask=m)``. Every
        tensor holds one row per sample (the same ``N``); values that are not tensors are passed unchanged.
        Labels are not inputs: they go in ``target``.
    target
        What to explain (:mod:`nbexplain.core._base.targets`): for ``(N, C)`` scores a class, an int for every
        sample or a LongTensor ``(N,)``; for a sequence ``(N, T, V)`` a ``(position, token)`` tuple, e.g.
        ``(-1, 40)`` (token 40 at the last position; each an int or one per sample); for a dense map a class
        (its map summed over all positions) or ``nx.Target.region(class, mask)``; for any output a function
        ``lambda out: ...`` returning one score per sample ``(N,)``. ``None`` (default): the predicted class of
        each sample (the argmax of ``(N, C)`` scores; other outputs need an explicit target).
    wrt
        With several inputs, the one explained: a position (``wrt=1``) or a keyword name (``wrt="mask"``);
        ``None``: the first. The others are held fixed — each sample's own rows go into the model with it,
        also in noisy copies (:func:`~nbexplain.noise_tunnel`), integrated gradients' path points and RDE's
        noise draws — and the attribution has the shape of the ``wrt`` input (integer token ids there are
        attributed through ``embedding``, as below). To explain a bool mask, pass it as floats if the model
        accepts that.
    absolute
        Return ``|∂f/∂x|`` (the "saliency map" of Simonyan et al.) instead of the signed gradient.
        (Token inputs always get the per-token L2 norm ``‖∂f/∂e_t‖₂``, which is ≥ 0.)
    output
        Which of the model's outputs to explain when it returns a tuple, dict or output object: an index,
        a key/attribute name, or a callable on the output (see :func:`nbexplain.core._base.model_io.select_output`).
    embedding
        For token inputs: the name of the layer (usually an ``nn.Embedding``) whose output ``(N, T, D)`` is
        attributed; the result is reduced over its ``D`` features to ``(N, T)`` (see the module notes).
        ``None``: found automatically when the input is an integer tensor and the model has exactly one
        ``nn.Embedding``.
    batch_size
        Largest number of rows sent through the model at once.
    eval_mode
        Run the model in eval mode (batch norm statistics, no dropout); the mode is restored afterwards.
    progress
        Show a progress bar (``None``: once the call has run for more than 2 s).

    Returns
    -------
    AttributionResult
        ``.attribution``: the gradient, shape and dtype of the input (of the ``wrt`` input, with several), on its
        device; for token ids ``(N, T)`` in float32 (float64 for a float64 model). ``.target`` (resolved),
        ``.output`` (the selected output), ``.score`` (the explained score, float64 ``(N,)``), all from the
        same forward pass.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Linear(3, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 0.0]]))
    >>> nx.gradient(net, torch.ones(1, 3), 0).attribution
    tensor([[ 1.0000, -2.0000,  0.5000]])
    >>> nx.gradient(net, torch.ones(1, 3), 0, absolute=True).attribution
    tensor([[1.0000, 2.0000, 0.5000]])
    >>> nx.gradient(net, torch.ones(1, 3)).target   # None: the predicted class (score -0.5 vs 1.0)
    tensor([1])

    Two inputs, ``f(a, b) = aᵀ W b``, explained in ``b`` with ``a`` held fixed (``∂f/∂b = Wᵀ a``):

    >>> bil = torch.nn.Bilinear(2, 2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = bil.weight.copy_(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]))
    >>> nx.gradient(bil, (torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])), 0, wrt=1).attribution
    tensor([[1., 2.]])
    """
    absolute = _check_bool(absolute, "absolute")
    eval_mode = _check_bool(eval_mode, "eval_mode")
    check_progress(progress)
    # No separate probe pass: the first chunk checks `output=` and is no heavier than a probe's work.
    space, t, batch_size = _prepare(model, inputs, target, batch_size, output, embedding, wrt, probe=False)
    attr, t, out, score = _gradient_pass(
        space, t, batch_size, eval_mode, progress, "gradient", "gradient", absolute=absolute
    )
    settings = dict(absolute=absolute, wrt=space.wrt, output=output, embedding=_site_name(space),
                    batch_size=batch_size, eval_mode=eval_mode)
    return AttributionResult(attr, resolved_target(t), out, score, "gradient", settings)


@renamed_arguments(x="inputs", eval="eval_mode")
def gradient_x_input(
    model: nn.Module,
    inputs: AttributionInputs,
    target: TargetArg | None = None,
    *,
    wrt: InputKey | None = None,
    output: OutputArg = None,
    embedding: str | None = None,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
) -> AttributionResult:
    """Gradient × input, ``x ⊙ ∂f_target/∂x``.

    For a ReLU network without biases this equals LRP-0, and its entries sum to ``f_target(x)``
    (``.conservation`` is then 1). Parameters as in :func:`gradient` (several inputs: ``wrt=`` there). For
    token ids: ``Σ_d e_{t,d} ∂f/∂e_{t,d}``, the signed sum over the embedding features of token ``t`` (shape
    ``(N, T)``).

    Returns
    -------
    AttributionResult
        As in :func:`gradient`, with the map ``x ⊙ ∂f/∂x`` in ``.attribution``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Linear(3, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
    >>> res = nx.gradient_x_input(net, torch.tensor([[2.0, 1.0, 4.0]]), 0)
    >>> res.attribution, res.conservation
    (tensor([[ 2., -2.,  2.]]), tensor([1.], dtype=torch.float64))
    """
    eval_mode = _check_bool(eval_mode, "eval_mode")
    check_progress(progress)
    space, t, batch_size = _prepare(model, inputs, target, batch_size, output, embedding, wrt, probe=False)
    g, t, out, score = _gradient_pass(
        space, t, batch_size, eval_mode, progress, "gradient × input", "gradient_x_input", times_input=True
    )
    attr = g if space.tokens else g * space.x.to(g.device, g.dtype)
    settings = dict(wrt=space.wrt, output=output, embedding=_site_name(space), batch_size=batch_size,
                    eval_mode=eval_mode)
    return AttributionResult(attr, resolved_target(t), out, score, "gradient_x_input", settings)


def _site_name(space: AttributionSpace) -> str | None:
    return space.site.name if space.site is not None else None


# ----------------------------------------------------------------------------------------------------
# integrated gradients
# ----------------------------------------------------------------------------------------------------


def ig_nodes(steps: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes ``α_k`` in [0, 1] and weights ``w_k`` for ∫₀¹ g(α) dα ≈ Σ_k w_k g(α_k).

    ``"riemann_trapezoid"``: ``steps`` equally spaced nodes including both ends, weights
    ``1/(steps−1)`` with the two end weights halved (the composite trapezoid rule: weights sum to 1).
    ``"gausslegendre"``: the ``steps``-point Gauss–Legendre rule mapped from [−1, 1] to [0, 1]
    (exact for polynomials of degree ≤ 2·steps − 1).
    """
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy(0.5 * (nodes + 1.0)), torch.from_numpy(0.5 * weights)
    if steps < 2:
        raise ValueError("`steps` must be ≥ 2 for method='riemann_trapezoid' (it uses both end points).")
    alphas = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    w = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
    w[0] /= 2
    w[-1] /= 2
    return alphas, w


def _baseline_for(baseline: Any, x: torch.Tensor) -> torch.Tensor:
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        if not math.isfinite(float(baseline)):
            raise ValueError(f"`baseline` must be finite, got {baseline}.")
        return torch.full_like(x, float(baseline))
    b = check_tensor(baseline, "baseline", dtype_kind="float", finite=True).to(x.device, x.dtype)
    try:
        return torch.broadcast_to(b, x.shape).clone()
    except RuntimeError:
        raise ValueError(
            f"`baseline` has shape {tuple(b.shape)}, which does not broadcast to the input's shape "
            f"{tuple(x.shape)}. Pass a number, one sample of shape {tuple(x.shape[1:])}, or a full batch."
        ) from None


def _token_baseline(baseline: Any, space: AttributionSpace) -> Any:
    """Validate a baseline for token inputs: ``None``/a number (a constant embedding), a float tensor
    broadcastable to the embeddings ``(N, T, D)``, or integer baseline token ids broadcastable to ``x``."""
    if baseline is None or (isinstance(baseline, numbers.Real) and not isinstance(baseline, bool)):
        if baseline is not None and not math.isfinite(float(baseline)):
            raise ValueError(f"`baseline` must be finite, got {baseline}.")
        return baseline
    b = check_tensor(baseline, "baseline", finite=True)
    shape = (space.n,) + space.point_shape if b.is_floating_point() else tuple(space.x.shape)
    try:
        return torch.broadcast_to(b, shape)
    except RuntimeError:
        what = "embedding" if b.is_floating_point() else "token-id"
        raise ValueError(
            f"`baseline` is a {what} tensor of shape {tuple(b.shape)}, which does not broadcast to {shape}. For "
            f"token inputs pass None (zero embedding), a number, baseline token ids shaped like `inputs` "
            f"{tuple(space.x.shape)} (e.g. padding), or embeddings shaped {((space.n,) + space.point_shape)}."
        ) from None


def _ig_points(space: AttributionSpace, baseline: Any, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples' points and the baseline's, on the model's device in its dtype (call inside ``active``)."""
    if not space.tokens:
        base = _baseline_for(baseline, space.x)
        return model_input(space.x, space.model), model_input(base, space.model)
    chunks = list(batch_slices(space.n, batch_size))
    zd = torch.cat([space.points(sl) for sl in chunks])
    if baseline is None:
        return zd, torch.zeros_like(zd)
    if isinstance(baseline, numbers.Real):
        return zd, torch.full_like(zd, float(baseline))
    if baseline.is_floating_point():
        return zd, baseline.to(zd.device, zd.dtype).clone()
    return zd, torch.cat([space.embed_ids(baseline[sl], sl) for sl in chunks])


@renamed_arguments(
    x="inputs", eval="eval_mode",
    return_error="was removed: the result always carries the completeness error as `.error`",
)
def integrated_gradients(
    model: nn.Module,
    inputs: AttributionInputs,
    target: TargetArg | None = None,
    *,
    wrt: InputKey | None = None,
    baseline: float | torch.Tensor | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    output: OutputArg = None,
    embedding: str | None = None,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
) -> IntegratedGradientsResult:
    """Integrated gradients: ``(x − x̄) ⊙ ∫₀¹ ∇f(x̄ + α (x − x̄)) dα`` by quadrature.

    Completeness: the attributions of a sample sum to ``f(x) − f(x̄)``; the difference is the
    quadrature error, returned as ``.error`` (raise ``steps`` until it is small). For token ids the path runs
    in embedding space, from the baseline embedding ``ē`` to the tokens' embedding ``e`` (the ids still go
    into the model; the embedding layer's output is replaced), and the attribution of token ``t`` is
    ``Σ_d (e − ē)_{t,d} ∫ ∂f/∂e_{t,d}``: completeness then reads ``Σ_t IG_t = f(e) − f(ē)``.

    Parameters
    ----------
    model, inputs, target, wrt
        As in :func:`gradient` (``target=None``: the predicted class at the input). With several inputs the
        path runs in the ``wrt`` input; the others are held at each sample's own values at every path point.
    baseline
        The reference input x̄ (of the ``wrt`` input): ``None`` (zeros), a number, one sample (broadcast to
        the batch) or a tensor of the input's shape. For token ids: ``None`` (the zero embedding), a number (a
        constant embedding), baseline token ids shaped like the input (e.g. all padding; embedded by the
        model's embedding layer) or embeddings broadcastable to ``(N, T, D)``.
    steps
        Number of quadrature nodes (gradient evaluations per sample).
    method
        ``"gausslegendre"`` (default; most accurate per step) or ``"riemann_trapezoid"``. See
        :func:`ig_nodes`. Note: captum's ``"riemann_trapezoid"`` weights nodes by ``1/steps`` (weights
        summing to ``1 − 1/steps``); nbexplain uses the composite trapezoid rule, whose weights sum to 1.
    output, embedding
        As in :func:`gradient`.
    batch_size
        Largest number of path points sent through the model at once.
    eval_mode, progress
        As in :func:`gradient`.

    Returns
    -------
    IntegratedGradientsResult
        ``.attribution`` with the shape of the input (accumulated in float64, returned in the input's dtype; for
        token ids ``(N, T)`` as in :func:`gradient`), ``.target``, ``.output`` and ``.score`` at the input,
        ``.baseline_score`` (``f(x̄)``, float64) and ``.error``, the completeness error
        ``Σ attribution − (f(x) − f(x̄))`` per sample (float64). Both scores cost one forward pass each, on
        top of the ``N · steps`` gradient evaluations.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> res = nx.integrated_gradients(net, torch.rand(4, 3), 1, steps=32)
    >>> res.attribution.shape, bool(res.error.abs().max() < 1e-4)
    (torch.Size([4, 3]), True)
    """
    steps = check_positive_int(steps, "steps")
    method = check_choice(method, "method", IG_METHODS)
    eval_mode = _check_bool(eval_mode, "eval_mode")
    check_progress(progress)
    space, t, batch_size = _prepare(model, inputs, target, batch_size, output, embedding, wrt)
    if space.tokens:
        baseline = _token_baseline(baseline, space)
    else:
        _baseline_for(baseline, space.x)  # validate before any heavy work
    alphas, weights = ig_nodes(steps, method)

    n, shape, dev = space.n, space.point_shape, space.device
    total = n * steps
    acc = torch.zeros((n,) + shape, dtype=torch.float64, device=dev)
    a_dev = alphas.to(dev, space.dtype)
    w_dev = weights.to(dev)
    view = (-1,) + (1,) * len(shape)
    with space.active(eval_mode), _bar(math.ceil(total / batch_size) + 1, "integrated gradients", progress) as bar:
        zd, bd = _ig_points(space, baseline, batch_size)
        t, out, fx, fb = _ig_scores(space, t, zd, bd, batch_size)
        bar.update(1)
        for rs in batch_slices(total, batch_size):
            rows = torch.arange(rs.start, rs.stop, device=dev)
            si, ki = rows // steps, rows % steps
            pts = bd[si] + a_dev[ki].view(view) * (zd[si] - bd[si])
            g, _ = space.grad(si, t[si.cpu()], z=pts)
            acc.index_add_(0, si, g.to(torch.float64) * w_dev[ki].view(view))
            bar.update(1)
        attr64 = acc * (zd - bd).to(torch.float64)
    if space.tokens:
        attr = attr64.sum(dim=-1).to(space.x.device, space.result_dtype)
    else:
        attr = attr64.to(space.x.device, space.x.dtype)
    err = attr64.reshape(n, -1).sum(dim=1) - (fx - fb)
    settings = dict(baseline=baseline, steps=steps, method=method, wrt=space.wrt, output=output,
                    embedding=_site_name(space), batch_size=batch_size, eval_mode=eval_mode)
    xd = space.x.device
    return IntegratedGradientsResult(
        attr, resolved_target(t), out, fx.to(xd), "integrated_gradients", settings,
        error=err.to(xd), baseline_score=fb.to(xd),
    )


def _ig_scores(
    space: AttributionSpace, t: Target | None, zd: torch.Tensor, bd: torch.Tensor, batch_size: int
) -> tuple[Target, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The target (``None``: the predicted class at the input), the output at the input, and the explained
    scores ``f(x)`` and ``f(x̄)`` in float64, on the model's device (call inside ``space.active``)."""
    outs, fx, fb, parts = [], [], [], []
    with torch.no_grad():
        for sl in batch_slices(space.n, batch_size):
            out = space.forward(sl, zd[sl])[0]
            tb = as_target(predicted_classes(out, "integrated_gradients"), int(out.shape[0])) if t is None else t[sl]
            parts.append(tb)
            outs.append(out.detach())
            fx.append(target_scores(out, tb).to(torch.float64))
            fb.append(space.scores(sl, tb, z=bd[sl]).to(torch.float64))
    return _joined_target(t, parts, space.n), _cat(outs), _cat(fx), _cat(fb)
