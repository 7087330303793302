"""suggest_widths: the width rule on runs whose intrinsic dimension is known exactly."""

from __future__ import annotations

import pytest
import torch

import nbexplain as nx
from nbexplain.core.feature_space.tracking import EpochRecord, LayerRecord
from nbexplain.zoo import mlp


def _tracked(widths: tuple[int, ...], input_rank: int, epochs: int = 2, seed: int = 0) -> nx.SaturationTracker:
    torch.manual_seed(seed)
    net = mlp(16, widths)
    basis = torch.randn(input_rank, 16)
    with nx.SaturationTracker(net, delta=0.99) as tracker:
        for _ in range(epochs):
            net(torch.randn(512, input_rank) @ basis)
            tracker.end_epoch()
    return tracker


def test_a_layer_on_a_low_dimensional_input_is_shrunk_to_k_times_margin():
    tracker = _tracked((64, 32), input_rank=5)
    s = nx.suggest_widths(tracker, margin=1.5, multiple=4)
    # fc1 is linear in the 5-D input: exactly 5 dimensions carry its variance
    assert s.intrinsic["fc1"] == 5 and s.current["fc1"] == 64
    assert s.widths["fc1"] == 8  # ceil(5 × 1.5 / 4) × 4
    assert "5 of 64" in s.reasons["fc1"]
    assert s.widths["out"] == 10 and "fixed" in s.reasons["out"]
    assert s.delta == 0.99
    assert "fc1" in s.table() and "suggested" in s.table()
    # never wider than the layer was when shrinking
    assert nx.suggest_widths(tracker, margin=20.0).widths["fc1"] == 64


def test_a_saturated_layer_is_grown():
    tracker = _tracked((8, 8), input_rank=16)
    s = nx.suggest_widths(tracker, saturated=0.85)
    assert s.intrinsic["fc1"] / s.current["fc1"] >= 0.85
    assert s.widths["fc1"] == 16 and "×2" in s.reasons["fc1"]


def test_a_layer_whose_k_is_still_rising_keeps_its_width():
    tracker = _tracked((32, 16), input_rank=4, epochs=1)
    proto = tracker.history[0].train["fc1"]

    def rec(epoch: int, k: int) -> EpochRecord:
        layer = LayerRecord(saturation=k / 32, intrinsic_dimension=k, width=32, count=proto.count, eigenvalues=proto.eigenvalues)
        return EpochRecord(epoch=epoch, train={"fc1": layer, "fc2": tracker.history[0].train["fc2"], "out": tracker.history[0].train["out"]})

    tracker.history[:] = [rec(0, 4), rec(1, 6), rec(2, 10)]
    s = nx.suggest_widths(tracker, window=3)
    assert s.widths["fc1"] == 32 and "rose from 4 to 10" in s.reasons["fc1"]
    # over a window where it has settled, it is shrunk from the largest k of that window
    tracker.history[:] = [rec(0, 4), rec(1, 10), rec(2, 10), rec(3, 10)]
    s = nx.suggest_widths(tracker, window=3, multiple=1, margin=1.0)
    assert s.widths["fc1"] == 10


def test_fixed_layers_and_bad_arguments():
    tracker = _tracked((16, 8), input_rank=3)
    s = nx.suggest_widths(tracker, fixed=["fc2", "out"])
    assert s.widths["fc2"] == 8 and s.widths["out"] == 10
    with pytest.raises(ValueError, match="does not track"):
        nx.suggest_widths(tracker, fixed=["conv9"])
    with pytest.raises(ValueError, match="eval-mode records"):
        nx.suggest_widths(tracker, phase="eval")
    with pytest.raises(ValueError, match="margin"):
        nx.suggest_widths(tracker, margin=0.5)
    with pytest.raises(TypeError, match="SaturationTracker"):
        nx.suggest_widths({"fc1": 3})
    empty = nx.SaturationTracker(mlp(16, (8,)))
    with pytest.raises(ValueError, match="end_epoch"):
        nx.suggest_widths(empty)
