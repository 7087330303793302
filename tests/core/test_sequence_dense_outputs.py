"""Outputs that are not ``(N, classes)``: sequences ``(N, T, V)`` and dense maps ``(N, C, H, W)`` (issue 16).

Every attribution entry point reads ``target=`` by one convention (:mod:`nbexplain.core._base.targets`): a sequence
output takes ``(position, token)`` (a bare index is refused, naming the axes), a dense map takes a class (its map
summed) or ``nx.Target.region(class, mask)``, any output a function of it. Each case is checked against float64
autograd of the score written out by hand (``out[:, position, token]``, ``Σ mask ⊙ out[:, c]``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import nbexplain as nx

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T, V = 12, 50  # positions ≠ vocabulary size


class CausalLM(nn.Module):
    """A GPT-style language model: token and position embeddings, one causal transformer block, a vocabulary head."""

    def __init__(self, vocab: int = V, length: int = T, dim: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(0.1 * torch.randn(length, dim))
        self.block = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, activation="gelu", batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.emb(ids) + self.pos[: ids.shape[1]]
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1], dtype=h.dtype)
        return self.head(self.block(h, src_mask=mask, is_causal=True))


class GRULM(nn.Module):
    """A recurrent language model: embedding, GRU, vocabulary head — (N, T, V)."""

    def __init__(self, vocab: int = 30, dim: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(self.rnn(self.emb(ids))[0])


def seg_net() -> nn.Module:
    """A segmentation net whose class maps (N, 3, H, W) have the shape of its RGB input."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1)).double().eval()


def lm(n: int = 3) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = CausalLM().double().eval()
    return model, torch.randint(0, V, (n, T), generator=torch.Generator().manual_seed(1))


def embedding_grad(model: nn.Module, ids: torch.Tensor, score: Any, e_value: torch.Tensor | None = None):
    """∂score/∂e at the embedding output e (float64 autograd), e, and the score."""
    kept: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
        e = (out if e_value is None else e_value).detach().clone().requires_grad_(True)
        kept.append(e)
        return e

    h = model.emb.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            s = score(model(ids))
            (g,) = torch.autograd.grad(s.sum(), kept[0])
    finally:
        h.remove()
    return g, kept[0].detach(), s.detach()


def input_grad(model: nn.Module, x: torch.Tensor, score: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        s = score(model(xg))
        (g,) = torch.autograd.grad(s.sum(), xg)
    return g, s.detach()


def close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-9) -> None:
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * (float(want.abs().max()) or 1.0))


# ---- sequence outputs (N, T, V) ---------------------------------------------------------------------------


def test_gradient_explains_a_token_at_a_position() -> None:
    model, ids = lm()
    g, _, _ = embedding_grad(model, ids, lambda out: out[:, 5, 40])
    got = nx.gradient(model, ids, (5, 40)).attribution
    close(got, g.norm(dim=-1))
    assert bool((got[:, 6:] == 0).all()) and bool((got[:, :6] > 0).all())  # causal: later tokens cannot matter
    close(nx.gradient(model, ids, (-1, 40)).attribution, nx.gradient(model, ids, (T - 1, 40)).attribution)
    close(nx.gradient(model, ids, nx.Target.token(5, 40)).attribution, got)


def test_per_sample_positions_and_tokens() -> None:
    model, ids = lm()
    pos, tok = torch.tensor([1, 5, -1]), torch.tensor([3, 40, 7])
    g, e, _ = embedding_grad(model, ids, lambda out: out[torch.arange(3), pos, tok])
    close(nx.gradient_x_input(model, ids, (pos, tok)).attribution, (g * e).sum(-1))


def test_a_bare_index_on_a_sequence_output_is_refused_naming_the_axes() -> None:
    model, ids = lm()
    for t in (5, 40, torch.tensor([1, 2, 3])):  # 5 was read as position 5 summed over the vocabulary
        with pytest.raises(ValueError, match=r"\(N, T=12, V=50\).*target=\(position, token\), e\.g\. target=\(-1, 40\)"):
            nx.gradient(model, ids, t)
    with pytest.raises(ValueError, match=r"token 50 is outside the vocabulary axis \(axis 2, V=50\)"):
        nx.gradient(model, ids, (0, 50))
    with pytest.raises(ValueError, match=r"position 12 is outside the position axis \(axis 1, T=12\)"):
        nx.gradient(model, ids, (12, 0))
    with pytest.raises(ValueError, match="a tuple names"):
        nx.gradient(model, ids, (1, 2, 3))


def test_a_function_target_works_in_every_entry_point_and_is_checked() -> None:
    model, ids = lm()
    fn = lambda out: out[:, -1, 40] - out[:, -1, 7]  # noqa: E731 - a margin between two tokens
    g, e, _ = embedding_grad(model, ids, fn)
    close(nx.gradient(model, ids, fn).attribution, g.norm(dim=-1))
    close(nx.gradient_x_input(model, ids, nx.Target.score(fn)).attribution, (g * e).sum(-1))
    sg_fn = nx.smoothgrad(model, ids, fn, n_samples=3, seed=0).attribution
    sg_pair = nx.smoothgrad(model, ids, lambda out: out[:, -1, 40], n_samples=3, seed=0).attribution
    sg_ref = nx.smoothgrad(model, ids, (-1, 40), n_samples=3, seed=0).attribution
    close(sg_pair, sg_ref)
    assert not torch.allclose(sg_fn, sg_ref)
    with pytest.raises(ValueError, match=r"returned shape \(3, 50\).*one score per sample, shape \(3,\)"):
        nx.gradient(model, ids, lambda out: out[:, -1])
    with pytest.raises(ValueError, match="do not depend on the output"):
        nx.gradient(model, ids, lambda out: out[:, -1, 40].detach())
    with pytest.raises(TypeError, match="returned float"):
        nx.gradient(model, ids, lambda out: 1.0)


