"""Layer layouts and captured values on the architectures people bring (issue: real models).

Every expected value comes from an independent computation: a forward hook that stores ``out.clone()`` (the
value the layer produced), reshaped by hand for the layout the module has.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.architectures import BasicBlock, resnet18, settle_batch_norm, vit
from nbexplain.core._base.capturing import StaleCaptureError


def produced(model: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    """The value ``name`` produced, cloned inside the hook before anything can write into it."""
    kept: list[torch.Tensor] = []
    module = dict(model.named_modules())[name]
    handle = module.register_forward_hook(lambda _m, _i, o: kept.append((o[0] if isinstance(o, tuple) else o).detach().clone()))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return kept[-1]


class V(nn.Module):
    """The issue's example: a patch conv, then a transformer layer on (N, T, D) tokens."""

    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.patch = nn.Conv2d(1, 8, 4, 4)
        self.block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=batch_first)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        if not self.batch_first:
            return self.act(self.block(t.transpose(0, 1))).transpose(0, 1).mean(1)
        return self.act(self.block(t)).mean(1)


class Conv1dNet(nn.Module):
    """A Conv1d net whose ReLU follows a functional residual add: (N, C, L) is channels-first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 5, 3, padding=1)
        self.conv2 = nn.Conv1d(5, 5, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.relu(h + self.conv2(h)).mean(2)


@pytest.fixture(autouse=True)
def _seed(one_torch_thread):
    torch.manual_seed(0)


# ------------------------------------------------------------------------------------- in-place writes
def test_issue_example_bn_before_inplace_relu_keeps_negative_values():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True)).eval()
    x = torch.randn(2, 1, 8, 8)
    truth = produced(net, x, "1")
    assert truth.min() < -0.5
    got = nx.activations(net, x, "1")["1"]
    torch.testing.assert_close(got, truth.movedim(1, -1).reshape(-1, 4))
    with nx.capture(net, "1") as out:
        for _ in range(3):  # first call learns, later calls keep copying
            net(x)
            torch.testing.assert_close(out["1"], truth)


@pytest.mark.parametrize("name", ["layer1.0.bn2", "layer2.0.bn2", "layer2.0.downsample.1", "layer1.0"])
def test_resnet_outputs_rewritten_by_residual_add_and_inplace_relu(name):
    net = resnet18(width=8)
    x = torch.rand(3, 3, 32, 32)
    truth = produced(net, x, name)
    got = nx.activations(net, x, name, conv="mean")[name]
    torch.testing.assert_close(got, truth.mean(dim=(2, 3)))
    if name != "layer1.0":
        assert truth.min() < 0  # batch norm before the ReLU: negative values the in-place ReLU erases


def test_similarity_grid_on_resnet_bn_layer_matches_svcca_of_produced_values():
    net = resnet18(width=8)
    x = torch.rand(24, 3, 32, 32)
    name = "layer1.0.bn2"
    truth = produced(net, x, name).movedim(1, -1).reshape(-1, 8).double()
    other = produced(net, x, "layer1.0.conv2").movedim(1, -1).reshape(-1, 8).double()
    res = nx.similarity_grid(net, x, [name], metric="cka", reference_layers=["layer1.0.conv2"], progress=False)
    assert float(res.grids["cka"][0, 0, 0]) == pytest.approx(float(nx.cka(truth, other).value), abs=1e-6)


class _SometimesInPlace(nn.Module):
    """Writes into the first layer's output only when the batch mean is positive (data-dependent)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        if float(x.mean()) > 0:
            h.mul_(0)
        return h


def test_a_later_data_dependent_write_is_never_returned_silently():
    net = _SometimesInPlace()
    neg, pos = -torch.rand(3, 4), torch.rand(3, 4)
    with torch.no_grad(), nx.capture(net, "lin") as out:
        net(neg)  # learns: not written
        net(pos)  # written after the hook: the stored value is stale
        with pytest.raises(StaleCaptureError, match="written in place"):
            out["lin"]
        net(pos)  # now copied
        torch.testing.assert_close(out["lin"], net.lin(pos))
    # run_layers repeats the batch: activations are exact for both batches
    got = nx.activations(net, torch.cat([neg, pos]), "lin", batch_size=3)["lin"]
    with torch.no_grad():
        torch.testing.assert_close(got, net.lin(torch.cat([neg, pos])))


# ------------------------------------------------------------------------------------------- layouts
def test_issue_example_token_layer_after_patch_conv_is_read_feature_last():
    net = V().eval()
    x = torch.rand(2, 1, 16, 16)
    got = nx.activations(net, x, ["block", "act", "patch"])
    truth = produced(net, x, "block")
    assert got["block"].shape == (32, 8)
    torch.testing.assert_close(got["block"], truth.reshape(-1, 8))
    torch.testing.assert_close(got["act"], produced(net, x, "act").reshape(-1, 8))
    assert got["patch"].shape == (32, 8)  # 2 images × 4×4 positions, 8 channels
    pooled = nx.activations(net, x, "block", conv="mean")["block"]
    torch.testing.assert_close(pooled, truth.mean(1))
    cls = nx.activations(net, x, "block", conv="cls")["block"]
    torch.testing.assert_close(cls, truth[:, 0])
    flat = nx.activations(net, x, "block", conv="flatten")["block"]
    torch.testing.assert_close(flat, truth.reshape(2, -1))


