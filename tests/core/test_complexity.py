"""Complexity decomposition (Ren et al. 2021) on a synthetic teacher with a known linear + non-linear feature."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core.complexity.decompose import ComplexityResult, decompose_complexity
from nbexplain.core.complexity.disentanglers import ConvDisentangler, DenseDisentangler, make_disentangler

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: one thread is faster

D_IN, D_FEAT, N_CLASSES = 4, 3, 3


class Teacher(nn.Module):
    """feature(x) = A x + φ(x) with φ even in x (no linear part); head = linear classifier on the feature."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.linear = nn.Linear(D_IN, D_FEAT, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(D_FEAT, D_IN, generator=g))
        self.feature = nn.Identity()
        self.head = nn.Linear(D_FEAT, N_CLASSES)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(N_CLASSES, D_FEAT, generator=g))
            self.head.bias.zero_()

    @staticmethod
    def nonlinear(x: torch.Tensor) -> torch.Tensor:
        # products of even functions of different inputs: uncorrelated with every affine function of x
        return 3.0 * torch.stack(
            [torch.cos(2 * x[:, 0]) * torch.cos(2 * x[:, 1]),
             torch.cos(2 * x[:, 1]) * torch.cos(2 * x[:, 2]),
             torch.cos(2 * x[:, 2]) * torch.cos(2 * x[:, 3])], dim=1,
        )

    def linear_part(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feature(self.linear(x) + self.nonlinear(x))
        return self.head(f)


def make_data(n: int, seed: int, teacher: Teacher) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D_IN, generator=g)
    with torch.no_grad():
        y = teacher(x).argmax(1)
    return x, y


SETTINGS = dict(orders=(1, 2, 4), epochs=25, width=32, train_batch_size=128, lr=(3e-3, 1e-4), progress=False)


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    return Teacher()


@pytest.fixture(scope="module")
def splits(teacher):
    return make_data(1024, 1, teacher), make_data(512, 2, teacher)


@pytest.fixture(scope="module")
def result(teacher, splits) -> ComplexityResult:
    train, test = splits
    # reference network = the inputs themselves (Identity): the linear consistency of a component is then
    # how much of it is an affine function of x
    ref = nn.Sequential(OrderedDict([("feat", nn.Identity())]))
    return decompose_complexity(teacher, train, test, "feature", seed=0, reference_model=ref,
                                reference_layer="feat", **SETTINGS)


