"""ExplanationExplorer and models with several inputs: refused with an error whose remedy works."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.widgets import ExplanationExplorer, Heatmap


class Conditioned(nn.Module):
    """An image classifier with a per-sample conditioning vector."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.film = nn.Linear(2, 2)
        self.head = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)) * (1 + self.film(cond))[:, :, None, None]
        return self.head(h.flatten(1))


@pytest.mark.parametrize("form", ["tuple", "dict", "inputs"])
def test_several_inputs_are_refused_and_the_named_remedy_works(form):
    torch.manual_seed(0)
    model = Conditioned()
    x, cond = torch.rand(3, 1, 8, 8), torch.randn(3, 2)
    inputs = {"tuple": (x, cond), "dict": {"x": x, "cond": cond}, "inputs": nx.Inputs(x, cond=cond)}[form]
    remedy = r"several inputs.*nx\.gradient\(model, \(x, mask\), target, wrt=0\).*Heatmap\(maps, images=x\)"
    with pytest.raises(TypeError, match=remedy):
        ExplanationExplorer(model, inputs, methods=["gradient"])
    # the remedy the message names
    maps = nx.gradient(model, (x, cond), 1, wrt=0).attribution
    x_ = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(model(x_, cond)[:, 1].sum(), x_)
    torch.testing.assert_close(maps, ref)
    view = Heatmap(maps, images=x)
    assert view is not None
