"""nx.list_layers, nx.capture and nx.activations against manual forwards; hook hygiene; bad input."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain import zoo
from nbexplain.core._base.capturing import iter_batches, to_features
from nbexplain.core._base.hygiene import ModelSnapshot


def _state(model: nn.Module) -> dict:
    """Everything a call must leave untouched, in comparable form."""
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        },
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: p.grad for n, p in model.named_parameters()},
    }


def _assert_same(before: dict, model: nn.Module) -> None:
    after = _state(model)
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert before["requires_grad"] == after["requires_grad"]
    assert all(after["grads"][k] is v for k, v in before["grads"].items())
    for k, v in before["params"].items():
        assert torch.equal(v, after["params"][k]), k


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.block = nn.ModuleDict({"conv": nn.Conv2d(4, 6, 3), "act": nn.Tanh()})
        self.head = nn.Sequential(OrderedDict(flat=nn.Flatten(), fc=nn.Linear(6 * 6 * 6, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block["act"](self.block["conv"](self.stem(x))))


class Reordered(nn.Module):
    """Registered in one order, run in another."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Linear(5, 2)
        self.early = nn.Linear(3, 5)
        self.unused = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.late(torch.relu(self.early(x)))


def test_layers_on_sequential_nested_and_conv_models() -> None:
    assert nx.list_layers(zoo.mlp(64, (32, 16))) == ["fc1", "fc2", "out"]
    assert nx.list_layers(zoo.cnn()) == ["conv1", "conv2", "fc1", "out"]
    assert nx.list_layers(Nested()) == ["stem.0", "block.conv", "head.fc"]
    assert nx.list_layers(Nested(), kinds="activation") == ["stem.1", "block.act"]
    assert nx.list_layers(Nested(), kinds="all") == ["stem.0", "stem.1", "block.conv", "block.act", "head.flat", "head.fc"]
    assert nx.list_layers(zoo.cnn(), kinds=["norm", nn.MaxPool2d]) == ["bn1", "pool1", "bn2", "pool2"]


def test_layers_forward_order_with_example() -> None:
    net = Reordered()
    assert nx.list_layers(net) == ["late", "early", "unused"]
    assert nx.list_layers(net, inputs=torch.randn(2, 3)) == ["early", "late"]


def test_layers_rejects_bad_kinds() -> None:
    with pytest.raises(ValueError, match="Did you mean 'conv'"):
        nx.list_layers(zoo.cnn(), kinds="cnov")
    with pytest.raises(TypeError, match="kinds"):
        nx.list_layers(zoo.cnn(), kinds=[3])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        nx.list_layers({"a": 1})


def test_capture_equals_manual_forward() -> None:
    net = Nested().eval()
    x = torch.randn(3, 1, 8, 8)
    with nx.capture(net, ["stem.0", "block.conv", "head.fc"]) as out:
        y = net(x)
    s = net.stem[0](x)
    c = net.block["conv"](net.stem[1](s))
    assert torch.equal(out["stem.0"], s)
    assert torch.equal(out["block.conv"], c)
    assert torch.equal(out["head.fc"], y)
    assert not out["head.fc"].requires_grad


def test_capture_keeps_graph_when_asked_and_records_repeated_calls() -> None:
    lin = nn.Linear(3, 3)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = lin

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(self.lin(x))

    net = Twice()
    x = torch.randn(2, 3)
    with nx.capture(net, "lin", detach=False) as out:
        net(x)
    assert len(out.calls["lin"]) == 2
    assert torch.allclose(out["lin"], lin(lin(x)))
    assert out["lin"].requires_grad


def test_capture_removes_hooks_and_restores_state_when_forward_raises() -> None:
    net = zoo.cnn()
    net.train()
    net.bn1.eval()  # a mixed mode must survive too
    before = _state(net)

    class Boom(RuntimeError):
        pass

    def explode(_m: nn.Module, _i: object, _o: object) -> None:
        raise Boom("injected mid-forward")

    handle = net.conv2.register_forward_hook(explode)  # the user's own hook, registered before the call
    before = _state(net)
    with pytest.raises(Boom):
        with nx.capture(net, ["conv1", "fc1"]):
            net(torch.rand(2, 1, 28, 28))
    _assert_same(before, net)
    assert list(net.conv2._forward_hooks.values()) == [explode], "the user's own hook stays"
    handle.remove()


