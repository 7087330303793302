"""ComplexityViewer: precomputed state for every order/channel, binary serialization, errors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.widgets.complexity_viewer import METRICS, ComplexityViewer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: one thread is faster


@pytest.fixture(scope="module")
def conv_result():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1)), ("relu1", nn.ReLU()), ("pool", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 8, 3, padding=1)), ("relu2", nn.ReLU()), ("flatten", nn.Flatten()),
        ("out", nn.Linear(8 * 4 * 4, 3)),
    ]))
    x = torch.rand(120, 1, 8, 8)
    y = torch.randint(0, 3, (120,))
    res = nx.decompose_complexity(net, (x[:90], y[:90]), (x[90:], y[90:]), "conv2", orders=(0, 1, 2), epochs=1,
                                  width=8, progress=False, reference_epochs=1)
    return res, x


@pytest.fixture(scope="module")
def dense_result():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([("fc1", nn.Linear(5, 40)), ("act", nn.Tanh()), ("out", nn.Linear(40, 2))]))
    x = torch.randn(100, 5)
    y = torch.randint(0, 2, (100,))
    res = nx.decompose_complexity(net, (x[:80], y[:80]), (x[80:], y[80:]), "act", orders=(1, 2), epochs=1, width=8,
                                  progress=False, reference_model=False)
    return res, x


def test_images_state_matches_core(conv_result):
    res, x = conv_result
    v = ComplexityViewer(res, x[:5], n_channels=3)
    assert v.kind == "images" and v.layer == "conv2" and v.orders == [0, 1, 2]
    assert v.feature.shape == (5, 3, 4, 4)
    assert v.recon.shape == (3, 5, 3, 4, 4) and v.components.shape == (3, 5, 3, 4, 4)
    assert v.inputs.shape == (5, 8, 8, 1) and v.inputs.dtype == np.uint8
    # offered channels = largest feature variance over the shown samples
    f = res.features(x[:5])
    var = f.double().transpose(0, 1).reshape(8, -1).var(dim=1)
    assert v.channels == torch.argsort(var, descending=True)[:3].tolist()
    idx = torch.tensor(v.channels)
    assert np.allclose(v.feature, f[:, idx].numpy(), atol=1e-6)
    assert np.allclose(v.recon, res.reconstructions(x[:5])[:, :, idx].numpy(), atol=1e-6)
    assert np.allclose(v.components.sum(0), v.recon[-1], atol=1e-5)
    assert np.allclose(v.components, res.components(x[:5])[:, :, idx].numpy(), atol=1e-5)
    assert v.order_index == 2 and v.order == 2 and v.selected_order == 0
    assert v.metric_names == list(METRICS)
    for i, name in enumerate(METRICS):
        assert np.allclose(v.metrics[i], getattr(res, name).numpy(), atol=1e-6)
    assert all(all(row) for row in v.metric_valid)
    assert repr(v) == "ComplexityViewer(layer=conv2, orders=(0, 1, 2), samples=5, kind=images)"


def test_tensors_travel_as_binary_buffers(conv_result):
    res, x = conv_result
    v = ComplexityViewer(res, x[:4])
    state = v.get_state()
    for key in ("feature", "recon", "components", "inputs", "metrics"):
        assert isinstance(state[key]["view"], memoryview), key
    assert state["recon"]["dtype"] == "float32" and state["inputs"]["dtype"] == "uint8"
    assert sum(np.asarray(getattr(v, k)).nbytes for k in ("feature", "recon", "components")) < 4_000_000


def test_bars_for_vector_features_and_missing_reliability(dense_result):
    res, x = dense_result
    v = ComplexityViewer(res, x[:3], titles=["a", "b", "c"], max_bars=10)
    assert v.kind == "bars" and v.feature.shape == (3, 10) and v.recon.shape == (2, 3, 10)
    assert v.inputs.shape == (0,)
    rel = METRICS.index("reliability")
    assert v.metric_valid[rel] == [False, False] and np.all(v.metrics[rel] == 0)
    assert v.titles == ["a", "b", "c"]
    f = res.features(x[:3])
    assert np.allclose(v.feature, f[:, v.channels].numpy(), atol=1e-6)


def test_order_and_samples_from_python(conv_result):
    res, x = conv_result
    v = ComplexityViewer(res, x[:2], order=1, channels=[0, 5])
    assert v.order_index == 1 and v.channels == [0, 5]
    v.order = 0
    assert v.order_index == 0
    v.set_samples(x[10:13], titles=["p", "q", "r"])
    assert v.titles == ["p", "q", "r"] and v.feature.shape[0] == 3
    assert v.order_index == 0  # kept across sample changes
    with pytest.raises(ValueError, match="one of"):
        v.order = 7


def test_bad_inputs(conv_result):
    res, x = conv_result
    with pytest.raises(TypeError, match="ComplexityResult"):
        ComplexityViewer("result", x[:2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 16"):
        ComplexityViewer(res, x[:20])
    with pytest.raises(ValueError, match="shape"):
        ComplexityViewer(res, torch.rand(2, 1, 6, 6))
    with pytest.raises(ValueError, match="titles"):
        ComplexityViewer(res, x[:2], titles=["one"])
    with pytest.raises(ValueError, match="channels"):
        ComplexityViewer(res, x[:2], channels=[99])
    with pytest.raises(ValueError, match="order"):
        ComplexityViewer(res, x[:2], order=5)
    with pytest.raises(TypeError, match="n_channel"):
        ComplexityViewer(res, x[:2], n_channel=3)
    with pytest.raises(ValueError, match="non-finite"):
        ComplexityViewer(res, torch.full((2, 1, 8, 8), float("nan")))


def test_lazy_export():
    from nbexplain import widgets

    assert widgets.ComplexityViewer is ComplexityViewer


def test_image_like_flat_feature_is_drawn_as_images():
    torch.manual_seed(0)
    ae = nn.Sequential(OrderedDict([("flatten", nn.Flatten()), ("enc", nn.Linear(36, 8)), ("act", nn.ReLU()),
                                    ("dec", nn.Linear(8, 36))]))
    x = torch.rand(60, 1, 6, 6)
    y = x.flatten(1)
    res = nx.decompose_complexity(ae, (x[:40], y[:40]), (x[40:], y[40:]), "dec", orders=(0, 1), epochs=1,
                                  width=8, progress=False, reference_model=False)
    assert res.feature_shape == (36,)
    v = ComplexityViewer(res, x[:3])
    assert v.kind == "images" and v.feature.shape == (3, 1, 6, 6) and v.recon.shape == (2, 3, 1, 6, 6)
    assert np.allclose(v.feature.reshape(3, 36), res.features(x[:3]).numpy(), atol=1e-6)


def _reference_limits(res, x, chans):
    """Float64 from the core: the largest |value| of the offered channels' feature and reconstructions, of the
    components, and each metric's range over its finite values and 0."""
    idx = torch.tensor(chans)
    f = res.features(x).double()[:, idx]
    g = res.reconstructions(x).double()[:, :, idx]
    c = res.components(x).double()[:, :, idx]
    charts = {}
    for name in METRICS[:4]:
        vals = [v for v in getattr(res, name).double().tolist() if np.isfinite(v)]
        charts[name] = (min([0.0, *vals]), max([0.0, *vals]))
    return max(float(f.abs().max()), float(g.abs().max())), float(c.abs().max()), charts


