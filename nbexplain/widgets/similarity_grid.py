"""``SimilarityGrid``: layer × layer similarity over training checkpoints (or between two models).

Every checkpoint's grid for every metric the result holds is sent to the view once, as one binary
tensor; the checkpoint slider, the play button and the metric switch only change which slice the view
paints, so they work within a frame and without a kernel (also in an exported page). Clicking a cell
sends ``selected = [checkpoint, row, column]`` back to Python, which updates the companion bqplot chart
with that pair's canonical-correlation spectrum. While a cell is selected, the selection follows the
checkpoint (slider, play, ``g.checkpoint = t``) and the metric menu, so the chart always shows what the grid
shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import traitlets

from ..core._base.validation import check_choice
from ..core.similarity.grids import SimilarityGridResult
from .base import NbxWidget
from .tensor import TensorTrait

__all__ = ["SimilarityGrid"]

_TITLE_PX = 14
_CHART_MIN_WIDTH = 380

_METRIC_NAMES = {
    "svcca": "SVCCA",
    "cca": "CCA",
    "pwcca": "PWCCA",
    "cka": "linear CKA",
    "cka_debiased": "debiased CKA",
    "cka_rbf": "RBF CKA",
}


class SimilarityGrid(NbxWidget):
    """Heatmap of a :class:`~nbexplain.SimilarityGridResult`, animated over checkpoints.

    Parameters
    ----------
    result
        What :func:`nbexplain.similarity_grid` or :func:`nbexplain.model_similarity` returned.
    metric
        The metric shown first (default: the result's first). Every metric of the result is sent, and
        the view's metric menu switches between them without the kernel.
    checkpoint
        Index of the checkpoint shown first (default: the last; negative indices count from the end).
    vmin, vmax
        Colour limits (default 0 and 1; ``vmin`` drops below 0 when a debiased CKA value is negative).
    cell_size
        Cell width in CSS pixels (times ``scale``; cells shrink so that the grid fits the notebook column).
    show_values
        Print each cell's value inside it (default: when cells are at least 34 px wide); a value is printed
        only when it fits the cell at the label size (≥ 13 px), and is always in the readout and the cell's
        accessible name.

    Notes
    -----
    Colours: viridis, a sequential map (similarity is a size, not a signed quantity) from ``vmin`` to ``vmax``,
    perceptually uniform and readable with the common colour-vision deficiencies; the colour bar under the grid
    is the map drawn. Keyboard: Tab reaches the grid (one tab stop), the arrow keys move between cells, Enter or
    Space selects; the checkpoint slider moves with the arrow keys.
    interval_ms
        Time per checkpoint while playing.

    Attributes
    ----------
    selected : list[int]
        ``[checkpoint, row, column]`` of the clicked cell (``[]``: none). Observe it with
        ``g.observe(fn, "selected")``. Once a cell is selected, moving to another checkpoint moves the
        selection with it (same row and column), so the chart follows the grid.
    checkpoint : int
        The checkpoint shown. The slider changes it in the view only; Python learns the current value
        with the next click (so moving the slider costs no kernel message).
    metric : str
        The metric shown (same syncing as ``checkpoint``).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> from nbexplain.widgets import SimilarityGrid
    >>> res = nx.similarity_grid([mlp(20, (16, 8), seed=s) for s in range(3)], torch.randn(200, 20),
    ...                          ["fc1", "fc2", "out"], metric=["svcca", "cka"], progress=False)
    >>> g = SimilarityGrid(res)
    >>> g
    SimilarityGrid(checkpoints=3, layers=3×3, metrics=['svcca', 'cka'], metric=svcca)
    >>> g.selected = [2, 0, 1]
    >>> round(g.selected_value, 4) == round(res.grids["svcca"][2, 0, 1].item(), 4)
    True
    """

    _bundle = "similarity_grid"

    grids = TensorTrait("float32", ndim=4)
    defined = TensorTrait("uint8", ndim=4)
    metrics = traitlets.List(traitlets.Unicode()).tag(sync=True)
    metric_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    metric = traitlets.Unicode("").tag(sync=True)
    checkpoint_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    row_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    col_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    row_title = traitlets.Unicode("").tag(sync=True)
    col_title = traitlets.Unicode("").tag(sync=True)
    checkpoint = traitlets.Int(0, min=0).tag(sync=True)
    selected = traitlets.List(traitlets.Int()).tag(sync=True)
    vmin = traitlets.Float(0.0).tag(sync=True)
    vmax = traitlets.Float(1.0).tag(sync=True)
    cell_size = traitlets.Int(28, min=6, max=400).tag(sync=True)
    show_values = traitlets.Bool(False).tag(sync=True)
    interval_ms = traitlets.Int(600, min=16, max=60_000).tag(sync=True)

    def __init__(
        self,
        result: SimilarityGridResult,
        *,
        metric: str | None = None,
        checkpoint: int = -1,
        vmin: float | None = None,
        vmax: float | None = None,
        cell_size: int = 28,
        show_values: bool | None = None,
        interval_ms: int = 600,
        **kwargs: Any,
    ) -> None:
        if not isinstance(result, SimilarityGridResult):
            raise TypeError(
                "`result` must be what nx.similarity_grid(...) or nx.model_similarity(...) returned, got "
                f"{type(result).__name__}. For a bare (T, L, L) tensor use SimilarityGrid.from_tensor(...)."
            )
        super().__init__(cell_size=cell_size, interval_ms=interval_ms, **kwargs)
        self.result = result
        self._chart: Any = None
        stack = torch.stack([result.grids[m].to(torch.float64) for m in result.metrics]).numpy()
        finite = np.isfinite(stack)
        t_count = stack.shape[1]
        if not -t_count <= int(checkpoint) < t_count:
            raise ValueError(f"`checkpoint` must index one of the {t_count} checkpoints, got {checkpoint}.")
        first = result.metric if metric is None else check_choice(metric, "metric", result.metrics)
        lo = 0.0 if vmin is None else float(vmin)
        if vmin is None and finite.any():
            lo = min(0.0, float(np.floor(stack[finite].min() * 10) / 10))
        hi = 1.0 if vmax is None else float(vmax)
        if hi <= lo:
            raise ValueError(f"`vmin` ({lo}) must be below `vmax` ({hi}).")
        if show_values is None:
            show_values = cell_size >= 34
        if result.kind == "models":
            row_title = f"layers of {result.checkpoint_labels[0]}"
            col_title = f"layers of {result.reference_label}"
        else:
            row_title = "layer at checkpoint"
            col_title = f"layer at {result.reference_label}"
        with self.hold_sync():
            self.grids = np.where(finite, stack, 0.0).astype(np.float32)
            self.defined = finite.astype(np.uint8)
            self.metrics = list(result.metrics)
            self.metric_names = [_METRIC_NAMES.get(m, m) for m in result.metrics]
            self.metric = first
            self.checkpoint_labels = list(result.checkpoint_labels)
            self.row_labels = list(result.layers)
            self.col_labels = list(result.reference_layers)
            self.row_title, self.col_title = row_title, col_title
            self.checkpoint = int(checkpoint) % t_count
            self.vmin, self.vmax = lo, hi
            self.show_values = bool(show_values)
        self.observe(self._on_selection, names=["selected", "metric"])
        self.observe(self._follow_checkpoint, names=["checkpoint"])

    @classmethod
    def from_tensor(
        cls,
        grid: Any,
        layers: Sequence[str],
        reference_layers: Sequence[str] | None = None,
        checkpoint_labels: Sequence[str] | None = None,
        metric: str = "similarity",
        **kwargs: Any,
    ) -> SimilarityGrid:
        """Show a precomputed ``(T, L, L_ref)`` (or ``(L, L_ref)``) tensor with labels."""
        g = torch.as_tensor(grid, dtype=torch.float64)
        if g.ndim == 2:
            g = g[None]
        if g.ndim != 3:
            raise ValueError(f"`grid` must be (T, L, L_ref) or (L, L_ref), got shape {tuple(g.shape)}.")
        ref = list(reference_layers) if reference_layers is not None else list(layers)
        if g.shape[1] != len(layers) or g.shape[2] != len(ref):
            raise ValueError(
                f"`grid` has shape {tuple(g.shape)} but there are {len(layers)} row and {len(ref)} column labels."
            )
        labels = list(checkpoint_labels) if checkpoint_labels is not None else [str(i) for i in range(g.shape[0])]
        if len(labels) != g.shape[0]:
            raise ValueError(f"`checkpoint_labels` has {len(labels)} entries for {g.shape[0]} checkpoints.")
        res = SimilarityGridResult(
            grids={metric: g},
            spectra={},
            checkpoint_labels=[str(s) for s in labels],
            layers=[str(s) for s in layers],
            reference_layers=[str(s) for s in ref],
            reference_label=str(labels[-1]),
            kind="checkpoints",
            n_samples=torch.zeros(g.shape[1], g.shape[2], dtype=torch.int64),
        )
        return cls(res, **kwargs)

    # ------------------------------------------------------------------------------------- selection
    @property
    def selected_value(self) -> float | None:
        """The value of the clicked cell under the current metric (``None``: nothing selected)."""
        if len(self.selected) != 3:
            return None
        t, i, j = self.selected
        return float(self.result.grids[self.metric][t, i, j])

    @property
    def selected_pair(self) -> tuple[str, str, str] | None:
        """``(checkpoint label, row layer, column layer)`` of the clicked cell."""
        if len(self.selected) != 3:
            return None
        t, i, j = self.selected
        return (self.checkpoint_labels[t], self.row_labels[i], self.col_labels[j])

    def selected_spectrum(self) -> torch.Tensor | None:
        """Canonical correlations of the clicked pair under the shown metric.

        ``None`` when nothing is selected or the shown metric (a CKA) has no canonical correlations; ask
        ``g.result.spectrum(t, i, j, "svcca")`` for another metric's spectrum.
        """
        if len(self.selected) != 3 or self.metric not in self.result.spectra:
            return None
        t, i, j = self.selected
        return self.result.spectrum(t, i, j, self.metric)

    @traitlets.validate("selected")
    def _check_selected(self, proposal: Any) -> list[int]:
        sel = list(proposal["value"])
        if not sel:
            return sel
        shape = tuple(self.result.grid.shape)
        if len(sel) != 3 or any(not 0 <= v < n for v, n in zip(sel, shape, strict=True)):
            raise traitlets.TraitError(f"`selected` must be [] or [checkpoint, row, column] within {shape}, got {sel}.")
        return sel

    # ------------------------------------------------------------------------------------- companion
    @property
    def spectrum_chart(self) -> Any:
        """A bqplot figure of the selected pair's canonical correlations, updated on every click."""
        if self._chart is None:
            self._chart = self._make_chart()
            self._update_chart()
        return self._chart

    def dashboard(self) -> Any:
        """The grid and its spectrum chart side by side (an ``ipywidgets.HBox``)."""
        import ipywidgets

        return ipywidgets.HBox([self, self.spectrum_chart])

    def _make_chart(self) -> Any:
        import bqplot as bq

        x = bq.LinearScale(min=0.0)
        y = bq.LinearScale(min=0.0, max=1.0)
        bars = bq.Bars(x=np.zeros(0), y=np.zeros(0), scales={"x": x, "y": y}, colors=["#1976d2"], padding=0.1)
        # The mean line is named in the y-axis label, not in a legend: bqplot draws legends inside the plot
        # area, on top of the bars.
        mean = bq.Lines(x=np.zeros(0), y=np.zeros(0), scales={"x": x, "y": y}, colors=["#f57c00"],
                        line_style="dashed", labels=["mean ρ"], display_legend=False)
        ax_x = bq.Axis(scale=x, label="canonical direction (descending)")
        ax_y = bq.Axis(scale=y, orientation="vertical", label="correlation ρ", tick_format=".1f")
        fig = bq.Figure(marks=[bars, mean], axes=[ax_x, ax_y], title="click a cell",
                        title_style={"font-size": f"{_TITLE_PX}px"},
                        layout={"width": f"{_CHART_MIN_WIDTH}px", "height": "300px"},
                        fig_margin=dict(top=40, bottom=45, left=60, right=15))
        fig._nbx_bars, fig._nbx_mean, fig._nbx_yaxis = bars, mean, ax_y
        return fig

    @staticmethod
    def _fit_title(fig: Any, title: str) -> None:
        """Set the title and widen the figure so that it is never clipped (bqplot titles do not wrap)."""
        fig.title = title
        # A generous upper bound of a 14 px sans-serif glyph's advance (wide glyphs such as "W" are ~0.9 em).
        need = int(np.ceil(len(title) * _TITLE_PX * 0.62)) + 40
        width = f"{max(_CHART_MIN_WIDTH, need)}px"
        # bqplot lets a flex container shrink a figure below its width: pin both.
        fig.layout.width = fig.layout.min_width = width

    def _update_chart(self) -> None:
        fig = self._chart
        if fig is None:
            return
        spec = self.selected_spectrum()
        pair = self.selected_pair
        with fig.hold_sync():
            fig._nbx_yaxis.label = "correlation ρ"
            if spec is None or pair is None:
                fig._nbx_bars.x, fig._nbx_bars.y = np.zeros(0), np.zeros(0)
                fig._nbx_mean.x, fig._nbx_mean.y = np.zeros(0), np.zeros(0)
                if not self.result.spectra:
                    title = "no CCA spectrum (CKA only)"
                elif pair is None:
                    title = "click a cell"
                else:
                    name = _METRIC_NAMES.get(self.metric, self.metric)
                    title = f"{name}: no canonical correlations"
                self._fit_title(fig, title)
                return
            y = spec.double().numpy()
            xs = np.arange(1, y.size + 1, dtype=float)
            fig._nbx_bars.x, fig._nbx_bars.y = xs, y
            m = float(y.mean()) if y.size else 0.0
            fig._nbx_mean.x, fig._nbx_mean.y = np.array([0.5, y.size + 0.5]), np.array([m, m])
            fig._nbx_yaxis.label = f"ρ (dashed: mean {m:.3f})"
            name = _METRIC_NAMES.get(self.metric, self.metric)
            self._fit_title(fig, f"{pair[1]} × {pair[2]} @ {pair[0]} · {name}")

    def _on_selection(self, change: Any) -> None:
        self._update_chart()

    def _follow_checkpoint(self, change: Any) -> None:
        # A selected cell stays selected at the checkpoint now shown (same row and column).
        if len(self.selected) == 3 and self.selected[0] != change["new"]:
            self.selected = [int(change["new"]), self.selected[1], self.selected[2]]

    def _repr_fields(self) -> dict[str, Any]:
        t, n_layers, n_ref = self.result.grid.shape
        return {"checkpoints": t, "layers": f"{n_layers}×{n_ref}", "metrics": self.metrics, "metric": self.metric}
