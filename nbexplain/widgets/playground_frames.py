"""Frames of the Playground view: the binary encoding of one training moment and the bounded recording.

A frame is what the view draws at one moment of training, all as small binary arrays (no algorithm here: the
maps come from ``nbexplain.core.playground``; this module only quantises, stacks and budgets them):

========== ==================== =====================================================================
key        dtype, shape         meaning
========== ==================== =====================================================================
surface    uint8 (C, R, R)      class probabilities over the plane, ``round(255 p)``; row 0 is the top
neurons    uint8 (U, r, r)      every drawn neuron's activation map, scaled per unit to its (min, max)
ranges     float32 (U, 2)       each unit's (min, max), so ``value = min + byte / 255 · (max − min)``
weights    float32 (E,)         the edge weights (every Linear's weight matrix, flattened, in order)
predicted  uint8 (N,)           predicted class of every point (train then test)
relevance  float32 (3, q, q)    relevance of input x, of input y, and the explained output (logit)
meta       float32 (7,)         epoch, step, train loss, test loss, train acc, test acc, has-metrics
========== ==================== =====================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .tensor import serialize_tensor, to_numpy

__all__ = ["Frame", "Recording", "quantize_units", "quantize_probabilities", "wire", "RECORDING_BUDGET"]

#: The recorded history is kept below this many bytes (the issue's bound).
RECORDING_BUDGET = 20_000_000

_KEYS = ("surface", "neurons", "ranges", "weights", "predicted", "relevance", "meta")


def quantize_probabilities(p: torch.Tensor | np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as uint8 ``round(255 p)`` (the largest error is 1/510)."""
    arr = np.clip(to_numpy(p).astype(np.float32), 0.0, 1.0)
    return np.ascontiguousarray(np.rint(arr * 255.0).astype(np.uint8))


def quantize_units(maps: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(U, r, r)`` real maps as uint8 scaled per unit to its own (min, max), and those ``(U, 2)`` ranges.

    A constant map is sent as zeros with ``min == max`` (the view then reads the value back exactly).

    Examples
    --------
    >>> import numpy as np
    >>> q, rng = quantize_units(np.array([[[0.0, 1.0], [2.0, 4.0]]]))
    >>> q.tolist(), rng.tolist()
    ([[[0, 64], [128, 255]]], [[0.0, 4.0]])
    """
    arr = to_numpy(maps).astype(np.float32)
    if arr.ndim != 3:
        raise ValueError(f"`maps` must be (units, r, r), got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError("`maps` contains NaN or infinite values (the network diverged: lower the learning rate).")
    flat = arr.reshape(arr.shape[0], -1)
    lo = flat.min(axis=1) if flat.shape[1] else np.zeros(arr.shape[0], np.float32)
    hi = flat.max(axis=1) if flat.shape[1] else np.zeros(arr.shape[0], np.float32)
    span = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
    q = np.rint((arr - lo[:, None, None]) / span[:, None, None] * 255.0)
    q = np.clip(q, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(q), np.stack([lo, hi], axis=1).astype(np.float32)


@dataclass
class Frame:
    """One training moment as the view draws it (see the module docstring for every array)."""

    surface: np.ndarray
    neurons: np.ndarray
    ranges: np.ndarray
    weights: np.ndarray
    predicted: np.ndarray
    relevance: np.ndarray
    meta: np.ndarray

    @property
    def epoch(self) -> int:
        return int(self.meta[0])

    @property
    def step(self) -> int:
        return int(self.meta[1])

    @property
    def nbytes(self) -> int:
        """Bytes of the binary payload (what the view receives as buffers)."""
        return int(sum(getattr(self, k).nbytes for k in _KEYS))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in _KEYS}

    def same_as(self, other: Frame) -> bool:
        """Every array equal, byte for byte."""
        return all(np.array_equal(a, b) for a, b in zip(self.arrays().values(), other.arrays().values(), strict=True))


def meta_row(epoch: int, step: int, metrics: Any | None) -> np.ndarray:
    """The ``meta`` array of a frame: epoch, step and the latest epoch's metrics (zeros and flag 0 before one)."""
    if metrics is None:
        return np.array([epoch, step, 0, 0, 0, 0, 0], dtype=np.float32)
    return np.array([epoch, step, metrics.train_loss, metrics.test_loss, metrics.train_accuracy,
                     metrics.test_accuracy, 1], dtype=np.float32)


@dataclass
class Recording:
    """Recorded frames at a bounded size.

    Policy: every frame is kept until the frames together exceed ``budget`` bytes; then every other frame is
    dropped (the first and the latest always stay) and from then on only every second frame is recorded —
    each further overflow halves the density again. So a long run keeps evenly thinned history from its
    start, and the latest frame is always the last one recorded.
    """

    budget: int = RECORDING_BUDGET
    frames: list[Frame] = field(default_factory=list)
    stride: int = 1
    _index: list[int] = field(default_factory=list)  # each kept frame's position in the stream of frames
    _seen: int = 0
    _bytes: int = 0  # Σ nbytes of the kept frames, kept up to date (add() checks it after every frame)

    def clear(self) -> None:
        self.frames.clear()
        self._index.clear()
        self.stride = 1
        self._seen = 0
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def add(self, frame: Frame) -> None:
        """Record ``frame`` (thinning as the policy says when over budget)."""
        i = self._seen
        self._seen += 1
        if self._index and self._index[-1] % self.stride:  # the last one was kept only as "the latest"
            self._bytes += frame.nbytes - self.frames[-1].nbytes
            self.frames[-1], self._index[-1] = frame, i
        else:
            self.frames.append(frame)
            self._index.append(i)
            self._bytes += frame.nbytes
        while len(self.frames) > 2 and self.nbytes > self.budget:
            self.stride *= 2
            keep = [j for j, k in enumerate(self._index) if k % self.stride == 0 or j == len(self._index) - 1]
            self.frames = [self.frames[j] for j in keep]
            self._index = [self._index[j] for j in keep]
            self._bytes = sum(f.nbytes for f in self.frames)

    def stacked(self) -> dict[str, Any]:
        """All frames stacked along a first axis, as the view's ``recording`` (count 0 when empty)."""
        if not self.frames:
            return {"count": 0}
        out: dict[str, Any] = {"count": len(self.frames)}
        for k in _KEYS:
            out[k] = np.ascontiguousarray(np.stack([getattr(f, k) for f in self.frames]))
        return out


def wire(value: Any, widget: Any = None) -> Any:
    """``to_json`` of the Playground's dict traits: numpy arrays (at any depth) become binary tensors."""
    if isinstance(value, np.ndarray):
        return serialize_tensor(value)
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not _is_plain(value):
        return [wire(v) for v in value]
    return value


def _is_plain(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float, str, bool)) or v is None for v in values)
