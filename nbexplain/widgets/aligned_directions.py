"""``AlignedDirections``: the SVCCA paper's first figure — top neurons vs top SVCCA directions of two networks.

Two networks trained on the same task, one layer each, evaluated on the same inputs sorted by class. The
view shows the activation of their top neurons (by activation norm) side by side — which rarely correspond —
and then their top SVCCA directions side by side, which line up pair by pair (Raghu et al., NeurIPS 2017,
Fig. 1). Rows are neurons or directions, columns the inputs sorted by class (class boundaries marked and
labelled); hovering reads one value, clicking a direction overlays its two traces with their correlation ρ.

Every trace the view can show is sent once; the row-count slider only changes how many it paints. The
directions come from :func:`nbexplain.svcca_directions` (core); this module only sorts and slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import traitlets

from ..core._base.capturing import activations
from ..core.similarity.directions import SVCCADirectionsResult, svcca_directions
from .base import NbxWidget
from .tensor import TensorTrait, to_numpy

__all__ = ["AlignedDirections"]

#: Most rows of each kind the view can show (the slider's maximum).
MAX_ROWS = 16


def _features(value: Any, name: str) -> np.ndarray:
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise TypeError(f"`{name}` must be a (n_inputs, n_features) tensor or array, got {type(value).__name__}.")
    arr = to_numpy(value).astype(np.float64, copy=False)
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be (n_inputs, n_features) — one row per input, got shape {tuple(arr.shape)}; for a conv "
            "layer pool it first, e.g. nx.activations(model, inputs, layer, conv='mean')."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` has NaN or infinite values.")
    return arr


def _labels(value: Any, n: int) -> np.ndarray:
    arr = to_numpy(value)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"`labels` must be one class per input, shape ({n},), got shape {tuple(arr.shape)}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError("`labels` must be integer class labels (e.g. mnist.y_test), got non-integer values.")
    return arr.astype(np.int64)


class AlignedDirections(NbxWidget):
    """Top neurons and top SVCCA directions of two networks' layer over inputs sorted by class.

    Parameters
    ----------
    result
        What :func:`nbexplain.svcca_directions` returned for ``x`` and ``y``.
    x, y
        The ``(n_inputs, n_features)`` features the result was computed from (net A's and net B's layer, the
        same inputs in the same order) — the neuron rows are drawn from them.
    labels
        ``(n_inputs,)`` integer class of each input; the columns are sorted by it (stable).
    n
        Rows shown first (neurons and directions each); the view's slider changes it, up to
        ``min(16, width, k)``.
    names
        The two networks' names, e.g. ``("seed 0", "seed 1")``.
    layer
        The layer's name, shown in the title.
    class_names
        Name of each class (indexed by label), e.g. ``["zero", "one", ...]``; default: the label numbers.
    max_inputs
        At most this many columns are sent; more inputs are thinned evenly along the class-sorted order (each
        class keeps its share).
    strip_width, strip_height
        Size of each heat strip in CSS pixels.

    Attributes
    ----------
    selected : int
        The clicked direction (0-based; -1: none). Set it to overlay that direction's two traces.

    Notes
    -----
    Colours: neuron activations on the sequential viridis map, each row from its minimum to its maximum; SVCCA
    variates are signed, so each direction's row is on the diverging blue–white–red map (ColorBrewer RdBu)
    centred on 0 (white), up to that row's largest ``|value|``. Both maps are readable with the common
    colour-vision deficiencies, and each has its key above its strips. Keyboard: the direction labels are
    reachable by Tab and Enter / Space selects one (as a click does). ``scale`` enlarges text, rows and chart.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.widgets import AlignedDirections
    >>> g = torch.Generator().manual_seed(0)
    >>> labels = torch.arange(300) % 3
    >>> z = torch.randn(300, 3, generator=g, dtype=torch.float64) + labels[:, None]
    >>> x = z @ torch.randn(3, 12, generator=g, dtype=torch.float64)
    >>> y = z @ torch.randn(3, 9, generator=g, dtype=torch.float64)
    >>> view = AlignedDirections(nx.svcca_directions(x, y), x, y, labels, n=3, names=("A", "B"))
    >>> view
    AlignedDirections(inputs=300, classes=3, neurons=12/9, directions=3, n=3)
    >>> view.selected = 0
    >>> round(view.selected_correlation, 6)
    1.0
    """

    _bundle = "aligned_directions"

    neurons_a = TensorTrait("float32", ndim=2)
    neurons_b = TensorTrait("float32", ndim=2)
    directions_a = TensorTrait("float32", ndim=2)
    directions_b = TensorTrait("float32", ndim=2)
    neuron_ids_a = traitlets.List(traitlets.Int()).tag(sync=True)
    neuron_ids_b = traitlets.List(traitlets.Int()).tag(sync=True)
    coefficients = traitlets.List(traitlets.Float()).tag(sync=True)
    input_ids = traitlets.List(traitlets.Int()).tag(sync=True)
    column_classes = traitlets.List(traitlets.Int()).tag(sync=True)
    class_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    n = traitlets.Int(4, min=1).tag(sync=True)
    selected = traitlets.Int(-1, min=-1).tag(sync=True)
    strip_width = traitlets.Int(250, min=60, max=2000).tag(sync=True)
    strip_height = traitlets.Int(18, min=4, max=200).tag(sync=True)

    def __init__(
        self,
        result: SVCCADirectionsResult,
        x: Any,
        y: Any,
        labels: Any,
        *,
        n: int = 4,
        names: Sequence[str] = ("net A", "net B"),
        layer: str = "",
        class_names: Sequence[str] | None = None,
        max_inputs: int = 4000,
        strip_width: int = 250,
        strip_height: int = 18,
        **kwargs: Any,
    ) -> None:
        if not isinstance(result, SVCCADirectionsResult):
            raise TypeError(
                f"`result` must be what nx.svcca_directions(x, y) returned, got {type(result).__name__}; "
                "or build the view with AlignedDirections.from_models(model_a, model_b, inputs, labels, layer)."
            )
        xa, ya = _features(x, "x"), _features(y, "y")
        n_in = result.x_variates.shape[0]
        for arr, name, width in ((xa, "x", result.x_weights.shape[0]), (ya, "y", result.y_weights.shape[0])):
            if arr.shape != (n_in, width):
                raise ValueError(
                    f"`{name}` has shape {tuple(arr.shape)} but `result` was computed from ({n_in}, {width}) "
                    f"features: pass the same `{name}` you gave nx.svcca_directions."
                )
        lab = _labels(labels, n_in)
        if len(names) != 2 or not all(isinstance(s, str) for s in names):
            raise ValueError(f"`names` must be two strings (net A's and net B's name), got {names!r}.")
        if isinstance(max_inputs, bool) or not isinstance(max_inputs, int) or max_inputs < 2:
            raise ValueError(f"`max_inputs` must be an int ≥ 2, got {max_inputs!r}.")
        if n_in < 2:
            raise ValueError("`result` covers fewer than 2 inputs: nothing to draw.")
        if lab.min() < 0:
            raise ValueError(f"`labels` must be class indices ≥ 0, got {int(lab.min())}.")
        n_classes = int(lab.max()) + 1
        if class_names is None:
            cnames = [str(c) for c in range(n_classes)]
        else:
            cnames = [str(s) for s in class_names]
            if len(cnames) < n_classes:
                raise ValueError(f"`class_names` has {len(cnames)} names but `labels` goes up to {n_classes - 1}.")
        k = result.coefficients.numel()
        rows = max(1, min(MAX_ROWS, xa.shape[1], ya.shape[1], max(k, 1)))
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n:
            raise ValueError(f"`n` must be a positive int (rows of each kind), got {n!r}.")
        super().__init__(strip_width=strip_width, strip_height=strip_height, **kwargs)
        self.result = result
        order = np.argsort(lab, kind="stable")
        if order.size > max_inputs:
            order = order[np.linspace(0, order.size - 1, max_inputs).round().astype(np.int64)]
        # display prep: the top neurons of each side by activation norm over all inputs
        top_a = np.argsort(-np.linalg.norm(xa, axis=0), kind="stable")[:rows]
        top_b = np.argsort(-np.linalg.norm(ya, axis=0), kind="stable")[:rows]
        va = result.x_variates.double().numpy()[:, : min(rows, k)]
        vb = result.y_variates.double().numpy()[:, : min(rows, k)]
        with self.hold_sync():
            self.neurons_a = xa[order][:, top_a].T.astype(np.float32)
            self.neurons_b = ya[order][:, top_b].T.astype(np.float32)
            self.directions_a = va[order].T.astype(np.float32)
            self.directions_b = vb[order].T.astype(np.float32)
            self.neuron_ids_a = [int(i) for i in top_a]
            self.neuron_ids_b = [int(i) for i in top_b]
            self.coefficients = [float(c) for c in result.coefficients[: min(rows, k)]]
            self.input_ids = [int(i) for i in order]
            self.column_classes = [int(c) for c in lab[order]]
            self.class_names = cnames
            self.names = [str(s) for s in names]
            self.layer = str(layer)
            self.n = min(int(n), rows)

    @classmethod
    def from_models(
        cls,
        model_a: torch.nn.Module,
        model_b: torch.nn.Module,
        inputs: Any,
        labels: Any,
        layer: str,
        *,
        keep: float | int | tuple[float | int, float | int] = 0.99,
        epsilon: float = 0.0,
        conv: str = "mean",
        batch_size: int = 256,
        **kwargs: Any,
    ) -> AlignedDirections:
        """Run both models on ``inputs``, take ``layer`` (a conv layer is pooled by ``conv``), compute the
        SVCCA directions with :func:`nbexplain.svcca_directions` and show them (other keywords go to the view).
        """
        if not isinstance(layer, str):
            raise TypeError(f"`layer` must be one layer name (see nx.list_layers(model)), got {type(layer).__name__}.")
        xa = activations(model_a, inputs, [layer], conv=conv, batch_size=batch_size, dtype=torch.float64, progress=False)[layer]
        xb = activations(model_b, inputs, [layer], conv=conv, batch_size=batch_size, dtype=torch.float64, progress=False)[layer]
        if xa.shape[0] != xb.shape[0]:
            raise ValueError(f"the two models give {xa.shape[0]} and {xb.shape[0]} rows for the same `inputs`.")
        res = svcca_directions(xa, xb, keep=keep, epsilon=epsilon)
        kwargs.setdefault("layer", layer)
        return cls(res, xa, xb, labels, **kwargs)

    @traitlets.validate("n")
    def _check_n(self, proposal: Any) -> int:
        value = int(proposal["value"])
        rows = self.neurons_a.shape[0] if self.neurons_a.ndim == 2 else MAX_ROWS
        if rows and value > rows:
            raise traitlets.TraitError(f"`n` must be between 1 and {rows} (the rows sent), got {value}.")
        return value

    @traitlets.validate("selected")
    def _check_selected(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value >= len(self.coefficients):
            raise traitlets.TraitError(
                f"`selected` must be -1 or a direction index below {len(self.coefficients)}, got {value}."
            )
        return value

    @property
    def selected_correlation(self) -> float | None:
        """ρ of the clicked direction pair (``None``: none clicked)."""
        if self.selected < 0:
            return None
        return float(self.result.coefficients[self.selected])

    def selected_traces(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The clicked direction's two traces over the inputs in the view's (class-sorted) order."""
        if self.selected < 0:
            return None
        return self.directions_a[self.selected].astype(np.float64), self.directions_b[self.selected].astype(np.float64)

    def _repr_fields(self) -> dict[str, Any]:
        return {
            "inputs": len(self.input_ids),
            "classes": len(set(self.column_classes)),
            "neurons": f"{self.result.x_weights.shape[0]}/{self.result.y_weights.shape[0]}",
            "directions": int(self.result.coefficients.numel()),
            "n": self.n,
        }
