"""Sensitivity methods against float64 references from their definitions and captum 0.9 (test-only oracle)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core.attribution.gradients import ig_nodes

captum_attr = pytest.importorskip("captum.attr")

METHODS = {
    "gradient": lambda m, x, t, **k: nx.gradient(m, x, t, **k).attribution,
    "gradient_x_input": lambda m, x, t, **k: nx.gradient_x_input(m, x, t, **k).attribution,
    "smoothgrad": lambda m, x, t, **k: nx.smoothgrad(m, x, t, n_samples=4, **k).attribution,
    "integrated_gradients": lambda m, x, t, **k: nx.integrated_gradients(m, x, t, steps=5, **k).attribution,
    "rde": lambda m, x, t, **k: nx.rde(m, x, t, steps=3, n_noise=2, fractions=3, n_eval=2, n_random=1, **k).attribution,
}


def tanh_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(fc1=nn.Linear(6, 16), act=nn.Tanh(), out=nn.Linear(16, 3))
    ).double()


def tanh_mlp_grad(net: nn.Sequential, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """∂f_t/∂x = W1ᵀ (w2_t ⊙ (1 − tanh²(W1 x + b1))), written out in float64."""
    w1, b1, w2 = net.fc1.weight.detach(), net.fc1.bias.detach(), net.out.weight.detach()
    z = x @ w1.T + b1
    return (w2[t] * (1 - torch.tanh(z) ** 2)) @ w1


def small_cnn() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
    ).double()


@pytest.fixture
def x64() -> torch.Tensor:
    return torch.rand(5, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


# ---------------------------------------------------------------- gradient, grad × input


def test_gradient_matches_closed_form(x64):
    net = tanh_mlp()
    t = torch.tensor([0, 1, 2, 1, 0])
    ref = tanh_mlp_grad(net, x64, t)
    assert torch.allclose(nx.gradient(net, x64, t).attribution, ref, atol=1e-12)
    assert torch.allclose(nx.gradient(net, x64, t, absolute=True).attribution, ref.abs(), atol=1e-12)
    assert torch.allclose(nx.gradient_x_input(net, x64, t).attribution, ref * x64, atol=1e-12)


def test_gradient_matches_captum(x64):
    net = tanh_mlp()
    for absolute in (False, True):
        ref = captum_attr.Saliency(net).attribute(x64, target=2, abs=absolute)
        assert torch.allclose(nx.gradient(net, x64, 2, absolute=absolute).attribution, ref, atol=1e-12)
    ref = captum_attr.InputXGradient(net).attribute(x64, target=1)
    assert torch.allclose(nx.gradient_x_input(net, x64, 1).attribution, ref, atol=1e-12)


def test_gradient_batching_and_shapes():
    net = small_cnn()
    x = torch.rand(7, 1, 8, 8, dtype=torch.float64)
    a = nx.gradient(net, x, 3, batch_size=2).attribution
    b = nx.gradient(net, x, 3, batch_size=100).attribution
    assert a.shape == x.shape and a.dtype == x.dtype
    # other batch shapes may run other BLAS kernels: equal up to rounding, not bitwise
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_float32_input_on_float64_model(x64):
    net = tanh_mlp()
    g = nx.gradient(net, x64.float(), 0).attribution
    assert g.dtype == torch.float32
    assert torch.allclose(g.double(), tanh_mlp_grad(net, x64, torch.zeros(5, dtype=torch.long)), atol=1e-6)


# ---------------------------------------------------------------- SmoothGrad


def test_smoothgrad_same_noise_as_captum():
    net = tanh_mlp()
    x = torch.rand(1, 6, dtype=torch.float64)
    x[0, 0], x[0, 1] = 0.0, 1.0  # range 1 → σ = noise_level
    for magnitude in (False, True):
        mine = nx.smoothgrad(net, x, 2, noise_level=0.2, n_samples=20, seed=5, magnitude=magnitude).attribution
        torch.manual_seed(5)
        ref = captum_attr.NoiseTunnel(captum_attr.Saliency(net)).attribute(
            x, nt_type="smoothgrad", nt_samples=20, stdevs=0.2, target=2, abs=magnitude
        )
        assert torch.allclose(mine, ref, atol=1e-12), (mine - ref).abs().max()


def test_smoothgrad_is_mean_of_noisy_gradients(x64):
    """Reference: draw the documented noise stream by hand and average closed-form gradients."""
    net = tanh_mlp()
    t = torch.tensor([0, 1, 2, 0, 1])
    n = 8
    gen = torch.Generator().manual_seed(11)
    ref = torch.empty_like(x64)
    for i in range(5):
        sigma = 0.1 * float(x64[i].max() - x64[i].min())
        eps = torch.randn((n, 6), generator=gen, dtype=torch.float32)
        pts = x64[i] + (sigma * eps).double()
        ref[i] = tanh_mlp_grad(net, pts, t[i].repeat(n)).mean(0)
    for bs in (3, 8, 1000):
        got = nx.smoothgrad(net, x64, t, noise_level=0.1, n_samples=n, seed=11, batch_size=bs).attribution
        assert torch.allclose(got, ref, atol=1e-12)
    assert torch.allclose(
        nx.smoothgrad(net, x64, t, noise_level=0.1, n_samples=n, seed=11, times_input=True).attribution, ref * x64, atol=1e-12
    )


def test_smoothgrad_zero_noise_is_gradient_and_seed_matters(x64):
    net = tanh_mlp()
    assert torch.allclose(nx.smoothgrad(net, x64, 1, noise_level=0.0, n_samples=3).attribution, nx.gradient(net, x64, 1).attribution)
    a = nx.smoothgrad(net, x64, 1, n_samples=5, seed=1).attribution
    b = nx.smoothgrad(net, x64, 1, n_samples=5, seed=2).attribution
    assert not torch.allclose(a, b)
    state = torch.random.get_rng_state()
    nx.smoothgrad(net, x64, 1, n_samples=5, seed=1)
    assert torch.equal(state, torch.random.get_rng_state()), "seeded SmoothGrad must not touch the global RNG"


# ---------------------------------------------------------------- integrated gradients


def ig_reference(net, x, t, baseline, alphas, weights):
    """(x − x̄) ⊙ Σ_k w_k ∇f(x̄ + α_k (x − x̄)), closed-form gradients, float64."""
    acc = torch.zeros_like(x)
    for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
        acc += w * tanh_mlp_grad(net, baseline + a * (x - baseline), t)
    return (x - baseline) * acc


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_ig_against_float64_reference(x64, method):
    net = tanh_mlp()
    t = torch.tensor([2, 1, 0, 2, 1])
    base = torch.full_like(x64, 0.3)
    alphas, weights = ig_nodes(9, method)
    assert abs(float(weights.sum()) - 1.0) < 1e-14
    ref = ig_reference(net, x64, t, base, alphas, weights)
    got = nx.integrated_gradients(net, x64, t, baseline=0.3, steps=9, method=method, batch_size=4).attribution
    assert torch.allclose(got, ref, atol=1e-12)


def test_ig_gauss_legendre_matches_captum(x64):
    net = tanh_mlp()
    for steps in (8, 50):
        ref = captum_attr.IntegratedGradients(net).attribute(x64, target=1, n_steps=steps, method="gausslegendre")
        got = nx.integrated_gradients(net, x64, 1, steps=steps, method="gausslegendre").attribution
        assert torch.allclose(got, ref, atol=1e-10)


def test_ig_trapezoid_differs_from_captum_by_its_weights(x64):
    """Documented disagreement: captum's 'riemann_trapezoid' uses weights 1/n (summing to 1 − 1/n) on the
    nodes linspace(0, 1, n); the composite trapezoid rule uses 1/(n − 1). So captum = ours · (n − 1)/n."""
    net = tanh_mlp()
    n = 10
    ref = captum_attr.IntegratedGradients(net).attribute(x64, target=0, n_steps=n, method="riemann_trapezoid")
    got = nx.integrated_gradients(net, x64, 0, steps=n, method="riemann_trapezoid").attribution
    assert torch.allclose(ref, got * (n - 1) / n, atol=1e-12)


def test_ig_completeness(x64):
    net = tanh_mlp()
    base = torch.rand(6, dtype=torch.float64)
    res_ig = nx.integrated_gradients(net, x64, 2, baseline=base, steps=64)
    attr, err = res_ig.attribution, res_ig.error
    with torch.no_grad():
        delta = net(x64)[:, 2] - net(base.expand_as(x64))[:, 2]
    assert torch.allclose(err, attr.sum(1) - delta, atol=1e-14)
    assert float(err.abs().max()) < 1e-10  # Gauss–Legendre on an analytic path: spectrally accurate
    errs = [
        float(nx.integrated_gradients(net, x64, 2, baseline=base, steps=s, method="riemann_trapezoid").error.abs().max())
        for s in (4, 8, 16)
    ]
    assert errs[0] > errs[1] > errs[2]
    assert errs[1] / errs[2] > 3  # trapezoid: O(h²)


def test_ig_linear_model_is_exact_and_relu_cnn_completeness():
    lin = nn.Linear(5, 2).double()
    x = torch.rand(3, 5, dtype=torch.float64)
    res_ig = nx.integrated_gradients(lin, x, 1, steps=2, method="riemann_trapezoid")
    a, err = res_ig.attribution, res_ig.error
    assert torch.allclose(a, x * lin.weight[1].detach(), atol=1e-14)
    assert float(err.abs().max()) < 1e-14
    net = small_cnn()
    xi = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    res_ig = nx.integrated_gradients(net, xi, 3, steps=128, batch_size=50)
    a, err = res_ig.attribution, res_ig.error
    assert a.shape == xi.shape
    with torch.no_grad():
        net.eval()
        scale = float((net(xi)[:, 3] - net(torch.zeros_like(xi))[:, 3]).abs().max())
    assert float(err.abs().max()) < 0.05 * max(scale, 1e-3)


def test_ig_baseline_forms(x64):
    net = tanh_mlp()
    one = torch.rand(6, dtype=torch.float64)
    a = nx.integrated_gradients(net, x64, 0, baseline=one, steps=6).attribution
    b = nx.integrated_gradients(net, x64, 0, baseline=one.expand_as(x64).clone(), steps=6).attribution
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(nx.integrated_gradients(net, x64, 0, steps=6).attribution,
                               nx.integrated_gradients(net, x64, 0, baseline=0.0, steps=6).attribution, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="baseline"):
        nx.integrated_gradients(net, x64, 0, baseline=torch.zeros(4))


# ---------------------------------------------------------------- hygiene and bad inputs


class Recorder(nn.Module):
    """A model with every kind of state: dropout and batch norm in train mode, a frozen layer, an existing
    .grad, a forward hook, and an optional failure in the middle of the forward pass."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(8, 3)
        self.fail = fail
        self.out.weight.requires_grad_(False)
        self.fc1.weight.grad = torch.ones_like(self.fc1.weight)
        self.calls = 0
        self.fc1.register_forward_hook(lambda m, i, o: None)

    def forward(self, x):
        h = self.drop(torch.relu(self.bn(self.fc1(x))))
        self.calls += 1
        if self.fail:
            raise RuntimeError("boom in the middle of forward")
        return self.out(h)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()},
        "grad_id": {n: id(p.grad) for n, p in model.named_parameters()},
        "hooks": {n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for n, m in model.named_modules()},
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["training"] == b["training"]
    assert a["requires_grad"] == b["requires_grad"]
    assert a["hooks"] == b["hooks"]
    assert a["grad_id"] == b["grad_id"]
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    for k in a["grad"]:
        if a["grad"][k] is None:
            assert b["grad"][k] is None, f"{k} got a .grad"
        else:
            assert torch.equal(a["grad"][k], b["grad"][k])


