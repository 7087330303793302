"""SimilarityGrid without a browser: what is sent (once, binary), selection, companion chart, errors."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

import nbexplain as nx
from nbexplain.widgets import SimilarityGrid
from nbexplain.zoo import mlp

LAYERS = ["fc1", "fc2", "out"]


@pytest.fixture(scope="module")
def result():
    x = torch.randn(150, 20, generator=torch.Generator().manual_seed(0))
    return nx.similarity_grid(
        [mlp(20, (16, 8), seed=s) for s in range(4)], x, LAYERS, metric=["svcca", "cka", "cka_debiased"], progress=False
    )


def test_all_checkpoints_and_metrics_are_sent_once_as_binary(result):
    g = SimilarityGrid(result)
    state, paths, buffers = _remove_buffers(g.get_state())
    assert ["grids", "view"] in paths and ["defined", "view"] in paths
    assert state["grids"]["shape"] == [3, 4, 3, 3] and state["grids"]["dtype"] == "float32"
    sent = np.frombuffer(bytes(buffers[paths.index(["grids", "view"])]), dtype=np.float32).reshape(3, 4, 3, 3)
    for k, m in enumerate(["svcca", "cka", "cka_debiased"]):
        np.testing.assert_allclose(sent[k], result.grids[m].numpy(), atol=1e-6)
    state.pop("_esm")  # the view's code
    assert len(json.dumps(state)) < 3000  # labels and settings only
    assert state["metrics"] == ["svcca", "cka", "cka_debiased"]
    assert state["metric_names"] == ["SVCCA", "linear CKA", "debiased CKA"]
    assert state["checkpoint"] == 3 and state["checkpoint_labels"][0] == "checkpoint 0"
    assert state["row_labels"] == LAYERS and state["col_labels"] == LAYERS
    assert state["col_title"] == "layer at checkpoint 3"
    assert repr(g) == "SimilarityGrid(checkpoints=4, layers=3×3, metrics=['svcca', 'cka', 'cka_debiased'], metric=svcca)"
    # debiased CKA may be negative: the colour scale then reaches below 0
    assert g.vmin <= min(0.0, float(result.grids["cka_debiased"].min()))


def test_selection_updates_value_and_companion_chart(result):
    g = SimilarityGrid(result, metric="cka", checkpoint=1)
    assert g.metric == "cka" and g.checkpoint == 1
    chart = g.spectrum_chart
    assert chart.title == "click a cell"
    g.selected = [1, 2, 0]
    assert g.selected_value == pytest.approx(result.grids["cka"][1, 2, 0].item())
    assert g.selected_pair == ("checkpoint 1", "out", "fc1")
    # CKA has no canonical correlations: the chart says so instead of showing SVCCA's
    bars = chart.marks[0]
    assert g.selected_spectrum() is None and bars.y.size == 0
    assert chart.title == "linear CKA: no canonical correlations"
    # the view's metric switch (synced with the click) changes the value read back and the chart
    g.metric = "svcca"
    assert g.selected_value == pytest.approx(result.grids["svcca"][1, 2, 0].item())
    spec = g.selected_spectrum()
    torch.testing.assert_close(spec, result.spectrum(1, 2, 0, "svcca"))
    np.testing.assert_allclose(bars.y, spec.numpy(), atol=1e-6)
    assert chart.title == "out × fc1 @ checkpoint 1 · SVCCA"
    # the mean is named on the y axis, not in a legend drawn over the bars
    assert not any(getattr(m, "display_legend", False) for m in chart.marks)
    assert chart.axes[1].label == f"ρ (dashed: mean {float(spec.double().mean()):.3f})"
    # the selection (and the chart) follows the checkpoint
    g.checkpoint = 3
    assert g.selected == [3, 2, 0]
    np.testing.assert_allclose(bars.y, result.spectrum(3, 2, 0, "svcca").numpy(), atol=1e-6)
    assert chart.title == "out × fc1 @ checkpoint 3 · SVCCA"
    g.checkpoint = 1
    box = g.dashboard()
    assert box.children[0] is g and box.children[1] is chart
    g.selected = []
    assert g.selected_value is None and bars.y.size == 0


def test_invalid_selection_and_arguments(result):
    g = SimilarityGrid(result)
    with pytest.raises(traitlets.TraitError, match="selected"):
        g.selected = [9, 0, 0]
    with pytest.raises(TypeError, match="similarity_grid"):
        SimilarityGrid(torch.rand(2, 3, 3))
    with pytest.raises(ValueError, match="Did you mean 'cka'"):
        SimilarityGrid(result, metric="ckaa")
    with pytest.raises(ValueError, match="checkpoint"):
        SimilarityGrid(result, checkpoint=7)
    with pytest.raises(TypeError, match="Did you mean 'cell_size'"):
        SimilarityGrid(result, cellsize=10)
    with pytest.raises(ValueError, match="below"):
        SimilarityGrid(result, vmin=0.5, vmax=0.5)


def test_from_tensor_and_undefined_cells():
    t = torch.rand(2, 3, 2)
    t[1, 0, 1] = float("nan")
    g = SimilarityGrid.from_tensor(t, ["a", "b", "c"], ["x", "y"], checkpoint_labels=["early", "late"], metric="mine")
    state, paths, buffers = _remove_buffers(g.get_state())
    defined = np.frombuffer(bytes(buffers[paths.index(["defined", "view"])]), dtype=np.uint8).reshape(1, 2, 3, 2)
    assert defined[0, 1, 0, 1] == 0 and defined.sum() == 11
    assert state["checkpoint_labels"] == ["early", "late"] and state["metrics"] == ["mine"]
    with pytest.raises(ValueError, match="labels"):
        SimilarityGrid.from_tensor(t, ["a", "b"])
    assert g.spectrum_chart.title == "no CCA spectrum (CKA only)"


def test_model_vs_model_titles():
    x = torch.randn(100, 20)
    res = nx.model_similarity(mlp(20, (16, 8), seed=0), mlp(20, (16, 8), seed=1), x, ["fc1", "fc2"],
                              model_labels=("seed 0", "seed 1"), progress=False)
    g = SimilarityGrid(res, cell_size=40)
    assert g.row_title == "layers of seed 0" and g.col_title == "layers of seed 1"
    assert g.show_values and g.checkpoint == 0


def test_nan_cells_of_a_dead_layer_are_marked_undefined():
    x = torch.randn(80, 20)
    net = mlp(20, (16, 8), seed=0)
    with torch.no_grad():
        net.fc2.weight.zero_()
        net.fc2.bias.fill_(-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = nx.similarity_grid([net], x, ["fc1", "relu2"], progress=False)
    g = SimilarityGrid(res)
    assert math.isnan(res.grid[0, 1, 1].item())
    assert g.defined[0, 0, 1, 1] == 0 and g.defined[0, 0, 0, 0] == 1
    assert np.isfinite(g.grids).all()


def test_chart_title_widens_for_long_layer_names():
    names = ["encoder.layers.11.self_attention.output_projection", "decoder.blocks.7.mlp.down_projection"]
    g = SimilarityGrid.from_tensor(torch.rand(2, 2, 2), names, metric="mine")
    chart = g.spectrum_chart
    assert chart.layout.width == "380px"
    g._fit_title(chart, names[0] + " × " + names[1])
    # 14 px glyphs are at most ~0.62 em on average: the figure is at least that wide plus its margins
    assert int(chart.layout.width.removesuffix("px")) >= len(chart.title) * 14 * 0.62
