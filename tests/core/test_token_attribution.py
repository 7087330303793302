"""Attribution for token ids through the embedding (``embedding=``), against hand-written references.

The references run the embedding by hand, then the rest of the network on a leaf tensor and take
``torch.autograd.grad`` with respect to it — independent of nbexplain's forward-hook substitution.
Conventions under test (documented in :mod:`nbexplain.core.attribution.gradients`): gradient and SmoothGrad give the
per-token L2 norm of the embedding gradient; gradient × input, SmoothGrad × input and integrated gradients
give signed sums over the embedding features; integrated gradients run from the zero embedding by default.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.architectures import rnn_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CELLS = ["lstm", "gru"]


def rest(model: nn.Module, e: torch.Tensor) -> torch.Tensor:
    """RNNClassifier.forward after the embedding."""
    seq, _ = model.rnn(e)
    return model.head(seq[:, -1])


def emb_grad(model: nn.Module, e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    e = e.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(rest(model, e).gather(1, t[:, None]).sum(), e)
    return g


def setup(cell: str, n: int = 3, length: int = 7):
    model = rnn_classifier(cell).double()
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 50, (n, length), generator=gen)
    t = torch.tensor([0, 3, 1, 2][:n])
    return model, ids, t


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_and_gradient_x_input(cell):
    model, ids, t = setup(cell)
    e = model.emb(ids).detach()
    g = emb_grad(model, e, t)
    got = nx.gradient(model, ids, t).attribution
    assert got.shape == ids.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, g.norm(dim=-1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(nx.gradient(model, ids, t, absolute=True).attribution, got)
    torch.testing.assert_close(nx.gradient_x_input(model, ids, t).attribution, (g * e).sum(-1), rtol=1e-10, atol=1e-12)
    # named explicitly, and in chunks
    torch.testing.assert_close(nx.gradient(model, ids, t, embedding="emb", batch_size=2).attribution, got, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_smoothgrad_in_embedding_space(cell):
    """Reference: the documented noise stream — per sample, σ = noise_level · (max − min of its embedding),
    unit noise drawn as one float32 (n_samples, T, D) block per sample from the seeded generator."""
    model, ids, t = setup(cell)
    e = model.emb(ids).detach()
    n_samples, level = 5, 0.2
    gen = torch.Generator().manual_seed(9)
    mean_g = torch.empty_like(e)
    for i in range(ids.shape[0]):
        sigma = level * float(e[i].max() - e[i].min())
        eps = torch.randn((n_samples,) + tuple(e.shape[1:]), generator=gen, dtype=torch.float32)
        pts = e[i] + (sigma * eps).double()
        mean_g[i] = emb_grad(model, pts, t[i].repeat(n_samples)).mean(0)
    for bs in (3, 100):
        got = nx.smoothgrad(model, ids, t, noise_level=level, n_samples=n_samples, seed=9, batch_size=bs).attribution
        torch.testing.assert_close(got, mean_g.norm(dim=-1), rtol=1e-10, atol=1e-12)
    sgx = nx.smoothgrad(model, ids, t, noise_level=level, n_samples=n_samples, seed=9, times_input=True).attribution
    torch.testing.assert_close(sgx, (mean_g * e).sum(-1), rtol=1e-10, atol=1e-12)
    zero = nx.smoothgrad(model, ids, t, noise_level=0.0, n_samples=2).attribution
    torch.testing.assert_close(zero, nx.gradient(model, ids, t).attribution, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_integrated_gradients_against_reference_and_completeness(cell):
    model, ids, t = setup(cell)
    e = model.emb(ids).detach()
    steps = 24
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    acc = torch.zeros_like(e)
    for a, w in zip(0.5 * (nodes + 1), 0.5 * weights, strict=True):
        acc += float(w) * emb_grad(model, float(a) * e, t)
    ref = (acc * e).sum(-1)
    res_ig = nx.integrated_gradients(model, ids, t, steps=steps)
    attr, err = res_ig.attribution, res_ig.error
    assert attr.shape == ids.shape and attr.dtype == torch.float64
    torch.testing.assert_close(attr, ref, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        f = lambda z: rest(model, z).gather(1, t[:, None]).squeeze(1)  # noqa: E731
        delta = f(e) - f(torch.zeros_like(e))
    torch.testing.assert_close(attr.sum(1), delta, rtol=0, atol=1e-8)  # completeness Σ_t IG_t = f(x) − f(0)
    torch.testing.assert_close(err, attr.sum(1) - delta, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_integrated_gradients_from_padding_ids_and_embedding_baselines(cell):
    model, ids, t = setup(cell)
    pad = torch.zeros_like(ids)
    e, eb = model.emb(ids).detach(), model.emb(pad).detach()
    with torch.no_grad():
        f = lambda z: rest(model, z).gather(1, t[:, None]).squeeze(1)  # noqa: E731
        delta = f(e) - f(eb)
    res_ig = nx.integrated_gradients(model, ids, t, baseline=pad, steps=32)
    a, err = res_ig.attribution, res_ig.error
    torch.testing.assert_close(a.sum(1), delta, rtol=0, atol=1e-8)
    assert float(err.abs().max()) < 1e-8
    b = nx.integrated_gradients(model, ids, t, baseline=eb, steps=32).attribution  # the same baseline given as embeddings
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    c = nx.integrated_gradients(model, ids, t, baseline=0.0, steps=32).attribution
    torch.testing.assert_close(c, nx.integrated_gradients(model, ids, t, steps=32).attribution, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="token ids shaped like `inputs`"):
        nx.integrated_gradients(model, ids, t, baseline=torch.zeros(2, 5, dtype=torch.long))


def test_float32_and_half_models_give_float32_token_maps():
    model = rnn_classifier("gru")
    ids = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1, 2])
    g = emb_grad(model, model.emb(ids), t)
    got = nx.gradient(model, ids, t).attribution
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, g.norm(dim=-1), rtol=1e-5, atol=1e-6)
    half = rnn_classifier("gru").to(torch.bfloat16)
    hg = nx.gradient_x_input(half, ids, t).attribution
    assert hg.dtype == torch.float32 and bool(torch.isfinite(hg).all())
    e = half.emb(ids).detach()
    ref = (emb_grad(half, e, t).float() * e.float()).sum(-1)
    torch.testing.assert_close(hg, ref, rtol=0.05, atol=0.02)


# ---------------------------------------------------------------- RDE on tokens


class PickToken(nn.Module):
    """Reads only token ``k``'s embedding: f(ids) = W e_k + b."""

    def __init__(self, k: int = 2, vocab: int = 20, dim: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.k = k
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, ids):
        return self.head(self.emb(ids)[:, self.k])


