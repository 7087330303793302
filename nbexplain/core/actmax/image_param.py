"""Image parameterisations for feature visualisation: pixels, and decorrelated Fourier space.

Olah et al. (2017, "Feature Visualization") show that gradient ascent behaves much better when the image
is not optimised pixel by pixel but in a *decorrelated* space: spatially, by optimising Fourier
coefficients scaled by ``1/f^decay`` (so every frequency starts with roughly the energy natural images
have), and in colour, by a 3×3 matrix that maps decorrelated channels to RGB (the square root of the
colour covariance of natural images). The result is mapped into the data's value range by a sigmoid, or
clamped.

A parameterisation is an ``nn.Module`` holding the parameters; calling it returns images
``(N, *input_shape)``. :meth:`ImageParam.encode` sets the parameters so that it returns given images
(used to start from real examples, and to test that the transform round-trips).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "ImageParam",
    "PixelImage",
    "FourierImage",
    "image_param",
    "color_correlation",
    "IMAGENET_COLOR_SQRT",
    "PARAMETERIZATIONS",
    "RANGE_MODES",
]

#: Names accepted by :func:`image_param` (and ``maximize_activation(param=...)``).
PARAMETERIZATIONS = ("fourier", "pixel")
#: How values are kept inside ``value_range``.
RANGE_MODES = ("sigmoid", "clamp")

#: Square root of the ImageNet RGB covariance (via its SVD), the values published with Olah et al.'s
#: lucid library (numbers, not code). Columns map decorrelated channels to R, G, B.
IMAGENET_COLOR_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)


def color_correlation(images: torch.Tensor) -> torch.Tensor:
    """Estimate the colour square-root matrix from a batch of images (N, C, H, W).

    Returns ``U·diag(√λ)`` from the eigen-decomposition of the channel covariance, so that mapping
    unit-variance uncorrelated channels through it reproduces the data's colour covariance. Pass it as
    ``color_matrix=`` to use your data's colour statistics instead of ImageNet's.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.image_param import color_correlation
    >>> color_correlation(torch.rand(8, 3, 16, 16)).shape
    torch.Size([3, 3])
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("`images` must be a tensor of shape (N, C, H, W).")
    x = images.detach().to(torch.float64).movedim(1, -1).reshape(-1, images.shape[1])
    x = x - x.mean(dim=0)
    cov = x.T @ x / max(x.shape[0] - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    return evecs * evals.clamp_min(0).sqrt()


def check_range(value_range: Sequence[float] | None) -> tuple[float, float] | None:
    """``value_range``: ``None`` (unbounded) or a finite pair ``(low, high)`` with ``low < high``."""
    if value_range is None:
        return None
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"`value_range` must be a pair (low, high) or None, got {value_range!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError(f"`value_range` must satisfy low < high (both finite), got {value_range!r}.")
    return lo, hi


class ImageParam(nn.Module, abc.ABC):
    """Base class: a batch of images generated from learnable parameters.

    Parameters
    ----------
    shape
        One image's shape ``(C, H, W)``.
    batch
        Number of images.
    value_range
        ``(low, high)`` to keep every value inside, or ``None`` for unbounded images.
    range_mode
        ``"sigmoid"`` (smooth squashing; the default) or ``"clamp"`` (hard clipping; pixel parameters are
        also projected back into the range after each optimiser step by :meth:`project_`).
    decorrelate
        Map channels through the colour matrix (3-channel images only).
    color_matrix
        A ``(C, C)`` colour square-root matrix; defaults to :data:`IMAGENET_COLOR_SQRT` for 3 channels.
    """

    def __init__(
        self,
        shape: Sequence[int],
        batch: int = 1,
        value_range: Sequence[float] | None = None,
        range_mode: str = "sigmoid",
        decorrelate: bool = True,
        color_matrix: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ValueError(
                f"Image parameterisations need one image's shape (C, H, W) with positive sides, got {shape}."
            )
        if range_mode not in RANGE_MODES:
            raise ValueError(f"`range_mode` must be one of {list(RANGE_MODES)}, got {range_mode!r}.")
        self.shape = shape
        self.batch = int(batch)
        self.value_range = check_range(value_range)
        self.range_mode = range_mode
        c = shape[0]
        matrix: torch.Tensor | None = None
        if color_matrix is not None:
            matrix = torch.as_tensor(color_matrix, dtype=torch.float64)
            if matrix.shape != (c, c):
                raise ValueError(f"`color_matrix` must be ({c}, {c}) for {c}-channel images, got {tuple(matrix.shape)}.")
        elif decorrelate and c == 3:
            matrix = IMAGENET_COLOR_SQRT
        if matrix is not None:
            # Normalise so the largest column has unit norm (decorrelated units stay O(1) in RGB).
            matrix = matrix / matrix.norm(dim=0).max()
            self.register_buffer("color", matrix.to(torch.float32))
            self.register_buffer("color_inv", torch.linalg.inv(matrix).to(torch.float32))
        else:
            self.color = None  # type: ignore[assignment]
            self.color_inv = None  # type: ignore[assignment]

    # --- pieces shared by subclasses -------------------------------------------------------------
    def _mix_colors(self, t: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        m = self.color_inv if inverse else self.color
        if m is None:
            return t
        return torch.einsum("ij,njhw->nihw", m.to(t.dtype), t)

    def _to_range(self, t: torch.Tensor) -> torch.Tensor:
        if self.value_range is None:
            return t
        lo, hi = self.value_range
        if self.range_mode == "sigmoid":
            return lo + (hi - lo) * torch.sigmoid(t)
        return (t + 0.5 * (lo + hi)).clamp(lo, hi)

    def _from_range(self, x: torch.Tensor) -> torch.Tensor:
        if self.value_range is None:
            return x
        lo, hi = self.value_range
        if self.range_mode == "sigmoid":
            eps = 1e-6
            u = ((x - lo) / (hi - lo)).clamp(eps, 1 - eps)
            return torch.log(u) - torch.log1p(-u)
        return x - 0.5 * (lo + hi)

    @abc.abstractmethod
    def decorrelated(self) -> torch.Tensor:
        """The images before colour mixing and range mapping, ``(N, C, H, W)``."""

    def forward(self) -> torch.Tensor:  # noqa: D102
        return self._to_range(self._mix_colors(self.decorrelated()))

    @abc.abstractmethod
    def encode(self, images: torch.Tensor) -> ImageParam:
        """Set the parameters so that ``self()`` returns ``images`` (clipped into the range). Returns self."""

    def project_(self) -> None:
        """Called after every optimiser step (keeps clamped pixel parameters inside the range)."""

    def _check_encode(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or tuple(images.shape) != (self.batch, *self.shape):
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"encode() needs images of shape {(self.batch, *self.shape)}, got {got}.")
        return images


class PixelImage(ImageParam):
    """Optimise pixel values directly (Erhan et al. 2009), optionally in decorrelated colour space.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.image_param import PixelImage
    >>> p = PixelImage((1, 8, 8), batch=2, value_range=(0, 1), generator=torch.Generator().manual_seed(0))
    >>> p().shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        shape: Sequence[int],
        batch: int = 1,
        value_range: Sequence[float] | None = None,
        range_mode: str = "sigmoid",
        decorrelate: bool = True,
        color_matrix: torch.Tensor | None = None,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(shape, batch, value_range, range_mode, decorrelate, color_matrix)
        init = torch.randn((self.batch, *self.shape), generator=generator) * float(init_std)
        self.pixels = nn.Parameter(init)

    def decorrelated(self) -> torch.Tensor:  # noqa: D102
        return self.pixels

    def encode(self, images: torch.Tensor) -> PixelImage:  # noqa: D102
        images = self._check_encode(images)
        with torch.no_grad():
            t = self._mix_colors(self._from_range(images.to(self.pixels)), inverse=True)
            self.pixels.copy_(t)
        return self

    def project_(self) -> None:  # noqa: D102
        if self.range_mode != "clamp" or self.value_range is None:
            return
        lo, hi = self.value_range
        mid = 0.5 * (lo + hi)
        with torch.no_grad():
            if self.color is None:
                self.pixels.clamp_(lo - mid, hi - mid)
            else:
                mixed = self._mix_colors(self.pixels).clamp(lo - mid, hi - mid)
                self.pixels.copy_(self._mix_colors(mixed, inverse=True))


class FourierImage(ImageParam):
    """Optimise scaled Fourier coefficients (Olah et al. 2017): a spatially decorrelated image.

    The image is ``irfft2(scale · coefficients)`` with ``scale(f) = 1 / max(f, 1/max(H, W))^decay``
    (normalised to unit RMS), so white coefficients give a ``1/f``-spectrum image like natural ones; then
    colour mixing and the range mapping.

    Parameters
    ----------
    decay
        Spectrum decay power (1.0 in the paper; 0 makes it a plain orthonormal Fourier basis).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.image_param import FourierImage
    >>> p = FourierImage((3, 16, 16), batch=2, value_range=(0, 1), generator=torch.Generator().manual_seed(0))
    >>> x = torch.rand(2, 3, 16, 16) * 0.8 + 0.1
    >>> bool(torch.allclose(p.encode(x)(), x, atol=1e-4))
    True
    """

    def __init__(
        self,
        shape: Sequence[int],
        batch: int = 1,
        value_range: Sequence[float] | None = None,
        range_mode: str = "sigmoid",
        decorrelate: bool = True,
        color_matrix: torch.Tensor | None = None,
        init_std: float = 0.01,
        decay: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(shape, batch, value_range, range_mode, decorrelate, color_matrix)
        c, h, w = self.shape
        fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        freq = torch.sqrt(fx**2 + fy**2)
        scale = 1.0 / freq.clamp_min(1.0 / max(h, w)) ** float(decay)
        scale = scale / scale.pow(2).mean().sqrt()
        self.register_buffer("scale", scale.to(torch.float32))
        init = torch.randn((self.batch, c, h, w // 2 + 1, 2), generator=generator) * float(init_std)
        self.coefficients = nn.Parameter(init)

    def decorrelated(self) -> torch.Tensor:  # noqa: D102
        h, w = self.shape[1:]
        scale: torch.Tensor = self.scale  # type: ignore[assignment]
        spectrum = torch.view_as_complex(self.coefficients) * scale
        return torch.fft.irfft2(spectrum, s=(h, w), norm="ortho")

    def encode(self, images: torch.Tensor) -> FourierImage:  # noqa: D102
        images = self._check_encode(images)
        h, w = self.shape[1:]
        with torch.no_grad():
            t = self._mix_colors(self._from_range(images.to(self.coefficients)), inverse=True)
            spectrum = torch.fft.rfft2(t, s=(h, w), norm="ortho") / self.scale
            self.coefficients.copy_(torch.view_as_real(spectrum))
        return self


def image_param(
    kind: str,
    shape: Sequence[int],
    batch: int = 1,
    value_range: Sequence[float] | None = None,
    *,
    range_mode: str = "sigmoid",
    decorrelate: bool = True,
    color_matrix: torch.Tensor | None = None,
    init_std: float = 0.01,
    decay: float = 1.0,
    generator: torch.Generator | None = None,
) -> ImageParam:
    """Build a parameterisation by name: ``"fourier"`` (decorrelated; default elsewhere) or ``"pixel"``.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.image_param import image_param
    >>> image_param("fourier", (1, 28, 28), batch=3, value_range=(0, 1))().shape
    torch.Size([3, 1, 28, 28])
    """
    if kind not in PARAMETERIZATIONS:
        raise ValueError(f"`param` must be one of {list(PARAMETERIZATIONS)}, got {kind!r}.")
    common = dict(
        value_range=value_range,
        range_mode=range_mode,
        decorrelate=decorrelate,
        color_matrix=color_matrix,
        init_std=init_std,
        generator=generator,
    )
    if kind == "pixel":
        return PixelImage(shape, batch, **common)  # type: ignore[arg-type]
    return FourierImage(shape, batch, decay=decay, **common)  # type: ignore[arg-type]
