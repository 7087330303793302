"""DFT-CCA: canonical correlations of whole convolutional feature maps, one spatial frequency at a time.

Raghu et al. (SVCCA, NeurIPS 2017, §3.1 "Scaling SVCCA for convolutional layers") treat every
(channel, position) of a conv layer as one neuron. With ``C`` channels on an ``H × W`` map that is ``C·H·W``
features: 65,536 for 64 channels on 32×32, whose covariance alone is 17 GB and whose CCA needs more samples
than anyone stores. Their observation: if the data are translation invariant (every cyclic shift of an input
is as likely as the input), the covariance between the 2-D discrete Fourier transforms of two maps vanishes
unless the two frequencies are equal (or conjugate). In the Fourier basis the covariance is block-diagonal,
and CCA of the whole map splits into ``H·W`` small CCAs of ``C`` features each — exactly, not approximately,
since CCA is invariant to the invertible (orthogonal) change of basis the DFT is.

Here the split is done over *real* blocks so the existing real CCA code runs unchanged: for real maps the
coefficient at frequency ``−f`` is the conjugate of the one at ``f``, so a conjugate pair ``{f, −f}`` (``f ≠
−f``) is one real block of ``2C`` features (the real and imaginary parts), and a self-conjugate frequency
(the mean, and the Nyquist rows/columns of even sizes) a real block of ``C`` features. Under translation
invariance the union of the blocks' canonical correlations is the spectrum of the direct CCA over all
``C·H·W`` features (tested against it). On data that are not translation invariant (most real images) it is
the paper's approximation: cross-frequency covariance is ignored.

Memory is ``O(H·W·C²)`` (the per-block co-moments), accumulated over batches — never ``O((C·H·W)²)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .._base.machinery import batch_slices, progress_bar
from .._base.validation import check_finite
from .metrics import (
    RANK_RTOL,
    CCAResult,
    _check_epsilon,
    cca_from_covariances,
    check_keep,
    compute_device,
    zero_variance_error,
)

__all__ = ["DFTCCAResult", "StreamingDFTCCA", "dft_cca"]


@dataclass(frozen=True, repr=False)
class DFTCCAResult(CCAResult):
    """Canonical correlations of two conv layers computed frequency by frequency (DFT-CCA / DFT-SVCCA).

    Attributes
    ----------
    coefficients
        float64 ``(k,)`` canonical correlations of all frequency blocks, descending (see :class:`CCAResult`;
        ``.mean`` is the headline).
    spectrum
        float64 ``(*spatial)`` — the mean canonical correlation at each spatial frequency (``torch.fft``
        order: index 0 is the mean over positions); NaN where a side has no variance at that frequency.
    keep
        ``None`` for plain CCA per frequency, else the SVCCA ``(keep_x, keep_y)`` applied in every block.
    """

    spectrum: torch.Tensor
    keep: tuple[float | int, float | int] | None

    method = "dft_cca"

    def _extra(self) -> str:
        shape = "×".join(str(s) for s in self.spectrum.shape)
        return f", frequencies={shape}" + (f", keep={self.keep}" if self.keep is not None else "")


def _as_maps(value: Any, argname: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        if type(value).__module__.startswith("numpy") and hasattr(value, "shape"):
            value = torch.as_tensor(value)
        else:
            raise TypeError(
                f"`{argname}` must be a torch.Tensor or numpy array of conv maps (n_samples, channels, *spatial), "
                f"got {type(value).__name__}."
            )
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"`{argname}` must hold real numbers, got {value.dtype}. Use x.float().")
    if value.ndim < 3:
        raise ValueError(
            f"`{argname}` must be conv maps (n_samples, channels, *spatial) with at least one spatial axis, got "
            f"shape {tuple(value.shape)}. For (n_samples, features) use nx.cca / nx.svcca."
        )
    if value.shape[1] == 0 or any(s == 0 for s in value.shape[2:]):
        raise ValueError(f"`{argname}` has an empty axis (shape {tuple(value.shape)}).")
    return value


def _frequency_blocks(spatial: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat frequency indices of the self-conjugate frequencies, of one member of each conjugate pair, and of
    that member's partner (all in ``torch.fft.fftn`` order over ``spatial``)."""
    grids = torch.meshgrid(*[torch.arange(s) for s in spatial], indexing="ij")
    flat = torch.arange(math.prod(spatial)).reshape(spatial)
    partner_coords = [(-g) % s for g, s in zip(grids, spatial, strict=True)]
    partner = flat[tuple(partner_coords)].reshape(-1)
    idx = flat.reshape(-1)
    self_conj = idx[partner == idx]
    first = idx[idx < partner]
    return self_conj, first, partner[first]


