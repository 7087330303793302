"""Sensitivity analysis: input gradients, gradient × input, SmoothGrad and integrated gradients.

Every function takes ``(model, x, target, ...)`` and returns an attribution with the shape of ``x``.
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

from .space import AttributionInputs, AttributionSpace, prepare_attribution, target_scores
from .._base.machinery import batch_slices, progress_bar
from .._base.model_inputs import InputKey
from .._base.model_io import OutputArg, model_input
from .._base.targets import Target, TargetArg, as_target
from .._base.validation import check_choice, check_positive_int, check_tensor

__all__ = [
    "gradient",
    "gradient_x_input",
    "smoothgrad",
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
) -> tuple[AttributionSpace, Target, int]:
    batch_size = check_positive_int(batch_size, "batch_size")
    model, x, space = prepare_attribution(model, x, output, embedding, probe=probe, wrt=wrt)
    t = as_target(target, x.shape[0])
    return space, t, batch_size


def _bar(total: int, desc: str, progress: bool | None) -> Any:
    """A bar over ``total`` model passes, by the one progress policy (``None``: once the call runs > 2 s)."""
    return progress_bar(total=total, desc=desc, progress=progress)


def _check_bool(value: Any, argname: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{argname}` must be True or False, got {value!r}.")
    return bool(value)


# ----------------------------------------------------------------------------------------------------
# gradient and gradient × input
# ----------------------------------------------------------------------------------------------------

def _gradient_pass(
    space: AttributionSpace, t: Target, batch_size: int, eval: bool, progress: bool | None,
    desc: str, times_input: bool = False, absolute: bool = False,
) -> torch.Tensor:
    """Input gradients (floating ``x``: per component; token ids: reduced per token) in chunks."""
    x = space.x
    out = torch.empty(tuple(x.shape), dtype=space.result_dtype, device=x.device) if space.tokens else torch.empty_like(x)
    slices = list(batch_slices(space.n, batch_size))
    with space.active(eval), _bar(len(slices), desc, progress) as bar:
        for sl in slices:
            g, z = space.grad(sl, t[sl])
            if space.tokens:
                r = space.reduce(g, times=z if times_input else None)
            else:
                r = g.abs() if absolute else g
            out[sl] = r.to(out.device, out.dtype)
            bar.update(1)
    return out


def gradient(
    model: nn.Module,
    x: AttributionInputs,
    target: TargetArg,
    *,
    wrt: InputKey | None = None,
    absolute: bool = False,
    output: OutputArg = None,
    embedding: str | None = None,
    batch_size: int = 128,
    eval: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """Input gradient ∂f_target/∂x (sensitivity analysis), signed or absolute.

    Parameters
    ----------
    model
        Any ``nn.Module``: class scores ``(N, C)`` (``(N,)`` is read as one output), a sequence
        ``(N, T, V)`` (a language model) or a dense map ``(N, C, H, W)`` (segmentation); also a TorchScript
        model (floating ``x`` only) or a ``torch.compile``'d one.
    x
        Input batch ``(N, …)``, floating point, or integer token ids ``(N, T)``. A model with several inputs
        gets them as one batch: a tuple ``(x, mask)`` is ``model(x, mask)``, a dict ``{"input_ids": ids,
        "attention_mask": m}`` is ``model(**x)``, ``nx.Inputs(x, mask=m)`` is ``model(x, mask=m)``. Every tensor
        holds one row per sample (the same ``N``); values that are not tensors are passed unchanged. Labels
        are not inputs: they go in ``target``.
    target
        What to explain (:mod:`nbexplain.core._base.targets`): for ``(N, C)`` scores a class, an int for every
        sample or a LongTensor ``(N,)``; for a sequence ``(N, T, V)`` a ``(position, token)`` tuple, e.g.
        ``(-1, 40)`` (token 40 at the last position; each an int or one per sample); for a dense map a class
        (its map summed over all positions) or ``nx.Target.region(class, mask)``; for any output a function
        ``lambda out: ...`` returning one score per sample ``(N,)``.
    wrt
        With several inputs, the one explained: a position (``wrt=1``) or a keyword name (``wrt="mask"``);
        ``None``: the first. The others are held fixed — each sample's own rows go into the model with it,
        also in SmoothGrad's noisy copies, integrated gradients' path points and RDE's noise draws — and the
        result has the shape of the ``wrt`` input (integer token ids there are attributed through
        ``embedding``, as below). To explain a bool mask, pass it as floats if the model accepts that.
    absolute
        Return ``|∂f/∂x|`` (the "saliency map" of Simonyan et al.) instead of the signed gradient.
        (Token inputs always get the per-token L2 norm ``‖∂f/∂e_t‖₂``, which is ≥ 0.)
    output
        Which of the model's outputs to explain when it returns a tuple, dict or output object: an index,
        a key/attribute name, or a callable on the output (see :func:`nbexplain.core._base.model_io.select_output`).
    embedding
        For token inputs: the name of the layer (usually an ``nn.Embedding``) whose output ``(N, T, D)`` is
        attributed; the result is reduced over its ``D`` features to ``(N, T)`` (see the module notes).
        ``None``: found automatically when ``x`` is an integer tensor and the model has exactly one
        ``nn.Embedding``.
    batch_size
        Largest number of rows sent through the model at once.
    eval
        Run the model in eval mode (batch norm statistics, no dropout); the mode is restored afterwards.
    progress
        Show a progress bar (``None``: once the call has run for more than 2 s).

    Returns
    -------
    torch.Tensor
        The gradient, shape and dtype of ``x`` (of the ``wrt`` input, with several), on its device; for token
        ids ``(N, T)`` in float32 (float64 for a float64 model).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Linear(3, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 0.0]]))
    >>> nx.gradient(net, torch.ones(1, 3), 0)
    tensor([[ 1.0000, -2.0000,  0.5000]])
    >>> nx.gradient(net, torch.ones(1, 3), 0, absolute=True)
    tensor([[1.0000, 2.0000, 0.5000]])

    Two inputs, ``f(a, b) = aᵀ W b``, explained in ``b`` with ``a`` held fixed (``∂f/∂b = Wᵀ a``):

    >>> bil = torch.nn.Bilinear(2, 2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = bil.weight.copy_(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]))
    >>> nx.gradient(bil, (torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])), 0, wrt=1)
    tensor([[1., 2.]])
    """
    absolute = _check_bool(absolute, "absolute")
    # No separate probe pass: the first chunk checks `output=` and is no heavier than a probe's work.
    space, t, batch_size = _prepare(model, x, target, batch_size, output, embedding, wrt, probe=False)
    return _gradient_pass(space, t, batch_size, eval, progress, "gradient", absolute=absolute)


def gradient_x_input(
    model: nn.Module,
    x: AttributionInputs,
    target: TargetArg,
    *,
    wrt: InputKey | None = None,
    output: OutputArg = None,
    embedding: str | None = None,
    batch_size: int = 128,
    eval: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """Gradient × input, ``x ⊙ ∂f_target/∂x``.

    For a ReLU network without biases this equals LRP-0, and its entries sum to ``f_target(x)``.
    Parameters as in :func:`gradient` (several inputs: ``wrt=`` there). For token ids:
    ``Σ_d e_{t,d} ∂f/∂e_{t,d}``, the signed sum over the embedding features of token ``t`` (shape ``(N, T)``).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Linear(3, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
    >>> nx.gradient_x_input(net, torch.tensor([[2.0, 1.0, 4.0]]), 0)
    tensor([[ 2., -2.,  2.]])
    """
    space, t, batch_size = _prepare(model, x, target, batch_size, output, embedding, wrt, probe=False)
    g = _gradient_pass(space, t, batch_size, eval, progress, "gradient × input", times_input=True)
    return g if space.tokens else g * space.x.to(g.device, g.dtype)


# ----------------------------------------------------------------------------------------------------
# SmoothGrad
# ----------------------------------------------------------------------------------------------------


def _noisy_copies(src: torch.Tensor, n_samples: int, noise_level: float, gen: torch.Generator | None) -> torch.Tensor:
    """``n_samples`` noisy copies of every sample of ``src`` (on the CPU, in ``src``'s dtype), σ per sample."""
    noisy = []
    for i in range(src.shape[0]):
        flat = src[i].reshape(-1)
        rng = float((flat.amax() - flat.amin()).to(torch.float64))
        sigma = float(noise_level) * (rng if rng > 0 else 1.0)
        # Unit noise is drawn in float32 whatever the dtype (as captum does), then scaled.
        eps = torch.randn((n_samples,) + tuple(src.shape[1:]), generator=gen, dtype=torch.float32)
        noisy.append(src[i].detach().cpu().unsqueeze(0) + (sigma * eps).to(src.dtype))
    return torch.cat(noisy)


def smoothgrad(
    model: nn.Module,
    x: AttributionInputs,
    target: TargetArg,
    *,
    wrt: InputKey | None = None,
    noise_level: float = 0.15,
    n_samples: int = 50,
    seed: int | None = 0,
    magnitude: bool = False,
    times_input: bool = False,
    output: OutputArg = None,
    embedding: str | None = None,
    batch_size: int = 128,
    eval: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """SmoothGrad: the input gradient averaged over Gaussian-perturbed copies of the input.

    ``SG(x) = 1/n Σ_i ∇f(x + ε_i)``, ``ε_i ~ N(0, σ²)`` with ``σ = noise_level · (max(x) − min(x))``
    taken per sample (Smilkov et al. recommend 10–20 % of the input range and about 50 samples).
    For token ids the noise is added to the embedding ``e`` (σ from each sample's range of embedding
    values), and the averaged embedding gradient (of ``|∇f|`` with ``magnitude``) is reduced per token:
    its L2 norm over the features, or with ``times_input`` the signed sum of ``e ⊙ SG``.

    Parameters
    ----------
    model, x, target, wrt
        As in :func:`gradient`. With several inputs only the ``wrt`` input gets noise; every noisy copy goes
        into the model with its sample's other inputs.
    noise_level
        σ relative to each sample's value range; ``0`` gives the plain gradient. When a sample is
        constant its range is taken as 1.
    n_samples
        Number of noisy copies per sample.
    seed
        Seed of the noise (a private generator: the global RNG is not touched). ``None`` draws fresh
        noise from the global RNG. For a given seed the result does not depend on ``batch_size``: the
        noise of sample ``i`` is drawn as one ``(n_samples, …)`` block after those of samples ``0…i−1``.
    magnitude
        Average ``|∇f|`` instead of ``∇f`` (the unsigned variant).
    times_input
        Multiply the averaged gradient by ``x`` (SmoothGrad × input).
    output, embedding
        As in :func:`gradient`.
    batch_size
        Largest number of noisy rows sent through the model at once.
    eval, progress
        As in :func:`gradient`.

    Returns
    -------
    torch.Tensor
        Shape and dtype of ``x``; for token ids ``(N, T)`` as in :func:`gradient`.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> sg = nx.smoothgrad(net, torch.rand(2, 4), target=1, n_samples=16, seed=0)
    >>> sg.shape
    torch.Size([2, 4])
    """
    if isinstance(noise_level, bool) or not isinstance(noise_level, numbers.Real) or not math.isfinite(noise_level):
        raise TypeError(f"`noise_level` must be a finite number ≥ 0 (a fraction of the input range), got {noise_level!r}.")
    if noise_level < 0:
        raise ValueError(f"`noise_level` must be ≥ 0, got {noise_level}. It is σ / (max(x) − min(x)), e.g. 0.15.")
    n_samples = check_positive_int(n_samples, "n_samples")
    magnitude = _check_bool(magnitude, "magnitude")
    times_input = _check_bool(times_input, "times_input")
    gen: torch.Generator | None = None
    if seed is not None:
        check_positive_int(seed, "seed", allow_zero=True)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
    space, t, batch_size = _prepare(model, x, target, batch_size, output, embedding, wrt)

    n, pshape = space.n, space.point_shape
    acc = torch.zeros((n,) + pshape, dtype=torch.float64, device=space.device)
    emb = torch.empty((n,) + pshape, dtype=space.dtype, device=space.device) if space.tokens else None
    # Samples per chunk: whole samples so that the noise stream is independent of batch_size.
    per_chunk = max(1, batch_size // n_samples)
    chunks = list(batch_slices(n, per_chunk))
    n_fwd = sum(math.ceil((sl.stop - sl.start) * n_samples / batch_size) for sl in chunks)
    with space.active(eval), _bar(n_fwd, "smoothgrad", progress) as bar:
        for sl in chunks:
            m = sl.stop - sl.start
            src = space.x[sl] if emb is None else space.points(sl)
            if emb is not None:
                emb[sl] = src
            rows = _noisy_copies(src, n_samples, noise_level, gen).to(space.device, space.dtype)
            rows_i = torch.arange(sl.start, sl.stop).repeat_interleave(n_samples)
            rows_t = t[sl].repeat_interleave(n_samples)
            grads = torch.empty_like(rows)
            for rs in batch_slices(rows.shape[0], batch_size):
                g, _ = space.grad(rows_i[rs], rows_t[rs], z=rows[rs])
                grads[rs] = g.abs() if magnitude else g
                bar.update(1)
            acc[sl] = grads.reshape((m, n_samples) + pshape).to(torch.float64).mean(dim=1)
    if emb is not None:
        return space.reduce(acc, times=emb if times_input else None)
    out = acc.to(space.x.device, space.x.dtype)
    return out * space.x if times_input else out


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
            f"token inputs pass None (zero embedding), a number, baseline token ids shaped like `x` "
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


def integrated_gradients(
    model: nn.Module,
    x: AttributionInputs,
    target: TargetArg,
    *,
    wrt: InputKey | None = None,
    baseline: float | torch.Tensor | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int = 128,
    return_error: bool = False,
    output: OutputArg = None,
    embedding: str | None = None,
    eval: bool = True,
    progress: bool | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients: ``(x − x̄) ⊙ ∫₀¹ ∇f(x̄ + α (x − x̄)) dα`` by quadrature.

    Completeness: the attributions of a sample sum to ``f(x) − f(x̄)``; the difference is the
    quadrature error, returned with ``return_error=True`` (raise ``steps`` until it is small).
    For token ids the path runs in embedding space, from the baseline embedding ``ē`` to the tokens'
    embedding ``e`` (the ids still go into the model; the embedding layer's output is replaced), and
    the attribution of token ``t`` is ``Σ_d (e − ē)_{t,d} ∫ ∂f/∂e_{t,d}``: completeness then reads
    ``Σ_t IG_t = f(e) − f(ē)``.

    Parameters
    ----------
    model, x, target, wrt
        As in :func:`gradient`. With several inputs the path runs in the ``wrt`` input; the others are held
        at each sample's own values at every path point.
    baseline
        The reference input x̄ (of the ``wrt`` input): ``None`` (zeros), a number, one sample (broadcast to
        the batch) or a tensor of ``x``'s shape. For token ids: ``None`` (the zero embedding), a number (a constant
        embedding), baseline token ids shaped like ``x`` (e.g. all padding; embedded by the model's
        embedding layer) or embeddings broadcastable to ``(N, T, D)``.
    steps
        Number of quadrature nodes (gradient evaluations per sample).
    method
        ``"gausslegendre"`` (default; most accurate per step) or ``"riemann_trapezoid"``. See
        :func:`ig_nodes`. Note: captum's ``"riemann_trapezoid"`` weights nodes by ``1/steps`` (weights
        summing to ``1 − 1/steps``); nbexplain uses the composite trapezoid rule, whose weights sum to 1.
    batch_size
        Largest number of path points sent through the model at once.
    return_error
        Also return the completeness error ``Σ attributions − (f(x) − f(x̄))`` per sample, shape ``(N,)``
        (float64).
    output, embedding
        As in :func:`gradient`.
    eval, progress
        As in :func:`gradient`.

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        Attributions with the shape of ``x`` (accumulated in float64, returned in ``x``'s dtype; for token
        ids ``(N, T)`` as in :func:`gradient`), and the completeness error when ``return_error`` is true.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> attr, err = nx.integrated_gradients(net, torch.rand(4, 3), 1, steps=32, return_error=True)
    >>> attr.shape, bool(err.abs().max() < 1e-4)
    (torch.Size([4, 3]), True)
    """
    steps = check_positive_int(steps, "steps")
    method = check_choice(method, "method", IG_METHODS)
    return_error = _check_bool(return_error, "return_error")
    space, t, batch_size = _prepare(model, x, target, batch_size, output, embedding, wrt)
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
    t_dev = t.to(dev)
    view = (-1,) + (1,) * len(shape)
    with space.active(eval), _bar(math.ceil(total / batch_size), "integrated gradients", progress) as bar:
        zd, bd = _ig_points(space, baseline, batch_size)
        for rs in batch_slices(total, batch_size):
            rows = torch.arange(rs.start, rs.stop, device=dev)
            si, ki = rows // steps, rows % steps
            pts = bd[si] + a_dev[ki].view(view) * (zd[si] - bd[si])
            g, _ = space.grad(si, t_dev[si], z=pts)
            acc.index_add_(0, si, g.to(torch.float64) * w_dev[ki].view(view))
            bar.update(1)
        attr64 = acc * (zd - bd).to(torch.float64)
        if space.tokens:
            attr = attr64.sum(dim=-1).to(space.x.device, space.result_dtype)
        else:
            attr = attr64.to(space.x.device, space.x.dtype)
        if not return_error:
            return attr
        fx, fb = [], []
        for sl in batch_slices(n, batch_size):
            fx.append(space.scores(sl, t[sl], z=zd[sl]).to(torch.float64))
            fb.append(space.scores(sl, t[sl], z=bd[sl]).to(torch.float64))
        delta = torch.cat(fx) - torch.cat(fb)
        err = attr64.reshape(n, -1).sum(dim=1) - delta
    return attr, err.to(space.x.device)
