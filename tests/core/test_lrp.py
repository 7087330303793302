"""nx.lrp: targets, intermediate layers, supported module types, flat rule, errors, model hygiene."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.zoo import cnn, mlp
from tests.core import lrp_reference as ref
from tests.core.test_lrp_rules import _x, resnet


def _state(model: nn.Module) -> dict:
    """Everything the hygiene contract covers, bit for bit."""
    return {
        "values": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "objects": {k: id(v) for k, v in model.named_parameters()},
        "requires_grad": {k: v.requires_grad for k, v in model.named_parameters()},
        "grads": {k: None if v.grad is None else v.grad.clone() for k, v in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "hooks": {
            k: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for k, m in model.named_modules()
        },
        "inplace": {k: getattr(m, "inplace", None) for k, m in model.named_modules()},
    }


def _assert_same(a: dict, b: dict) -> None:
    assert a["values"].keys() == b["values"].keys()
    for k in a["values"]:
        assert a["values"][k].dtype == b["values"][k].dtype
        assert torch.equal(a["values"][k], b["values"][k]), k
    for key in ("objects", "requires_grad", "training", "hooks", "inplace"):
        assert a[key] == b[key], key
    for k in a["grads"]:
        assert (a["grads"][k] is None) == (b["grads"][k] is None)
        if a["grads"][k] is not None:
            assert torch.equal(a["grads"][k], b["grads"][k])


# ----------------------------------------------------------------------------------------- targets


def test_int_target_and_per_sample_targets() -> None:
    model = cnn(width=4, hidden=8)
    x = torch.rand(4, 1, 28, 28)
    both = nx.lrp(model, x, torch.tensor([3, 3, 7, 1]))
    for i, t in enumerate([3, 3, 7, 1]):
        single = nx.lrp(model, x[i : i + 1], t)
        torch.testing.assert_close(both.attribution[i : i + 1], single.attribution, rtol=1e-5, atol=1e-7)
    assert both.target.tolist() == [3, 3, 7, 1]
    torch.testing.assert_close(both.output_relevance, both.output[torch.arange(4), both.target])


def test_several_classes_of_one_sample_in_one_batch() -> None:
    model = cnn(width=4, hidden=8)
    x = torch.rand(1, 1, 28, 28).expand(10, -1, -1, -1)
    res = nx.lrp(model, x, torch.arange(10))
    for c in (0, 5, 9):
        torch.testing.assert_close(res.attribution[c : c + 1], nx.lrp(model, x[:1], c).attribution, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(res.attribution[0], res.attribution[1])


def test_batches_give_the_same_result_as_one_pass() -> None:
    model = cnn(width=4, hidden=8)
    x = torch.rand(5, 1, 28, 28)
    a = nx.lrp(model, x, 2, layers="conv2")
    b = nx.lrp(model, x, 2, layers="conv2", batch_size=2, progress=False)
    torch.testing.assert_close(a.attribution, b.attribution, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(a.layers["conv2"], b.layers["conv2"], rtol=1e-5, atol=1e-7)


def test_init_one_explains_unit_relevance() -> None:
    model = mlp(12, (8,)).double()
    res = nx.lrp(model, _x((3, 12), 1), 0, composite={nn.Linear: nx.rules.ZeroRule(bias=False)}, init="one")
    torch.testing.assert_close(res.output_relevance, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(res.total, torch.ones(3, dtype=torch.float64))


# ------------------------------------------------------------------------------------- layers & flat


def test_intermediate_layer_relevance_is_conserved_layer_by_layer() -> None:
    model = mlp(12, (8, 6)).double()
    rule = nx.rules.ZeroRule(bias=False)
    res = nx.lrp(model, _x((3, 12), 2), 1, composite={nn.Linear: rule}, layers=["fc1", "relu1", "fc2", "out"])
    assert res.layers["fc1"].shape == (3, 8) and res.layers["fc2"].shape == (3, 6)
    for name in ("fc1", "relu1", "fc2", "out"):
        torch.testing.assert_close(res.layers[name].sum(1), res.output_relevance, rtol=1e-9, atol=1e-12)
    # the output layer's relevance is the one-hot explained score
    want = torch.zeros(3, 10, dtype=torch.float64)
    want[:, 1] = res.output_relevance
    torch.testing.assert_close(res.layers["out"], want)


def test_flat_on_a_dense_first_layer_gives_every_input_the_same_relevance() -> None:
    model = mlp(20, (8,)).double()
    res = nx.lrp(model, _x((4, 20), 3), 2, composite=nx.Composite({nn.Linear: nx.rules.Epsilon()}, first=nx.rules.Flat()), layers="fc1")
    rel = res.attribution
    torch.testing.assert_close(rel, rel[:, :1].expand_as(rel))
    torch.testing.assert_close(rel.sum(1), res.layers["fc1"].sum(1))
    assert res.rules["fc1"] == nx.rules.Flat() and res.rules["out"] == nx.rules.Epsilon()


def test_layer_names_override_types() -> None:
    model = mlp(12, (8, 6)).double()
    comp = nx.Composite({"fc2": nx.rules.ZPlus(), nn.Linear: nx.rules.Epsilon(0.5)})
    res = nx.lrp(model, _x((2, 12), 4), 0, composite=comp)
    assert res.rules["fc2"] == nx.rules.ZPlus() and res.rules["fc1"] == nx.rules.Epsilon(0.5)


def test_zbox_default_bounds_are_the_batch_range() -> None:
    model = cnn(width=4, hidden=8).double()
    x = _x((2, 1, 28, 28), 5).clamp(-0.5, 0.7)
    a = nx.lrp(model, x, 1, composite="epsilon_gamma_box")
    b = nx.lrp(model, x, 1, composite="epsilon_gamma_box", low=-0.5, high=0.7)
    torch.testing.assert_close(a.attribution, b.attribution)
    c = nx.lrp(model, x, 1, composite="epsilon_gamma_box", low=-1.0, high=1.0)
    assert not torch.allclose(a.attribution, c.attribution)


# ------------------------------------------------------------------------------- supported modules


class Shared(nn.Module):
    """One Linear called twice in a forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.fc = nn.Linear(6, 6)
        self.relu = nn.ReLU()
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.relu(self.fc(self.relu(self.fc(x)))))


