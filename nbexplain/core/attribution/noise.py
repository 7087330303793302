"""Noise tunnel: any attribution method averaged over Gaussian-perturbed copies of the input.

SmoothGrad (Smilkov et al. 2017, *SmoothGrad: removing noise by adding noise*) observed that input gradients
fluctuate sharply at small scales, and that averaging the map over noisy copies ``x + ε_i``,
``ε_i ~ N(0, σ²)``, shows the structure the fluctuations hide. The same averaging applies to any attribution
method; :func:`noise_tunnel` wraps one:

- ``reduce="mean"`` — ``1/n Σ_i A(x + ε_i)``: SmoothGrad (for :func:`~nbexplain.gradient`), or "smoothed"
  integrated gradients, LRP, …;
- ``reduce="mean_square"`` — ``1/n Σ_i A(x + ε_i)²``: SmoothGrad² (Smilkov et al. square the maps to show
  magnitudes; Hooker et al. 2019 call it SG-SQ), always ≥ 0;
- ``reduce="var"`` — ``1/n Σ_i (A(x + ε_i) − mean)²``: VarGrad (Adebayo et al. 2018), the population variance
  of the maps over the noise.

σ is ``noise_level · (max(x) − min(x))`` per sample (Smilkov et al. recommend 10–20 % of the input range and
about 50 copies). The noise goes into the explained input only (``wrt=``); a model's other inputs — and an
option shaped like the explained input, one row per sample (integrated gradients' ``baseline``) — are repeated
with each copy. The copies are expanded into batches of whole samples, about ``batch_size`` rows each (at most
2²⁴ input values), and the wrapped method runs once per such batch and chunks it by ``batch_size`` itself: the
model always sees full batches, and the method runs ``⌈N · n_samples / batch_size⌉`` times, not once per copy.

The noise of sample ``i`` is one ``(n_samples, …)`` block of standard normal float32 values drawn after those
of samples ``0 … i−1`` from a private generator seeded by ``seed=``: for a given seed the copies do not depend
on ``batch_size``, on the grouping, or on the wrapped method.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._base.hygiene import preserved
from .._base.machinery import batch_slices, check_progress, progress_bar
from .._base.model_inputs import InputKey
from .._base.model_io import OutputArg
from .._base.targets import Target, TargetArg
from .._base.validation import check_choice, check_positive_int, renamed_arguments
from .gradients import _check_bool, _site_name, clean_pass, gradient
from .result import AttributionResult, resolved_target
from .space import AttributionInputs, AttributionSpace, bind_target, prepare_attribution

__all__ = ["noise_tunnel", "smoothgrad", "REDUCTIONS"]

#: How :func:`noise_tunnel` combines the maps of the noisy copies.
REDUCTIONS = ("mean", "mean_square", "var")

#: At most this many input values in one group of noisy copies (the wrapped method then chunks it by batch_size).
_GROUP_VALUES = 2**24



def _check_noise(noise_level: Any, n_samples: Any, seed: Any) -> tuple[float, int, torch.Generator | None]:
    if isinstance(noise_level, bool) or not isinstance(noise_level, numbers.Real) or not math.isfinite(noise_level):
        raise TypeError(f"`noise_level` must be a finite number ≥ 0 (a fraction of the input range), got {noise_level!r}.")
    if noise_level < 0:
        raise ValueError(f"`noise_level` must be ≥ 0, got {noise_level}. It is σ / (max(x) − min(x)), e.g. 0.15.")
    n_samples = check_positive_int(n_samples, "n_samples")
    gen: torch.Generator | None = None
    if seed is not None:
        check_positive_int(seed, "seed", allow_zero=True)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return float(noise_level), n_samples, gen


def _noisy_copies(src: torch.Tensor, n_samples: int, noise_level: float, gen: torch.Generator | None) -> torch.Tensor:
    """``n_samples`` noisy copies of every sample of ``src`` (on the CPU, in ``src``'s dtype), σ per sample."""
    noisy = []
    for i in range(src.shape[0]):
        flat = src[i].reshape(-1)
        rng = float((flat.amax() - flat.amin()).to(torch.float64))
        sigma = noise_level * (rng if rng > 0 else 1.0)
        # Unit noise is drawn in float32 whatever the dtype, then scaled.
        eps = torch.randn((n_samples,) + tuple(src.shape[1:]), generator=gen, dtype=torch.float32)
        noisy.append(src[i].detach().cpu().unsqueeze(0) + (sigma * eps).to(src.dtype))
    return torch.cat(noisy)


def _reduce(maps: torch.Tensor, reduce: str) -> torch.Tensor:
    """``(m, n_samples, …)`` float64 maps → ``(m, …)``."""
    if reduce == "mean":
        return maps.mean(dim=1)
    if reduce == "mean_square":
        return (maps * maps).mean(dim=1)
    centred = maps - maps.mean(dim=1, keepdim=True)
    return (centred * centred).mean(dim=1)


def _method_name(method: Callable[..., Any]) -> str:
    return getattr(method, "__name__", type(method).__name__)


@renamed_arguments(x="inputs", eval="eval_mode")
def noise_tunnel(
    method: Callable[..., AttributionResult],
    model: nn.Module,
    inputs: AttributionInputs,
    target: TargetArg | None = None,
    *,
    n_samples: int = 50,
    noise_level: float = 0.15,
    reduce: str = "mean",
    seed: int | None = 0,
    wrt: InputKey | None = None,
    output: OutputArg = None,
    eval_mode: bool = True,
    batch_size: int = 256,
    progress: bool | None = None,
    **options: Any,
) -> AttributionResult:
    """Any attribution method averaged over Gaussian-perturbed copies of the input (SmoothGrad, SmoothGrad²,
    VarGrad; see the module notes).

    Parameters
    ----------
    method
        An nbexplain attribution method — :func:`~nbexplain.gradient`, :func:`~nbexplain.gradient_x_input`,
        :func:`~nbexplain.integrated_gradients`, :func:`~nbexplain.lrp` — or your own function with the same
        signature, ``method(model, inputs, target, *, wrt=, output=, eval_mode=, batch_size=, progress=, …)``,
        returning an :class:`~nbexplain.AttributionResult` whose map has the shape of the explained input.
    model, inputs
        As in :func:`~nbexplain.gradient`; the explained input must be floating point (for token ids use
        :func:`~nbexplain.smoothgrad`, which adds the noise in embedding space).
    target
        As in :func:`~nbexplain.gradient`; ``None``: the predicted class at the clean input. Every noisy copy
        explains its sample's target (not the class predicted for the copy).
    n_samples
        Noisy copies per sample.
    noise_level
        σ relative to each sample's value range ``max − min`` (of the explained input); ``0`` reproduces the
        method's own map. When a sample is constant its range is taken as 1.
    reduce
        ``"mean"`` (SmoothGrad), ``"mean_square"`` (SmoothGrad², the mean of the squared maps) or ``"var"``
        (VarGrad, the population variance of the maps).
    seed
        Seed of the noise (a private generator: the global RNG is not touched); ``None`` draws from the global
        RNG. See the module notes for what a seed fixes.
    wrt
        With several inputs, the one that gets the noise and is explained (a position or keyword name;
        ``None``: the first); the others are repeated with every copy.
    output, eval_mode
        As in :func:`~nbexplain.gradient`; passed on to ``method``.
    batch_size
        Largest number of rows (noisy copies, or the method's own expansion of them: integrated gradients' path
        points) sent through the model at once; passed on to ``method``.
    progress
        As in :func:`~nbexplain.gradient`; passed on to ``method``.
    **options
        Further options of ``method``, e.g. ``steps=16`` for integrated gradients, ``composite="epsilon"`` for
        LRP, ``absolute=True`` for the gradient. A tensor shaped like the explained input (e.g. a per-sample
        ``baseline``) is read as one row per sample and repeated with the copies.

    Returns
    -------
    AttributionResult
        ``.attribution``: the reduced map, in the input's dtype (accumulated in float64); ``.target``,
        ``.output`` and ``.score`` at the clean input; ``.method`` e.g. ``"noise_tunnel(integrated_gradients)"``;
        ``.settings`` with the noise settings and the method's own (``"options"``).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> res = nx.noise_tunnel(nx.integrated_gradients, net, torch.rand(2, 4), 1, n_samples=8, steps=8)
    >>> res.method, res.attribution.shape
    ('noise_tunnel(integrated_gradients)', torch.Size([2, 4]))
    >>> nx.noise_tunnel(nx.gradient, net, torch.rand(2, 4), reduce="var", n_samples=8).attribution.min() >= 0
    tensor(True)
    """
    return _noise_tunnel(method, model, inputs, target, n_samples, noise_level, reduce, seed, wrt, output,
                         eval_mode, batch_size, progress, options, desc=None)


def _noise_tunnel(
    method: Callable[..., AttributionResult], model: Any, inputs: Any, target: Any, n_samples: Any,
    noise_level: Any, reduce: Any, seed: Any, wrt: Any, output: Any, eval_mode: Any, batch_size: Any,
    progress: Any, options: dict[str, Any], desc: str | None,
) -> AttributionResult:
    """:func:`noise_tunnel`; ``desc`` labels the progress bar (default ``noise_tunnel(<method>)``)."""
    if not callable(method):
        raise TypeError(
            f"`method` must be an attribution function such as nx.gradient or nx.integrated_gradients, got "
            f"{type(method).__name__}."
        )
    noise_level, n_samples, gen = _check_noise(noise_level, n_samples, seed)
    reduce = check_choice(reduce, "reduce", REDUCTIONS)
    batch_size = check_positive_int(batch_size, "batch_size")
    eval_mode = _check_bool(eval_mode, "eval_mode")
    check_progress(progress)
    name = _method_name(method)
    space = _space(model, inputs, output, options.get("embedding"), wrt, name)
    with space.active(eval_mode):
        t, out, score = clean_pass(space, None if target is None else bind_target(target, space.n), batch_size,
                                   f"noise_tunnel({name})")
    kw = dict(options, wrt=space.wrt, output=output, eval_mode=eval_mode, batch_size=batch_size, progress=False)
    # the built-in methods leave the model as found themselves; this also covers a user's method
    with preserved(space.model):
        attr, inner = _tunnel(method, model, space, t, n_samples, noise_level, reduce, gen, kw,
                              desc or f"noise_tunnel({name})", progress)
    settings = dict(method=name, n_samples=n_samples, noise_level=noise_level, reduce=reduce, seed=seed,
                    wrt=space.wrt, output=output, eval_mode=eval_mode, batch_size=batch_size, options=inner)
    return AttributionResult(attr, resolved_target(t), out, score, f"noise_tunnel({name})", settings)


def _space(model: Any, inputs: Any, output: Any, embedding: Any, wrt: Any, name: str) -> AttributionSpace:
    """Validate the inputs (no model pass for floating inputs) and refuse token ids."""
    model, x, space = prepare_attribution(model, inputs, output, embedding, probe=False, wrt=wrt)
    if space.tokens:
        raise TypeError(
            f"noise_tunnel adds Gaussian noise to a floating input, but the explained input holds integer token "
            f"ids ({x.dtype}), which cannot be perturbed. Use nx.smoothgrad(model, inputs, target), which adds the "
            f"noise to the embedding layer's output, or explain a model that takes embeddings with {name}."
        )
    return space


def _tunnel(
    method: Callable[..., Any], model: nn.Module, space: AttributionSpace, t: Target, n_samples: int,
    noise_level: float, reduce: str, gen: torch.Generator | None, kw: dict[str, Any], desc: str,
    progress: bool | None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Expand groups of whole samples into their noisy copies (about ``batch_size`` rows per group, at most
    :data:`_GROUP_VALUES` input values), run ``method`` once per group, reduce. The bar counts noisy copies."""
    x, name = space.x, _method_name(method)
    per_sample = max(1, sum(int(v[0].numel()) for v in space.inputs.tensors))
    rows = min(kw["batch_size"], max(1, _GROUP_VALUES // per_sample))
    per_group = max(1, rows // n_samples)
    acc = torch.empty((space.n,) + tuple(x.shape[1:]), dtype=torch.float64, device=x.device)
    inner: dict[str, Any] = {}
    with progress_bar(total=space.n * n_samples, desc=desc, unit="copy", progress=progress) as bar:
        for sl in batch_slices(space.n, per_group):
            m = sl.stop - sl.start
            idx = torch.arange(sl.start, sl.stop).repeat_interleave(n_samples)
            noisy = _noisy_copies(x[sl], n_samples, noise_level, gen).to(x.device)
            batch = space.inputs.rows(idx).replace(space.wrt, noisy)
            res = method(model, batch.args[0] if batch.single else batch, t[idx], **_rows_of(kw, x, idx))
            a = _checked(res, noisy, name)
            maps = a.detach().to(x.device, torch.float64).reshape((m, n_samples) + tuple(x.shape[1:]))
            acc[sl] = _reduce(maps, reduce)
            inner = dict(res.settings)
            bar.update(m * n_samples)
    return acc.to(x.dtype), inner


def _rows_of(kw: dict[str, Any], x: torch.Tensor, idx: torch.Tensor) -> dict[str, Any]:
    """The options for the copies ``idx``: a tensor option shaped like the explained input (one row per sample,
    e.g. integrated gradients' ``baseline``) is repeated with its sample's copies; others are passed as given."""
    return {k: v[idx.to(v.device)] if isinstance(v, torch.Tensor) and tuple(v.shape) == tuple(x.shape) else v
            for k, v in kw.items()}


def _checked(res: Any, noisy: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(res, AttributionResult):
        raise TypeError(
            f"noise_tunnel: `method` {name!r} returned {type(res).__name__}; it must return an nx.AttributionResult "
            "(every nbexplain attribution method does). Wrap your function to return "
            "nx.AttributionResult(attribution, target, output, score, method='...')."
        )
    a = res.attribution
    if not isinstance(a, torch.Tensor) or tuple(a.shape) != tuple(noisy.shape):
        raise ValueError(
            f"noise_tunnel: `method` {name!r} returned an attribution of shape "
            f"{tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__} for noisy inputs of shape "
            f"{tuple(noisy.shape)}; it must have the explained input's shape."
        )
    return a


@renamed_arguments(x="inputs", eval="eval_mode")
def smoothgrad(
    model: nn.Module,
    inputs: AttributionInputs,
    target: TargetArg | None = None,
    *,
    wrt: InputKey | None = None,
    noise_level: float = 0.15,
    n_samples: int = 50,
    seed: int | None = 0,
    magnitude: bool = False,
    times_input: bool = False,
    output: OutputArg = None,
    embedding: str | None = None,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
) -> AttributionResult:
    """SmoothGrad: the input gradient averaged over Gaussian-perturbed copies of the input.

    ``SG(x) = 1/n Σ_i ∇f(x + ε_i)``, ``ε_i ~ N(0, σ²)`` with ``σ = noise_level · (max(x) − min(x))``
    taken per sample. For floating inputs this is ``noise_tunnel(nx.gradient, …)`` (see
    :func:`noise_tunnel`, which also gives SmoothGrad² and VarGrad, and smooths any other method), and equal to
    it bit for bit. For token ids the noise is added to the embedding ``e`` (σ from each sample's range of
    embedding values), and the averaged embedding gradient (of ``|∇f|`` with ``magnitude``) is reduced per
    token: its L2 norm over the features, or with ``times_input`` the signed sum of ``e ⊙ SG``.

    Parameters
    ----------
    model, inputs, target, wrt
        As in :func:`~nbexplain.gradient` (``target=None``: the predicted class at the clean input). With
        several inputs only the ``wrt`` input gets noise; every noisy copy goes into the model with its
        sample's other inputs.
    noise_level, n_samples, seed
        As in :func:`noise_tunnel`.
    magnitude
        Average ``|∇f|`` instead of ``∇f`` (the unsigned variant; ``noise_tunnel(nx.gradient, …,
        absolute=True)``).
    times_input
        Multiply the averaged gradient by the input (SmoothGrad × input).
    output, embedding, batch_size, eval_mode, progress
        As in :func:`~nbexplain.gradient`; ``batch_size`` counts noisy rows.

    Returns
    -------
    AttributionResult
        ``.attribution`` with the shape and dtype of the input; for token ids ``(N, T)`` as in
        :func:`~nbexplain.gradient`. ``.target``, ``.output`` and ``.score`` at the clean input.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> sg = nx.smoothgrad(net, torch.rand(2, 4), target=1, n_samples=16, seed=0)
    >>> sg.attribution.shape, sg.method
    (torch.Size([2, 4]), 'smoothgrad')
    """
    magnitude = _check_bool(magnitude, "magnitude")
    times_input = _check_bool(times_input, "times_input")
    noise_level, n_samples, _ = _check_noise(noise_level, n_samples, seed)
    batch_size = check_positive_int(batch_size, "batch_size")
    eval_mode = _check_bool(eval_mode, "eval_mode")
    check_progress(progress)
    model, x, space = prepare_attribution(model, inputs, output, embedding, probe=False, wrt=wrt)
    settings = dict(noise_level=noise_level, n_samples=n_samples, seed=seed, magnitude=magnitude,
                    times_input=times_input, wrt=space.wrt, output=output, embedding=_site_name(space),
                    batch_size=batch_size, eval_mode=eval_mode)
    if space.tokens:
        t = None if target is None else bind_target(target, space.n)
        attr, t, out, score = _smoothgrad_tokens(space, t, noise_level, n_samples, seed, magnitude, times_input,
                                                 batch_size, eval_mode, progress)
        return AttributionResult(attr, resolved_target(t), out, score, "smoothgrad", settings)
    res = _noise_tunnel(gradient, model, inputs, target, n_samples, noise_level, "mean", seed, wrt, output,
                        eval_mode, batch_size, progress, dict(absolute=magnitude), desc="smoothgrad")
    attr = res.attribution * x if times_input else res.attribution
    return AttributionResult(attr, res.target, res.output, res.score, "smoothgrad", settings)


def _smoothgrad_tokens(
    space: AttributionSpace, t: Target | None, noise_level: float, n_samples: int, seed: int | None,
    magnitude: bool, times_input: bool, batch_size: int, eval_mode: bool, progress: bool | None,
) -> tuple[torch.Tensor, Target, torch.Tensor, torch.Tensor]:
    """SmoothGrad for token ids: noise on the embedding layer's output, the averaged gradient reduced per token."""
    gen = None if seed is None else torch.Generator(device="cpu").manual_seed(int(seed))
    n, pshape = space.n, space.point_shape
    acc = torch.zeros((n,) + pshape, dtype=torch.float64, device=space.device)
    emb = torch.empty((n,) + pshape, dtype=space.dtype, device=space.device)
    # Samples per chunk: whole samples so that the noise stream is independent of batch_size.
    per_chunk = max(1, batch_size // n_samples)
    chunks = list(batch_slices(n, per_chunk))
    n_fwd = sum(math.ceil((sl.stop - sl.start) * n_samples / batch_size) for sl in chunks)
    with space.active(eval_mode), progress_bar(total=n_fwd, desc="smoothgrad", progress=progress) as bar:
        t, out, score = clean_pass(space, t, batch_size, "smoothgrad")
        for sl in chunks:
            m = sl.stop - sl.start
            src = space.points(sl)
            emb[sl] = src
            rows = _noisy_copies(src, n_samples, noise_level, gen).to(space.device, space.dtype)
            rows_i = torch.arange(sl.start, sl.stop).repeat_interleave(n_samples)
            rows_t = t[rows_i]
            grads = torch.empty_like(rows)
            for rs in batch_slices(rows.shape[0], batch_size):
                g, _ = space.grad(rows_i[rs], rows_t[rs], z=rows[rs])
                grads[rs] = g.abs() if magnitude else g
                bar.update(1)
            acc[sl] = grads.reshape((m, n_samples) + pshape).to(torch.float64).mean(dim=1)
    return space.reduce(acc, times=emb if times_input else None), t, out, score
