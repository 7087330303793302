"""Explanation continuity (Montavon, Samek & Müller 2018) and the max(x1, x2) teaching network."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core.attribution.continuity import translate
from nbexplain.zoo import max_net


def brute_force_score(inputs: torch.Tensor, expl: torch.Tensor) -> float:
    """max over pairs i ≠ j of ‖R_i − R_j‖₁ / ‖x_i − x_j‖₂, float64, one sample's path."""
    best = 0.0
    for i, j in itertools.combinations(range(inputs.shape[0]), 2):
        dx = float((inputs[i] - inputs[j]).double().norm())
        if dx > 0:
            best = max(best, float((expl[i] - expl[j]).double().abs().sum()) / dx)
    return best


def lrp_zplus(net):
    from nbexplain.core.attribution.lrp import ZPlus

    return lambda z: nx.lrp(net, z, 0, composite={nn.Linear: ZPlus()}).attribution


def test_max_net_is_exact():
    xi = torch.randint(-1000, 1000, (1000, 2)).float()  # exact in floating point: integers
    assert torch.equal(max_net()(xi).squeeze(1).detach(), xi.max(dim=1).values)
    x = torch.randn(1000, 2, dtype=torch.float64) * 3  # up to one rounding of (a − b) + b
    assert torch.allclose(max_net().double()(x).squeeze(1).detach(), x.max(dim=1).values, rtol=0, atol=1e-14)
    assert [n for n, _ in max_net().named_children()] == ["fc1", "relu1", "out"]


def test_gradient_jumps_on_the_diagonal_lrp_does_not():
    """The paper's teaching example: on a segment crossing x1 = x2 the gradient switches from (1, 0) to
    (0, 1), so its ratio grows like 1/step as the path is refined; deep-Taylor/LRP-z⁺ relevance
    (x1 − x2, x2) for x1 ≥ x2 ≥ 0, (0, x2) otherwise, is Lipschitz: its ratio stays bounded."""
    net = max_net()
    x = torch.tensor([[1.0, 0.7]], dtype=torch.float64)
    end = torch.tensor([[0.7, 1.0]], dtype=torch.float64)
    net = net.double()
    def grad(z):
        return nx.gradient(net, z, 0).attribution

    scores = {}
    for steps in (11, 41):
        g = nx.continuity(grad, x, to=end, steps=steps)
        r = nx.continuity(lrp_zplus(net), x, to=end, steps=steps)
        scores[steps] = (float(g.score[0]), float(r.score[0]))
        # the explanation path itself: gradient jumps from (1, 0) to (0, 1)
        assert torch.equal(g.explanations[0, 0], torch.tensor([1.0, 0.0], dtype=torch.float64))
        assert torch.equal(g.explanations[0, -1], torch.tensor([0.0, 1.0], dtype=torch.float64))
        a, b = g.inputs[0, :, 0], g.inputs[0, :, 1]
        ref = torch.stack([(a - b).clamp_min(0), b], dim=1)  # LRP-z⁺ closed form
        assert torch.allclose(r.explanations[0], ref, atol=1e-9)
        assert scores[steps][1] <= 2 * 2**0.5 + 1e-9  # ‖ΔR‖₁ ≤ 2‖Δx‖₁ ≤ 2√2 ‖Δx‖₂
    # refining the path: the gradient's score grows ~ steps, LRP's does not change
    assert scores[41][0] > 3.5 * scores[11][0]
    assert scores[41][0] > 50 * scores[41][1]
    assert abs(scores[41][1] - scores[11][1]) < 1e-9


