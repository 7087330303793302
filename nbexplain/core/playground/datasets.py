"""Two-dimensional toy data sets for the playground, written from their definitions.

Every generator draws from its own ``torch.Generator`` seeded by ``seed`` (the global RNG is never touched),
so one seed gives the same points on every machine. The classes are balanced exactly: ``n`` points are split
over the classes as evenly as possible (the first ``n % classes`` classes get one more).

- ``"moons"``: two interleaving half circles, as scikit-learn's ``make_moons`` — the upper arc
  ``(cos t, sin t)`` and the lower arc ``(1 − cos t, 1 − sin t − ½)`` for ``t`` evenly spaced in ``[0, π]``.
- ``"circles"``: two concentric circles (radius 1 and ½), as ``make_circles(factor=0.5)``: angles evenly
  spaced in ``[0, 2π)``.
- ``"xor"``: points uniform in ``[−1, 1]²`` away from the axes (``|x|, |y| ≥ 0.05``); class 0 in the
  quadrants where ``x·y > 0``, class 1 where ``x·y < 0``.
- ``"spiral"``: ``classes`` arms; arm ``c`` is ``r (sin θ, cos θ)`` with ``r = t`` and
  ``θ = 3.5π t + 2πc / classes`` for ``t`` evenly spaced in ``[0, 1]``.
- ``"blobs"``: ``classes`` isotropic Gaussians of standard deviation ``0.3`` centred on a circle of radius
  1.5 (centre ``c`` at angle ``2πc / classes``).

``noise`` is the standard deviation of Gaussian noise added to every coordinate (for blobs, on top of
their own spread).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from .._base.validation import check_choice, check_fraction, check_positive_int, check_tensor

__all__ = ["ToyDataset", "toy_dataset", "as_toy_dataset", "DATASETS"]

#: The names :func:`toy_dataset` knows.
DATASETS = ("moons", "circles", "xor", "spiral", "blobs")
_MULTICLASS = ("spiral", "blobs")
_BLOB_SPREAD = 0.3
_BLOB_RADIUS = 1.5
_XOR_PAD = 0.05


@dataclass
class ToyDataset:
    """A two-dimensional classification data set, split into train and test.

    Attributes
    ----------
    x_train, y_train
        ``(n_train, 2)`` float32 points and ``(n_train,)`` int64 labels in ``0 … classes − 1``.
    x_test, y_test
        The held-out split, the same way.
    name
        ``"moons"``, ``"circles"``, ``"xor"``, ``"spiral"``, ``"blobs"`` or ``"custom"`` (your own data).
    classes
        Number of classes.
    extent
        ``(xmin, xmax, ymin, ymax)``: a square region of the plane holding every point with a margin of 10 %
        of the data's larger span on each side — the plane the playground draws.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    classes: int
    extent: tuple[float, float, float, float]

    @property
    def x(self) -> torch.Tensor:
        """All points, train then test ``(n, 2)``."""
        return torch.cat([self.x_train, self.x_test])

    @property
    def y(self) -> torch.Tensor:
        """All labels, train then test ``(n,)``."""
        return torch.cat([self.y_train, self.y_test])

    def __repr__(self) -> str:
        return (f"ToyDataset({self.name!r}, classes={self.classes}, train={len(self.y_train)}, "
                f"test={len(self.y_test)}, extent={tuple(round(v, 3) for v in self.extent)})")