def test_a_module_called_twice_matches_the_reference() -> None:
    net = Shared().double().eval()
    x = _x((3, 6), 6)
    target = torch.tensor([0, 1, 2])
    rule = nx.rules.Epsilon(0.01)
    res = nx.lrp(net, x, target, composite={nn.Linear: rule}, layers="fc")
    plan = [("linear", net.fc, ("eps", 0.01, True)), ("relu",), ("linear", net.fc, ("eps", 0.01, True)), ("relu",),
            ("linear", net.out, ("eps", 0.01, True))]
    want, _ = ref.run(plan, x, target)
    torch.testing.assert_close(res.attribution, want, rtol=1e-9, atol=1e-12)
    assert set(res.layers) == {"fc", "fc#2"}  # one entry per call


@pytest.mark.parametrize(
    "pool,width", [(nn.AdaptiveAvgPool1d(4), 12), (nn.AvgPool1d(2, ceil_mode=True), 15)], ids=["adaptive", "ceil"]
)
def test_conv1d_tanh_avg_pool_match_the_reference(pool: nn.Module, width: int) -> None:
    torch.manual_seed(8)
    net = nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1), nn.Tanh(), pool, nn.Flatten(), nn.Dropout(0.5), nn.Linear(width, 3)
    ).double()
    x = _x((3, 2, 9), 7)
    target = torch.tensor([2, 0, 1])
    res = nx.lrp(net, x, target, composite={nn.Conv1d: nx.rules.Gamma(0.5), nn.Linear: nx.rules.Epsilon(0.1)})
    plan = [("linear", net[0], ("gamma", 0.5, True)), ("tanh",), ("linear", net[2], ("eps", 1e-9, True)),
            ("flatten",), ("linear", net[5], ("eps", 0.1, True))]
    want, _ = ref.run(plan, x, target)
    torch.testing.assert_close(res.attribution, want, rtol=1e-9, atol=1e-12)
    assert net.training  # the caller's mode is kept (explained in eval mode: dropout off)


