"""Transformation robustness and image priors for feature visualisation, in plain torch.

Olah, Mordvintsev & Schubert (2017, "Feature Visualization", Distill) make optimised images robust by
applying small random transformations before every step — padding, jitter, scaling, rotation — so that
the optimiser cannot exploit pixel-exact high-frequency patterns. Erhan et al. (2009) and Mahendran &
Vedaldi (2015) add explicit priors: an L2 penalty and a total-variation penalty.

Every transform here is differentiable with respect to the image and draws its randomness only from the
``torch.Generator`` it is given (created on the CPU), so a run is reproducible under a seed on any device.
Random scale and rotation draw one value per image and are applied together with a single
``grid_sample`` when they follow each other in a :class:`Compose`.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "Transform",
    "Pad",
    "Jitter",
    "RandomScale",
    "RandomRotate",
    "FitTo",
    "Compose",
    "standard_transforms",
    "l2_penalty",
    "total_variation",
]

_PAD_MODES = ("constant", "reflect", "replicate")


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"Image transforms expect a batch of images (N, C, H, W), got {shape}.")


def _cpu_generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    if generator.device.type != "cpu":
        raise ValueError("Pass a CPU torch.Generator (random draws are made on the CPU for reproducibility).")
    return generator


class Transform(abc.ABC):
    """A random, differentiable image transform: ``t(x, generator) -> x'`` for ``x`` of shape (N, C, H, W)."""

    @abc.abstractmethod
    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The transformed batch, same shape as ``x``; random draws come from ``generator`` (CPU)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Pad(Transform):
    """Pad every side by ``width`` pixels (the image grows by ``2·width``).

    Parameters
    ----------
    width
        Pixels added on each side.
    mode
        ``"constant"`` (fill with ``value``), ``"reflect"`` or ``"replicate"``.
    value
        Fill value for ``mode="constant"``.
    """

    def __init__(self, width: int, mode: str = "reflect", value: float = 0.0) -> None:
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 0:
            raise ValueError(f"`width` must be an integer ≥ 0, got {width!r}.")
        if mode not in _PAD_MODES:
            raise ValueError(f"`mode` must be one of {list(_PAD_MODES)}, got {mode!r}.")
        self.width: int = int(width)
        self.mode: str = mode
        self.value: float = float(value)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(x)
        if self.width == 0:
            return x
        p = self.width
        if self.mode == "constant":
            return F.pad(x, (p, p, p, p), mode="constant", value=self.value)
        if self.mode == "reflect" and (p >= x.shape[-1] or p >= x.shape[-2]):
            return F.pad(x, (p, p, p, p), mode="replicate")
        return F.pad(x, (p, p, p, p), mode=self.mode)


class Jitter(Transform):
    """Shift the whole batch by a random integer offset in ``[-pixels, pixels]`` along each axis.

    The size is kept: the image is padded by replication and a shifted window of the original size is
    cut out (Olah et al.'s jitter, without shrinking the image).
    """

    def __init__(self, pixels: int) -> None:
        if isinstance(pixels, bool) or not isinstance(pixels, numbers.Integral) or pixels < 0:
            raise ValueError(f"`pixels` must be an integer ≥ 0, got {pixels!r}.")
        self.pixels: int = int(pixels)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(x)
        d = self.pixels
        if d == 0:
            return x
        g = _cpu_generator(generator)
        dy, dx = (int(v) for v in torch.randint(0, 2 * d + 1, (2,), generator=g))
        h, w = x.shape[-2:]
        padded = F.pad(x, (d, d, d, d), mode="replicate")
        return padded[..., dy : dy + h, dx : dx + w]