def _class_sizes(n: int, classes: int) -> list[int]:
    return [n // classes + (1 if c < n % classes else 0) for c in range(classes)]


def _moons(sizes: list[int], gen: torch.Generator) -> list[torch.Tensor]:
    t0 = torch.linspace(0.0, math.pi, sizes[0], dtype=torch.float64)
    t1 = torch.linspace(0.0, math.pi, sizes[1], dtype=torch.float64)
    upper = torch.stack([t0.cos(), t0.sin()], 1)
    lower = torch.stack([1.0 - t1.cos(), 1.0 - t1.sin() - 0.5], 1)
    return [upper, lower]


def _circles(sizes: list[int], gen: torch.Generator) -> list[torch.Tensor]:
    out = []
    for radius, m in zip((1.0, 0.5), sizes, strict=True):
        t = torch.arange(m, dtype=torch.float64) * (2.0 * math.pi / m)
        out.append(radius * torch.stack([t.cos(), t.sin()], 1))
    return out


def _xor(sizes: list[int], gen: torch.Generator) -> list[torch.Tensor]:
    out = []
    for c, m in enumerate(sizes):
        mag = _XOR_PAD + (1.0 - _XOR_PAD) * torch.rand(m, 2, generator=gen, dtype=torch.float64)
        sx = torch.where(torch.rand(m, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
        sy = sx if c == 0 else -sx  # class 0: x·y > 0, class 1: x·y < 0
        out.append(mag * torch.stack([sx, sy], 1))
    return out


def _spiral(sizes: list[int], gen: torch.Generator) -> list[torch.Tensor]:
    k = len(sizes)
    out = []
    for c, m in enumerate(sizes):
        t = torch.linspace(0.0, 1.0, m, dtype=torch.float64)
        theta = 3.5 * math.pi * t + 2.0 * math.pi * c / k
        out.append(t[:, None] * torch.stack([theta.sin(), theta.cos()], 1))
    return out


def _blobs(sizes: list[int], gen: torch.Generator) -> list[torch.Tensor]:
    k = len(sizes)
    out = []
    for c, m in enumerate(sizes):
        a = 2.0 * math.pi * c / k
        centre = torch.tensor([math.cos(a), math.sin(a)], dtype=torch.float64) * _BLOB_RADIUS
        out.append(centre + _BLOB_SPREAD * torch.randn(m, 2, generator=gen, dtype=torch.float64))
    return out


_GENERATORS = {"moons": _moons, "circles": _circles, "xor": _xor, "spiral": _spiral, "blobs": _blobs}


def _extent(x: torch.Tensor) -> tuple[float, float, float, float]:
    lo, hi = x.min(0).values.double(), x.max(0).values.double()
    centre = (lo + hi) / 2
    half = float((hi - lo).max()) / 2
    half = half * 1.2 if half > 0 else 1.0  # 10 % of the span on each side
    cx, cy = float(centre[0]), float(centre[1])
    return (cx - half, cx + half, cy - half, cy + half)


def _check_test_fraction(test_fraction: Any) -> float:
    return check_fraction(test_fraction, "test_fraction", low_open=True, high_closed=False)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be an integer, got {seed!r}.")
    return int(seed)


def _split(x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int, name: str,
           classes: int) -> ToyDataset:
    n = len(y)
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n_test > n - 1:
        raise ValueError(
            f"{n} points with `test_fraction`={test_fraction} leave an empty train or test split; "
            "use more points or a test_fraction nearer 0.3."
        )
    gen = torch.Generator().manual_seed(int(seed) + 7919)  # the split's own stream, apart from the points'
    order = torch.randperm(n, generator=gen)
    test, train = order[:n_test], order[n_test:]
    x32 = x.to(torch.float32)
    return ToyDataset(x32[train].contiguous(), y[train].contiguous(), x32[test].contiguous(), y[test].contiguous(),
                      name, classes, _extent(x32))


def toy_dataset(
    name: str = "moons",
    n: int = 500,
    *,
    noise: float = 0.1,
    test_fraction: float = 0.3,
    classes: int = 2,
    seed: int = 0,
) -> ToyDataset:
    """A seeded 2-D toy classification set (moons, circles, XOR, spiral, Gaussian blobs), split train/test.

    Parameters
    ----------
    name
        ``"moons"`` (default), ``"circles"``, ``"xor"``, ``"spiral"`` or ``"blobs"`` (definitions in
        :mod:`nbexplain.core.playground.datasets`).
    n
        Number of points in all (≥ 4), split as evenly as possible over the classes.
    noise
        Standard deviation of the Gaussian noise added to each coordinate (≥ 0).
    test_fraction
        Fraction of the points held out as the test split, in (0, 1); ``round(n · test_fraction)`` points.
    classes
        Number of classes, for ``"spiral"`` (arms) and ``"blobs"`` only (2–10); the others have 2.
    seed
        Seed of the points, the noise and the split: the same seed gives the same data set.

    Returns
    -------
    ToyDataset

    Examples
    --------
    >>> import nbexplain as nx
    >>> data = nx.toy_dataset("spiral", 300, classes=3, seed=1)
    >>> data.x_train.shape, data.y_test.shape, data.classes
    (torch.Size([210, 2]), torch.Size([90]), 3)
    """
    check_choice(name, "name", DATASETS)
    n = check_positive_int(n, "n")
    if n < 4:
        raise ValueError(f"`n` must be at least 4 (a train and a test point per class), got {n}.")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"`noise` must be a finite number ≥ 0 (the noise's standard deviation), got {noise!r}.")
    test_fraction = _check_test_fraction(test_fraction)
    classes = check_positive_int(classes, "classes")
    if name in _MULTICLASS:
        if not 2 <= classes <= 10:
            raise ValueError(f"`classes` must lie in 2 … 10 for {name!r}, got {classes}.")
    elif classes != 2:
        raise ValueError(f"{name!r} has 2 classes; `classes` applies to 'spiral' and 'blobs' only, got {classes}.")
    if n < 2 * classes:
        raise ValueError(f"`n`={n} is too few for {classes} classes; use at least {2 * classes} points.")
    check_seed(seed)
    gen = torch.Generator().manual_seed(int(seed))
    sizes = _class_sizes(n, classes)
    parts = _GENERATORS[name](sizes, gen)
    x = torch.cat(parts)
    y = torch.cat([torch.full((m,), c, dtype=torch.int64) for c, m in enumerate(sizes)])
    if noise > 0:
        x = x + float(noise) * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    return _split(x, y, test_fraction, int(seed), name, classes)


def as_toy_dataset(x: Any, y: Any, *, test_fraction: float = 0.3, seed: int = 0) -> ToyDataset:
    """Your own 2-D data as a :class:`ToyDataset` (seeded train/test split), for the playground.

    Parameters
    ----------
    x
        ``(N, 2)`` numbers (tensor or numpy array), finite.
    y
        ``(N,)`` integer labels ``0 … C − 1`` with ``C ≥ 2`` (every class from 0 to the largest label counts,
        also one with no point).
    test_fraction
        Fraction held out as the test split, in (0, 1).
    seed
        Seed of the split.

    Returns
    -------
    ToyDataset
        With ``name="custom"``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> x = torch.randn(100, 2)
    >>> data = nx.as_toy_dataset(x, (x[:, 0] > 0).long())
    >>> data.classes, data.name, len(data.y_train)
    (2, 'custom', 70)
    """
    xt = check_tensor(x, "x", ndim=2, finite=True)
    if xt.shape[1] != 2:
        raise ValueError(f"`x` must have 2 columns (the two input features), got shape {tuple(xt.shape)}; "
                         "the playground draws a plane, so project your data to 2-D first (e.g. PCA).")
    if xt.dtype == torch.bool or xt.is_complex():
        raise TypeError(f"`x` must hold real numbers, got {xt.dtype}.")
    yt = check_tensor(y, "y", ndim=1)
    if yt.is_floating_point():
        if not bool(torch.isfinite(yt).all()) or not bool((yt == yt.round()).all()):
            raise TypeError("`y` must hold integer class labels 0 … C−1; it holds non-integer values.")
    elif yt.dtype == torch.bool or yt.is_complex():
        raise TypeError(f"`y` must hold integer class labels 0 … C−1, got {yt.dtype} (use y.long()).")
    yt = yt.to(torch.int64)
    if len(yt) != len(xt):
        raise ValueError(f"`x` has {len(xt)} points but `y` has {len(yt)} labels; give one label per point.")
    if len(yt) < 4:
        raise ValueError(f"Give at least 4 points (a train and a test split), got {len(yt)}.")
    if int(yt.min()) < 0:
        raise ValueError(f"`y` must hold labels 0 … C−1, got {int(yt.min())}; map your labels to 0 … C−1.")
    classes = int(yt.max()) + 1
    if classes < 2:
        raise ValueError("`y` has a single class (all labels 0); a classifier needs at least 2 classes.")
    test_fraction = _check_test_fraction(test_fraction)
    check_seed(seed)
    return _split(xt.detach().cpu().to(torch.float64), yt.detach().cpu(), test_fraction, int(seed), "custom",
                  classes)
