"""ExplanationExplorer on outputs that are not (N, classes): a segmentation net's class maps, a sequence (issue 16)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.widgets import ExplanationExplorer


def seg_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 1)).eval()


def test_a_class_of_a_dense_map_is_explained_as_its_summed_map() -> None:
    net, x = seg_net(), torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ex = ExplanationExplorer(net, x, target=[2, 1], methods=["gradient_x_input"], n_shown=2, continuity_shifts=None)
    with torch.no_grad():
        out = net(x)
    summed = out.sum((2, 3))  # (N, 4): each class map summed, the score every method explains
    assert ex.predicted == summed.argmax(1)[:2].tolist() and ex.classes == ["0", "1", "2", "3"]
    gxi = nx.gradient_x_input(net, x[1:2], 1).attribution
    assert ex.scores_for(1)["gradient_x_input"]["conservation"] == pytest.approx(
        float(gxi.sum()) / float(summed[1, 1]), rel=1e-5
    )  # was divided by one entry of the flattened output
    with pytest.raises(ValueError, match=r"outside \[0, 3\]"):
        ex.explain(target=4)


def test_a_sequence_output_is_refused_naming_its_axes() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(2), nn.Linear(64, 5))  # (N, 1, 8, 8) -> (N, 1, 5): one position, 5 tokens
    with pytest.raises(ValueError, match=r"sequence \(N, T=1, V=5\).*target=\(-1, token\)"):
        ExplanationExplorer(net, torch.rand(2, 1, 8, 8), methods=["gradient"])