def test_integrated_gradients_completeness_for_a_token() -> None:
    model, ids = lm()
    res_ig = nx.integrated_gradients(model, ids, (-1, 40), steps=64)
    attr, err = res_ig.attribution, res_ig.error
    _, e, f_x = embedding_grad(model, ids, lambda out: out[:, -1, 40])
    _, _, f_0 = embedding_grad(model, ids, lambda out: out[:, -1, 40], e_value=torch.zeros_like(e))
    close(attr.double().sum(1), f_x - f_0, rel=1e-6)
    assert float(err.abs().max()) < 1e-6


def test_rde_scores_a_token_by_its_probability_over_the_vocabulary() -> None:
    model, ids = lm(2)
    with torch.no_grad():
        out = model(ids)
    kw = dict(steps=2, n_noise=4, fractions=3, n_eval=2, n_random=1, progress=False)
    res = nx.rde(model, ids, (-1, 40), **kw)
    close(res.phi, torch.softmax(out[:, -1], dim=-1)[:, 40])  # softmax over the 50 tokens, not the positions
    close(nx.rde(model, ids, (3, 7), score="logit", **kw).phi, out[:, 3, 7])
    with pytest.raises(ValueError, match=r"target=None.*\(N, T=12, V=50\)"):
        nx.rde(model, ids, **kw)
    with pytest.raises(ValueError, match="score='logit'"):
        nx.rde(model, ids, lambda o: o[:, -1, 40], **kw)


def test_lrp_on_a_recurrent_language_model_is_gradient_times_input_for_the_token() -> None:
    torch.manual_seed(0)
    model = GRULM().double().eval()
    ids = torch.randint(0, 30, (3, 9), generator=torch.Generator().manual_seed(2))
    comp = {nn.GRU: nx.rules.Gradient(), nn.Linear: nx.rules.Epsilon(1e-12)}
    res = nx.lrp(model, ids, (4, 11), composite=comp)
    g, e, s = embedding_grad(model, ids, lambda out: out[:, 4, 11])
    close(res.attribution, (g * e).sum(-1), rel=1e-7)
    close(res.output_relevance, s)
    assert bool((res.attribution[:, 5:] == 0).all())
    assert res.target.kind == "token" and res.target.classes.tolist() == [11, 11, 11]
    with pytest.raises(ValueError, match=r"\(N, T=9, V=30\)"):
        nx.lrp(model, ids, 11, composite=comp)


# ---- dense outputs (N, C, H, W) ---------------------------------------------------------------------------


def test_a_class_of_a_dense_map_is_its_map_summed_and_a_region_its_masked_sum() -> None:
    net, x = seg_net(), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    g, _ = input_grad(net, x, lambda out: out[:, 2].sum((1, 2)))
    close(nx.gradient(net, x, 2).attribution, g)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 1:4] = True
    g, _ = input_grad(net, x, lambda out: (out[:, 2] * mask).sum((1, 2)))
    close(nx.gradient(net, x, nx.Target.region(2, mask)).attribution, g)
    weights = torch.rand(2, 8, 8, dtype=torch.float64)  # one soft region per sample, a class per sample
    cls = torch.tensor([0, 1])
    g, _ = input_grad(net, x, lambda out: (out[torch.arange(2), cls] * weights).sum((1, 2)))
    close(nx.gradient(net, x, nx.Target.region(cls, weights)).attribution, g)
    with pytest.raises(ValueError, match=r"mask has shape \(7, 7\).*\(8, 8\)"):
        nx.gradient(net, x, nx.Target.region(0, torch.ones(7, 7)))
    with pytest.raises(ValueError, match="outside"):
        nx.gradient(net, x, nx.Target.region(3, mask))
    with pytest.raises(ValueError, match="sequence output"):
        nx.gradient(net, x, (0, 1))
    with pytest.raises(ValueError, match="all zero"):
        nx.Target.region(0, torch.zeros(8, 8))


def test_lrp_and_rde_on_a_segmentation_region() -> None:
    net, x = seg_net(), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    mask = torch.zeros(8, 8)
    mask[4:, 4:] = 1.0
    res = nx.lrp(net, x, nx.Target.region(1, mask), composite={nn.Conv2d: nx.rules.Epsilon(1e-12)})
    g, s = input_grad(net, x, lambda out: (out[:, 1] * mask).sum((1, 2)))
    close(res.attribution, g * x, rel=1e-7)  # ReLU net, ε → 0: LRP is gradient × input
    close(res.output_relevance, s)
    with torch.no_grad():
        out = net(x)
    kw = dict(steps=2, n_noise=4, fractions=3, n_eval=2, n_random=1, progress=False)
    got = nx.rde(net, x, nx.Target.region(1, mask), **kw).phi
    close(got, (torch.softmax(out, dim=1)[:, 1] * mask).sum((1, 2)) / mask.sum())  # mean probability
    with pytest.raises(ValueError, match=r"target=None.*\(N, C=3, H=8, W=8\)"):
        nx.rde(net, x, **kw)


def test_targets_that_do_not_fit_class_scores() -> None:
    net = nn.Linear(4, 5).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"sequence output.*list or a tensor"):
        nx.gradient(net, x, (1, 2))  # a tuple is (position, token), not one class per sample
    close(nx.gradient(net, x, [1, 2]).attribution, nx.gradient(net, x, torch.tensor([1, 2])).attribution)
    with pytest.raises(ValueError, match="no spatial axes"):
        nx.gradient(net, x, nx.Target.region(1))
    with pytest.raises(ValueError, match=r"outside \[0, 4\]"):
        nx.gradient(net, x, 5)
