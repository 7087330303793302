"""``ExplanationExplorer``: several attribution methods side by side, one row per sample.

Rows are samples; the columns are the input and one map per method, with the predicted and the
explained class as text, and each map's conservation and continuity scores. Hovering a pixel marks
the same pixel in every column of that row and reads every method's value there; an opacity control
blends the maps over the input. Every map already computed (per sample *and* target class) is kept in
the view's cache, so switching back to a class seen before is instant and needs no kernel; a class or
a sample not computed yet is requested from the kernel (the view shows it is busy, and only the latest
request is run).

The widget implements no algorithm: every map comes from :mod:`nbexplain.core`
(:func:`~nbexplain.core.attribution.gradients.gradient`, …, :func:`~nbexplain.core.attribution.lrp.lrp`,
:func:`~nbexplain.core.attribution.rate_distortion.rde`, :func:`~nbexplain.core.attribution.continuity.continuity`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from .. import core
from ..core._base.compiled import require_hooks
from ..core._base.hygiene import model_device, model_dtype, preserved
from ..core._base.targets import describe_axes
from ..core._base.validation import check_model, check_positive_int, check_tensor, renamed_arguments, suggest
from ..core.attribution.patches import image_map
from ..core.attribution.result import AttributionResult
from .base import RequestWidget
from .tensor import TensorTrait, downsample_maps, to_uint8_images

__all__ = ["ExplanationExplorer", "METHOD_NAMES"]

#: Methods known by name; LRP takes any composite as ``"lrp:<composite>"``.
METHOD_NAMES = ("gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "rde", "attention_rollout",
                "lrp:<composite>")

_TITLES = {
    "gradient": "gradient",
    "gradient_x_input": "gradient × input",
    "smoothgrad": "SmoothGrad",
    "integrated_gradients": "integrated gradients",
    "rde": "RDE mask",
    "attention_rollout": "attention rollout",
}

# Budget for the cache tensor sent to the view (maps of every computed (sample, target) pair).
_MAX_CACHE_BYTES = 8_000_000


@dataclass
class _Method:
    key: str  # unique column key
    title: str
    kind: str  # "diverging" | "sequential"
    fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], AttributionResult | torch.Tensor]
    conserving: bool  # whether the map distributes the explained score (its .conservation is shown)


#: Methods whose maps add up to the explained score (LRP, gradient × input) or to f(x) − f(baseline)
#: (integrated gradients): their result's ``.conservation`` is shown; for sensitivities and masks it means nothing.
_CONSERVING = ("gradient_x_input", "integrated_gradients", "lrp")


def _build_method(spec: Any, options: Mapping[str, Mapping[str, Any]]) -> _Method:
    if callable(spec) and not isinstance(spec, str):
        name = getattr(spec, "__name__", type(spec).__name__)
        kw = dict(options.get(name, {}))

        def user(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> AttributionResult | torch.Tensor:
            r = spec(model, x, t, **kw)
            m = r.attribution if isinstance(r, AttributionResult) else r
            if not isinstance(m, torch.Tensor) or m.ndim < 2 or m.shape[0] != x.shape[0]:
                raise ValueError(
                    f"Method {name!r} must return an attribution result (e.g. nx.gradient(...)) or a tensor with the "
                    f"input's shape {tuple(x.shape)} (or one map per sample: (N, H, W), or patch maps (N, rows, "
                    f"columns) on the image's patch grid), got "
                    f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(r).__name__}."
                )
            return r

        return _Method(name, name, "diverging", user, conserving=False)
    if not isinstance(spec, str):
        raise TypeError(
            f"Each entry of `methods` must be a method name or a function (model, inputs, target) -> attribution, "
            f"got {spec!r}."
        )
    kw = dict(options.get(spec, {}))
    if spec.startswith("lrp"):
        composite = spec.split(":", 1)[1] if ":" in spec else "epsilon_plus_flat"
        if composite not in core.COMPOSITES:
            raise ValueError(
                f"Unknown LRP composite {composite!r} in {spec!r}.{suggest(composite, core.COMPOSITES)} "
                f"Known: {list(core.COMPOSITES)} (write 'lrp:<composite>')."
            )
        return _Method(f"lrp:{composite}", f"LRP {composite}", "diverging",
                       lambda model, x, t: core.lrp(model, x, t, composite=composite, **kw), conserving=True)
    if spec == "attention_rollout":  # no target: the same map for every class (nx.attention_rollout)
        kw = {"progress": False, **kw}
        return _Method(spec, _TITLES[spec], "sequential",
                       lambda model, x, t: core.attention_rollout(model, x, **kw), conserving=False)
    if spec in ("gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "rde"):
        if spec == "rde":
            kw = {"steps": 150, "n_noise": 16, "fractions": 5, "n_eval": 8, "progress": False, **kw}
        fn = getattr(core, spec)
        unsigned = (spec == "gradient" and bool(kw.get("absolute", False))) or (
            spec == "smoothgrad" and bool(kw.get("magnitude", False))) or spec == "rde"
        title = "|gradient|" if spec == "gradient" and unsigned else _TITLES[spec]
        return _Method(spec, title, "sequential" if unsigned else "diverging",
                       lambda model, x, t: fn(model, x, t, **kw), conserving=spec in _CONSERVING)
    raise ValueError(
        f"Unknown method {spec!r}.{suggest(spec, [m for m in METHOD_NAMES if ':' not in m] + ['lrp:epsilon_plus_flat'])} "
        f"Known: {list(METHOD_NAMES)}, or pass a function (model, inputs, target) -> attribution."
    )


def _map(r: AttributionResult | torch.Tensor) -> torch.Tensor:
    return r.attribution if isinstance(r, AttributionResult) else r


def _as_plain(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


class ExplanationExplorer(RequestWidget):
    """Compare attribution methods on a few samples, interactively.

    Parameters
    ----------
    model
        A classifier returning ``(N, n_classes)`` scores, or a segmentation net returning class maps
        ``(N, C, H, W)``: a class is then explained as its map summed over the image (as ``target=`` in the
        methods), and the "predicted" class is the one with the largest summed map.
    inputs
        Images ``(N, C, H, W)`` or ``(N, H, W)`` in the model's input layout; flat inputs ``(N, D)`` with
        ``image_shape=(H, W)`` (or ``(C, H, W)``) for display. One tensor: a model with several inputs is
        refused (explain it with ``nx.gradient(model, (x, mask), target, wrt=0).attribution`` etc. and show the maps
        with :class:`~nbexplain.widgets.Heatmap`). All ``N`` are the pool; the first
        ``n_shown`` are explained up front, the view's "more samples" button adds the next ones.
    target
        The class explained per shown sample: ``None`` (the predicted class), an int, or one per sample.
    methods
        Method names — ``"gradient"``, ``"gradient_x_input"``, ``"smoothgrad"``,
        ``"integrated_gradients"``, ``"rde"``, ``"lrp:<composite>"`` (e.g. ``"lrp:epsilon_plus_flat"``),
        ``"attention_rollout"`` (a transformer's attention flow to its class token, :func:`nx.attention_rollout
        <nbexplain.core.attribution.rollout.attention_rollout>`: it has no target, so it shows the same map for
        every class) — and/or functions ``fn(model, inputs, target)`` returning an attribution result (any
        nbexplain method's, e.g. ``lambda m, x, t: nx.noise_tunnel(nx.integrated_gradients, m, x, t, n_samples=8)``)
        or a map (titled by their ``__name__``). A map may have the input's shape, one value per pixel
        ``(N, H, W)``, or one per patch of a vision transformer ``(N, rows, columns)`` when the patch grid
        divides the image: it is shown at image size, each patch's value over its pixels. Each map's
        conservation (``result.conservation``) is shown for gradient × input, integrated gradients and LRP,
        whose maps distribute the explained score.
    method_options
        Keyword arguments per method name, e.g. ``{"smoothgrad": {"n_samples": 20}, "rde": {"steps": 300}}``.
    classes
        Class labels (text) for the predicted/explained classes; default ``"0"``, ``"1"``, …
    n_shown
        Rows explained at start (capped by the pool size).
    add_step
        Rows the "more samples" button adds.
    continuity_shifts
        Pixel shifts of the continuity criterion computed per map (Montavon et al. 2018, horizontal
        translations); ``None`` skips it (each shift costs one more explanation per map).
    opacity
        Opacity of the maps over the input (0 shows only the input, 1 only the map). The default 1 shows the
        maps in exactly the colours of their colour bars, the input beside them in the first column and on
        each map as a thin dark outline; a lower opacity blends the input in (and shifts the colours).
    cell_size
        Width of each image in CSS pixels (times ``scale``; at least 9.5 em, so that the colour bar's labels fit).
        The cells of a row wrap onto more lines in a narrow column, alike in every row.
    max_cache
        At most this many (sample, target) entries are kept; the oldest entries not on screen go first.

    Notes
    -----
    Each map has its own colour scale, drawn under it with labelled ticks at nice values (0 among them): signed
    maps (LRP, gradient, gradient × input, …) use the diverging ColorBrewer RdBu map centred on zero (blue
    negative, white zero, red positive), unsigned ones (RDE mask, attention rollout, ``|gradient|``) the
    sequential viridis map from 0. Both are readable with the common colour-vision deficiencies, and white zero
    stays distinct from a dark theme's background. Under each map its scores are named ("conservation",
    "continuity"), and a legend under the rows says what they mean.

    Attributes
    ----------
    targets : list[int]
        The explained class per shown row (set it to explain other classes; the view sets it too). The
        constructor's ``target=`` sets it.
    n_shown : int
        Rows shown.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.zoo import cnn
    >>> from nbexplain.widgets import ExplanationExplorer
    >>> ex = ExplanationExplorer(cnn(), torch.rand(3, 1, 28, 28), methods=["gradient", "lrp:epsilon_plus_flat"])
    >>> ex
    ExplanationExplorer(samples=3/3, methods=['gradient', 'lrp:epsilon_plus_flat'], cached=3)
    >>> ex.targets = [1, 2, 3]   # explains these classes (kernel work); switching back is cached
    """

    _bundle = "explanation_explorer"
    _request_type = "request"

    images = TensorTrait("uint8", ndim=4)
    maps = TensorTrait("float32", ndim=4)
    entries = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    entry_meta = traitlets.List(traitlets.Dict()).tag(sync=True)
    methods = traitlets.List(traitlets.Dict()).tag(sync=True)
    targets = traitlets.List(traitlets.Int()).tag(sync=True)
    n_shown = traitlets.Int(0, min=0).tag(sync=True)
    n_pool = traitlets.Int(0, min=0).tag(sync=True)
    add_step = traitlets.Int(1, min=1).tag(sync=True)
    predicted = traitlets.List(traitlets.Int()).tag(sync=True)
    probability = traitlets.List(traitlets.Float()).tag(sync=True)
    classes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    opacity = traitlets.Float(1.0, min=0.0, max=1.0).tag(sync=True)
    cell_size = traitlets.Int(96, min=16, max=1024).tag(sync=True)
    source_shape = traitlets.List(traitlets.Int(), default_value=[0, 0]).tag(sync=True)
    continuity_shifts = traitlets.List(traitlets.Int()).tag(sync=True)

    @renamed_arguments(targets="target")
    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        target: int | Sequence[int] | torch.Tensor | None = None,
        methods: Sequence[str | Callable[..., Any]] = ("gradient", "smoothgrad", "integrated_gradients", "lrp:epsilon_plus_flat"),
        *,
        method_options: Mapping[str, Mapping[str, Any]] | None = None,
        classes: Sequence[str] | None = None,
        image_shape: Sequence[int] | None = None,
        n_shown: int = 4,
        add_step: int = 2,
        continuity_shifts: Sequence[int] | None = (-1, 0, 1),
        opacity: float = 1.0,
        cell_size: int = 96,
        max_cache: int = 64,
        **kwargs: Any,
    ) -> None:
        # hooks are needed by LRP only (checked once the methods are known): on a TorchScript model the
        # gradient family and RDE run
        self._model = check_model(model, hooks=False)
        if isinstance(inputs, (tuple, Mapping, core.Inputs)):
            raise TypeError(
                f"ExplanationExplorer shows one image input per sample and calls model(inputs); got "
                f"{type(inputs).__name__}, several inputs. For a model with several inputs compute the maps with "
                "the attribution functions, which explain one input with the others held fixed — e.g. "
                "maps = nx.gradient(model, (x, mask), target, wrt=0).attribution — and show them with "
                "nbexplain.widgets.Heatmap(maps, images=x)."
            )
        x = check_tensor(inputs, "inputs", min_ndim=2, dtype_kind="float", finite=True)
        if x.shape[0] == 0:
            raise ValueError("`inputs` is empty; pass at least one sample.")
        self._x = x.detach().cpu()
        self._display_shape = self._resolve_display_shape(self._x, image_shape)
        if isinstance(methods, (str, bytes)) or callable(methods):
            methods = [methods]  # one method given bare
        if not methods:
            raise ValueError("`methods` is empty; pass at least one, e.g. ['gradient', 'lrp:epsilon_plus_flat'].")
        options = dict(method_options or {})
        self._methods = [_build_method(m, options) for m in methods]
        keys = [m.key for m in self._methods]
        if len(set(keys)) != len(keys):
            raise ValueError(f"`methods` contains duplicates: {keys}.")
        hooked = [k for k in keys if k.startswith("lrp:")]
        if hooked:
            what = f"the method(s) {hooked} (leave them out of `methods` to keep the others)"
            require_hooks(self._model, "model", what)
        self._max_cache = check_positive_int(max_cache, "max_cache")
        shifts = None if continuity_shifts is None else [int(s) for s in continuity_shifts]
        if shifts is not None and len(shifts) < 2:
            raise ValueError("`continuity_shifts` needs at least two shifts (e.g. (-1, 0, 1)), or None to skip.")
        # cache: (sample, target) -> (maps (M, H, W) float32, meta dict)
        self._cache: dict[tuple[int, int], tuple[np.ndarray, dict[str, Any]]] = {}
        self._order: list[tuple[int, int]] = []

        with torch.no_grad(), preserved(self._model):
            self._model.eval()
            dev, dt = model_device(self._model), model_dtype(self._model)
            raw = torch.cat(
                [self._model(self._x[s : s + 256].to(dev, dt)).cpu() for s in range(0, self._x.shape[0], 256)]
            )
        if raw.ndim == 3:
            raise ValueError(
                f"ExplanationExplorer explains class scores (N, C) or dense class maps (N, C, H, W), but the model "
                f"returns a sequence {describe_axes(tuple(raw.shape))}, whose targets are (position, token) pairs; "
                "call the methods directly, e.g. nx.gradient(model, x, target=(-1, token))."
            )
        # The explained score of each class, as the methods read it: a dense map's class map summed.
        logits = raw.reshape(raw.shape[0], -1) if raw.ndim <= 2 else raw.reshape(raw.shape[0], raw.shape[1], -1).sum(2)
        self._n_classes = int(logits.shape[1])
        probs = torch.softmax(logits.to(torch.float64), dim=1)
        self._pred = logits.argmax(dim=1)
        self._prob = probs.gather(1, self._pred.view(-1, 1)).squeeze(1)
        if classes is None:
            labels = [str(i) for i in range(self._n_classes)]
        else:
            labels = [str(c) for c in classes]
            if len(labels) != self._n_classes:
                raise ValueError(f"`classes` has {len(labels)} labels but the model has {self._n_classes} outputs.")
        n0 = min(check_positive_int(n_shown, "n_shown"), self._x.shape[0])
        super().__init__(
            opacity=opacity, cell_size=cell_size, add_step=check_positive_int(add_step, "add_step"), **kwargs
        )
        with self.hold_sync():
            self.classes = labels
            self.continuity_shifts = shifts or []
            self.n_pool = int(self._x.shape[0])
            self.methods = [{"key": m.key, "title": m.title, "kind": m.kind} for m in self._methods]
            self.source_shape = [int(self._display_shape[-2]), int(self._display_shape[-1])]
        self._show(n0, self._targets_for(target, n0), force=True)
        self.observe(self._on_targets, "targets")

    # ---- inputs ----------------------------------------------------------------------------------
    @staticmethod
    def _resolve_display_shape(x: torch.Tensor, image_shape: Sequence[int] | None) -> tuple[int, ...]:
        if image_shape is not None:
            shape = tuple(int(s) for s in image_shape)
            if len(shape) not in (2, 3) or math.prod(shape) != math.prod(x.shape[1:]):
                raise ValueError(
                    f"`image_shape` {shape} must be (H, W) or (C, H, W) with as many values as one input "
                    f"{tuple(x.shape[1:])} ({math.prod(x.shape[1:])})."
                )
            return shape
        if x.ndim == 4 or x.ndim == 3:
            return tuple(x.shape[1:])
        raise ValueError(
            f"`inputs` of shape {tuple(x.shape)} are not images; pass (N, C, H, W) or (N, H, W), or give "
            "`image_shape=(H, W)` to display flat inputs."
        )

    def _to_image(self, t: torch.Tensor) -> torch.Tensor:
        """(n, *input) → (n, C, H, W) for display."""
        shape = self._display_shape
        t = t.reshape((t.shape[0],) + shape)
        return t.unsqueeze(1) if len(shape) == 2 else t

    def _image_maps(self, a: torch.Tensor, x: torch.Tensor, m: _Method) -> torch.Tensor:
        """A method's maps for the samples ``x`` as ``(n, H, W)`` at image size: maps of the input's shape are
        reduced over channels (relevance summed, unsigned maps averaged), ``(n, H, W)`` maps kept, and patch
        maps ``(n, rows, columns)`` upsampled over each patch's pixels."""
        a = a.detach().cpu().to(torch.float32)
        n = int(x.shape[0])
        if tuple(a.shape) == tuple(x.shape):
            img = self._to_image(a)
        else:
            shape = (n,) + (self._display_shape if len(self._display_shape) == 3 else (1, *self._display_shape))
            img = image_map(a, shape, argname=f"the map of method {m.key!r}")
            if img is None:
                h, w = shape[-2:]
                raise ValueError(
                    f"Method {m.key!r} returned maps of shape {tuple(a.shape)} for inputs {tuple(x.shape)}: a map must "
                    f"have the input's shape, one value per pixel ({n}, {h}, {w}), or one per patch ({n}, rows, "
                    f"columns) with rows dividing {h} and columns dividing {w}."
                )
        if img.ndim == 3:
            return img
        # relevance adds up over channels; unsigned maps (masks, magnitudes) are averaged
        return img.sum(dim=1) if m.kind == "diverging" else img.mean(dim=1)

    def _targets_for(self, target: Any, n: int) -> list[int]:
        if target is None:
            return [int(v) for v in self._pred[:n]]
        if isinstance(target, numbers.Integral) and not isinstance(target, bool):
            out = [int(target)] * n
        else:
            out = [int(v) for v in (target.tolist() if isinstance(target, torch.Tensor) else target)]
            if len(out) == self._x.shape[0] and n < len(out):
                out = out[:n]
            if len(out) != n:
                raise ValueError(f"`target` has {len(out)} entries for {n} shown samples; give one per sample or an int.")
        bad = [v for v in out if not 0 <= v < self._n_classes]
        if bad:
            raise ValueError(f"`target` contains {bad[0]}, outside [0, {self._n_classes - 1}] (the model's classes).")
        return out

    # ---- computation -----------------------------------------------------------------------------
    def _compute(self, pairs: list[tuple[int, int]]) -> bool:
        """Explain every missing (sample, target) pair with every method (batched per method).

        Returns whether anything was computed.
        """
        missing = [p for p in dict.fromkeys(pairs) if p not in self._cache]
        if not missing:
            return False
        idx = torch.tensor([p[0] for p in missing])
        tgt = torch.tensor([p[1] for p in missing], dtype=torch.long)
        x = self._x[idx]
        maps, cons, cont = [], [], []
        shifts = list(self.continuity_shifts)
        for m in self._methods:
            r = m.fn(self._model, x, tgt)
            img = self._image_maps(_map(r), x, m)
            maps.append(img)
            if m.conserving and isinstance(r, AttributionResult):
                cons.append(r.conservation.detach().cpu().to(torch.float64))
            else:
                cons.append(torch.full((len(missing),), float("nan"), dtype=torch.float64))
            if shifts:
                def explain(z: torch.Tensor, _m: _Method = m) -> AttributionResult | torch.Tensor:
                    return _m.fn(self._model, z, tgt)

                x_img = self._to_image(x)
                if tuple(_map(r).shape) != tuple(x.shape):  # one map per image (pixels or patches): (n, H, W)
                    def per_image(z: torch.Tensor, _m: _Method = m) -> torch.Tensor:
                        zx = z.reshape(x.shape)
                        return self._image_maps(_map(_m.fn(self._model, zx, tgt)), zx, _m)

                    res = core.continuity(per_image, x_img, shifts=shifts)
                elif x.ndim == x_img.ndim:
                    res = core.continuity(explain, x, shifts=shifts)
                else:
                    res = core.continuity(lambda z: _map(explain(z.reshape(x.shape))).reshape(z.shape), x_img,
                                          shifts=shifts)
                cont.append(res.score.to(torch.float64))
            else:
                cont.append(torch.full((len(missing),), float("nan"), dtype=torch.float64))
        stack = torch.stack(maps, dim=1).numpy()  # (K, M, H, W)
        for k, pair in enumerate(missing):
            per = stack[k]
            meta = {
                "vmax": [float(np.abs(per[j]).max()) for j in range(per.shape[0])],
                "vmin": [float(per[j].min()) for j in range(per.shape[0])],
                "conservation": [_as_plain(float(cons[j][k])) for j in range(len(self._methods))],
                "continuity": [_as_plain(float(cont[j][k])) for j in range(len(self._methods))],
            }
            self._cache[pair] = (per.astype(np.float32), meta)
            self._order.append(pair)
        return True

    def _evict(self, keep: set[tuple[int, int]]) -> None:
        while len(self._order) > self._max_cache:
            victim = next((p for p in self._order if p not in keep), None)
            if victim is None:
                break
            self._order.remove(victim)
            del self._cache[victim]

    def _publish(self) -> None:
        """Send the whole cache (downsampled to the byte budget) and the per-entry scores."""
        pairs = list(self._order)
        maps = np.stack([self._cache[p][0] for p in pairs])  # (K, M, H, W)
        k, m, hgt, wid = maps.shape
        small, _ = downsample_maps(maps.reshape(k * m, hgt, wid), _MAX_CACHE_BYTES)
        self.maps = small.reshape((k, m) + small.shape[1:])
        self.entries = [[int(a), int(b)] for a, b in pairs]
        self.entry_meta = [self._cache[p][1] for p in pairs]

    def _show(self, n: int, targets: list[int], force: bool = False) -> None:
        pairs = [(i, targets[i]) for i in range(n)]
        changed = self._compute(pairs)
        self._evict(set(pairs))
        with self.hold_sync():
            if changed or force:
                self._publish()
            if n != self.n_shown or force:
                imgs = self._to_image(self._x[:n])
                if imgs.shape[1] not in (1, 3):
                    imgs = imgs.mean(dim=1, keepdim=True)
                self.images = to_uint8_images(imgs)
                self.predicted = [int(v) for v in self._pred[:n]]
                self.probability = [float(v) for v in self._prob[:n]]
            self.n_shown = n
            self._setting_targets = True
            try:
                self.targets = list(targets)
            finally:
                self._setting_targets = False
            self.error = ""

    _setting_targets = False

    def _on_targets(self, change: dict) -> None:
        if self._setting_targets:
            return
        new = list(change["new"])
        try:
            self._show(self.n_shown, self._targets_for(new, self.n_shown))
        except Exception:
            self._setting_targets = True
            try:
                self.targets = list(change["old"])
            finally:
                self._setting_targets = False
            raise

    # ---- public API ------------------------------------------------------------------------------
    @renamed_arguments(targets="target")
    def explain(self, target: int | Sequence[int] | None = None, n_shown: int | None = None) -> None:
        """Show ``n_shown`` rows explaining ``target`` (``None``: keep the current classes; new rows
        explain their predicted class), computing only what is not cached."""
        n = self.n_shown if n_shown is None else min(check_positive_int(n_shown, "n_shown"), self._x.shape[0])
        if target is None:
            cur = list(self.targets)[:n]
            cur += [int(v) for v in self._pred[len(cur) : n]]
            t = cur
        else:
            t = self._targets_for(target, n)
        self._show(n, t)

    @renamed_arguments(x="inputs", targets="target")
    def add_samples(self, inputs: Any = None, target: int | Sequence[int] | None = None) -> None:
        """Add rows: the next ``add_step`` samples of the pool, or new ``inputs`` (appended to the pool).

        ``target``: classes for the new rows (default: their predicted class).
        """
        start = self.n_shown
        x = inputs
        if x is not None:
            xn = check_tensor(x, "inputs", dtype_kind="float", finite=True).detach().cpu()
            if tuple(xn.shape[1:]) != tuple(self._x.shape[1:]):
                raise ValueError(f"`inputs` must hold samples shaped {tuple(self._x.shape[1:])}, got {tuple(xn.shape)}.")
            with torch.no_grad(), preserved(self._model):
                self._model.eval()
                logits = self._model(xn.to(model_device(self._model), model_dtype(self._model))).reshape(xn.shape[0], -1).cpu()
            probs = torch.softmax(logits.to(torch.float64), dim=1)
            pred = logits.argmax(dim=1)
            # insert the new samples right after the shown rows
            self._x = torch.cat([self._x[:start], xn, self._x[start:]])
            self._pred = torch.cat([self._pred[:start], pred, self._pred[start:]])
            self._prob = torch.cat([self._prob[:start], probs.gather(1, pred.view(-1, 1)).squeeze(1), self._prob[start:]])
            # cached pairs beyond `start` refer to shifted indices: drop them
            for p in [p for p in self._order if p[0] >= start]:
                self._order.remove(p)
                del self._cache[p]
            self.n_pool = int(self._x.shape[0])
            k = xn.shape[0]
        else:
            k = min(self.add_step, self._x.shape[0] - start)
            if k <= 0:
                raise ValueError("Every sample of the pool is shown; pass new inputs: add_samples(inputs).")
        new_t = [int(v) for v in self._pred[start : start + k]] if target is None else self._targets_for(target, k)
        self._show(start + k, list(self.targets) + new_t, force=x is not None)

    def maps_for(self, sample: int, target: int | None = None) -> dict[str, np.ndarray]:
        """The full-resolution maps of a shown sample (current target by default), by method key."""
        t = self.targets[sample] if target is None else int(target)
        if (sample, t) not in self._cache:
            self._compute([(sample, t)])
            self._evict({(i, self.targets[i]) for i in range(self.n_shown)} | {(sample, t)})
            self._publish()
        maps, _ = self._cache[(sample, t)]
        return {m.key: maps[j] for j, m in enumerate(self._methods)}

    def scores_for(self, sample: int, target: int | None = None) -> dict[str, dict[str, float | None]]:
        """Conservation and continuity scores of a shown sample's maps, by method key."""
        t = self.targets[sample] if target is None else int(target)
        self.maps_for(sample, t)
        meta = self._cache[(sample, t)][1]
        return {
            m.key: {"conservation": meta["conservation"][j], "continuity": meta["continuity"][j]}
            for j, m in enumerate(self._methods)
        }

    # ---- view requests ---------------------------------------------------------------------------
    def _serve(self, content: dict[str, Any]) -> None:
        n = int(content.get("n_shown", self.n_shown))
        targets = [int(v) for v in content.get("targets", self.targets)]
        if n > self.n_shown:
            n = min(n, self._x.shape[0])
            targets = targets[: self.n_shown] + [int(v) for v in self._pred[self.n_shown : n]]
        self._show(n, self._targets_for(targets[:n], n))

    def _repr_fields(self) -> dict[str, Any]:
        return {
            "samples": f"{self.n_shown}/{self.n_pool}",
            "methods": [m.key for m in self._methods],
            "cached": len(self._order),
        }
