"""Tensors on the wire: one typed trait that validates and serializes in one place.

A tensor travels to the view as ``{"view": memoryview, "dtype": "float32" | "uint8", "shape": [...]}``;
ipywidgets lifts the memoryview out of the JSON state into a binary buffer, so no float ever becomes
JSON text. ``js/lib/tensor.ts`` decodes it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import traitlets

__all__ = [
    "TensorTrait",
    "serialize_tensor",
    "to_numpy",
    "to_uint8_images",
    "downsample_maps",
    "downsample_images",
    "wire_bytes",
    "DEFAULT_MAX_BYTES",
]

#: Views keep each tensor below this many bytes by downsampling in Python.
DEFAULT_MAX_BYTES = 4_000_000

_DTYPES = {"float32": np.float32, "uint8": np.uint8}


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor or array-like as a numpy array (detached, on the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").numpy()
    return np.asarray(value)


def serialize_tensor(value: np.ndarray | None, widget: Any = None) -> dict[str, Any]:
    """The wire form of an array (``to_json`` hook for traits)."""
    if value is None:
        value = np.zeros((0,), dtype=np.float32)
    arr = np.ascontiguousarray(value)
    return {"view": memoryview(arr.reshape(-1)), "dtype": str(arr.dtype), "shape": list(arr.shape)}


def _deserialize_tensor(value: dict[str, Any] | None, widget: Any = None) -> np.ndarray:
    if value is None:
        return np.zeros((0,), dtype=np.float32)
    arr = np.frombuffer(bytes(value["view"]), dtype=_DTYPES[value["dtype"]])
    return arr.reshape(value["shape"])


def wire_bytes(value: np.ndarray) -> int:
    """Bytes a tensor occupies on the wire (its binary buffer)."""
    return int(np.asarray(value).nbytes)


class TensorTrait(traitlets.TraitType):
    """A synced numpy array of a fixed dtype and rank, sent as a binary buffer.

    Accepts torch tensors and array-likes; casts to ``dtype`` (floats must be finite; uint8 input must
    already be uint8 — use :func:`to_uint8_images` for images). An empty array (shape ``(0,)``) means
    "absent".
    """

    info_text = "a tensor"

    def __init__(self, dtype: str = "float32", ndim: int | tuple[int, ...] | None = None, **kwargs: Any) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"`dtype` must be one of {list(_DTYPES)}, got {dtype!r}.")
        self.dtype = dtype
        self.ndim = (ndim,) if isinstance(ndim, int) else ndim
        super().__init__(default_value=np.zeros((0,), dtype=_DTYPES[dtype]), **kwargs)
        self.tag(sync=True, to_json=serialize_tensor, from_json=_deserialize_tensor)

    def validate(self, obj: Any, value: Any) -> np.ndarray:
        arr = to_numpy(value)
        name = self.name or "tensor"
        if arr.size == 0:
            return np.zeros((0,), dtype=_DTYPES[self.dtype])
        if self.ndim is not None and arr.ndim not in self.ndim:
            raise traitlets.TraitError(
                f"`{name}` must have {' or '.join(map(str, self.ndim))} dimensions, got shape {arr.shape}."
            )
        if self.dtype == "uint8":
            if arr.dtype != np.uint8:
                raise traitlets.TraitError(
                    f"`{name}` must be uint8 (0–255), got {arr.dtype}; convert images with to_uint8_images()."
                )
        else:
            if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
                    or arr.dtype == np.bool_):
                raise traitlets.TraitError(f"`{name}` must be numeric, got {arr.dtype}.")
            arr = arr.astype(np.float32, copy=False)
            if not np.isfinite(arr).all():
                raise traitlets.TraitError(f"`{name}` contains NaN or infinite values; clean it first.")
        return np.ascontiguousarray(arr)


def to_uint8_images(images: Any, *, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Images as ``(N, H, W, C)`` uint8 with ``C`` in {1, 3}.

    Accepts ``(N, H, W)``, ``(N, 1|3, H, W)`` or ``(N, H, W, 1|3)``. Float images are scaled from
    ``value_range`` (default: the batch's min and max) to 0–255; uint8 images are kept.
    """
    arr = to_numpy(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    elif arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    elif arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)  # ambiguous (e.g. 3×3 images): channels-first, the torch layout
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ValueError(
            f"`images` must be (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {{1, 3}}, got shape "
            f"{to_numpy(images).shape}. Reduce other channel counts first (e.g. x.mean(1))."
        )
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("`images` contains NaN or infinite values.")
    lo, hi = value_range if value_range is not None else (float(arr.min()), float(arr.max()))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.ascontiguousarray(np.clip((arr - lo) * scale, 0, 255).round().astype(np.uint8))


def downsample_maps(maps: np.ndarray, max_bytes: int = DEFAULT_MAX_BYTES, itemsize: int = 4) -> tuple[np.ndarray, int]:
    """Average-pool ``(N, H, W[, C])`` maps by an integer factor until they fit in ``max_bytes``.

    Returns the pooled maps and the factor (1 when nothing was needed). Edges that do not fill a
    whole block are averaged over the pixels they have.
    """
    n, h, w = maps.shape[:3]
    rest = int(np.prod(maps.shape[3:])) if maps.ndim > 3 else 1
    total = n * h * w * rest * itemsize
    if total <= max_bytes:
        return maps, 1
    factor = int(math.ceil(math.sqrt(total / max_bytes)))
    while n * math.ceil(h / factor) * math.ceil(w / factor) * rest * itemsize > max_bytes:
        factor += 1
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    t = t.reshape(n, h, w, rest).permute(0, 3, 1, 2)
    pooled = torch.nn.functional.avg_pool2d(t, factor, stride=factor, ceil_mode=True, count_include_pad=False)
    out = pooled.permute(0, 2, 3, 1).reshape((n, pooled.shape[2], pooled.shape[3]) + maps.shape[3:])
    return out.numpy(), factor


def downsample_images(images: np.ndarray, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """:func:`downsample_maps` for uint8 ``(N, H, W, C)`` images: pooled only when over ``max_bytes``,
    returned as uint8 either way (no float round trip when nothing needs pooling)."""
    pooled, factor = downsample_maps(images, max_bytes, itemsize=1)
    if factor == 1:
        return pooled
    return np.clip(pooled.round(), 0, 255).astype(np.uint8)
