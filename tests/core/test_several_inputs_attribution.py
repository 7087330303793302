"""Attribution for models with several inputs (issue 16): ``x=(x, mask)``, dicts, ``nx.Inputs`` and ``wrt=``.

Every reference is independent of nbexplain's row handling: a hand-written float64 forward with each sample's
own mask bound (one sample at a time, or a closed-form batch), differentiated with ``torch.autograd``. The
per-sample masks differ from row to row, and ``batch_size`` is chosen so that SmoothGrad's noisy copies and
integrated gradients' path points cross chunk boundaries — the expansion that broke wrappers binding a
per-sample mask.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nx
from tests.models.state import dress, untouched

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N, T, F, C = 5, 6, 3, 4


# ----------------------------------------------------------------------------------------------------
# models and their hand-written references
# ----------------------------------------------------------------------------------------------------


class MaskedMean(nn.Module):
    """``x (N, T, F)``, ``mask (N, T)`` bool: a per-position layer, the mean over the kept positions, a head."""

    def __init__(self, act: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self.proj = nn.Linear(F, 7)
        self.act = act()
        self.head = nn.Linear(7, C)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.act(self.proj(x))
        m = mask.to(h.dtype).unsqueeze(-1)
        return self.head((h * m).sum(1) / m.sum(1).clamp_min(1.0))


def masked_mean_ref(model: MaskedMean, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The same network written out from its weights, for one batch with its masks bound."""
    w1, b1 = model.proj.weight.double(), model.proj.bias.double()
    w2, b2 = model.head.weight.double(), model.head.bias.double()
    z = x @ w1.T + b1
    h = torch.tanh(z) if isinstance(model.act, nn.Tanh) else torch.relu(z)
    m = mask.double().unsqueeze(-1)
    return ((h * m).sum(1) / m.sum(1).clamp_min(1.0)) @ w2.T + b2


def grad_ref(fn, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """∂ f_t / ∂x of ``fn(x)`` (rows independent), float64."""
    x = x.detach().double().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).gather(1, t.view(-1, 1)).sum(), x)
    return g


class Conditioned(nn.Module):
    """``f(x, cond)``: features modulated by a floating conditioning input (FiLM-style), optional scale."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(F, 5)
        self.film = nn.Linear(2, 5)
        self.head = nn.Linear(5, C)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.head(torch.tanh(self.lin(x) * (1 + self.film(cond)) * scale))


def conditioned_ref(model: Conditioned, x: torch.Tensor, cond: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    p = {k: v.double() for k, v in model.state_dict().items()}
    h = (x @ p["lin.weight"].T + p["lin.bias"]) * (1 + cond @ p["film.weight"].T + p["film.bias"]) * scale
    return torch.tanh(h) @ p["head.weight"].T + p["head.bias"]


class TokenMasked(nn.Module):
    """Token ids and an integer attention mask (0 = padding), as a Hugging Face model takes them."""

    def __init__(self, vocab: int = 20, dim: int = 4, act: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.act = act()
        self.head = nn.Linear(dim, C)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.after(self.emb(input_ids), attention_mask)

    def after(self, e: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = attention_mask.to(e.dtype).unsqueeze(-1)
        return self.head(self.act((e * m).sum(1) / m.sum(1).clamp_min(1.0)))


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 inputs, a different mask per row (row i keeps a different set, row 0 keeps one position), targets."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, T, F, generator=gen, dtype=torch.float64)
    mask = torch.rand(N, T, generator=gen) < 0.6
    mask[0] = False
    mask[0, 2] = True
    mask[:, 0] |= torch.arange(N) % 2 == 1
    t = torch.tensor([0, 3, 1, 2, 3])
    return x, mask, t


def masked_model(act: type[nn.Module] = nn.Tanh) -> MaskedMean:
    torch.manual_seed(1)
    return MaskedMean(act).double()


# ----------------------------------------------------------------------------------------------------
# the gradient family w.r.t. x, the mask held fixed
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["tuple", "dict", "inputs"])
def test_gradient_and_gradient_x_input_hold_the_mask_fixed(form):
    model = masked_model()
    x, mask, t = data()
    xs = {"tuple": (x, mask), "dict": {"x": x, "mask": mask}, "inputs": nx.Inputs(x, mask=mask)}[form]
    ref = grad_ref(lambda z: masked_mean_ref(model, z, mask), x, t)
    for bs in (2, 128):
        got = nx.gradient(model, xs, t, batch_size=bs).attribution
        assert got.shape == x.shape and got.dtype == torch.float64
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
    gxi = nx.gradient_x_input(model, xs, t, batch_size=3).attribution
    torch.testing.assert_close(gxi, ref * x, rtol=1e-12, atol=1e-14)
    # masked-out positions get exactly zero; kept ones do not
    off = ~mask
    assert torch.equal(gxi[off], torch.zeros_like(gxi[off]))
    assert bool((gxi[mask].abs().sum(-1) > 0).all())


def noisy_points(x: torch.Tensor, n_samples: int, level: float, seed: int) -> torch.Tensor:
    """SmoothGrad's documented noise stream: per sample σ = level · (max − min), unit noise drawn in float32
    as one (n_samples, …) block per sample from the seeded generator, samples in order."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(x.shape[0]):
        sigma = level * float(x[i].max() - x[i].min())
        eps = torch.randn((n_samples,) + tuple(x.shape[1:]), generator=gen, dtype=torch.float32)
        out.append(x[i] + (sigma * eps).to(x.dtype))
    return torch.stack(out)  # (N, n_samples, …)


