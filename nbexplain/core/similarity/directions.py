"""SVCCA's aligned directions: the canonical variates of two layers, and the maps that produce them.

The first figure of the SVCCA paper (Raghu et al., NeurIPS 2017): two networks trained on the same task, the
activations of one layer over inputs sorted by class. Their top *neurons* show no correspondence; their top
SVCCA *directions* line up, variate for variate. :func:`svcca_directions` returns those directions — the
canonical variates of both sides, their correlations, and the linear maps that compute them for new inputs.

From the paper's two steps: (1) SVD: each side, centred, is reduced to the top singular directions holding
``keep`` of its variance; (2) CCA on the reduced sides: whitening ``Σ^{-1/2}``, the SVD ``U S Vᵀ`` of
``Σxx^{-1/2} Σxy Σyy^{-1/2}``, canonical weights ``a = Σxx^{-1/2} U`` and ``b = Σyy^{-1/2} V``. The variates
``(x − μx) a`` and ``(y − μy) b`` have unit variance, are uncorrelated within a side, and the ``i``-th pair
correlates with ``ρᵢ`` (the ``i``-th singular value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .._base import dense_linalg
from .metrics import KeepArg, Whitener, _check_epsilon, as_features, as_pair, check_keep

__all__ = ["SVCCADirectionsResult", "svcca_directions"]


@dataclass(frozen=True, repr=False)
class SVCCADirectionsResult:
    """Aligned SVCCA directions of two layers (see :func:`svcca_directions`).

    Attributes
    ----------
    coefficients
        float64 ``(k,)`` canonical correlations ρᵢ, descending.
    x_variates, y_variates
        float64 ``(n_samples, k)`` — the data projected on the ``i``-th canonical direction of each side, unit
        variance; ``corr(x_variates[:, i], y_variates[:, i]) = coefficients[i]``.
    x_weights, y_weights
        float64 ``(n_x, k)`` / ``(n_y, k)`` — the maps: ``variates = (features − mean) @ weights``.
    x_mean, y_mean
        float64 ``(n_x,)`` / ``(n_y,)`` — the feature means the maps subtract.
    x_loadings, y_loadings
        float64 ``(n_x, k)`` / ``(n_y, k)`` — covariance of each feature with each variate (``Σ a``): the
        least-squares reconstruction of the features from their top variates is ``mean + variates @ loadingsᵀ``.
    x_variance, y_variance
        Fraction of each side's variance kept by the SVD step.
    """

    coefficients: torch.Tensor
    x_variates: torch.Tensor
    y_variates: torch.Tensor
    x_weights: torch.Tensor
    y_weights: torch.Tensor
    x_mean: torch.Tensor
    y_mean: torch.Tensor
    x_loadings: torch.Tensor
    y_loadings: torch.Tensor
    x_variance: float
    y_variance: float

    def transform_x(self, x: Any) -> torch.Tensor:
        """The canonical variates of new ``(n, n_x)`` features of the first layer, float64 ``(n, k)``."""
        xt = as_features(x, "x", device=self.x_weights.device)
        if xt.shape[1] != self.x_weights.shape[0]:
            raise ValueError(f"`x` must have {self.x_weights.shape[0]} features (the fitted layer's width), got {xt.shape[1]}.")
        return (xt - self.x_mean) @ self.x_weights

    def transform_y(self, y: Any) -> torch.Tensor:
        """The canonical variates of new ``(n, n_y)`` features of the second layer, float64 ``(n, k)``."""
        yt = as_features(y, "y", device=self.y_weights.device)
        if yt.shape[1] != self.y_weights.shape[0]:
            raise ValueError(f"`y` must have {self.y_weights.shape[0]} features (the fitted layer's width), got {yt.shape[1]}.")
        return (yt - self.y_mean) @ self.y_weights

    def project_x(self, x: Any, k: int) -> torch.Tensor:
        """Project ``(n, n_x)`` features of the first layer onto its top ``k`` SVCCA directions: ``mean + z_k L_kᵀ``
        with ``z_k`` the top ``k`` variates and ``L_k`` their loadings — the least-squares reconstruction of the
        features from those variates, an (oblique) projection that keeps them and drops the rest. float64."""
        return self._project(self.transform_x(x), self.x_mean, self.x_loadings, k)

    def project_y(self, y: Any, k: int) -> torch.Tensor:
        """:meth:`project_x` for the second layer."""
        return self._project(self.transform_y(y), self.y_mean, self.y_loadings, k)

    def _project(self, z: torch.Tensor, mean: torch.Tensor, loadings: torch.Tensor, k: int) -> torch.Tensor:
        n = self.coefficients.numel()
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
            raise ValueError(f"`k` must be an int from 0 to {n} (the number of directions), got {k!r}.")
        return mean + z[:, :k] @ loadings[:, :k].T

    def __repr__(self) -> str:
        k = self.coefficients.numel()
        mean = float(self.coefficients.mean()) if k else 0.0
        return f"SVCCADirectionsResult(k={k}, mean={mean:.4f}, n_samples={self.x_variates.shape[0]})"


def _unit_variance(weights: torch.Tensor, centred: torch.Tensor) -> torch.Tensor:
    std = (centred @ weights).std(dim=0, unbiased=True).clamp_min(torch.finfo(weights.dtype).tiny)
    return weights / std


def svcca_directions(
    x: Any, y: Any, *, keep: KeepArg = 0.99, epsilon: float = 0.0, n_directions: int | None = None
) -> SVCCADirectionsResult:
    """The aligned SVCCA directions of two layers: canonical variates that correspond one to one.

    Parameters
    ----------
    x, y
        ``(n_samples, n_x)`` and ``(n_samples, n_y)`` features of the same inputs in the same order, e.g.
        ``nx.activations(model, inputs, "fc1")["fc1"]`` of two networks.
    keep
        SVCCA's SVD step (as in :func:`nbexplain.svcca`): a variance fraction in (0, 1] or a number of
        directions, for both sides or as ``(keep_x, keep_y)``.
    epsilon
        Ridge on each scaled covariance's diagonal.
    n_directions
        Keep only the top ``n_directions`` pairs (default: all ``k = min(rank_x, rank_y)``).

    Returns
    -------
    SVCCADirectionsResult
        ``.x_variates`` / ``.y_variates`` (the aligned directions over the samples), ``.coefficients``, and
        ``.transform_x`` / ``.transform_y`` for new inputs. Each pair's sign is fixed so that the x-variate's
        largest weight is positive (the pair's correlation is positive either way).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(1000, 3, generator=g, dtype=torch.float64)         # what both layers encode
    >>> x = z @ torch.randn(3, 10, generator=g, dtype=torch.float64)       # ... mixed differently
    >>> y = z @ torch.randn(3, 8, generator=g, dtype=torch.float64)
    >>> d = nx.svcca_directions(x, y)
    >>> d.x_variates.shape, [round(float(c), 6) for c in d.coefficients]
    (torch.Size([1000, 3]), [1.0, 1.0, 1.0])
    >>> bool(torch.allclose(d.x_variates, d.y_variates, atol=1e-6))      # the directions line up
    True
    """
    eps = _check_epsilon(epsilon)
    kx, ky = check_keep(keep)
    if n_directions is not None and (isinstance(n_directions, bool) or not isinstance(n_directions, int) or n_directions < 1):
        raise ValueError(f"`n_directions` must be a positive int or None, got {n_directions!r}.")
    xt, yt = as_pair(x, y)
    mx, my = xt.mean(0), yt.mean(0)
    xc, yc = xt - mx, yt - my
    sxx, syy, sxy = xc.T @ xc, yc.T @ yc, xc.T @ yc
    wx = Whitener(sxx, "x", eps, kx)
    wy = Whitener(syy, "y", eps, ky)
    cross = sxy / math.sqrt(wx.scale * wy.scale)
    u, s, vh = dense_linalg.svd(wy.right(wx.left(cross)))
    k = min(wx.rank, wy.rank) if n_directions is None else min(wx.rank, wy.rank, n_directions)
    a = wx.directions(u[:, :k])
    b = wy.directions(vh.T[:, :k])
    a, b = _unit_variance(a, xc), _unit_variance(b, yc)
    # one sign per pair: the x-side's largest weight positive, the y-side follows (keeps ρ positive)
    sign = torch.sign(a.gather(0, a.abs().argmax(0, keepdim=True))).reshape(-1)
    sign[sign == 0] = 1.0
    a, b = a * sign, b * sign
    zx, zy = xc @ a, yc @ b
    n = xt.shape[0]
    return SVCCADirectionsResult(
        coefficients=s[:k].clamp(0.0, 1.0).cpu(),
        x_variates=zx.cpu(),
        y_variates=zy.cpu(),
        x_weights=a.cpu(),
        y_weights=b.cpu(),
        x_mean=mx.cpu(),
        y_mean=my.cpu(),
        x_loadings=(xc.T @ zx / (n - 1)).cpu(),
        y_loadings=(yc.T @ zy / (n - 1)).cpu(),
        x_variance=wx.variance_kept,
        y_variance=wy.variance_kept,
    )