@pytest.mark.parametrize("name", list(METHODS))
def test_hygiene(name):
    torch.manual_seed(0)
    model = Recorder().train()
    before = snapshot(model)
    out = METHODS[name](model, torch.rand(4, 6), 1)
    assert out.shape == (4, 6)
    assert model.calls > 0
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("name", list(METHODS))
def test_hygiene_when_forward_raises(name):
    model = Recorder(fail=True).train()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        METHODS[name](model, torch.rand(4, 6), 1)
    assert_same(before, snapshot(model))


def test_eval_flag_controls_mode():
    """Batch norm in train mode normalises by the batch: eval_mode=False gives a different gradient."""
    torch.manual_seed(0)
    model = Recorder()
    model.drop.p = 0.0
    x = torch.rand(4, 6)
    before = snapshot(model)
    assert not torch.allclose(nx.gradient(model, x, 0).attribution, nx.gradient(model, x, 0, eval_mode=False).attribution)
    nx.smoothgrad(model, x, 0, n_samples=3, eval_mode=False)
    nx.integrated_gradients(model, x, 0, steps=3, eval_mode=False)
    assert_same(before, snapshot(model))  # running statistics updated in train mode are written back
    assert model.training


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda m, x: nx.gradient("net", x, 0).attribution, TypeError, "torch.nn.Module"),
        (lambda m, x: nx.gradient(m, x.tolist(), 0).attribution, TypeError, "torch.Tensor"),
        (lambda m, x: nx.gradient(m, x.long(), 0).attribution, TypeError, "floating-point"),
        (lambda m, x: nx.gradient(m, x[0], 0).attribution, ValueError, "at least 2 dimensions"),
        (lambda m, x: nx.gradient(m, x[:0], 0).attribution, ValueError, "empty"),
        (lambda m, x: nx.gradient(m, torch.full_like(x, float("nan")), 0).attribution, ValueError, "non-finite"),
        (lambda m, x: nx.gradient(m, x, 7).attribution, ValueError, r"outside \[0, 2\]"),
        (lambda m, x: nx.gradient(m, x, torch.tensor([0, 1])).attribution, ValueError, "entries"),
        (lambda m, x: nx.gradient(m, x, 0, absolute="yes").attribution, TypeError, "absolute"),
        (lambda m, x: nx.gradient(m, x, 0, batch_size=0).attribution, ValueError, "batch_size"),
        (lambda m, x: nx.smoothgrad(m, x, 0, noise_level=-0.1).attribution, ValueError, "noise_level"),
        (lambda m, x: nx.smoothgrad(m, x, 0, n_samples=0).attribution, ValueError, "n_samples"),
        (lambda m, x: nx.smoothgrad(m, x, 0, seed=-1).attribution, ValueError, "seed"),
        (lambda m, x: nx.integrated_gradients(m, x, 0, steps=0).attribution, ValueError, "steps"),
        (lambda m, x: nx.integrated_gradients(m, x, 0, steps=1, method="riemann_trapezoid").attribution, ValueError, "≥ 2"),
        (lambda m, x: nx.integrated_gradients(m, x, 0, method="gauss_legendre").attribution, ValueError, "Did you mean 'gausslegendre'"),
    ],
)
def test_bad_inputs(x64, call, exc, match):
    with pytest.raises(exc, match=match):
        call(tanh_mlp(), x64)


def test_numpy_input_and_scalar_output():
    net = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0))  # (N,) output: target 0
    x = np.random.default_rng(0).random((4, 3)).astype(np.float32)
    g = nx.gradient(net, x, 0).attribution
    assert torch.allclose(g, net[0].weight.detach().expand(4, 3))
