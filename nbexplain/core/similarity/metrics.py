"""Representation similarity: CCA, SVCCA, PWCCA and CKA between two sets of features.

Every function takes two ``(n_samples, n_features)`` arrays holding the *same samples in the same order*
(the widths may differ) and computes in float64 on the inputs' device (Apple ``mps`` has no float64, so
there the work runs on the CPU). Results come back as small dataclasses holding CPU float64 tensors.

Which number is the headline
----------------------------
* :func:`cca` / :func:`svcca` → ``result.mean`` (also ``result.value``): the plain arithmetic mean of *all*
  canonical correlations ρ₁ ≥ ρ₂ ≥ … ≥ ρ_k — the SVCCA paper's similarity (Raghu et al. 2017). ``k`` is the
  number of canonical pairs that exist: ``min(rank_x, rank_y)`` (after SVCCA's reduction).
  ``result.mean_squared`` is the mean of ρᵢ² (Yanai's R²_CCA, the "mean squared CCA" of Kornblith et al.).
  ``result.cumulative_mean`` is the summary that google/svcca's ``get_cca_similarity`` calls ``"mean"``:
  the mean of the leading coefficients up to the first index where their running sum reaches 98% of the
  total (``result.truncated_mean(threshold)`` for other thresholds). It is *not* the headline.
* :func:`pwcca` → ``result.value`` (also ``result.weighted_mean``): Σᵢ αᵢ ρᵢ with the projection weights α of
  Morcos et al. (2018). ``result.mean`` there is still the plain mean of its coefficients.
* :func:`cka` → ``result.value``.

Numerics
--------
Canonical correlations are the singular values of Σxx^{-1/2} Σxy Σyy^{-1/2}. Each covariance is divided by
its largest entry (as google/svcca does), ``epsilon`` is added to the diagonal of that scaled matrix, and
directions whose variance is below ``1e-10`` of the largest are dropped (constant or duplicated features,
fewer samples than features) instead of being inverted — so rank-deficient input gives the correlations of
the directions that exist, never NaN. Well-conditioned sides are whitened with a Cholesky factor, the rest
with an eigen-decomposition; both give the same values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch

from .._base import dense_linalg
from .._base.validation import check_choice, check_finite, check_same_samples

__all__ = [
    "cca",
    "svcca",
    "pwcca",
    "cka",
    "CCAResult",
    "SVCCAResult",
    "PWCCAResult",
    "CKAResult",
    "KeepArg",
    "RANK_RTOL",
]

#: Directions with variance below this fraction of the largest are treated as absent.
RANK_RTOL = 1e-10
#: Cholesky whitening is used only when every pivot keeps at least this fraction of the largest variance.
_CHOLESKY_PIVOT_RTOL = 1e-6

KeepArg = Union[float, int, Sequence[Union[float, int]]]

CKA_KERNELS = ("linear", "rbf")


# --------------------------------------------------------------------------------------------- results
def _truncated_mean(coefficients: torch.Tensor, threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must lie in [0, 1], got {threshold}.")
    c = coefficients
    total = float(c.sum())
    if c.numel() == 0 or total <= 0.0:
        return 0.0
    csum = torch.cumsum(c, 0) / total
    # google/svcca's sum_threshold: smallest i with sum(c[:i]) >= threshold * total (i ≥ 1 here).
    reached = torch.nonzero(csum >= threshold - 1e-15)
    i = int(reached[0]) + 1 if reached.numel() else c.numel()
    return float(c[:i].mean())


@dataclass(frozen=True, repr=False)
class CCAResult:
    """Canonical correlations of two sets of features.

    Attributes
    ----------
    coefficients
        float64 ``(k,)`` canonical correlations, descending, in [0, 1]; ``k = min(x_rank, y_rank)``.
    n_samples
        Number of samples used.
    x_rank, y_rank
        Directions of each side that entered the analysis (after dropping zero-variance directions, and
        after SVCCA's reduction).
    epsilon
        The regulariser added to the diagonal of each scaled covariance.
    """

    coefficients: torch.Tensor
    n_samples: int
    x_rank: int
    y_rank: int
    epsilon: float

    method = "cca"

    @property
    def mean(self) -> float:
        """Arithmetic mean of all coefficients — the headline for CCA and SVCCA."""
        return float(self.coefficients.mean()) if self.coefficients.numel() else 0.0

    @property
    def value(self) -> float:
        """The headline number of this method (for CCA/SVCCA: :attr:`mean`)."""
        return self.mean

    @property
    def mean_squared(self) -> float:
        """Mean of the squared coefficients (Yanai's R²_CCA, "mean squared CCA" in Kornblith et al.)."""
        return float((self.coefficients**2).mean()) if self.coefficients.numel() else 0.0

    @property
    def cumulative_mean(self) -> float:
        """google/svcca's ``"mean"``: the mean of the leading coefficients covering 98% of their sum."""
        return _truncated_mean(self.coefficients, 0.98)

    def truncated_mean(self, threshold: float = 0.98) -> float:
        """Mean of the leading coefficients up to where their running sum reaches ``threshold`` of the total."""
        return _truncated_mean(self.coefficients, float(threshold))

    def __float__(self) -> float:
        return self.value

    def _extra(self) -> str:
        return ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(value={self.value:.4f}, k={self.coefficients.numel()}, "
            f"n_samples={self.n_samples}, x_rank={self.x_rank}, y_rank={self.y_rank}{self._extra()})"
        )


@dataclass(frozen=True, repr=False)
class SVCCAResult(CCAResult):
    """SVCCA: CCA between the top singular directions of each side.

    Extra attributes: ``x_variance`` / ``y_variance`` — the fraction of each side's variance kept by the
    reduction; ``keep`` — the requested ``(keep_x, keep_y)``. ``x_rank`` / ``y_rank`` are the kept dims.
    """

    x_variance: float
    y_variance: float
    keep: tuple[float | int, float | int]

    method = "svcca"

    def _extra(self) -> str:
        return f", variance kept=({self.x_variance:.3f}, {self.y_variance:.3f})"


@dataclass(frozen=True, repr=False)
class PWCCAResult(CCAResult):
    """Projection-weighted CCA (Morcos et al. 2018).

    ``weights`` (float64 ``(k,)``, summing to 1) is αᵢ ∝ Σⱼ |⟨hᵢ, zⱼ⟩|, with hᵢ the i-th canonical
    variate of side ``side`` and zⱼ that side's centred neurons. The headline is :attr:`value` =
    :attr:`weighted_mean` = Σᵢ αᵢ ρᵢ.
    """

    weights: torch.Tensor
    side: str

    method = "pwcca"

    @property
    def weighted_mean(self) -> float:
        """Σᵢ αᵢ ρᵢ — the PWCCA similarity (in [0, 1]: the weights sum to 1 only up to round-off)."""
        if not self.coefficients.numel():
            return 0.0
        return min(max(float((self.weights * self.coefficients).sum()), 0.0), 1.0)

    @property
    def value(self) -> float:
        return self.weighted_mean

    def _extra(self) -> str:
        return f", side={self.side!r}"


@dataclass(frozen=True, repr=False)
class CKAResult:
    """Centred kernel alignment (Kornblith et al. 2019).

    ``value`` is HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)). Biased CKA lies in [0, 1]; debiased CKA uses
    the unbiased HSIC estimator and can be slightly negative for unrelated features (|value| ≤ 1).
    """

    value: float
    kernel: str
    debiased: bool
    n_samples: int
    threshold: float | None = None

    method = "cka"

    def __float__(self) -> float:
        return self.value

    def __repr__(self) -> str:
        extra = f", threshold={self.threshold}" if self.kernel == "rbf" else ""
        return (
            f"CKAResult(value={self.value:.4f}, kernel={self.kernel!r}, debiased={self.debiased}, "
            f"n_samples={self.n_samples}{extra})"
        )


# ------------------------------------------------------------------------------------------ validation
def compute_device(t: torch.Tensor) -> torch.device:
    """Where float64 work on ``t`` runs: its own device, except ``mps`` (no float64) → CPU."""
    return torch.device("cpu") if t.device.type == "mps" else t.device


def as_features(value: Any, argname: str, device: torch.device | None = None) -> torch.Tensor:
    """Validate one ``(n_samples, n_features)`` array and return it as float64 on its compute device."""
    if not isinstance(value, torch.Tensor):
        if type(value).__module__.startswith("numpy") and hasattr(value, "shape"):
            value = torch.as_tensor(value)
        else:
            raise TypeError(
                f"`{argname}` must be a torch.Tensor or numpy array of shape (n_samples, n_features), "
                f"got {type(value).__name__}."
            )
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"`{argname}` must hold real numbers, got {value.dtype}. Use x.float().")
    if value.ndim != 2:
        hint = (
            " For a single feature use x.reshape(-1, 1); for conv maps (N, C, H, W) use "
            "nx.activations(..., conv='channels') or x.flatten(1)."
        )
        raise ValueError(
            f"`{argname}` must be 2-D (n_samples, n_features), got shape {tuple(value.shape)}.{hint}"
        )
    if value.shape[1] == 0:
        raise ValueError(f"`{argname}` has no features (shape {tuple(value.shape)}).")
    dev = device if device is not None else compute_device(value)
    value = value.detach().to(device=dev, dtype=torch.float64)
    check_finite(value, argname)
    return value


def as_pair(x: Any, y: Any, min_samples: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a pair of feature arrays; ``y`` is moved to ``x``'s compute device."""
    xt = as_features(x, "x")
    yt = as_features(y, "y", device=xt.device)
    check_same_samples(xt, yt, ("x", "y"))
    if xt.shape[0] < min_samples:
        raise ValueError(
            f"Similarity needs at least {min_samples} samples, got {xt.shape[0]}: with fewer, the "
            "(co)variances are undefined."
        )
    return xt, yt


def _check_epsilon(epsilon: Any) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon):
        raise TypeError(f"`epsilon` must be a finite number ≥ 0, got {epsilon!r}.")
    if epsilon < 0:
        raise ValueError(f"`epsilon` must be ≥ 0 (it is added to a covariance diagonal), got {epsilon}.")
    return float(epsilon)


def check_keep(keep: Any) -> tuple[float | int, float | int]:
    """Normalise SVCCA's ``keep`` to a pair: float in (0, 1] = variance fraction, int ≥ 1 = dimensions."""
    if isinstance(keep, (tuple, list)):
        if len(keep) != 2:
            raise ValueError(f"`keep` as a sequence must be (keep_x, keep_y), got {keep!r}.")
        return (_check_keep_one(keep[0]), _check_keep_one(keep[1]))
    k = _check_keep_one(keep)
    return (k, k)


def _check_keep_one(k: Any) -> float | int:
    if isinstance(k, bool):
        raise TypeError(f"`keep` must be a variance fraction in (0, 1] or a number of directions, got {k!r}.")
    if isinstance(k, int) or (hasattr(k, "__index__") and not isinstance(k, float)):
        k = int(k)
        if k < 1:
            raise ValueError(f"`keep` as a number of directions must be ≥ 1, got {k}.")
        return k
    if isinstance(k, float):
        if not (0.0 < k <= 1.0):
            raise ValueError(
                f"`keep` as a float is the fraction of variance to keep and must lie in (0, 1], got {k}. "
                "Pass an int to keep a number of directions."
            )
        return k
    raise TypeError(f"`keep` must be a variance fraction in (0, 1] or a number of directions, got {k!r}.")


# ------------------------------------------------------------------------------------------ building blocks
#: A feature whose spread is below this fraction of its magnitude is constant (round-off of the mean).
CONSTANT_RTOL = 1e-12


def centred(x: torch.Tensor) -> torch.Tensor:
    """Subtract the column means; numerically constant columns become exactly zero."""
    xc = x - x.mean(dim=0, keepdim=True)
    const = xc.abs().amax(dim=0) <= CONSTANT_RTOL * x.abs().amax(dim=0)
    if bool(const.any()):
        xc[:, const] = 0.0
    return xc


def constant_mask(comoment_diag: torch.Tensor, mean: torch.Tensor, n: int) -> torch.Tensor:
    """Features whose spread Σ(x − μ)² is at round-off level of their mean: numerically constant."""
    return comoment_diag <= n * (CONSTANT_RTOL * mean.abs()) ** 2


def zero_constant(cov: torch.Tensor, mean: torch.Tensor, n: int) -> torch.Tensor:
    """Zero the rows/columns of a co-moment matrix (Σ(x − μ)(x − μ)ᵀ) whose feature is numerically constant."""
    const = constant_mask(torch.diagonal(cov), mean, n)
    if bool(const.any()):
        cov = cov.clone()
        cov[const, :] = 0.0
        cov[:, const] = 0.0
    return cov


def centre_and_gram(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(xc, xcᵀxc, constant mask)`` with numerically constant columns exactly zero in both."""
    xc, mean = dense_linalg.centre(x)
    gram = dense_linalg.gram(xc)
    const = constant_mask(torch.diagonal(gram), mean, x.shape[0])
    if bool(const.any()):
        xc[:, const] = 0.0
        gram[const, :] = 0.0
        gram[:, const] = 0.0
    return xc, gram, const


#: :func:`centred_products` multiplies the columns as they are (no centred copy) when every column's mean is
#: at most this many standard deviations from 0; the rank-one correction ``− n μμᵀ`` then leaves an error at
#: most about 3× that of multiplying centred columns (the product's round-off scales with E[x²] = σ² + μ²).
UNCENTRED_MAX_MEAN_RATIO = 1.0


def _product_operand(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(a, mean, raw)``: ``a`` is ``x`` itself (``raw``) when its columns are centred enough for the
    corrected product, else ``x − mean`` (a new tensor)."""
    n = x.shape[0]
    mean, sumsq = dense_linalg.column_moments(x)
    var = sumsq / n - mean * mean  # cancellation-prone only where the test below fails anyway
    if bool((mean * mean <= UNCENTRED_MAX_MEAN_RATIO**2 * var).all()):
        return x, mean, True
    return dense_linalg.centre(x, mean)[0], mean, False


def centred_products(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Co-moments ``Σ(x − μx)(x − μx)ᵀ``, ``Σ(y − μy)(y − μy)ᵀ`` and ``Σ(x − μx)(y − μy)ᵀ``.

    Nearly centred inputs (the usual case for activations and for this benchmark's data) are multiplied
    as they are and corrected by ``n μ μᵀ``: no centred copies (2 × n·p floats less memory, and no pass to
    write them). Inputs with a large mean are centred first (see ``UNCENTRED_MAX_MEAN_RATIO``); a product
    with one centred side needs no correction (its columns sum to 0). Numerically constant features are
    exactly zero rows and columns.
    """
    n = x.shape[0]
    ax, mx, raw_x = _product_operand(x)
    ay, my, raw_y = _product_operand(y)
    sxx, syy, sxy = dense_linalg.gram(ax), dense_linalg.gram(ay), dense_linalg.cross(ax, ay)
    if raw_x:
        sxx.addr_(mx, mx, alpha=-float(n))
    if raw_y:
        syy.addr_(my, my, alpha=-float(n))
    if raw_x and raw_y:
        sxy.addr_(mx, my, alpha=-float(n))
    for side, (cov, mean) in enumerate(((sxx, mx), (syy, my))):
        const = constant_mask(torch.diagonal(cov), mean, n)
        if bool(const.any()):
            cov[const, :] = 0.0
            cov[:, const] = 0.0
            if side == 0:
                sxy[const, :] = 0.0
            else:
                sxy[:, const] = 0.0
    return sxx, syy, sxy


def zero_variance_error(argname: str) -> ValueError:
    return ValueError(
        f"`{argname}` has zero variance (every feature is constant over the samples): its similarity to "
        "anything is undefined. Check that the layer is alive for these inputs."
    )


class Whitener:
    """Σ^{-1/2}-type map of one side, from its covariance (any positive scale).

    ``w`` has ``r`` columns with ``wᵀ Σ̃ w = I`` where ``Σ̃ = Σ/scale + ε·I`` restricted to the kept
    directions; Cholesky form when ``tri`` is set (w = L⁻ᵀ, applied by triangular solves).
    """

    def __init__(
        self,
        cov: torch.Tensor,
        argname: str,
        epsilon: float = 0.0,
        keep: float | int | None = None,
        allow_cholesky: bool = True,
    ) -> None:
        # callers pass symmetric matrices; Cholesky and eigh read only the lower triangle
        diag = torch.diagonal(cov)
        scale = float(diag.max()) if diag.numel() else 0.0
        if not scale > 0.0:
            raise zero_variance_error(argname)
        self.scale = scale
        s = cov / scale
        self.cov = s  # scaled, unregularised
        p = s.shape[0]
        self.p = p
        self.tri: torch.Tensor | None = None
        self.w: torch.Tensor | None = None
        self.variance_kept = 1.0
        if keep is None and allow_cholesky:
            reg = s + epsilon * torch.eye(p, dtype=s.dtype, device=s.device) if epsilon else s
            chol, info = torch.linalg.cholesky_ex(reg)
            if int(info) == 0:
                piv = torch.diagonal(chol) ** 2
                if float(piv.min()) >= _CHOLESKY_PIVOT_RTOL * float(torch.diagonal(reg).max()):
                    self.tri = chol
                    self.rank = p
                    return
        vals, vecs = dense_linalg.eigh(s)
        vals = vals.flip(0).clamp_min(0.0)
        vecs = vecs.flip(1)
        top = float(vals[0]) if vals.numel() else 0.0
        if not top > 0.0:
            raise zero_variance_error(argname)
        # ε = 0: numerically null directions are dropped; ε > 0: every direction is kept and shrunk by the
        # ridge (as the Cholesky path does), so the result does not depend on which path ran
        r = int((vals > RANK_RTOL * top).sum()) if keep is not None or epsilon == 0.0 else p
        if keep is not None:
            if isinstance(keep, int):
                k = min(keep, r)
            else:
                frac = torch.cumsum(vals[:r], 0) / float(vals[:r].sum())
                k = int((frac < keep - 1e-12).sum()) + 1
                k = min(k, r)
            self.variance_kept = float(vals[:k].sum() / vals.sum())
            r = k
        self.rank = r
        lam = vals[:r] + epsilon
        self.vals = vals[:r]
        self.vecs = vecs[:, :r]
        self.w = vecs[:, :r] * lam.rsqrt()

    def left(self, m: torch.Tensor) -> torch.Tensor:
        """``wᵀ m``."""
        if self.tri is not None:
            return torch.linalg.solve_triangular(self.tri, m, upper=False)
        assert self.w is not None
        return self.w.T @ m

    def right(self, m: torch.Tensor) -> torch.Tensor:
        """``m w``."""
        if self.tri is not None:
            return torch.linalg.solve_triangular(self.tri.T, m, upper=True, left=False)
        assert self.w is not None
        return m @ self.w

    def directions(self, u: torch.Tensor) -> torch.Tensor:
        """Canonical weight vectors ``a = w u`` in the original (scaled) feature space."""
        if self.tri is not None:
            return torch.linalg.solve_triangular(self.tri.T, u, upper=True)
        assert self.w is not None
        return self.w @ u

    def neuron_loadings(self, u: torch.Tensor) -> torch.Tensor:
        """``Σ a`` for the canonical weight vectors ``a = w u``: ∝ ⟨canonical variate, neuron⟩."""
        return self.cov @ self.directions(u)


def pwcca_weights(white: Whitener, u: torch.Tensor) -> torch.Tensor:
    """α ∝ Σⱼ |⟨hᵢ, zⱼ⟩| for the canonical variates ``hᵢ`` given by the columns of ``u``."""
    load = white.neuron_loadings(u).abs().sum(dim=0)
    total = float(load.sum())
    if total <= 0.0:
        return torch.full_like(load, 1.0 / max(load.numel(), 1))
    return load / total


def cca_from_covariances(
    sxx: torch.Tensor,
    syy: torch.Tensor,
    sxy: torch.Tensor,
    n_samples: int,
    *,
    epsilon: float = 0.0,
    method: str = "cca",
    keep: tuple[float | int, float | int] | None = None,
) -> CCAResult:
    """CCA / SVCCA / PWCCA from the covariance blocks (any common positive scale) — shared by all paths."""
    check_choice(method, "method", ("cca", "svcca", "pwcca"))
    kx, ky = keep if (method == "svcca" and keep is not None) else (None, None)
    wx = Whitener(sxx, "x", epsilon, kx)
    wy = Whitener(syy, "y", epsilon, ky)
    cross = sxy / math.sqrt(wx.scale * wy.scale)
    m = wy.right(wx.left(cross))
    if method == "pwcca":
        u, s, vh = dense_linalg.svd(m)
        coef = s.clamp(0.0, 1.0)
        if wx.rank <= wy.rank:
            side, weights = "x", pwcca_weights(wx, u)
        else:
            side, weights = "y", pwcca_weights(wy, vh.T)
        return PWCCAResult(
            coefficients=coef.cpu(),
            n_samples=int(n_samples),
            x_rank=wx.rank,
            y_rank=wy.rank,
            epsilon=epsilon,
            weights=weights.cpu(),
            side=side,
        )
    coef = dense_linalg.svdvals(m).clamp(0.0, 1.0).cpu()
    if method == "svcca":
        assert kx is not None and ky is not None
        return SVCCAResult(
            coefficients=coef,
            n_samples=int(n_samples),
            x_rank=wx.rank,
            y_rank=wy.rank,
            epsilon=epsilon,
            x_variance=wx.variance_kept,
            y_variance=wy.variance_kept,
            keep=(kx, ky),
        )
    return CCAResult(coefficients=coef, n_samples=int(n_samples), x_rank=wx.rank, y_rank=wy.rank, epsilon=epsilon)


def _covariances(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return centred_products(x, y)  # co-moments: the common scale (n − 1) is irrelevant


# ------------------------------------------------------------------------------------------ public API
def cca(x: Any, y: Any, *, epsilon: float = 0.0) -> CCAResult:
    """Canonical correlation analysis between two sets of features.

    Parameters
    ----------
    x, y
        ``(n_samples, n_x)`` and ``(n_samples, n_y)`` tensors or numpy arrays with the same samples in the
        same order (rows). Widths may differ. Computed in float64 on ``x``'s device.
    epsilon
        Ridge added to the diagonal of each covariance after scaling it by its largest entry (as in
        google/svcca). ``0`` (default) gives exact CCA; directions with variance below ``1e-10`` of the
        largest are dropped instead of inverted. With ``epsilon > 0`` every direction is kept and shrunk, so
        null directions (a rank-deficient side) add coefficients near 0, as in google/svcca.

    Returns
    -------
    CCAResult
        ``.coefficients`` (descending canonical correlations ρᵢ ∈ [0, 1]), the headline ``.mean`` (mean of
        all ρᵢ), ``.mean_squared``, ``.cumulative_mean`` (google/svcca's 98% summary).

    Raises
    ------
    ValueError
        Different sample counts, non-finite values, fewer than 2 samples, or a side with zero variance.

    Notes
    -----
    CCA is invariant to any invertible linear map (and translation) of either side. With fewer samples
    than ``rank_x + rank_y`` the coefficients are trivially 1: CCA overfits; use :func:`svcca`.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> x = torch.randn(500, 8, dtype=torch.float64)
    >>> res = nx.cca(x, x @ torch.randn(8, 8, dtype=torch.float64))  # an invertible map of x
    >>> round(res.mean, 6)
    1.0
    >>> res.coefficients.shape
    torch.Size([8])
    """
    eps = _check_epsilon(epsilon)
    xt, yt = as_pair(x, y)
    sxx, syy, sxy = _covariances(xt, yt)
    return cca_from_covariances(sxx, syy, sxy, xt.shape[0], epsilon=eps, method="cca")


def svcca(x: Any, y: Any, *, keep: KeepArg = 0.99, epsilon: float = 0.0) -> SVCCAResult:
    """SVCCA (Raghu et al. 2017): reduce each side to its top singular directions, then CCA.

    Parameters
    ----------
    x, y
        ``(n_samples, n_x)`` and ``(n_samples, n_y)`` with the same samples in the same order.
    keep
        A float in (0, 1]: keep the fewest top directions that explain at least that fraction of each
        side's variance (default 0.99). An int: keep that many directions (google/svcca's tutorial keeps
        20); capped at the side's rank. A pair ``(keep_x, keep_y)`` sets the sides separately.
    epsilon
        Ridge on the reduced covariances (see :func:`cca`).

    Returns
    -------
    SVCCAResult
        Headline ``.mean`` = mean of all canonical correlations of the reduced sides; ``.x_rank`` /
        ``.y_rank`` are the kept dimensions and ``.x_variance`` / ``.y_variance`` the variance they explain.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> g = torch.Generator().manual_seed(0)
    >>> signal = torch.randn(1000, 5, generator=g, dtype=torch.float64)
    >>> x = signal @ torch.randn(5, 40, generator=g, dtype=torch.float64)
    >>> y = signal @ torch.randn(5, 30, generator=g, dtype=torch.float64)
    >>> res = nx.svcca(x, y + 0.01 * torch.randn(1000, 30, generator=g, dtype=torch.float64))
    >>> res.x_rank, round(res.mean, 3)
    (5, 1.0)
    """
    eps = _check_epsilon(epsilon)
    kp = check_keep(keep)
    xt, yt = as_pair(x, y)
    sxx, syy, sxy = _covariances(xt, yt)
    res = cca_from_covariances(sxx, syy, sxy, xt.shape[0], epsilon=eps, method="svcca", keep=kp)
    assert isinstance(res, SVCCAResult)
    return res


def pwcca(x: Any, y: Any, *, epsilon: float = 0.0) -> PWCCAResult:
    """Projection-weighted CCA (Morcos et al. 2018).

    Canonical correlations weighted by how much of one side's neurons each canonical variate accounts
    for: αᵢ ∝ Σⱼ |⟨hᵢ, zⱼ⟩| (hᵢ the unit-norm canonical variates, zⱼ the centred neurons). The weights are
    taken on the side with fewer directions (x on a tie), whose canonical variates are all paired — so
    sides of different widths are handled correctly (google/svcca's ``compute_pwcca`` mis-sizes them).

    With tied canonical correlations (e.g. several exactly 1 when both layers are linear maps of the
    same input), the canonical variates inside a tie are not unique and neither is PWCCA: the value
    then depends on the basis the SVD returns for that tie.

    Parameters
    ----------
    x, y
        ``(n_samples, n_x)`` and ``(n_samples, n_y)`` with the same samples in the same order.
    epsilon
        Ridge on the scaled covariances (see :func:`cca`).

    Returns
    -------
    PWCCAResult
        Headline ``.value`` = ``.weighted_mean`` = Σᵢ αᵢ ρᵢ; ``.weights`` (sum 1), ``.coefficients``, ``.side``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(2000, 6, generator=g, dtype=torch.float64)
    >>> y = torch.cat([x[:, :3], torch.randn(2000, 9, generator=g, dtype=torch.float64)], dim=1)
    >>> res = nx.pwcca(x, y)
    >>> res.side, res.weights.shape, 0.0 < res.value < 1.0
    ('x', torch.Size([6]), True)
    """
    eps = _check_epsilon(epsilon)
    xt, yt = as_pair(x, y)
    sxx, syy, sxy = _covariances(xt, yt)
    res = cca_from_covariances(sxx, syy, sxy, xt.shape[0], epsilon=eps, method="pwcca")
    assert isinstance(res, PWCCAResult)
    return res


# ------------------------------------------------------------------------------------------------- CKA
def hsic_biased_gram(kc: torch.Tensor, lc: torch.Tensor) -> float:
    """⟨HKH, HLH⟩_F for already centred grams (scale (n − 1)⁻² omitted: it cancels in CKA)."""
    return float((kc * lc).sum())


def hsic_unbiased_gram(k_gram: torch.Tensor, l_gram: torch.Tensor) -> float:
    """Song et al. (2012)'s unbiased HSIC estimator of the grams K and L, times n(n − 3) (the factor cancels in
    CKA)."""
    n = k_gram.shape[0]
    kt = k_gram - torch.diag_embed(torch.diagonal(k_gram))
    lt = l_gram - torch.diag_embed(torch.diagonal(l_gram))
    k1, l1 = kt.sum(dim=1), lt.sum(dim=1)
    term = (kt * lt).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 * l1).sum()
    return float(term)


def hsic_unbiased_linear(
    cross_sq: float, sum_ab: float, sum_a: float, sum_b: float, n: int
) -> float:
    """Unbiased HSIC (× n(n − 3)) for linear kernels of *centred* features, from feature-space sums.

    With K = XXᵀ, L = YYᵀ, centred X, Y and aᵢ = ‖xᵢ‖², bᵢ = ‖yᵢ‖²: tr(K̃L̃) = ‖XᵀY‖² − Σaᵢbᵢ,
    1ᵀK̃1 = −Σaᵢ, 1ᵀK̃L̃1 = Σaᵢbᵢ (K̃ = K without its diagonal).
    """
    return cross_sq - sum_ab + sum_a * sum_b / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * sum_ab


def linear_cka_from_covariances(sxx: torch.Tensor, syy: torch.Tensor, sxy: torch.Tensor) -> float:
    """Biased linear CKA = ‖Σxy‖²_F / (‖Σxx‖_F ‖Σyy‖_F) (any common scale)."""
    nx_, ny_ = float(torch.linalg.matrix_norm(sxx)), float(torch.linalg.matrix_norm(syy))
    if not nx_ > 0.0:
        raise zero_variance_error("x")
    if not ny_ > 0.0:
        raise zero_variance_error("y")
    return min(max(float((sxy * sxy).sum()) / (nx_ * ny_), 0.0), 1.0)


def rbf_gram(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """exp(−‖xᵢ − xⱼ‖² / (2σ²)) with σ² = threshold² · median of all n² squared distances."""
    xc = centred(x)
    dots = xc @ xc.T
    sq = torch.diagonal(dots)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * dots).clamp_min(0.0)
    d2.fill_diagonal_(0.0)
    flat = d2.reshape(-1)
    m = flat.numel()
    lo = torch.kthvalue(flat, (m + 1) // 2).values
    hi = torch.kthvalue(flat, m // 2 + 1).values
    med = float((lo + hi) / 2)  # numpy's median (mean of the two middle values for even counts)
    if not med > 0.0:
        raise ValueError(
            "The median pairwise distance is 0 (more than half of the samples coincide), so the RBF "
            "bandwidth is undefined. Use kernel='linear' or remove duplicated samples."
        )
    return torch.exp(d2 / (-2.0 * threshold**2 * med))


def _center_gram(k: torch.Tensor) -> torch.Tensor:
    k = k - k.mean(dim=0, keepdim=True)
    return k - k.mean(dim=1, keepdim=True)


def cka(
    x: Any,
    y: Any,
    *,
    kernel: str = "linear",
    debiased: bool = False,
    threshold: float = 1.0,
) -> CKAResult:
    """Centred kernel alignment (Kornblith et al. 2019).

    Parameters
    ----------
    x, y
        ``(n_samples, n_x)`` and ``(n_samples, n_y)`` with the same samples in the same order.
    kernel
        ``"linear"`` (default; computed in feature space when that is cheaper, never forming n × n
        matrices then) or ``"rbf"`` (n × n Gram matrices: memory grows as n²).
    debiased
        Use the unbiased HSIC estimator (Song et al. 2012; needs ≥ 4 samples). Debiased values can be
        slightly negative for unrelated features.
    threshold
        RBF only: the bandwidth σ is ``threshold`` × the median pairwise distance (median over all n²
        pairs, the zero diagonal included — Kornblith et al.'s convention).

    Returns
    -------
    CKAResult
        ``.value`` = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).

    Notes
    -----
    Linear CKA is invariant to orthogonal maps, isotropic scaling and translation of either side, but
    not to general invertible maps (CCA is).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> x = torch.randn(300, 10, dtype=torch.float64)
    >>> q, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
    >>> round(nx.cka(x, 3.0 * x @ q).value, 6)  # orthogonal map and isotropic scaling
    1.0
    >>> 0.0 <= nx.cka(x, torch.randn(300, 4), kernel="rbf").value <= 1.0
    True
    """
    check_choice(kernel, "kernel", CKA_KERNELS)
    if not isinstance(debiased, bool):
        raise TypeError(f"`debiased` must be True or False, got {debiased!r}.")
    if kernel == "rbf":
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
            raise ValueError(f"`threshold` must be a positive number (bandwidth / median distance), got {threshold!r}.")
    xt, yt = as_pair(x, y, min_samples=4 if debiased else 2)
    n, p, q = xt.shape[0], xt.shape[1], yt.shape[1]
    if kernel == "linear" and p * p + q * q + p * q <= n * (p + q):
        if not debiased:
            value = linear_cka_from_covariances(*centred_products(xt, yt))
        else:
            xc, sxx, _ = centre_and_gram(xt)
            yc, syy, _ = centre_and_gram(yt)
            sxy = dense_linalg.cross(xc, yc)
            a, b = (xc * xc).sum(dim=1), (yc * yc).sum(dim=1)
            hxy = hsic_unbiased_linear(float((sxy * sxy).sum()), float(a @ b), float(a.sum()), float(b.sum()), n)
            hxx = hsic_unbiased_linear(float((sxx * sxx).sum()), float(a @ a), float(a.sum()), float(a.sum()), n)
            hyy = hsic_unbiased_linear(float((syy * syy).sum()), float(b @ b), float(b.sum()), float(b.sum()), n)
            value = _ratio(hxy, hxx, hyy, debiased=True, n=n)
        return CKAResult(value=value, kernel=kernel, debiased=debiased, n_samples=n)
    if kernel == "linear":
        xc, yc = centred(xt), centred(yt)
        k_gram, l_gram = xc @ xc.T, yc @ yc.T
    else:
        for t, name in ((xt, "x"), (yt, "y")):
            if not bool(centred(t).any()):
                raise zero_variance_error(name)
        k_gram, l_gram = rbf_gram(xt, float(threshold)), rbf_gram(yt, float(threshold))
    if debiased:
        hxy = hsic_unbiased_gram(k_gram, l_gram)
        hxx, hyy = hsic_unbiased_gram(k_gram, k_gram), hsic_unbiased_gram(l_gram, l_gram)
    else:
        kc, lc = _center_gram(k_gram), _center_gram(l_gram)
        hxy, hxx, hyy = hsic_biased_gram(kc, lc), hsic_biased_gram(kc, kc), hsic_biased_gram(lc, lc)
    value = _ratio(hxy, hxx, hyy, debiased=debiased, n=n)
    return CKAResult(
        value=value, kernel=kernel, debiased=debiased, n_samples=n,
        threshold=float(threshold) if kernel == "rbf" else None,
    )


def _ratio(hxy: float, hxx: float, hyy: float, debiased: bool, n: int = 0) -> float:
    # Relative tolerance: a zero-variance side gives round-off-sized self-HSIC.
    for name, h in (("x", hxx), ("y", hyy)):
        if h > 0.0:
            continue
        if not debiased:
            raise zero_variance_error(name)
        # the unbiased estimator can be ≤ 0 for a side that does vary, when there are few samples
        raise ValueError(
            f"Debiased CKA is undefined here: the unbiased HSIC estimate of `{name}` with itself is ≤ 0 "
            f"(zero variance, or too few samples for the debiased estimator: n = {n}). Use more samples "
            "or debiased=False."
        )
    v = hxy / math.sqrt(hxx * hyy)
    return min(max(v, -1.0 if debiased else 0.0), 1.0)
