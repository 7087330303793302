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
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .hygiene import model_device, model_dtype, preserved
from .sensitivity import target_scores
from .validation import (
    check_choice,
    check_model,
    check_positive_int,
    check_target,
    check_tensor,
)

__all__ = ["rde", "RDEResult", "SCORES"]

#: What Φ is: the target's softmax probability (bounded, so λ means the same for every model) or
#: its raw logit.
SCORES = ("softmax", "logit")


@dataclass
class RDEResult:
    """What :func:`rde` returns.

    Attributes
    ----------
    mask
        ``(N, …)`` — the optimised mask, with the input's shape, values in [0, 1] (for images with
        ``per_channel=False`` it is constant across channels).
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
    score
        ``(N,)`` — ``Φ(x)``, the explained score of the clean input.
    """

    mask: torch.Tensor
    distortion: torch.Tensor
    rate: torch.Tensor
    fractions: torch.Tensor
    curve: torch.Tensor
    random_curve: torch.Tensor
    score: torch.Tensor

    def __repr__(self) -> str:
        return (
            f"RDEResult(mask shape={tuple(self.mask.shape)}, steps={self.distortion.shape[0]}, "
            f"final distortion={[round(v, 4) for v in self.distortion[-1].tolist()[:4]]}, "
            f"final rate={[round(v, 3) for v in self.rate[-1].tolist()[:4]]})"
        )


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
                f"`reference` must be a batch of at least 2 inputs shaped like `x`'s samples {shape}, "
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
                "pass a number, per-channel values shaped (C, 1, 1), or a full sample."
            ) from None
        out.append(t)
    if bool((out[1] < 0).any()):
        raise ValueError("`std` must be ≥ 0.")
    return out[0], out[1]


def _phi(model: nn.Module, y: torch.Tensor, t: torch.Tensor, score: str) -> torch.Tensor:
    out = model(y)
    if score == "softmax":
        if out.ndim < 2 or out.shape[1] < 2:
            raise ValueError("score='softmax' needs a model with ≥ 2 outputs per sample; use score='logit'.")
        out = torch.softmax(out.reshape(out.shape[0], out.shape[1], -1).sum(dim=2), dim=1)
    return target_scores(out, t)


