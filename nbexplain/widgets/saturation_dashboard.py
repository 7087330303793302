"""``SaturationDashboard``: saturation per layer over epochs, live while training runs (bqplot)."""

from __future__ import annotations

import html
import itertools
import math
from typing import Any

import ipywidgets as w
import numpy as np
import traitlets

from ..core.feature_space.tracking import EpochRecord, SaturationTracker

__all__ = ["SaturationDashboard", "drawable_lines", "epoch_ticks", "short_names"]

# Tableau 10: distinct hues in order; every line is also named in the legend beside the chart.
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
_TRAIN, _EVAL, _PROBE = "#1f77b4", "#9ecae1", "#d62728"
_ids = itertools.count(1)


def epoch_ticks(n_epochs: int, most: int = 8) -> list[int]:
    """Whole epoch numbers ``0 … n_epochs − 1`` to label on the epoch axis, at most about ``most`` of them
    (every 1, 2, 5, 10, 20, … epochs), so a fractional tick never prints as a repeated integer.

    Examples
    --------
    >>> epoch_ticks(3), epoch_ticks(1), epoch_ticks(40)[:3]
    ([0, 1, 2], [0], [0, 5, 10])
    """
    if n_epochs <= 1:
        return [0]
    step = next(s for m in itertools.count() for s in (10**m, 2 * 10**m, 5 * 10**m) if (n_epochs - 1) / s < most)
    return list(range(0, n_epochs, step))


def short_names(names: list[str], max_chars: int = 10) -> list[str]:
    """Axis labels for layer names: a name longer than ``max_chars`` keeps its last part and the first letter
    of the parts before it (``encoder.fc1`` → ``e.fc1``), else only the block numbers and the last part
    (``layers.10.attention.q_proj`` → ``10.q_proj``), else its last ``max_chars − 1`` characters after ``…``. Names whose short forms would coincide stay whole (the full names are in the legend and on hover).

    Examples
    --------
    >>> short_names(["encoder.fc1", "decoder.fc1", "out"])
    ['e.fc1', 'd.fc1', 'out']
    """
    def shorten(name: str) -> str:
        if len(name) <= max_chars:
            return name
        parts = name.split(".")
        short = ".".join([p if p.isdigit() else p[:1] for p in parts[:-1]] + parts[-1:])
        if len(short) > max_chars:  # then only the block numbers and the last part: layers.10.attn.q → 10.q
            short = ".".join([p for p in parts[:-1] if p.isdigit()] + parts[-1:])
        return short if len(short) <= max_chars else "…" + short[-(max_chars - 1):]

    out = [shorten(n) for n in names]
    clashes = {s for s in out if out.count(s) > 1}
    return [n if s in clashes else s for n, s in zip(names, out, strict=True)]


# Text, background, axis lines and grid of each theme. "auto" follows JupyterLab's theme variables (light fallbacks);
# "light"/"dark" force the same colours as the anywidget views' (js/lib/style.css). bqplot's own dark-theme style
# colours axis labels orange and tick text at 54 % opacity: every chart text takes the theme's text colour instead.
_PALETTES = {
    "auto": {"fg": "var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87))", "bg": "var(--jp-layout-color0, #ffffff)",
             "axis": "var(--jp-ui-font-color2, rgba(0, 0, 0, 0.54))", "grid": "var(--jp-layout-color2, #eeeeee)"},
    "light": {"fg": "rgba(0, 0, 0, 0.87)", "bg": "#ffffff", "axis": "rgba(0, 0, 0, 0.54)", "grid": "#eeeeee"},
    "dark": {"fg": "rgba(255, 255, 255, 0.87)", "bg": "#111111", "axis": "rgba(255, 255, 255, 0.54)",
             "grid": "#2a2a2a"},
}