def test_sequence_first_transformer_layers_pool_over_the_right_axis():
    net = V(batch_first=False).eval()
    x = torch.rand(3, 1, 16, 16)
    truth = produced(net, x, "block")  # (T, N, D)
    assert truth.shape == (16, 3, 8)
    listed = nx.list_layers(net, kinds=[nn.TransformerEncoderLayer, nn.GELU], inputs=x)
    assert listed.layouts["block"] == "sequence_first"
    assert listed.layouts["act"] == "sequence_first"  # from its input
    torch.testing.assert_close(nx.activations(net, x, "block", conv="cls")["block"], truth[0])
    torch.testing.assert_close(nx.activations(net, x, "act", conv="mean")["act"], produced(net, x, "act").mean(0))


def test_layers_with_example_reports_each_layout_and_why():
    net = vit()
    listed = nx.list_layers(net, kinds="all", inputs=torch.rand(2, 1, 16, 16))
    assert listed.layouts["patch"] == "channels_first"
    assert listed.layouts["dropout"] == "features_last"  # after a functional flatten/transpose: its rank
    assert listed.layouts["encoder.layers.0.linear1"] == "features_last"
    assert listed.layouts["encoder.layers.0.dropout"] == "features_last"  # from its input (linear1)
    assert listed.shapes["encoder.layers.0.linear1"] == (2, 17, 32)
    assert "rank" in listed.reasons["dropout"]
    table = listed.table()
    assert "encoder.layers.0.linear1" in table and "features_last" in table
    c1 = nx.list_layers(Conv1dNet(), kinds="all", inputs=torch.rand(2, 3, 7))
    assert c1.layouts["relu"] == "channels_first"  # same shape as the last conv output
    assert c1.layouts["conv"] == "channels_first"


def test_containers_take_the_layout_of_what_they_return():
    net = resnet18(width=8)
    listed = nx.list_layers(net, kinds=[BasicBlock, nn.Sequential], inputs=torch.rand(2, 3, 32, 32))
    assert set(listed.layouts.values()) == {"channels_first"}


def test_layout_override_and_bad_values():
    net = V().eval()
    x = torch.rand(2, 1, 16, 16)
    forced = nx.activations(net, x, "block", layout={"block": "channels_first"})["block"]
    assert forced.shape == (2 * 8, 16)  # read as 16 channels of 8 positions, as asked
    with pytest.raises(ValueError, match="layout.*'tokens'"):
        nx.activations(net, x, "block", layout="tokens")
    with pytest.raises(ValueError, match="not among the analysed layers"):
        nx.activations(net, x, "block", layout={"blok": "features_last"})
    with pytest.raises(ValueError, match="Layer 'patch'.*cls"):
        nx.activations(net, x, "patch", conv="cls")


def test_tracker_on_token_layer_counts_tokens_as_samples_of_d_features():
    net = V().eval()
    x = torch.rand(5, 1, 16, 16)
    with nx.SaturationTracker(net, ["block", "patch"]) as tracker, torch.no_grad():
        net(x)
    assert tracker.layouts == {"block": "features_last", "patch": "channels_first"}
    assert "features_last" in repr(tracker)
    stats = tracker.eval_stats["block"]
    truth = produced(net, x, "block").reshape(-1, 8).double()
    assert stats.count == 5 * 16
    torch.testing.assert_close(stats.covariance, torch.cov(truth.T, correction=0), rtol=1e-5, atol=1e-7)
    pooled = nx.layer_statistics(net, x, "block", conv="cls")["block"]
    assert pooled.count == 5
    torch.testing.assert_close(pooled.mean, produced(net, x, "block")[:, 0].double().mean(0), rtol=1e-5, atol=1e-6)


def test_similarity_grid_on_token_layer_matches_svcca_of_token_features():
    net = V().eval()
    x = torch.rand(40, 1, 16, 16)
    a = produced(net, x, "block").reshape(-1, 8).double()
    b = produced(net, x, "act").reshape(-1, 8).double()
    res = nx.similarity_grid(net, x, ["block"], reference_layers=["act"], metric="svcca", progress=False)
    assert float(res.grids["svcca"][0, 0, 0]) == pytest.approx(float(nx.svcca(a, b).mean), abs=1e-6)
    assert res.layouts == {"block": "features_last", "act": "features_last"}
    assert "2 features_last" in repr(res)


def test_delta_projection_on_token_layer_projects_each_token():
    net = V().eval()
    x = torch.rand(6, 1, 16, 16)
    stats = nx.layer_statistics(net, x, "block")["block"]
    proj = nx.DeltaProjection(stats, 0.9)
    truth = produced(net, x, "block")
    inner: list[torch.Tensor] = []
    with proj.inserted(net, "block"), nx.capture(net, "act") as out, torch.no_grad():
        net(x)
        inner.append(out["act"])
    expected = net.act(proj.project(truth.reshape(-1, 8)).reshape(truth.shape))
    torch.testing.assert_close(inner[0], expected)


