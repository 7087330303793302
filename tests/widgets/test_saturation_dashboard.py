"""SaturationDashboard: follows the tracker through its observer, no polling, no browser needed."""

from __future__ import annotations

import math

import pytest
import torch

import nbexplain as nx
from nbexplain.widgets.saturation_dashboard import SaturationDashboard
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