def test_smoothgrad_keeps_each_noisy_copy_with_its_own_mask():
    """Reference: each sample's noisy copies differentiated with *that sample's* mask bound; batch_size 3 with
    4 copies per sample puts copies of one sample in two chunks."""
    model = masked_model()
    x, mask, t = data()
    n_samples, level = 4, 0.2
    pts = noisy_points(x, n_samples, level, seed=7)
    ref = torch.stack([
        grad_ref(lambda z, i=i: masked_mean_ref(model, z, mask[i].expand(n_samples, T)), pts[i],
                 t[i].repeat(n_samples)).mean(0)
        for i in range(N)
    ])
    for bs in (3, 7, 128):
        got = nx.smoothgrad(model, (x, mask), t, n_samples=n_samples, noise_level=level, seed=7, batch_size=bs).attribution
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
        assert torch.equal(got[~mask], torch.zeros_like(got[~mask]))
    mag = nx.smoothgrad(model, {"x": x, "mask": mask}, t, n_samples=n_samples, noise_level=level, seed=7,
                        magnitude=True, times_input=True, batch_size=5).attribution
    ref_mag = torch.stack([
        grad_ref(lambda z, i=i: masked_mean_ref(model, z, mask[i].expand(n_samples, T)), pts[i],
                 t[i].repeat(n_samples)).abs().mean(0)
        for i in range(N)
    ])
    torch.testing.assert_close(mag, ref_mag * x, rtol=1e-12, atol=1e-14)


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return 0.5 * (nodes + 1.0), 0.5 * weights


def test_integrated_gradients_path_points_keep_their_masks():
    """Reference: the path integral per sample with its mask bound (Gauss–Legendre nodes from numpy); the
    batch sizes make path points of neighbouring samples share chunks. Completeness holds per sample."""
    model = masked_model()
    x, mask, t = data()
    steps = 8
    base = torch.full_like(x, 0.25)
    alphas, weights = gauss_legendre(steps)
    ref = torch.zeros_like(x)
    for a, w in zip(alphas, weights, strict=True):
        ref += w * grad_ref(lambda z: masked_mean_ref(model, z, mask), base + a * (x - base), t)
    ref *= x - base
    fx = masked_mean_ref(model, x, mask).gather(1, t.view(-1, 1)).squeeze(1)
    fb = masked_mean_ref(model, base, mask).gather(1, t.view(-1, 1)).squeeze(1)
    for bs in (5, 3, 1000):
        res_ig = nx.integrated_gradients(model, (x, mask), t, baseline=0.25, steps=steps, batch_size=bs)
        got, err = res_ig.attribution, res_ig.error
        torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-13)
        torch.testing.assert_close(err, got.sum((1, 2)) - (fx - fb), rtol=1e-10, atol=1e-12)
        assert torch.equal(got[~mask], torch.zeros_like(got[~mask]))


