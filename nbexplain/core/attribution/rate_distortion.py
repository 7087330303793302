"""Rate–distortion explanations (Macdonald, Wäldchen, Hauch & Kutyniok 2019, arXiv 1905.11092).

An explanation is a mask ``s ∈ [0, 1]^d``: keep the input where ``s`` is 1 and replace it by noise
from the data distribution where ``s`` is 0, ``y = s ⊙ x + (1 − s) ⊙ n``, ``n ~ V``. The mask should
keep the target score — small *distortion*

    ``D(s) = ½ · E_n[(Φ(x) − Φ(y))²]``

— while keeping few components — small *rate* ``‖s‖₁``. nbexplain minimises
``D(s) + λ · ‖s‖₁ / d`` by projected gradient (Adam steps, then clipping to [0, 1]) with a Monte-Carlo
estimate of the expectation (the original code uses assumed density filtering in TensorFlow 1.15; a
known PyTorch variant uses Monte-Carlo noise with 64 samples and Adam, as here).

The evaluation is the **rate–distortion curve**: the distortion when only the top fraction ``k`` of
the components (ranked by the mask) is kept and everything else is noise, against the same curve for
randomly ranked components. A good mask drives the distortion down with few components.

For token ids ``(N, T)`` the mask has one value per token: the kept and noised quantity is the output
``e`` of the embedding layer (``embedding=``), ``y = s ⊙ e + (1 − s) ⊙ n`` with ``s`` shared by a token's
``D`` features and the noise ``n`` drawn in embedding space.

The noise is drawn sample by sample (a sample's draws of a step at once) from one generator seeded by
``seed=``, so ``batch_size`` bounds memory only: it changes no random number, and the result only by the
rounding of forward passes of other sizes.

A mask that keeps every component gives ``y = x`` exactly, and its distortion is exactly 0 by
construction (it is not estimated from a second forward pass, whose rounding could depend on the batch
size and on the CPU's BLAS kernels).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._base.machinery import batch_slices, check_progress, progress_bar
from .._base.model_inputs import InputKey, Inputs, as_inputs
from .._base.model_io import OutputArg
from .._base.targets import Target, TargetArg, as_target, describe_axes
from .._base.validation import check_choice, check_positive_int, check_tensor, renamed_arguments
from .result import AttributionResult, resolved_target
from .space import (
    AttributionInputs,
    AttributionSpace,
    bind_target,
    predicted_classes,
    prepare_attribution,
    target_scores,
)

__all__ = ["rde", "RDEResult", "SCORES"]

#: What Φ is: the target's softmax probability (bounded, so λ means the same for every model) or
#: its raw logit.
SCORES = ("softmax", "logit")


@dataclass(repr=False, kw_only=True)
class RDEResult(AttributionResult):
    """What :func:`rde` returns: an :class:`~nbexplain.AttributionResult` whose map is the mask, with the
    optimisation's trajectories and the rate–distortion curves.

    Attributes
    ----------
    attribution
        ``(N, …)`` — the optimised mask, with the input's shape, values in [0, 1] (for images with
        ``per_channel=False`` it is constant across channels; for token ids ``(N, T)``, one value per
        token). In the input's dtype; for token ids float32 (float64 for a float64 model).
    target, output, score
        The explained target (resolved: ``None`` gives the predicted classes), the selected output at the clean
        input, and the explained score there (the target's logit), float64 ``(N,)``.
    phi
        ``(N,)`` float64 — ``Φ(x)``, what the distortion compares: the target's softmax probability
        (``score="softmax"``) or its raw score (``score="logit"``) at the clean input.
    distortion
        ``(steps, N)`` — the Monte-Carlo distortion estimate at every optimisation step.
    rate
        ``(steps, N)`` — the mean mask value ``‖s‖₁ / d`` at every step.
    fractions
        ``(K,)`` — kept fractions of the rate–distortion curve.
    curve
        ``(N, K)`` — distortion when keeping the top fraction of components ranked by the mask.
    random_curve
        ``(N, K)`` — the same when the kept components are chosen at random (mean over draws).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> res = nx.rde(net, torch.rand(2, 1, 4, 4), steps=5, n_noise=4, fractions=3, progress=False)
    >>> res.attribution.shape, res.curve.shape, res.phi.dtype
    (torch.Size([2, 1, 4, 4]), torch.Size([2, 3]), torch.float64)
    """

    phi: torch.Tensor
    distortion: torch.Tensor
    rate: torch.Tensor
    fractions: torch.Tensor
    curve: torch.Tensor
    random_curve: torch.Tensor

    def __repr__(self) -> str:
        return (
            f"RDEResult(attribution={tuple(self.attribution.shape)}, steps={self.distortion.shape[0]}, "
            f"final distortion={[round(v, 4) for v in self.distortion[-1].tolist()[:4]]}, "
            f"final rate={[round(v, 3) for v in self.rate[-1].tolist()[:4]]})"
        )


def _given_stats(mean: Any, std: Any, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """User-given noise ``mean`` and ``std`` (numbers or tensors broadcastable to one sample), float64."""
    out = []
    for name, v in (("mean", mean), ("std", std)):
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            t = torch.tensor(float(v), dtype=torch.float64)
        else:
            t = check_tensor(v, name, dtype_kind="float", finite=True).to(torch.float64)
        try:
            torch.broadcast_to(t, shape)
        except RuntimeError:
            raise ValueError(
                f"`{name}` has shape {tuple(t.shape)}, which does not broadcast to one sample {shape}; "
                "pass a number, per-channel values shaped (C, 1, 1) (for token inputs per-feature values "
                "shaped (D,)), or a full sample."
            ) from None
        out.append(t)
    if bool((out[1] < 0).any()):
        raise ValueError("`std` must be ≥ 0.")
    return out[0], out[1]


def _noise_model(
    x: torch.Tensor, mean: Any, std: Any, reference: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-component mean and std of the Gaussian noise, broadcastable to one sample."""
    shape = tuple(x.shape[1:])
    if reference is not None:
        if mean is not None or std is not None:
            raise ValueError("Pass either `reference` (a batch of data) or `mean`/`std` statistics, not both.")
        ref = check_tensor(reference, "reference", dtype_kind="float", finite=True)
        if tuple(ref.shape[1:]) != shape or ref.shape[0] < 2:
            raise ValueError(
                f"`reference` must be a batch of at least 2 inputs shaped like `inputs`' samples {shape}, "
                f"got {tuple(ref.shape)}."
            )
        ref = ref.to(torch.float64)
        return ref.mean(dim=0), ref.std(dim=0)
    if (mean is None) != (std is None):
        raise ValueError("Pass both `mean` and `std` (the data distribution's statistics), or neither.")
    if mean is None:
        # No statistics given: every component ~ N(mean of x, std of x), pooled over the batch.
        flat = x.detach().to(torch.float64).reshape(-1)
        sd = flat.std() if flat.numel() > 1 else torch.tensor(0.0, dtype=torch.float64)
        return flat.mean().reshape(()), sd.reshape(())
    return _given_stats(mean, std, shape)


def _token_noise_model(
    space: AttributionSpace, z: torch.Tensor, mean: Any, std: Any, reference: Any, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise statistics in embedding space: per feature ``(D,)`` over the tokens of ``reference`` (token
    ids) or, by default, of ``inputs``; or the given ``mean``/``std`` (call inside ``space.active``)."""
    d = z.shape[-1]
    if reference is not None:
        if mean is not None or std is not None:
            raise ValueError("Pass either `reference` (a batch of data) or `mean`/`std` statistics, not both.")
        if isinstance(reference, Inputs):  # a batch of the model's inputs: its `wrt` ids, embedded by the model
            emb = torch.cat([space.embed_inputs(b) for b in reference.split(batch_size)])
        else:
            ref = check_tensor(reference, "reference", min_ndim=2)
            if ref.is_floating_point() or ref.shape[0] < 1:
                raise TypeError(
                    f"For token inputs `reference` must be a batch of token ids (M, T) — their embeddings give "
                    f"the noise statistics — got {ref.dtype} of shape {tuple(ref.shape)}."
                )
            chunks = batch_slices(ref.shape[0], batch_size)
            emb = torch.cat([space.embed_ids(ref[sl], argname="reference") for sl in chunks])
        if emb.shape[-1] != d:
            raise ValueError(f"`reference` embeds to {emb.shape[-1]} features; `inputs` to {d}.")
        z = emb
    elif (mean is None) != (std is None):
        raise ValueError("Pass both `mean` and `std` (the data distribution's statistics), or neither.")
    elif mean is not None:
        return _given_stats(mean, std, tuple(z.shape[1:]))
    flat = z.detach().to(torch.float64).reshape(-1, d)
    sd = flat.std(dim=0) if flat.shape[0] > 1 else torch.zeros(d, dtype=torch.float64)
    return flat.mean(dim=0), sd


def _reference_for(space: AttributionSpace, reference: Any) -> Any:
    """``reference=`` for a model with several inputs: a tensor is data of the ``wrt`` input; a tuple, dict or
    :class:`Inputs` is a batch of all the model's inputs (like ``inputs``) — its ``wrt`` input is used (for token ids
    it is embedded by running the model on that batch, returned as an :class:`Inputs`)."""
    if reference is None or not isinstance(reference, (tuple, Mapping, Inputs)):
        return reference
    if space.inputs.single:
        raise TypeError(
            f"`reference` must be a tensor (a batch of data like `inputs`), got {type(reference).__name__}; a tuple or "
            "dict is a batch of several inputs, and the model takes one."
        )
    ref = as_inputs(reference, "reference")
    if ref.keys != space.inputs.keys:
        raise ValueError(
            f"`reference` must be a batch of the same inputs as `inputs` ({space.inputs.describe()}), got "
            f"{ref.describe()}; or pass data of the explained input `wrt`={space.wrt!r} alone, as a tensor."
        )
    if space.tokens and ref[space.wrt].is_floating_point():
        raise TypeError(
            f"`reference`[{space.wrt!r}] must hold token ids like `inputs`[{space.wrt!r}], got {ref[space.wrt].dtype}."
        )
    return ref if space.tokens else ref[space.wrt]


def _phi(out: torch.Tensor, t: Target, score: str) -> torch.Tensor:
    """Φ: the target's softmax probability or raw score, from the (selected) model output.

    ``"softmax"`` normalises over the target's class axis — the classes of ``(N, C)`` scores and of a dense
    map ``(N, C, H, W)`` (at every position), the vocabulary of a sequence ``(N, T, V)`` — and a class map's
    probability is averaged over its region, so Φ stays in [0, 1] for every output.
    """
    if score == "softmax":
        axis = t.class_axis(out)
        if out.ndim < 2 or out.shape[axis] < 2:
            raise ValueError(
                f"score='softmax' needs ≥ 2 classes on the class axis, but the output is "
                f"{describe_axes(tuple(out.shape))}; use score='logit'."
            )
        return t.scores(torch.softmax(out, dim=axis), average=True)
    return t.scores(out)


class _Distortion:
    """The Monte-Carlo distortion ``½ E_n[(Φ(x) − Φ(y))²]`` of masks, in chunks of ``batch_size`` rows.

    ``z`` are the samples' points in the attributed space (inputs, or embeddings for token ids) on the
    model's device in its dtype; masks are in the work dtype (float32, or float64 for a float64 model).
    """

    def __init__(
        self, space: AttributionSpace, z: torch.Tensor, t: Target, phi_x: torch.Tensor,
        nm: torch.Tensor, ns: torch.Tensor, gen: torch.Generator, score: str, batch_size: int,
    ) -> None:
        self.space, self.z, self.phi_x, self.gen, self.score, self.batch_size = space, z, phi_x, gen, score, batch_size
        self.dev, self.dtype = space.device, space.dtype
        self.t = t.to(self.dev)
        self.sample_shape = tuple(z.shape[1:])
        self.nm = torch.broadcast_to(nm, self.sample_shape).to(self.dev, self.dtype)
        self.ns = torch.broadcast_to(ns, self.sample_shape).to(self.dev, self.dtype)

    def noise(self, m: int, k: int) -> torch.Tensor:
        """``k`` draws for each of ``m`` samples, ``(m·k, …)``, drawn sample by sample (``k`` at a time): how the
        rows are chunked (``batch_size``) never changes the random numbers."""
        shape = (k,) + self.sample_shape
        eps = torch.cat([torch.randn(shape, generator=self.gen, dtype=torch.float32) for _ in range(m)])
        return self.nm + self.ns * eps.to(self.dev, self.dtype)

    def __call__(self, m: torch.Tensor, idx: torch.Tensor, k: int) -> torch.Tensor:
        """½ mean over ``k`` noise draws of (Φ(x) − Φ(y))² for the samples ``idx``, with masks ``m``.

        A mask that keeps every component leaves ``y = x``: its distortion is set to exactly 0 rather than
        estimated from a second forward pass (whose rounding may depend on the batch size).
        """
        rows_i = idx.repeat_interleave(k)
        total = torch.zeros(idx.numel(), dtype=torch.float64, device=self.dev)
        kept_all = (m.reshape(m.shape[0], -1) == 1).all(dim=1)
        noise = self.noise(idx.numel(), k)
        for sl in batch_slices(rows_i.numel(), self.batch_size):
            ri = rows_i[sl]
            local = torch.div(torch.arange(sl.start, sl.stop, device=self.dev), k, rounding_mode="floor")
            mm = m[local]
            y = (mm * self.z[ri] + (1 - mm) * noise[sl]).to(self.dtype)
            out, _ = self.space.forward(ri, z=y)
            d = 0.5 * (self.phi_x[ri] - _phi(out, self.t[ri], self.score)) ** 2
            d = torch.where(kept_all[local], torch.zeros_like(d), d)
            total.index_add_(0, local, d.to(torch.float64))
        return total / k


def _optimise(
    dist: _Distortion, s: torch.Tensor, l1: float, lr: float, steps: int, n_noise: int, bar: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Projected Adam on the mask ``s`` (a leaf): minimise D(s) + λ·‖s‖₁/d, clipping to [0, 1]."""
    n = s.shape[0]
    opt = torch.optim.Adam([s], lr=float(lr))
    dist_traj = torch.empty(steps, n, dtype=torch.float64)
    rate_traj = torch.empty(steps, n, dtype=torch.float64)
    all_idx = torch.arange(n, device=dist.dev)
    per = max(1, dist.batch_size // n_noise)
    for it in range(steps):
        opt.zero_grad(set_to_none=True)
        dist_sum = torch.zeros(n, dtype=torch.float64)
        # accumulate the distortion gradient over chunks of whole samples
        for sl in batch_slices(n, per):
            with torch.enable_grad():
                d = dist(s[sl], all_idx[sl], n_noise)
                d.sum().backward()
            dist_sum[sl] = d.detach().cpu()
        with torch.enable_grad():
            rate = s.reshape(n, -1).mean(dim=1)
            (float(l1) * rate.sum()).backward()
        opt.step()
        with torch.no_grad():
            s.clamp_(0.0, 1.0)
        dist_traj[it] = dist_sum
        rate_traj[it] = rate.detach().cpu().to(torch.float64)
        bar.update(1)
        if it % 10 == 0:
            # refresh=False: shown with the next update, so that a delayed bar (progress=None) stays delayed
            bar.set_postfix(distortion=f"{float(dist_sum.mean()):.4f}", rate=f"{float(rate_traj[it].mean()):.3f}",
                            refresh=False)
    return s.detach(), dist_traj, rate_traj


def _curves(
    dist: _Distortion, mask: torch.Tensor, fr: torch.Tensor, n_eval: int, n_random: int, bar: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distortion when keeping the top fraction of components by the mask, and by random rankings."""
    n, dev = mask.shape[0], dist.dev
    d_total = mask[0].numel()
    flat_mask = mask.reshape(n, d_total)
    order = torch.argsort(flat_mask, dim=1, descending=True, stable=True)
    curve = torch.empty(n, fr.numel(), dtype=torch.float64)
    rand_curve = torch.zeros(n, fr.numel(), dtype=torch.float64)
    orders = [order] + [
        torch.argsort(torch.rand(n, d_total, generator=dist.gen), dim=1).to(dev) for _ in range(n_random)
    ]
    all_idx = torch.arange(n, device=dev)
    per = max(1, dist.batch_size // n_eval)
    for j, f in enumerate(fr.tolist()):
        keep = int(round(f * d_total))
        for oi, o in enumerate(orders):
            binary = torch.zeros(n, d_total, dtype=mask.dtype, device=dev)
            if keep:
                binary.scatter_(1, o[:, :keep], 1.0)
            binary = binary.reshape(mask.shape)
            d = torch.cat([dist(binary[sl], all_idx[sl], n_eval) for sl in batch_slices(n, per)]).cpu()
            if oi == 0:
                curve[:, j] = d
            else:
                rand_curve[:, j] += d / n_random
        bar.update(1)
    return curve, rand_curve


def _check_options(
    l1: Any, lr: Any, init: Any, ints: dict[str, Any], score: Any, per_channel: Any, fractions: Any, seed: Any
) -> tuple[dict[str, int], str, torch.Tensor]:
    """Validate rde's numeric options (nothing is run)."""
    for name, v in (("l1", l1), ("lr", lr), ("init", init)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise TypeError(f"`{name}` must be a finite number, got {v!r}.")
    if l1 < 0:
        raise ValueError(f"`l1` must be ≥ 0, got {l1}.")
    if lr <= 0:
        raise ValueError(f"`lr` must be > 0, got {lr}.")
    if not 0 <= init <= 1:
        raise ValueError(f"`init` must lie in [0, 1] (a mask value), got {init}.")
    checked = {name: check_positive_int(v, name) for name, v in ints.items()}
    score = check_choice(score, "score", SCORES)
    if not isinstance(per_channel, bool):
        raise TypeError(f"`per_channel` must be True or False, got {per_channel!r}.")
    if isinstance(fractions, numbers.Integral) and not isinstance(fractions, bool):
        k = check_positive_int(fractions, "fractions")
        if k < 2:
            raise ValueError("`fractions` as a count must be ≥ 2 (it includes 0 and 1).")
        fr = torch.linspace(0.0, 1.0, k, dtype=torch.float64)
    else:
        fr = check_tensor(torch.as_tensor(list(fractions), dtype=torch.float64), "fractions", ndim=1, finite=True)
        if fr.numel() == 0 or bool((fr < 0).any() or (fr > 1).any()):
            raise ValueError("`fractions` must be values in [0, 1], e.g. [0, 0.05, 0.1, …, 1].")
    if seed is not None:
        check_positive_int(seed, "seed", allow_zero=True)
    return checked, score, fr


def _clean_scores(
    space: AttributionSpace, target: Any, score: str, batch_size: int
) -> tuple[Target, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The explained target (``None``: the predicted class of ``(N, C)`` scores), the selected output, the
    explained score (float64) and Φ(x), from one pass over the samples."""
    n = space.n
    with torch.no_grad():
        outs = [space.forward(sl)[0] for sl in batch_slices(n, batch_size)]
        logits = torch.cat(outs).detach()
        t = as_target(predicted_classes(logits, "rde"), n) if target is None else bind_target(target, n)
        phi_x = _phi(logits, t, score)
        explained = target_scores(logits, t).to(torch.float64)
    return t, logits, explained, phi_x


@renamed_arguments(x="inputs", eval="eval_mode")
def rde(
    model: nn.Module,
    inputs: AttributionInputs,
    target: TargetArg | None = None,
    *,
    wrt: InputKey | None = None,
    mean: float | torch.Tensor | None = None,
    std: float | torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
    l1: float = 0.05,
    steps: int = 300,
    lr: float = 0.05,
    n_noise: int = 64,
    init: float = 0.5,
    per_channel: bool = False,
    score: str = "softmax",
    fractions: Sequence[float] | int = 21,
    n_eval: int = 64,
    n_random: int = 4,
    seed: int | None = 0,
    output: OutputArg = None,
    embedding: str | None = None,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
) -> RDEResult:
    """Rate–distortion explanation: the sparsest mask that keeps the target score under noise.

    Parameters
    ----------
    model
        A classifier returning ``(N, C)`` scores, or a sequence ``(N, T, V)`` / dense ``(N, C, H, W)`` output
        with a ``target`` that names what to explain; also a TorchScript model (floating ``inputs`` only) or a
        ``torch.compile``'d one (run through its eager module).
    inputs
        Input batch ``(N, …)``; each sample gets its own mask (optimised jointly, independently). Integer
        token ids ``(N, T)`` get one mask value per token, applied to the embedding (see ``embedding``).
        Several inputs as one batch (a tuple, a dict or ``nx.Inputs``), as in :func:`~nbexplain.gradient`.
    target
        What to explain, as in :func:`nbexplain.gradient`: a class (int or ``(N,)``), ``(position, token)``
        for a sequence output, a class or ``nx.Target.region(class, mask)`` for a dense map, or a function of
        the output (with ``score="logit"``). ``None`` explains the predicted class of ``(N, C)`` scores.
    wrt
        With several inputs, the one masked (a position or keyword name; ``None``: the first), as in
        :func:`~nbexplain.gradient`: the others are held fixed, each noisy draw going into the model with its
        sample's own rows. The mask, ``mean``, ``std`` and ``reference`` are of this input.
    mean, std
        Statistics of the data distribution the noise is drawn from (numbers, per-channel ``(C,1,1)``
        or per-component tensors); the noise is Gaussian with this mean and std per component. For
        token ids these are statistics of the embedding: numbers, per-feature ``(D,)`` or ``(T, D)``.
    reference
        A batch of real data instead of ``mean``/``std``: its per-component mean and std are used.
        With neither given, one mean and std pooled over ``inputs`` are used. For token ids: a batch of token
        ids ``(M, T')``, whose embeddings give a per-feature mean and std (pooled over tokens); by default
        those of ``inputs``' tokens. With several inputs: data of the ``wrt`` input, or a batch of all the model's
        inputs like ``inputs`` (a tuple or dict, any number of rows), whose ``wrt`` input is used (token ids are then
        embedded by running the model on that batch; as a bare tensor, by calling the ``nn.Embedding`` alone).
    l1
        λ, the weight of the rate ``‖s‖₁ / d`` (the mean mask value). Larger: sparser masks.
    steps
        Optimisation steps (Adam on ``s``, projected to [0, 1] after each step).
    lr
        Adam learning rate.
    n_noise
        Monte-Carlo noise samples per input and step.
    init
        Initial mask value.
    per_channel
        One mask value per component; by default images ``(N, C, H, W)`` get one value per pixel,
        shared by all channels. (Not for token ids, whose mask has one value per token.)
    score
        Φ: ``"softmax"`` (the target's probability; default) or ``"logit"`` (raw score). The softmax runs over
        the target's class axis: the vocabulary of a sequence output at the target's position, the classes of
        a dense map at every position (then averaged over the region, so Φ ∈ [0, 1]). A function target is
        its own Φ: use ``score="logit"`` (apply a softmax inside the function if you want probabilities).
    fractions
        Kept fractions for the rate–distortion curve, or their number (evenly spaced in [0, 1]).
    n_eval
        Noise samples per point of the curves.
    n_random
        Random rankings averaged for the random-mask curve.
    seed
        Seed of every random draw (private generator; the global RNG is untouched). ``None``: unseeded.
    output
        Which of the model's outputs to explain when it returns a tuple, dict or output object: an index,
        a key/attribute name, or a callable on the output (see :func:`nbexplain.core._base.model_io.select_output`).
    embedding
        For token inputs: the name of the layer whose output ``(N, T, D)`` is masked and noised. ``None``:
        found automatically when ``inputs`` is an integer tensor and the model has exactly one ``nn.Embedding``.
    batch_size
        Largest number of noisy rows sent through the model at once.
    eval_mode
        Run the model in eval mode (restored afterwards).
    progress
        Progress bar over the optimisation steps and the curves' points (``None``: shown once the call has run
        for more than 2 s).

    Returns
    -------
    RDEResult
        ``.attribution`` (the mask), ``.target``, ``.output``, ``.score`` (the explained score at the clean
        input), ``.phi`` (Φ(x)), the ``.distortion`` and ``.rate`` trajectories, ``.fractions``, ``.curve``,
        ``.random_curve``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> res = nx.rde(net, torch.rand(2, 1, 4, 4), 0, steps=20, n_noise=8, fractions=5, progress=False)
    >>> res.attribution.shape, res.distortion.shape, res.curve.shape
    (torch.Size([2, 1, 4, 4]), torch.Size([20, 2]), torch.Size([2, 5]))
    """
    ints, score, fr = _check_options(
        l1, lr, init, dict(steps=steps, n_noise=n_noise, n_eval=n_eval, n_random=n_random, batch_size=batch_size),
        score, per_channel, fractions, seed,
    )
    check_progress(progress)
    batch_size = ints["batch_size"]
    if not isinstance(eval_mode, bool):
        raise TypeError(f"`eval_mode` must be True or False, got {eval_mode!r}.")
    model, x, space = prepare_attribution(model, inputs, output, embedding, wrt=wrt)
    reference = _reference_for(space, reference)
    _check_fit(space, target, score, per_channel)
    stats = None if space.tokens else _noise_model(x, mean, std, reference)
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(int(seed))
    else:
        gen.seed()

    with space.active(eval_mode):
        z, mask, dist_traj, rate_traj, curve, rand_curve, phi_x, t, out, explained = _fit(
            space, target, stats, gen, mean, std, reference, ints, fr, score, float(l1), float(lr), float(init),
            per_channel, progress,
        )
    if space.tokens:
        full_mask = mask.squeeze(-1).to(x.device, space.result_dtype).clone()
    else:
        full_mask = mask.expand(tuple(z.shape)).to(x.device, x.dtype).clone()
    settings = dict(mean=mean, std=std, reference=None if reference is None else "given", l1=float(l1),
                    steps=ints["steps"], lr=float(lr), n_noise=ints["n_noise"], init=float(init),
                    per_channel=per_channel, score=score, n_eval=ints["n_eval"], n_random=ints["n_random"],
                    seed=seed, wrt=space.wrt, output=output,
                    embedding=space.site.name if space.site is not None else None, batch_size=batch_size,
                    eval_mode=eval_mode)
    return RDEResult(
        attribution=full_mask,
        target=resolved_target(t),
        output=out,
        score=explained.to(x.device),
        method="rde",
        settings=settings,
        phi=phi_x.detach().cpu().to(torch.float64),
        distortion=dist_traj,
        rate=rate_traj,
        fractions=fr,
        curve=curve,
        random_curve=rand_curve,
    )


def _fit(
    space: AttributionSpace, target: Any, stats: tuple[torch.Tensor, torch.Tensor] | None, gen: torch.Generator,
    mean: Any, std: Any, reference: Any, ints: dict[str, int], fr: torch.Tensor, score: str, l1: float, lr: float,
    init: float, per_channel: bool, progress: bool | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Target,
           torch.Tensor, torch.Tensor]:
    """The work (inside ``space.active``): the points and noise statistics, Φ(x), the optimised mask and its
    curves. Returns ``z, mask, distortion, rate, curve, random_curve, Φ(x)``, the target, the output and the
    explained score."""
    batch_size = ints["batch_size"]
    if space.tokens:
        z = torch.cat([space.points(sl) for sl in batch_slices(space.n, batch_size)])
        stats = _token_noise_model(space, z, mean, std, reference, batch_size)
    else:
        z = space.points(slice(None))
    t, out, explained, phi_x = _clean_scores(space, target, score, batch_size)
    dist = _Distortion(space, z, t, phi_x, *stats, gen, score, batch_size)
    work = torch.promote_types(space.dtype, torch.float32)
    s = torch.full(_mask_shape(space, z, per_channel), init, dtype=work, device=space.device, requires_grad=True)
    with progress_bar(total=ints["steps"] + fr.numel(), desc="rde", progress=progress) as bar:
        mask, dist_traj, rate_traj = _optimise(dist, s, l1, lr, ints["steps"], ints["n_noise"], bar)
        with torch.no_grad():
            curve, rand_curve = _curves(dist, mask, fr, ints["n_eval"], ints["n_random"], bar)
    return z, mask, dist_traj, rate_traj, curve, rand_curve, phi_x, t, out, explained


def _check_fit(space: AttributionSpace, target: Any, score: str, per_channel: bool) -> None:
    """The options that depend on the input and the target: a per-channel mask of token ids, a function target's
    own Φ."""
    if space.tokens and per_channel:
        raise ValueError("`per_channel` does not apply to token ids: their mask has one value per token.")
    if target is not None and score == "softmax" and as_target(target, space.n).kind == "score":
        raise ValueError(
            "A function `target` computes Φ itself; pass score='logit' (the function gets the raw output — "
            "apply torch.softmax inside it for probabilities)."
        )


def _mask_shape(space: AttributionSpace, z: torch.Tensor, per_channel: bool) -> tuple[int, ...]:
    """One value per token (token ids), per pixel shared by the channels (images, unless ``per_channel``), or
    per component."""
    n, sample_shape = z.shape[0], tuple(z.shape[1:])
    if space.tokens:
        return (n,) + sample_shape[:-1] + (1,)
    if z.ndim == 4 and not per_channel:
        return (n, 1) + sample_shape[1:]
    return (n,) + sample_shape
