"""nx.lrp_rules: LRP rules as a context for any gradient-based method (issue 12).

Inside the block the gradient of the explained score is the LRP relevance seeded by that gradient, so
nx.gradient equals nx.lrp(init="one"), SmoothGrad averages lrp over its noisy inputs and integrated gradients is
(x − x̄) ⊙ the path average of lrp — checked in float64 on a ResNet with batch norms and residual sums. The model
is left exactly as found (also when the block raises), training after the block is training without it, the
strict check fires inside, and the rule/canonizer names live in nx.rules / nx.canonizers.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.architectures import resnet18, settle_batch_norm
from nbexplain.core.attribution.gradients import ig_nodes
from tests.core.test_lrp import _assert_same, _state

COMPOSITES = [
    ("epsilon", {"epsilon": 1e-4}),
    ("epsilon_gamma_box", {"low": -1.0, "high": 2.0, "gamma": 0.5}),
    ("epsilon_alpha2_beta1", {}),
    ("epsilon_plus_flat", {}),
]


def _resnet() -> nn.Module:
    """A small ResNet-18 (batch norms after convolutions, residual sums), float64, with settled statistics."""
    net = resnet18(width=4, seed=3, n_classes=5)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.3, 0.3, generator=gen)
    settle_batch_norm(net, torch.rand(16, 3, 16, 16, generator=gen))
    return net.double().eval()


def _x(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(9), dtype=torch.float64)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * float(b.abs().max()))


@pytest.mark.parametrize(("composite", "params"), COMPOSITES, ids=[c for c, _ in COMPOSITES])
def test_gradient_inside_is_lrp_seeded_with_one(composite: str, params: dict) -> None:
    net, x = _resnet(), _x()
    target = torch.tensor([0, 3, 1])
    plain = nx.gradient(net, x, target).attribution
    with nx.lrp_rules(net, composite, **params) as comp:
        inside = nx.gradient(net, x, target).attribution
    reference = nx.lrp(net, x, target, composite, init="one", **params)
    _close(inside, reference.attribution)
    assert comp.name == reference.composite.name
    # the rules did act: relevance is not the gradient
    assert not torch.allclose(inside, plain, rtol=1e-3, atol=1e-6)


def test_gradient_x_input_inside_is_input_times_relevance() -> None:
    net, x = _resnet(), _x()
    with nx.lrp_rules(net, "epsilon_plus_flat"):
        gxi = nx.gradient_x_input(net, x, 2).attribution
    _close(gxi, x * nx.lrp(net, x, 2, "epsilon_plus_flat", init="one").attribution)


def _recording(net: nn.Module) -> tuple[list[torch.Tensor], object]:
    """The inputs the model is differentiated at (the leaves a gradient method makes), in call order."""
    seen: list[torch.Tensor] = []

    def record(module: nn.Module, args: tuple) -> None:
        if args[0].requires_grad:
            seen.append(args[0].detach().clone())

    return seen, net.register_forward_pre_hook(record)


def test_smoothgrad_inside_averages_lrp_over_the_same_noisy_inputs() -> None:
    net, x = _resnet(), _x(1)
    seen, handle = _recording(net)
    with nx.lrp_rules(net, "epsilon_alpha2_beta1"):
        sg = nx.smoothgrad(net, x, 4, n_samples=6, noise_level=0.2, batch_size=4).attribution
    handle.remove()
    noisy = torch.cat(seen)
    assert noisy.shape[0] == 6 and not torch.equal(noisy[0], noisy[1])
    rel = nx.lrp(net, noisy, 4, "epsilon_alpha2_beta1", init="one").attribution
    _close(sg, rel.mean(0, keepdim=True))


def test_integrated_gradients_inside_is_the_path_average_of_relevance() -> None:
    net, x = _resnet(), _x(2)
    base = torch.full_like(x[:1], 0.25)
    steps = 5
    with nx.lrp_rules(net, "epsilon", epsilon=1e-3):
        ig = nx.integrated_gradients(net, x, 1, baseline=base, steps=steps, batch_size=3).attribution
    alphas, weights = ig_nodes(steps, "gausslegendre")
    avg = torch.zeros_like(x)
    for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
        point = base + a * (x - base)
        avg += w * nx.lrp(net, point, 1, "epsilon", epsilon=1e-3, init="one").attribution
    _close(ig, (x - base) * avg)


def _full_state(net: nn.Module) -> dict:
    state = _state(net)
    state["forward"] = [n for n, m in net.named_modules() if "forward" in m.__dict__]
    state["all_hooks"] = {
        n: (list(m._forward_hooks), list(m._forward_pre_hooks), list(m._forward_hooks_always_called))
        for n, m in net.named_modules()
    }
    return state


def _assert_full(a: dict, b: dict) -> None:
    _assert_same(a, b)
    assert a["forward"] == b["forward"] == []
    assert a["all_hooks"] == b["all_hooks"]


def _user_touches(net: nn.Module) -> None:
    """A model in train mode with a frozen layer, a grad, a user hook and a backward hook: all must survive."""
    net.train()
    net.conv1.weight.requires_grad_(False)
    net.fc.weight.grad = torch.full_like(net.fc.weight, 0.5)
    net.layer1.register_forward_hook(lambda m, a, o: None)
    net.fc.register_full_backward_hook(lambda m, gi, go: None)


def test_model_is_left_exactly_as_found() -> None:
    net, x = _resnet(), _x()
    _user_touches(net)
    before = _full_state(net)
    with nx.lrp_rules(net, "epsilon_alpha2_beta1"):
        assert not net.training and not any(p.requires_grad for p in net.parameters())
        assert not net.fc._backward_hooks  # would be handed relevance
        nx.gradient(net, x, 0)
        nx.smoothgrad(net, x, 0, n_samples=2)
    _assert_full(before, _full_state(net))


def test_model_is_left_exactly_as_found_when_the_block_raises() -> None:
    net, x = _resnet(), _x()
    _user_touches(net)
    before = _full_state(net)
    with pytest.raises(KeyError, match="boom"), nx.lrp_rules(net, "epsilon_plus_flat"):
        nx.gradient(net, x, 0)
        raise KeyError("boom")
    _assert_full(before, _full_state(net))
    # and when the model's forward raises inside the block (mid-pass: canonizers' modes entered)
    with pytest.raises(RuntimeError), nx.lrp_rules(net, "epsilon_plus_flat"):
        net(torch.rand(2, 5, 16, 16, dtype=torch.float64))  # wrong channel count
    _assert_full(before, _full_state(net))
    net.eval()
    with torch.no_grad():  # the residual canonizer's mode is gone: a + b of tensors is a plain sum again
        a = torch.ones(2, requires_grad=True)
        with torch.enable_grad():
            assert (a + a).grad_fn.__class__.__name__ == "AddBackward0"


def test_training_after_the_block_is_training_without_it() -> None:
    torch.manual_seed(0)
    net = _resnet().float()
    twin = copy.deepcopy(net)
    x = torch.rand(8, 3, 16, 16)
    with nx.lrp_rules(net, "epsilon_alpha2_beta1"):
        nx.gradient(net, x, 1)
        nx.integrated_gradients(net, x[:2], 1, steps=3)

    def train(model: nn.Module) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(5)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        model.train()
        for _ in range(3):
            xb = torch.rand(8, 3, 16, 16, generator=gen)
            yb = torch.randint(0, 5, (8,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    trained, reference = train(net), train(twin)
    assert trained.keys() == reference.keys()
    for k in trained:
        assert torch.equal(trained[k], reference[k]), k
    assert any(not torch.equal(trained[k], v) for k, v in _resnet().float().state_dict().items())


def test_training_mode_inside_raises() -> None:
    net, x = _resnet(), _x()
    with nx.lrp_rules(net), pytest.raises(RuntimeError, match="eval mode"):
        net.train()
        net(x)
    assert not net.training  # what the user set inside is undone on exit too: it was in eval mode before


class _Functional(nn.Module):
    """A model that computes on its input outside modules (.mean over positions)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_strict_check_fires_inside_and_strict_false_gives_rules() -> None:
    net = _Functional().double().eval()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    before = _full_state(net)
    with nx.lrp_rules(net, "epsilon"):
        with pytest.raises(nx.UnsupportedModuleError, match=r"Mean.*the model's own forward"):
            nx.gradient(net, x, 0)
        # a direct call with an input that requires grad is checked too (and works again after the error)
        with pytest.raises(nx.UnsupportedModuleError, match="Mean"):
            net(x.clone().requires_grad_(True))
        with torch.no_grad():
            net(x)  # nothing to explain: no graph, no check
    _assert_full(before, _full_state(net))
    with nx.lrp_rules(net, "epsilon", strict=False):
        inside = nx.gradient(net, x, 0).attribution
    _close(inside, nx.lrp(net, x, 0, "epsilon", init="one", strict=False).attribution)


