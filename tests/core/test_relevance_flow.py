"""relevance_flow against LRP-ε written out layer by layer in float64 (Montavon et al. 2019, eq. for LRP-ε)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.architectures import resnet18


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)).double()


def _eps_backward(a: torch.Tensor, layer: nn.Linear, r_out: torch.Tensor, eps: float) -> torch.Tensor:
    """R_j = a_j Σ_k w_jk R_k / (z_k + ε·sign(z_k)),  z_k = Σ_j a_j w_jk + b_k."""
    z = a @ layer.weight.T + layer.bias
    s = r_out / (z + eps * torch.where(z >= 0, 1.0, -1.0))
    return a * (s @ layer.weight)


def test_every_step_matches_the_layer_by_layer_reference():
    net = _mlp()
    x = torch.rand(4, 5, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 2])
    eps = 1e-3
    flow = nx.relevance_flow(net, x, target, {nn.Linear: nx.rules.Epsilon(eps)}, canonizers=None)
    assert flow.steps == ["output", "4", "3", "2", "1", "0", "input"]
    with torch.no_grad():
        a0 = x
        a1 = net[1](net[0](a0))
        a2 = net[3](net[2](a1))
        out = net[4](a2)
        r_out = torch.zeros_like(out)
        r_out[torch.arange(4), target] = out[torch.arange(4), target]
        r2 = _eps_backward(a2, net[4], r_out, eps)   # at the output of ReLU '3' (= the input of '4')
        r1 = _eps_backward(a1, net[2], r2, eps)      # at the output of ReLU '1'
        r0 = _eps_backward(a0, net[0], r1, eps)      # at the input
    torch.testing.assert_close(flow.relevance["4"], r_out)
    torch.testing.assert_close(flow.relevance["3"], r2)
    torch.testing.assert_close(flow.relevance["2"], r2)  # a ReLU passes relevance on unchanged
    torch.testing.assert_close(flow.relevance["1"], r1)
    torch.testing.assert_close(flow.relevance["0"], r1)
    torch.testing.assert_close(flow.relevance["input"], r0)
    torch.testing.assert_close(flow.totals[:, 0], out[torch.arange(4), target])
    torch.testing.assert_close(flow.score, out[torch.arange(4), target])
    # what each linear layer absorbed is its bias's share (and ε's), nothing where a ReLU passes relevance on
    torch.testing.assert_close(flow.absorbed[:, 0], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(flow.absorbed[:, 1], r_out.sum(1) - r2.sum(1))
    torch.testing.assert_close(flow.absorbed[:, 2], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(flow.conservation[:, -1], r0.sum(1) / r_out.sum(1))
    assert list(flow.rules) == ["4", "3", "2", "1", "0"]


def test_bias_free_epsilon_to_zero_conserves_at_every_step():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 4, bias=False)).double()
    flow = nx.relevance_flow(net, torch.rand(3, 6, dtype=torch.float64), composite="epsilon", epsilon=1e-12)
    torch.testing.assert_close(flow.conservation, torch.ones_like(flow.conservation), atol=1e-9, rtol=0)


def test_a_resnet_flows_through_every_ruled_layer_in_reverse_order():
    net = resnet18(width=4, seed=0, n_classes=5).eval()
    x = torch.rand(2, 3, 32, 32)
    flow = nx.relevance_flow(net, x, composite="epsilon_plus_flat")
    plain = nx.lrp(net, x, composite="epsilon_plus_flat")
    assert flow.steps[0] == "output" and flow.steps[-1] == "input"
    modules = dict(net.named_modules())
    assert flow.steps[1:-1] == [n for n in reversed(list(plain.rules)) if n in modules]
    assert len(flow.steps) > 20  # every conv, batch norm, ReLU, pooling and the classifier
    torch.testing.assert_close(flow.relevance["input"], plain.attribution)
    torch.testing.assert_close(flow.target, plain.target)
    for step in flow.steps[1:-1]:
        assert flow.relevance[step].shape[0] == 2
    with pytest.raises(TypeError, match="layers"):
        nx.relevance_flow(net, x, layers=["conv1"])
