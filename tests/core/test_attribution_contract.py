"""One attribution contract (issue 12): every method returns an AttributionResult (or a subclass) with the map in
``.attribution``, the resolved ``.target``, the selected ``.output`` and the float64 ``.score``; ``target=None``
is the predicted class; ``nx.noise_tunnel`` smooths any method; old keywords fail with the new name.

References are independent float64 computations (autograd on a float64 copy of the model, Gauss–Legendre
quadrature written out here, the noise drawn here from the same seed)."""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.widgets import ExplanationExplorer
from tests.models.state import untouched


def relu_net(bias: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10, bias=bias), nn.ReLU(), nn.Linear(10, 4, bias=bias)).double()


def tanh_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4)).double()


def data(n: int = 5) -> torch.Tensor:
    torch.manual_seed(2)
    return torch.rand(n, 6, dtype=torch.float64)


def grad64(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """∂f_t/∂x by autograd on a float64 copy, row by row."""
    net = copy.deepcopy(net).double()
    z = x.detach().double().clone().requires_grad_(True)
    net(z).gather(1, t.view(-1, 1)).sum().backward()
    return z.grad


def ig64(net: nn.Module, x: torch.Tensor, t: torch.Tensor, steps: int, base: torch.Tensor) -> torch.Tensor:
    """Integrated gradients by the steps-point Gauss–Legendre rule on [0, 1], in float64."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    acc = torch.zeros_like(x, dtype=torch.float64)
    for a, w in zip(0.5 * (nodes + 1), 0.5 * weights, strict=True):
        acc += float(w) * grad64(net, base + float(a) * (x - base), t)
    return (x - base) * acc


def noisy64(x: torch.Tensor, k: int, level: float, seed: int) -> torch.Tensor:
    """The noisy copies noise_tunnel documents: per sample a (k, …) float32 block from one seeded generator,
    σ = level · (max − min) of the sample."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(x.shape[0]):
        sigma = level * float(x[i].max() - x[i].min())
        eps = torch.randn((k,) + tuple(x.shape[1:]), generator=gen, dtype=torch.float32)
        out.append(x[i] + (sigma * eps).to(x.dtype))
    return torch.stack(out)  # (N, k, …)


def reduce64(maps: torch.Tensor, how: str) -> torch.Tensor:
    if how == "mean":
        return maps.mean(1)
    if how == "mean_square":
        return (maps**2).mean(1)
    return ((maps - maps.mean(1, keepdim=True)) ** 2).mean(1)


METHODS: dict[str, Callable[..., Any]] = {
    "gradient": lambda m, x, t, **k: nx.gradient(m, x, t, **k),
    "gradient_x_input": lambda m, x, t, **k: nx.gradient_x_input(m, x, t, **k),
    "smoothgrad": lambda m, x, t, **k: nx.smoothgrad(m, x, t, n_samples=4, **k),
    "noise_tunnel": lambda m, x, t, **k: nx.noise_tunnel(nx.integrated_gradients, m, x, t, n_samples=3, steps=4, **k),
    "integrated_gradients": lambda m, x, t, **k: nx.integrated_gradients(m, x, t, steps=8, **k),
    "lrp": lambda m, x, t, **k: nx.lrp(m, x, t, composite="epsilon", **k),
    "rde": lambda m, x, t, **k: nx.rde(m, x, t, steps=3, n_noise=2, fractions=3, n_eval=2, n_random=1,
                                       progress=False, **k),
}
TYPES = {"integrated_gradients": nx.IntegratedGradientsResult, "lrp": nx.LRPResult, "rde": nx.RDEResult}
NAMES = {"noise_tunnel": "noise_tunnel(integrated_gradients)"}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_returns_the_one_result(name: str) -> None:
    net, x = tanh_net(), data()
    t = torch.tensor([0, 3, 1, 2, 3])
    with untouched(net):
        res = METHODS[name](net, x, t)
    assert type(res) is TYPES.get(name, nx.AttributionResult)
    assert isinstance(res, nx.AttributionResult)
    assert res.method == NAMES.get(name, name) and isinstance(res.settings, dict)
    assert res.attribution.shape == x.shape and res.attribution.dtype == x.dtype
    assert torch.equal(res.target, t)
    with torch.no_grad():
        out = net(x)
    torch.testing.assert_close(res.output, out, rtol=1e-12, atol=1e-14)
    assert not res.output.requires_grad
    assert res.score.dtype == torch.float64 and res.score.shape == (5,)
    torch.testing.assert_close(res.score, out.gather(1, t.view(-1, 1)).squeeze(1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(res.total, res.attribution.double().sum(1), rtol=1e-12, atol=1e-14)
    # no duplicate names for the map
    assert not hasattr(res, "relevance") and not hasattr(res, "mask") and not hasattr(res, "explained")


@pytest.mark.parametrize("name", list(METHODS))
def test_target_none_is_the_predicted_class(name: str) -> None:
    net, x = tanh_net(), data()
    pred = net(x).argmax(1)
    got, want = METHODS[name](net, x, None), METHODS[name](net, x, pred)
    assert torch.equal(got.target, pred)
    assert torch.equal(got.attribution, want.attribution)
    assert torch.equal(got.score, want.score)


@pytest.mark.parametrize("name", ["gradient", "smoothgrad", "integrated_gradients", "lrp", "rde", "noise_tunnel"])
def test_target_none_on_a_sequence_output_asks_for_a_target(name: str) -> None:
    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 12)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).view(-1, 3, 4)

    with pytest.raises(ValueError, match=r"target=None\) explains the predicted class of \(N, C\) scores.*pass `target=`"):
        METHODS[name](Seq().double(), data(), None)


def test_gradient_x_input_conservation_equals_a_float64_reference() -> None:
    net, x = relu_net(bias=False), data()
    t = torch.tensor([1, 0, 2, 3, 1])
    res = nx.gradient_x_input(net, x, t)
    ref = (x * grad64(net, x, t)).sum(1)
    with torch.no_grad():
        f = net(x).gather(1, t.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(res.conservation, ref / f, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.conservation, torch.ones(5, dtype=torch.float64), rtol=1e-10, atol=1e-10)


def test_lrp_conservation_equals_a_float64_reference() -> None:
    """LRP-ε on a bias-free ReLU net with ε → 0 is gradient × input: Σ R = f(x), conservation 1."""
    net, x = relu_net(bias=False), data()
    t = torch.tensor([1, 0, 2, 3, 1])
    res = nx.lrp(net, x, t, composite="epsilon", epsilon=1e-12)
    torch.testing.assert_close(res.attribution, x * grad64(net, x, t), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(res.conservation, res.total / res.score, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.conservation, torch.ones(5, dtype=torch.float64), rtol=1e-9, atol=1e-9)
    # what LRP puts on the output is the score here (init="logit"); init="one" puts 1 there and keeps the score
    one = nx.lrp(net, x, t, composite="epsilon", epsilon=1e-12, init="one")
    torch.testing.assert_close(one.output_relevance, torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(one.score, res.score)


def test_integrated_gradients_error_and_baseline_score_against_float64() -> None:
    net, x = tanh_net(), 4 * data()
    t = torch.tensor([1, 0, 2, 3, 1])
    base = torch.full_like(x, -1.0)
    res = nx.integrated_gradients(net, x, t, baseline=-1.0, steps=2)
    ref = ig64(net, x, t, 2, base)
    torch.testing.assert_close(res.attribution, ref, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        fx = net(x).gather(1, t.view(-1, 1)).squeeze(1)
        fb = net(base).gather(1, t.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(res.baseline_score, fb, rtol=1e-12, atol=1e-14)
    want = ref.sum(1) - (fx - fb)
    torch.testing.assert_close(res.error, want, rtol=1e-8, atol=1e-12)
    assert float(res.error.abs().min()) > 1e-6  # 2 nodes: a real quadrature error, not 0 by construction
    torch.testing.assert_close(res.conservation, ref.sum(1) / (fx - fb), rtol=1e-9, atol=1e-12)


REDUCE = ["mean", "mean_square", "var"]


@pytest.mark.parametrize("reduce", REDUCE)
def test_noise_tunnel_of_the_gradient_equals_a_float64_loop(reduce: str) -> None:
    net, x = tanh_net(), data(3)
    t = torch.tensor([2, 0, 1])
    res = nx.noise_tunnel(nx.gradient, net, x, t, n_samples=7, noise_level=0.2, reduce=reduce, seed=5, batch_size=4)
    noisy = noisy64(x, 7, 0.2, 5)
    maps = torch.stack([torch.stack([grad64(net, noisy[i, j:j + 1], t[i:i + 1])[0] for j in range(7)])
                        for i in range(3)])
    torch.testing.assert_close(res.attribution, reduce64(maps, reduce), rtol=1e-10, atol=1e-13)
    assert res.method == "noise_tunnel(gradient)" and res.settings["reduce"] == reduce
    with torch.no_grad():  # output and score at the clean input
        torch.testing.assert_close(res.score, net(x).gather(1, t.view(-1, 1)).squeeze(1))


@pytest.mark.parametrize("reduce", REDUCE)
def test_noise_tunnel_of_integrated_gradients_equals_a_float64_loop(reduce: str) -> None:
    net, x = tanh_net(), data(2)
    t = torch.tensor([3, 1])
    res = nx.noise_tunnel(nx.integrated_gradients, net, x, t, n_samples=4, noise_level=0.1, reduce=reduce, seed=9,
                          steps=5, baseline=0.5, batch_size=6)
    noisy = noisy64(x, 4, 0.1, 9)
    maps = torch.stack([torch.stack([ig64(net, noisy[i, j:j + 1], t[i:i + 1], 5, torch.full((1, 6), 0.5,
                                                                                         dtype=torch.float64))[0]
                                     for j in range(4)]) for i in range(2)])
    torch.testing.assert_close(res.attribution, reduce64(maps, reduce), rtol=1e-9, atol=1e-12)
    assert res.method == "noise_tunnel(integrated_gradients)"
    assert res.settings["options"]["steps"] == 5


@pytest.mark.parametrize("reduce", REDUCE)
def test_noise_tunnel_of_lrp_equals_a_float64_loop(reduce: str) -> None:
    """LRP-ε (ε → 0) on a bias-free ReLU net is x ⊙ ∇f at every noisy copy."""
    net, x = relu_net(bias=False), data(3)
    t = torch.tensor([0, 2, 1])
    res = nx.noise_tunnel(nx.lrp, net, x, t, n_samples=5, reduce=reduce, seed=3, composite="epsilon",
                          epsilon=1e-12, batch_size=4)
    noisy = noisy64(x, 5, 0.15, 3)
    maps = torch.stack([torch.stack([(noisy[i, j:j + 1] * grad64(net, noisy[i, j:j + 1], t[i:i + 1]))[0]
                                     for j in range(5)]) for i in range(3)])
    torch.testing.assert_close(res.attribution, reduce64(maps, reduce), rtol=1e-8, atol=1e-12)


def test_noise_tunnel_repeats_a_per_sample_baseline_with_the_copies() -> None:
    net, x = tanh_net(), data(3)
    t = torch.tensor([0, 1, 2])
    base = torch.rand(3, 6, dtype=torch.float64)
    res = nx.noise_tunnel(nx.integrated_gradients, net, x, t, n_samples=2, noise_level=0.0, steps=4, baseline=base,
                          batch_size=2)
    want = ig64(net, x, t, 4, base)
    torch.testing.assert_close(res.attribution, want, rtol=1e-10, atol=1e-12)


def test_noise_tunnel_does_not_depend_on_batch_size_and_zero_noise_is_the_method() -> None:
    net, x = tanh_net(), data(4)
    a = nx.noise_tunnel(nx.gradient_x_input, net, x, n_samples=6, seed=1, batch_size=3)
    b = nx.noise_tunnel(nx.gradient_x_input, net, x, n_samples=6, seed=1, batch_size=1000)
    torch.testing.assert_close(a.attribution, b.attribution, rtol=1e-12, atol=1e-14)
    plain = nx.gradient_x_input(net, x)
    still = nx.noise_tunnel(nx.gradient_x_input, net, x, n_samples=3, noise_level=0.0)
    torch.testing.assert_close(still.attribution, plain.attribution, rtol=1e-12, atol=1e-15)
    var = nx.noise_tunnel(nx.gradient_x_input, net, x, n_samples=3, noise_level=0.0, reduce="var")
    assert float(var.attribution.abs().max()) < 1e-25


def test_noise_tunnel_with_several_inputs_noises_only_wrt() -> None:
    """f(a, b) = aᵀ W b: ∂f/∂b = Wᵀ a does not depend on b, so noise on b leaves the gradient exact, while a is
    repeated unchanged with every copy."""
    torch.manual_seed(0)
    bil = nn.Bilinear(3, 2, 1, bias=False).double()
    a, b = torch.rand(4, 3, dtype=torch.float64), torch.rand(4, 2, dtype=torch.float64)
    res = nx.noise_tunnel(nx.gradient, bil, (a, b), 0, wrt=1, n_samples=5, noise_level=0.3)
    want = a @ bil.weight[0].detach()
    torch.testing.assert_close(res.attribution, want, rtol=1e-12, atol=1e-14)
    assert res.settings["wrt"] == 1


def test_smoothgrad_is_noise_tunnel_of_the_gradient_bit_for_bit() -> None:
    net, x = tanh_net(), data()
    kw = dict(n_samples=9, noise_level=0.12, seed=4, batch_size=5)
    sg = nx.smoothgrad(net, x, 2, **kw)
    nt = nx.noise_tunnel(nx.gradient, net, x, 2, **kw)
    assert torch.equal(sg.attribution, nt.attribution) and torch.equal(sg.score, nt.score)
    assert sg.method == "smoothgrad"
    mag = nx.smoothgrad(net, x, 2, magnitude=True, **kw)
    assert torch.equal(mag.attribution, nx.noise_tunnel(nx.gradient, net, x, 2, absolute=True, **kw).attribution)
    times = nx.smoothgrad(net, x, 2, times_input=True, **kw)
    assert torch.equal(times.attribution, nt.attribution * x)


def test_noise_tunnel_refuses_what_it_cannot_smooth() -> None:
    net, x = tanh_net(), data(2)
    with pytest.raises(TypeError, match="must return an nx.AttributionResult"):
        nx.noise_tunnel(lambda m, i, t, **k: torch.zeros_like(i), net, x, 0, n_samples=2)
    with pytest.raises(ValueError, match="`reduce` must be one of"):
        nx.noise_tunnel(nx.gradient, net, x, 0, reduce="median")
    with pytest.raises(TypeError, match="`method` must be an attribution function"):
        nx.noise_tunnel("gradient", net, x, 0)
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(TypeError, match=r"token ids.*nx.smoothgrad"):
        nx.noise_tunnel(nx.gradient, emb, torch.randint(0, 10, (2, 3)), 0, n_samples=2)
    # a user method with the same signature plugs in
    def doubled(model, inputs, target, **kw):
        r = nx.gradient(model, inputs, target, **kw)
        return nx.AttributionResult(2 * r.attribution, r.target, r.output, r.score, "doubled")

    got = nx.noise_tunnel(doubled, net, x, 0, n_samples=3, seed=2)
    torch.testing.assert_close(got.attribution, 2 * nx.noise_tunnel(nx.gradient, net, x, 0, n_samples=3,
                                                                     seed=2).attribution)
    assert got.method == "noise_tunnel(doubled)"


CALLS_WITH_OLD: list[tuple[Callable[..., Any], dict[str, Any], str]] = [
    (nx.gradient, dict(x=None), "gradient(): `x=` is now `inputs=`"),
    (nx.gradient_x_input, dict(eval=False), "gradient_x_input(): `eval=` is now `eval_mode=`"),
    (nx.smoothgrad, dict(eval=True), "smoothgrad(): `eval=` is now `eval_mode=`"),
    (nx.integrated_gradients, dict(return_error=True), r"integrated_gradients\(\): `return_error=` was removed.*\.error"),
    (nx.integrated_gradients, dict(x=None), "integrated_gradients(): `x=` is now `inputs=`"),
    (nx.lrp, dict(x=None), "lrp(): `x=` is now `inputs=`"),
    (nx.lrp, dict(eval=True), "lrp(): `eval=` is now `eval_mode=`"),
    (nx.rde, dict(eval=True), "rde(): `eval=` is now `eval_mode=`"),
    (nx.noise_tunnel, dict(x=None), "noise_tunnel(): `x=` is now `inputs=`"),
    (nx.continuity, dict(x=None), "continuity(): `x=` is now `inputs=`"),
]


@pytest.mark.parametrize(("fn", "kw", "message"), CALLS_WITH_OLD)
def test_old_keywords_name_the_new_ones(fn: Callable[..., Any], kw: dict[str, Any], message: str) -> None:
    pattern = message if ".*" in message else re.escape(message)
    with pytest.raises(TypeError, match=pattern):
        fn(tanh_net(), **kw)


def test_explorer_takes_target_and_inputs() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 36, 3))
    x = torch.rand(3, 1, 6, 6)
    with pytest.raises(TypeError, match=r"ExplanationExplorer\(\): `targets=` is now `target=`"):
        ExplanationExplorer(net, x, targets=1, methods=["gradient"])
    ex = ExplanationExplorer(net, x, target=1, methods=["gradient_x_input"], n_shown=2, continuity_shifts=None)
    assert ex.targets == [1, 1]
    with pytest.raises(TypeError, match=r"add_samples\(\): `x=` is now `inputs=`"):
        ex.add_samples(x=x[:1])
    ex.add_samples(inputs=torch.rand(1, 1, 6, 6), target=2)
    assert ex.targets == [1, 1, 2]
    # the shown conservation is the core result's
    res = nx.gradient_x_input(net, ex._x[2:3], 2)
    assert ex.scores_for(2)["gradient_x_input"]["conservation"] == pytest.approx(float(res.conservation[0]))


def test_continuity_reads_every_result_without_an_adapter() -> None:
    """RDE's map (its mask) was missed by the old adapter; now every result's .attribution is read."""
    net, x = tanh_net(), data(2)
    kw = dict(steps=2, n_noise=2, fractions=3, n_eval=2, n_random=1, seed=0, progress=False)
    via_result = nx.continuity(lambda z: nx.rde(net, z, 1, **kw), x, to=x.flip(1), steps=3)
    via_tensor = nx.continuity(lambda z: nx.rde(net, z, 1, **kw).attribution, x, to=x.flip(1), steps=3)
    torch.testing.assert_close(via_result.score, via_tensor.score, rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"must return an attribution result .* or a tensor"):
        nx.continuity(lambda z: (z, z), x, to=x.flip(1))


def test_rde_score_is_the_logit_and_phi_the_probability() -> None:
    net, x = tanh_net(), data(3)
    res = nx.rde(net, x, 2, steps=2, n_noise=2, fractions=3, n_eval=2, n_random=1, progress=False)
    with torch.no_grad():
        out = net(x)
    torch.testing.assert_close(res.score, out[:, 2])
    torch.testing.assert_close(res.phi, torch.softmax(out, 1)[:, 2])


def test_lrp_eval_mode() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double().train()
    x = data(6)
    with untouched(net), pytest.raises(ValueError, match=r"eval_mode=False.*\['1'\].*training mode.*canonizers"):
        nx.lrp(net, x, 0, eval_mode=False)
    with untouched(net):  # running statistics restored, mode kept
        res = nx.lrp(net, x, 0, eval_mode=False, canonizers=None)
    with torch.no_grad():
        want = copy.deepcopy(net)(x)  # training mode: the batch's statistics
    torch.testing.assert_close(res.output, want, rtol=1e-12, atol=1e-12)
    assert res.settings["eval_mode"] is False
    evald = nx.lrp(net, x, 0)  # default: eval mode, running statistics
    with torch.no_grad():
        torch.testing.assert_close(evald.output, copy.deepcopy(net).eval()(x), rtol=1e-12, atol=1e-12)


def test_model_is_untouched_when_a_method_fails_inside_noise_tunnel() -> None:
    net, x = tanh_net(), data(2)

    def failing(model, inputs, target, **kw):
        model.train()  # a user method that misbehaves and then fails
        raise RuntimeError("boom")

    net.eval()
    with untouched(net), pytest.raises(RuntimeError, match="boom"):
        nx.noise_tunnel(failing, net, x, 0, n_samples=2)
    assert not net.training
    with untouched(net):
        nx.noise_tunnel(nx.integrated_gradients, net, x, 0, n_samples=2, steps=3)
    bn = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double().train()
    with untouched(bn):
        nx.noise_tunnel(nx.gradient, bn, x, 0, n_samples=3, eval_mode=False)
    with untouched(bn), pytest.raises(ValueError, match="training mode"):
        nx.noise_tunnel(nx.lrp, bn, x, 0, n_samples=2, eval_mode=False)


def test_lrp_warnings_point_at_the_callers_line() -> None:
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.fc(x)) * 2.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nx.lrp(Gated().double(), data(2), 0, strict=False)
    found = [w for w in caught if issubclass(w.category, nx.FunctionalOpsWarning)]
    assert found and all(w.filename == __file__ for w in found)
