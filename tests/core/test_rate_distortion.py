"""Rate–distortion explanations (Macdonald et al. 2019) against closed-form distortions of linear models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx

FAST = dict(steps=5, n_noise=4, fractions=3, n_eval=4, n_random=1, progress=False)


def linear(d: int = 8, classes: int = 2, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, classes).double()


def linear_distortion(w: torch.Tensor, x: torch.Tensor, s: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """D(s) = ½ E[(w·(1 − s) ⊙ (x − n))²], n ~ N(μ, σ²) — the closed form for a linear score:
    ½ [ (Σ w (1 − s)(x − μ))² + Σ w² (1 − s)² σ² ]."""
    keep = 1 - s
    return 0.5 * ((w * keep * (x - mu)).sum(-1) ** 2 + (w**2 * keep**2 * sd**2).sum(-1))


def test_curve_matches_closed_form_distortion():
    net = linear(d=6)
    x = torch.rand(3, 6, dtype=torch.float64)
    mu, sd = torch.full((6,), 0.4, dtype=torch.float64), torch.linspace(0.1, 0.6, 6, dtype=torch.float64)
    res = nx.rde(net, x, 1, mean=mu, std=sd, score="logit", steps=2, n_noise=4, fractions=[0.0, 0.5, 1.0],
                 n_eval=8000, n_random=1, seed=0, batch_size=50000, progress=False)
    w = net.weight[1].detach()
    ref0 = linear_distortion(w, x, torch.zeros(6, dtype=torch.float64), mu, sd)
    assert torch.allclose(res.curve[:, 0], ref0, rtol=0.08)  # Monte-Carlo, 8000 draws: ~2 % std
    assert torch.allclose(res.random_curve[:, 0], ref0, rtol=0.08)
    assert bool((res.curve[:, 2] == 0).all()) and bool((res.random_curve[:, 2] == 0).all())  # all kept: exact
    order = res.attribution.argsort(dim=1, descending=True)
    keep = torch.zeros(3, 6, dtype=torch.float64).scatter_(1, order[:, :3], 1.0)
    assert torch.allclose(res.curve[:, 1], linear_distortion(w, x, keep, mu, sd), rtol=0.08, atol=1e-4)
    assert torch.allclose(res.phi, net(x)[:, 1].detach())


class BatchShapeDependent(nn.Module):
    """A linear score whose last bits depend on the batch size, as a BLAS kernel chosen by the batch shape
    (and the CPU: AVX2 vs AVX-512) does: Φ(x) is computed in one batch and Φ(y = x) in another."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = linear(d=6)

    def forward(self, x):
        return self.lin(x) + 1e-13 * x.shape[0]


def test_keeping_everything_is_exactly_zero_whatever_the_kernel():
    """Regression (issue 11): the all-kept distortion came out 3.9e-34 on an AVX-512 machine."""
    net = BatchShapeDependent()
    x = torch.rand(3, 6, dtype=torch.float64)
    res = nx.rde(net, x, 1, mean=0.4, std=0.3, score="logit", steps=2, n_noise=4, fractions=[0.0, 1.0],
                 n_eval=16, n_random=2, seed=0, batch_size=7, progress=False)
    assert bool((res.curve[:, 1] == 0).all()) and bool((res.random_curve[:, 1] == 0).all())
    assert bool((res.curve[:, 0] > 0).all())


def test_mask_keeps_what_the_model_uses():
    """A linear model that reads only the first 4 of 8 inputs: ℓ1 drives the unused half to 0 and the
    mask keeps the used half; the ranked curve beats a random ranking."""
    net = nn.Linear(8, 2).double()
    with torch.no_grad():
        net.weight.zero_()
        net.weight[0, :4] = torch.tensor([2.0, -1.5, 1.0, 2.5])
        net.bias.zero_()
    x = torch.rand(2, 8, dtype=torch.float64) + 0.5
    res = nx.rde(net, x, 0, mean=0.0, std=1.0, score="logit", l1=0.05, steps=150, lr=0.05, n_noise=32,
                 fractions=5, n_eval=256, seed=1, progress=False)
    assert bool((res.attribution >= 0).all() and (res.attribution <= 1).all())
    assert float(res.attribution[:, 4:].max()) < 0.05
    assert float(res.attribution[:, :4].min()) > 0.5
    mid = slice(1, 4)
    assert bool((res.curve[:, mid] < res.random_curve[:, mid]).all())
    assert res.distortion.shape == (150, 2) and res.rate.shape == (150, 2)
    assert float(res.rate[-1].mean()) < float(res.rate[0].mean())


