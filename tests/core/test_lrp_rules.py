"""Every LRP rule against the float64 matrix-form reference (tests/core/lrp_reference.py), on dense and
conv nets, with and without batch norm, and with residual blocks; conservation where a rule guarantees it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

import nbexplain as nx
from tests.core import lrp_reference as ref

torch.set_default_dtype(torch.float32)

RULES = {
    "zero": nx.rules.ZeroRule(),
    "zero-nobias": nx.rules.ZeroRule(bias=False),
    "eps": nx.rules.Epsilon(0.1),
    "eps-nobias": nx.rules.Epsilon(1e-6, bias=False),
    "gamma": nx.rules.Gamma(0.25),
    "gamma-nobias": nx.rules.Gamma(1.0, bias=False),
    "zplus": nx.rules.ZPlus(),
    "zplus-nobias": nx.rules.ZPlus(bias=False),
    "a2b1": nx.rules.AlphaBeta(2, 1),
    "a1b0": nx.rules.AlphaBeta(1, 0, bias=False),
    "zbox": nx.rules.ZBox(-3.0, 3.0),
    "flat": nx.rules.Flat(),
    "w2": nx.rules.WSquare(),
}


def as_ref(rule: nx.rules.Rule) -> tuple:
    """The reference's tuple form of a rule object."""
    if isinstance(rule, nx.rules.Norm):
        return ("eps", rule.epsilon, True)
    if isinstance(rule, nx.rules.ZeroRule):
        return ("zero", rule.bias)
    if isinstance(rule, nx.rules.Epsilon):
        return ("eps", rule.epsilon, rule.bias)
    if isinstance(rule, nx.rules.Gamma):
        return ("gamma", rule.gamma, rule.bias)
    if isinstance(rule, nx.rules.ZPlus):
        return ("zplus", rule.bias)
    if isinstance(rule, nx.rules.AlphaBeta):
        return ("alphabeta", rule.alpha, rule.beta, rule.bias)
    if isinstance(rule, nx.rules.ZBox):
        return ("zbox", rule.low, rule.high)
    if isinstance(rule, nx.rules.WSquare):
        return ("w2",)
    if isinstance(rule, nx.rules.Flat):
        return ("flat",)
    raise AssertionError(rule)


def _randomize_bn(bn: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        c = bn.num_features
        bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
        bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
        bn.weight.copy_(torch.randn(c, generator=gen) * 0.5 + 1)
        bn.bias.copy_(torch.randn(c, generator=gen) * 0.3)


def dense_net() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4)
    ).double().eval()


def dense_plan(net: nn.Sequential, rule: tuple, first: tuple | None = None) -> list:
    return [
        ("flatten",),
        ("linear", net[1], first or rule),
        ("relu",),
        ("linear", net[3], rule),
        ("relu",),
        ("linear", net[5], rule),
    ]


def conv_net(bn: bool = False) -> nn.Sequential:
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(3)
    layers: list[nn.Module] = [nn.Conv2d(2, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1, stride=1)]
    if bn:
        layers.append(nn.BatchNorm2d(5))
    layers += [nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(20, 6)]
    if bn:
        layers.append(nn.BatchNorm1d(6))
    layers += [nn.ReLU(), nn.Linear(6, 3)]
    net = nn.Sequential(*layers).double().eval()
    for m in net:
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            _randomize_bn(m, gen)
    return net


def _plain_step(m: nn.Module) -> tuple:
    """The reference plan's step for a module without a rule of its own (activation, pooling, flatten)."""
    if isinstance(m, nn.ReLU):
        return ("relu",)
    if isinstance(m, nn.MaxPool2d):
        return ("maxpool", m)
    if isinstance(m, nn.AvgPool2d):
        return ("linear", m, ("eps", 1e-9, True))
    if isinstance(m, nn.Flatten):
        return ("flatten",)
    raise AssertionError(m)


def conv_plan(net: nn.Sequential, rule: tuple, dense: tuple, first: tuple | None = None) -> list:
    mods = list(net)
    plan: list = []
    i = 0
    seen_first = False
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            r = rule if isinstance(m, nn.Conv2d) else dense
            if not seen_first and first is not None:
                r = first
            seen_first = True
            if isinstance(nxt, nn.modules.batchnorm._BatchNorm):
                plan.append(("merged", m, nxt, r))
                i += 2
                continue
            plan.append(("linear", m, r))
        else:
            plan.append(_plain_step(m))
        i += 1
    return plan


