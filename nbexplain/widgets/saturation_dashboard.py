"""``SaturationDashboard``: saturation per layer over epochs, live while training runs (bqplot)."""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as w
import numpy as np

from ..core.feature_space.tracking import EpochRecord, SaturationTracker

__all__ = ["SaturationDashboard"]

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


class SaturationDashboard(w.VBox):
    """Live charts of a :class:`~nbexplain.SaturationTracker`: saturation per layer over epochs (train
    solid, eval dashed), the latest per-layer bars, and probe accuracy per layer when recorded.

    It subscribes to the tracker (``tracker.observe``): every ``end_epoch()`` pushes the new record to
    the charts — no polling, and no browser is needed for the state to update (headless runs work).

    Parameters
    ----------
    tracker
        The tracker to show (it may already have history).
    title
        Heading text.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> from nbexplain.widgets import SaturationDashboard
    >>> net = mlp(8, (6,))
    >>> with nx.SaturationTracker(net) as tracker:
    ...     dash = SaturationDashboard(tracker)
    ...     _ = net(torch.randn(32, 8)); _ = tracker.end_epoch()
    >>> dash.epochs, len(dash.lines_train.y)
    (1, 2)
    """

    def __init__(self, tracker: SaturationTracker, *, title: str = "Feature-space saturation", **kwargs: Any) -> None:
        import bqplot as bq

        if not isinstance(tracker, SaturationTracker):
            raise TypeError(
                f"`tracker` must be an nx.SaturationTracker, got {type(tracker).__name__}."
            )
        self.tracker = tracker
        self.layers = list(tracker.layers)
        colors = [_COLORS[i % len(_COLORS)] for i in range(len(self.layers))]

        xs = bq.LinearScale()
        ys = bq.LinearScale(min=0.0, max=1.0)
        self.lines_train = bq.Lines(x=[], y=[], scales={"x": xs, "y": ys}, colors=colors, labels=self.layers,
                                    display_legend=True, marker="circle", marker_size=24)
        self.lines_eval = bq.Lines(x=[], y=[], scales={"x": xs, "y": ys}, colors=colors, line_style="dashed",
                                   labels=[f"{n} (eval)" for n in self.layers], marker_size=16)
        self.fig_epochs = bq.Figure(
            marks=[self.lines_train, self.lines_eval],
            axes=[bq.Axis(scale=xs, label="epoch", tick_format="d"),
                  bq.Axis(scale=ys, orientation="vertical", label="saturation", tick_format=".1f")],
            title="saturation over epochs (train solid, eval dashed)",
            legend_location="top-right",
            layout=w.Layout(width="520px", height="320px"),
            fig_margin={"top": 40, "bottom": 40, "left": 50, "right": 20},
        )
        bx = bq.OrdinalScale()
        by = bq.LinearScale(min=0.0, max=1.0)
        self.bars = bq.Bars(x=self.layers, y=[[0.0] * len(self.layers)] * 2, scales={"x": bx, "y": by},
                            type="grouped", colors=["#1f77b4", "#aec7e8"], labels=["train", "eval"],
                            display_legend=True)
        # hidden until probes exist; finite data even then: bqplot draws hidden marks too, and NaN points
        # make the browser log SVG errors
        self.probe_line = bq.Lines(x=self.layers, y=[0.0] * len(self.layers), scales={"x": bx, "y": by},
                                   colors=["#d62728"], marker="square", labels=["probe accuracy"],
                                   display_legend=True, visible=False)
        self.fig_layers = bq.Figure(
            marks=[self.bars, self.probe_line],
            axes=[bq.Axis(scale=bx, label="layer"),
                  bq.Axis(scale=by, orientation="vertical", label="saturation / accuracy", tick_format=".1f")],
            title="latest epoch per layer",
            legend_location="top-left",
            layout=w.Layout(width="420px", height="320px"),
            fig_margin={"top": 40, "bottom": 50, "left": 50, "right": 20},
        )
        self.heading = w.Label(value=title)
        self.status = w.Label(value="")
        super().__init__(children=[self.heading, w.HBox([self.fig_epochs, self.fig_layers]), self.status], **kwargs)
        self.add_class("nbx-saturation-dashboard")
        self.epochs = 0
        self._unobserve = tracker.observe(self._on_record)
        self.refresh()

    def _series(self, phase: str) -> np.ndarray:
        hist = self.tracker.history
        out = np.full((len(self.layers), len(hist)), np.nan)
        for j, rec in enumerate(hist):
            for i, name in enumerate(self.layers):
                r = getattr(rec, phase).get(name)
                if r is not None:
                    out[i, j] = r.saturation
        return out

    def refresh(self) -> None:
        """Redraw from the tracker's whole history (called on every ``end_epoch``)."""
        hist = self.tracker.history
        self.epochs = len(hist)
        x = np.arange(len(hist), dtype=float)
        train, ev = self._series("train"), self._series("eval")
        if len(hist) == 1:
            # bqplot squeezes (layers, 1) to (layers,) and would read it as one line: repeat the point.
            x, train, ev = np.zeros(2), np.repeat(train, 2, axis=1), np.repeat(ev, 2, axis=1)
        with self.lines_train.hold_sync(), self.lines_eval.hold_sync():
            self.lines_train.x, self.lines_train.y = x, train
            if np.isnan(ev).all():  # no eval epochs yet: no eval lines (all-NaN lines are SVG errors)
                self.lines_eval.x, self.lines_eval.y = np.zeros(0), np.zeros((0, 0))
            else:
                self.lines_eval.x, self.lines_eval.y = x, ev
        if hist:
            last = hist[-1]
            bars = [[last.train[n].saturation if n in last.train else 0.0 for n in self.layers],
                    [last.eval[n].saturation if n in last.eval else 0.0 for n in self.layers]]
            self.bars.y = bars
            probes = next((r.probes for r in reversed(hist) if r.probes), None)
            if probes:
                self.probe_line.y = [probes.get(n, math.nan) for n in self.layers]
                self.probe_line.visible = True
            parts = [f"epoch {last.epoch}"] + [
                f"{n}: {last.train[n].saturation:.2f} (k={last.train[n].intrinsic_dimension}/{last.train[n].width})"
                for n in self.layers if n in last.train
            ]
            self.status.value = " · ".join(parts)
        else:
            self.status.value = "waiting for the first end_epoch()…"

    def _on_record(self, _record: EpochRecord) -> None:
        self.refresh()

    def close(self) -> None:
        """Stop following the tracker and close the widgets."""
        unobserve = getattr(self, "_unobserve", None)  # absent when __init__ raised before observing
        if unobserve is not None:
            unobserve()
            self._unobserve = None
        super().close()

    def __repr__(self) -> str:
        return f"SaturationDashboard(layers={self.layers}, epochs={self.epochs})"