class StreamingDFTCCA:
    """Accumulate DFT-CCA co-moments of two conv layers batch by batch (for more maps than fit in memory).

    Parameters
    ----------
    x_channels, y_channels
        Channels of each side.
    spatial
        The common spatial shape of the maps, e.g. ``(32, 32)``.
    device
        Where the float64 co-moments live (default: the first batch's compute device).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> acc = nx.StreamingDFTCCA(4, 4, (6, 6))
    >>> for _ in range(3):
    ...     a = torch.randn(200, 4, 6, 6)
    ...     _ = acc.update(a, a.flip(1))
    >>> round(acc.cca().mean, 6)
    1.0
    """

    def __init__(
        self, x_channels: int, y_channels: int, spatial: tuple[int, ...], *, device: torch.device | str | None = None
    ) -> None:
        self.x_channels, self.y_channels = int(x_channels), int(y_channels)
        self.spatial = tuple(int(s) for s in spatial)
        self._self, self._first, self._partner = _frequency_blocks(self.spatial)
        self.device = torch.device(device) if device is not None else None
        self.n = 0
        self._moments: dict[str, torch.Tensor] = {}

    def _features(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(S, B, C)`` real self-conjugate blocks and ``(P, B, 2C)`` (real, imaginary) pair blocks."""
        dims = tuple(range(2, maps.ndim))
        f = torch.fft.fftn(maps, dim=dims, norm="ortho").reshape(maps.shape[0], maps.shape[1], -1)
        dev = f.device
        s = f[:, :, self._self.to(dev)].real.permute(2, 0, 1)
        p = f[:, :, self._first.to(dev)].permute(2, 0, 1)
        return s, torch.cat([p.real, p.imag], dim=2)

    def _add(self, key: str, value: torch.Tensor) -> None:
        if key in self._moments:
            self._moments[key] += value
        else:
            self._moments[key] = value.clone()

    def update(self, x: Any, y: Any) -> StreamingDFTCCA:
        """Add a batch: ``x`` ``(B, x_channels, *spatial)`` and ``y`` ``(B, y_channels, *spatial)``, same samples."""
        xt, yt = _as_maps(x, "x"), _as_maps(y, "y")
        for t, c, name in ((xt, self.x_channels, "x"), (yt, self.y_channels, "y")):
            if t.shape[1] != c or tuple(t.shape[2:]) != self.spatial:
                raise ValueError(
                    f"`{name}` must have shape (batch, {c}, {', '.join(map(str, self.spatial))}), got "
                    f"{tuple(t.shape)}."
                )
        if xt.shape[0] != yt.shape[0]:
            raise ValueError(f"`x` and `y` must hold the same samples: got {xt.shape[0]} and {yt.shape[0]} maps.")
        if self.device is None:
            self.device = compute_device(xt)
        xt = xt.detach().to(self.device, torch.float64)
        yt = yt.detach().to(self.device, torch.float64)
        check_finite(xt, "x")
        check_finite(yt, "y")
        xs, xp = self._features(xt)
        ys, yp = self._features(yt)
        for key, a, b in (("s", xs, ys), ("p", xp, yp)):
            self._add(f"{key}x", a.sum(1))
            self._add(f"{key}y", b.sum(1))
            self._add(f"{key}xx", a.transpose(1, 2) @ a)
            self._add(f"{key}yy", b.transpose(1, 2) @ b)
            self._add(f"{key}xy", a.transpose(1, 2) @ b)
        self.n += int(xt.shape[0])
        return self

    def _centred(self, key: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self._moments
        n = self.n
        mx, my = m[f"{key}x"] / n, m[f"{key}y"] / n
        sxx = m[f"{key}xx"] - n * mx.unsqueeze(2) * mx.unsqueeze(1)
        syy = m[f"{key}yy"] - n * my.unsqueeze(2) * my.unsqueeze(1)
        sxy = m[f"{key}xy"] - n * mx.unsqueeze(2) * my.unsqueeze(1)
        return sxx, syy, sxy

    def _result(self, keep: Any, epsilon: float) -> DFTCCAResult:
        if self.n < 2:
            raise ValueError(f"DFT-CCA needs at least 2 samples, got {self.n}: with fewer, covariances are undefined.")
        eps = _check_epsilon(epsilon)
        kp = check_keep(keep) if keep is not None else None
        blocks = [(*self._centred("s"), self._self, None), (*self._centred("p"), self._first, self._partner)]
        top_x = max(float(torch.diagonal(b[0], dim1=1, dim2=2).max()) if b[0].numel() else 0.0 for b in blocks)
        top_y = max(float(torch.diagonal(b[1], dim1=1, dim2=2).max()) if b[1].numel() else 0.0 for b in blocks)
        if not top_x > 0.0:
            raise zero_variance_error("x")
        if not top_y > 0.0:
            raise zero_variance_error("y")
        spectrum = torch.full((math.prod(self.spatial),), float("nan"), dtype=torch.float64)
        coefs: list[torch.Tensor] = []
        x_rank = y_rank = 0
        method = "svcca" if kp is not None else "cca"
        for sxx, syy, sxy, where, partner in blocks:
            for b in range(sxx.shape[0]):
                # a block whose variance is negligible next to the layer's largest holds no direction (as the
                # direct computation, which drops directions below RANK_RTOL of its largest variance)
                vx = float(torch.diagonal(sxx[b]).max())
                vy = float(torch.diagonal(syy[b]).max())
                if vx <= RANK_RTOL * top_x or vy <= RANK_RTOL * top_y:
                    continue
                res = cca_from_covariances(sxx[b], syy[b], sxy[b], self.n, epsilon=eps, method=method, keep=kp)
                coefs.append(res.coefficients)
                x_rank += res.x_rank
                y_rank += res.y_rank
                mean = float(res.coefficients.mean()) if res.coefficients.numel() else float("nan")
                spectrum[int(where[b])] = mean
                if partner is not None:
                    spectrum[int(partner[b])] = mean
        coef = torch.cat(coefs).sort(descending=True).values if coefs else torch.zeros(0, dtype=torch.float64)
        return DFTCCAResult(
            coefficients=coef.cpu(),
            n_samples=self.n,
            x_rank=x_rank,
            y_rank=y_rank,
            epsilon=eps,
            spectrum=spectrum.reshape(self.spatial),
            keep=kp,
        )

    def cca(self, epsilon: float = 0.0) -> DFTCCAResult:
        """Plain CCA in every frequency block (the direct CCA of all ``C·H·W`` features, for translation-invariant data)."""
        return self._result(None, epsilon)

    def svcca(self, keep: Any = 0.99, epsilon: float = 0.0) -> DFTCCAResult:
        """SVCCA in every frequency block: each side reduced to the top directions holding ``keep`` of that
        block's variance (or ``keep`` directions per block), then CCA — the paper's DFT-SVCCA."""
        return self._result(keep, epsilon)

    def __repr__(self) -> str:
        shape = "×".join(map(str, self.spatial))
        return f"StreamingDFTCCA(x_channels={self.x_channels}, y_channels={self.y_channels}, spatial={shape}, n={self.n})"


def dft_cca(
    x: Any | Iterable[tuple[Any, Any]],
    y: Any = None,
    *,
    keep: float | int | tuple[float | int, float | int] | None = None,
    epsilon: float = 0.0,
    batch_size: int = 256,
    progress: bool | None = None,
) -> DFTCCAResult:
    """DFT-CCA (Raghu et al. 2017, §3.1): CCA between two whole conv layers, frequency by frequency.

    Every (channel, position) of a map counts as a neuron, as in the paper's SVCCA of conv layers, but the
    ``(C·H·W)``-dimensional CCA is never formed: the maps are Fourier transformed over their spatial axes and
    one small CCA runs per frequency (a conjugate pair of frequencies is one real block). For translation-
    invariant data this equals the direct CCA exactly; otherwise it is the paper's approximation.

    Parameters
    ----------
    x, y
        Conv maps ``(n_samples, C_x, *spatial)`` and ``(n_samples, C_y, *spatial)`` with the same samples in the
        same order and the same spatial shape (resize one side with ``torch.nn.functional.interpolate`` if the
        layers differ). Or pass an iterable of ``(x_batch, y_batch)`` pairs as ``x`` (and no ``y``) to stream
        more maps than fit in memory.
    keep
        ``None`` (default): plain CCA in each frequency block. A float in (0, 1] or an int: SVCCA in each block
        (keep the top directions holding that fraction of the block's variance, or that many directions).
    epsilon
        Ridge added to each block's scaled covariance diagonal (as in :func:`nbexplain.cca`).
    batch_size
        Maps transformed at a time (bounds the memory of the Fourier coefficients).
    progress
        None: a progress bar once the work has run 2 s; True: always; False: never.

    Returns
    -------
    DFTCCAResult
        ``.coefficients`` (all blocks, descending), ``.mean`` (headline), ``.spectrum`` (mean correlation
        per frequency).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> a = torch.randn(300, 3, 8, 8)
    >>> b = torch.roll(a, shifts=2, dims=3)        # the same features, shifted: not the same neurons
    >>> round(nx.dft_cca(a, b).mean, 6)            # a shift only changes each frequency's phase
    1.0
    """
    if y is None:
        if isinstance(x, torch.Tensor) or hasattr(x, "shape"):
            raise TypeError("`y` is missing: pass both layers' maps, dft_cca(x, y), or one iterable of (x, y) pairs.")
        pairs: Iterable[tuple[Any, Any]] = x
        total = None
    else:
        xt, yt = _as_maps(x, "x"), _as_maps(y, "y")
        if xt.shape[0] != yt.shape[0]:
            raise ValueError(f"`x` and `y` must hold the same samples in the same order: got {xt.shape[0]} and {yt.shape[0]}.")
        if tuple(xt.shape[2:]) != tuple(yt.shape[2:]):
            raise ValueError(
                f"`x` and `y` must have the same spatial shape, got {tuple(xt.shape[2:])} and {tuple(yt.shape[2:])}. "
                "Resize one side first, e.g. torch.nn.functional.interpolate(y, size=x.shape[2:], mode='bilinear')."
            )
        pairs = ((xt[s], yt[s]) for s in batch_slices(xt.shape[0], batch_size))
        total = math.ceil(xt.shape[0] / max(int(batch_size), 1))
    acc: StreamingDFTCCA | None = None
    with progress_bar(total=total, desc="DFT-CCA", progress=progress) as bar:
        for xb, yb in pairs:
            xb, yb = _as_maps(xb, "x"), _as_maps(yb, "y")
            if acc is None:
                acc = StreamingDFTCCA(xb.shape[1], yb.shape[1], tuple(xb.shape[2:]))
            acc.update(xb, yb)
            bar.update(1)
    if acc is None:
        raise ValueError("`x` is an empty iterable: pass at least one (x_batch, y_batch) pair.")
    return acc.svcca(keep, epsilon) if keep is not None else acc.cca(epsilon)
