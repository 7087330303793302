"""Sensitivity analysis: input gradients, gradient × input, SmoothGrad and integrated gradients.

Every function takes ``(model, x, target, ...)`` and returns an attribution with the shape of ``x``
(on ``x``'s device, in ``x``'s dtype). The model is run in eval mode by default and left exactly as it
was found (:func:`~nbexplain.core.hygiene.preserved`): gradients are taken with respect to the input
only, so no ``.grad`` ever appears on a parameter. Work is split into chunks of at most
``batch_size`` forward rows, so SmoothGrad and integrated gradients over many samples and steps never
hold more than one chunk's graph in memory.

References
----------
- Simonyan, Vedaldi, Zisserman (2014), *Deep inside convolutional networks* (gradient saliency).
- Shrikumar et al. (2016) / Ancona et al. (2018) (gradient × input).
- Smilkov et al. (2017), *SmoothGrad: removing noise by adding noise*.
- Sundararajan, Taly, Yan (2017), *Axiomatic attribution for deep networks* (integrated gradients).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .hygiene import model_device, model_dtype, preserved
from .validation import check_choice, check_model, check_positive_int, check_target, check_tensor

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

# Show a progress bar when a call needs more than this many chunks.
_PROGRESS_CHUNKS = 8


# ----------------------------------------------------------------------------------------------------
# shared plumbing
# ----------------------------------------------------------------------------------------------------


def _check_input(x: Any, argname: str = "x") -> torch.Tensor:
    x = check_tensor(x, argname, min_ndim=2, dtype_kind="float", finite=True)
    if x.shape[0] == 0:
        raise ValueError(f"`{argname}` is an empty batch (shape {tuple(x.shape)}); pass at least one sample.")
    return x


def target_scores(output: torch.Tensor, target: torch.Tensor, argname: str = "target") -> torch.Tensor:
    """Pick each row's target score from a model output.

    ``output`` may be ``(N,)`` (a scalar model: only target 0 is valid), ``(N, C)`` or ``(N, C, …)``
    (the extra dimensions are summed, e.g. a segmentation map's class channel).
    """
    if output.ndim == 0:
        raise ValueError("The model returned a scalar; it must return one row per sample, shape (N, C).")
    if output.ndim == 1:
        output = output.unsqueeze(1)
    if output.ndim > 2:
        output = output.reshape(output.shape[0], output.shape[1], -1).sum(dim=2)
    n_classes = output.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n_classes):
        raise ValueError(
            f"`{argname}` contains class indices outside [0, {n_classes - 1}] "
            f"(got min {int(target.min())}, max {int(target.max())}); the model has {n_classes} outputs."
        )
    return output.gather(1, target.to(output.device).view(-1, 1)).squeeze(1)


@contextmanager
def _attribution_mode(model: nn.Module, eval: bool) -> Iterator[None]:
    """Eval mode (optional) and no parameter gradients, all undone by :func:`preserved` on exit.

    In train mode a forward pass updates buffers (batch-norm running statistics), so their values are
    snapshotted and written back too.
    """
    with preserved(model, values=not eval):
        if eval:
            model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        yield


def _input_grad(model: nn.Module, xb: torch.Tensor, tb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the target scores w.r.t. ``xb`` (a fresh leaf) and the scores themselves."""
    xb = xb.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = target_scores(model(xb), tb)
        (g,) = torch.autograd.grad(scores.sum(), xb)
    return g, scores.detach()


def _bar(total: int, desc: str, progress: bool | None) -> Any:
    show = total > _PROGRESS_CHUNKS if progress is None else bool(progress)
    return tqdm(total=total, desc=desc, disable=not show, leave=False)


class _Where:
    """Device and dtype the model computes in (inputs are moved there, results moved back)."""

    def __init__(self, model: nn.Module) -> None:
        self.device = model_device(model)
        self.dtype = model_dtype(model)

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(self.device, self.dtype)


def _prepare(model: Any, x: Any, target: Any, batch_size: Any) -> tuple[nn.Module, torch.Tensor, torch.Tensor, int, _Where]:
    model = check_model(model)
    x = _check_input(x)
    t = check_target(target, x.shape[0])
    batch_size = check_positive_int(batch_size, "batch_size")
    return model, x, t, batch_size, _Where(model)


def _check_bool(value: Any, argname: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{argname}` must be True or False, got {value!r}.")
    return bool(value)


# ----------------------------------------------------------------------------------------------------
# gradient and gradient × input
# ----------------------------------------------------------------------------------------------------


def gradient(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
    absolute: bool = False,
    batch_size: int = 128,
    eval: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """Input gradient ∂f_target/∂x (sensitivity analysis), signed or absolute.

    Parameters
    ----------
    model
        Any ``nn.Module`` returning ``(N, C)`` scores (``(N,)`` is read as one output).
    x
        Input batch ``(N, …)``, floating point.
    target
        Class to explain: an int for every sample or a LongTensor of shape ``(N,)``.
    absolute
        Return ``|∂f/∂x|`` (the "saliency map" of Simonyan et al.) instead of the signed gradient.
    batch_size
        Largest number of rows sent through the model at once.
    eval
        Run the model in eval mode (batch norm statistics, no dropout); the mode is restored afterwards.
    progress
        Show a progress bar (``None``: only for long runs).

    Returns
    -------
    torch.Tensor
        The gradient, shape and dtype of ``x``, on ``x``'s device.

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
    """
    model, x, t, batch_size, dev = _prepare(model, x, target, batch_size)
    absolute = _check_bool(absolute, "absolute")
    out = torch.empty_like(x)
    starts = range(0, x.shape[0], batch_size)
    with _attribution_mode(model, eval), _bar(len(starts), "gradient", progress) as bar:
        for s in starts:
            g, _ = _input_grad(model, dev(x[s : s + batch_size]), t[s : s + batch_size])
            out[s : s + batch_size] = (g.abs() if absolute else g).to(out.device, out.dtype)
            bar.update(1)
    return out


def gradient_x_input(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
    batch_size: int = 128,
    eval: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """Gradient × input, ``x ⊙ ∂f_target/∂x``.

    For a ReLU network without biases this equals LRP-0, and its entries sum to ``f_target(x)``.
    Parameters as in :func:`gradient`.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Linear(3, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
    >>> nx.gradient_x_input(net, torch.tensor([[2.0, 1.0, 4.0]]), 0)
    tensor([[ 2., -2.,  2.]])
    """
    g = gradient(model, x, target, batch_size=batch_size, eval=eval, progress=progress)
    return g * torch.as_tensor(x).to(g.device, g.dtype)


# ----------------------------------------------------------------------------------------------------
# SmoothGrad
# ----------------------------------------------------------------------------------------------------


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
    noise_level: float = 0.15,
    n_samples: int = 50,
    seed: int | None = 0,
    magnitude: bool = False,
    times_input: bool = False,
    batch_size: int = 128,
    eval: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """SmoothGrad: the input gradient averaged over Gaussian-perturbed copies of the input.

    ``SG(x) = 1/n Σ_i ∇f(x + ε_i)``, ``ε_i ~ N(0, σ²)`` with ``σ = noise_level · (max(x) − min(x))``
    taken per sample (Smilkov et al. recommend 10–20 % of the input range and about 50 samples).

    Parameters
    ----------
    model, x, target
        As in :func:`gradient`.
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
    batch_size
        Largest number of noisy rows sent through the model at once.
    eval, progress
        As in :func:`gradient`.

    Returns
    -------
    torch.Tensor
        Shape and dtype of ``x``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> sg = nx.smoothgrad(net, torch.rand(2, 4), target=1, n_samples=16, seed=0)
    >>> sg.shape
    torch.Size([2, 4])
    """
    model, x, t, batch_size, dev = _prepare(model, x, target, batch_size)
    if isinstance(noise_level, bool) or not isinstance(noise_level, numbers.Real) or not math.isfinite(noise_level):
        raise TypeError(f"`noise_level` must be a finite number ≥ 0 (a fraction of the input range), got {noise_level!r}.")
    if noise_level < 0:
        raise ValueError(f"`noise_level` must be ≥ 0, got {noise_level}. It is σ / (max(x) − min(x)), e.g. 0.15.")
    n_samples = check_positive_int(n_samples, "n_samples")
    magnitude = _check_bool(magnitude, "magnitude")
    times_input = _check_bool(times_input, "times_input")
    if seed is not None:
        check_positive_int(seed, "seed", allow_zero=True)
        gen: torch.Generator | None = torch.Generator(device="cpu").manual_seed(int(seed))
    else:
        gen = None

    n = x.shape[0]
    flat = x.reshape(n, -1)
    ranges = (flat.amax(dim=1) - flat.amin(dim=1)).to(torch.float64)
    ranges = torch.where(ranges > 0, ranges, torch.ones_like(ranges))
    sigma = (float(noise_level) * ranges).tolist()

    acc = torch.zeros((n,) + tuple(x.shape[1:]), dtype=torch.float64, device=dev.device)
    # Samples per chunk: whole samples so that the noise stream is independent of batch_size.
    per_chunk = max(1, batch_size // n_samples)
    chunks = list(range(0, n, per_chunk))
    n_fwd = sum(math.ceil(min(per_chunk, n - s) * n_samples / batch_size) for s in chunks)
    with _attribution_mode(model, eval), _bar(n_fwd, "smoothgrad", progress) as bar:
        for s in chunks:
            idx = range(s, min(n, s + per_chunk))
            noisy = []
            for i in idx:
                # Unit noise is drawn in float32 whatever x's dtype (as captum does), then scaled.
                eps = torch.randn((n_samples,) + tuple(x.shape[1:]), generator=gen, dtype=torch.float32)
                noisy.append(x[i].detach().cpu().unsqueeze(0) + (sigma[i] * eps).to(x.dtype))
            rows = dev(torch.cat(noisy))
            rows_t = t[s : s + len(idx)].repeat_interleave(n_samples)
            grads = torch.empty_like(rows)
            for r in range(0, rows.shape[0], batch_size):
                g, _ = _input_grad(model, rows[r : r + batch_size], rows_t[r : r + batch_size])
                grads[r : r + batch_size] = g.abs() if magnitude else g
                bar.update(1)
            grads = grads.reshape((len(idx), n_samples) + tuple(x.shape[1:])).to(torch.float64)
            acc[s : s + len(idx)] = grads.mean(dim=1)
    out = acc.to(x.device, x.dtype)
    return out * x if times_input else out


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


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    *,
    baseline: float | torch.Tensor | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int = 128,
    return_error: bool = False,
    eval: bool = True,
    progress: bool | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients: ``(x − x̄) ⊙ ∫₀¹ ∇f(x̄ + α (x − x̄)) dα`` by quadrature.

    Completeness: the attributions of a sample sum to ``f(x) − f(x̄)``; the difference is the
    quadrature error, returned with ``return_error=True`` (raise ``steps`` until it is small).

    Parameters
    ----------
    model, x, target
        As in :func:`gradient`.
    baseline
        The reference input x̄: ``None`` (zeros), a number, one sample (broadcast to the batch) or a
        tensor of ``x``'s shape.
    steps
        Number of quadrature nodes (gradient evaluations per sample).
    method
        ``"gausslegendre"`` (default; most accurate per step) or ``"riemann_trapezoid"``. See
        :func:`ig_nodes`. Note: captum's ``"riemann_trapezoid"`` weights nodes by ``1/steps`` (weights
        summing to ``1 − 1/steps``); nbexplain uses the composite trapezoid rule, whose weights sum to 1.
    batch_size
        Largest number of path points sent through the model at once.
    return_error
        Also return the completeness error ``Σ attributions − (f(x) − f(x̄))`` per sample, shape ``(N,)``.
    eval, progress
        As in :func:`gradient`.

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        Attributions with the shape of ``x`` (accumulated in float64, returned in ``x``'s dtype), and
        the completeness error when ``return_error`` is true.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> attr, err = nx.integrated_gradients(net, torch.rand(4, 3), 1, steps=32, return_error=True)
    >>> attr.shape, bool(err.abs().max() < 1e-4)
    (torch.Size([4, 3]), True)
    """
    model, x, t, batch_size, dev = _prepare(model, x, target, batch_size)
    steps = check_positive_int(steps, "steps")
    method = check_choice(method, "method", IG_METHODS)
    return_error = _check_bool(return_error, "return_error")
    base = _baseline_for(baseline, x)
    alphas, weights = ig_nodes(steps, method)

    n = x.shape[0]
    shape = tuple(x.shape[1:])
    total = n * steps
    acc = torch.zeros((n,) + shape, dtype=torch.float64, device=dev.device)
    xd, bd = dev(x), dev(base)
    a_dev = dev(alphas)
    w_dev = weights.to(dev.device)
    view = (-1,) + (1,) * len(shape)
    with _attribution_mode(model, eval), _bar(math.ceil(total / batch_size), "integrated gradients", progress) as bar:
        for r in range(0, total, batch_size):
            rows = torch.arange(r, min(total, r + batch_size), device=dev.device)
            si, ki = rows // steps, rows % steps
            pts = bd[si] + a_dev[ki].view(view) * (xd[si] - bd[si])
            g, _ = _input_grad(model, pts, t.to(dev.device)[si])
            acc.index_add_(0, si, g.to(torch.float64) * w_dev[ki].view(view))
            bar.update(1)
        attr64 = acc * (xd - bd).to(torch.float64)
        attr = attr64.to(x.device, x.dtype)
        if not return_error:
            return attr
        with torch.no_grad():
            fx, fb = [], []
            for s in range(0, n, batch_size):
                tb = t[s : s + batch_size]
                fx.append(target_scores(model(xd[s : s + batch_size]), tb).to(torch.float64))
                fb.append(target_scores(model(bd[s : s + batch_size]), tb).to(torch.float64))
            delta = torch.cat(fx) - torch.cat(fb)
        err = attr64.reshape(n, -1).sum(dim=1) - delta
    return attr, err.to(x.device)

