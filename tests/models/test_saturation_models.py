"""Saturation tracking, δ projection and probes on real architectures, against cloned features.

References: ``torch.cov`` in float64 of what the layer produced (cloned in a hook, so later in-place writes
cannot change it), the projection x ↦ μ + P Pᵀ (x − μ) applied by a hook of our own along the layer's
feature axis (channels for conv maps, the last axis for tokens), and a linear probe fitted on pooled
cloned features.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core.feature_space.probes import fit_linear_probe
from tests.models.reference import channel_features, produced, token_features
from tests.models.state import assert_same, dress, snapshot, untouched
from tests.models.zoo import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (case, layer, feature-last?) — conv maps written in place later, and token outputs (N, T, D).
LAYERS = [
    ("resnet18", "layer1.0.bn2", False),
    ("bottleneck", "layer1.0.bn3", False),
    ("conv_bn_relu", "1", False),
    ("depthwise", "bn", False),
    ("V", "block", True),
    ("vit", "encoder.layers.0", True),
    ("lstm", "emb", True),
]


def _features(out: torch.Tensor, tokens: bool) -> torch.Tensor:
    return token_features(out) if tokens else channel_features(out)


def _check_moments(stats: Any, feats: torch.Tensor) -> None:
    f = feats.double()
    assert stats.count == f.shape[0]
    assert stats.n_features == f.shape[1]
    cov = torch.cov(f.T, correction=0)
    scale = float(cov.diagonal().max())
    # float32 batch covariances (after centring) merged in float64: relative error ~1e-6 of the scale
    torch.testing.assert_close(stats.mean.cpu(), f.mean(0), rtol=1e-5, atol=1e-5 * scale**0.5)
    torch.testing.assert_close(stats.covariance.cpu(), cov, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize(("name", "layer", "tokens"), LAYERS)
def test_layer_statistics_are_those_of_the_produced_features(name: str, layer: str, tokens: bool) -> None:
    net, case = build(name)
    x = case.x(6)
    feats = _features(produced(net, x, [layer])[layer][0], tokens)
    dress(net, case.hook_layer)
    with untouched(net):
        stats = nx.layer_statistics(net, x, [layer], batch_size=4)[layer]
    _check_moments(stats, feats)


@pytest.mark.parametrize(("name", "layer", "tokens"), [LAYERS[0], LAYERS[4]])
def test_tracker_in_a_training_loop_sees_what_the_layer_produced(name: str, layer: str, tokens: bool) -> None:
    net, case = build(name)
    net.train()
    dress(net, case.hook_layer)
    before = snapshot(net)
    kept: list[torch.Tensor] = []
    mine = dict(net.named_modules())[layer].register_forward_hook(lambda _m, _i, o: kept.append(o.detach().clone()))
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01)
    with nx.SaturationTracker(net, [layer], delta=0.99) as tracker:
        for step in range(3):
            loss = net(case.x(4, seed=10 + step)).logsumexp(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        stats = tracker.stats[layer]
        _check_moments(stats, torch.cat([_features(o, tokens) for o in kept]))
        record = tracker.end_epoch()
    mine.remove()
    assert_same(before, net, "SaturationTracker", values=False)  # the user's optimiser changed the weights
    feats = torch.cat([_features(o, tokens) for o in kept]).double()
    eig = torch.linalg.eigvalsh(torch.cov(feats.T, correction=0)).flip(0)
    width = feats.shape[1]
    assert record.saturation("train")[layer] == pytest.approx(nx.intrinsic_dimension(eig, 0.99) / width)


def _projecting_hook(proj: nx.DeltaProjection, tokens: bool):
    basis, mean = proj.basis.double(), proj.mean.double()

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
        o = out.double() if tokens else out.double().movedim(1, -1)
        p = mean + ((o - mean) @ basis) @ basis.T
        return (p if tokens else p.movedim(-1, 1)).to(out.dtype)

    return hook


def _manual(net: nn.Module, x: torch.Tensor, layer: str, proj: nx.DeltaProjection, tokens: bool) -> Any:
    h = dict(net.named_modules())[layer].register_forward_hook(_projecting_hook(proj, tokens))
    try:
        with torch.no_grad():
            return net(x)
    finally:
        h.remove()


@pytest.mark.parametrize(("name", "layer", "tokens"), [LAYERS[0], LAYERS[4], LAYERS[5]])
def test_projection_acts_on_the_feature_axis(name: str, layer: str, tokens: bool) -> None:
    net, case = build(name)
    x = case.x(6)
    stats = nx.layer_statistics(net, x, [layer])[layer]
    width = produced(net, x[:1], [layer])[layer][0].shape[-1 if tokens else 1]
    assert stats.n_features == width
    proj = nx.DeltaProjection(stats, k=3)
    want = _manual(net, x, layer, proj, tokens)
    dress(net, case.hook_layer)
    with untouched(net), torch.no_grad():
        with proj.inserted(net, layer):
            got = net(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    with untouched(net):
        outs = nx.projected_outputs(net, x, layer, stats, ks=[1, 3, width])
    for k, o in zip([1, 3, width], outs, strict=True):
        ref = _manual(net, x, layer, nx.DeltaProjection(stats, k=k), tokens)
        torch.testing.assert_close(o, ref, rtol=1e-4, atol=1e-5, msg=f"k={k}")


@pytest.mark.parametrize("name", ["tuple", "dict"])
def test_projection_and_delta_curve_on_multi_output_models(name: str) -> None:
    net, case = build(name)
    x = case.x(12)
    layer, sel = case.channel_layer, case.output
    stats = nx.layer_statistics(net, x, [layer])[layer]
    dress(net, case.hook_layer)
    with untouched(net):
        outs = nx.projected_outputs(net, x, layer, stats, ks=[1, 2], output=sel)
    assert outs.shape == (2, 12, case.n_classes)
    for k, o in zip([1, 2], outs, strict=True):
        raw = _manual(net, x, layer, nx.DeltaProjection(stats, k=k), False)
        torch.testing.assert_close(o, raw[sel], rtol=1e-4, atol=1e-5)
    y = torch.arange(12) % case.n_classes
    with untouched(net):
        curve = nx.delta_curve(net, x, layer, stats, deltas=[0.5, 0.9, 1.0], labels=y, output=sel)
    with torch.no_grad():
        plain = net(x)[sel]
    assert curve.baseline == pytest.approx(float((plain.argmax(1) == y).double().mean()))
    for k, eig, rnd in zip(curve.ks.tolist(), curve.eigen.tolist(), curve.random.tolist(), strict=True):
        for subspace, value in (("eigen", eig), ("random", rnd)):
            out = _manual(net, x, layer, nx.DeltaProjection(stats, k=k, subspace=subspace, seed=0), False)[sel]
            assert value == pytest.approx(float((out.argmax(1) == y).double().mean())), (k, subspace)
    with pytest.raises(ValueError, match="output"):
        with untouched(net):
            nx.delta_curve(net, x, layer, stats, deltas=[0.5], labels=y, output="nope")


def test_delta_curve_on_a_conv_transpose_autoencoder() -> None:
    net, case = build("convtranspose")
    x = case.x(6)
    layer = "encoder.2"
    stats = nx.layer_statistics(net, x, [layer])[layer]
    dress(net, case.hook_layer)
    with untouched(net):
        curve = nx.delta_curve(net, x, layer, stats, deltas=[0.5, 1.0], metric="reconstruction")
    assert curve.metric == "reconstruction"
    for k, eig in zip(curve.ks.tolist(), curve.eigen.tolist(), strict=True):
        out = _manual(net, x, layer, nx.DeltaProjection(stats, k=k), False)
        assert eig == pytest.approx(float((out.double() - x.double()).pow(2).mean()), rel=1e-5)


@pytest.mark.parametrize(("name", "layer", "tokens"), [LAYERS[0], LAYERS[2], LAYERS[4]])
def test_probe_reads_the_produced_pooled_features(name: str, layer: str, tokens: bool) -> None:
    net, case = build(name)
    x = case.x(80)
    out = produced(net, x, [layer])[layer][0]
    pooled = out.mean(1) if tokens else out.flatten(2).mean(2)
    y = (pooled[:, 0] > pooled[:, 0].median()).long()  # a label the true features carry
    fit = fit_linear_probe(pooled[:40], y[:40], pooled[40:], y[40:], n_classes=2)
    dress(net, case.hook_layer)
    try:
        with untouched(net):
            acc = nx.probe_accuracy(net, (x[:40], y[:40]), (x[40:], y[40:]), [layer])
    except ValueError as err:  # token layers: allowed only if the error says how to pool
        assert tokens and "conv=" in str(err), err
        return
    # LBFGS on features equal up to float32 rounding: at most one test sample may flip
    assert abs(acc[layer] - fit.test_accuracy) <= 1 / 40 + 1e-6


def test_tracker_counts_tokens_as_samples_of_features() -> None:
    net, case = build("V")
    x = case.x(4)
    with untouched(net):
        with nx.SaturationTracker(net, ["block", "patch"]) as tracker:
            with torch.no_grad():
                net(x)
            record = tracker.end_epoch()
    assert tracker.eval_stats["block"].n_features == 8
    assert tracker.eval_stats["block"].count == 4 * 16
    assert set(record.saturation("eval")) == {"block", "patch"}


def test_float64_model_and_channels_last_inputs_give_the_float32_statistics() -> None:
    net, case = build("resnet18")
    x = case.x(4)
    layer = case.channel_layer
    want = nx.layer_statistics(net, x, [layer])[layer]
    got_cl = nx.layer_statistics(net, x.to(memory_format=torch.channels_last), [layer])[layer]
    net64 = net.double()
    with untouched(net64):
        got64 = nx.layer_statistics(net64, x, [layer])[layer]  # float32 inputs cast to the model's dtype
    scale = float(want.covariance.diagonal().max())
    for got in (got_cl, got64):
        assert got.count == want.count
        torch.testing.assert_close(got.covariance, want.covariance, rtol=1e-4, atol=1e-5 * scale)


def test_tracker_and_inserted_projection_leave_the_model_as_found_when_the_block_raises() -> None:
    net, case = build("resnet18")
    dress(net, case.hook_layer)
    x = case.x(2)
    stats = nx.layer_statistics(net, x, [case.channel_layer])[case.channel_layer]
    with pytest.raises(RuntimeError, match="user code failed"):
        with untouched(net):
            with nx.SaturationTracker(net, [case.channel_layer, "fc"]):
                net(x)
                raise RuntimeError("user code failed")
    with pytest.raises(RuntimeError, match="user code failed"):
        with untouched(net):
            with nx.DeltaProjection(stats, k=2).inserted(net, case.channel_layer):
                net(x)
                raise RuntimeError("user code failed")
    with pytest.raises(ValueError, match="ks"):
        with untouched(net):
            nx.projected_outputs(net, x, case.channel_layer, stats, ks=[])
