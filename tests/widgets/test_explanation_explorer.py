"""ExplanationExplorer without a browser: maps equal core's, the cache, kernel requests, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget import _remove_buffers
from torch import nn

import nbexplain as nx
from nbexplain.widgets import ExplanationExplorer


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


class Counter:
    """A user method that counts the samples it explained (to see what the cache saves)."""

    def __init__(self) -> None:
        self.seen = 0
        self.__name__ = "counted"

    def __call__(self, model, x, target):
        self.seen += x.shape[0]
        return nx.gradient(model, x, target).attribution * 2


def test_maps_and_scores_are_core_results(x):
    net = tiny_cnn()
    ex = ExplanationExplorer(net, x, methods=["gradient", "gradient_x_input", "lrp:epsilon", "integrated_gradients"],
                             method_options={"integrated_gradients": {"steps": 8}}, n_shown=2)
    assert ex.n_shown == 2 and ex.n_pool == 5
    pred = net(x).argmax(1)
    assert ex.targets == pred[:2].tolist() == ex.predicted
    maps = ex.maps_for(1)
    t = int(pred[1])
    assert np.allclose(maps["gradient"], nx.gradient(net, x[1:2], t).attribution[0, 0].numpy(), atol=1e-7)
    assert np.allclose(maps["lrp:epsilon"], nx.lrp(net, x[1:2], t, composite="epsilon").attribution[0, 0].numpy(), atol=1e-6)
    gxi = nx.gradient_x_input(net, x[1:2], t).attribution
    scores = ex.scores_for(1)
    f = float(net(x[1:2])[0, t].detach())
    assert scores["gradient_x_input"]["conservation"] == pytest.approx(float(gxi.sum()) / f, rel=1e-5)
    assert scores["gradient"]["conservation"] is None  # a gradient has no conservation property
    lrp = nx.lrp(net, x[1:2], t, composite="epsilon")
    assert scores["lrp:epsilon"]["conservation"] == pytest.approx(float(lrp.conservation[0]), rel=1e-5)
    cont = nx.continuity(lambda z: nx.gradient(net, z, t).attribution, x[1:2], shifts=[-1, 0, 1])
    assert scores["gradient"]["continuity"] == pytest.approx(float(cont.score[0]), rel=1e-5)
    assert ex.methods[0] == {"key": "gradient", "title": "gradient", "kind": "diverging"}
    assert "ExplanationExplorer(samples=2/5" in repr(ex)


def test_state_is_binary_and_small(x):
    ex = ExplanationExplorer(tiny_cnn(), x, methods=["gradient"], continuity_shifts=None)
    state, paths, buffers = _remove_buffers(ex.get_state())
    assert ["maps", "view"] in paths and ["images", "view"] in paths
    assert ex.maps.shape == (4, 1, 8, 8) and ex.images.shape == (4, 8, 8, 1)
    state.pop("_esm", None)
    assert len(json.dumps(state)) < 5000  # the rest is small JSON
    assert ex.entry_meta[0]["continuity"] == [None]


def test_switching_targets_computes_only_what_is_missing(x):
    counter = Counter()
    ex = ExplanationExplorer(tiny_cnn(), x, target=0, methods=[counter], n_shown=3, continuity_shifts=None)
    assert counter.seen == 3 and ex.entries == [[0, 0], [1, 0], [2, 0]]
    ex.targets = [1, 0, 2]
    assert counter.seen == 5  # two new (sample, target) pairs
    ex.targets = [0, 0, 0]  # all cached: no computation
    assert counter.seen == 5
    ex.targets = [1, 0, 2]
    assert counter.seen == 5
    assert np.allclose(ex.maps_for(0, 1)[counter.__name__], 2 * nx.gradient(ex._model, x[:1], 1).attribution[0, 0].numpy(), atol=1e-7)


def test_view_request_message(x):
    ex = ExplanationExplorer(tiny_cnn(), x, methods=["gradient"], n_shown=2, continuity_shifts=None)
    ex._handle_message(ex, {"type": "request", "id": 7, "targets": [2, 1], "n_shown": 2}, [])
    assert ex.completed_request == 7 and not ex.busy and ex.targets == [2, 1] and ex.error == ""
    assert [0, 2] in ex.entries and [1, 1] in ex.entries
    # adding rows: the new rows explain their predicted class
    ex._handle_message(ex, {"type": "request", "id": 8, "targets": [2, 1], "n_shown": 4}, [])
    assert ex.n_shown == 4 and ex.targets[:2] == [2, 1] and ex.targets[2:] == ex.predicted[2:]
    assert ex.images.shape[0] == 4
    # a bad request is reported in the view, the widget stays usable
    ex._handle_message(ex, {"type": "request", "id": 9, "targets": [9, 0, 0, 0], "n_shown": 4}, [])
    assert "outside" in ex.error and ex.completed_request == 9 and not ex.busy
    assert ex.targets[:2] == [2, 1]
    ex._handle_message(ex, {"type": "something else"}, [])
    assert ex.completed_request == 9


def test_add_samples_from_pool_and_new_inputs(x):
    ex = ExplanationExplorer(tiny_cnn(), x, methods=["gradient"], n_shown=2, add_step=2, continuity_shifts=None)
    ex.add_samples()
    assert ex.n_shown == 4
    ex.add_samples(torch.rand(2, 1, 8, 8), target=[0, 1])
    assert ex.n_shown == 6 and ex.n_pool == 7 and ex.targets[4:] == [0, 1]
    ex.add_samples()
    assert ex.n_shown == 7
    with pytest.raises(ValueError, match="Every sample"):
        ex.add_samples()
    with pytest.raises(ValueError, match="shaped"):
        ex.add_samples(torch.rand(1, 8, 8))


def test_cache_eviction_keeps_shown_entries(x):
    ex = ExplanationExplorer(tiny_cnn(), x, methods=["gradient"], n_shown=2, max_cache=3, continuity_shifts=None)
    for t in ([1, 1], [2, 2], [0, 0]):
        ex.targets = t
        assert len(ex.entries) <= 3
        assert [0, t[0]] in ex.entries and [1, t[1]] in ex.entries
    assert ex.maps.shape[0] == len(ex.entries) == len(ex.entry_meta)


def test_flat_inputs_with_image_shape_and_rde():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 3))
    xf = torch.rand(2, 36)
    ex = ExplanationExplorer(net, xf, image_shape=(6, 6), methods=["smoothgrad", "rde"], continuity_shifts=[0, 1],
                             method_options={"smoothgrad": {"n_samples": 4}, "rde": {"steps": 5, "n_noise": 4, "fractions": 2, "n_eval": 2, "n_random": 1}},
                             classes=["a", "b", "c"])
    assert ex.maps.shape == (2, 2, 6, 6) and ex.source_shape == [6, 6]
    assert ex.methods[1]["kind"] == "sequential"
    rde_map = ex.maps_for(0)["rde"]
    assert rde_map.min() >= 0 and rde_map.max() <= 1
    assert ex.classes == ["a", "b", "c"]
    assert all(v is not None for v in ex.entry_meta[0]["continuity"])


def test_model_left_as_found(x):
    net = tiny_cnn().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ExplanationExplorer(net, x, methods=["gradient", "smoothgrad", "lrp:epsilon_plus_flat"],
                        method_options={"smoothgrad": {"n_samples": 3}}, n_shown=2)
    assert net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(methods=["gradent"]), ValueError, "Did you mean 'gradient'"),
        (dict(methods=["lrp:epsilon_plus_flt"]), ValueError, "Did you mean 'epsilon_plus_flat'"),
        (dict(methods=[]), ValueError, "empty"),
        (dict(methods=["gradient", "gradient"]), ValueError, "duplicates"),
        (dict(methods=[3]), TypeError, "method name"),
        (dict(target=5), ValueError, "outside"),
        (dict(target=[0, 1]), ValueError, "entries"),
        (dict(classes=["a"]), ValueError, "labels"),
        (dict(continuity_shifts=[0]), ValueError, "two shifts"),
        (dict(opacty=0.5), TypeError, "Did you mean 'opacity'"),
        (dict(image_shape=(3, 3)), ValueError, "image_shape"),
    ],
)
def test_bad_arguments(x, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ExplanationExplorer(tiny_cnn(), x, **{"methods": ["gradient"], **kwargs})


def test_bad_inputs():
    with pytest.raises(ValueError, match="not images"):
        ExplanationExplorer(nn.Linear(4, 2), torch.rand(3, 4))
    with pytest.raises(TypeError, match="nn.Module"):
        ExplanationExplorer("net", torch.rand(3, 1, 4, 4))
    with pytest.raises(ValueError, match="empty"):
        ExplanationExplorer(tiny_cnn(), torch.rand(0, 1, 8, 8))
    ex = ExplanationExplorer(tiny_cnn(), torch.rand(2, 1, 8, 8), methods=["gradient"], continuity_shifts=None)
    with pytest.raises(ValueError, match="outside"):
        ex.targets = [0, 7]
    assert ex.targets[1] != 7


def test_default_opacity_keeps_the_colour_bar_true(x):
    """Issue 14 item 3: maps are opaque by default (input beside them and outlined on them); the slider stays."""
    assert ExplanationExplorer(tiny_cnn(), x, methods=["gradient"], n_shown=1).opacity == 1.0
    assert ExplanationExplorer(tiny_cnn(), x, methods=["gradient"], n_shown=1, opacity=0.3).opacity == 0.3
