"""Streaming CCA / SVCCA / PWCCA / linear CKA: accumulate statistics batch by batch, merge across processes.

CCA-type similarities and linear CKA depend on the data only through the joint mean and covariance of
``[x, y]`` — the blocks Σxx, Σyy and Σxy — so :class:`StreamingSimilarity` keeps exactly those (a
float64 :class:`~nbexplain.core._base.moments.RunningMoments` over the concatenated features, merged with
Chan et al.'s parallel update) and evaluates the very same formulas as the in-memory functions
(:func:`nbexplain.cca` & co. call the same ``cca_from_covariances``). Memory is
``O((n_x + n_y)²)``, independent of the number of samples; results equal the in-memory ones to float64
round-off.

RBF and debiased CKA need the n × n Gram matrices (or fourth moments), so they are in-memory only.
"""

from __future__ import annotations

from typing import Any

import torch

from .._base.moments import RunningMoments
from .._base.validation import check_choice, check_positive_int, check_same_samples
from .metrics import (
    CCAResult,
    CKAResult,
    KeepArg,
    PWCCAResult,
    SVCCAResult,
    _check_epsilon,
    as_features,
    cca_from_covariances,
    check_keep,
    linear_cka_from_covariances,
    zero_constant,
)

__all__ = ["StreamingSimilarity"]


