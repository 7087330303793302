"""svcca_compression: the layer's output replaced by its SVCCA projection, checked against a float64 reference
(the least-squares reconstruction of the features from their top variates), beside the eigen and random
controls."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.zoo import mlp


def _data(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    return x, y


def _trained(seed: int, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    net = mlp(10, (24, 12), n_classes=3, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def test_the_projection_is_the_least_squares_reconstruction_from_the_top_variates():
    x, y = _data()
    a, b = _trained(0, x, y), _trained(1, x, y)
    fa = nx.activations(a, x, "relu1")["relu1"].double()
    d = nx.svcca_directions(fa, nx.activations(b, x, "relu1")["relu1"].double(), keep=0.99)
    for k in (1, 3, d.coefficients.numel()):
        z = d.x_variates[:, :k].numpy()
        coef = np.linalg.lstsq(z, (fa - fa.mean(0)).numpy(), rcond=None)[0]
        ref = fa.mean(0).numpy() + z @ coef
        np.testing.assert_allclose(d.project_x(fa, k).numpy(), ref, atol=1e-10)
        torch.testing.assert_close(d.project_x(d.project_x(fa, k), k), d.project_x(fa, k))  # a projection
    with pytest.raises(ValueError, match="`k`"):
        d.project_x(fa, d.coefficients.numel() + 1)


def test_accuracy_under_each_projection_matches_running_the_projected_features_by_hand():
    x, y = _data(seed=1)
    a, b = _trained(0, x, y), _trained(1, x, y)
    def feats(net: nn.Module) -> torch.Tensor:
        return nx.activations(net, x, "relu1")["relu1"]

    d = nx.svcca_directions(feats(a), feats(b), keep=0.99)
    res = nx.svcca_compression(a, x, "relu1", d, labels=y, ks=[1, 2, 4])
    head = nn.Sequential(copy.deepcopy(a.fc2), nn.ReLU(), copy.deepcopy(a.out))
    for i, k in enumerate(res.ks):
        with torch.no_grad():
            logits = head(d.project_x(feats(a), k).float())  # the model computes on in its own dtype
        assert float(res.svcca[i]) == pytest.approx(float((logits.argmax(1) == y).double().mean()), abs=1e-12)
    stats = nx.layer_statistics(a, x, ["relu1"])["relu1"]
    for i, k in enumerate(res.ks):
        with nx.DeltaProjection(stats, k=k).inserted(a, "relu1"), torch.no_grad():
            assert float(res.eigen[i]) == float((a(x).argmax(1) == y).double().mean())
    assert res.baseline == float((a(x).argmax(1) == y).double().mean())
    assert res.baseline > 0.8  # a trained network, so the comparison means something


def test_all_directions_keep_the_accuracy():
    x, y = _data(seed=2)
    a, b = _trained(0, x, y), _trained(1, x, y)
    fa, fb = (nx.activations(n, x, "fc1")["fc1"] for n in (a, b))
    d = nx.svcca_directions(fa, fb, keep=1.0)  # fc1 is linear in the 10-D input: 10 directions, the whole span
    res = nx.svcca_compression(a, x, "fc1", d, labels=y)
    assert res.ks[-1] == d.coefficients.numel() == 10
    assert float(res.svcca[-1]) == pytest.approx(res.baseline, abs=1e-12)
    assert float(res.eigen[-1]) == pytest.approx(res.baseline, abs=1e-12)


def test_conv_layers_are_projected_per_position_and_the_model_is_left_as_found():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    other = nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU())
    x = torch.randn(60, 1, 6, 6)
    y = torch.randint(0, 3, (60,))
    fa = nx.activations(net, x, "1")["1"]   # (60·36, 6): positions as samples
    fb = nx.activations(other, x, "1")["1"]
    d = nx.svcca_directions(fa, fb, keep=1.0)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = nx.svcca_compression(net, x, "1", d, labels=y, ks=[2])
    net.eval()
    with torch.no_grad():
        maps = net[1](net[0](x))
        proj = d.project_x(maps.movedim(1, -1).reshape(-1, 6).double(), 2).reshape(60, 6, 6, 6).movedim(-1, 1)
        logits = net[4](net[3](net[2](proj.float())))
    assert float(res.svcca[0]) == pytest.approx(float((logits.argmax(1) == y).double().mean()), abs=1e-12)
    net.train()
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert not net._forward_hooks and not net[1]._forward_hooks


def test_bad_arguments():
    x, y = _data(n=100)
    a = mlp(10, (8,), n_classes=3, seed=0)
    f = nx.activations(a, x, "fc1")["fc1"]
    d = nx.svcca_directions(f, f.flip(1), keep=1.0)
    with pytest.raises(TypeError, match="svcca_directions"):
        nx.svcca_compression(a, x, "fc1", {"x": 1}, labels=y)
    with pytest.raises(ValueError, match="labels"):
        nx.svcca_compression(a, x, "fc1", d, labels=y[:10])
    with pytest.raises(ValueError, match="`ks`"):
        nx.svcca_compression(a, x, "fc1", d, labels=y, ks=[99])
    with pytest.raises(ValueError, match="features"):
        nx.svcca_compression(a, x, "out", d, labels=y)
    with pytest.raises(ValueError, match="side"):
        nx.svcca_compression(a, x, "fc1", d, labels=y, side="z")
