"""ClassSensitivity without a browser: every checkpoint sent once, learned-at from core, selection, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

import nbexplain as nx
from nbexplain.widgets import ClassSensitivity


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


@pytest.fixture(scope="module")
def result():
    inputs = torch.randn(400, 6, generator=torch.Generator().manual_seed(0))
    return nx.class_sensitivity({"a": _mlp(0), "b": _mlp(1), "c": _mlp(2)}, inputs, ["0", "1"], keep=1.0, progress=False)


def test_all_checkpoints_sent_once_with_labels_and_learned_at(result):
    view = ClassSensitivity(result, threshold=0.95)
    state, paths, buffers = _remove_buffers(view.get_state())
    assert ["values", "view"] in paths and state["values"]["shape"] == [3, 2, 3]
    sent = np.frombuffer(bytes(buffers[paths.index(["values", "view"])]), dtype=np.float32).reshape(3, 2, 3)
    np.testing.assert_allclose(sent, result.values.numpy(), atol=1e-6)
    assert state["checkpoint_labels"] == ["a", "b", "c"] and state["layers"] == ["0", "1"]
    assert state["class_names"] == ["0", "1", "2"] and state["checkpoint"] == 2
    # learned-at written out: first t from which every later value is ≥ threshold
    vals = result.values.numpy()
    for i in range(2):
        for j in range(3):
            ok = [bool(v >= 0.95) for v in vals[:, i, j]]
            expect = next((t for t in range(3) if all(ok[t:])), -1)
            assert view.learned_at[i][j] == expect
    assert view.learned_at[1] == [2, 2, 2]  # the last hidden layer determines its own final logits
    assert repr(view) == "ClassSensitivity(checkpoints=3, layers=2, classes=3, threshold=0.95)"


def test_threshold_change_recomputes_learned_at(result):
    view = ClassSensitivity(result, threshold=0.95)
    view.threshold = 1e-9
    assert view.learned_at == result.learned_at(1e-9).tolist() == [[0, 0, 0], [0, 0, 0]]
    with pytest.raises(traitlets.TraitError, match="threshold"):
        view.threshold = 1.5


def test_selected_class_curves_and_round_trip(result):
    view = ClassSensitivity(result, class_names=["cat", "dog", "cow"], checkpoint=0)
    assert view.selected_curves() is None and view.checkpoint == 0
    view.set_state({"selected_class": 2, "checkpoint": 1})
    curves = view.selected_curves()
    assert view.selected_class == 2 and view.checkpoint == 1
    np.testing.assert_allclose(curves["1"], result.values[:, 1, 2].numpy())
    np.testing.assert_allclose(curves["0"], result.values[:, 0, 2].numpy())
    with pytest.raises(traitlets.TraitError, match="selected_class"):
        view.selected_class = 3
    with pytest.raises(traitlets.TraitError, match="checkpoint"):
        view.checkpoint = 3


def test_undefined_values_are_flagged_not_painted(result):
    values = result.values.clone()
    values[0, 0, 1] = math.nan
    res = nx.ClassSensitivityResult(values, result.checkpoint_labels, result.layers, result.classes, "final")
    view = ClassSensitivity(res)
    assert view.defined[0, 0, 1] == 0 and view.values[0, 0, 1] == 0.0 and view.defined.sum() == 17


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"checkpoint": 3}, "`checkpoint` must index one of the 3"),
        ({"class_names": ["a"]}, "`class_names` has 1 names"),
        ({"selected_class": 5}, "`selected_class`"),
        ({"threshold": 0.0}, "threshold"),
    ],
)
def test_bad_arguments_are_named(result, kwargs, match):
    with pytest.raises((ValueError, traitlets.TraitError), match=match):
        ClassSensitivity(result, **kwargs)


def test_result_type_is_checked():
    with pytest.raises(TypeError, match="nx.class_sensitivity"):
        ClassSensitivity(torch.zeros(2, 2, 2))
