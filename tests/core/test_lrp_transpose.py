"""LRP through transposed convolutions (``ConvTranspose1d/2d/3d``), against the float64 matrix reference.

A transposed convolution is a linear map ``z = Mx + b``; the reference (tests/core/lrp_reference.py) reads
``M`` column by column from the module itself and applies each rule's equation to the explicit matrix, so it
knows nothing of how nbexplain computes the transposed operator. Before ConvTranspose had rules, every call
here raised ``UnsupportedModuleError``, and the error suggested ``nx.rules.Pass()``, which then failed on the shape.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

import nbexplain as nx
from tests.core import lrp_reference as ref
from tests.core.test_lrp_rules import RULES, as_ref
from tests.models.state import untouched

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = 1e-12

#: (dims, constructor arguments, input spatial size): strides, padding, output padding, dilation, groups, no bias
CONFIGS = {
    "2d-s2p1": (2, dict(kernel_size=3, stride=2, padding=1), (3, 3)),
    "2d-grouped": (2, dict(kernel_size=3, stride=2, padding=1, output_padding=1, groups=2, dilation=2), (3, 3)),
    "2d-nobias": (2, dict(kernel_size=(2, 3), stride=(3, 1), bias=False), (2, 3)),
    "1d": (1, dict(kernel_size=4, stride=2, padding=1, output_padding=1), (4,)),
    "3d": (3, dict(kernel_size=2, stride=2, groups=2), (2, 2, 2)),
}
_TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _net(config: str) -> tuple[nn.Sequential, torch.Tensor]:
    """ConvT (first layer: signed input) → ReLU → ConvT → ReLU → Flatten → Linear, float64."""
    dims, kw, size = CONFIGS[config]
    torch.manual_seed(3)
    kind = _TRANSPOSED[dims]
    first = kind(2, 4, **kw)
    second = kind(4, 2, **kw)
    with torch.no_grad():
        shape = second(first(torch.zeros(1, 2, *size))).shape
    net = nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), nn.Flatten(), nn.Linear(shape[1:].numel(), 3))
    x = torch.randn(3, 2, *size, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return net.double().eval(), x


def _plan(net: nn.Sequential, rule: tuple, first: tuple | None = None) -> list:
    return [
        ("linear", net[0], first or rule),
        ("relu",),
        ("linear", net[2], rule),
        ("relu",),
        ("flatten",),
        ("linear", net[5], ("eps", 1e-6, True)),
    ]


def _close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-9) -> None:
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * float(want.detach().abs().max()))


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_on_transposed_convolutions_matches_the_matrix_reference(config: str, rule: str) -> None:
    net, x = _net(config)
    t = torch.tensor([0, 1, 2])
    kind = type(net[0])
    want, out = ref.run(_plan(net, as_ref(RULES[rule])), x, t)
    with untouched(net):
        res = nx.lrp(net, x, t, composite={kind: RULES[rule], nn.Linear: nx.rules.Epsilon(1e-6)})
    torch.testing.assert_close(res.output, out)
    _close(res.attribution, want)


@pytest.mark.parametrize("config", ["2d-s2p1", "2d-grouped", "3d"])
def test_named_composites_give_transposed_convolutions_the_convolution_rules(config: str) -> None:
    net, x = _net(config)
    t = torch.tensor([2, 0, 1])
    cases: dict[str, tuple[tuple, tuple]] = {
        "epsilon": (("eps", 1e-6, True), ("eps", 1e-6, True)),
        "epsilon_plus": (("zplus", True), ("zplus", True)),
        "epsilon_plus_flat": (("zplus", True), ("flat",)),
        "epsilon_gamma_box": (("gamma", 0.25, True), ("zbox", -2.5, 2.5)),
        "epsilon_alpha2_beta1_flat": (("alphabeta", 2.0, 1.0, True), ("flat",)),
    }
    for name, (rule, first) in cases.items():
        want, _ = ref.run(_plan(net, rule, first), x, t)
        box = dict(low=-2.5, high=2.5) if name == "epsilon_gamma_box" else {}  # the others take no bounds
        res = nx.lrp(net, x, t, composite=name, **box)
        _close(res.attribution, want)
        assert type(res.rules["0"]).__name__ == {"eps": "Epsilon", "zplus": "ZPlus", "flat": "Flat", "zbox": "ZBox"}[
            first[0]
        ], name


def test_epsilon_to_zero_on_a_bias_free_relu_net_with_transposed_convs_is_gradient_times_input() -> None:
    net, x = _net("2d-nobias")
    with torch.no_grad():
        net[5].bias.zero_()
    t = torch.tensor([0, 1, 2])
    xg = x.clone().requires_grad_(True)
    out = net(xg)
    (g,) = torch.autograd.grad(out[torch.arange(3), t].sum(), xg)
    res = nx.lrp(net, x, t, composite="epsilon", epsilon=TINY)
    _close(res.attribution, g * x, 1e-8)
    torch.testing.assert_close(res.total, out[torch.arange(3), t].detach(), rtol=1e-9, atol=1e-12)  # Euler


class _Decoder(nn.Module):
    """Conv → ConvTranspose2d → BatchNorm2d → ReLU → head; ``C_in = C_out`` for the transposed conv, so a batch
    norm folded along the wrong axis of its weight would still run (and be wrong)."""

    def __init__(self, groups: int, negative: bool) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=groups)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 8 * 8, 3)
        self.relu = nn.ReLU()  # a module (Pass), as in the reference: flat also feeds inputs a ReLU zeroed
        g = torch.Generator().manual_seed(11)
        with torch.no_grad():
            self.bn.running_mean.copy_(torch.randn(4, generator=g) * 0.3)
            self.bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
            self.bn.weight.copy_(torch.tensor([0.6, 1.7, 1.1, 0.8]) * (torch.tensor([1.0, -1.0, 1.0, 1.0]) if negative else 1))
            self.bn.bias.copy_(torch.randn(4, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.relu(self.conv(x))
        return self.head(self.relu(self.bn(self.up(h))).flatten(1))


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("rule", ["zplus", "gamma", "a2b1", "eps", "flat"])
def test_batch_norm_after_a_transposed_conv_is_merged_along_its_output_channels(groups: int, negative: bool, rule: str) -> None:
    net = _Decoder(groups, negative).double().eval()
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.tensor([0, 2])
    plan = [("linear", net.conv, ("eps", 1e-6, True)), ("relu",), ("merged", net.up, net.bn, as_ref(RULES[rule])),
            ("relu",), ("flatten",), ("linear", net.head, ("eps", 1e-6, True))]
    want, _ = ref.run(plan, x, t)
    with untouched(net):
        res = nx.lrp(net, x, t, composite={nn.ConvTranspose2d: RULES[rule], nn.Conv2d: nx.rules.Epsilon(1e-6),
                                           nn.Linear: nx.rules.Epsilon(1e-6)})
    assert "bn" not in res.rules  # merged, not an affine layer of its own
    _close(res.attribution, want)


def test_the_standalone_merge_canonizer_folds_batch_norm_into_a_transposed_conv() -> None:
    net = _Decoder(2, True).double().eval()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    want = net(x)
    canon = nx.canonizers.MergeBatchNorm()
    assert canon.pairs(net) == [] and canon.pairs(net, x) == [(net.up, net.bn)]
    scale = net.bn.weight / torch.sqrt(net.bn.running_var + net.bn.eps)
    w = net.up.weight.detach()
    expected = w.clone()  # weight (C_in, C_out/groups, k, k): output channel g·(C_out/groups) + j of group g
    for i in range(4):
        for j in range(2):
            expected[i, j] *= scale[(i // 2) * 2 + j]
    with untouched(net):
        with canon.apply(net, x):
            merged = net(x)
            torch.testing.assert_close(net.up.weight.detach(), expected.detach())
    torch.testing.assert_close(merged, want)


class _OutputSize(nn.Module):
    """A transposed conv called with ``output_size=`` (the output padding is chosen per call, as in U-Nets)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.up = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
        self.head = nn.Linear(3 * 6 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(torch.relu(self.up(x, output_size=(6, 6))).flatten(1))


@pytest.mark.parametrize("rule", ["zplus", "gamma", "zbox", "eps"])
def test_a_transposed_conv_called_with_output_size_is_explained_as_computed(rule: str) -> None:
    net = _OutputSize().double().eval()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    same = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1).double()  # what the call computed
    same.load_state_dict(net.up.state_dict())
    want, _ = ref.run([("linear", same, as_ref(RULES[rule])), ("relu",), ("flatten",),
                       ("linear", net.head, ("eps", 1e-6, True))], x, torch.tensor([1, 0]))
    res = nx.lrp(net, x, torch.tensor([1, 0]), composite={nn.ConvTranspose2d: RULES[rule], nn.Linear: nx.rules.Epsilon(1e-6)})
    _close(res.attribution, want)