def test_conv3d_leaky_relu_unflatten_adaptive_maxpool_match_the_reference() -> None:
    torch.manual_seed(9)
    net = nn.Sequential(
        nn.Unflatten(1, (1, 4, 4, 4)), nn.Conv3d(1, 2, 3, padding=1), nn.LeakyReLU(0.1),
        nn.AdaptiveMaxPool3d(2), nn.Flatten(), nn.Linear(16, 3),
    ).double().eval()
    x = _x((2, 64), 8)
    target = torch.tensor([0, 2])
    res = nx.lrp(net, x, target, composite={nn.Conv3d: nx.rules.ZPlus(), nn.Linear: nx.rules.Epsilon(0.01)})
    # matrix form: Conv3d on the unflattened input (z⁺, inputs of both signs) → LeakyReLU (relevance
    # passes) → adaptive max pool (winner takes all) → Linear (ε)
    rows = torch.arange(2)
    m1, b1 = ref.layer_matrix(nn.Sequential(net[0], net[1]), (64,))
    z1 = x @ m1.T + b1
    a2 = net[2](z1)
    pooled, idx = nn.functional.adaptive_max_pool3d(a2.view(2, 2, 4, 4, 4), 2, return_indices=True)
    a3 = pooled.reshape(2, -1)
    w, b = net[5].weight.detach(), net[5].bias.detach()
    z3 = a3 @ w.T + b
    r3 = torch.zeros_like(z3)
    r3[rows, target] = z3[rows, target]
    r_pool = ((a3[:, :, None] * w.T[None]) * (r3 / (z3 + 0.01 * ref._sign(z3)))[:, None, :]).sum(2)
    flat_idx = (idx.reshape(2, 2, -1) + (torch.arange(2) * 64)[None, :, None]).reshape(2, -1)
    r2 = torch.zeros(2, 128, dtype=torch.float64).scatter_add_(1, flat_idx, r_pool)
    contrib = (x[:, :, None] * m1.T[None]).clamp(min=0)
    want = (contrib * (r2 / (contrib.sum(1) + b1.clamp(min=0) + 1e-9))[:, None, :]).sum(2)
    assert bool((z1 < 0).any())  # LeakyReLU really passes negatives here
    torch.testing.assert_close(res.attribution, want, rtol=1e-9, atol=1e-12)


