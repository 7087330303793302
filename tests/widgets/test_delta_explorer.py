"""DeltaExplorer: precomputed state for every reachable k, serialization, kernel requests, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nbexplain as nx
from nbexplain.widgets.delta_explorer import DeltaExplorer, slider_deltas
from nbexplain.widgets.tensor import serialize_tensor
from nbexplain.zoo import dense_autoencoder, mlp


@pytest.fixture(scope="module")
def ae_and_data():
    data = nx.data.digits()
    ae = dense_autoencoder(64, (32,), code=12, seed=0)
    nx.zoo.train(ae, data.x_train.reshape(len(data.x_train), -1), epochs=3, lr=3e-3, seed=0, progress=False)
    return ae, data


def test_precomputes_every_reachable_k(ae_and_data):
    ae, data = ae_and_data
    ex = DeltaExplorer(ae, data.x_train[:400], n_samples=6)
    assert ex.layer == "encoder.code" and ex.mode == "reconstruction" and ex.width == 12
    vals = ex.stats.eigenvalues
    grid = ex.deltas.astype(np.float64)
    expected = [max(nx.intrinsic_dimension(vals, float(d)), 1) for d in slider_deltas()]
    got = [ex.ks[int(i)] for i in ex.k_index]
    assert got == expected and ex.ks == sorted(set(expected))
    assert len(grid) == len(slider_deltas()) and grid[-1] == 1.0
    assert ex.originals.shape == (6, 8, 8, 1) and ex.originals.dtype == np.uint8
    assert ex.recon.shape == (len(ex.ks), 6, 8, 8, 1) and ex.recon_random.shape == ex.recon.shape
    # Reconstructions equal the core projection for each k (same uint8 scaling).
    x = data.x_train[:400][ex.sample_indices]
    lo, hi = float(x.min()), float(x.max())
    out = nx.projected_outputs(ae, x, "encoder.code", ex.stats, ks=[ex.ks[0], ex.ks[-1]])
    for j, o in zip((0, -1), out, strict=False):
        ref = nx.widgets.tensor.to_uint8_images(o.clamp(lo, hi), value_range=(lo, hi))
        assert np.abs(ref.astype(int) - ex.recon[j].astype(int)).max() <= 1
    # Error falls as k rises; eigen beats random; the largest k reproduces the unprojected output.
    assert ex.metric[0] > ex.metric[-1]
    assert np.all(ex.metric <= ex.metric_random + 1e-6)
    assert ex.metric[-1] == pytest.approx(ex.baseline, rel=1e-3, abs=1e-6)
    assert ex.k == max(nx.intrinsic_dimension(vals, 0.99), 1) and ex.saturation == ex.k / 12
    assert ex.precompute_seconds > 0


def test_tensors_travel_as_binary_buffers(ae_and_data):
    ae, data = ae_and_data
    ex = DeltaExplorer(ae, data.x_train[:200], n_samples=3)
    state = ex.get_state()
    for key in ("recon", "recon_random", "originals", "deltas", "k_index", "eigenvalues", "metric"):
        assert isinstance(state[key]["view"], memoryview), key
    wire = serialize_tensor(ex.recon)
    assert wire["dtype"] == "uint8" and wire["shape"] == list(ex.recon.shape)
    total = sum(np.asarray(getattr(ex, k)).nbytes for k in ("recon", "recon_random", "originals"))
    assert total < 8_000_000


def test_layer_and_sample_changes_from_python_recompute(ae_and_data):
    ae, data = ae_and_data
    ex = DeltaExplorer(ae, data.x_train[:300], n_samples=4)
    first = ex.originals.copy()
    busy = []
    ex.observe(lambda c: busy.append(c["new"]), "busy")
    ex.sample_seed = 1
    assert not np.array_equal(first, ex.originals) and busy == [True, False]
    ex.layer = "encoder.fc1"
    assert ex.width == 32 and ex.recon.shape[1] == 4 and ex.stats.n_features == 32
    with pytest.raises(ValueError, match="Unknown layer"):
        ex.layer = "encoder.nope"
    assert "Unknown layer" in ex.error and ex.busy is False


def test_view_requests_use_the_request_protocol(ae_and_data):
    """The view's layer menu and "other samples" button send {type: "request", id, layer, sample_seed}; the
    kernel answers by raising completed_request to that id (busy while it works), the latest request wins."""
    ae, data = ae_and_data
    ex = DeltaExplorer(ae, data.x_train[:300], n_samples=4)
    assert ex.completed_request == 0 and not ex.busy
    first, k_index = ex.originals.copy(), ex.k_index.copy()
    seen = []
    ex.observe(lambda c: seen.append((c["name"], c["new"])), ["busy", "completed_request"])
    ex._handle_message(ex, {"type": "request", "id": 1, "layer": "encoder.code", "sample_seed": 2}, [])
    assert ex.sample_seed == 2 and not np.array_equal(first, ex.originals)
    assert ex.completed_request == 1 and seen == [("busy", True), ("busy", False), ("completed_request", 1)]
    assert np.array_equal(k_index, ex.k_index)  # same layer: same statistics
    ex._handle_message(ex, {"type": "request", "id": 2, "layer": "encoder.fc1", "sample_seed": 2}, [])
    assert ex.layer == "encoder.fc1" and ex.width == 32 and ex.completed_request == 2 and ex.error == ""
    # a bad request: shown as `error`, answered (the view stops waiting), the previous state kept
    shown = ex.originals.copy()
    ex._handle_message(ex, {"type": "request", "id": 3, "layer": "encoder.nope", "sample_seed": 5}, [])
    assert "`layer` 'encoder.nope'" in ex.error and ex.completed_request == 3 and not ex.busy
    assert ex.layer == "encoder.fc1" and ex.sample_seed == 2 and np.array_equal(shown, ex.originals)
    ex._handle_message(ex, {"type": "request", "id": 4, "layer": "encoder.fc1", "sample_seed": -1}, [])
    assert "`sample_seed`" in ex.error and ex.completed_request == 4
    # the next good request clears the error; other message types are ignored
    ex._handle_message(ex, {"type": "request", "id": 5, "layer": "encoder.code", "sample_seed": 3}, [])
    assert ex.error == "" and ex.layer == "encoder.code" and ex.sample_seed == 3 and ex.width == 12
    ex._handle_message(ex, {"type": "something else", "id": 9, "layer": "encoder.fc1"}, [])
    assert ex.layer == "encoder.code" and ex.completed_request == 5


def test_classifier_accuracy_mode_and_hygiene():
    data = nx.data.digits()
    net = mlp(64, (32, 16), seed=0)
    nx.zoo.train(net, data.x_train.reshape(len(data.x_train), -1), data.y_train, epochs=2, lr=3e-3,
                 seed=0, progress=False)
    x = data.x_train.reshape(len(data.x_train), -1)[:300]
    y = data.y_train[:300]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ex = DeltaExplorer(net, (x, y), n_samples=5)
    assert ex.layer == "fc2" and ex.mode == "accuracy" and ex.metric_name == "accuracy"
    assert ex.predictions.shape == (len(ex.ks), 5) and ex.labels == [int(v) for v in y[ex.sample_indices]]
    assert ex.metric[-1] == pytest.approx(ex.baseline, abs=0.01)
    assert net.training and all(len(m._forward_hooks) == 0 for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="labels"):
        DeltaExplorer(net, x, n_samples=2)


def test_bad_arguments(ae_and_data):
    ae, data = ae_and_data
    with pytest.raises(TypeError, match="n_sample"):
        DeltaExplorer(ae, data.x_train[:50], n_sample=3)
    with pytest.raises(ValueError, match="Unknown layer"):
        DeltaExplorer(ae, data.x_train[:50], layer="encoder.fc9")
    with pytest.raises(ValueError, match="deltas"):
        DeltaExplorer(ae, data.x_train[:50], deltas=[0.5, 1.5])
    with pytest.raises(TypeError, match="Module"):
        DeltaExplorer("model", data.x_train[:50])
    assert "DeltaExplorer(layer='encoder.code'" in repr(DeltaExplorer(ae, data.x_train[:50], n_samples=2))


def test_mode_is_explicit_where_the_output_shape_cannot_tell() -> None:
    """A 3-class segmentation net on RGB images returns maps with the image's shape: not an autoencoder."""
    torch.manual_seed(0)
    seg = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))
    x = torch.rand(40, 3, 6, 6)
    y = torch.randint(0, 3, (40,))
    with pytest.raises(ValueError, match=r"one predicted class per sample.*output has shape \(3, 6, 6\).*nx.delta_curve"):
        DeltaExplorer(seg, (x, y), layer="0", n_samples=2, mode="accuracy")
    # an autoencoder said to be one must reconstruct its input's shape
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(108, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with pytest.raises(ValueError, match=r"mode='reconstruction' compares the output with the shown input"):
        DeltaExplorer(clf, (x, y), layer="1", n_samples=2, mode="reconstruction")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        DeltaExplorer(clf, (x, y), layer="1", n_samples=2, mode="auto")
    # the classifier in accuracy mode: the curve's last point (k = all features) equals its plain accuracy
    ex = DeltaExplorer(clf, (x, y), layer="1", n_samples=2, deltas=[0.5, 1.0], mode="accuracy")
    plain = float((clf(x).argmax(1) == y).double().mean())
    assert ex.mode == "accuracy" and ex.baseline == pytest.approx(plain)
    assert float(ex.metric[-1]) == pytest.approx(plain, abs=1e-6)


def test_view_state_names_are_the_python_traits():
    """Every name the view reads (js/delta_explorer.ts `interface State`) is a synced trait, and every synced
    trait of the widget is read by the view (anywidget's own `_esm`/`_css`/`_anywidget_id` and ipywidgets'
    DOM traits aside)."""
    import re
    from pathlib import Path

    src = (Path(__file__).resolve().parents[2] / "js" / "delta_explorer.ts").read_text()
    body = re.search(r"interface State \{(.*?)\n\}", src, re.S)
    assert body is not None
    names = set(re.findall(r"^\s*(\w+)\s*:", body.group(1), re.M))
    synced = set(DeltaExplorer.class_trait_names(sync=True))
    widget_base = {"_esm", "_css", "_anywidget_id", "_dom_classes", "_model_module", "_model_module_version",
                   "_model_name", "_view_count", "_view_module", "_view_module_version", "_view_name",
                   "layout", "tabbable", "tooltip", "comm", "keys", "log"}
    assert names <= synced, names - synced
    assert synced - widget_base - names == set(), synced - widget_base - names
