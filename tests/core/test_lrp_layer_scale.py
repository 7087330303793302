"""LRP through element-wise products with a constant factor — the layer scale of ConvNeXt / CaiT.

``y = x ⊙ γ`` (γ broadcast per channel) is a linear layer whose weight matrix is diagonal. The reference
(tests/core/lrp_reference.py) reads that matrix from a module computing the product and applies each rule's
equation to it: ε passes ``R·xγ/(xγ + ε·sign)``, z⁺ keeps only positive contributions ``(xγ)⁺``, αβ sends
``α R`` through positive and ``−β R`` through negative ones, flat / w² / zᴮ pass the relevance unchanged.
Before, a layer scale made every strict call fail with ``MulBackward0`` and no hint.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import nbexplain as nx
from tests.core import lrp_reference as ref
from tests.core.test_lrp_rules import RULES, as_ref
from tests.models.state import untouched
from tests.models.zoo import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = 1e-12


class _Times(nn.Module):
    """The product as the reference reads it: ``x * weight`` (its matrix is diagonal; ``weight``/``bias`` are
    the names the reference's flat rule reads for the connectivity)."""

    def __init__(self, factor: torch.Tensor) -> None:
        super().__init__()
        self.weight = factor.clone()
        self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * self.weight


#: How the model writes the product (each gives the same map): the factor is a per-channel (C, 1, 1) parameter.
WRITTEN: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "x * gamma": lambda m, h: h * m.gamma,
    "gamma * x": lambda m, h: m.gamma * h,
    "torch.mul": lambda m, h: torch.mul(h, m.gamma),
    "view of a (C,) parameter": lambda m, h: h * m.flat[:, None, None],
    "x.mul_(gamma)": lambda m, h: h.mul_(m.gamma),
    "x *= gamma": lambda m, h: h.__imul__(m.gamma),
    "x * buffer": lambda m, h: h * m.fixed,
    "x / (1 / gamma)": lambda m, h: h / m.inverse,
}


class _ScaledConv(nn.Module):
    """Conv → layer scale (signed input to the scale: the conv's output) → ReLU → Linear."""

    def __init__(self, written: str = "x * gamma") -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.gamma = nn.Parameter(torch.tensor([0.7, -1.3, 2.0, 0.05]).view(4, 1, 1))
        self.flat = nn.Parameter(self.gamma.detach().flatten().clone())
        self.register_buffer("fixed", self.gamma.detach().clone())
        self.register_buffer("inverse", 1 / self.gamma.detach())
        self.relu = nn.ReLU()
        self.head = nn.Linear(4 * 4 * 4, 3)
        self.written = written

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = WRITTEN[self.written](self, self.conv(x))
        return self.head(self.relu(h).flatten(1))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64), torch.tensor([0, 1, 2])


def _close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-9) -> None:
    torch.testing.assert_close(got, want.detach(), rtol=rel, atol=rel * float(want.detach().abs().max()))


def _plan(net: _ScaledConv, rule: tuple, layers: tuple = ("eps", 1e-6, True)) -> list:
    return [("linear", net.conv, layers), ("linear", _Times(net.gamma.detach()), rule), ("relu",), ("flatten",),
            ("linear", net.head, layers)]


@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_on_a_layer_scale_reads_it_as_a_diagonal_linear_layer(rule: str) -> None:
    net = _ScaledConv().double().eval()
    x, t = _data()
    want, out = ref.run(_plan(net, as_ref(RULES[rule])), x, t)
    with untouched(net):
        res = nx.lrp(net, x, t, composite={nx.canonizers.Scale: RULES[rule], nn.Conv2d: nx.rules.Epsilon(1e-6), nn.Linear: nx.rules.Epsilon(1e-6)})
    assert res.rules["<layer scale>"] == RULES[rule]
    torch.testing.assert_close(res.output, out.detach())
    _close(res.attribution, want)


@pytest.mark.parametrize("written", list(WRITTEN))
def test_every_way_of_writing_the_product_gets_the_same_rule_and_output(written: str) -> None:
    net = _ScaledConv(written).double().eval()
    x, t = _data()
    want, _ = ref.run(_plan(net, ("eps", 0.05, True), ("eps", 0.05, True)), x, t)
    with torch.no_grad():
        expected_out = net(x)
    with untouched(net):
        res = nx.lrp(net, x, t, composite="epsilon", epsilon=0.05)
    assert res.rules["<layer scale>"] == nx.rules.Epsilon(0.05)  # the call's ε reaches the layer scale
    assert torch.equal(res.output, expected_out)  # the product computed exactly as written
    _close(res.attribution, want, 1e-8)