class StreamingSimilarity:
    """Similarity statistics of two feature sets, accumulated over batches.

    Parameters
    ----------
    x_features, y_features
        Widths of the two sides.
    device
        Where the float64 statistics live (default: the first batch's device; use the CPU under gloo).
    exact
        ``True`` (default): every batch is reduced in float64, so results equal the in-memory functions
        to float64 round-off. ``False``: float32/16-bit batches are reduced in float32 after subtracting
        the batch mean and merged in float64 (several times faster; agreement ≈ 1e-6).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> x = torch.randn(5000, 16, dtype=torch.float64)
    >>> y = x[:, :8] + 0.5 * torch.randn(5000, 8, dtype=torch.float64)
    >>> acc = nx.StreamingSimilarity(16, 8)
    >>> for xb, yb in zip(x.split(512), y.split(512)):
    ...     _ = acc.update(xb, yb)
    >>> abs(acc.cca().mean - nx.cca(x, y).mean) < 1e-10
    True
    >>> abs(acc.cka().value - nx.cka(x, y).value) < 1e-10
    True
    """

    def __init__(
        self,
        x_features: int,
        y_features: int,
        *,
        device: torch.device | str | None = None,
        exact: bool = True,
    ) -> None:
        self.x_features = check_positive_int(x_features, "x_features")
        self.y_features = check_positive_int(y_features, "y_features")
        if not isinstance(exact, bool):
            raise TypeError(f"`exact` must be True or False, got {exact!r}.")
        self.exact = exact
        self.moments = RunningMoments(self.x_features + self.y_features, device=device)

    # ----------------------------------------------------------------------------------- accumulation
    def update(self, x: Any, y: Any) -> StreamingSimilarity:
        """Add a batch: ``x`` ``(b, x_features)`` and ``y`` ``(b, y_features)``, the same ``b`` samples."""
        xt = _as_batch(x, "x", self.exact)
        yt = _as_batch(y, "y", self.exact, device=xt.device)
        check_same_samples(xt, yt, ("x", "y"))
        for t, name, width in ((xt, "x", self.x_features), (yt, "y", self.y_features)):
            if t.shape[1] != width:
                raise ValueError(
                    f"`{name}` has {t.shape[1]} features but this accumulator was created for {width}; "
                    f"pass (batch, {width}) tensors."
                )
        if xt.dtype != yt.dtype:
            xt, yt = xt.double(), yt.double()
        self.moments.update(torch.cat([xt, yt], dim=1))
        return self

    def merge(self, other: StreamingSimilarity) -> StreamingSimilarity:
        """Add the samples summarised by ``other`` (same widths), as if seen here. Returns ``self``."""
        if not isinstance(other, StreamingSimilarity):
            raise TypeError(f"`other` must be a StreamingSimilarity, got {type(other).__name__}.")
        if (other.x_features, other.y_features) != (self.x_features, self.y_features):
            raise ValueError(
                f"Cannot merge statistics of widths ({other.x_features}, {other.y_features}) into "
                f"({self.x_features}, {self.y_features})."
            )
        self.moments.merge(other.moments)
        return self

    def all_reduce(self, group: Any = None) -> StreamingSimilarity:
        """Collective: every rank ends with the statistics of all ranks' samples (exact). Returns ``self``."""
        self.moments.all_reduce(group)
        return self

    @property
    def count(self) -> int:
        """Number of samples seen."""
        return self.moments.count

    def reset(self) -> StreamingSimilarity:
        """Forget all samples."""
        self.moments.reset()
        return self

    # ---------------------------------------------------------------------------------------- results
    def _blocks(self, min_samples: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.count
        if n < min_samples:
            raise ValueError(
                f"Similarity needs at least {min_samples} samples, {n} seen so far: call update() with batches."
            )
        cov = zero_constant(self.moments.comoment, self.moments.mean, n)
        cov = (cov + cov.T) * 0.5
        p = self.x_features
        return cov[:p, :p], cov[p:, p:], cov[:p, p:]

    def cca(self, epsilon: float = 0.0) -> CCAResult:
        """CCA of everything seen so far (see :func:`nbexplain.cca`)."""
        eps = _check_epsilon(epsilon)
        sxx, syy, sxy = self._blocks()
        return cca_from_covariances(sxx, syy, sxy, self.count, epsilon=eps, method="cca")

    def svcca(self, keep: KeepArg = 0.99, epsilon: float = 0.0) -> SVCCAResult:
        """SVCCA of everything seen so far (see :func:`nbexplain.svcca`)."""
        eps = _check_epsilon(epsilon)
        kp = check_keep(keep)
        sxx, syy, sxy = self._blocks()
        res = cca_from_covariances(sxx, syy, sxy, self.count, epsilon=eps, method="svcca", keep=kp)
        assert isinstance(res, SVCCAResult)
        return res

    def pwcca(self, epsilon: float = 0.0) -> PWCCAResult:
        """PWCCA of everything seen so far (see :func:`nbexplain.pwcca`)."""
        eps = _check_epsilon(epsilon)
        sxx, syy, sxy = self._blocks()
        res = cca_from_covariances(sxx, syy, sxy, self.count, epsilon=eps, method="pwcca")
        assert isinstance(res, PWCCAResult)
        return res

    def cka(self, kernel: str = "linear", debiased: bool = False) -> CKAResult:
        """Biased linear CKA of everything seen so far (see :func:`nbexplain.cka`)."""
        check_choice(kernel, "kernel", ("linear", "rbf"))
        if kernel != "linear" or debiased:
            raise ValueError(
                "Streaming CKA supports kernel='linear', debiased=False only: RBF and debiased CKA need "
                "all samples at once (n × n Gram matrices). Use nx.cka(x, y, ...) on the full features."
            )
        sxx, syy, sxy = self._blocks()
        return CKAResult(
            value=linear_cka_from_covariances(sxx, syy, sxy), kernel="linear", debiased=False, n_samples=self.count
        )

    # ------------------------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """A plain dict (CPU tensors) for :meth:`from_state_dict` — e.g. to save or send statistics."""
        return {
            "x_features": self.x_features,
            "y_features": self.y_features,
            "exact": self.exact,
            "moments": self.moments.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device | str | None = None) -> StreamingSimilarity:
        """Rebuild an accumulator saved with :meth:`state_dict`."""
        for key in ("x_features", "y_features", "moments"):
            if key not in state:
                raise KeyError(f"`state` lacks {key!r}; pass a dict made by StreamingSimilarity.state_dict().")
        acc = cls(int(state["x_features"]), int(state["y_features"]), device=device, exact=bool(state.get("exact", True)))
        acc.moments = RunningMoments.from_state_dict(state["moments"], device=device)
        return acc

    def __repr__(self) -> str:
        return (
            f"StreamingSimilarity(x_features={self.x_features}, y_features={self.y_features}, "
            f"count={self.count}, exact={self.exact})"
        )


def _as_batch(value: Any, argname: str, exact: bool, device: torch.device | None = None) -> torch.Tensor:
    if exact:
        return as_features(value, argname, device=device)
    if not isinstance(value, torch.Tensor):
        value = as_features(value, argname, device=device)
    if value.ndim != 2:
        raise ValueError(f"`{argname}` must be 2-D (batch, features), got shape {tuple(value.shape)}.")
    if not value.is_floating_point():
        value = value.float()
    return value.detach().to(device) if device is not None else value.detach()