def rde(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor | None = None,
    *,
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
    batch_size: int = 512,
    eval: bool = True,
    progress: bool | None = None,
) -> RDEResult:
    """Rate–distortion explanation: the sparsest mask that keeps the target score under noise.

    Parameters
    ----------
    model
        A classifier returning ``(N, C)`` scores.
    x
        Input batch ``(N, …)``; each sample gets its own mask (optimised jointly, independently).
    target
        Class to explain (int or ``(N,)``); ``None`` explains the predicted class.
    mean, std
        Statistics of the data distribution the noise is drawn from (numbers, per-channel ``(C,1,1)``
        or per-component tensors); the noise is Gaussian with this mean and std per component.
    reference
        A batch of real data instead of ``mean``/``std``: its per-component mean and std are used.
        With neither given, one mean and std pooled over ``x`` are used.
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
        shared by all channels.
    score
        Φ: ``"softmax"`` (the target's probability; default) or ``"logit"`` (raw score).
    fractions
        Kept fractions for the rate–distortion curve, or their number (evenly spaced in [0, 1]).
    n_eval
        Noise samples per point of the curves.
    n_random
        Random rankings averaged for the random-mask curve.
    seed
        Seed of every random draw (private generator; the global RNG is untouched). ``None``: unseeded.
    batch_size
        Largest number of noisy rows sent through the model at once.
    eval
        Run the model in eval mode (restored afterwards).
    progress
        Progress bar (``None``: shown when the optimisation has more than 50 steps).

    Returns
    -------
    RDEResult
        ``.mask``, ``.distortion`` and ``.rate`` trajectories, ``.fractions``, ``.curve``,
        ``.random_curve``, ``.score``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> res = nx.rde(net, torch.rand(2, 1, 4, 4), 0, steps=20, n_noise=8, fractions=5, progress=False)
    >>> res.mask.shape, res.distortion.shape, res.curve.shape
    (torch.Size([2, 1, 4, 4]), torch.Size([20, 2]), torch.Size([2, 5]))
    """
    model = check_model(model)
    x = check_tensor(x, "x", min_ndim=2, dtype_kind="float", finite=True)
    if x.shape[0] == 0:
        raise ValueError("`x` is an empty batch; pass at least one sample.")
    for name, v in (("l1", l1), ("lr", lr), ("init", init)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise TypeError(f"`{name}` must be a finite number, got {v!r}.")
    if l1 < 0:
        raise ValueError(f"`l1` must be ≥ 0, got {l1}.")
    if lr <= 0:
        raise ValueError(f"`lr` must be > 0, got {lr}.")
    if not 0 <= init <= 1:
        raise ValueError(f"`init` must lie in [0, 1] (a mask value), got {init}.")
    steps = check_positive_int(steps, "steps")
    n_noise = check_positive_int(n_noise, "n_noise")
    n_eval = check_positive_int(n_eval, "n_eval")
    n_random = check_positive_int(n_random, "n_random")
    batch_size = check_positive_int(batch_size, "batch_size")
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
    nm, ns = _noise_model(x, mean, std, reference)

    dev = model_device(model)
    dtype = model_dtype(model)
    n = x.shape[0]
    sample_shape = tuple(x.shape[1:])
    shared = x.ndim == 4 and not per_channel
    mask_shape = (n, 1) + sample_shape[1:] if shared else (n,) + sample_shape
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(int(seed))
    else:
        gen.seed()
    nm_d = torch.broadcast_to(nm, sample_shape).to(dev, dtype)
    ns_d = torch.broadcast_to(ns, sample_shape).to(dev, dtype)
    xd = x.detach().to(dev, dtype)

    def noise(k: int) -> torch.Tensor:
        eps = torch.randn((k,) + sample_shape, generator=gen, dtype=torch.float32).to(dev, dtype)
        return nm_d + ns_d * eps

    with preserved(model, values=not eval):
        if eval:
            model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            logits = model(xd[:batch_size]) if n <= batch_size else torch.cat(
                [model(xd[s : s + batch_size]) for s in range(0, n, batch_size)]
            )
            if target is None:
                t = logits.reshape(n, -1).argmax(dim=1).cpu() if logits.ndim >= 2 else torch.zeros(n, dtype=torch.long)
            else:
                t = check_target(target, n)
            phi_x = torch.cat(
                [_phi(model, xd[s : s + batch_size], t[s : s + batch_size], score) for s in range(0, n, batch_size)]
            )

        def distortion_rows(m: torch.Tensor, idx: torch.Tensor, k: int) -> torch.Tensor:
            """½ mean over k noise draws of (Φ(x) − Φ(y))² for the samples in idx, with masks m."""
            rows_i = idx.repeat_interleave(k)
            total = torch.zeros(idx.numel(), dtype=torch.float64, device=dev)
            for r in range(0, rows_i.numel(), batch_size):
                ri = rows_i[r : r + batch_size]
                local = torch.div(torch.arange(r, r + ri.numel(), device=dev), k, rounding_mode="floor")
                mm = m[local]
                y = mm * xd[ri] + (1 - mm) * noise(ri.numel())
                d = 0.5 * (phi_x[ri] - _phi(model, y, t.to(dev)[ri], score)) ** 2
                total.index_add_(0, local, d.to(torch.float64))
            return total / k

        # ---- optimisation
        s = torch.full(mask_shape, float(init), dtype=dtype, device=dev, requires_grad=True)
        opt = torch.optim.Adam([s], lr=float(lr))
        dist_traj = torch.empty(steps, n, dtype=torch.float64)
        rate_traj = torch.empty(steps, n, dtype=torch.float64)
        d_total = s[0].numel()
        show = steps > 50 if progress is None else bool(progress)
        all_idx = torch.arange(n, device=dev)
        with tqdm(total=steps, desc="rde", disable=not show, leave=False) as bar:
            for it in range(steps):
                opt.zero_grad(set_to_none=True)
                dist_sum = torch.zeros(n, dtype=torch.float64)
                # accumulate the distortion gradient over chunks of rows
                per = max(1, batch_size // n_noise)
                for c in range(0, n, per):
                    idx = all_idx[c : c + per]
                    with torch.enable_grad():
                        d = distortion_rows(s[c : c + per], idx, n_noise)
                        d.sum().backward()
                    dist_sum[c : c + per] = d.detach().cpu()
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
                    bar.set_postfix(distortion=f"{float(dist_sum.mean()):.4f}", rate=f"{float(rate_traj[it].mean()):.3f}")
        mask = s.detach()

        # ---- rate–distortion curves
        with torch.no_grad():
            flat_mask = mask.reshape(n, d_total)
            order = torch.argsort(flat_mask, dim=1, descending=True, stable=True)
            curve = torch.empty(n, fr.numel(), dtype=torch.float64)
            rand_curve = torch.zeros(n, fr.numel(), dtype=torch.float64)
            orders = [order] + [
                torch.argsort(torch.rand(n, d_total, generator=gen), dim=1).to(dev) for _ in range(n_random)
            ]
            for j, f in enumerate(fr.tolist()):
                keep = int(round(f * d_total))
                for oi, o in enumerate(orders):
                    binary = torch.zeros(n, d_total, dtype=dtype, device=dev)
                    if keep:
                        binary.scatter_(1, o[:, :keep], 1.0)
                    d = torch.cat(
                        [
                            distortion_rows(binary.reshape(mask_shape)[c : c + max(1, batch_size // n_eval)],
                                            all_idx[c : c + max(1, batch_size // n_eval)], n_eval)
                            for c in range(0, n, max(1, batch_size // n_eval))
                        ]
                    ).cpu()
                    if oi == 0:
                        curve[:, j] = d
                    else:
                        rand_curve[:, j] += d / n_random

    full_mask = mask.expand((n,) + sample_shape).to(x.device, x.dtype).clone()
    return RDEResult(
        mask=full_mask,
        distortion=dist_traj,
        rate=rate_traj,
        fractions=fr,
        curve=curve,
        random_curve=rand_curve,
        score=phi_x.detach().cpu().to(torch.float64),
    )