def test_maximize_activation_on_token_layer_takes_unit_as_a_feature():
    net = vit()
    with pytest.raises(ValueError, match="out of range.*16"):
        nx.maximize_activation(net, "encoder.layers.0", 16, (1, 16, 16), steps=2, progress=False)
    res = nx.maximize_activation(net, "norm", 3, (1, 16, 16), steps=15, progress=False, seed=0)
    assert float(res.trajectory[-1, 0]) > float(res.trajectory[0, 0]) + 0.05  # after a LayerNorm: not constant


def test_probe_accuracy_on_token_layer_pools_tokens():
    net = V().eval()
    x = torch.rand(60, 1, 16, 16)
    y = (x.mean(dim=(1, 2, 3)) > x.mean()).long()
    acc = nx.probe_accuracy(net, (x[:40], y[:40]), (x[40:], y[40:]), ["block"], max_iter=20)
    assert 0.0 <= acc["block"] <= 1.0


# ------------------------------------------------------------------------------------- bad inputs
def test_non_finite_inputs_are_a_clear_error_everywhere():
    net = V().eval()
    x = torch.rand(8, 1, 16, 16)
    x[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        nx.similarity_grid(net, x, ["block"], progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        nx.activations(net, x, "block")
    with pytest.raises(ValueError, match="non-finite"):
        nx.layer_statistics(net, x, "block")


def test_non_finite_layer_outputs_name_the_layer_in_grids():
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    with torch.no_grad():
        net[0].weight.fill_(3e38)
    with pytest.raises(ValueError, match="Layer '0' produced non-finite"):
        nx.similarity_grid(net, torch.ones(6, 3), ["0"], progress=False)


def test_meta_device_and_dtype_casting():
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(3, 2))
    for call in (lambda: nx.activations(meta, torch.rand(2, 3), "0"),
                 lambda: nx.layer_statistics(meta, torch.rand(2, 3), "0"),
                 lambda: nx.similarity_grid(meta, torch.rand(4, 3), ["0"], progress=False),
                 lambda: nx.list_layers(meta, inputs=torch.rand(2, 3))):
        with pytest.raises(ValueError, match="meta"):
            call()
    net = settle_batch_norm(nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)), torch.rand(4, 1, 6, 6))
    x = torch.rand(4, 1, 6, 6)
    ref = nx.activations(net, x, "1", dtype=torch.float64)["1"]
    net64 = net.double()
    got = nx.activations(net64, x, "1", dtype=torch.float64)["1"]  # float32 input, float64 model
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    stats = nx.layer_statistics(net64, x.to(memory_format=torch.channels_last), "1")["1"]
    assert stats.count == 4 * 16


def test_maximize_activation_reads_the_produced_value_with_or_without_early_exit():
    net = resnet18(width=8)
    kw = dict(steps=4, progress=False, seed=0, objective="channel")
    early = nx.maximize_activation(net, "layer1.0.bn2", 1, (3, 32, 32), early_exit=True, **kw)
    full = nx.maximize_activation(net, "layer1.0.bn2", 1, (3, 32, 32), early_exit=False, **kw)
    torch.testing.assert_close(full.trajectory, early.trajectory)
    assert float(early.trajectory.min()) < 0  # batch-norm output, before the in-place ReLU


def test_actmax_entry_points_refuse_meta_models():
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="meta"):
        nx.maximize_activation(meta, "0", 0, (3,), steps=2, progress=False)
    with pytest.raises(ValueError, match="meta"):
        nx.top_activating(meta, torch.rand(4, 3), "0", 0)


class SeqFirstLM(nn.Module):
    """A batch_first=False encoder (PyTorch's default) followed by a LayerNorm and a Linear on (T, N, D)."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(30, 16)
        layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(16)
        self.proj = nn.Linear(16, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.ln(self.enc(self.tok(ids).transpose(0, 1)))).mean(0)


def test_linear_and_layernorm_keep_a_sequence_first_batch_axis():
    net = SeqFirstLM().eval()
    ids = torch.randint(0, 30, (6, 9))
    truth = produced(net, ids, "ln")  # (T, N, D)
    assert truth.shape == (9, 6, 16)
    listed = nx.list_layers(net, kinds=[nn.LayerNorm, nn.Linear, nn.TransformerEncoder], inputs=ids)
    assert listed.layouts["ln"] == listed.layouts["proj"] == listed.layouts["enc"] == "sequence_first"
    assert listed.layouts["enc.layers.0.linear1"] == "sequence_first"
    got = nx.activations(net, ids, ["ln", "proj"], conv="cls")
    torch.testing.assert_close(got["ln"], truth[0])  # the first token of each of the 6 sequences
    torch.testing.assert_close(got["proj"], produced(net, ids, "proj")[0])
    with nx.SaturationTracker(net, ["ln"], conv="mean") as tracker, torch.no_grad():
        net(ids)
    assert tracker.eval_stats["ln"].count == 6
    torch.testing.assert_close(tracker.eval_stats["ln"].mean, truth.mean(0).double().mean(0), rtol=1e-5, atol=1e-6)
