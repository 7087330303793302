"""captum 0.9 as a test-only oracle for ε-LRP on dense nets.

captum's ``LRP`` applies ``EpsilonRule`` (default ε = 1e-9; set 1e-6 here to match nbexplain's ε) to
every Linear layer, with the bias in the denominator and ``sign(0) = +1`` — the same convention as
``nx.rules.Epsilon``. Documented differences: captum refuses ``nn.Flatten``/``nn.Unflatten`` modules (it has
no rule for them) and it edits the layer weights in place while it runs (restoring them afterwards);
nbexplain never writes to a parameter and passes relevance through reshapes.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx

captum_attr = pytest.importorskip("captum.attr")
from captum.attr._utils.lrp_rules import EpsilonRule  # noqa: E402


def _mlp(flatten: bool = False) -> nn.Sequential:
    torch.manual_seed(11)
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    layers += [nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 4)]
    return nn.Sequential(*layers).double().eval()


def _captum_lrp(model: nn.Sequential, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    for m in model:
        if isinstance(m, nn.Linear):
            m.rule = EpsilonRule(epsilon=1e-6)
    try:
        return captum_attr.LRP(model).attribute(x.clone(), target=target)
    finally:
        for m in model:
            if hasattr(m, "rule"):
                del m.rule


def test_epsilon_lrp_agrees_with_captum_on_a_dense_net() -> None:
    model = _mlp()
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    want = _captum_lrp(model, x, target)
    got = nx.lrp(model, x, target, composite="epsilon", epsilon=1e-6)
    torch.testing.assert_close(got.attribution, want, rtol=1e-9, atol=1e-12)


def test_captum_refuses_flatten_while_nbexplain_passes_through_it() -> None:
    model = _mlp(flatten=True)
    x = torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    with pytest.raises(TypeError, match="Flatten"):
        _captum_lrp(model, x, torch.tensor([0, 1, 2]))
    flat = nx.lrp(model, x, torch.tensor([0, 1, 2]), composite="epsilon", epsilon=1e-6)
    plain = nx.lrp(model[1:], x.reshape(3, 12), torch.tensor([0, 1, 2]), composite="epsilon", epsilon=1e-6)
    torch.testing.assert_close(flat.attribution.reshape(3, 12), plain.attribution)