class _PixelShuffleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.head = nn.Linear(8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(self.shuffle(self.conv(x)).flatten(1))


def _message(net: nn.Module, x: torch.Tensor, composite: Any = "epsilon_plus_flat") -> str:
    with pytest.raises(nx.UnsupportedModuleError) as info:
        nx.lrp(net, x, 0, composite=composite)
    return str(info.value)


def test_the_error_for_an_unmapped_transposed_conv_suggests_a_rule_that_works() -> None:
    net, x = _net("2d-s2p1")
    comp = {nn.Linear: nx.rules.Epsilon(1e-6)}
    msg = _message(net, x, comp)
    assert "'0' (ConvTranspose2d)" in msg and "{torch.nn.ConvTranspose2d: nx.rules.ZPlus()}" in msg, msg
    assert "nx.rules.Pass()" not in msg, msg  # it maps (2, 3, 3) to (4, 5, 5): Pass would fail on the shape
    res = nx.lrp(net, x, 0, composite={**comp, nn.ConvTranspose2d: nx.rules.ZPlus()})  # the suggestion works
    want, _ = ref.run(_plan(net, ("zplus", True)), x, torch.zeros(3, dtype=torch.long))
    _close(res.attribution, want)


def test_the_error_for_a_shape_changing_module_never_suggests_pass_and_its_suggestion_works() -> None:
    torch.manual_seed(0)
    net = _PixelShuffleNet().double().eval()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    msg = _message(net, x)
    assert "'shuffle' (PixelShuffle)" in msg and "(2, 4, 4, 4) to (2, 1, 8, 8)" in msg, msg
    assert "nx.rules.Pass() does not apply" in msg and "nx.rules.Gradient()" in msg, msg
    assert "map nx.rules.Pass()" not in msg.replace("Map", "map"), msg
    comp = {nn.PixelShuffle: nx.rules.Gradient(), nn.Conv2d: nx.rules.Epsilon(TINY), nn.Linear: nx.rules.Epsilon(TINY)}
    res = nx.lrp(net, x, 0, composite=comp)  # a permutation: gradient × input through it is exact here
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net(xg)[:, 0].sum(), xg)
    _close(res.attribution, g * x, 1e-8)
    with pytest.raises(ValueError, match=r"Pass rule needs .* Map nx\.rules\.Gradient\(\)"):
        nx.lrp(net, x, 0, composite={**comp, nn.PixelShuffle: nx.rules.Pass()})


