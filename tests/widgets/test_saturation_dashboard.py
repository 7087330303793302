"""SaturationDashboard: follows the tracker through its observer, no polling, no browser needed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import traitlets

import nbexplain as nx
from nbexplain.widgets.saturation_dashboard import (
    SaturationDashboard,
    drawable_lines,
    epoch_ticks,
    short_names,
)
from nbexplain.zoo import mlp


def run_epoch(net, tracker, n=64, evaluate=False, **kw):
    with torch.no_grad():
        net.train()
        net(torch.randn(n, 10))
        if evaluate:
            net.eval()
            net(torch.randn(n, 10))
            net.train()
    return tracker.end_epoch(**kw)


def test_updates_on_every_end_epoch():
    net = mlp(10, (12, 8), seed=0)
    with nx.SaturationTracker(net) as tr:
        dash = SaturationDashboard(tr)
        assert dash.epochs == 0 and "waiting" in dash.status.value
        rec = run_epoch(net, tr)
        assert dash.epochs == 1
        assert dash.lines_train.y.shape == (3, 2)  # one point per layer (repeated: bqplot squeezes 1-wide)
        assert list(dash.lines_train.y[:, 0]) == [rec.train[n].saturation for n in ["fc1", "fc2", "out"]]
        # no eval epoch yet: no eval lines, and the hidden probe line holds finite data (NaN points in
        # bqplot marks are SVG errors in the browser's console, hidden marks included)
        assert dash.lines_eval.y.size == 0 and dash.lines_eval.x.size == 0
        assert not dash.probe_line.visible and all(math.isfinite(v) for v in dash.probe_line.y)
        run_epoch(net, tr, evaluate=True, probes={"fc1": 0.7, "fc2": 0.8, "out": 0.9})
        assert dash.lines_train.y.shape == (3, 2) and list(dash.lines_train.x) == [0.0, 1.0]
        last = tr.history[-1]
        assert list(dash.bars.y[1]) == [last.eval[n].saturation for n in ["fc1", "fc2", "out"]]
        assert dash.lines_eval.y.shape == (3, 2) and all(math.isnan(v) for v in dash.lines_eval.y[:, 0])
        assert list(dash.lines_eval.y[:, 1]) == [last.eval[n].saturation for n in ["fc1", "fc2", "out"]]
        assert dash.probe_line.visible and list(dash.probe_line.y) == [0.7, 0.8, 0.9]
        assert "epoch 1" in dash.status.value
        dash.close()
        run_epoch(net, tr)
        assert dash.epochs == 2  # unsubscribed after close
    assert "nbx-saturation-dashboard" in dash._dom_classes


def test_existing_history_and_bad_tracker():
    net = mlp(10, (6,), seed=0)
    with nx.SaturationTracker(net) as tr:
        run_epoch(net, tr)
        run_epoch(net, tr)
    dash = SaturationDashboard(tr)
    assert dash.epochs == 2 and dash.lines_train.y.shape == (2, 2) and list(dash.lines_train.x) == [0.0, 1.0]
    with pytest.raises(TypeError, match="SaturationTracker"):
        SaturationDashboard(net)


def test_epoch_ticks_are_whole_epochs():
    assert epoch_ticks(0) == [0] and epoch_ticks(1) == [0] and epoch_ticks(2) == [0, 1]
    assert epoch_ticks(8) == list(range(8))
    for n in (9, 17, 40, 101, 1000):
        ticks = epoch_ticks(n)
        step = ticks[1] - ticks[0]
        assert ticks[0] == 0 and ticks[-1] <= n - 1 < ticks[-1] + step  # covers the axis, whole numbers
        assert step in (1, 2, 5, 10, 20, 50, 100, 200) and len(ticks) <= 8, (n, ticks)


def test_short_names_are_unique_and_short():
    assert short_names(["fc1", "out"]) == ["fc1", "out"]
    assert short_names(["encoder.fc1", "encoder.code", "decoder.fc1"]) == ["e.fc1", "e.code", "d.fc1"]
    assert short_names(["layers.10.attention.q_proj", "layers.11.attention.q_proj"]) == ["10.q_proj", "11.q_proj"]
    assert short_names(["features.denseblock4.denselayer16.conv2"]) == ["conv2"]
    assert short_names(["a_very_long_layer_name"]) == ["…ayer_name"]
    # two names whose short forms coincide stay whole
    assert short_names(["enc.block.fc", "emb.block.fc"]) == ["enc.block.fc", "emb.block.fc"]


def test_axes_legends_table_and_scale():
    net = mlp(10, (12, 8), seed=0)
    with nx.SaturationTracker(net) as tr:
        dash = SaturationDashboard(tr)
        for i in range(3):
            run_epoch(net, tr, evaluate=i > 0, probes={"fc1": 0.6, "out": 0.9} if i == 2 else None)
        assert list(dash.epoch_axis.tick_values) == [0, 1, 2] and dash.lines_train.scales["x"].max == 2
        # layers without a probe are left out of the probe line (a NaN point is an SVG error in the browser)
        assert dash.probe_line.visible and list(dash.probe_line.x) == ["fc1", "out"]
        assert list(dash.probe_line.y) == [0.6, 0.9]
        # no legend drawn over the data by bqplot: the legends are HTML beside the charts
        assert not any(m.display_legend for m in dash.fig_epochs.marks + dash.fig_layers.marks)
        assert all(n in dash.legend_epochs.value for n in ["fc1", "fc2", "out"])
        assert "probe accuracy" in dash.legend_layers.value and "saturation, eval" in dash.legend_layers.value
        # the latest numbers, each under a heading
        last = tr.history[-1]
        table = dash.status.value
        for h in (">saturation<", ">train<", ">eval<", "k of width", "probe accuracy", "epoch 2 (latest)"):
            assert h in table, h
        assert f"{last.train['fc2'].intrinsic_dimension} of {last.train['fc2'].width}" in table
        assert f"{last.train['fc1'].saturation:.2f}" in table and "0.900" in table
        # presentation scale: taller charts, larger fonts (never below 13 px)
        assert "max(13px, var(--jp-ui-font-size1, 13px)) * 1)" in dash._style.value
        h1 = int(dash.fig_epochs.layout.height.removesuffix("px"))
        dash.scale = 1.5
        assert int(dash.fig_epochs.layout.height.removesuffix("px")) == round(1.5 * h1)
        assert "* 1.5)" in dash._style.value
        dash.close()


def test_layer_names_are_escaped_and_abbreviated_on_the_axis():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.ReLU(), torch.nn.Linear(8, 6))
            self.decoder = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))

        def forward(self, x):
            return self.decoder(self.encoder(x))

    net = Net()
    with nx.SaturationTracker(net) as tr:
        dash = SaturationDashboard(tr, title="<b>AE</b>")
        with torch.no_grad():
            net(torch.randn(32, 10))
        tr.end_epoch()
    assert "&lt;b&gt;AE&lt;/b&gt;" in dash.heading.value and "<b>" not in dash.heading.value
    assert dash.layer_axis.tick_labels == {"encoder.0": "encoder.0", "encoder.2": "encoder.2",
                                           "decoder.0": "decoder.0", "decoder.2": "decoder.2"}
    assert dash.bars.tooltip is not None and dash.bars.tooltip.fields == ["x", "y"]  # full names on hover


def test_theme_colours_every_text_and_the_charts():
    net = mlp(10, (6,), seed=0)
    with nx.SaturationTracker(net) as tr:
        dash = SaturationDashboard(tr, theme="dark")
        style = dash._style.value
        assert "nbx-theme-dark" in dash._dom_classes and "nbx-theme-auto" not in dash._dom_classes
        assert "--nbx-sd-fg: rgba(255, 255, 255, 0.87)" in style and "--nbx-sd-bg: #111111" in style
        # bqplot's figure variables (set on .bqplot.figure, where bqplot's own theme sets them) use the theme's text
        for var in ("--bq-axislabel-fill", "--bq-axis-tick-text-fill", "--bq-content-font-color"):
            assert f"{var}: var(--nbx-sd-fg)" in style, var
        dash.theme = "auto"
        assert "nbx-theme-auto" in dash._dom_classes and "nbx-theme-dark" not in dash._dom_classes
        assert "--nbx-sd-fg: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87))" in dash._style.value
        with pytest.raises(traitlets.TraitError, match="theme"):
            dash.theme = "blue"
        dash.close()


def test_lines_sent_to_bqplot_have_no_undrawable_rows():
    """A line with no finite value is left out (bqplot draws it as d="null"); one ending in NaN ends at its last
    finite point (bqplot puts its label at the last point: NaN there is an SVG error)."""
    nan = math.nan
    x, y, rows = drawable_lines(np.arange(4.0), np.array([[0.1, nan, 0.3, nan], [nan] * 4, [0.5, 0.6, 0.7, 0.8]]))
    assert rows.tolist() == [0, 2]
    np.testing.assert_array_equal(x, [[0, 1, 2, 2], [0, 1, 2, 3]])
    np.testing.assert_array_equal(y, [[0.1, nan, 0.3, 0.3], [0.5, 0.6, 0.7, 0.8]])  # the inner gap stays
    x, y, rows = drawable_lines(np.arange(2.0), np.array([[nan, 0.2], [0.3, 0.4]]))  # ends finite: unchanged
    assert x.tolist() == [0, 1] and rows.tolist() == [0, 1] and np.isnan(y[0, 0])

    class Net(torch.nn.Module):  # "late" runs in eval mode only: no train value, ever
        def __init__(self):
            super().__init__()
            self.fc1, self.late, self.out = torch.nn.Linear(10, 8), torch.nn.Linear(8, 4), torch.nn.Linear(8, 3)

        def forward(self, h):
            h = self.fc1(h)
            if not self.training:
                self.late(h)
            return self.out(h)

    net = Net()
    with nx.SaturationTracker(net) as tr:
        dash = SaturationDashboard(tr)
        run_epoch(net, tr, evaluate=True)
        with torch.no_grad():  # an epoch with an eval pass only
            net.eval()
            net(torch.randn(64, 10))
            net.train()
        tr.end_epoch()
    train_colors = [dash._colors[0], dash._colors[2]]
    assert dash.lines_train.labels == ["fc1", "out"] and list(dash.lines_train.colors) == train_colors
    assert np.isfinite(dash.lines_train.y).all() and dash.lines_train.x.shape == (2, 2)  # ends at epoch 0
    assert dash.lines_train.marker == "circle"
    assert dash.lines_eval.labels == ["fc1 (eval)", "late (eval)", "out (eval)"] and dash.lines_eval.x.shape == (2,)
    dash.close()