def test_viewers_share_one_scale(conv_result):
    res, x = conv_result
    torch.manual_seed(1)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1)), ("relu1", nn.ReLU()), ("pool", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 8, 3, padding=1)), ("relu2", nn.ReLU()), ("flatten", nn.Flatten()),
        ("out", nn.Linear(8 * 4 * 4, 3)),
    ]))
    y = torch.randint(0, 3, (120,))
    res_b = nx.decompose_complexity(net, (x[:90], y[:90]), (x[90:], y[90:]), "conv2", orders=(0, 1, 2), epochs=1,
                                    width=8, progress=False, reference_epochs=1, seed=1)
    a = ComplexityViewer(res, x[:4], n_channels=3)
    assert (a.feature_limit, a.component_limit, a.chart_limits) == (0.0, 0.0, {})  # alone: automatic scales
    b = ComplexityViewer(res_b, x[4:8], n_channels=2, share_scales_with=a)
    fa, ca, ka = _reference_limits(res, x[:4], a.channels)
    fb, cb, kb = _reference_limits(res_b, x[4:8], b.channels)
    assert fa != pytest.approx(fb)  # the two would be drawn on different scales on their own
    for v in (a, b):
        assert v.feature_limit == pytest.approx(max(fa, fb), rel=1e-5)
        assert v.component_limit == pytest.approx(max(ca, cb), rel=1e-5)
        assert set(v.chart_limits) == {"energy", "reliability", "effectiveness", "overfitting"}
        for name, (lo, hi) in v.chart_limits.items():
            assert lo == pytest.approx(min(ka[name][0], kb[name][0]), rel=1e-5, abs=1e-7), name
            assert hi == pytest.approx(max(ka[name][1], kb[name][1]), rel=1e-5, abs=1e-7), name
    assert a.own_limits()["feature"] == pytest.approx(fa, rel=1e-5)

    # new samples in one viewer: the whole group follows
    a.set_samples(x[8:12])
    fa2, ca2, _ = _reference_limits(res, x[8:12], a.channels)
    for v in (a, b):
        assert v.feature_limit == pytest.approx(max(fa2, fb), rel=1e-5)
        assert v.component_limit == pytest.approx(max(ca2, cb), rel=1e-5)

    with pytest.raises(TypeError, match="ComplexityViewer"):
        a.share_scales(res_b)