def test_the_error_for_a_normalisation_offers_the_gradient_rule_not_pass() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)).double().eval()
    msg = _message(net, torch.randn(2, 4, dtype=torch.float64))
    assert "'1' (LayerNorm)" in msg and "nx.rules.Gradient()" in msg and "nx.rules.Pass() does not apply" in msg, msg
    # an unknown shape-preserving module: Pass is offered only for the element-wise case, with Gradient beside it
    net = nn.Sequential(nn.Linear(4, 4), nn.Softshrink(), nn.Linear(4, 2)).double().eval()
    msg = _message(net, torch.randn(2, 4, dtype=torch.float64))
    assert "If Softshrink acts element-wise" in msg and "nx.rules.Pass()" in msg and "nx.rules.Gradient()" in msg, msg
    res = nx.lrp(net, torch.randn(2, 4, dtype=torch.float64), 0, composite={nn.Softshrink: nx.rules.Pass(), nn.Linear: nx.rules.Epsilon()})
    assert bool(res.attribution.isfinite().all())


def test_a_parametrized_transposed_conv_is_one_unit() -> None:
    """A weight-normed ConvTranspose2d (children of its own): one unit with the weight it computes."""
    net, x = _net("2d-s2p1")
    plain = copy.deepcopy(net)
    nn.utils.parametrizations.weight_norm(net[2], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(net[2].weight, plain[2].weight)
    t = torch.tensor([0, 1, 2])
    comp = {nn.ConvTranspose2d: nx.rules.ZPlus(), nn.Linear: nx.rules.Epsilon(1e-6)}
    with untouched(net):
        got = nx.lrp(net, x, t, composite=comp).attribution
    _close(got, nx.lrp(plain, x, t, composite=comp).attribution, 1e-8)


def _unet_plan(net: Any, conv: tuple, first: tuple) -> list:
    """The zoo's U-Net as a reference plan; ``up2`` is called with ``output_size=`` (output padding 1 here)."""
    up2 = copy.deepcopy(net.up2)
    up2.output_padding = (1, 1)
    lower = [("linear", net.down, conv), ("relu",), ("merged", up2, net.bn2, conv), ("relu",)]
    middle = [("maxpool", net.pool), ("linear", net.enc2, conv), ("relu",), ("concat", lower, []),
              ("linear", net.dec2, conv), ("relu",), ("merged", net.up1, net.bn1, conv), ("relu",)]
    return [("linear", net.enc1, first), ("relu",), ("concat", middle, []), ("linear", net.dec1, conv), ("relu",),
            ("linear", net.seg, conv), ("linear", net.gap, ("eps", 1e-9, True)), ("flatten",)]


@pytest.mark.parametrize(
    ("composite", "conv", "first"),
    [
        ("epsilon", ("eps", 1e-6, True), ("eps", 1e-6, True)),
        ("epsilon_plus_flat", ("zplus", True), ("flat",)),
        ("epsilon_gamma_box", ("gamma", 0.25, True), ("zbox", -3.0, 3.0)),
        ("epsilon_alpha2_beta1", ("alphabeta", 2.0, 1.0, True), ("alphabeta", 2.0, 1.0, True)),
    ],
)
def test_a_unet_with_transposed_conv_upsampling_and_skip_concatenation_matches_the_reference(
    composite: str, conv: tuple, first: tuple
) -> None:
    from tests.models.zoo import build  # noqa: PLC0415 (the model zoo of tests/models)

    net, case = build("unet")
    net = net.double()
    x = case.x(3).double()
    t = torch.tensor([0, 1, 2])
    want, out = ref.run(_unet_plan(net, conv, first), x, t)
    with untouched(net):
        box = dict(low=-3.0, high=3.0) if composite == "epsilon_gamma_box" else {}  # the others take no bounds
        res = nx.lrp(net, x, t, composite=composite, **box)
    torch.testing.assert_close(res.output, out.detach())
    assert {k: type(v).__name__ for k, v in res.rules.items() if k.startswith("up")} == {
        "up2": type(res.rules["enc2"]).__name__, "up1": type(res.rules["enc2"]).__name__}
    _close(res.attribution, want, 1e-8)
