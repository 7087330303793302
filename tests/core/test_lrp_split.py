"""αβ on non-negative layer inputs forms the layer's output as z⁺ + z⁻ (+ b) from the two products the rule needs
anyway (engine._SplitForward): the model's output stays within float rounding of its own, the relevance equals
the one computed with the layer's own forward, and the stand-in forward is gone after every call."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.architectures import resnet18, settle_batch_norm
from nbexplain.core.attribution.lrp import engine
from tests.core.test_lrp import _assert_same, _state


def _net() -> nn.Module:
    net = resnet18(width=8, seed=3)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.3, 0.3, generator=gen)
    settle_batch_norm(net, torch.rand(16, 3, 32, 32, generator=gen))
    return net.eval()


def _x() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))


def _split_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = engine._SplitForward.__call__

    def counted(self, *args, **kwargs):
        z = original(self, *args, **kwargs)
        if id(z) in self.session.halves:
            calls.append(1)
        return z

    monkeypatch.setattr(engine._SplitForward, "__call__", counted)
    return calls


@pytest.mark.parametrize("composite", ["epsilon_alpha2_beta1", nx.Composite({nn.Conv2d: nx.rules.AlphaBeta(3, 2), nn.Linear: nx.rules.Epsilon()})])
def test_split_forward_matches_the_layers_own(monkeypatch: pytest.MonkeyPatch, composite) -> None:
    net, x = _net(), _x()
    calls = _split_calls(monkeypatch)
    res = nx.lrp(net, x, 0, composite=composite)
    assert len(calls) >= 15  # every conv after a ReLU took the split path
    with torch.no_grad():
        torch.testing.assert_close(res.output, net(x), rtol=1e-5, atol=1e-5 * float(net(x).abs().max()))
    monkeypatch.setattr(engine, "_SPLITTABLE", ())  # the layers' own forward, then three products per layer
    calls.clear()
    plain = nx.lrp(net, x, 0, composite=composite)
    assert not calls
    torch.testing.assert_close(res.attribution, plain.attribution, rtol=1e-4, atol=1e-6 * float(plain.attribution.abs().max()))
    torch.testing.assert_close(res.output, plain.output, rtol=1e-5, atol=1e-5 * float(plain.output.abs().max()))


def test_split_forward_float64_is_exact_to_rounding() -> None:
    net, x = _net().double(), _x().double()
    res = nx.lrp(net, x, 0, composite="epsilon_alpha2_beta1")
    with torch.no_grad():
        torch.testing.assert_close(res.output, net(x), rtol=1e-12, atol=1e-12)


def test_no_split_for_other_rules_or_subclasses(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = _net(), _x()
    calls = _split_calls(monkeypatch)
    nx.lrp(net, x, 0, composite="epsilon_plus_flat")
    nx.lrp(net, x, 0, composite=nx.Composite({nn.Conv2d: nx.rules.AlphaBeta(1, 0), nn.Linear: nx.rules.Epsilon()}))  # β = 0: z⁻ not needed
    assert not calls


def test_stand_in_forward_removed_also_when_the_call_raises() -> None:
    net, x = _net(), _x()
    before = _state(net)
    nx.lrp(net, x, 0, composite="epsilon_alpha2_beta1")
    assert all("forward" not in m.__dict__ for m in net.modules())
    _assert_same(before, _state(net))

    def boom(module, args, output):
        raise RuntimeError("user hook")

    h = net.layer2[0].conv2.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="user hook"):
        nx.lrp(net, x, 0, composite="epsilon_alpha2_beta1")
    h.remove()
    assert all("forward" not in m.__dict__ for m in net.modules())
    _assert_same(before, _state(net))