def affine_coefficients(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Least-squares W (float64) with t ≈ x W + b."""
    xd = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
    return torch.linalg.lstsq(xd, t.double()).solution[:-1]


def test_linear_part_lands_in_the_first_order(teacher, splits, result):
    x_test = splits[1][0]
    comps = result.components(x_test)
    assert comps.shape == (3, x_test.shape[0], D_FEAT)
    a_true = teacher.linear.weight.detach().double().T  # (D_IN, D_FEAT)
    a1 = affine_coefficients(x_test, comps[0])
    assert torch.linalg.norm(a1 - a_true) / torch.linalg.norm(a_true) < 0.1
    for k in (1, 2):
        ak = affine_coefficients(x_test, comps[k])
        assert torch.linalg.norm(ak) / torch.linalg.norm(a_true) < 0.1


def test_nonlinear_part_goes_to_higher_orders(teacher, splits, result):
    x_test = splits[1][0]
    comps = result.components(x_test).double()
    phi = Teacher.nonlinear(x_test).double()
    higher = comps[1:].sum(0)
    # higher orders carry a real share of the energy and point along what order 1 left of φ
    assert float(result.energy[1:].sum()) > 0.02
    left = phi - (comps[0] - teacher.linear_part(x_test).detach().double())
    cos = float((higher * (left - left.mean(0))).sum() / (higher.norm() * (left - left.mean(0)).norm()))
    assert cos > 0.5
    # every deeper fit is at least as good (up to training noise), and the deepest one is good
    assert float(result.fit_quality[-1]) > 0.8
    assert bool((result.fit_quality[1:] >= result.fit_quality[:-1] - 0.02).all())


def test_components_sum_to_deepest_fit(splits, result):
    x = splits[1][0][:64]
    comps = result.components(x)
    recon = result.reconstructions(x)
    assert torch.allclose(comps.sum(0), recon[-1], atol=1e-5)
    assert torch.allclose(recon[-1], result.disentanglers[4](x).detach(), atol=1e-6)


def test_energy_is_variance_ratio_and_in_unit_interval(teacher, splits, result):
    assert result.energy.dtype == torch.float64 and result.energy.shape == (3,)
    assert bool(((result.energy >= 0) & (result.energy <= 1)).all())
    # float64 reference from the definition on the same (first 1000, class-balanced) training samples
    x_train, y_train = splits[0]
    from nbexplain.core.complexity.metrics import _metric_indices

    idx, _ = _metric_indices(y_train, splits[1][1], 1000)
    xm = x_train[idx]
    with torch.no_grad():
        f = (teacher.linear(xm) + Teacher.nonlinear(xm)).double()
    comps = result.components(xm).double()
    var = lambda z: float(((z - z.mean(0)) ** 2).sum(1).mean())  # noqa: E731
    ref = torch.tensor([var(c) / var(f) for c in comps], dtype=torch.float64)
    assert torch.allclose(result.energy, ref, rtol=1e-5, atol=1e-7)
    assert float(result.energy[0]) > float(result.energy[1:].max())


def test_shapley_effectiveness_and_overfitting_are_efficient(result):
    L = result.losses
    assert math.isclose(float(result.effectiveness.sum()), L["empty_train"] - L["full_train"], abs_tol=1e-9)
    gap = lambda s: L[f"{s}_test"] - L[f"{s}_train"]  # noqa: E731
    assert math.isclose(float(result.overfitting.sum()), gap("full") - gap("empty"), abs_tol=1e-9)
    assert result.shapley is not None and result.shapley.method == "exact"
    assert result.shapley.n_evaluations == 2 ** 3
    # the components make the teacher's own head much better than the mean feature does
    assert float(result.effectiveness.sum()) > 0.3
    assert float(result.effectiveness[0]) > 0


def test_head_sees_the_replaced_feature(teacher, splits, result):
    # model loss through the hook path equals the plain forward loss
    x_train, y_train = splits[0]
    from nbexplain.core.complexity.metrics import _metric_indices

    idx, _ = _metric_indices(y_train, splits[1][1], 1000)
    with torch.no_grad():
        plain = float(nn.functional.cross_entropy(teacher(x_train[idx]), y_train[idx]))
    assert math.isclose(result.losses["model_train"], plain, rel_tol=1e-5)
    assert result.losses["full_train"] < result.losses["empty_train"]


def test_reliability_measures_linear_consistency(result):
    rel = result.reliability
    assert rel.shape == (3,) and bool(((rel >= 0) & (rel <= 1)).all())
    # the reference "network" sees x: order 1 (mostly the linear part) is far more consistent than the rest
    assert float(rel[0]) > 0.6
    assert float(rel[1:].max()) < float(rel[0]) - 0.3
    assert set(result.consistency_maps) == {1, 2, 4}
    rc = result.reliable_components(torch.randn(5, D_IN))
    assert rc.shape == (3, 5, D_FEAT)


def test_reliability_against_itself_is_one(teacher, splits):
    train, test = splits
    res = decompose_complexity(teacher, train, test, "feature", orders=(0, 1), epochs=2, width=8,
                               reference_model=teacher, progress=False)
    assert math.isclose(res.reliability_feature, 1.0, abs_tol=1e-6)


def test_default_reference_network_is_trained_and_user_model_untouched(teacher, splits):
    train, test = splits
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    res = decompose_complexity(teacher, train, test, "feature", orders=(0,), epochs=1, width=8,
                               reference_epochs=1, progress=False)
    assert res.reference_model is not None and res.reference_model is not teacher
    assert not torch.equal(res.reference_model.head.weight, teacher.head.weight)
    assert 0.0 <= float(res.reliability[0]) <= 1.0
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])


def test_deterministic_under_seed(teacher, splits):
    train, test = splits
    kw = dict(orders=(1, 2), epochs=2, width=16, reference_model=False, progress=False)
    a = decompose_complexity(teacher, train, test, "feature", seed=5, **kw)
    b = decompose_complexity(teacher, train, test, "feature", seed=5, **kw)
    c = decompose_complexity(teacher, train, test, "feature", seed=6, **kw)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.effectiveness, b.effectiveness)
    assert a.history[2]["loss"] == b.history[2]["loss"]
    assert not torch.equal(a.energy, c.energy)
    assert torch.isnan(a.reliability).all()


def test_resume_reuses_trained_disentanglers(teacher, splits):
    train, test = splits
    kw = dict(epochs=2, width=16, reference_model=False, progress=False)
    first = decompose_complexity(teacher, train, test, "feature", orders=(1, 2), **kw)
    more = decompose_complexity(teacher, train, test, "feature", orders=(1, 2, 3), resume=first, **kw)
    assert more.disentanglers[1] is first.disentanglers[1]
    assert more.disentanglers[2] is first.disentanglers[2]
    assert more.history[1] is first.history[1]
    assert more.disentanglers[3].order == 3 and len(more.history[3]["loss"]) == 2
    # the order-3 disentangler was warm-started: its first two blocks started from order 2's
    assert torch.allclose(more.energy[:2], first.energy, rtol=1e-6)
    with pytest.raises(ValueError, match="Resume only the same layer"):
        decompose_complexity(teacher, train, test, "linear", orders=(1,), resume=first, **kw)


def test_warm_start_is_exact():
    x, f = torch.randn(32, 5), torch.randn(32, 2)
    d = make_disentangler("dense", 1, x, f, 8)
    nn.init.normal_(d.blocks[0].outer.weight)
    deeper = d.grow(4, generator_seed=0)
    assert deeper.order == 4 and len(deeper.blocks) == 4
    assert torch.allclose(d(x), deeper(x))
    xi, fi = torch.rand(4, 1, 8, 8), torch.randn(4, 3, 4, 4)
    c = make_disentangler("conv", 0, xi, fi, 8)
    assert isinstance(c, ConvDisentangler) and c(xi).shape == (4, 3, 4, 4)
    assert torch.allclose(c(xi), c.grow(2)(xi), atol=1e-6)
    assert isinstance(make_disentangler("dense", 2, xi, fi, 8), DenseDisentangler)


def conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1)), ("relu1", nn.ReLU()), ("pool", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 6, 3, padding=1)), ("relu2", nn.ReLU()), ("flatten", nn.Flatten()),
        ("out", nn.Linear(6 * 4 * 4, 3)), ("drop", nn.Dropout(0.1)),
    ]))


def test_conv_family_on_images_and_hygiene():
    net = conv_net()
    x = torch.rand(96, 1, 8, 8)
    y = torch.randint(0, 3, (96,))
    net.train()
    net.conv1.weight.requires_grad_(False)
    handle = net.relu1.register_forward_hook(lambda m, i, o: None)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = decompose_complexity(net, (x[:64], y[:64]), (x[64:], y[64:]), "conv2", orders=(1, 2), epochs=1,
                               width=8, progress=False, reference_epochs=1)
    assert res.family == "conv" and res.feature_shape == (6, 4, 4)
    assert res.components(x[:3]).shape == (2, 3, 6, 4, 4)
    assert net.training and all(m.training for m in net.modules())
    assert not net.conv1.weight.requires_grad and net.conv2.weight.requires_grad
    assert list(net.relu1._forward_hooks) == [handle.id] and not net.conv2._forward_hooks
    assert all(p.grad is None for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    # the default reference copy does not inherit the user's hooks
    assert not res.reference_model.relu1._forward_hooks
    handle.remove()


def test_hygiene_when_the_loss_raises_midway():
    net = conv_net().train()
    x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 3, (40,))
    calls = {"n": 0}

    def bad_loss(out, t):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(out, t)

    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        decompose_complexity(net, (x[:30], y[:30]), (x[30:], y[30:]), "conv2", orders=(0, 1), epochs=1,
                             width=4, loss=bad_loss, reference_model=False, progress=False)
    assert net.training and not any(m._forward_hooks for m in net.modules())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_custom_family_callable(teacher, splits):
    train, test = splits
    seen = []

    def factory(order, previous):
        seen.append((order, previous))
        layers = [nn.Linear(D_IN, 16)]
        for _ in range(order):
            layers += [nn.ReLU(), nn.Linear(16, 16)]
        return nn.Sequential(*layers, nn.Linear(16, D_FEAT))

    res = decompose_complexity(teacher, train, test, "feature", orders=(1, 2), epochs=1, family=factory,
                               reference_model=False, progress=False)
    assert res.family == "custom" and [o for o, _ in seen] == [1, 2]
    assert seen[0][1] is None and seen[1][1] is res.disentanglers[1]


def test_bad_inputs(teacher, splits):
    train, test = splits
    kw = dict(epochs=1, progress=False, reference_model=False)
    with pytest.raises(ValueError, match="Did you mean 'feature'"):
        decompose_complexity(teacher, train, test, "featur", **kw)
    with pytest.raises(TypeError, match="layer"):
        decompose_complexity(teacher, train, test, ["feature"], **kw)
    with pytest.raises(ValueError, match="strictly increasing"):
        decompose_complexity(teacher, train, test, "feature", orders=(2, 1), **kw)
    with pytest.raises(ValueError, match="≥ 0"):
        decompose_complexity(teacher, train, test, "feature", orders=(-1, 2), **kw)
    with pytest.raises(ValueError, match="empty"):
        decompose_complexity(teacher, train, test, "feature", orders=(), **kw)
    with pytest.raises(TypeError, match="ints"):
        decompose_complexity(teacher, train, test, "feature", orders=(1.5,), **kw)
    with pytest.raises(TypeError, match="pair"):
        decompose_complexity(teacher, train[0], test, "feature", **kw)
    with pytest.raises(ValueError, match="same samples"):
        decompose_complexity(teacher, (train[0], train[1][:10]), test, "feature", **kw)
    with pytest.raises(ValueError, match="family"):
        decompose_complexity(teacher, train, test, "feature", family="cnn", **kw)
    with pytest.raises(ValueError, match="family='conv' needs image inputs"):
        decompose_complexity(teacher, train, test, "feature", family="conv", **kw)
    with pytest.raises(ValueError, match="one int per order"):
        decompose_complexity(teacher, train, test, "feature", orders=(1, 2), epochs=(1,), progress=False)
    with pytest.raises(TypeError, match="reference_model"):
        decompose_complexity(teacher, train, test, "feature", epochs=1, reference_model="resnet")
    with pytest.raises(ValueError, match="non-finite"):
        bad = train[0].clone()
        bad[0, 0] = float("nan")
        decompose_complexity(teacher, (bad, train[1]), test, "feature", **kw)
    res = decompose_complexity(teacher, train, test, "feature", orders=(0,), width=4, **kw)
    with pytest.raises(ValueError, match="shape"):
        res.components(torch.randn(3, D_IN + 1))
    with pytest.raises(RuntimeError, match="no reference"):
        res.reliable_components(torch.randn(3, D_IN))


def test_seed_is_keyword_only_and_progress_follows_the_policy(teacher, splits, capsys):
    train, test = splits
    kw = dict(orders=(0, 1), epochs=1, width=4, reference_model=False)
    with pytest.raises(TypeError, match="positional"):
        decompose_complexity(teacher, train, test, "feature", (0, 1), progress=False)  # options positional
    with pytest.raises(TypeError, match="`progress` must be None"):
        decompose_complexity(teacher, train, test, "feature", progress="yes", **kw)
    quiet = decompose_complexity(teacher, train, test, "feature", seed=3, progress=False, **kw)
    assert capsys.readouterr().err == ""
    shown = decompose_complexity(teacher, train, test, "feature", seed=3, progress=True, **kw)
    err = capsys.readouterr().err
    assert "complexity of feature" in err and "order 1" in err
    auto = decompose_complexity(teacher, train, test, "feature", seed=3, progress=None, **kw)  # quick: no bar
    assert "complexity of feature" not in capsys.readouterr().err
    for res in (shown, auto):  # a bar changes nothing in the result
        for name in ("energy", "fit_quality", "effectiveness", "overfitting"):
            assert torch.equal(getattr(res, name), getattr(quiet, name)), name


def test_public_export():
    assert nx.decompose_complexity is decompose_complexity
    assert "decompose_complexity" in nx.__all__