def test_inputs_computed_before_the_call_are_not_the_models_operations() -> None:
    net, x = _resnet(), _x()
    leaf = x.clone().requires_grad_(True)
    with nx.lrp_rules(net, "epsilon"):
        out = net(leaf * 2.0 - 0.5)  # Mul/Sub before the model: not an operation of the model
        (g,) = torch.autograd.grad(out[:, 1].sum(), leaf)
    _close(g, 2.0 * nx.lrp(net, x * 2.0 - 0.5, 1, "epsilon", init="one").attribution)


def test_a_submodule_called_on_its_own_gets_plain_gradients() -> None:
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double().eval()
    x = torch.rand(3, 4, dtype=torch.float64)
    plain = nx.gradient(net[0], x, 1).attribution
    with nx.lrp_rules(net, "epsilon", epsilon=0.5):
        inside = nx.gradient(net[0], x, 1).attribution
        ruled = nx.gradient(net, x, 1).attribution
    _close(inside, plain)
    _close(ruled, nx.lrp(net, x, 1, "epsilon", epsilon=0.5, init="one").attribution)


def test_contexts_do_not_nest_and_lrp_inside_is_refused() -> None:
    net, x = _resnet(), _x()
    before = _full_state(net)
    with nx.lrp_rules(net, "epsilon"):
        with pytest.raises(RuntimeError, match="do not nest"), nx.lrp_rules(net.layer1, "epsilon"):
            pass
        with pytest.raises(RuntimeError, match=r"nx\.lrp cannot run inside.*nx\.gradient"):
            nx.lrp(net, x, 0)
        # the outer block is intact
        _close(nx.gradient(net, x, 0).attribution, nx.gradient(net, x, 0).attribution)
    _assert_full(before, _full_state(net))
    with nx.lrp_rules(net, "epsilon"):  # usable again after the block
        inside = nx.gradient(net, x, 0).attribution
    _close(inside, nx.lrp(net, x, 0, "epsilon", init="one").attribution)