class _Affine(Transform):
    """A per-image random linear map of the normalised coordinates, applied with bilinear sampling."""

    @abc.abstractmethod
    def matrices(self, n: int, generator: torch.Generator, h: int, w: int) -> torch.Tensor:
        """``(n, 2, 2)`` float64 matrices mapping output coordinates to input coordinates."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(x)
        g = _cpu_generator(generator)
        mats = self.matrices(x.shape[0], g, x.shape[-2], x.shape[-1])
        return _warp(x, mats)


def _warp(x: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, :, :2] = mats
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _draw(values: tuple[float, ...] | tuple[float, float], discrete: bool, n: int, g: torch.Generator) -> torch.Tensor:
    if discrete:
        idx = torch.randint(0, len(values), (n,), generator=g)
        return torch.tensor(values, dtype=torch.float64)[idx]
    lo, hi = values
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


class RandomScale(_Affine):
    """Zoom every image by a random factor.

    Parameters
    ----------
    scales
        A sequence of factors to choose from uniformly (e.g. ``(0.95, 1.0, 1.05)``), or a pair
        ``(low, high)`` with ``continuous=True`` to draw uniformly from that interval.
    """

    def __init__(self, scales: Sequence[float], continuous: bool = False) -> None:
        vals = tuple(float(s) for s in scales)
        if not vals or any(not math.isfinite(s) or s <= 0 for s in vals):
            raise ValueError(f"`scales` must be positive finite factors, got {scales!r}.")
        if continuous and len(vals) != 2:
            raise ValueError("With continuous=True, `scales` must be a (low, high) pair.")
        self.scales = vals
        self.continuous = continuous

    def matrices(self, n: int, generator: torch.Generator, h: int, w: int) -> torch.Tensor:
        s = _draw(self.scales, not self.continuous, n, generator)
        eye = torch.eye(2, dtype=torch.float64).expand(n, 2, 2)
        return eye / s[:, None, None]


class RandomRotate(_Affine):
    """Rotate every image by a random angle (degrees; positive angles turn counter-clockwise as displayed,
    as in torchvision).

    Parameters
    ----------
    degrees
        A number ``d`` (uniform in ``[-d, d]``) or a sequence of angles to choose from uniformly.
    """

    def __init__(self, degrees: float | Sequence[float]) -> None:
        if isinstance(degrees, numbers.Real):
            if not math.isfinite(float(degrees)) or degrees < 0:
                raise ValueError(f"`degrees` must be a finite number ≥ 0, got {degrees!r}.")
            self.degrees: tuple[float, ...] = (-float(degrees), float(degrees))
            self.continuous = True
        else:
            vals = tuple(float(d) for d in degrees)
            if not vals or any(not math.isfinite(d) for d in vals):
                raise ValueError(f"`degrees` must be finite angles, got {degrees!r}.")
            self.degrees = vals
            self.continuous = False

    def matrices(self, n: int, generator: torch.Generator, h: int, w: int) -> torch.Tensor:
        a = torch.deg2rad(_draw(self.degrees, not self.continuous, n, generator))
        c, s = torch.cos(a), torch.sin(a)
        # Rotate in pixel space: normalised coordinates are scaled by the side lengths.
        m = torch.empty(n, 2, 2, dtype=torch.float64)
        m[:, 0, 0] = c
        m[:, 0, 1] = -s * h / w
        m[:, 1, 0] = s * w / h
        m[:, 1, 1] = c
        return m


class FitTo(Transform):
    """Centre-crop (or replicate-pad) images to ``(height, width)`` so a fixed-size model accepts them."""

    def __init__(self, height: int, width: int) -> None:
        self.height = int(height)
        self.width = int(width)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(x)
        h, w = x.shape[-2:]
        dh, dw = h - self.height, w - self.width
        if dh < 0 or dw < 0:
            ph, pw = max(-dh, 0), max(-dw, 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
            h, w = x.shape[-2:]
            dh, dw = h - self.height, w - self.width
        top, left = dh // 2, dw // 2
        return x[..., top : top + self.height, left : left + self.width]


class Compose(Transform):
    """Apply transforms in order; consecutive scale/rotation steps share one bilinear resampling."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Every transform must be callable as t(x, generator), got {t!r}.")
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(x)
        g = _cpu_generator(generator)
        pending: torch.Tensor | None = None
        for t in self.transforms:
            if isinstance(t, _Affine):
                m = t.matrices(x.shape[0], g, x.shape[-2], x.shape[-1])
                # Output→input maps compose in reverse order of application.
                pending = m if pending is None else pending @ m
                continue
            if pending is not None:
                x = _warp(x, pending)
                pending = None
            x = t(x, g)
        if pending is not None:
            x = _warp(x, pending)
        return x

    def __len__(self) -> int:
        return len(self.transforms)


def standard_transforms(height: int, width: int | None = None, pad_value: float | None = None) -> Compose:
    """Olah et al.'s robustness recipe, scaled to the image size.

    Pad by ~6% of the side, jitter by ~4%, random scale in {0.95, 0.975, 1, 1.025, 1.05}, random rotation
    in {-5, …, 5} degrees, jitter by ~2%, then crop back to ``(height, width)``.

    Parameters
    ----------
    height, width
        The model's input size (``width`` defaults to ``height``).
    pad_value
        Pad with this constant (e.g. the data's background value); ``None`` pads by reflection.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.transforms import standard_transforms
    >>> t = standard_transforms(28)
    >>> t(torch.rand(2, 1, 28, 28), torch.Generator().manual_seed(0)).shape
    torch.Size([2, 1, 28, 28])
    """
    width = height if width is None else width
    side = min(height, width)
    pad = max(1, round(0.06 * side))
    jitter = max(1, round(0.04 * side))
    small = max(1, round(0.02 * side))
    padding = Pad(pad, "reflect") if pad_value is None else Pad(pad, "constant", pad_value)
    return Compose(
        [
            padding,
            Jitter(jitter),
            RandomScale((1.0, 0.975, 1.025, 0.95, 1.05)),
            RandomRotate(tuple(float(d) for d in range(-5, 6))),
            Jitter(small),
            FitTo(height, width),
        ]
    )


def l2_penalty(x: torch.Tensor, center: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Mean squared deviation of each image from ``center``: ``mean((x - c)²)`` per image, shape (N,).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.transforms import l2_penalty
    >>> l2_penalty(torch.ones(2, 1, 3, 3), 0.5)
    tensor([0.2500, 0.2500])
    """
    return (x - center).pow(2).flatten(1).mean(dim=1)


def total_variation(x: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Total variation of each image (Mahendran & Vedaldi 2015), shape (N,).

    ``mean over pixels of (Δx² + Δy²)^(β/2)`` with forward differences on the last two axes; ``β = 2``
    (default) is the smooth squared form, ``β = 1`` the classic isotropic TV (a tiny ε keeps its
    gradient finite on flat regions).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.transforms import total_variation
    >>> total_variation(torch.zeros(1, 1, 4, 4))
    tensor([0.])
    """
    if x.ndim < 3:
        raise ValueError(f"total_variation expects images (N, C, H, W) or (N, H, W), got {tuple(x.shape)}.")
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    sq = dx.pow(2) + dy.pow(2)
    if beta == 2.0:
        val = sq
    else:
        val = (sq + 1e-12).pow(beta / 2.0)
    return val.flatten(1).mean(dim=1)