def test_batchnorm_merge_matches_and_train_mode_is_explained_in_eval_mode() -> None:
    model = cnn(width=4, hidden=8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(3, 1, 28, 28)
    model.train()
    a = nx.lrp(model, x, 4)
    assert model.training
    b = nx.lrp(model.eval(), x, 4)
    torch.testing.assert_close(a.attribution, b.attribution)
    # a batch norm left unmerged is an affine layer with the ε rule: different, but same output
    c = nx.lrp(model, x, 4, canonizers=None)
    torch.testing.assert_close(c.output, b.output, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(c.attribution, b.attribution)


def test_merge_batchnorm_canonizer_standalone_restores_the_model() -> None:
    net = resnet()
    before = _state(net)
    canon = nx.canonizers.MergeBatchNorm()
    x = _x((2, 2, 6, 6), 9)
    assert len(canon.pairs(net)) == 1  # Sequential order only finds the shortcut's pair
    assert len(canon.pairs(net, x)) == 5  # tracing finds the attribute-style pairs too
    with torch.no_grad():
        want = net(x)
        with canon.apply(net, x):
            merged = net(x)
            assert len(canon.transparent()) == 5
            assert net.block1.conv1.bias is not None
    torch.testing.assert_close(merged, want)
    _assert_same(before, _state(net))
    assert net.block1.conv1.bias is None


# ------------------------------------------------------------------------------------------- errors


def test_unsupported_module_names_it_and_says_how_to_map_a_rule() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    with pytest.raises(nx.UnsupportedModuleError, match=r"'1' \(LayerNorm\).*nx\.rules\.Pass\(\)"):
        nx.lrp(net, torch.rand(2, 4), 0)
    res = nx.lrp(net, torch.rand(2, 4), 0, composite={nn.LayerNorm: nx.rules.Gradient(), nn.Linear: nx.rules.Epsilon()})
    assert res.attribution.shape == (2, 4) and torch.isfinite(res.attribution).all()


def test_final_softmax_is_refused() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    with pytest.raises(nx.UnsupportedModuleError, match="Softmax"):
        nx.lrp(net, torch.rand(2, 4), 0)


def test_functional_operations_are_named() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).sigmoid() * 2

    with pytest.raises(nx.UnsupportedModuleError, match="MulBackward0.*SigmoidBackward0|SigmoidBackward0.*MulBackward0"):
        nx.lrp(Functional(), torch.rand(2, 4), 0)
    assert nx.lrp(Functional(), torch.rand(2, 4), 0, strict=False).attribution.shape == (2, 4)


def test_residual_sum_without_canonizer_is_refused() -> None:
    with pytest.raises(nx.UnsupportedModuleError, match="canonizers='auto'"):
        nx.lrp(resnet(), _x((1, 2, 6, 6), 0), 0, canonizers=None)


def test_bad_arguments() -> None:
    model = mlp(12, (8,))
    x = torch.rand(2, 12)
    with pytest.raises(ValueError, match="Did you mean 'epsilon_plus_flat'"):
        nx.lrp(model, x, 0, composite="epsilon_plus_flt")
    with pytest.raises(ValueError, match=r"outside \[0, 9\]"):
        nx.lrp(model, x, 10)
    with pytest.raises(ValueError, match=r"outside \[0, 9\]"):
        nx.lrp(model, x, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="3 entries but the input batch has 2"):
        nx.lrp(model, x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="floating-point"):
        nx.lrp(model, x.long(), 0)
    with pytest.raises(ValueError, match="non-finite"):
        nx.lrp(model, torch.full((2, 12), float("nan")), 0)
    with pytest.raises(ValueError, match="init"):
        nx.lrp(model, x, 0, init="softmax")
    with pytest.raises(ValueError, match="Did you mean 'fc1'"):
        nx.lrp(model, x, 0, layers=["fc11"])
    with pytest.raises(ValueError, match="does not have.*Did you mean 'fc1'"):
        nx.lrp(model, x, 0, composite={"fc_1": nx.rules.Epsilon()})
    with pytest.raises(TypeError, match="Rule instances"):
        nx.lrp(model, x, 0, composite={nn.Linear: "epsilon"})
    with pytest.raises(TypeError, match="torch.nn.Module"):
        nx.lrp(object(), x, 0)
    with pytest.raises(ValueError, match="α − β = 1"):
        nx.rules.AlphaBeta(2, 0.5)
    with pytest.raises(ValueError, match="≥ 0"):
        nx.rules.Epsilon(-1)
    with pytest.raises(TypeError, match="needs a Linear, Conv"):
        nx.lrp(model, x, 0, composite={nn.ReLU: nx.rules.ZPlus(), nn.Linear: nx.rules.Epsilon()})
    with pytest.raises(ValueError, match=r"\(N, T=3, V=1\).*target=\(position, token\)"):  # a 3-D output: a sequence
        nx.lrp(nn.Sequential(nn.Linear(12, 3), nn.Unflatten(1, (3, 1))), x, 0)


# ------------------------------------------------------------------------------------------ hygiene


class Boom(nn.Module):
    """Raises after the batch-norm-merged conv layers and a residual sum have run."""

    def __init__(self) -> None:
        super().__init__()
        self.net = resnet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net.relu(self.net.conv_in(x))
        h = self.net.block2(self.net.block1(h))
        raise RuntimeError("boom")


@pytest.mark.parametrize("make", [resnet, lambda: cnn(width=4, hidden=8), Boom], ids=["resnet", "cnn", "raises"])
def test_model_is_left_bit_for_bit_as_found(make) -> None:
    model = make().train()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[1].grad = torch.ones_like(params[1])
    model.register_forward_hook(lambda *a: None)
    before = _state(model)
    shape = (2, 2, 6, 6) if not isinstance(model, nn.Sequential) else (2, 1, 28, 28)
    x = torch.rand(*shape, dtype=params[0].dtype)
    grad_mode = torch.is_grad_enabled()
    if isinstance(model, Boom):
        with pytest.raises(RuntimeError, match="boom"):
            nx.lrp(model, x, 1)
    else:
        nx.lrp(model, x, 1, layers=[n for n, _ in model.named_children()][:1])
    _assert_same(before, _state(model))
    assert torch.is_grad_enabled() == grad_mode
    assert not torch._C._is_torch_function_mode_enabled()
    assert x.grad is None


def test_unsupported_module_error_mid_forward_leaves_model_intact() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.LayerNorm(8), nn.Linear(8, 2))
    before = _state(net)
    with pytest.raises(nx.UnsupportedModuleError):
        nx.lrp(net, torch.rand(2, 1, 4, 4), 0)
    _assert_same(before, _state(net))


