"""``FeatureGallery``: what each unit of a layer responds to — synthetic images beside real examples.

The gallery calls :func:`nbexplain.maximize_activation` for the shown units (one batch) and
:func:`nbexplain.top_activating` on the given data, and sends the view: the optimised images, each
unit's objective curve and percentile, and for every unit its top real examples with its activation map
over each. Clicking a unit switches the detail panel in the browser (no kernel work); the controls for
steps, regularisation strength and parameterisation ask the kernel to re-run the optimisation (the view
shows it is busy, and only the latest request is run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from ..core._base.model_inputs import Inputs, as_inputs, resolve_wrt
from ..core._base.validation import check_choice, check_model, check_positive_int, renamed_arguments
from ..core.actmax import (
    ActivationMaximizationResult,
    TopActivatingResult,
    layer_units,
    maximize_activation,
    top_activating,
)
from ..core.actmax.image_param import PARAMETERIZATIONS
from .base import RequestWidget
from .tensor import DEFAULT_MAX_BYTES, TensorTrait, downsample_images, downsample_maps, to_uint8_images

__all__ = ["FeatureGallery", "regularization_weights"]

#: Longest objective curve sent to the view (longer trajectories are averaged down).
MAX_CURVE_POINTS = 128


def regularization_weights(strength: float) -> dict[str, float]:
    """The penalty weights behind the gallery's single "regularisation" control.

    ``strength`` in [0, 1] sets total variation to ``4·s`` and L2 (around the middle of the range) to
    ``s``; transformation robustness is always on.

    Examples
    --------
    >>> regularization_weights(0.5)
    {'tv': 2.0, 'l2': 0.5}
    """
    s = float(strength)
    if not 0.0 <= s <= 1.0 or math.isnan(s):
        raise ValueError(f"`regularization` must lie in [0, 1], got {strength!r}.")
    return {"tv": 4.0 * s, "l2": s}


def _curves(trajectory: torch.Tensor) -> np.ndarray:
    """``(steps, B)`` → ``(B, ≤ MAX_CURVE_POINTS)`` by averaging consecutive steps."""
    t = trajectory.detach().to(torch.float32).T.contiguous()  # (B, steps)
    steps = t.shape[1]
    if steps > MAX_CURVE_POINTS:
        factor = math.ceil(steps / MAX_CURVE_POINTS)
        t = torch.nn.functional.avg_pool1d(t[:, None], factor, factor, ceil_mode=True)[:, 0]
    return np.nan_to_num(t.numpy(), nan=0.0, posinf=0.0, neginf=0.0)


class FeatureGallery(RequestWidget):
    """A grid of units with their optimised images, objective sparklines and percentiles; click a unit to
    see its top-activating real examples and its activation map over them.

    Parameters
    ----------
    model
        Any ``torch.nn.Module`` (left exactly as found).
    inputs
        Real inputs ``(N, *input_shape)``: scores the percentiles and supplies the top examples.
        ``None``: the gallery shows only synthetic images (``input_shape`` is then needed). For a model with
        several inputs, one
        batch of all of them: a tuple (positional), a dict (keyword) or ``nx.Inputs``; the images shown are
        of the optimised input (``maximize_kwargs["wrt"]``, by default the first), and the other inputs
        held fixed during the optimisation go in ``maximize_kwargs["inputs"]`` (see
        :func:`nbexplain.maximize_activation`).
    layer
        The layer whose units are shown (see :func:`nbexplain.list_layers`).
    unit
        Unit/channel/class indices to show; ``None`` (default) shows the first ``max_units`` of the layer.
    input_shape
        One input's shape; defaults to ``inputs.shape[1:]`` (of the optimised input).
    value_range
        The data's value range; defaults to ``(inputs.min(), inputs.max())`` (of the optimised input) when
        ``inputs`` is given.
    objective
        As in :func:`nbexplain.maximize_activation` (``"auto"``, ``"channel"``, ``"neuron"``,
        ``"logit"``, ``"logit_minus_others"``).
    steps, regularization, param
        Optimisation settings (also controls in the view): ``regularization`` in [0, 1] scales the TV
        and L2 penalties (:func:`regularization_weights`); ``param`` is ``"fourier"`` or ``"pixel"``.
    k
        Top examples per unit.
    titles
        One label per unit (e.g. class names); default ``"unit i"`` / the class index.
    seed
        Seed of every optimisation (re-runs with the same settings reproduce the same images).
    max_units
        Upper bound on the number of units shown.
    cell_size
        Width of each unit's image in CSS pixels.
    maximize_kwargs
        Further keyword arguments for :func:`nbexplain.maximize_activation` (``lr``, ``transforms``,
        ``diversity``, …).

    Attributes
    ----------
    result : ActivationMaximizationResult
        The latest optimisation.
    top : TopActivatingResult or None
        The top real examples (computed once).
    selected : int
        Index of the clicked unit (``-1``: none). Observable.
    runs : int
        How many optimisations have run (the initial one included).

    Notes
    -----
    Under each unit the view writes its final objective and its percentile in words ("percentile 100"); each
    top example is labelled "sample #i · activation v". The unit's activation map is drawn over each example
    opaque by default (so its colours are exactly those of the colour bar) with the example as a thin outline
    on top; a slider blends the example back in. Maps with no negative value use the sequential viridis map
    from 0, signed maps the diverging blue–white–red map (ColorBrewer RdBu) centred on 0; both are readable
    with red–green colour-vision deficiency, and the colour bar ends on nice values with 0 among its ticks.

    Examples
    --------
    >>> import torch
    >>> from nbexplain import zoo
    >>> from nbexplain.widgets import FeatureGallery
    >>> g = FeatureGallery(zoo.cnn(), torch.rand(16, 1, 28, 28), "conv1", [0, 1], steps=4, progress=False)
    >>> g
    FeatureGallery(layer=conv1, units=2, steps=4, param=fourier)
    """

    _bundle = "feature_gallery"
    _request_type = "rerun"

    images = TensorTrait("uint8", ndim=4)  # (U, H, W, C)
    curves = TensorTrait("float32", ndim=2)  # (U, points)
    percentiles = traitlets.List(traitlets.Float(allow_none=True)).tag(sync=True)
    finals = traitlets.List(traitlets.Float()).tag(sync=True)
    titles = traitlets.List(traitlets.Unicode()).tag(sync=True)
    units = traitlets.List(traitlets.Int()).tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    objective = traitlets.Unicode("").tag(sync=True)
    k = traitlets.Int(0).tag(sync=True)
    top_images = TensorTrait("uint8", ndim=4)  # (U·k, H, W, C)
    top_maps = TensorTrait("float32", ndim=3)  # (U·k, h, w), one sequential scale per unit
    top_values = TensorTrait("float32", ndim=1)  # (U·k,)
    top_indices = traitlets.List(traitlets.Int()).tag(sync=True)
    selected = traitlets.Int(-1, min=-1).tag(sync=True)
    steps = traitlets.Int(128, min=1, max=100_000).tag(sync=True)
    regularization = traitlets.Float(0.0, min=0.0, max=1.0).tag(sync=True)
    param = traitlets.Enum(list(PARAMETERIZATIONS), default_value="fourier").tag(sync=True)
    runs = traitlets.Int(0).tag(sync=True)
    cell_size = traitlets.Int(96, min=16, max=1024).tag(sync=True)
    columns = traitlets.Int(0, min=0).tag(sync=True)

    @renamed_arguments(data="inputs", x="inputs", units="unit")
    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        layer: str,
        unit: int | Sequence[int] | None = None,
        *,
        input_shape: Sequence[int] | None = None,
        value_range: Sequence[float] | None = None,
        objective: str = "auto",
        steps: int = 128,
        regularization: float = 0.0,
        param: str = "fourier",
        k: int = 6,
        titles: Sequence[str] | None = None,
        seed: int = 0,
        max_units: int = 64,
        cell_size: int = 96,
        columns: int = 0,
        progress: bool | None = None,
        maximize_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        model = check_model(model, what="nx.widgets.FeatureGallery")
        if isinstance(inputs, str):
            raise TypeError(
                f"FeatureGallery(): the second argument is `inputs` (real examples, or None), got the string "
                f"{inputs!r}; the order is FeatureGallery(model, inputs, layer, unit=None, *, ...)."
            )
        data = inputs
        if not isinstance(layer, str):
            raise TypeError(f"`layer` must be a layer name (str), got {layer!r}.")
        steps = check_positive_int(steps, "steps")
        k = check_positive_int(k, "k")
        max_units = check_positive_int(max_units, "max_units")
        check_choice(param, "param", PARAMETERIZATIONS)
        regularization_weights(regularization)
        super().__init__(steps=steps, regularization=float(regularization), param=param, cell_size=cell_size,
                         columns=columns, **kwargs)
        self._model = model
        self._extra = dict(maximize_kwargs or {})
        self._wrt = self._extra.get("wrt")
        self._data: Any = None
        shown = None  # the optimised input of `data`
        if data is not None:
            if isinstance(data, (tuple, Mapping, Inputs)):
                data = as_inputs(data, "inputs")
                shown = data[resolve_wrt(data, self._wrt)]
            else:
                if not isinstance(data, torch.Tensor):
                    data = torch.as_tensor(np.asarray(data))
                shown = data
            if shown.ndim < 2 or shown.shape[0] == 0:
                raise ValueError(f"`inputs` must be a non-empty batch (N, …), got shape {tuple(shown.shape)}.")
            self._data = data
        if input_shape is None:
            if shown is None:
                raise ValueError("Pass `input_shape` (one input's shape), or `inputs` to read it from.")
            input_shape = tuple(shown.shape[1:])
        self._input_shape = tuple(int(s) for s in input_shape)
        if value_range is None and shown is not None:
            lo, hi = float(shown.min()), float(shown.max())
            value_range = (lo, hi) if hi > lo else None
        self._value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self._objective = objective
        self._seed = seed
        self._progress = progress
        for bad in ("steps", "seed", "param", "l2", "tv", "objective", "reference", "progress"):
            if bad in self._extra:
                raise TypeError(f"`maximize_kwargs` must not contain {bad!r}; it is an argument of FeatureGallery.")
        self._max_units = max_units
        # one index or several (a list, range, tensor or array), as in maximize_activation
        self._requested_units = None if unit is None else [int(u) for u in torch.as_tensor(unit).reshape(-1).tolist()]
        self._titles = None if titles is None else [str(t) for t in titles]
        self.result: ActivationMaximizationResult | None = None
        self.top: TopActivatingResult | None = None
        self.layer = layer
        self.k = k
        self.rerun()
        self._compute_top()

    # --- computations -------------------------------------------------------------------------------
    def _units_arg(self) -> list[int] | None:
        if self._requested_units is not None:
            if len(self._requested_units) > self._max_units:
                raise ValueError(
                    f"{len(self._requested_units)} units requested but max_units={self._max_units}; "
                    "show fewer units or raise max_units."
                )
            return self._requested_units
        return None

    def rerun(self, steps: int | None = None, regularization: float | None = None, param: str | None = None) -> ActivationMaximizationResult:
        """Run the optimisation again (optionally with new settings) and update the view.

        Called by the view's controls; also usable from Python.
        """
        steps = self.steps if steps is None else check_positive_int(steps, "steps")
        regularization = self.regularization if regularization is None else float(regularization)
        weights = regularization_weights(regularization)
        param = self.param if param is None else check_choice(param, "param", PARAMETERIZATIONS)
        units = self._units_arg()
        if units is None:
            # every unit, capped at max_units: resolve the count with a zero-step probe of the core
            all_units = layer_units(self._model, self.layer, self._input_shape,
                                    inputs=self._extra.get("inputs"), wrt=self._wrt)
            units = all_units[: self._max_units]
        ref = None
        if self._data is not None:
            ref = self._data
        res = maximize_activation(
            self._model, self.layer, units, self._input_shape, self._value_range,
            steps=steps, seed=self._seed, objective=self._objective, param=param, reference=ref,
            progress=self._progress, tv=weights["tv"], l2=weights["l2"], **self._extra,
        )
        self.result = res
        shown_units = res.units or units
        titles = self._titles
        if titles is None:
            titles = [f"unit {u}" for u in shown_units]
        elif len(titles) != len(shown_units):
            if len(titles) > max(shown_units):
                titles = [titles[u] for u in shown_units]  # class names indexed by unit
            else:
                raise ValueError(f"`titles` has {len(titles)} entries for {len(shown_units)} units.")
        with self.hold_sync():
            self.images = self._to_images(res.images)
            self.curves = _curves(res.trajectory)
            pcts: list[float | None] = [None if math.isnan(p) else round(float(p), 2) for p in res.percentile.tolist()]
            self.percentiles = pcts
            self.finals = [float(v) for v in res.final.tolist()]
            self.units = [int(u) for u in shown_units]
            self.titles = list(titles)
            self.objective = res.objective
            self.steps, self.regularization, self.param = steps, regularization, param
            self.runs = self.runs + 1
            self.error = ""
        return res

    def _to_images(self, images: torch.Tensor) -> np.ndarray:
        x = images
        if x.ndim == 2:  # vectors: show them as square-ish images when possible
            n, d = x.shape
            side = int(math.isqrt(d))
            x = x.reshape(n, 1, side, side) if side * side == d else x.reshape(n, 1, 1, d)
        elif x.ndim == 4 and x.shape[1] not in (1, 3):
            x = x.mean(dim=1, keepdim=True)
        img = to_uint8_images(x, value_range=self._value_range)
        return downsample_images(img, DEFAULT_MAX_BYTES)

    def _compute_top(self) -> None:
        if self._data is None:
            return
        units = self.units
        top = top_activating(self._model, self._data, self.layer, units, k=self.k,
                             objective="auto" if self._objective == "direction" else self._objective,
                             progress=self._progress, wrt=self._wrt)
        self.top = top
        u, kk = top.indices.shape
        imgs = top.images.reshape(u * kk, *top.images.shape[2:])
        maps = np.zeros((0,), np.float32)
        if top.maps is not None:
            maps, _ = downsample_maps(top.maps.reshape(u * kk, *top.maps.shape[2:]).numpy(), DEFAULT_MAX_BYTES // 2)
        with self.hold_sync():
            self.top_images = self._to_images(imgs)
            self.top_maps = maps
            self.top_values = top.values.reshape(-1).numpy()
            self.top_indices = [int(i) for i in top.indices.reshape(-1).tolist()]
            self.k = kk

    # --- the view's requests --------------------------------------------------------------------------
    def _serve(self, content: dict[str, Any]) -> None:
        self.rerun(
            steps=int(content.get("steps", self.steps)),
            regularization=float(content.get("regularization", self.regularization)),
            param=str(content.get("param", self.param)),
        )

    @property
    def selected_top(self) -> dict[str, Any] | None:
        """The clicked unit's top examples: ``{"unit", "indices", "values", "images", "maps"}`` or ``None``."""
        if self.selected < 0 or self.top is None:
            return None
        i = self.selected
        return {
            "unit": self.top.units[i],
            "indices": self.top.indices[i],
            "values": self.top.values[i],
            "images": self.top.images[i],
            "maps": None if self.top.maps is None else self.top.maps[i],
        }

    def _repr_fields(self) -> dict[str, Any]:
        return {"layer": self.layer, "units": len(self.units), "steps": self.steps, "param": self.param}