def test_named_composite_parameters_are_checked() -> None:
    net = _resnet()
    with pytest.raises(TypeError, match="gamma"), nx.lrp_rules(net, "epsilon", gamma=0.5):
        pass
    with pytest.raises(TypeError, match="strict"), nx.lrp_rules(net, strict="yes"):
        pass
    with pytest.raises(ValueError, match="canonizers"), nx.lrp_rules(net, canonizers="none"):
        pass


@pytest.mark.parametrize("name", ["Rule", "ZeroRule", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat",
                                  "WSquare", "Norm", "Pass", "Gradient"])
def test_old_rule_names_raise_naming_the_namespace(name: str) -> None:
    with pytest.raises(AttributeError, match=rf"use nx\.rules\.{name}\b"):
        getattr(nx, name)
    assert getattr(nx.rules, name).__name__ == name
    assert name in nx.rules.__all__ and name in (nx.rules.__doc__ or "")


@pytest.mark.parametrize("name", ["Canonizer", "MergeBatchNorm", "ExplicitResidual", "ExplicitScale", "Scale"])
def test_old_canonizer_names_raise_naming_the_namespace(name: str) -> None:
    with pytest.raises(AttributeError, match=rf"use nx\.canonizers\.{name}\b"):
        getattr(nx, name)
    assert getattr(nx.canonizers, name).__name__ == name
    assert name in nx.canonizers.__all__ and name in (nx.canonizers.__doc__ or "")


def test_namespaces_show_in_dir_and_the_gradient_function_is_unambiguous() -> None:
    assert {"rules", "canonizers", "lrp_rules"} <= set(dir(nx))
    assert callable(nx.gradient) and not isinstance(nx.gradient, type)
    assert isinstance(nx.rules.Gradient(), nx.rules.Rule)


def test_canonizers_remove_exactly_their_own_hooks() -> None:
    net = _resnet()
    x = _x(1)
    before = _full_state(net)
    canon = nx.canonizers.MergeBatchNorm()
    with canon.apply(net, x):  # the trace path (attribute-style residual blocks) and the Sequential pairs
        assert len(canon.transparent()) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        assert all(len(bn._forward_hooks) == 1 for bn in canon.transparent())
        kept = net.bn1.register_forward_hook(lambda m, a, o: None)  # a hook of someone else, added meanwhile
        merged = net(x)
    assert list(net.bn1._forward_hooks) == [kept.id]  # the canonizer's went, the other one stayed
    kept.remove()
    _assert_full(before, _full_state(net))
    assert {k: id(v) for k, v in net.named_parameters()} == before["objects"]
    assert canon.transparent() == set()
    torch.testing.assert_close(merged, net(x), rtol=1e-10, atol=1e-12)


class _InterruptOnce(nn.Module):
    """A block that raises KeyboardInterrupt when armed (torch runs no always-called hook for it), once."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        return self.inner(x)


def test_a_pass_cut_short_by_keyboard_interrupt_does_not_leak_into_the_next() -> None:
    net, x = _resnet(), _x()
    net.layer2 = _InterruptOnce(net.layer2)
    reference = nx.lrp(net, x, 1, "epsilon_plus_flat", init="one").attribution
    net.layer2.armed = True
    before = _full_state(net)
    with nx.lrp_rules(net, "epsilon_plus_flat"):
        with pytest.raises(KeyboardInterrupt):
            nx.gradient(net, x, 1)
        inside = nx.gradient(net, x, 1).attribution  # a fresh pass: the first layer gets its Flat rule again
    _close(inside, reference)
    _assert_full(before, _full_state(net))
    a = torch.ones(2, requires_grad=True)
    assert type((a + a).grad_fn).__name__ == "AddBackward0"  # the residual canonizer's mode is off