def test_activations_shapes_and_values_match_manual_features() -> None:
    net = zoo.cnn().eval()
    x = torch.rand(10, 1, 28, 28)
    feats = nx.activations(net, x, ["conv1", "fc1"], batch_size=3)
    with torch.no_grad():
        c1 = net.conv1(x)
        h = net.pool2(net.relu2(net.bn2(net.conv2(net.pool1(net.relu1(net.bn1(c1)))))))
        f1 = net.fc1(h.flatten(1))
    assert feats["conv1"].shape == (10 * 28 * 28, 16)
    assert torch.allclose(feats["conv1"], c1.permute(0, 2, 3, 1).reshape(-1, 16), atol=1e-6)
    assert torch.allclose(feats["fc1"], f1, atol=1e-5)
    pooled = nx.activations(net, x, "conv1", conv="mean")["conv1"]
    assert torch.allclose(pooled, c1.mean(dim=(2, 3)), atol=1e-6)
    flat = nx.activations(net, x, "conv1", conv="flatten")["conv1"]
    assert torch.allclose(flat, c1.flatten(1), atol=1e-6)
    mx = nx.activations(net, x, "conv1", conv="max")["conv1"]
    assert torch.allclose(mx, c1.amax(dim=(2, 3)), atol=1e-6)


def test_activations_from_a_dataloader_and_restores_train_mode() -> None:
    net = zoo.mlp(64, (16,))
    net.train()
    before = _state(net)
    x = torch.rand(20, 1, 8, 8)
    y = torch.randint(0, 10, (20,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    feats = nx.activations(net, loader, ["fc1", "out"])
    assert feats["fc1"].shape == (20, 16) and feats["out"].shape == (20, 10)
    assert torch.allclose(feats["out"], net.eval()(x).detach(), atol=1e-6)
    net.train()
    _assert_same(before, net)


def test_activations_bad_inputs() -> None:
    net = zoo.mlp(64, (16,))
    with pytest.raises(ValueError, match=r"Unknown layer name.*Did you mean 'fc1'.*Valid names"):
        nx.activations(net, torch.rand(2, 64), "fc_1")
    with pytest.raises(ValueError, match="conv"):
        nx.activations(net, torch.rand(2, 64), "fc1", conv="pixels")
    with pytest.raises(ValueError, match="empty"):
        nx.activations(net, [], "fc1")
    with pytest.raises(ValueError, match="batch_size"):
        nx.activations(net, torch.rand(2, 64), "fc1", batch_size=0)
    with pytest.raises(TypeError, match="inputs"):
        nx.activations(net, 3.0, "fc1")
    with pytest.raises(ValueError, match="layers"):
        nx.activations(net, torch.rand(2, 64), [])


def test_activations_of_a_layer_that_never_runs_is_a_clear_error() -> None:
    net = Reordered()
    with pytest.raises(RuntimeError, match="'unused' did not run"):
        nx.activations(net, torch.randn(4, 3), ["early", "unused"])
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_to_features_sequences_and_iter_batches() -> None:
    tokens = torch.randn(2, 5, 7)
    assert to_features(tokens, channel_first=False).shape == (10, 7)
    assert to_features(torch.randn(4), channel_first=False).shape == (4, 1)
    chunks = list(iter_batches(torch.arange(10), 4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    with pytest.raises(ValueError, match="batch dimension"):
        list(iter_batches(torch.tensor(1.0), 4))


def test_snapshot_restores_swapped_parameters_values_and_hooks() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    original_weight = net[0].weight
    w = net[0].weight.detach().clone()
    rm = net[1].running_mean.clone()
    snap = ModelSnapshot.take(net, values=True)
    net[0].weight = nn.Parameter(torch.zeros(3, 3))
    with torch.no_grad():
        original_weight.add_(1.0)
        net[1].running_mean.add_(5.0)
    net[0].weight.requires_grad_(False)
    net[1].register_forward_pre_hook(lambda *a: None)
    net.eval()
    snap.restore()
    assert net[0].weight is original_weight
    assert torch.equal(net[0].weight, w) and net[0].weight.requires_grad
    assert torch.equal(net[1].running_mean, rm)
    assert len(net[1]._forward_pre_hooks) == 0
    assert net.training and net[1].training


def test_layout_of_elementwise_layers_follows_the_layer_before_them() -> None:
    """A ReLU after a conv is channels-first; a GELU after a Linear (tokens) is channels-last."""
    net = zoo.cnn().eval()
    x = torch.rand(2, 1, 28, 28)
    feats = nx.activations(net, x, ["relu1", "pool1", "relu2", "relu3"])
    assert feats["relu1"].shape == (2 * 28 * 28, 16)
    with torch.no_grad():
        r1 = net.relu1(net.bn1(net.conv1(x)))
    assert torch.allclose(feats["relu1"], r1.permute(0, 2, 3, 1).reshape(-1, 16))
    assert feats["pool1"].shape == (2 * 14 * 14, 16) and feats["relu2"].shape == (2 * 14 * 14, 32)
    assert feats["relu3"].shape == (2, 64)
    tokens = nn.Sequential(nn.Linear(8, 16), nn.GELU())
    assert nx.activations(tokens, torch.rand(3, 5, 8), "1")["1"].shape == (15, 16)
    conv1d = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.BatchNorm1d(4))
    out = nx.activations(conv1d, torch.rand(3, 2, 10), ["1", "2"])
    assert out["1"].shape == (24, 4) and out["2"].shape == (24, 4)
    lone = nn.Sequential(nn.ReLU())  # nothing known before it: rank decides
    assert nx.activations(lone, torch.rand(2, 3, 4, 4), "0")["0"].shape == (32, 3)


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    net[1].running_mean.normal_()
    net[1].running_var.uniform_(0.5, 2.0)
    return net.train()


def test_eval_mode_false_reads_batch_statistics_and_leaves_the_running_ones_alone() -> None:
    """eval_mode=False runs the model in its own (train) mode: batch-norm uses the batch's statistics, and the
    running statistics that such a pass updates are put back (before, `eval=False` changed them silently)."""
    net, x = _bn_net(), torch.randn(32, 4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    got = nx.activations(net, x, "1", eval_mode=False, batch_size=32)["1"]
    h = x.double() @ net[0].weight.detach().double().T + net[0].bias.detach().double()
    ref = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + net[1].eps)  # float64, batch statistics
    ref = ref * net[1].weight.detach().double() + net[1].bias.detach().double()
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert net.training
    stats = nx.layer_statistics(net, x, ["1"], eval_mode=False, batch_size=32)["1"]
    torch.testing.assert_close(stats.mean, ref.mean(0), rtol=1e-6, atol=1e-6)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    evald = nx.activations(net, x, "1")["1"]  # default: eval mode, running statistics
    rm, rv = net[1].running_mean.double(), net[1].running_var.double()
    ref_eval = (h - rm) / torch.sqrt(rv + net[1].eps) * net[1].weight.detach().double() + net[1].bias.detach().double()
    torch.testing.assert_close(evald.double(), ref_eval, rtol=1e-5, atol=1e-5)


def test_activations_progress_follows_the_policy(capsys: pytest.CaptureFixture[str]) -> None:
    net, x = zoo.mlp(16, (8,)), torch.randn(40, 16)
    quiet = nx.activations(net, x, "fc1", batch_size=8, progress=False)["fc1"]
    assert capsys.readouterr().err == ""
    shown = nx.activations(net, x, "fc1", batch_size=8, progress=True)["fc1"]
    err = capsys.readouterr().err
    assert "activations" in err and "/5 " in err  # one step per batch, the total known
    auto = nx.activations(net, x, "fc1", batch_size=8)["fc1"]  # default None: quick, so no bar
    assert capsys.readouterr().err == ""
    assert torch.equal(quiet, shown) and torch.equal(quiet, auto)
    with pytest.raises(TypeError, match="`progress` must be None"):
        nx.activations(net, x, "fc1", progress="yes")


def test_count_batches_is_what_iter_batches_yields() -> None:
    """The progress bars' totals: one batch split into chunks, or an iterable's own batches."""
    from nbexplain.core._base.capturing import count_batches

    x = torch.rand(10, 3)
    cases = [x, (x, torch.ones(10)), {"a": x, "b": x}, nx.Inputs(x, mask=torch.ones(10)), x.numpy(), [x, x[:2], x]]
    for inputs in cases:
        assert count_batches(inputs, 4) == len(list(iter_batches(inputs, 4))), type(inputs)
    assert count_batches(iter([x]), 4) is None  # a generator: unknown, the bar counts without a total
