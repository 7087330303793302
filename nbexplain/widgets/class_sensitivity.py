"""``ClassSensitivity``: when does each layer come to carry each class? (SVCCA paper, §4.3)

A classes × layers heat grid of :class:`~nbexplain.ClassSensitivityResult` ``.values`` per checkpoint, with a
checkpoint slider and play button, the value printed in every cell, and a line chart of the clicked class
over the checkpoints (one line per layer) with each layer's learned-at checkpoint marked
(:meth:`~nbexplain.ClassSensitivityResult.learned_at`, computed in core). Every checkpoint is sent once; the
slider, play and the chart work in the page without the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import traitlets

from ..core.similarity.class_sensitivity import ClassSensitivityResult
from .base import NbxWidget
from .tensor import TensorTrait

__all__ = ["ClassSensitivity"]


class ClassSensitivity(NbxWidget):
    """Classes × layers grid of class sensitivity over checkpoints, and one class's curves.

    Parameters
    ----------
    result
        What :func:`nbexplain.class_sensitivity` returned.
    checkpoint
        Index of the checkpoint shown first (default: the last; negative indices count from the end).
    threshold
        The value a layer must reach and keep for a class to count as learned (marked in the chart).
    class_names
        Name of each class of the result, in ``result.classes`` order (default: the class indices).
    selected_class
        Position (in ``result.classes``) of the class whose curves are drawn first (default: none).
    cell_size
        Cell width in CSS pixels, times ``scale`` and shrunk to fit the notebook column (a value is printed
        inside its cell when it fits at the label size, ≥ 13 px; it is always in the readout and the cell's
        accessible name).
    interval_ms
        Time per checkpoint while playing.

    Attributes
    ----------
    selected_class : int
        The clicked class's position in ``result.classes`` (-1: none). Clicking a cell sets it.
    learned_at : list[list[int]]
        ``(n_layers, n_classes)`` first checkpoint from which the value stays ≥ ``threshold`` (-1: never);
        recomputed by core when ``threshold`` changes.

    Notes
    -----
    Colours: viridis, a sequential map over 0…1 (SVCCA is unsigned), perceptually uniform and readable with
    the common colour-vision deficiencies; the colour bar under the grid is the map drawn. The chart's lines
    use the Tableau 10 categories, and each is named in the legend. Keyboard: Tab reaches the grid (one tab
    stop), arrows move between cells, Enter or Space plots the cell's class; the slider moves with the arrows.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.widgets import ClassSensitivity
    >>> def mlp(seed):
    ...     torch.manual_seed(seed)
    ...     return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> inputs = torch.randn(500, 6, generator=torch.Generator().manual_seed(0))
    >>> res = nx.class_sensitivity([mlp(0), mlp(1)], inputs, ["0", "1"], keep=1.0, progress=False)
    >>> view = ClassSensitivity(res, threshold=0.99)
    >>> view
    ClassSensitivity(checkpoints=2, layers=2, classes=3, threshold=0.99)
    >>> view.learned_at[1]                 # the hidden layer determines the final logits only at the end
    [1, 1, 1]
    """

    _bundle = "class_sensitivity"

    values = TensorTrait("float32", ndim=3)
    defined = TensorTrait("uint8", ndim=3)
    checkpoint_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    layers = traitlets.List(traitlets.Unicode()).tag(sync=True)
    class_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    checkpoint = traitlets.Int(0, min=0).tag(sync=True)
    threshold = traitlets.Float(0.9).tag(sync=True)
    learned_at = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    selected_class = traitlets.Int(-1, min=-1).tag(sync=True)
    logits = traitlets.Unicode("final").tag(sync=True)
    cell_size = traitlets.Int(46, min=6, max=400).tag(sync=True)
    interval_ms = traitlets.Int(600, min=16, max=60_000).tag(sync=True)

    def __init__(
        self,
        result: ClassSensitivityResult,
        *,
        checkpoint: int = -1,
        threshold: float = 0.9,
        class_names: Sequence[str] | None = None,
        selected_class: int = -1,
        cell_size: int = 46,
        interval_ms: int = 600,
        **kwargs: Any,
    ) -> None:
        if not isinstance(result, ClassSensitivityResult):
            raise TypeError(f"`result` must be what nx.class_sensitivity(...) returned, got {type(result).__name__}.")
        vals = result.values.double().numpy()
        if vals.ndim != 3 or 0 in vals.shape:
            raise ValueError(f"`result.values` must be a non-empty (checkpoints, layers, classes) tensor, got {vals.shape}.")
        t_count, _, n_classes = vals.shape
        if isinstance(checkpoint, bool) or not isinstance(checkpoint, int) or not -t_count <= checkpoint < t_count:
            raise ValueError(f"`checkpoint` must index one of the {t_count} checkpoints, got {checkpoint!r}.")
        if class_names is None:
            names = [str(c) for c in result.classes]
        else:
            names = [str(s) for s in class_names]
            if len(names) != n_classes:
                raise ValueError(f"`class_names` has {len(names)} names for the result's {n_classes} classes.")
        if isinstance(selected_class, bool) or not isinstance(selected_class, int) or not -1 <= selected_class < n_classes:
            raise ValueError(f"`selected_class` must be -1 or a class position below {n_classes}, got {selected_class!r}.")
        super().__init__(cell_size=cell_size, interval_ms=interval_ms, **kwargs)
        self.result = result
        finite = np.isfinite(vals)
        with self.hold_sync():
            self.values = np.where(finite, vals, 0.0).astype(np.float32)
            self.defined = finite.astype(np.uint8)
            self.checkpoint_labels = [str(s) for s in result.checkpoint_labels]
            self.layers = [str(s) for s in result.layers]
            self.class_names = names
            self.logits = result.logits
            self.checkpoint = checkpoint % t_count
            self.threshold = threshold
            self.learned_at = self._learned(self.threshold)
            self.selected_class = selected_class

    @traitlets.validate("threshold")
    def _check_threshold(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0.0 < value <= 1.0:
            raise traitlets.TraitError(f"`threshold` must be in (0, 1] (a correlation), got {value}.")
        return value

    @traitlets.validate("checkpoint")
    def _check_checkpoint(self, proposal: Any) -> int:
        value = int(proposal["value"])
        t_count = len(self.checkpoint_labels) or None
        if t_count is not None and value >= t_count:
            raise traitlets.TraitError(f"`checkpoint` must be below {t_count} (the number of checkpoints), got {value}.")
        return value

    @traitlets.validate("selected_class")
    def _check_selected(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value >= len(self.class_names):
            raise traitlets.TraitError(f"`selected_class` must be -1 or below {len(self.class_names)}, got {value}.")
        return value

    @traitlets.observe("threshold")
    def _on_threshold(self, change: Any) -> None:
        if hasattr(self, "result"):
            self.learned_at = self._learned(change["new"])

    def _learned(self, threshold: float) -> list[list[int]]:
        return [[int(v) for v in row] for row in self.result.learned_at(threshold).tolist()]

    def selected_curves(self) -> dict[str, np.ndarray] | None:
        """The clicked class's value over the checkpoints, one float64 array per layer (``None``: none clicked)."""
        if self.selected_class < 0:
            return None
        vals = self.result.values.double().numpy()[:, :, self.selected_class]
        return {name: vals[:, i].copy() for i, name in enumerate(self.layers)}

    def _repr_fields(self) -> dict[str, Any]:
        t, n_l, n_c = self.result.values.shape
        return {"checkpoints": t, "layers": n_l, "classes": n_c, "threshold": self.threshold}