def test_the_default_composite_gives_a_layer_scale_the_calls_epsilon() -> None:
    net = _ScaledConv().double().eval()
    x, t = _data()
    res = nx.lrp(net, x, t)
    assert res.rules["<layer scale>"] == nx.rules.Epsilon(1e-6)
    plan = [("linear", net.conv, ("flat",)), ("linear", _Times(net.gamma.detach()), ("eps", 1e-6, True)), ("relu",),
            ("flatten",), ("linear", net.head, ("eps", 1e-6, True))]
    want, _ = ref.run(plan, x, t)
    _close(res.attribution, want)


def _convnext_reference(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    out = net(xg)
    (g,) = torch.autograd.grad(out[torch.arange(len(t)), t].sum(), xg)
    return g * x


def test_a_convnext_block_with_layer_scale_is_gradient_times_input_as_epsilon_goes_to_zero() -> None:
    """ConvNeXt blocks (depthwise 7×7, LayerNorm, Linear 4×, GELU, Linear, layer scale, residual): LRP has no
    rule of its own for LayerNorm (the error says to map nx.rules.Gradient()), GELU passes relevance by default (an
    activation). With ε → 0 on every Linear/Conv and the layer scale, and nx.rules.Gradient() on LayerNorm and GELU,
    every rule is consistent with gradient × input, so the map must equal it — the layer scale and the
    residual sum around it included."""
    net, case = build("convnext")
    net = net.double()
    assert any(float(b.gamma.detach().min()) < 0 < float(b.gamma.detach().max()) for b in net.blocks)  # scales of both signs
    x = case.x(3).double()
    t = torch.tensor([0, 1, 3])
    with pytest.raises(nx.UnsupportedModuleError, match=r"'blocks\.0\.norm' \(LayerNorm\).*nx\.rules\.Gradient\(\)"):
        nx.lrp(net, x, t)
    comp = {nn.LayerNorm: nx.rules.Gradient(), nn.GELU: nx.rules.Gradient(), nn.Linear: nx.rules.Epsilon(TINY), nn.Conv2d: nx.rules.Epsilon(TINY)}
    with untouched(net):
        res = nx.lrp(net, x, t, composite=comp, epsilon=TINY)
    assert res.rules["<layer scale>"] == nx.rules.Epsilon(TINY) and res.rules["<residual sum>"] == nx.rules.Norm(TINY)
    want = _convnext_reference(net, x, t)
    _close(res.attribution, want, 1e-7)


def test_a_convnext_block_runs_with_the_usual_lrp_choices() -> None:
    """z⁺ on the convolutions, ε on the Linear layers and the layer scale, gradient × input through LayerNorm,
    GELU passed: finite, the model's own output, and the model left as found."""
    net, case = build("convnext")
    x = case.x(2)
    comp = nx.Composite({nn.LayerNorm: nx.rules.Gradient(), nn.Conv2d: nx.rules.ZPlus(), nn.Linear: nx.rules.Epsilon()}, first=nx.rules.Flat())
    with untouched(net):
        res = nx.lrp(net, x, 1, composite=comp)
    assert bool(res.attribution.isfinite().all()) and res.attribution.abs().sum() > 0
    torch.testing.assert_close(res.output, net(x).detach())


class _Gated(nn.Module):
    """A product of two activations (a gate): not a layer scale."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(self.a(x) * torch.sigmoid(self.b(x)))


def test_a_product_of_two_activations_is_not_a_layer_scale_and_its_error_says_what_to_do() -> None:
    with pytest.raises(nx.UnsupportedModuleError) as info:
        nx.lrp(_Gated(), torch.randn(2, 4), 0)
    msg = str(info.value)
    assert "MulBackward0" in msg and "layer scale" in msg and "product of two activations" in msg, msg
    assert "strict=False" in msg and "nx.rules.Gradient()" in msg, msg
    with pytest.warns(nx.FunctionalOpsWarning, match="mul"):  # the remedy named works, and says what it did
        res = nx.lrp(_Gated(), torch.randn(2, 4), 0, strict=False)
    assert bool(res.attribution.isfinite().all())


def test_the_error_without_the_canonizer_names_the_layer_scale_remedy() -> None:
    net = _ScaledConv().double().eval()
    x, t = _data()
    with pytest.raises(nx.UnsupportedModuleError, match=r"MulBackward0.*layer scale x \* self\.gamma.*canonizers='auto'"):
        nx.lrp(net, x, t, canonizers=[nx.canonizers.MergeBatchNorm(), nx.canonizers.ExplicitResidual()])


def test_the_scale_module_keeps_no_reference_to_the_users_parameter() -> None:
    net = _ScaledConv().double().eval()
    x, t = _data()
    canon = nx.canonizers.ExplicitScale()
    nx.lrp(net, x, t, canonizers=[canon])
    assert canon.calls == 1 and canon.scale.factor is None and canon.scale.compute is None
    assert list(canon.scale.parameters()) == []