def test_parametrized_layers_are_units_and_stay_unmerged() -> None:
    """A weight-normalised conv (a parametrization: the conv has child modules) gets its rule like a plain
    conv with the same effective weight; the batch norm after it is left unmerged (ε on the affine map)."""
    from torch.nn.utils import parametrizations

    torch.manual_seed(3)
    plain = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)).double().eval()
    param = nn.Sequential(
        parametrizations.weight_norm(nn.Conv2d(1, 3, 3)), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)
    ).double().eval()
    param.load_state_dict({k: v for k, v in plain.state_dict().items() if k != "0.weight"}, strict=False)
    with torch.no_grad():
        param[0].parametrizations.weight.original1.copy_(plain[0].weight)
        param[0].parametrizations.weight.original0.copy_(plain[0].weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    x = _x((2, 1, 4, 4), 10)
    before = _state(param)
    a = nx.lrp(param, x, 1, composite="epsilon_plus")
    b = nx.lrp(plain, x, 1, composite="epsilon_plus", canonizers=None)
    torch.testing.assert_close(a.attribution, b.attribution, rtol=1e-9, atol=1e-12)
    assert a.rules["0"] == nx.rules.ZPlus() and a.rules["1"] == nx.rules.Epsilon()
    _assert_same(before, _state(param))


def test_zbox_accepts_per_channel_bounds() -> None:
    model = cnn(in_channels=2, width=4, hidden=8).double()
    x = _x((2, 2, 28, 28), 11).clamp(-1, 1)
    low = torch.tensor([-1.0, -0.5], dtype=torch.float64).view(2, 1, 1)
    high = torch.tensor([1.0, 0.5], dtype=torch.float64).view(2, 1, 1)
    a = nx.lrp(model, x.clamp(low, high), 0, composite="epsilon_gamma_box", low=low, high=high)
    comp = nx.Composite({nn.Conv2d: nx.rules.Gamma(0.25), nn.Linear: nx.rules.Epsilon()}, first=nx.rules.ZBox(low, high))
    b = nx.lrp(model, x.clamp(low, high), 0, composite=comp)
    torch.testing.assert_close(a.attribution, b.attribution)
    c = nx.lrp(model, x.clamp(low, high), 0, composite="epsilon_gamma_box", low=-1.0, high=1.0)
    assert not torch.allclose(a.attribution, c.attribution)
    with pytest.raises(ValueError, match="does not broadcast"):
        nx.lrp(model, x, 0, composite="epsilon_gamma_box", low=torch.zeros(3, 1, 1), high=1.0)


def test_merge_batchnorm_trace_leaves_a_training_model_untouched() -> None:
    net = resnet().train()
    before = _state(net)
    pairs = nx.canonizers.MergeBatchNorm().pairs(net, _x((2, 2, 6, 6), 12))
    assert len(pairs) == 5
    _assert_same(before, _state(net))  # running statistics not updated, modes and hooks as found


def test_layers_the_input_does_not_reach_are_refused() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.unused = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    with pytest.raises(ValueError, match=r"\['unused'\].*not called"):
        nx.lrp(TwoHeads(), torch.rand(2, 4), 0, layers=["fc", "unused"])
    assert nx.lrp(TwoHeads(), torch.rand(2, 4), 0, layers="fc").layers["fc"].shape == (2, 3)