def test_score_matches_brute_force_on_translations():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    def explain(z):
        return z**2 - z.mean()

    res = nx.continuity(explain, x, shifts=[-2, -1, 0, 1, 3])
    assert res.inputs.shape == (2, 5, 1, 6, 6) and res.explanations.shape == (2, 5, 1, 6, 6)
    assert torch.equal(res.offsets, torch.tensor([-2.0, -1, 0, 1, 3], dtype=torch.float64))
    for i in range(2):
        assert torch.equal(res.inputs[i, 2], x[i])
        assert torch.equal(res.inputs[i, 3], translate(x[i : i + 1], 1)[0])
        assert abs(float(res.score[i]) - brute_force_score(res.inputs[i], res.explanations[i])) < 1e-12
        a, b = res.argmax[i].tolist()
        ratio = float((res.explanations[i, a] - res.explanations[i, b]).abs().sum() / (res.inputs[i, a] - res.inputs[i, b]).norm())
        assert abs(ratio - float(res.score[i])) < 1e-12
        k = 1
        step = float((res.explanations[i, k] - res.explanations[i, k + 1]).abs().sum() / (res.inputs[i, k] - res.inputs[i, k + 1]).norm())
        assert abs(step - float(res.steps[i, k])) < 1e-12
    vert = nx.continuity(explain, x, shifts=[0, 1], axis="vertical")
    assert torch.equal(vert.inputs[0, 1, 0, 1:], x[0, 0, :-1]) and bool((vert.inputs[0, 1, 0, 0] == 0).all())


def test_translate():
    row = torch.arange(1.0, 6.0).reshape(1, 5)
    assert translate(row, 2).tolist() == [[0, 0, 1, 2, 3]]
    assert translate(row, -2, fill=9.0).tolist() == [[3, 4, 5, 9, 9]]
    assert translate(row, 7).tolist() == [[0, 0, 0, 0, 0]]


def test_explicit_path_and_result_objects():
    net = max_net()
    path = torch.tensor([[[0.2, 0.1]], [[0.1, 0.2]], [[0.3, 0.3]]])
    res = nx.continuity(lambda z: nx.lrp(net, z, 0, composite="epsilon"), torch.tensor([[0.2, 0.1]]), path=path)
    assert res.explanations.shape == (1, 3, 2)
    # the explicit path is used as given, each point explained on its own, and the score is the brute force one
    torch.testing.assert_close(res.inputs, path.permute(1, 0, 2), rtol=0, atol=0)
    for t in range(3):
        alone = nx.lrp(net, path[t], 0, composite="epsilon").attribution
        torch.testing.assert_close(res.explanations[:, t], alone, rtol=1e-6, atol=1e-7)
    assert float(res.score[0]) == pytest.approx(brute_force_score(res.inputs[0], res.explanations[0]), rel=1e-6)
    ig = nx.continuity(lambda z: nx.integrated_gradients(net, z, 0, steps=4),
                       torch.tensor([[0.2, 0.1]]), to=torch.tensor([[0.1, 0.2]]), steps=3)
    assert ig.explanations.shape == (1, 3, 2)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(explain="gradient"), TypeError, "function"),
        (dict(explain=lambda z: z.sum(1), to=torch.zeros(2)), ValueError, "shape"),
        (dict(explain=lambda z: z.tolist(), to=torch.zeros(2)), TypeError, "tensor"),
        (dict(path="translate"), ValueError, "images"),
        (dict(path="line"), ValueError, "to="),
        (dict(path="zigzag"), ValueError, "path"),
        (dict(to=torch.zeros(3)), ValueError, "broadcast"),
        (dict(to=torch.zeros(2), steps=1), ValueError, "steps"),
        (dict(path=torch.zeros(1, 4, 2)), ValueError, "T ≥ 2"),
        (dict(axis="diagonal", to=torch.zeros(2)), ValueError, "axis"),
    ],
)
def test_bad_inputs(kwargs, exc, match):
    explain = kwargs.pop("explain", lambda z: z)
    with pytest.raises(exc, match=match):
        nx.continuity(explain, torch.rand(4, 2), **kwargs)


def test_bad_shifts():
    with pytest.raises(ValueError, match="two offsets"):
        nx.continuity(lambda z: z, torch.rand(1, 4, 4), shifts=[1])
