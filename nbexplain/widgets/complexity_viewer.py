"""``ComplexityViewer``: a layer's feature split into components of increasing complexity.

Shows, for a few chosen samples, the feature, its cumulative reconstruction up to the order picked on a
slider, and its components (images for spatial features, bars otherwise), beside bar charts of energy,
reliability, effectiveness and overfitting per order (drawn by the view itself, so they render in
exported pages too). Everything the slider, the channel picker and a click on an order can reach is
computed here once and switched in the browser without a kernel round trip. Viewers meant to be compared
(two networks, two training sets) can share one scale: :meth:`ComplexityViewer.share_scales`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import traitlets

from ..core._base.model_inputs import Inputs, as_inputs
from ..core._base.validation import check_positive_int, check_tensor, renamed_arguments
from ..core.complexity.result import ComplexityResult
from .base import NbxWidget
from .tensor import DEFAULT_MAX_BYTES, TensorTrait, to_uint8_images

__all__ = ["ComplexityViewer", "METRICS"]

#: Rows of the ``metrics`` tensor, in order (the first four are drawn as bar charts).
METRICS = ("energy", "reliability", "effectiveness", "overfitting", "fit_quality")

#: Most samples and channels / bars the viewer precomputes.
MAX_SAMPLES = 16
MAX_BARS = 64


def _image_like(x: torch.Tensor) -> bool:
    return x.ndim == 4 and x.shape[1] in (1, 3)


class ComplexityViewer(NbxWidget):
    """Components of a feature by complexity order, with per-order metric charts.

    Parameters
    ----------
    result
        A :class:`~nbexplain.core.complexity.result.ComplexityResult` from
        :func:`nbexplain.decompose_complexity`.
    inputs
        The samples to show (``(N, *input_shape)``, at most 16), e.g. ``data.x_test[:6]``. For a model with
        several inputs, all of them as one batch (a tuple, dict or ``nx.Inputs``); the input the
        disentanglers read (``result.input_key``) is the one shown.
    titles
        One title per sample (text, never HTML). Default: ``"sample 0"``, …
    channels
        For spatial features ``(C, H, W)`` — and for flat features with as many values as an image input,
        which are drawn in the input's shape — the channels the channel picker offers. Default: the
        ``n_channels`` channels with the largest feature variance over the shown samples.
    n_channels
        How many channels to offer by default.
    max_bars
        For vector features: how many feature dimensions to draw as bars (those of largest variance).
    order
        The order the reconstruction slider starts at (default: the deepest).
    cell_size
        Width of each image / bar chart in CSS pixels.
    max_bytes
        Budget for the precomputed tensors; fewer channels are offered when they would not fit.

    share_scales_with
        Another viewer (or several) to compare this one with: all of them then draw on one scale — the same
        colour limits for features and components and the same y range for each metric chart (see
        :meth:`share_scales`).

    Attributes
    ----------
    selected_order : int
        Index (into ``orders``) of the order whose component is shown for every sample; set by clicking an
        order in the view (or from Python).
    feature_limit, component_limit : float
        Colour limits L (maps span −L … L) of the feature with its reconstructions and of the components;
        ``0`` (default): each channel's own largest value. Set by :meth:`share_scales`, or by hand.
    chart_limits : dict
        ``{metric: [lo, hi]}``: the range each metric chart covers at least (``{}``: its own values).

    Notes
    -----
    The maps use a diverging blue–white–red map (ColorBrewer RdBu, readable with red–green colour-vision
    deficiency) centred on zero, with a colour bar at nice values for the feature and its reconstruction and
    one for the components — one per order when "scale each order separately" is ticked, so the bars always
    match what is drawn. The metric charts have a y axis at nice values that include 0. The order slider, the
    channel picker and the per-order scaling act only in the browser (no message to the kernel); the shown
    order is exposed on the view root as ``data-order``.

    Examples
    --------
    >>> from nbexplain.widgets import ComplexityViewer    # doctest: +SKIP
    >>> a = ComplexityViewer(res_a, data.x_test[:6])      # doctest: +SKIP
    >>> b = ComplexityViewer(res_b, data.x_test[:6], share_scales_with=a)  # doctest: +SKIP
    >>> a.component_limit == b.component_limit           # doctest: +SKIP
    True
    """

    _bundle = "complexity_viewer"

    kind = traitlets.Enum(["images", "bars"], default_value="images").tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    family = traitlets.Unicode("").tag(sync=True)
    orders = traitlets.List(traitlets.Int()).tag(sync=True)
    order_index = traitlets.Int(0, min=0).tag(sync=True)
    selected_order = traitlets.Int(0, min=0).tag(sync=True)
    titles = traitlets.List(traitlets.Unicode()).tag(sync=True)
    channels = traitlets.List(traitlets.Int()).tag(sync=True)
    channel_index = traitlets.Int(0, min=0).tag(sync=True)
    #: (N, K) or (N, K, H, W): the actual feature, K = offered channels / bars
    feature = TensorTrait("float32", ndim=(2, 4))
    #: (L, N, K[, H, W]): cumulative reconstructions g_l
    recon = TensorTrait("float32", ndim=(3, 5))
    #: (L, N, K[, H, W]): components c_l
    components = TensorTrait("float32", ndim=(3, 5))
    #: (N, H, W, C) uint8 inputs when they are images (else empty)
    inputs = TensorTrait("uint8", ndim=4)
    #: (len(METRICS), L) metric values (NaN sent as 0 with metric_valid false)
    metrics = TensorTrait("float32", ndim=2)
    metric_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    metric_valid = traitlets.List(traitlets.List(traitlets.Bool())).tag(sync=True)
    feature_limit = traitlets.Float(0.0, min=0.0).tag(sync=True)
    component_limit = traitlets.Float(0.0, min=0.0).tag(sync=True)
    chart_limits = traitlets.Dict(value_trait=traitlets.List(traitlets.Float(), minlen=2, maxlen=2)).tag(sync=True)
    cell_size = traitlets.Int(96, min=16, max=1024).tag(sync=True)

    @renamed_arguments(x="inputs", data="inputs")
    def __init__(
        self,
        result: ComplexityResult,
        inputs: Any,
        *,
        titles: Sequence[str] | None = None,
        channels: Sequence[int] | None = None,
        n_channels: int = 6,
        max_bars: int = 32,
        order: int | None = None,
        cell_size: int = 96,
        max_bytes: int = DEFAULT_MAX_BYTES,
        share_scales_with: ComplexityViewer | Sequence[ComplexityViewer] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(result, ComplexityResult):
            raise TypeError(
                "`result` must be the ComplexityResult returned by nx.decompose_complexity(...), "
                f"got {type(result).__name__}."
            )
        super().__init__(cell_size=cell_size, **kwargs)
        self.result = result
        self._n_channels = check_positive_int(n_channels, "n_channels")
        self._max_bars = min(check_positive_int(max_bars, "max_bars"), MAX_BARS)
        self._max_bytes = check_positive_int(max_bytes, "max_bytes")
        self._channels_arg = None if channels is None else [int(c) for c in channels]
        self._shown = False
        self._scale_group: list[ComplexityViewer] = [self]
        self.set_samples(inputs, titles)
        if order is not None:
            if order not in result.orders:
                raise ValueError(f"`order` must be one of the decomposed orders {result.orders}, got {order}.")
            self.order_index = result.orders.index(order)
        if share_scales_with is not None:
            others = [share_scales_with] if isinstance(share_scales_with, ComplexityViewer) else list(share_scales_with)
            self.share_scales(*others)

    # -------------------------------------------------------------------------------------------

    def own_limits(self) -> dict[str, Any]:
        """The scales this viewer's data need on their own: ``{"feature": L_f, "component": L_c, "charts":
        {metric: [lo, hi]}}``, with ``L`` the largest |value| over every offered channel (or bar), sample and
        order, and ``[lo, hi]`` each metric's range over its computed values and 0.

        Examples
        --------
        >>> sorted(viewer.own_limits())    # doctest: +SKIP
        ['charts', 'component', 'feature']
        """
        feature = max(float(np.abs(self.feature).max(initial=0.0)), float(np.abs(self.recon).max(initial=0.0)))
        component = float(np.abs(self.components).max(initial=0.0))
        charts: dict[str, list[float]] = {}
        for row, name in enumerate(self.metric_names[:4]):
            vals = [float(v) for v, ok in zip(self.metrics[row], self.metric_valid[row], strict=True) if ok]
            charts[name] = [min([0.0, *vals]), max([0.0, *vals])]
        return {"feature": feature, "component": component, "charts": charts}

    def share_scales(self, *others: ComplexityViewer) -> None:
        """Put this viewer and ``others`` on one scale, so that they can be compared by eye.

        Every viewer of the group gets the same ``feature_limit`` and ``component_limit`` (the largest over
        the group) and the same ``chart_limits`` (each metric's widest range over the group). The group is
        remembered: :meth:`set_samples` on any of them recomputes the shared scale for all.

        Examples
        --------
        >>> a.share_scales(b)                               # doctest: +SKIP
        >>> a.feature_limit == b.feature_limit             # doctest: +SKIP
        True
        """
        group = list(self._scale_group)
        for other in others:
            if not isinstance(other, ComplexityViewer):
                raise TypeError(
                    f"share_scales() takes other ComplexityViewer widgets, got {type(other).__name__}; "
                    "pass the viewer, e.g. ComplexityViewer(res_b, x, share_scales_with=viewer_a)."
                )
            for v in other._scale_group:
                if v not in group:
                    group.append(v)
        for v in group:
            v._scale_group = group
        self._apply_shared_limits()

    def _apply_shared_limits(self) -> None:
        group = self._scale_group
        limits = [v.own_limits() for v in group]
        feature = max(lim["feature"] for lim in limits)
        component = max(lim["component"] for lim in limits)
        charts: dict[str, list[float]] = {}
        for lim in limits:
            for name, (lo, hi) in lim["charts"].items():
                old = charts.get(name, [0.0, 0.0])
                charts[name] = [min(old[0], lo), max(old[1], hi)]
        for v in group:
            with v.hold_sync():
                v.feature_limit = feature
                v.component_limit = component
                v.chart_limits = {k: list(r) for k, r in charts.items()}

    @renamed_arguments(x="inputs")
    def set_samples(self, inputs: Any, titles: Sequence[str] | None = None) -> None:
        """Show other samples (recomputes the components; one update of the view)."""
        res = self.result
        x = every = inputs  # what the model gets: one input, or several
        label = "inputs"
        if isinstance(x, (tuple, list, Mapping, Inputs)):
            every = as_inputs(tuple(x) if isinstance(x, list) else x, "inputs")
            if res.input_key not in every:
                raise ValueError(
                    f"`inputs` is {every.describe()}, without the input {res.input_key!r} the disentanglers read."
                )
            x = every[res.input_key]
            label = "inputs" if every.single else f"inputs[{res.input_key!r}]"
        x = check_tensor(x, label, min_ndim=2, dtype_kind="float", finite=True)
        if tuple(x.shape[1:]) != tuple(res.input_shape):
            raise ValueError(
                f"`inputs` has samples of shape {tuple(x.shape[1:])}; the decomposition expects "
                f"{tuple(res.input_shape)}."
            )
        n = x.shape[0]
        if not 1 <= n <= MAX_SAMPLES:
            raise ValueError(f"`inputs` must hold 1 to {MAX_SAMPLES} samples to show, got {n}. Pass e.g. x[:6].")
        if titles is None:
            titles = [f"sample {i}" for i in range(n)]
        titles = [str(t) for t in titles]
        if len(titles) != n:
            raise ValueError(f"`titles` has {len(titles)} entries for {n} samples; give one per sample.")

        f = res.features(every)             # (N, *fs)
        g = res.reconstructions(x)          # (L, N, *fs)
        c = g.clone()
        c[1:] -= g[:-1]
        fs = tuple(res.feature_shape)
        L = len(res.orders)
        if len(fs) == 1 and _image_like(x) and fs[0] == int(np.prod(x.shape[1:])):
            # image-like vector feature (e.g. an autoencoder's flat output): draw it in the input's shape
            fs = tuple(int(s) for s in x.shape[1:])
            f, g, c = f.reshape(n, *fs), g.reshape(L, n, *fs), c.reshape(L, n, *fs)
        if len(fs) >= 2:
            kind = "images"
            if len(fs) == 2:   # (C, length) sequences: draw as 1-row images
                f, g, c = f[:, :, None], g[:, :, :, None], c[:, :, :, None]
                fs = (fs[0], 1, fs[1])
            elif len(fs) > 3:
                raise ValueError(f"Features of shape {fs} cannot be shown; choose a layer with (C, H, W) outputs.")
            n_ch = fs[0]
            per_channel = 4 * fs[1] * fs[2] * n * (1 + 2 * L)
            budget = max(1, self._max_bytes // max(per_channel, 1))
            if self._channels_arg is not None:
                chans = self._channels_arg
                bad = [ch for ch in chans if not 0 <= ch < n_ch]
                if bad or not chans:
                    raise ValueError(f"`channels` must be indices in [0, {n_ch - 1}], got {chans}.")
                if len(chans) > budget:
                    raise ValueError(
                        f"{len(chans)} channels would exceed max_bytes={self._max_bytes}; pass at most {budget}."
                    )
            else:
                var = f.double().transpose(0, 1).reshape(n_ch, -1).var(dim=1)
                k = min(self._n_channels, n_ch, budget)
                chans = torch.argsort(var, descending=True)[:k].tolist()
            idx = torch.tensor(chans)
            feat, rec, comp = f[:, idx], g[:, :, idx], c[:, :, idx]
        else:
            kind = "bars"
            d = int(np.prod(fs)) if fs else 1
            f2, g2, c2 = f.reshape(n, d), g.reshape(L, n, d), c.reshape(L, n, d)
            var = f2.double().var(dim=0) if n > 1 else f2.double().abs()[0]
            k = min(self._max_bars, d)
            chans = sorted(torch.argsort(var, descending=True)[:k].tolist())
            idx = torch.tensor(chans)
            feat, rec, comp = f2[:, idx], g2[:, :, idx], c2[:, :, idx]

        inputs = np.zeros((0,), np.uint8)
        if _image_like(x):
            inputs = to_uint8_images(x)

        metrics = np.zeros((len(METRICS), L), np.float32)
        valid = []
        for i, name in enumerate(METRICS):
            vals = getattr(res, name).double().numpy()
            ok = np.isfinite(vals)
            metrics[i] = np.where(ok, vals, 0.0)
            valid.append([bool(v) for v in ok])

        self.x = x
        with self.hold_sync():
            self.kind = kind
            self.layer = res.layer
            self.family = res.family
            self.orders = list(res.orders)
            self.titles = titles
            self.channels = [int(ch) for ch in chans]
            self.feature = feat.float().numpy()
            self.recon = rec.float().numpy()
            self.components = comp.float().numpy()
            self.inputs = inputs
            self.metrics = metrics
            self.metric_names = list(METRICS)
            self.metric_valid = valid
            if self.channel_index >= len(chans):
                self.channel_index = 0
            if self.order_index >= L or not self._shown:
                self.order_index = L - 1
            if self.selected_order >= L:
                self.selected_order = 0
        self._shown = True
        if len(self._scale_group) > 1:
            self._apply_shared_limits()

    @property
    def order(self) -> int:
        """The order the slider was last set to from Python (the browser's slider is local)."""
        return self.result.orders[self.order_index]

    @order.setter
    def order(self, value: int) -> None:
        if value not in self.result.orders:
            raise ValueError(f"`order` must be one of {self.result.orders}, got {value}.")
        self.order_index = self.result.orders.index(value)

    def _repr_fields(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "orders": tuple(self.orders),
            "samples": len(self.titles),
            "kind": self.kind,
        }
