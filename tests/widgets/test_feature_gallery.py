"""FeatureGallery: traits, binary serialization, re-run messages, errors (no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nbexplain as nx
from nbexplain import zoo
from nbexplain.widgets import FeatureGallery
from nbexplain.widgets.feature_gallery import MAX_CURVE_POINTS, _curves, regularization_weights

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return zoo.cnn(width=8).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(40, *SHAPE, generator=g)


@pytest.fixture(scope="module")
def gallery(model, images):
    return FeatureGallery(model, images, "conv2", [0, 3, 5], steps=6, k=4, progress=False)


def test_state_matches_core_results(gallery, model, images):
    g = gallery
    assert g.units == [0, 3, 5] and g.titles == ["unit 0", "unit 3", "unit 5"]
    assert g.images.shape == (3, 28, 28, 1) and g.images.dtype == np.uint8
    assert g.curves.shape == (3, 6)
    assert np.allclose(g.curves, g.result.trajectory.T.numpy())
    assert g.percentiles == [round(float(p), 2) for p in g.result.percentile]
    # the same optimisation run directly
    direct = nx.maximize_activation(model, "conv2", [0, 3, 5], SHAPE, (float(images.min()), float(images.max())),
                                     steps=6, seed=0, reference=images, progress=False)
    assert torch.equal(direct.images, g.result.images)
    top = nx.top_activating(model, images, "conv2", [0, 3, 5], k=4)
    assert torch.equal(top.indices, g.top.indices)
    assert g.top_images.shape == (12, 28, 28, 1)
    assert g.top_maps.shape == (12, 14, 14)
    assert np.allclose(g.top_maps, top.maps.reshape(12, 14, 14).numpy())
    assert g.top_indices == top.indices.reshape(-1).tolist()
    assert repr(g) == "FeatureGallery(layer=conv2, units=3, steps=6, param=fourier)"


def test_tensors_travel_as_binary_buffers(gallery):
    state = gallery.get_state()
    for name in ("images", "curves", "top_images", "top_maps", "top_values"):
        assert isinstance(state[name]["view"], memoryview), name
    assert state["images"]["dtype"] == "uint8" and state["top_maps"]["dtype"] == "float32"


def test_rerun_message_runs_new_settings_and_reports_completion(model, images):
    g = FeatureGallery(model, images, "conv2", [1, 2], steps=4, progress=False)
    seen = []
    g.observe(lambda ch: seen.append(ch["new"]), "busy")
    before = g.result
    g._handle_message(g, {"type": "rerun", "id": 7, "steps": 5, "regularization": 0.5, "param": "pixel"}, [])
    assert g.runs == 2 and g.completed_request == 7
    assert (g.steps, g.regularization, g.param) == (5, 0.5, "pixel")
    assert g.result is not before and g.result.settings["param"] == "pixel"
    assert g.result.settings["tv"] == 2.0 and g.result.settings["l2"] == 0.5
    assert g.curves.shape == (2, 5)
    assert seen == [True, False]  # the view is told it is busy, then done
    # an older request id never moves completion backwards
    g._handle_message(g, {"type": "rerun", "id": 3, "steps": 4}, [])
    assert g.completed_request == 7 and g.runs == 3
    # unrelated messages are ignored
    g._handle_message(g, {"type": "something"}, [])
    assert g.runs == 3


def test_bad_rerun_is_reported_not_raised(model, images):
    g = FeatureGallery(model, images, "conv2", [1], steps=3, progress=False)
    g._handle_message(g, {"type": "rerun", "id": 1, "steps": 3, "regularization": 5.0}, [])
    assert "regularization" in g.error and g.busy is False and g.completed_request == 1
    g.rerun(steps=3)
    assert g.error == ""


def test_all_units_capped_titles_and_no_data(model):
    g = FeatureGallery(model, None, "out", input_shape=SHAPE, value_range=(0, 1), objective="logit", steps=3,
                       titles=[f"class {i}" for i in range(10)], max_units=4, progress=False)
    assert g.units == [0, 1, 2, 3] and g.titles == ["class 0", "class 1", "class 2", "class 3"]
    assert g.top is None and g.top_images.shape == (0,)
    assert g.percentiles == [None] * 4
    assert g.selected_top is None


def test_selected_top_follows_selection(gallery):
    gallery.selected = 1
    sel = gallery.selected_top
    assert sel["unit"] == 3 and torch.equal(sel["indices"], gallery.top.indices[1])
    gallery.selected = -1


def test_dense_layer_and_vector_inputs():
    mlp = zoo.mlp(hidden=(16, 8))
    x = torch.rand(30, 784)
    g = FeatureGallery(mlp, x, "fc2", [0, 1], steps=3, k=3, progress=False)
    assert g.images.shape == (2, 28, 28, 1)  # 784-vectors shown as 28×28
    assert g.top_maps.shape == (0,)  # no spatial maps for a dense layer
    assert g.top_images.shape == (6, 28, 28, 1)


def test_errors(model, images):
    with pytest.raises(TypeError, match="steps_count"):
        FeatureGallery(model, images, "conv2", steps_count=3)
    with pytest.raises(ValueError, match="input_shape"):
        FeatureGallery(model, None, "conv2")
    with pytest.raises(ValueError, match="Unknown layer"):
        FeatureGallery(model, images, "conv9", steps=2, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        FeatureGallery(model, images, "conv1", [99], steps=2, progress=False)
    with pytest.raises(ValueError, match="regularization"):
        FeatureGallery(model, images, "conv1", regularization=2.0)
    with pytest.raises(ValueError, match="param"):
        FeatureGallery(model, images, "conv1", param="wavelet")
    with pytest.raises(ValueError, match="max_units"):
        FeatureGallery(model, images, "conv1", list(range(8)), max_units=4, progress=False)
    with pytest.raises(TypeError, match="maximize_kwargs"):
        FeatureGallery(model, images, "conv1", maximize_kwargs={"steps": 3})
    with pytest.raises(TypeError, match="model"):
        FeatureGallery("not a model", images, "conv1")


def test_helpers():
    assert regularization_weights(0.0) == {"tv": 0.0, "l2": 0.0}
    with pytest.raises(ValueError):
        regularization_weights(-0.1)
    long = torch.arange(1000.0).reshape(500, 2)
    c = _curves(long)
    assert c.shape[0] == 2 and c.shape[1] <= MAX_CURVE_POINTS
    assert np.all(np.diff(c[0]) > 0)  # averaging keeps a rising curve rising


def test_one_unit_or_a_range_and_the_old_names_fail(model, images):
    """`unit=` takes what maximize_activation takes: one index, a list or a range."""
    one = FeatureGallery(model, images, "conv2", 3, steps=2, k=2, progress=False)
    assert one.units == [3] and one.top.units == [3]
    assert FeatureGallery(model, None, "conv2", range(2), input_shape=(1, 28, 28), steps=2, progress=False).units == [0, 1]
    with pytest.raises(TypeError, match=r"FeatureGallery\(\): `units=` is now `unit=`"):
        FeatureGallery(model, images, "conv2", units=[1])
    with pytest.raises(TypeError, match=r"FeatureGallery\(model, inputs, layer, unit=None"):
        FeatureGallery(model, "conv2", [1])
