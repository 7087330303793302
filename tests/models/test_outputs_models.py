"""Every attribution entry point, δ curves and activation maximization on outputs that are not (N, classes).

A GPT-style language model (N, T=10, V=40) explained at ``(position, token)`` and a small U-Net's class maps
(N, 4, 16, 16) explained as a class map over a region, each against plain float64 autograd of the score written
by hand (``out[:, p, v]``, ``Σ mask ⊙ out[:, c]``), with the model dressed in the user's hooks and checked
untouched (:mod:`tests.models.state`).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

import nbexplain as nx
from tests.models.reference import produced
from tests.models.state import dress, untouched
from tests.models.zoo import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST_RDE = dict(steps=3, n_noise=4, fractions=3, n_eval=2, n_random=1, seed=0, progress=False)


def _lm() -> tuple[nn.Module, Any, torch.Tensor]:
    net, case = build("causal_lm")
    net = net.double()
    dress(net, case.hook_layer)
    return net, case, case.x(3)


def _seg() -> tuple[nn.Module, Any, torch.Tensor, torch.Tensor]:
    net, case = build("segmentation")
    net = net.double()
    dress(net, case.hook_layer)
    mask = torch.zeros(3, 16, 16, dtype=torch.float64)  # one region per sample
    mask[0, :8, :8] = 1.0
    mask[1, 4:12, 4:12] = 1.0
    mask[2, 10:, :] = 0.5
    return net, case, case.x(3).double(), mask


def _embedding_grad(net: nn.Module, ids: torch.Tensor, score: Any, baseline: bool = False) -> tuple[torch.Tensor, ...]:
    """∂score/∂e at the embedding output (float64 autograd), e, and the score; ``baseline``: at e = 0."""
    kept: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
        e = (torch.zeros_like(out) if baseline else out).detach().clone().requires_grad_(True)
        kept.append(e)
        return e

    h = net.emb.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            s = score(net(ids))
            (g,) = torch.autograd.grad(s.sum(), kept[0])
    finally:
        h.remove()
    return g, kept[0].detach(), s.detach()


def _close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-8) -> None:
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * (float(want.abs().max()) or 1.0))


def test_language_model_gradient_family_at_a_position_and_token() -> None:
    net, case, ids = _lm()
    pos, tok = torch.tensor([-1, 4, 0]), torch.tensor([7, 39, 0])
    score = lambda out: out[torch.arange(3), pos, tok]  # noqa: E731
    g, e, f_x = _embedding_grad(net, ids, score)
    with untouched(net):
        grad = nx.gradient(net, ids, (pos, tok)).attribution
        gxi = nx.gradient_x_input(net, ids, (pos, tok)).attribution
        res_ig = nx.integrated_gradients(net, ids, (pos, tok), steps=48)
        ig, err = res_ig.attribution, res_ig.error
        sg = nx.smoothgrad(net, ids, (pos, tok), n_samples=2, seed=0).attribution
        fn = nx.gradient(net, ids, score).attribution
    _close(grad, g.norm(dim=-1))
    _close(gxi, (g * e).sum(-1))
    _close(fn, grad)
    assert bool((grad[1, 5:] == 0).all()) and bool((grad[2, 1:] == 0).all())  # causal: later tokens are out
    _, _, f_0 = _embedding_grad(net, ids, score, baseline=True)
    _close(ig.double().sum(1), f_x - f_0, rel=1e-6)
    assert float(err.abs().max()) < 1e-6
    assert sg.shape == ids.shape and bool((sg[2, 1:] == 0).all())
    with untouched(net), pytest.raises(ValueError, match=r"\(N, T=10, V=40\)"):
        nx.gradient(net, ids, 7)


def test_language_model_rde_and_lrp() -> None:
    net, case, ids = _lm()
    with untouched(net):
        res = nx.rde(net, ids, (-1, 7), **FAST_RDE)
    with torch.no_grad():
        out = net(ids)
    _close(res.phi, torch.softmax(out[:, -1], dim=-1)[:, 7])
    assert res.attribution.shape == ids.shape
    # LRP: ε → 0 on the linear layers and gradient × input through the blocks (the learned positions are added
    # in forward, a functional sum: strict=False splits it in proportion) is exactly gradient × input.
    comp = {nn.TransformerEncoderLayer: nx.rules.Gradient(), nn.LayerNorm: nx.rules.Gradient(), nn.Linear: nx.rules.Epsilon(1e-12)}
    with untouched(net), warnings.catch_warnings():
        warnings.simplefilter("ignore", nx.FunctionalOpsWarning)
        lrp = nx.lrp(net, ids, (-1, 7), composite=comp, strict=False)
    g, e, s = _embedding_grad(net, ids, lambda o: o[:, -1, 7])
    _close(lrp.attribution, (g * e).sum(-1), rel=1e-7)
    _close(lrp.output_relevance, s)


def test_segmentation_region_in_every_attribution_entry_point() -> None:
    net, case, x, mask = _seg()
    cls = torch.tensor([0, 3, 1])
    target = nx.Target.region(cls, mask)
    xg = x.clone().requires_grad_(True)
    score = (net(xg)[torch.arange(3), cls] * mask).sum((1, 2))
    (g,) = torch.autograd.grad(score.sum(), xg)
    with untouched(net):
        grad = nx.gradient(net, x, target).attribution
        gxi = nx.gradient_x_input(net, x, target).attribution
        res_ig = nx.integrated_gradients(net, x, target, steps=16)
        ig, err = res_ig.attribution, res_ig.error
        lrp = nx.lrp(net, x, target, composite={nn.Conv2d: nx.rules.Epsilon(1e-12), nn.Upsample: nx.rules.Gradient()})
        rde = nx.rde(net, x, target, **FAST_RDE)
        whole = nx.gradient(net, x, 2).attribution
    _close(grad, g)
    _close(gxi, g * x)
    # ReLU, max-pooling, nearest upsampling and a concatenation: piecewise linear, so LRP-ε→0 is gradient × input
    _close(lrp.attribution, g * x, rel=1e-7)
    _close(lrp.output_relevance, score.detach())
    with torch.no_grad():  # IG's completeness against the score at x and at the zero baseline, by hand
        f0 = (net(torch.zeros_like(x))[torch.arange(3), cls] * mask).sum((1, 2))
    _close(ig.sum((1, 2, 3)) - err, score.detach() - f0, rel=1e-9)
    with torch.no_grad():
        probs = torch.softmax(net(x), dim=1)[torch.arange(3), cls]
    _close(rde.phi, (probs * mask).sum((1, 2)) / mask.sum((1, 2)))
    xg = x.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(net(xg)[:, 2].sum(), xg)
    _close(whole, g2)  # a plain class: its map summed over the whole image


def test_segmentation_delta_curve_and_class_map_maximisation() -> None:
    net, case = build("segmentation")
    dress(net, case.hook_layer)
    x = case.x(6)
    layer = "mid.0"
    stats = nx.layer_statistics(net, x, [layer])[layer]
    labels = torch.randint(0, 4, (6, 16, 16), generator=torch.Generator().manual_seed(5))
    labels[:, 0] = 255  # void pixels
    with untouched(net):
        curve = nx.delta_curve(net, x, layer, stats, deltas=[0.5, 1.0], labels=labels, ignore_index=255)
        outs = nx.projected_outputs(net, x, layer, stats, ks=curve.ks.tolist())
    keep = labels != 255
    assert curve.eigen.tolist() == [float((o.argmax(1) == labels)[keep].double().mean()) for o in outs]
    with untouched(net), pytest.raises(ValueError, match="needs to know what to score"):
        nx.delta_curve(net, x, layer, stats, deltas=[0.5])
    with untouched(net):  # a class map, averaged over the image (objective "channel" on the output)
        res = nx.maximize_activation(net, None, 2, case.shape, steps=3, param="pixel", transforms=None, progress=False)
    out = produced(net, res.images, ["head"])["head"][0]
    torch.testing.assert_close(res.final, out[:, 2].mean((1, 2)), rtol=1e-5, atol=1e-6)
