"""αβ on non-negative layer inputs works on the pair z⁺ = W⁺x, z⁻ = W⁻x (rules.AlphaBeta._paired): each half becomes its
share k·R/(z + c) (ops.Halves.to_shares) and the pair goes through one transposed step. On CPU, convolutions with
few output positions (and 1×1 convolutions) run the pair as unfold → GEMM → fold, a layer with few input channels
runs its transposed step as one batched GEMM, and the others take one transposed convolution of the stacked
shares (ops.MATMUL_POSITIONS, ops.MATMUL_MAX_INPUT_CHANNELS, ops.STACKED_TRANSPOSE). Every path is checked against
direct float64 products and the float64 matrix-form reference, and shown to be taken."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbexplain as nx
from nbexplain.core.attribution.lrp import engine, ops
from tests.core import lrp_reference as ref
from tests.core.test_lrp_rules import TARGET, conv_net, conv_plan, resnet, resnet_plan

LAYERS = {
    "stem-7x7-s2": dict(in_channels=3, out_channels=6, kernel_size=7, stride=2, padding=3),
    "3x3": dict(in_channels=5, out_channels=4, kernel_size=3, padding=1),
    "3x3-s2-no-pad": dict(in_channels=5, out_channels=7, kernel_size=3, stride=2),
    "1x1-s2": dict(in_channels=6, out_channels=4, kernel_size=1, stride=2),
    "dilated-bias": dict(in_channels=5, out_channels=4, kernel_size=3, padding=2, dilation=2, bias=True),
    "rect-kernel": dict(in_channels=5, out_channels=3, kernel_size=(3, 5), padding=(1, 2), stride=(1, 2)),
    "wide-pad": dict(in_channels=3, out_channels=4, kernel_size=3, padding=(3, 2)),  # taps reading only padding
    "s3-dilated-few": dict(in_channels=2, out_channels=4, kernel_size=(2, 3), stride=3, padding=2, dilation=(2, 1)),
}
MODES = {  # (MATMUL_POSITIONS, MATMUL_MAX_INPUT_CHANNELS, STACKED_TRANSPOSE)
    "conv": (0, 0, False),  # the convolution library, one transposed pass per half
    "conv-stacked": (0, 0, True),  # one transposed pass of [s⁺; s⁻] with [W⁺; W⁻]
    "matmul": (10**9, 0, True),  # unfold → GEMM → fold for both steps
    "few-inputs": (0, 4, True),  # convolution forward; batched GEMM transposed step for ≤ 4 input channels
}


def _modes(monkeypatch: pytest.MonkeyPatch, mode: str) -> list[str]:
    """Force one path; returns a log of the GEMM folds and stacked transposed passes taken."""
    positions, channels, stacked = MODES[mode]
    monkeypatch.setattr(ops, "MATMUL_POSITIONS", positions)
    monkeypatch.setattr(ops, "MATMUL_MAX_INPUT_CHANNELS", channels)
    monkeypatch.setattr(ops, "STACKED_TRANSPOSE", stacked)
    log: list[str] = []
    fold, backward = ops.ConvOp._fold, ops.ConvOp._backward

    def counted_fold(self, cols, x):
        log.append("fold")
        return fold(self, cols, x)

    def counted_backward(self, grad, x, weight):
        if weight.shape[0] == 2 * self.weight.shape[0] and grad.shape[1] == weight.shape[0]:
            log.append("stacked")
        return backward(self, grad, x, weight)

    monkeypatch.setattr(ops.ConvOp, "_fold", counted_fold)
    monkeypatch.setattr(ops.ConvOp, "_backward", counted_backward)
    return log


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(LAYERS))
def test_pair_products_equal_direct_float64_products(monkeypatch: pytest.MonkeyPatch, name: str, mode: str) -> None:
    log = _modes(monkeypatch, mode)
    torch.manual_seed(3)
    conv = nn.Conv2d(**({"bias": False} | LAYERS[name])).double()
    x = torch.rand(3, conv.in_channels, 11, 10, dtype=torch.float64)
    op = ops.ConvOp(conv)
    w = conv.weight.detach()
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    z, halves = op.forward_halves(x, wp, wn)
    args = (None, conv.stride, conv.padding, conv.dilation)
    zp, zn = F.conv2d(x, wp, *args), F.conv2d(x, wn, *args)
    torch.testing.assert_close(z, zp + zn, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z, F.conv2d(x, w, *args), rtol=1e-12, atol=1e-12)
    # shares k·R/(z + c) per half, with c per output channel (> 0 for z⁺ ≥ 0, < 0 for z⁻ ≤ 0)
    rel = torch.randn_like(zp)
    cp = torch.rand(conv.out_channels, dtype=torch.float64) + 0.1
    cn = -torch.rand(conv.out_channels, dtype=torch.float64) - 0.1
    halves.to_shares(rel, (cp, 2.0), (cn, -0.75))
    sp = 2.0 * rel / (zp + cp.view(-1, 1, 1))
    sn = -0.75 * rel / (zn + cn.view(-1, 1, 1))
    torch.testing.assert_close(halves.pos, halves.align(sp), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(halves.neg, halves.align(sn), rtol=1e-12, atol=1e-12)
    got = op.transpose_halves(halves, x, wp, wn)
    xr = x.clone().requires_grad_(True)
    want = torch.autograd.grad((F.conv2d(xr, wp, *args) * sp).sum() + (F.conv2d(xr, wn, *args) * sn).sum(), xr)[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    few = conv.in_channels <= 4
    expected = {"conv": [], "conv-stacked": ["stacked"], "matmul": ["fold"], "few-inputs": ["fold"] if few else ["stacked"]}
    assert log == expected[mode]
    assert (halves.rows is not None) == (mode == "matmul")


@pytest.mark.parametrize("mode", list(MODES))
def test_alphabeta_matches_reference_on_every_path(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Residual net (merged batch norms, 1×1 shortcut) and a conv net, non-negative inputs: the first layer on
    the paired path computed in the backward step, every later layer on the split forward's halves."""
    log = _modes(monkeypatch, mode)
    rule, dense = nx.rules.AlphaBeta(2, 1), nx.rules.Epsilon(1e-6)
    comp = nx.Composite({nn.Conv2d: rule, nn.Linear: dense})
    net = resnet()
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    res = nx.lrp(net, x, TARGET, composite=comp)
    want, out = ref.run(resnet_plan(net, ("alphabeta", 2.0, 1.0, True), ("eps", 1e-6, True)), x, TARGET)
    torch.testing.assert_close(res.output, out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(res.attribution, want, rtol=1e-8, atol=1e-10)
    net = conv_net(bn=True)
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    res = nx.lrp(net, x, TARGET, composite=nx.Composite({nn.Conv2d: nx.rules.AlphaBeta(3, 2), nn.Linear: dense}))
    want, _ = ref.run(conv_plan(net, ("alphabeta", 3.0, 2.0, True), ("eps", 1e-6, True)), x, TARGET)
    torch.testing.assert_close(res.attribution, want, rtol=1e-8, atol=1e-10)
    # resnet(): conv_in and 2 + 3 block convs; conv_net(): 2 convs — 8 pairs; the first convs have 2 and 4
    # input channels (batched GEMM in "few-inputs")
    assert len(log) == (0 if mode == "conv" else 8)
    kinds = {"conv": set(), "conv-stacked": {"stacked"}, "matmul": {"fold"}, "few-inputs": {"fold", "stacked"}}
    assert set(log) == kinds[mode]


class _TwoReaders(nn.Module):
    """A conv output read twice: by a batch norm (folded into the conv's rule node) and by the residual sum."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.conv_in = nn.Conv2d(2, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)
            self.bn.weight.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv_in(x))
        y = self.conv(h)
        return self.head(self.relu(self.bn(y) + y))


@pytest.mark.parametrize("mode", ["conv", "conv-stacked", "matmul"])
def test_halves_read_by_two_rule_nodes_are_not_shared_in_place(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """The conv's own rule node and the merged conv+bn node both hold the split forward's halves; the first
    backward step writes its shares into them, so the merged node takes them over and the other computes its own."""
    _modes(monkeypatch, mode)
    net = _TwoReaders().double().eval()
    x = torch.rand(2, 2, 5, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    comp = nx.Composite({nn.Conv2d: nx.rules.AlphaBeta(2, 1), nn.Linear: nx.rules.Epsilon(1e-6)})
    res = nx.lrp(net, x, 0, composite=comp)
    monkeypatch.setattr(engine, "_SPLITTABLE", ())  # each node computes its own z± from the layer input
    plain = nx.lrp(net, x, 0, composite=comp)
    torch.testing.assert_close(res.attribution, plain.attribution, rtol=1e-10, atol=1e-12)
    assert float(res.attribution.abs().sum()) > 0


def test_large_stacked_weights_live_in_the_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    """[W⁺; W⁻] of a layer with more than 2¹⁸ stacked weights is written into the call's workspace buffer (no
    fresh pages per layer and call); the relevance equals the two-pass transposed step's, call after call."""
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 256, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(256 * 6 * 6, 4),
    ).double().eval()
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    comp = nx.Composite({nn.Conv2d: nx.rules.AlphaBeta(2, 1), nn.Linear: nx.rules.Epsilon(1e-6)})
    log = _modes(monkeypatch, "conv-stacked")
    taken: list[int] = []
    take = ops.Workspace.take

    def counted(self, op, like):
        buf = take(self, op, like)
        taken.append(like.numel() if buf is not None else 0)
        return buf

    monkeypatch.setattr(ops.Workspace, "take", counted)
    first, second = (nx.lrp(net, x, 1, composite=comp).attribution for _ in range(2))
    assert log.count("stacked") == 4 and 2 * 256 * 64 * 9 in taken
    monkeypatch.setattr(ops, "STACKED_TRANSPOSE", False)
    plain = nx.lrp(net, x, 1, composite=comp).attribution
    torch.testing.assert_close(first, plain, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(second, plain, rtol=1e-10, atol=1e-13)