class Block(nn.Module):
    """The common residual block shape (torchvision's BasicBlock): ``out += identity``, one ReLU
    module called twice, an optional 1×1 conv + BN shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(2, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.block1 = Block(4, 4)
        self.block2 = Block(4, 6)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(24, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv_in(x))
        h = self.block2(self.block1(h))
        return self.fc(self.flatten(self.pool(h)))


def resnet() -> ResNet:
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(5)
    net = ResNet().double().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            _randomize_bn(m, gen)
    return net


def block_plan(b: Block, rule: tuple) -> tuple:
    main = [("merged", b.conv1, b.bn1, rule), ("relu",), ("merged", b.conv2, b.bn2, rule)]
    short = [("merged", b.downsample[0], b.downsample[1], rule)] if b.downsample is not None else []
    return ("residual", main, short, 1e-9)


def resnet_plan(net: ResNet, rule: tuple, dense: tuple, first: tuple | None = None) -> list:
    return [
        ("linear", net.conv_in, first or rule),
        ("relu",),
        block_plan(net.block1, rule),
        ("relu",),
        block_plan(net.block2, rule),
        ("relu",),
        ("linear", net.pool, ("eps", 1e-9, True)),
        ("flatten",),
        ("linear", net.fc, dense),
    ]


def _x(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


TARGET = torch.tensor([0, 2, 1])


@pytest.mark.parametrize("key", list(RULES))
def test_dense_rules_match_reference(key: str) -> None:
    rule = RULES[key]
    net = dense_net()
    x = _x((3, 2, 5), 0)
    res = nx.lrp(net, x, TARGET, composite=nx.Composite({nn.Linear: rule}))
    want, out = ref.run(dense_plan(net, as_ref(rule)), x, TARGET)
    assert torch.allclose(res.output, out, atol=1e-12)
    torch.testing.assert_close(res.attribution, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("bn", [False, True], ids=["plain", "batchnorm"])
@pytest.mark.parametrize("key", list(RULES))
def test_conv_rules_match_reference(key: str, bn: bool) -> None:
    rule = RULES[key]
    net = conv_net(bn)
    x = _x((3, 2, 8, 8), 1)
    dense = nx.rules.Epsilon(0.01)
    res = nx.lrp(net, x, TARGET, composite=nx.Composite({nn.Conv2d: rule, nn.Linear: dense}))
    want, out = ref.run(conv_plan(net, as_ref(rule), as_ref(dense)), x, TARGET)
    torch.testing.assert_close(res.output, out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(res.attribution, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("key", ["zero", "zplus", "a2b1", "w2"])
def test_residual_rules_match_reference(key: str) -> None:
    rule = RULES[key]
    net = resnet()
    x = _x((3, 2, 6, 6), 2)
    dense = nx.rules.Epsilon(1e-6)
    res = nx.lrp(net, x, TARGET, composite=nx.Composite({nn.Conv2d: rule, nn.Linear: dense}))
    want, out = ref.run(resnet_plan(net, as_ref(rule), as_ref(dense)), x, TARGET)
    torch.testing.assert_close(res.output, out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(res.attribution, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", list(nx.COMPOSITES))
def test_named_composites_match_reference(name: str) -> None:
    net = conv_net(bn=True)
    x = _x((3, 2, 8, 8), 3).clamp(-1, 1)
    box = dict(low=-1.0, high=1.0) if name == "epsilon_gamma_box" else {}  # the others take no bounds
    res = nx.lrp(net, x, TARGET, composite=name, **box)
    eps = ("eps", 1e-6, True)
    conv, first = {
        "epsilon": (eps, None),
        "epsilon_plus": (("zplus", True), None),
        "epsilon_plus_flat": (("zplus", True), ("flat",)),
        "epsilon_gamma_box": (("gamma", 0.25, True), ("zbox", -1.0, 1.0)),
        "epsilon_alpha2_beta1": (("alphabeta", 2.0, 1.0, True), None),
        "epsilon_alpha2_beta1_flat": (("alphabeta", 2.0, 1.0, True), ("flat",)),
        # the attention composites on a CNN: ε everywhere (their attention rules meet no attention here)
        "attn_lrp": (eps, None),
        "cp_lrp": (eps, None),
    }[name]
    want, _ = ref.run(conv_plan(net, conv, eps, first), x, TARGET)
    torch.testing.assert_close(res.attribution, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("key", ["zero-nobias", "eps-tiny", "zplus-nobias", "gamma-nobias", "a1b0", "flat", "w2"])
def test_conserving_rules_conserve_without_biases(key: str) -> None:
    """Without biases, LRP-0, ε→0, z⁺, γ, α1β0, flat and w² conserve relevance layer by layer, also
    through max pooling, average pooling (proportional rule), merged batch norm and residual sums.

    z⁺, γ and α1β0 lose the relevance of a neuron whose positive (boosted) contributions sum to 0; in a
    ReLU chain such a neuron has no relevance, but a residual sum can hand it some, so they are checked
    on the plain conv net only."""
    rule = {"eps-tiny": nx.rules.Epsilon(1e-13, bias=False), "gamma-nobias": nx.rules.Gamma(1.0, epsilon=1e-13, bias=False)}.get(key)
    rule = rule or RULES[key]
    nets = [(conv_net(bn=False), _x((3, 2, 8, 8), 4))]
    if key in ("zero-nobias", "eps-tiny", "flat", "w2"):
        nets.append((resnet(), _x((3, 2, 6, 6), 5)))
    for net, x in nets:
        for mod in net.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:
                with torch.no_grad():
                    mod.bias.zero_()
        comp = nx.Composite({nn.Conv2d: rule, nn.Linear: nx.rules.Epsilon(1e-12, bias=False)})
        res = nx.lrp(net, x, TARGET, composite=comp)
        # the output layer (ε, no bias) and every rule above conserve; the explained logit is recovered
        torch.testing.assert_close(res.total, res.output_relevance.double(), rtol=1e-7, atol=1e-9)


def test_biases_absorb_relevance_for_epsilon() -> None:
    net = conv_net(bn=False)
    res = nx.lrp(net, _x((3, 2, 8, 8), 6), TARGET, composite="epsilon")
    assert float(res.conservation_error.max()) > 1e-4  # documented: biases take their share


def test_alphabeta_does_not_promise_conservation() -> None:
    assert not nx.rules.AlphaBeta(2, 1).conserving and nx.rules.ZPlus().conserving


PADDINGS = {
    "reflect": dict(padding=1, padding_mode="reflect"),
    "circular-stride": dict(padding=1, padding_mode="circular", stride=2),
    "same-dilated": dict(padding="same", dilation=2),
    "same-even-kernel": dict(padding="same", kernel_size=4),  # asymmetric "same" padding
    "grouped": dict(padding=2, groups=2, dilation=2),
    # non-overlapping patches (a ViT's patch embedding, computed by a GEMM instead of a transposed convolution);
    # 7 is not a multiple of 3 or 2: the last row/column, never read by the convolution, gets no relevance
    "patches": dict(kernel_size=3, stride=3),
    "patches-rect": dict(kernel_size=(2, 3), stride=(2, 3)),
}


@pytest.mark.parametrize(
    "pad,key",
    [(p, "zplus") for p in PADDINGS] + [("reflect", "flat"), ("same-even-kernel", "flat"), ("circular-stride", "a2b1"),
                                        ("grouped", "eps"), ("patches", "eps"), ("patches", "a2b1"),
                                        ("patches-rect", "zplus"), ("patches-rect", "flat")],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv_padding_variants_match_reference(pad: str, key: str) -> None:
    """Padding modes, strides, dilation and groups: the reference reads them off the module's own
    linear map, so the rules must fold relevance on padded copies back onto the pixels they copy."""
    torch.manual_seed(12)
    kwargs = dict(kernel_size=3) | PADDINGS[pad]
    net = nn.Sequential(nn.Conv2d(2, 4, **kwargs), nn.ReLU(), nn.Flatten()).double().eval()
    with torch.no_grad():
        n_out = net(torch.zeros(1, 2, 7, 7, dtype=torch.float64)).shape[1]
    net.append(nn.Linear(n_out, 3).double())
    x = _x((3, 2, 7, 7), 13)
    rule = RULES[key]
    res = nx.lrp(net, x, TARGET, composite={nn.Conv2d: rule, nn.Linear: nx.rules.Epsilon(0.01)})
    conv_mod = net[0]
    first: list = [("linear", conv_mod, as_ref(rule))]
    if conv_mod.padding_mode != "zeros":
        # reflect / circular padding is a copy of pixels before the convolution: the rules see every copy
        # as an input of its own and its relevance returns to the copied pixel (as with F.pad + conv)
        unpadded = copy.deepcopy(conv_mod)
        unpadded.padding, unpadded.padding_mode = (0, 0), "zeros"
        first = [("copy", _Pad(conv_mod)), ("linear", unpadded, as_ref(rule))]
    plan = first + [("relu",), ("flatten",), ("linear", net[3], ("eps", 0.01, True))]
    want, _ = ref.run(plan, x, TARGET)
    torch.testing.assert_close(res.attribution, want, rtol=1e-8, atol=1e-11)
    if pad.startswith("patches"):
        assert (res.attribution[..., 6, :] == 0).all() or (res.attribution[..., :, 6] == 0).all()


@pytest.mark.parametrize("kernel,size", [(7, (28, 28)), ((2, 3), (9, 10)), (4, (12, 8))])
def test_patch_transpose_equals_the_transposed_convolution(kernel: Any, size: tuple[int, int]) -> None:
    """The patch-embedding fast path (one GEMM) is the transposed convolution, bit for bit in float64."""
    from nbexplain.core.attribution.lrp.ops import ConvOp

    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, kernel, stride=kernel).double()
    op = ConvOp(conv)
    assert op._patches()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    grad = torch.randn_like(conv(x))
    want = torch.ops.aten.convolution_backward(
        grad, x, op.weight, None, list(op.stride), [0, 0], [1, 1], False, [0, 0], 1, (True, False, False))[0]
    torch.testing.assert_close(op._backward(grad, x, op.weight), want, rtol=0, atol=1e-13)
    assert not ConvOp(nn.Conv2d(3, 5, 3, stride=3, padding=1))._patches()
    assert not ConvOp(nn.Conv2d(3, 5, 3, stride=2))._patches()


class _Pad(nn.Module):
    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.pad, self.mode = conv._reversed_padding_repeated_twice, conv.padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(x, self.pad, mode=self.mode)


def test_unmerged_batchnorm_is_an_affine_layer_with_the_epsilon_rule() -> None:
    net = conv_net(bn=True)
    x = _x((3, 2, 8, 8), 14)
    res = nx.lrp(net, x, TARGET, composite={nn.Conv2d: nx.rules.ZPlus(), nn.Linear: nx.rules.Epsilon(0.01)}, canonizers=None)
    plan = []
    for m in net:
        if isinstance(m, nn.Conv2d):
            plan.append(("linear", m, ("zplus", True)))
        elif isinstance(m, nn.Linear):
            plan.append(("linear", m, ("eps", 0.01, True)))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            plan.append(("linear", m, ("eps", 1e-6, True)))  # the base map's ε for batch norm
        else:
            plan.append(_plain_step(m))
    want, _ = ref.run(plan, x, TARGET)
    torch.testing.assert_close(res.attribution, want, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("signs", ["positive", "mixed"])
def test_merged_ops_derive_modified_weights_from_the_raw_weight_when_the_bn_factor_is_positive(signs: str) -> None:
    """A batch norm folded into a conv with factors s > 0: z⁺/γ/αβ weights are derived from the raw weight
    (no pass multiplying every weight by s) and the denominators are computed in the raw weight's units, den/s;
    the relevance equals that of the materialised merged weight W·s. With a negative factor the merged weight
    is used as before."""
    from nbexplain.core.attribution.lrp.ops import ConvOp

    torch.manual_seed(5)
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    scale = torch.rand(4, dtype=torch.float64) + 0.5
    if signs == "mixed":
        scale[1] = -scale[1]
    bias = torch.randn(4, dtype=torch.float64)
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    rel = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    merged_w = conv.weight.detach() * scale.view(-1, 1, 1, 1)
    for rule in (nx.rules.ZPlus(), nx.rules.Gamma(0.25), nx.rules.AlphaBeta(2, 1)):
        op = ConvOp(conv)
        op.merge(scale, bias)
        assert op.raw_units == (signs == "positive")
        if op.raw_units:
            torch.testing.assert_close(op.weight_map("pos"), conv.weight.detach().clamp(min=0))
        got = rule.backward(op, x, rule.forward(op, x, None), rel.clone())
        plain = ConvOp(conv)
        plain.weight, plain.bias = merged_w, bias
        want = rule.backward(plain, x, rule.forward(plain, x, None), rel.clone())
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=repr(rule))


@pytest.mark.parametrize(
    "layer",
    [
        nn.Linear(5, 4),
        nn.Conv2d(3, 6, 7, stride=2, padding=3),
        nn.Conv2d(4, 6, 3, padding=1, groups=2),
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
        nn.Conv1d(3, 4, 3, dilation=2),
    ],
    ids=["linear", "conv-stem", "grouped", "reflect-padding", "conv1d-dilated"],
)
def test_one_stacked_transposed_pass_equals_one_pass_per_weight(layer: nn.Module) -> None:
    """zᴮ (and z⁺/αβ on signed inputs) send one output-side tensor through several weights; stacked along
    the input dimension that is one transposed pass (2.4× faster on a ResNet stem), equal to one pass each."""
    from nbexplain.core.attribution.lrp.ops import make_op

    torch.manual_seed(6)
    layer = layer.double()
    x = torch.randn((2, 5) if isinstance(layer, nn.Linear) else (2, 3, 16) if isinstance(layer, nn.Conv1d) else (2, layer.in_channels, 9, 9), dtype=torch.float64)
    op = make_op(layer, x)
    grad = torch.randn_like(layer(x))
    w = op.weight
    weights = [w, w.clamp(min=0), w.clamp(max=0)]
    got = op.backward_many(grad, x, weights)
    for g, wk in zip(got, weights, strict=True):
        torch.testing.assert_close(g, op.backward(grad, x, wk), rtol=1e-12, atol=1e-12)
