"""Widgets that run the model on data pass every input of a model with several inputs to the core (issue 16).

The model is ``masked_pool`` (``forward(x, mask=None)``; a row whose mask keeps no token pools to exactly 0),
checked against its float64 reference (tests/models/masked_pool.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nbexplain as nx
from nbexplain.widgets import ComplexityViewer, DeltaExplorer, FeatureGallery
from tests.models.masked_pool import masked_batch, masked_pool, reference
from tests.models.state import dress, untouched

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_delta_explorer_scores_with_every_input() -> None:
    net = masked_pool()
    dress(net, "head")
    x, mask = masked_batch(40, seed=2)
    logits = reference(net, x, mask)[1]
    y = logits.argmax(1)
    y[:5] = (y[:5] + 1) % 3  # five wrong labels: 35/40 with the mask
    with untouched(net):
        ex = DeltaExplorer(net, ((x, mask), y), layer="pool", n_samples=4)
    assert ex.mode == "accuracy" and ex.baseline == pytest.approx(35 / 40)
    assert float(ex.metric[-1]) == pytest.approx(35 / 40)  # k = width: the projection keeps everything
    blind = float((reference(net, x, None)[1].argmax(1) == y).double().mean())
    assert blind != pytest.approx(35 / 40)  # the mask matters for this score
    with pytest.raises(ValueError, match=r"read as \(inputs, labels\).*nx.Inputs\(x, mask\)"):
        DeltaExplorer(net, (x, mask), layer="pool")
    with pytest.raises(ValueError, match="no labels"):
        DeltaExplorer(net, nx.Inputs(x, mask=mask), layer="pool")


def test_feature_gallery_optimises_one_input_and_shows_top_examples_of_all() -> None:
    net = masked_pool()
    x, mask = masked_batch(24, seed=3)
    keep = torch.tensor([[True, True, True, False]])
    with untouched(net):
        g = FeatureGallery(net, (x, mask), "pool", [0, 2], steps=3, k=3, progress=False,
                           maximize_kwargs={"inputs": (None, keep), "transforms": None})
        every = FeatureGallery(net, {"x": x, "mask": mask}, "pool", steps=2, k=2, progress=False,
                               maximize_kwargs={"inputs": {"x": None, "mask": keep}})
    final = reference(net, g.result.images, keep.expand(2, 4))[0][[0, 1], [0, 2]]
    torch.testing.assert_close(g.result.final.double(), final, rtol=1e-5, atol=1e-6)
    pooled = reference(net, x, mask)[0]
    for row, unit in enumerate([0, 2]):
        assert torch.equal(g.top.indices[row], pooled[:, unit].topk(3).indices)
        assert torch.equal(g.top.images[row], x[g.top.indices[row]])
    assert every.units == list(range(6)) and every.top.indices.shape == (6, 2)


def test_complexity_viewer_shows_the_features_of_every_input() -> None:
    net = masked_pool()
    x, mask = masked_batch(48, seed=4)
    y = reference(net, x, mask)[1].argmax(1)
    res = nx.decompose_complexity(net, ((x[:32], mask[:32]), y[:32]), ((x[32:], mask[32:]), y[32:]), "pool",
                                  orders=(0, 1), epochs=1, width=8, progress=False, reference_model=False)
    view = ComplexityViewer(res, nx.Inputs(x[:4], mask[:4]))
    pooled = reference(net, x[:4], mask[:4])[0]
    np.testing.assert_allclose(view.feature, pooled[:, view.channels].numpy(), rtol=1e-5, atol=1e-6)
    assert float(np.abs(view.feature[2]).sum()) == 0.0  # row 2 keeps no token
    with pytest.raises(ValueError, match="without the input 0"):
        ComplexityViewer(res, {"mask": mask[:4]})