def drawable_lines(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lines ``y`` (one row per layer, over epochs ``x``) as bqplot can draw them with no SVG error.

    bqplot places each line's (hidden) label at the line's last point and draws a line with no finite point as
    ``d="null"``: a NaN there is a console error on every redraw (``translate(…,undefined)``). So lines with no
    finite value are left out, and a line whose last epochs are NaN (a layer not run in them) gets its own x row
    that ends at its last finite point, repeated — the same drawing; NaN gaps inside a line stay gaps.

    Returns
    -------
    x, y, rows
        ``x`` 1-d (shared) when no kept line ends in NaN, else 2-d like ``y``; ``rows`` are the kept rows'
        indices into the input ``y``.

    Examples
    --------
    >>> nan = float("nan")
    >>> x, y, rows = drawable_lines(np.arange(3.0), np.array([[0.5, 0.6, nan], [nan, nan, nan], [0.1, 0.2, 0.3]]))
    >>> x.tolist(), y.tolist(), rows.tolist()
    ([[0.0, 1.0, 1.0], [0.0, 1.0, 2.0]], [[0.5, 0.6, 0.6], [0.1, 0.2, 0.3]], [0, 2])
    """
    rows = np.flatnonzero(np.isfinite(y).any(axis=1))
    y = y[rows]
    if y.size == 0 or np.isfinite(y[:, -1]).all():
        return x, y, rows
    xs, y = np.tile(x, (len(rows), 1)), y.copy()
    for i in range(len(rows)):
        last = int(np.flatnonzero(np.isfinite(y[i]))[-1])
        xs[i, last + 1:], y[i, last + 1:] = x[last], y[i, last]
    return xs, y, rows


def _font(scale: float, factor: float = 1.0) -> str:
    """A CSS font size from JupyterLab's UI font size, never below 13 px, times the presentation scale."""
    return f"calc(max(13px, var(--jp-ui-font-size1, 13px)) * {scale * factor:g})"


class SaturationDashboard(w.VBox):
    """Live charts of a :class:`~nbexplain.SaturationTracker`: saturation per layer over epochs (train
    solid, eval dashed), the latest per-layer bars, probe accuracy per layer when recorded, and a table of
    the latest epoch's numbers.

    It subscribes to the tracker (``tracker.observe``): every ``end_epoch()`` pushes the new record to
    the charts — no polling, and no browser is needed for the state to update (headless runs work).
    The epoch axis is labelled at whole epochs; legends sit beside the charts, never over the data; long
    layer names are shortened on the bar chart's axis (the full names are in the legends, the table and
    the bars' hover tooltips). Text is at least 13 px (JupyterLab's UI font size) times ``scale``; the two
    charts sit side by side in a wide column and one above the other in a narrow one (800 px).
    Colours: Tableau 10 hues per layer, each also named in the legend. A layer with no value in a phase (run
    only in eval mode, say) has no line of that phase, and a line stops at its last measured epoch
    (see :func:`drawable_lines`); the table shows "–" for a missing value.

    Parameters
    ----------
    tracker
        The tracker to show (it may already have history).
    title
        Heading text.
    scale
        Presentation scale of text and charts (1.5 for a projector); can be changed later.
    theme
        ``"auto"`` (default) follows the Jupyter theme; ``"light"`` or ``"dark"`` forces one. Every text, the
        charts' axis labels and tick values included, takes the theme's text colour; can be changed later.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> from nbexplain.widgets import SaturationDashboard
    >>> net = mlp(8, (6,))
    >>> with nx.SaturationTracker(net) as tracker:
    ...     dash = SaturationDashboard(tracker)
    ...     _ = net(torch.randn(32, 8)); _ = tracker.end_epoch()
    >>> dash.epochs, len(dash.lines_train.y), dash.epoch_axis.tick_values.tolist()
    (1, 2, [0.0])
    """

    #: Presentation scale of text and charts (1 = JupyterLab's font size, never below 13 px; 1.5 for a projector).
    scale = traitlets.Float(1.0, min=0.5, max=4.0)
    #: ``"auto"`` follows the Jupyter theme; ``"light"``/``"dark"`` force one (the root then carries the class
    #: ``nbx-theme-light``/``nbx-theme-dark``, else ``nbx-theme-auto``).
    theme = traitlets.Enum(["auto", "light", "dark"], default_value="auto")

    def __init__(self, tracker: SaturationTracker, *, title: str = "Feature-space saturation", scale: float = 1.0,
                 theme: str = "auto", **kwargs: Any) -> None:
        import bqplot as bq

        if not isinstance(tracker, SaturationTracker):
            raise TypeError(
                f"`tracker` must be an nx.SaturationTracker, got {type(tracker).__name__}."
            )
        self.tracker = tracker
        self.layers = list(tracker.layers)
        self.short_layers = short_names(self.layers)
        colors = [_COLORS[i % len(_COLORS)] for i in range(len(self.layers))]
        self._eval_labels = [f"{n} (eval)" for n in self.layers]
        self._colors = colors
        self._uid = f"nbx-sd-{next(_ids)}"

        xs = self._epoch_scale = bq.LinearScale(min=0.0, max=1.0)
        ys = bq.LinearScale(min=0.0, max=1.0)
        self.lines_train = bq.Lines(x=[], y=[], scales={"x": xs, "y": ys}, colors=colors, labels=self.layers,
                                    marker="circle", marker_size=24)
        self.lines_eval = bq.Lines(x=[], y=[], scales={"x": xs, "y": ys}, colors=colors, line_style="dashed",
                                   labels=self._eval_labels)
        self.epoch_axis = bq.Axis(scale=xs, label="epoch", tick_format="d", tick_values=np.array([0]))
        self.fig_epochs = bq.Figure(
            marks=[self.lines_train, self.lines_eval],
            axes=[self.epoch_axis,
                  bq.Axis(scale=ys, orientation="vertical", label="saturation k/width", tick_format=".1f")],
            layout=w.Layout(width="100%"),
        )
        bx = bq.OrdinalScale(domain=self.layers)
        by = bq.LinearScale(min=0.0, max=1.0)
        tip = bq.Tooltip(fields=["x", "y"], labels=["layer", "value"], formats=["", ".3f"])
        self.bars = bq.Bars(x=self.layers, y=[[0.0] * len(self.layers)], scales={"x": bx, "y": by},
                            type="grouped", colors=[_TRAIN], labels=["train"], tooltip=tip)
        # hidden until probes exist; finite data even then: bqplot draws hidden marks too, and NaN points
        # make the browser log SVG errors (so layers without a probe are left out, never NaN)
        self.probe_line = bq.Lines(x=self.layers, y=[0.0] * len(self.layers), scales={"x": bx, "y": by},
                                   colors=[_PROBE], marker="square", labels=["probe accuracy"], visible=False,
                                   tooltip=bq.Tooltip(fields=["x", "y"], labels=["layer", "probe accuracy"],
                                                      formats=["", ".3f"]))
        self.layer_axis = bq.Axis(scale=bx, label="layer", tick_labels=dict(zip(self.layers, self.short_layers,
                                                                                 strict=True)))
        self.fig_layers = bq.Figure(
            marks=[self.bars, self.probe_line],
            axes=[self.layer_axis,
                  bq.Axis(scale=by, orientation="vertical", label="saturation / accuracy", tick_format=".1f")],
            layout=w.Layout(width="100%"),
        )
        self._style = w.HTML(layout=w.Layout(display="none"))
        self.heading = w.HTML(f"<div class='nbx-sd-heading'>{html.escape(title)}</div>")
        self.caption_epochs = w.HTML("<div class='nbx-sd-caption'>saturation over epochs</div>")
        self.caption_layers = w.HTML("<div class='nbx-sd-caption'>latest epoch, per layer</div>")
        self.legend_epochs = w.HTML(self._epochs_legend(colors))
        self.legend_layers = w.HTML(self._layers_legend(eval_shown=False, probes_shown=False))
        column = dict(min_width="0", margin="0 16px 8px 0")  # flex basis and max width: _apply_style (× scale)
        self.panel_epochs = w.VBox([self.caption_epochs, self.fig_epochs, self.legend_epochs],
                                   layout=w.Layout(**column))
        self.panel_layers = w.VBox([self.caption_layers, self.fig_layers, self.legend_layers],
                                   layout=w.Layout(**column))
        self.charts = w.HBox([self.panel_epochs, self.panel_layers],
                             layout=w.Layout(flex_flow="row wrap", width="100%"))
        self.status = w.HTML("")
        super().__init__(children=[self._style, self.heading, self.charts, self.status], **kwargs)
        self.add_class("nbx-saturation-dashboard")
        self.add_class(self._uid)
        self.epochs = 0
        self.scale = scale
        self.theme = theme
        self._apply_style()
        self.observe(lambda _c: self._apply_style(), names=["scale", "theme"])
        self._unobserve = tracker.observe(self._on_record)
        self.refresh()

    # ------------------------------------------------------------------ text and layout
    def _epochs_legend(self, colors: list[str]) -> str:
        items = [f"<span class='nbx-sd-item'><span class='nbx-sd-line' style='border-top-color:{c}'></span>"
                 f"{html.escape(n)}</span>" for n, c in zip(self.layers, colors, strict=True)]
        return ("<div class='nbx-sd-legend'>" + "".join(items) + "</div>"
                "<div class='nbx-sd-legend'><span class='nbx-sd-item'><span class='nbx-sd-line'></span>train</span>"
                "<span class='nbx-sd-item'><span class='nbx-sd-line nbx-sd-dashed'></span>eval (dashed)</span></div>")

    @staticmethod
    def _layers_legend(eval_shown: bool, probes_shown: bool) -> str:
        items = [f"<span class='nbx-sd-item'><span class='nbx-sd-box' style='background:{_TRAIN}'></span>"
                 "saturation, train</span>"]
        if eval_shown:
            items.append(f"<span class='nbx-sd-item'><span class='nbx-sd-box' style='background:{_EVAL}'></span>"
                         "saturation, eval</span>")
        if probes_shown:
            items.append(f"<span class='nbx-sd-item'><span class='nbx-sd-line' style='border-top-color:{_PROBE}'>"
                         "</span>probe accuracy</span>")
        return "<div class='nbx-sd-legend'>" + "".join(items) + "</div>"

    def _apply_style(self) -> None:
        """Colours for the current ``theme``; fonts, chart heights and margins for the current ``scale``."""
        s = float(self.scale)
        u = self._uid
        tick = _font(s)
        c = _PALETTES[self.theme]
        for name in _PALETTES:
            self.remove_class(f"nbx-theme-{name}")
        self.add_class(f"nbx-theme-{self.theme}")
        self._style.value = (
            "<style>"
            # the anywidget views' font (style.css): in an exported page there is no JupyterLab font to inherit
            f".{u} {{ font-family: var(--jp-ui-font-family, system-ui, -apple-system, 'Segoe UI', sans-serif);"
            f" --nbx-sd-fg: {c['fg']}; --nbx-sd-bg: {c['bg']}; color: var(--nbx-sd-fg);"
            " background: var(--nbx-sd-bg);"
            f" --bq-font: {tick} sans-serif; --bq-axis-tick-text-font: {tick} sans-serif;"
            f" --bq-axislabel-font: {tick} sans-serif; --bq-mainheading-font: {_font(s, 1.15)} sans-serif;"
            f" --bq-mainheading-font-size: {_font(s, 1.15)}; }}"
            # on the figure itself: bqplot sets its theme's variables there (.classic), and orange text on the
            # page's [data-jp-theme-light='false']
            f".{u} .bqplot.figure {{ --bq-content-font-color: var(--nbx-sd-fg);"
            " --bq-axislabel-fill: var(--nbx-sd-fg); --bq-mainheading-fill: var(--nbx-sd-fg);"
            " --bq-axis-tick-text-fill: var(--nbx-sd-fg); --bq-background: var(--nbx-sd-bg);"
            f" --bq-plotarea-background-fill: var(--nbx-sd-bg); --bq-axis-border-color: {c['axis']};"
            f" --bq-axis-path-stroke: {c['axis']}; --bq-axis-rect-stroke: {c['axis']};"
            f" --bq-axis-tick-short-stroke: {c['axis']}; --bq-grid-color: {c['grid']};"
            f" --bq-axis-tick-stroke: {c['grid']}; }}"
            f".{u} .jupyter-widgets, .{u} .widget-html-content {{ color: var(--nbx-sd-fg); }}"
            f".{u} .widget-html-content {{ font-size: {tick}; line-height: 1.35; white-space: normal; }}"
            f".{u} .nbx-sd-heading {{ font-size: {_font(s, 1.15)}; font-weight: 600; color: var(--nbx-sd-fg); }}"
            f".{u} .nbx-sd-caption {{ font-weight: 600; color: var(--nbx-sd-fg); }}"
            f".{u} .nbx-sd-legend {{ display: flex; flex-wrap: wrap; gap: 2px 14px; color: var(--nbx-sd-fg); }}"
            f".{u} .nbx-sd-line {{ display: inline-block; width: 1.8em; height: 0; vertical-align: middle;"
            " margin-right: 4px; border-top: 3px solid var(--nbx-sd-fg); }"
            f".{u} .nbx-sd-dashed {{ border-top-style: dashed; }}"
            f".{u} .nbx-sd-box {{ display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle;"
            " margin-right: 4px; }"
            f".{u} table.nbx-sd-table {{ border-collapse: collapse; max-width: 100%; }}"
            f".{u} table.nbx-sd-table caption {{ text-align: left; font-weight: 600; }}"
            f".{u} .nbx-sd-note {{ margin-top: 0.3em; max-width: 40em; color: var(--nbx-sd-fg); }}"
            f".{u} table.nbx-sd-table th, .{u} table.nbx-sd-table td {{ padding: 1px 6px 1px 0; text-align: left;"
            " vertical-align: top; }"
            f".{u} table.nbx-sd-table tbody th {{ overflow-wrap: anywhere; }}"
            f".{u} table.nbx-sd-table td.nbx-num {{ text-align: right; font-variant-numeric: tabular-nums; }}"
            "</style>"
        )
        height = f"{round(300 * s)}px"
        left = round(62 * s)
        self.fig_epochs.layout.height = height
        self.fig_epochs.fig_margin = {"top": round(12 * s), "bottom": round(50 * s), "left": left,
                                      "right": round(16 * s)}
        self._layout_layer_axis()
        basis = f"{round(340 * s)}px"
        self.panel_epochs.layout.flex = self.panel_layers.layout.flex = f"1 1 {basis}"
        self.panel_epochs.layout.max_width = self.panel_layers.layout.max_width = f"{round(640 * s)}px"

    def _layout_layer_axis(self) -> None:
        """Rotate the layer names when side by side they would run together (estimated at 0.62 em a character
        on a plot about 280 px × scale wide)."""
        s = float(self.scale)
        longest = max((len(n) for n in self.short_layers), default=0)
        crowded = len(self.layers) * (longest * 0.62 * 13 + 10) > 280
        self.layer_axis.tick_rotate = -40 if crowded else 0
        self.layer_axis.tick_style = {"text-anchor": "end"} if crowded else {}
        bottom = round((50 + (longest * 0.62 * 13 * 0.65 if crowded else 0)) * s)
        self.layer_axis.label_offset = f"{bottom - round(16 * s)}px" if crowded else None
        self.fig_layers.layout.height = f"{round(300 * s) + (bottom - round(50 * s))}px"
        self.fig_layers.fig_margin = {"top": round(12 * s), "bottom": bottom, "left": round(62 * s),
                                      "right": round(16 * s)}

    # ------------------------------------------------------------------ data
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
        self._epoch_scale.max = float(max(1, len(hist) - 1))
        self.epoch_axis.tick_values = np.array(epoch_ticks(len(hist)), dtype=float)
        with self.lines_train.hold_sync(), self.lines_eval.hold_sync():
            for lines, series, labels in ((self.lines_train, train, self.layers),
                                          (self.lines_eval, ev, self._eval_labels)):
                lx, ly, rows = drawable_lines(x, series)
                if not rows.size:  # no epochs of this phase (yet): no lines
                    lines.x, lines.y = np.zeros(0), np.zeros((0, 0))
                    continue
                lines.colors = [self._colors[i] for i in rows]
                lines.labels = [labels[i] for i in rows]
                lines.x, lines.y = lx, ly
            # a marker at a NaN point (a layer not run in some epoch) is an SVG error: no markers then
            self.lines_train.marker = "circle" if np.isfinite(self.lines_train.y).all() else None
        if not hist:
            self.status.value = "<div class='nbx-sd-status'>waiting for the first end_epoch()…</div>"
            return
        last = hist[-1]
        has_eval = bool(last.eval)
        train_y = [last.train[n].saturation if n in last.train else 0.0 for n in self.layers]
        eval_y = [last.eval[n].saturation if n in last.eval else 0.0 for n in self.layers]
        with self.bars.hold_sync():
            self.bars.colors = [_TRAIN, _EVAL] if has_eval else [_TRAIN]
            self.bars.labels = ["train", "eval"] if has_eval else ["train"]
            self.bars.y = [train_y, eval_y] if has_eval else [train_y]
        probes = next((r.probes for r in reversed(hist) if r.probes), None)
        measured = [n for n in self.layers if probes and n in probes and math.isfinite(probes[n])]
        if measured:
            assert probes is not None
            with self.probe_line.hold_sync():
                self.probe_line.x = measured
                self.probe_line.y = [float(probes[n]) for n in measured]
                self.probe_line.visible = True
        self.legend_layers.value = self._layers_legend(has_eval, bool(measured))
        self.status.value = self._table(last, probes if measured else None)

    def _table(self, last: EpochRecord, probes: dict[str, float] | None) -> str:
        """The latest epoch's numbers, each under a column heading a student reads (short headings, so that
        the table fits a narrow column at a projector's scale; long layer names may break after their dots)."""
        ev = bool(last.eval)
        top = ["<th scope='col' rowspan='2'>layer</th>",
               "<th scope='colgroup' colspan='2'>saturation</th>" if ev else "<th scope='col'>saturation</th>",
               "<th scope='col' rowspan='2'>k of width</th>"]
        if probes:
            top.append("<th scope='col' rowspan='2'>probe accuracy</th>")
        sub = "<th scope='col'>train</th>" + ("<th scope='col'>eval</th>" if ev else "")
        rows = []
        for n in self.layers:
            r = last.train.get(n)
            e = last.eval.get(n)
            name = ".<wbr>".join(html.escape(p) for p in n.split("."))  # may break after each dot
            cells = [f"<th scope='row'>{name}</th>", self._num(r.saturation if r else None, 2)]
            if ev:
                cells.append(self._num(e.saturation if e else None, 2))
            cells.append(f"<td class='nbx-num'>{r.intrinsic_dimension} of {r.width}</td>" if r
                         else "<td class='nbx-num'>–</td>")
            if probes:
                cells.append(self._num(probes.get(n), 3))
            rows.append("<tr>" + "".join(cells) + "</tr>")
        # a short caption (a caption is only as wide as its table: a long one wrapped into a narrow block), the
        # meaning of k below the table, where it wraps at the column's width
        return (f"<table class='nbx-sd-table'><caption>epoch {last.epoch} (latest), per layer</caption><thead><tr>"
                + "".join(top) + "</tr><tr>" + sub + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
                f"<div class='nbx-sd-note'>k = the number of dimensions that explain {self.tracker.delta:g} of the "
                "variance of a layer's features; saturation = k / width</div>")

    @staticmethod
    def _num(value: float | None, digits: int) -> str:
        return f"<td class='nbx-num'>{value:.{digits}f}</td>" if value is not None else "<td class='nbx-num'>–</td>"

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
