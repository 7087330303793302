"""``Heatmap``: a batch of 2-D maps (attributions, activation maps) over optional input images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import traitlets

from ..core._base.validation import check_choice
from ..core.attribution.result import AttributionResult
from .base import NbxWidget
from .tensor import (
    DEFAULT_MAX_BYTES,
    TensorTrait,
    downsample_images,
    downsample_maps,
    to_numpy,
    to_uint8_images,
)

__all__ = ["Heatmap"]

_REDUCE = ("sum", "mean", "abs_sum", "max", "norm")


def _reduce_channels(arr: np.ndarray, reduce: str) -> np.ndarray:
    if reduce == "sum":
        return arr.sum(axis=1)
    if reduce == "mean":
        return arr.mean(axis=1)
    if reduce == "abs_sum":
        return np.abs(arr).sum(axis=1)
    if reduce == "max":
        return arr.max(axis=1)
    return np.sqrt((arr.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)


def _patch_maps_at_image_size(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Maps on a coarser grid that divides the images (patch relevance) repeated over each cell's pixels."""
    n, gh, gw = arr.shape
    if (gh, gw) == (height, width) or gh > height or gw > width or height % gh or width % gw:
        return arr
    return np.ascontiguousarray(arr.repeat(height // gh, axis=1).repeat(width // gw, axis=2))


class Heatmap(NbxWidget):
    """Show a batch of maps, each with a title, a colour bar, a value readout and click-to-select.

    Parameters
    ----------
    maps
        ``(N, H, W)`` or ``(N, C, H, W)`` (reduced over channels with ``reduce``); a single ``(H, W)``
        map is also accepted. Torch tensors or numpy arrays, or an attribution result (its ``.attribution``,
        e.g. ``nx.lrp(...)`` or ``nx.attention_rollout(...)``).
    images
        Optional inputs shown under the maps: ``(N, H', W')``, ``(N, 1|3, H', W')`` (any size; drawn
        stretched to the map's cell). Blend with the ``opacity`` control. Maps on a coarser grid that divides
        the images (a vision transformer's patch relevance ``(N, rows, columns)``, with ``H' % rows == 0`` and
        ``W' % columns == 0``) are shown at image size, each patch's value over its pixels, so the readout
        and :attr:`selected_map` are in image pixels.
    titles
        One title per map (text, never HTML). Default: ``"0"``, ``"1"``, …
    cmap
        ``"auto"`` (diverging centred on zero when any value is negative, else sequential),
        ``"diverging"`` or ``"sequential"``. Diverging is ColorBrewer's RdBu (blue negative, white zero, red
        positive), sequential is viridis; both are readable with the common colour-vision deficiencies
        (red–green), and zero (white) stays distinct from a dark theme's background.
    vmin, vmax
        Colour limits. Default: symmetric ``±max|v|`` for diverging maps, data min/max for sequential, which the
        view rounds outward to nice values (1, 2, 2.5 or 5 × 10^k) so that the colour bar's ends and ticks are
        readable numbers (and 0 is a tick whenever the range spans it). Limits given here are used as given.
    reduce
        How to reduce a channel dimension: ``"sum"`` (relevance), ``"mean"``, ``"abs_sum"``, ``"max"``
        or ``"norm"``.
    opacity
        Map opacity over the images (0–1). The default 1 shows every map in exactly the colours of its
        colour bar, with each image drawn on top as a thin dark outline (its luminance contour); lower it,
        or drag the slider, to blend the image in (a blend shifts the colours away from the colour bar).
    cell_size
        Largest width of each map in CSS pixels (times ``scale``); maps shrink to fit a narrower column.
    columns
        Maps per row (0 = wrap to the available width).
    label
        Caption of the colour bar.
    max_bytes
        Larger inputs are average-pooled in Python so the view never receives more than this.

    Attributes
    ----------
    selected : int
        Index of the clicked map (``-1``: none). Observable: ``h.observe(fn, "selected")``.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.widgets import Heatmap
    >>> h = Heatmap(torch.randn(4, 28, 28), titles=["a", "b", "c", "d"])
    >>> h
    Heatmap(n=4, shape=28×28, cmap=diverging)
    """

    _bundle = "heatmap"

    maps = TensorTrait("float32", ndim=3)
    images = TensorTrait("uint8", ndim=4)
    titles = traitlets.List(traitlets.Unicode()).tag(sync=True)
    cmap = traitlets.Enum(["diverging", "sequential"], default_value="sequential").tag(sync=True)
    vmin = traitlets.Float(0.0).tag(sync=True)
    vmax = traitlets.Float(1.0).tag(sync=True)
    opacity = traitlets.Float(1.0, min=0.0, max=1.0).tag(sync=True)
    selected = traitlets.Int(-1, min=-1).tag(sync=True)
    cell_size = traitlets.Int(112, min=16, max=2048).tag(sync=True)
    columns = traitlets.Int(0, min=0).tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    #: (H, W) of the maps before downsampling, so the readout reports original coordinates.
    source_shape = traitlets.List(traitlets.Int(), default_value=[0, 0]).tag(sync=True)
    #: Whether the view rounds ``vmin``/``vmax`` outward to nice values (True when they were not given).
    round_limits = traitlets.Bool(True).tag(sync=True)

    def __init__(
        self,
        maps: Any,
        images: Any = None,
        *,
        titles: Sequence[str] | None = None,
        cmap: str = "auto",
        vmin: float | None = None,
        vmax: float | None = None,
        reduce: str = "sum",
        opacity: float = 1.0,
        cell_size: int = 112,
        columns: int = 0,
        label: str = "",
        max_bytes: int = DEFAULT_MAX_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(opacity=opacity, cell_size=cell_size, columns=columns, label=label, **kwargs)
        self._max_bytes = int(max_bytes)
        self.set_maps(maps, images, titles=titles, cmap=cmap, vmin=vmin, vmax=vmax, reduce=reduce)

    def set_maps(
        self,
        maps: Any,
        images: Any = None,
        *,
        titles: Sequence[str] | None = None,
        cmap: str = "auto",
        vmin: float | None = None,
        vmax: float | None = None,
        reduce: str = "sum",
    ) -> None:
        """Replace the shown maps (and images/titles) in one update of the view."""
        check_choice(cmap, "cmap", ("auto", "diverging", "sequential"))
        check_choice(reduce, "reduce", _REDUCE)
        if isinstance(maps, AttributionResult):
            maps = maps.attribution
        arr = to_numpy(maps)
        given = arr.shape
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim == 4:
            arr = _reduce_channels(arr, reduce)
        if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
            raise ValueError(f"`maps` must be (N, H, W) or (N, C, H, W) with N, H, W ≥ 1, got shape {given}.")
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("`maps` contains NaN or infinite values; clean them (e.g. torch.nan_to_num).")
        n = arr.shape[0]
        if titles is None:
            titles = [str(i) for i in range(n)]
        titles = [str(t) for t in titles]
        if len(titles) != n:
            raise ValueError(f"`titles` has {len(titles)} entries for {n} maps; give one title per map.")
        img = None
        if images is not None:
            img = to_uint8_images(images)
            if img.shape[0] != n:
                raise ValueError(f"`images` has {img.shape[0]} images for {n} maps; give one image per map.")
            arr = _patch_maps_at_image_size(arr, img.shape[1], img.shape[2])
        self.data = arr  # full-resolution maps, kept in Python
        self.source_images = img
        small, _ = downsample_maps(arr, self._max_bytes // 2 if img is not None else self._max_bytes)
        if img is not None:
            img = downsample_images(img, self._max_bytes // 2)
        kind = ("diverging" if float(arr.min()) < 0 else "sequential") if cmap == "auto" else cmap
        if kind == "diverging":
            m = float(np.abs(arr).max())
            lo = -m if vmin is None else float(vmin)
            hi = m if vmax is None else float(vmax)
        else:
            lo = float(arr.min()) if vmin is None else float(vmin)
            hi = float(arr.max()) if vmax is None else float(vmax)
        if hi < lo:
            raise ValueError(f"`vmin` ({lo}) must not exceed `vmax` ({hi}).")
        with self.hold_sync():
            self.maps = small
            self.images = img if img is not None else np.zeros((0,), np.uint8)
            self.titles = titles
            self.cmap = kind
            self.vmin, self.vmax = lo, hi
            self.round_limits = vmin is None and vmax is None
            self.source_shape = [int(arr.shape[1]), int(arr.shape[2])]
            if self.selected >= n:
                self.selected = -1

    @property
    def selected_map(self) -> np.ndarray | None:
        """The full-resolution map that was clicked, or ``None``."""
        return None if self.selected < 0 else self.data[self.selected]

    def _repr_fields(self) -> dict[str, Any]:
        n, h, w = self.data.shape
        return {"n": n, "shape": f"{h}×{w}", "cmap": self.cmap}
