"""Widgets that take a model, on a TorchScript or torch.compile'd model (no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.widgets import DeltaExplorer, ExplanationExplorer, FeatureGallery

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.compile'd:UserWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),
]


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    return net.eval()


X = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_explanation_explorer_runs_the_gradient_family_on_a_scripted_model() -> None:
    net = tiny_cnn()
    sm = torch.jit.script(net)
    ex = ExplanationExplorer(sm, X, methods=["gradient", "integrated_gradients"], n_shown=2,
                             method_options={"integrated_gradients": {"steps": 8}})
    t = int(net(X[1:2]).argmax(1))
    maps = ex.maps_for(1)
    assert np.allclose(maps["gradient"], nx.gradient(net, X[1:2], t).attribution[0, 0].numpy(), atol=1e-7)
    ig = nx.integrated_gradients(net, X[1:2], t, steps=8).attribution[0, 0].numpy()
    assert np.allclose(maps["integrated_gradients"], ig, atol=1e-6)


def test_explanation_explorer_names_the_lrp_methods_a_scripted_model_cannot_run() -> None:
    sm = torch.jit.script(tiny_cnn())
    with pytest.raises(TypeError, match=r"\['lrp:epsilon_plus_flat'\] \(leave them out of `methods`.*eager"):
        ExplanationExplorer(sm, X, methods=["gradient", "lrp:epsilon_plus_flat"])


def test_explanation_explorer_on_a_compiled_model_equals_the_eager_one() -> None:
    net = tiny_cnn()
    model = torch.compile(net, backend="eager")
    with torch.no_grad():
        model(X)
    methods = ["gradient", "lrp:epsilon"]
    got = ExplanationExplorer(model, X, methods=methods, n_shown=2).maps_for(0)
    want = ExplanationExplorer(net, X, methods=methods, n_shown=2).maps_for(0)
    for m in methods:
        assert np.array_equal(got[m], want[m]), m


def test_delta_explorer_and_feature_gallery_on_a_compiled_model() -> None:
    torch.manual_seed(0)
    ae = nx.zoo.dense_autoencoder(64, (16,), code=4, seed=0)
    x = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    model = torch.compile(ae, backend="eager")
    with torch.no_grad():
        model(x)
    got, want = DeltaExplorer(model, x, n_samples=3), DeltaExplorer(ae, x, n_samples=3)
    assert got.layer == want.layer == "encoder.code"
    assert np.array_equal(got.recon, want.recon) and np.array_equal(got.metric, want.metric)
    net = tiny_cnn()
    cnn = torch.compile(net, backend="eager")
    g = FeatureGallery(cnn, X, "_orig_mod.0", [0, 1], steps=3, k=2, progress=False)
    h = FeatureGallery(net, X, "0", [0, 1], steps=3, k=2, progress=False)
    assert np.array_equal(g.images, h.images)
