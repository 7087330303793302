"""rde and continuity on real architectures.

rde: the explained score Φ(x) is the softmax of the *selected* output at the target (computed here by
hand); keeping every component (fraction 1) reproduces x exactly (s = 1: 1·x + 0·noise = x), so its
distortion is 0 up to the rounding of two forward passes of different batch shapes — never asserted as an
exact 0. Masks live in [0, 1] with one value per pixel (images) or per token (token ids via ``embedding=``).
continuity: every explanation along the path is the gradient at that path point (autograd), and the score
is the largest ‖R_i − R_j‖₁ / ‖x_i − x_j‖₂ over pairs, recomputed here.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import nbexplain as nx
from tests.models.reference import input_gradient, select
from tests.models.state import dress, untouched
from tests.models.zoo import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(steps=4, n_noise=4, fractions=3, n_eval=4, n_random=1, seed=0, progress=False)


def _kw(case: Any) -> dict[str, Any]:
    return {} if case.output is None else {"output": case.output}


@pytest.mark.parametrize("name", ["resnet18", "vit", "depthwise", "tuple", "dict"])
def test_rde_scores_masks_and_the_keep_everything_point(name: str) -> None:
    net, case = build(name)
    dress(net, case.hook_layer)
    x = case.x(2)
    t = torch.tensor([1, 2])
    with untouched(net):
        res = nx.rde(net, x, t, **FAST, **_kw(case))
    with torch.no_grad():
        want = select(net(x), case.output).softmax(1)[torch.arange(2), t]
    torch.testing.assert_close(res.phi.float(), want, rtol=1e-5, atol=1e-6)
    assert res.attribution.shape == x.shape
    assert bool((res.attribution == res.attribution[:, :1]).all())  # one value per pixel, copied to every channel
    assert bool(((res.attribution >= 0) & (res.attribution <= 1)).all())
    assert bool(res.distortion.isfinite().all()) and bool((res.distortion >= 0).all())
    assert float(res.fractions[-1]) == 1.0
    # keep everything: exactly x by construction, so only the rounding of Φ over different batch shapes
    # (and BLAS kernels) remains: (1e-6)² / 2 at most for float32 probabilities
    assert float(res.curve[:, -1].abs().max()) < 1e-10


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rde_on_token_ids_masks_tokens(name: str) -> None:
    net, case = build(name)
    dress(net, case.hook_layer)
    ids = case.x(2)
    with untouched(net):
        res = nx.rde(net, ids, 0, embedding="emb", **FAST)
    assert res.attribution.shape == ids.shape
    assert bool(((res.attribution >= 0) & (res.attribution <= 1)).all())
    with torch.no_grad():
        want = net(ids).softmax(1)[:, 0]
    torch.testing.assert_close(res.phi.float(), want, rtol=1e-5, atol=1e-6)


def test_rde_calls_that_raise_leave_the_model_as_found() -> None:
    net, case = build("dict")
    dress(net, case.hook_layer)
    x = case.x(2)
    with pytest.raises(ValueError, match="logits"):  # no output= on a dict model: say what it returned
        with untouched(net):
            nx.rde(net, x, 0, **FAST)
    with pytest.raises(ValueError, match="target"):
        with untouched(net):
            nx.rde(net, x, 7, output="logits", **FAST)


@pytest.mark.parametrize("name", ["resnet18", "tuple"])
def test_continuity_of_gradients_along_a_translation(name: str) -> None:
    net, case = build(name)
    dress(net, case.hook_layer)
    x = case.x(2)
    t = torch.tensor([0, 1])
    with untouched(net):
        res = nx.continuity(lambda z: nx.gradient(net, z, t, **_kw(case)).attribution, x, shifts=[-1, 0, 1])
    n, steps = res.inputs.shape[:2]
    assert (n, steps) == (2, 3)
    scores = torch.zeros(n, dtype=torch.float64)
    for i in range(steps):
        g, _ = input_gradient(net, res.inputs[:, i], t, case.output)
        scale = float(g.abs().max())
        torch.testing.assert_close(res.explanations[:, i], g, rtol=1e-4, atol=1e-4 * scale)
    for i in range(steps):
        for j in range(i + 1, steps):
            dr = (res.explanations[:, i] - res.explanations[:, j]).double().flatten(1).abs().sum(1)
            dx = (res.inputs[:, i] - res.inputs[:, j]).double().flatten(1).norm(dim=1)
            scores = torch.maximum(scores, dr / dx)
    torch.testing.assert_close(res.score.double(), scores, rtol=1e-4, atol=0)
