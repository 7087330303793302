"""AlignedDirections without a browser: what is sent (class-sorted, top neurons, core's directions), errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

import nbexplain as nx
from nbexplain.widgets import AlignedDirections


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([2, 0, 1] * 40)  # unsorted on purpose
    z = torch.randn(120, 3, generator=g, dtype=torch.float64) + 2.0 * labels[:, None]
    x = z @ torch.randn(3, 12, generator=g, dtype=torch.float64) + 0.05 * torch.randn(120, 12, generator=g, dtype=torch.float64)
    y = z @ torch.randn(3, 7, generator=g, dtype=torch.float64) + 0.05 * torch.randn(120, 7, generator=g, dtype=torch.float64)
    return x, y, labels, nx.svcca_directions(x, y, keep=1.0)


def test_columns_sorted_by_class_and_rows_are_top_neurons_and_core_directions(data):
    x, y, labels, res = data
    view = AlignedDirections(res, x, y, labels, n=3, names=("seed 0", "seed 1"), layer="fc1")
    order = np.argsort(labels.numpy(), kind="stable")
    assert view.input_ids == order.tolist()
    assert view.column_classes == sorted(labels.tolist())
    # top neurons by activation norm, computed independently
    norms_a = [float(torch.linalg.vector_norm(x[:, j])) for j in range(12)]
    expect_a = sorted(range(12), key=lambda j: -norms_a[j])[:7]  # rows = min(16, 12, 7, k)
    assert view.neuron_ids_a == expect_a
    np.testing.assert_allclose(view.neurons_a, x.numpy()[order][:, expect_a].T, rtol=1e-6)
    norms_b = torch.linalg.vector_norm(y, dim=0)
    assert view.neuron_ids_b == torch.argsort(norms_b, descending=True)[:7].tolist()
    # directions are core's variates, in the same column order
    k = res.coefficients.numel()
    assert view.directions_a.shape == (min(7, k), 120)
    np.testing.assert_allclose(view.directions_a, res.x_variates.numpy()[order][:, :k].T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(view.directions_b, res.y_variates.numpy()[order][:, :k].T, rtol=1e-5, atol=1e-6)
    assert view.coefficients == pytest.approx(res.coefficients.tolist())
    assert view.n == 3 and view.names == ["seed 0", "seed 1"] and view.class_names == ["0", "1", "2"]
    assert repr(view) == "AlignedDirections(inputs=120, classes=3, neurons=12/7, directions=7, n=3)"


def test_selection_gives_rho_and_traces_that_correlate_by_it(data):
    x, y, labels, res = data
    view = AlignedDirections(res, x, y, labels)
    assert view.selected == -1 and view.selected_traces() is None and view.selected_correlation is None
    view.selected = 1
    a, b = view.selected_traces()
    assert view.selected_correlation == pytest.approx(float(res.coefficients[1]))
    assert np.corrcoef(a, b)[0, 1] == pytest.approx(float(res.coefficients[1]), abs=1e-5)
    with pytest.raises(traitlets.TraitError, match="selected"):
        view.selected = 7
    with pytest.raises(traitlets.TraitError, match="`n`"):
        view.n = 8


def test_traces_are_sent_as_binary_and_state_round_trips(data):
    x, y, labels, res = data
    view = AlignedDirections(res, x, y, labels, n=2)
    state, paths, buffers = _remove_buffers(view.get_state())
    for name in ("neurons_a", "neurons_b", "directions_a", "directions_b"):
        assert [name, "view"] in paths and state[name]["dtype"] == "float32"
    sent = np.frombuffer(bytes(buffers[paths.index(["directions_b", "view"])]), dtype=np.float32)
    np.testing.assert_array_equal(sent.reshape(view.directions_b.shape), view.directions_b)
    other = AlignedDirections(res, x, y, labels)
    other.set_state({"n": 2, "selected": 0})
    assert other.n == 2 and other.selected == 0


def test_many_inputs_are_thinned_along_the_sorted_order(data):
    x, y, labels, res = data
    view = AlignedDirections(res, x, y, labels, max_inputs=30)
    assert len(view.input_ids) == 30 and view.neurons_a.shape[1] == 30
    assert view.column_classes == sorted(view.column_classes)
    assert [view.column_classes.count(c) for c in range(3)] == [10, 10, 10]
    np.testing.assert_allclose(view.neurons_b[0], y.numpy()[view.input_ids, view.neuron_ids_b[0]], rtol=1e-6)


def test_from_models_calls_core_on_the_layer():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    b = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    inputs = torch.randn(80, 5)
    labels = torch.arange(80) % 3
    a.train()
    view = AlignedDirections.from_models(a, b, inputs, labels, "1", keep=1.0, names=("a", "b"))
    assert a.training and b.training  # train mode left as found (eval only inside)
    with torch.no_grad():
        xa, xb = a[1](a[0](inputs)).double(), b[1](b[0](inputs)).double()
    ref = nx.svcca_directions(xa, xb, keep=1.0)
    assert view.layer == "1" and view.coefficients == pytest.approx(ref.coefficients.tolist(), abs=1e-6)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"result": "not a result"}, "`result` must be what nx.svcca_directions"),
        ({"x": torch.randn(120, 5)}, "`x` has shape"),
        ({"y": torch.randn(120, 7, 2)}, "`y` must be \\(n_inputs, n_features\\)"),
        ({"labels": torch.zeros(7, dtype=torch.long)}, "`labels` must be one class per input"),
        ({"labels": torch.linspace(0, 1, 120)}, "`labels` must be integer"),
        ({"names": ("only one",)}, "`names` must be two strings"),
        ({"n": 0}, "`n` must be a positive int"),
        ({"class_names": ["a"]}, "`class_names` has 1 names"),
        ({"max_inputs": 1}, "`max_inputs`"),
    ],
)
def test_bad_arguments_are_named(data, change, match):
    x, y, labels, res = data
    args = {"result": res, "x": x, "y": y, "labels": labels}
    opts = {k: change.pop(k) for k in list(change) if k not in args}
    args.update(change)
    with pytest.raises((TypeError, ValueError), match=match):
        AlignedDirections(args["result"], args["x"], args["y"], args["labels"], **opts)