def test_images_share_the_mask_across_channels_and_seed_reproduces():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    x = torch.rand(2, 3, 5, 5)
    ref = torch.rand(10, 3, 5, 5)
    a = nx.rde(net, x, None, reference=ref, seed=3, **FAST)
    b = nx.rde(net, x, None, reference=ref, seed=3, **FAST)
    c = nx.rde(net, x, None, reference=ref, seed=4, **FAST)
    assert a.attribution.shape == x.shape and a.attribution.dtype == x.dtype
    assert torch.equal(a.attribution[:, 0], a.attribution[:, 2])
    # same seed, same shapes: the same mask (tolerance: no bitwise claim about the BLAS kernels)
    torch.testing.assert_close(a.attribution, b.attribution, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(a.curve, b.curve, rtol=1e-6, atol=1e-9)
    assert not torch.allclose(a.attribution, c.attribution)
    pc = nx.rde(net, x, 1, mean=0.5, std=0.2, per_channel=True, **FAST)
    assert not torch.equal(pc.attribution[:, 0], pc.attribution[:, 1])
    # the repr reports what was run and where it ended
    text = repr(a)
    assert f"attribution={tuple(x.shape)}, steps={FAST['steps']}" in text
    assert f"final distortion={[round(v, 4) for v in a.distortion[-1].tolist()]}" in text


def test_chunking_does_not_change_the_noise_or_the_result():
    """batch_size only bounds memory: every noise draw is taken per sample, so a run in chunks of 3 rows
    (splitting a sample's n_noise=4 draws over two forward passes) gives the unchunked mask and curves up to the
    rounding of the forward passes."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)).double()
    x = torch.rand(3, 3, 5, 5, dtype=torch.float64)
    opts = dict(FAST, steps=12, fractions=4, n_random=2)
    whole = nx.rde(net, x, 1, mean=0.5, std=0.2, seed=3, **opts)
    for bs in (3, 5, 8):  # rows per pass: inside one sample's draws, across two samples, two whole samples
        part = nx.rde(net, x, 1, mean=0.5, std=0.2, batch_size=bs, seed=3, **opts)
        torch.testing.assert_close(part.attribution, whole.attribution, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(part.distortion, whole.distortion, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(part.curve, whole.curve, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(part.random_curve, whole.random_curve, rtol=1e-10, atol=1e-14)
    assert bool((whole.distortion > 0).all()) and bool((whole.attribution != 0.5).any())  # the noise and the steps act


def test_predicted_class_is_default_target():
    net = linear(d=4, classes=3)
    x = torch.rand(5, 4, dtype=torch.float64)
    pred = net(x).argmax(1)
    res = nx.rde(net, x, None, seed=0, score="softmax", **FAST)
    ref = nx.rde(net, x, pred, seed=0, score="softmax", **FAST)
    torch.testing.assert_close(res.attribution, ref.attribution, rtol=1e-12, atol=1e-12)
    assert torch.allclose(res.phi, torch.softmax(net(x), 1).gather(1, pred[:, None]).squeeze(1).detach())


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(mean=0.0), ValueError, "both `mean` and `std`"),
        (dict(mean=0.0, std=1.0, reference=torch.rand(3, 4)), ValueError, "either"),
        (dict(reference=torch.rand(3, 5)), ValueError, "reference"),
        (dict(mean=torch.zeros(3), std=1.0), ValueError, "broadcast"),
        (dict(mean=0.0, std=-1.0), ValueError, "std"),
        (dict(l1=-1.0), ValueError, "l1"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(init=2.0), ValueError, "init"),
        (dict(steps=0), ValueError, "steps"),
        (dict(fractions=[0.0, 1.5]), ValueError, "fractions"),
        (dict(fractions=1), ValueError, "fractions"),
        (dict(score="probability"), ValueError, "score"),
        (dict(per_channel=1), TypeError, "per_channel"),
    ],
)
def test_bad_inputs(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nx.rde(linear(d=4), torch.rand(2, 4, dtype=torch.float64), 0, **{**FAST, **kwargs})


def test_softmax_needs_two_outputs():
    with pytest.raises(ValueError, match="logit"):
        nx.rde(nn.Linear(4, 1), torch.rand(2, 4), 0, **FAST)