# ----------------------------------------------------------------------------------------------------
# wrt= another input: a floating conditioning input, keyword inputs, non-tensor values
# ----------------------------------------------------------------------------------------------------


def test_wrt_a_floating_conditioning_input_by_position_and_by_name():
    torch.manual_seed(3)
    model = Conditioned().double()
    x, _, t = data()
    x = x[:, 0]  # (N, F)
    cond = torch.randn(N, 2, dtype=torch.float64)
    g_c = grad_ref(lambda c: conditioned_ref(model, x, c), cond, t)
    g_x = grad_ref(lambda z: conditioned_ref(model, z, cond), x, t)
    torch.testing.assert_close(nx.gradient(model, (x, cond), t, wrt=1).attribution, g_c, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(nx.gradient(model, (x, cond), t, wrt=-1).attribution, g_c, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(nx.gradient(model, (x, cond), t).attribution, g_x, rtol=1e-12, atol=1e-14)
    # keyword inputs: model(x=…, cond=…); wrt by name; a non-tensor keyword value passed unchanged
    kw = {"x": x, "cond": cond}
    torch.testing.assert_close(nx.gradient(model, kw, t, wrt="cond").attribution, g_c, rtol=1e-12, atol=1e-14)
    g_c2 = grad_ref(lambda c: conditioned_ref(model, x, c, scale=2.0), cond, t)
    got = nx.gradient(model, nx.Inputs(x, cond=cond, scale=2.0), t, wrt="cond", batch_size=2).attribution
    torch.testing.assert_close(got, g_c2, rtol=1e-12, atol=1e-14)
    # integrated gradients in the conditioning input, x held at each sample's own value
    res_ig = nx.integrated_gradients(model, kw, t, wrt="cond", steps=24, batch_size=7)
    ig, err = res_ig.attribution, res_ig.error
    f = lambda c: conditioned_ref(model, x, c).gather(1, t.view(-1, 1)).squeeze(1)  # noqa: E731
    torch.testing.assert_close(ig.sum(1), f(cond) - f(torch.zeros_like(cond)), rtol=1e-9, atol=1e-10)
    assert float(err.abs().max()) < 1e-9
    # a 1-D (N,) conditioning input can be explained too: one value per sample
    model1 = Conditioned().double()
    with torch.no_grad():
        model1.film = nn.Linear(1, 5).double()
    c1 = torch.randn(N, dtype=torch.float64)

    class Scalar(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model1

        def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return self.inner(x, c.unsqueeze(1))

    g1 = grad_ref(lambda c: conditioned_ref(model1, x, c.unsqueeze(1)), c1, t)
    got1 = nx.gradient(Scalar(), (x, c1), t, wrt=1).attribution
    assert got1.shape == (N,)
    torch.testing.assert_close(got1, g1, rtol=1e-12, atol=1e-14)


def test_wrt_mask_as_floats_explains_the_mask():
    """A floating mask is an input like any other: ∂f/∂mask with x held fixed."""
    model = masked_model()
    x, mask, t = data()
    fm = mask.double()
    ref = grad_ref(lambda m: masked_mean_ref(model, x, m), fm, t)
    torch.testing.assert_close(nx.gradient(model, (x, fm), t, wrt=1).attribution, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(nx.gradient(model, {"x": x, "mask": fm}, t, wrt="mask").attribution, ref, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------------------------
# token ids with an attention mask, through the embedding
# ----------------------------------------------------------------------------------------------------


def tokens(seed: int = 2):
    torch.manual_seed(seed)
    model = TokenMasked().double()
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 20, (N, T), generator=gen)
    lengths = torch.tensor([1, 6, 3, 4, 2])
    am = (torch.arange(T) < lengths[:, None]).long()
    ids = ids * am  # padding id 0 after each sequence
    t = torch.tensor([1, 0, 3, 2, 1])
    return model, ids, am, t


def emb_grad(model: TokenMasked, e: torch.Tensor, am: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return grad_ref(lambda z: model.after(z, am), e, t)


def test_token_ids_with_attention_mask():
    model, ids, am, t = tokens()
    e = model.emb(ids).detach()
    g = emb_grad(model, e, am, t)
    batch = {"input_ids": ids, "attention_mask": am}
    got = nx.gradient(model, batch, t, batch_size=2).attribution
    assert got.shape == ids.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, g.norm(dim=-1), rtol=1e-12, atol=1e-14)
    gxi = nx.gradient_x_input(model, (ids, am), t).attribution
    torch.testing.assert_close(gxi, (g * e).sum(-1), rtol=1e-12, atol=1e-14)
    pad = am == 0
    assert torch.equal(got[pad], torch.zeros_like(got[pad])) and torch.equal(gxi[pad], torch.zeros_like(gxi[pad]))
    # integrated gradients from the padding embedding (baseline token ids), the mask held fixed
    pad_ids = torch.zeros_like(ids)
    res_ig = nx.integrated_gradients(model, batch, t, baseline=pad_ids, steps=16, batch_size=6)
    ig, err = res_ig.attribution, res_ig.error
    f = lambda z: model.after(z, am).gather(1, t.view(-1, 1)).squeeze(1)  # noqa: E731
    eb = model.emb(pad_ids).detach()
    torch.testing.assert_close(ig.sum(1), f(e) - f(eb), rtol=1e-8, atol=1e-9)
    assert float(err.abs().max()) < 1e-8
    assert torch.equal(ig[pad], torch.zeros_like(ig[pad]))


def test_token_smoothgrad_noise_in_embedding_space_with_masks():
    model, ids, am, t = tokens()
    e = model.emb(ids).detach()
    n_samples, level = 3, 0.3
    pts = noisy_points(e, n_samples, level, seed=4)
    mean_g = torch.stack([
        emb_grad(model, pts[i], am[i].expand(n_samples, T), t[i].repeat(n_samples)).mean(0) for i in range(N)
    ])
    for bs in (2, 100):
        got = nx.smoothgrad(model, (ids, am), t, n_samples=n_samples, noise_level=level, seed=4, batch_size=bs).attribution
        torch.testing.assert_close(got, mean_g.norm(dim=-1), rtol=1e-12, atol=1e-14)


def test_embedding_that_reads_another_input_is_refused():
    """An integer mask shaped like the ids is not token ids: the only nn.Embedding reads input_ids, so
    explaining wrt='attention_mask' through it would attribute the ids' embedding to the mask."""
    model, ids, am, t = tokens()
    with pytest.raises(ValueError, match=r"reads the input 'input_ids', not the explained input wrt='attention_mask'"):
        nx.gradient(model, {"input_ids": ids, "attention_mask": am}, t, wrt="attention_mask")
    with pytest.raises(ValueError, match=r"reads the input 0, not the explained input wrt=1"):
        nx.lrp(model, (ids, am), t, wrt=1, strict=False)


# ----------------------------------------------------------------------------------------------------
# RDE
# ----------------------------------------------------------------------------------------------------


class Bound(nn.Module):
    """The reference for one sample: its mask bound, expanded to whatever batch RDE sends."""

    def __init__(self, model: nn.Module, mask_row: torch.Tensor) -> None:
        super().__init__()
        self.model, self.mask_row = model, mask_row

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.mask_row.expand(x.shape[0], -1))


def test_rde_each_noise_draw_meets_its_own_mask():
    """With std=0 the noise is exactly the mean and RDE is deterministic; its optimiser (Adam) is elementwise,
    so the joint run over N samples equals N one-sample runs on a model with that sample's mask bound."""
    model = masked_model()
    x, mask, t = data()
    kw = dict(mean=0.0, std=0.0, steps=25, n_noise=3, fractions=5, n_eval=2, n_random=1, score="logit")
    joint = nx.rde(model, (x, mask), t, batch_size=4, **kw)
    assert joint.attribution.shape == x.shape
    for i in range(N):
        one = nx.rde(Bound(model, mask[i]), x[i : i + 1], t[i : i + 1], batch_size=64, **kw)
        torch.testing.assert_close(joint.attribution[i : i + 1], one.attribution, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(joint.distortion[:, i : i + 1], one.distortion, rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(joint.curve[i : i + 1], one.curve, rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(joint.phi[i : i + 1], one.phi, rtol=1e-12, atol=1e-14)
    # positions the mask drops have no distortion gradient: only the rate acts, the mask goes to 0
    assert torch.equal(joint.attribution[~mask], torch.zeros_like(joint.attribution[~mask]))
    assert float(joint.attribution[mask].max()) > 0


def test_rde_with_noise_and_a_reference_for_the_wrt_input():
    model = masked_model()
    x, mask, t = data()
    ref_x = torch.randn(40, T, F, dtype=torch.float64)
    kw = dict(steps=4, n_noise=4, fractions=3, n_eval=2, n_random=1, seed=3)
    a = nx.rde(model, (x, mask), t, reference=ref_x, **kw)
    b = nx.rde(model, (x, mask), t, mean=ref_x.mean(0), std=ref_x.std(0), **kw)
    c = nx.rde(model, (x, mask), t, reference=(ref_x, torch.ones(40, T, dtype=torch.bool)), **kw)
    torch.testing.assert_close(a.attribution, b.attribution, rtol=1e-12, atol=1e-14)
    assert torch.equal(a.attribution, c.attribution)
    with pytest.raises(ValueError, match="same inputs as `inputs`"):
        nx.rde(model, (x, mask), t, reference={"x": ref_x}, **kw)


def test_rde_token_reference_ids_with_several_inputs():
    """Reference token ids of other samples are embedded by the nn.Embedding alone; a reference batch of all
    inputs runs the model; both give the statistics of mean=/std= computed by hand."""
    model, ids, am, t = tokens()
    ref_ids = torch.randint(0, 20, (30, 9))
    emb = model.emb(ref_ids).detach().reshape(-1, 4)
    kw = dict(steps=3, n_noise=4, fractions=3, n_eval=2, n_random=1, seed=5)
    by_ids = nx.rde(model, (ids, am), t, reference=ref_ids, **kw)
    by_batch = nx.rde(model, {"input_ids": ids, "attention_mask": am}, t,
                      reference={"input_ids": ref_ids, "attention_mask": torch.ones_like(ref_ids)}, **kw)
    by_stats = nx.rde(model, (ids, am), t, mean=emb.mean(0), std=emb.std(0), **kw)
    assert by_ids.attribution.shape == ids.shape
    torch.testing.assert_close(by_ids.attribution, by_stats.attribution, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(by_batch.attribution, by_stats.attribution, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------------------------
# LRP
# ----------------------------------------------------------------------------------------------------


def test_lrp_with_a_mask_equals_gradient_x_input():
    """ReLU network, ε → 0 rules, strict=False (the mask product, the sum and the division get their
    proportional rules): LRP equals gradient × input with each sample's mask bound, in every batch split."""
    model = masked_model(nn.ReLU)
    x, mask, t = data()
    ref = grad_ref(lambda z: masked_mean_ref(model, z, mask), x, t) * x
    for bs in (2, None):
        res = nx.lrp(model, (x, mask), t, composite="epsilon", epsilon=1e-12, strict=False, batch_size=bs)
        assert res.attribution.shape == x.shape
        torch.testing.assert_close(res.attribution, ref, rtol=1e-8, atol=1e-10)
        assert torch.equal(res.attribution[~mask], torch.zeros_like(res.attribution[~mask]))
        out = masked_mean_ref(model, x, mask)
        torch.testing.assert_close(res.output, out, rtol=1e-12, atol=1e-14)
    kw = nx.lrp(model, nx.Inputs(x, mask=mask), t, composite="epsilon", epsilon=1e-12, strict=False)
    torch.testing.assert_close(kw.attribution, ref, rtol=1e-8, atol=1e-10)
    # strict: the mask product is a constant per-position factor, read as a layer scale (nx.canonizers.Scale); the sum
    # over positions that follows is an operation without a rule, named
    with pytest.raises(nx.UnsupportedModuleError, match=r"\['SumBackward1'\]"):
        nx.lrp(model, (x, mask), t, composite="epsilon")


def test_lrp_token_ids_with_attention_mask():
    model, ids, am, t = tokens()
    model.act = nn.ReLU()
    e = model.emb(ids).detach()
    g = emb_grad(model, e, am, t)
    res = nx.lrp(model, {"input_ids": ids, "attention_mask": am}, t, composite="epsilon", epsilon=1e-12,
                 strict=False, batch_size=2)
    assert res.attribution.shape == ids.shape
    torch.testing.assert_close(res.attribution, (g * e).sum(-1), rtol=1e-8, atol=1e-10)
    assert torch.equal(res.attribution[am == 0], torch.zeros_like(res.attribution[am == 0]))


# ----------------------------------------------------------------------------------------------------
# one input: unchanged; errors; hygiene
# ----------------------------------------------------------------------------------------------------


def test_one_input_as_tuple_or_inputs_is_bit_identical_to_a_tensor():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(F, 8), nn.Tanh(), nn.Linear(8, C))
    x = torch.randn(N, F)
    t = torch.tensor([0, 1, 2, 3, 0])
    calls = [
        lambda v: nx.gradient(net, v, t, batch_size=2).attribution,
        lambda v: nx.smoothgrad(net, v, t, n_samples=3, batch_size=4).attribution,
        lambda v: nx.integrated_gradients(net, v, t, steps=5, batch_size=7).attribution,
        lambda v: nx.rde(net, v, t, steps=3, n_noise=2, fractions=3, n_eval=2, n_random=1).attribution,
        lambda v: nx.lrp(net, v, t, composite="epsilon", strict=False).attribution,
    ]
    for call in calls:
        plain = call(x)
        assert torch.equal(call((x,)), plain)
        assert torch.equal(call(nx.Inputs(x)), plain)
        assert torch.equal(call(x.numpy()), plain)


def test_bad_wrt_and_batch_errors():
    model = masked_model()
    x, mask, t = data()
    with pytest.raises(ValueError, match=r"`wrt`='lengths' names no input of model\(Tensor.*\[0, 1\]"):
        nx.gradient(model, (x, mask), t, wrt="lengths")
    with pytest.raises(ValueError, match=r"`wrt`=2 names no input"):
        nx.smoothgrad(model, (x, mask), t, wrt=2)
    with pytest.raises(TypeError, match=r"`wrt` must be an input's position \(int\) or keyword name"):
        nx.integrated_gradients(model, (x, mask), t, wrt=1.0)
    with pytest.raises(ValueError, match=r"`wrt`='scale' is 2\.0, not a tensor"):
        nx.gradient(Conditioned().double(), nx.Inputs(x[:, 0], cond=torch.zeros(N, 2), scale=2.0), t, wrt="scale")
    with pytest.raises(ValueError, match=r"`wrt`=1 names no input of model\(Tensor"):
        nx.lrp(model, x, t, wrt=1)
    size = r"`inputs`: The inputs of one batch must share their first-axis size"
    with pytest.raises(ValueError, match=size + r".*\[0\]: 5, \[1\]: 4"):
        nx.gradient(model, (x, mask[:4]), t)
    with pytest.raises(ValueError, match=r"`inputs`: .*'x': 5, 'mask': 3"):
        nx.rde(model, {"x": x, "mask": mask[:3]}, t)
    with pytest.raises(ValueError, match=r"`inputs`: .*first-axis size"):
        nx.lrp(model, (x, mask[:2]), t)
    with pytest.raises(ValueError, match=r"`target` has 4 entries|4 entries"):
        nx.gradient(model, (x, mask), t[:4])
    bool_mask = r"`inputs\[1\]` \(the explained input, `wrt`=1\) has dtype torch.bool.*mask.float\(\)"
    with pytest.raises(TypeError, match=bool_mask):
        nx.gradient(model, (x, mask), t, wrt=1)
    with pytest.raises(TypeError, match=r"A list is not read as several inputs: pass them as a tuple"):
        nx.gradient(model, [x, mask], t)
    bad = torch.zeros(N, 2, dtype=torch.float64)
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"`inputs\[1\]` holds NaN"):
        nx.gradient(Conditioned().double(), (x[:, 0], bad), t)
    with pytest.raises(ValueError, match=r"`inputs\[0\]` contains 1 non-finite"):
        xn = x.clone()
        xn[0, 0, 0] = float("inf")
        nx.integrated_gradients(model, (xn, mask), t)
    # an additive attention mask may hold -inf: it is held fixed, never differentiated
    additive = torch.where(mask, 0.0, float("-inf")).double()

    class Additive(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = masked_model()

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            return self.inner(x, bias == 0)

    ref = grad_ref(lambda z: masked_mean_ref(masked_model(), z, mask), x, t)
    torch.testing.assert_close(nx.gradient(Additive(), (x, additive), t).attribution, ref, rtol=1e-12, atol=1e-14)


def test_a_label_passed_as_an_input_gets_a_note_saying_how_the_model_was_called():
    """The issue's mistake: x=(images, labels) for a one-input model. The model's own error is kept, with a
    note naming the call and the remedy."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    # gradient's first chunk is the whole batch, and smoothgrad's first pass is the clean batch
    for call, rows in ((lambda: nx.gradient(net, (x, y), 0), 4), (lambda: nx.smoothgrad(net, (x, y), 0), 4),
                       (lambda: nx.lrp(net, (x, y), 0), 4)):
        with pytest.raises(TypeError, match="positional argument") as err:
            call()
        notes = "".join(getattr(err.value, "__notes__", []))
        assert f"model(Tensor({rows}, 1, 6, 6) float32, Tensor({rows},) int64)" in notes
        assert "(inputs, labels)" in notes and "`target=`" in notes
    # a model that takes two inputs called with one: the note says how to pass several
    with pytest.raises(TypeError, match="missing 1 required positional argument") as err:
        nx.integrated_gradients(masked_model(), data()[0], 0)
    assert "pass them together as a tuple (positional) or dict (keyword)" in "".join(err.value.__notes__)
    # a one-input model's own shape error is not about its inputs: no note
    with pytest.raises(RuntimeError) as err:
        nx.gradient(net, torch.rand(4, 1, 5, 5), 0)
    assert not getattr(err.value, "__notes__", None)
    # nbexplain's own errors raised in its hooks get no note
    with pytest.raises(nx.UnsupportedModuleError) as err:
        nx.lrp(masked_model(nn.ReLU), data()[:2], 0)
    assert not getattr(err.value, "__notes__", None)


class Failing(MaskedMean):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(C)
        self.calls, self.fail_at = 0, 10**9

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("boom in the middle of forward")
        return self.bn(super().forward(x, mask))


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients", "rde", "lrp"])
@pytest.mark.parametrize("fails", [False, True])
def test_model_left_as_found_with_several_inputs(method, fails):
    torch.manual_seed(0)
    model = Failing().train()
    dress(model, "head")
    x, mask, t = data()
    x = x.float()
    calls = {
        "gradient": lambda: nx.gradient(model, (x, mask), t, batch_size=2).attribution,
        "smoothgrad": lambda: nx.smoothgrad(model, (x, mask), t, n_samples=3, batch_size=4).attribution,
        "integrated_gradients": lambda: nx.integrated_gradients(model, {"x": x, "mask": mask}, t, steps=4).attribution,
        "rde": lambda: nx.rde(model, nx.Inputs(x, mask=mask), t, steps=3, n_noise=2, fractions=3, n_eval=2),
        "lrp": lambda: nx.lrp(model, (x, mask), t, strict=False, batch_size=2),
    }
    model.fail_at = 2 if fails else 10**9  # after the probe or the first chunk
    with untouched(model):
        if fails:
            with pytest.raises(RuntimeError, match="boom"):
                calls[method]()
        else:
            calls[method]()
    assert model.training


# ----------------------------------------------------------------------------------------------------
# continuity: explain binds the other inputs
# ----------------------------------------------------------------------------------------------------


def test_continuity_follows_one_input_and_explain_binds_the_others():
    model = masked_model()
    x, mask, t = data()
    end = torch.zeros_like(x)
    res = nx.continuity(lambda z: nx.gradient(model, (z, mask), t).attribution, x, to=end, steps=3)
    for k, a in enumerate((0.0, 0.5, 1.0)):
        ref = grad_ref(lambda z: masked_mean_ref(model, z, mask), x + a * (end - x), t)
        torch.testing.assert_close(res.explanations[:, k], ref, rtol=1e-12, atol=1e-14)
    idiom = r"bind the others in `explain`, e.g. explain=lambda z: nx.gradient\(model, \(z, mask\)"
    with pytest.raises(TypeError, match=idiom):
        nx.continuity(lambda z: z, (x, mask), to=end)