def test_rde_masks_tokens_and_matches_the_closed_form():
    model = PickToken().double()
    ids = torch.randint(0, 20, (2, 5), generator=torch.Generator().manual_seed(1))
    mu, sd = 0.1, 0.7
    res = nx.rde(model, ids, 1, mean=mu, std=sd, score="logit", l1=0.02, steps=120, lr=0.05, n_noise=16,
                 fractions=[0.0, 0.2, 1.0], n_eval=6000, n_random=1, seed=0, progress=False)
    assert res.attribution.shape == ids.shape and res.attribution.dtype == torch.float64
    assert float(res.attribution[:, 2].min()) > 0.5  # the token the model reads is kept
    others = res.attribution[:, [0, 1, 3, 4]]
    assert float(others.max()) < 0.05  # the others cost rate and change nothing
    # Closed form at fraction 0 (everything noise): ½[(w·(e_k − μ))² + Σ w² σ²]; at 0.2 (token k kept): 0.
    w = model.head.weight[1].detach()
    ek = model.emb(ids)[:, 2].detach()
    ref0 = 0.5 * (((ek - mu) @ w) ** 2 + (w**2).sum() * sd**2)
    torch.testing.assert_close(res.curve[:, 0], ref0, rtol=0.08, atol=0)
    torch.testing.assert_close(res.curve[:, 1], torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-20)
    assert bool((res.curve[:, 2] == 0).all())  # keeping everything: exactly 0 by construction
    with torch.no_grad():
        torch.testing.assert_close(res.phi, model(ids)[:, 1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_rde_on_rnn_classifier_runs_in_embedding_space(cell):
    model, ids, _ = setup(cell)
    ref_ids = torch.randint(0, 50, (6, 4), generator=torch.Generator().manual_seed(2))
    res = nx.rde(model, ids, None, reference=ref_ids, steps=4, n_noise=4, fractions=4, n_eval=4, n_random=2,
                 seed=0, progress=False)
    assert res.attribution.shape == ids.shape and res.curve.shape == (3, 4)
    assert bool(torch.isfinite(res.curve).all())
    with torch.no_grad():
        pred = model(ids).argmax(1)
        torch.testing.assert_close(res.phi, torch.softmax(model(ids), 1).gather(1, pred[:, None]).squeeze(1))
    per_feature = nx.rde(model, ids, 0, mean=torch.zeros(16), std=torch.ones(16), steps=2, n_noise=2, fractions=3,
                         n_eval=2, n_random=1, seed=0, progress=False)
    assert per_feature.attribution.shape == ids.shape
    with pytest.raises(ValueError, match="per_channel"):
        nx.rde(model, ids, 0, per_channel=True, steps=2, progress=False)
    with pytest.raises(TypeError, match="token ids"):
        nx.rde(model, ids, 0, reference=torch.rand(4, 7, 16), steps=2, progress=False)


# ---------------------------------------------------------------- finding the embedding


class TwoEmbeddings(nn.Module):
    """Token and position embeddings (two nn.Embedding): which one to attribute must be named."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.tok = nn.Embedding(30, 6)
        self.pos = nn.Embedding(10, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        return self.head(torch.tanh(h).mean(1))


class InPlacePositions(TwoEmbeddings):
    """Adds the positions into the token embedding in place, as many transformer implementations do."""

    def forward(self, ids):
        h = self.tok(ids)
        h += self.pos(torch.arange(ids.shape[1]))
        return self.head(torch.tanh(h).mean(1))


def test_in_place_writes_into_the_embedding_output():
    model = InPlacePositions().double()
    ids = torch.randint(0, 30, (2, 5))
    e = model.tok(ids).detach().requires_grad_(True)
    out = model.head(torch.tanh(e + model.pos(torch.arange(5))).mean(1))[:, 1].sum()
    (g,) = torch.autograd.grad(out, e)
    torch.testing.assert_close(nx.gradient_x_input(model, ids, 1, embedding="tok").attribution, (g * e).sum(-1).detach(),
                               rtol=1e-10, atol=1e-12)
    a = nx.integrated_gradients(model, ids, 1, embedding="tok", steps=16).attribution
    with torch.no_grad():
        f = lambda z: model.head(torch.tanh(z + model.pos(torch.arange(5))).mean(1))[:, 1]  # noqa: E731
        torch.testing.assert_close(a.sum(1), f(e) - f(torch.zeros_like(e)), rtol=0, atol=1e-8)
    sg = nx.smoothgrad(model, ids, 1, embedding="tok", noise_level=0.0, n_samples=2, times_input=True).attribution
    torch.testing.assert_close(sg, (g * e).sum(-1).detach(), rtol=1e-10, atol=1e-12)
    res = nx.rde(model, ids, 1, embedding="tok", steps=2, n_noise=2, fractions=3, n_eval=2, n_random=1, progress=False)
    assert res.attribution.shape == ids.shape


class PositionOnly(nn.Module):
    """Its only nn.Embedding reads positions, not the ids."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, ids):
        return self.head(self.pos(torch.arange(ids.shape[1])).mean(0) * ids.float().mean(1, keepdim=True))


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, ids):
        return self.head(self.emb(ids).mean(1) + self.emb(ids.flip(1)).mean(1))


def test_named_embedding_among_several():
    model = TwoEmbeddings().double()
    ids = torch.randint(0, 30, (2, 5))
    with pytest.raises(ValueError, match=r"2 nn.Embedding layers \('tok', 'pos'\).*embedding="):
        nx.gradient(model, ids, 0)
    got = nx.gradient_x_input(model, ids, 1, embedding="tok").attribution
    e = model.tok(ids).detach().requires_grad_(True)
    out = model.head(torch.tanh(e + model.pos(torch.arange(5))).mean(1))[:, 1].sum()
    (g,) = torch.autograd.grad(out, e)
    torch.testing.assert_close(got, (g * e).sum(-1).detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "model, kwargs, exc, match",
    [
        (nn.Sequential(nn.Linear(5, 2)), {}, TypeError, r"no nn.Embedding.*x.float\(\).*embedding="),
        (PositionOnly(), {}, ValueError, "only nn.Embedding 'pos'.*does not consume"),
        (Twice(), {}, ValueError, "ran 2 times"),
        (TwoEmbeddings(), dict(embedding="head"), ValueError, r"`embedding`='head' returned shape \(2, 2\)"),
        (TwoEmbeddings(), dict(embedding="tokk"), ValueError, "tok"),
        (TwoEmbeddings(), dict(embedding=3), TypeError, "`embedding` must be a layer name"),
    ],
)
def test_clear_errors_when_the_embedding_cannot_be_found(model, kwargs, exc, match):
    ids = torch.randint(0, 10, (3, 5))
    for f in (nx.gradient, nx.gradient_x_input, nx.smoothgrad, nx.integrated_gradients):
        with pytest.raises(exc, match=match):
            f(model, ids, 0, **kwargs)
    with pytest.raises(exc, match=match):
        nx.rde(model, ids, 0, steps=2, progress=False, **kwargs)


def test_bool_inputs_are_refused():
    with pytest.raises(TypeError, match="bool"):
        nx.gradient(rnn_classifier("gru"), torch.zeros(2, 4, dtype=torch.bool), 0)


# ---------------------------------------------------------------- hygiene


class TokenRecorder(nn.Module):
    """Embedding → flatten → batch norm → dropout → head, in train mode, with a frozen layer, an existing
    .grad, a user forward hook on the embedding; optionally raises on the n-th forward call."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(20, 3)
        self.fc = nn.Linear(15, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(8, 3)
        self.out.weight.requires_grad_(False)
        self.emb.weight.grad = torch.ones_like(self.emb.weight)
        self.emb.register_forward_hook(lambda m, i, o: None)
        self.fail_at, self.calls = fail_at, 0

    def forward(self, ids):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("boom in the middle of the work")
        return self.out(self.drop(torch.relu(self.bn(self.fc(self.emb(ids).flatten(1))))))


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()},
        "hooks": {n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for n, m in model.named_modules()},
    }


TOKEN_METHODS = {
    "gradient": lambda m, x, **k: nx.gradient(m, x, 1, **k).attribution,
    "gradient_x_input": lambda m, x, **k: nx.gradient_x_input(m, x, 1, **k).attribution,
    "smoothgrad": lambda m, x, **k: nx.smoothgrad(m, x, 1, n_samples=3, times_input=True, **k).attribution,
    "integrated_gradients": lambda m, x, **k: nx.integrated_gradients(m, x, 1, steps=4, baseline=torch.zeros_like(x), **k).attribution,
    "rde": lambda m, x, **k: nx.rde(m, x, 1, steps=2, n_noise=2, fractions=3, n_eval=2, n_random=1, progress=False, **k).attribution,
}


@pytest.mark.parametrize("name", list(TOKEN_METHODS))
@pytest.mark.parametrize("fail_at", [None, 1, 2, 3])
@pytest.mark.parametrize("eval_mode", [True, False])
def test_hygiene_on_token_paths(name, fail_at, eval_mode):
    model = TokenRecorder(fail_at).train()
    ids = torch.randint(0, 20, (8, 5), generator=torch.Generator().manual_seed(0))
    before = snapshot(model)

    def run():
        return TOKEN_METHODS[name](model, ids, eval_mode=eval_mode, batch_size=4)

    if fail_at is None:
        out = run()
        assert out.shape == ids.shape
    else:
        with pytest.raises(RuntimeError, match="boom"):
            run()
    after = snapshot(model)
    assert before["training"] == after["training"] and model.training
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k
    for k in before["grad"]:
        a, b = before["grad"][k], after["grad"][k]
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b)), k


def test_train_mode_token_gradient_restores_running_statistics():
    model = TokenRecorder().train()
    model.drop.p = 0.0
    ids = torch.randint(0, 20, (4, 5), generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    a = nx.gradient(model, ids, 0).attribution
    b = nx.gradient(model, ids, 0, eval_mode=False).attribution  # batch statistics: another gradient
    assert not torch.allclose(a, b)
    nx.integrated_gradients(model, ids, 0, steps=3, eval_mode=False)
    after = snapshot(model)
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k
