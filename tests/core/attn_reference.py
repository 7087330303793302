"""A float64 AttnLRP reference for a small pre-norm transformer, written from the paper's equations.

Achtibat et al. 2024 (AttnLRP): ε rule for linear layers, the uniform rule for the bilinear products ``QKᵀ`` and
``AV`` (half of the ε-share to each factor), the softmax's Taylor rule ``R_x = x ⊙ (R_s − s Σ R_s)``, the identity
rule for GELU and for the normaliser of LayerNorm (σ a constant), and residual sums split in proportion. CP-LRP
(Ali et al. 2022): the attention weights are constants (all of ``AV``'s relevance goes to ``V``).

Every step is an explicit sum over indices (``einsum``) — no autograd, no nbexplain code — so that the library's
gradient-based implementation is checked against the equations themselves. :class:`Weights` holds one model's
parameters; the test builds the same model four ways (explicit ops, ``F.scaled_dot_product_attention``,
``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``) from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

EPS = 1e-6
SUM_EPS = 1e-9  # the residual sums' proportional split (composites' Norm rule: min(1e-9, ε))


def stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


@dataclass
class Block:
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor | None
    wq: torch.Tensor
    wk: torch.Tensor
    wv: torch.Tensor
    bq: torch.Tensor | None
    bk: torch.Tensor | None
    bv: torch.Tensor | None
    wo: torch.Tensor
    bo: torch.Tensor | None
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor | None
    w1: torch.Tensor
    b1: torch.Tensor | None
    w2: torch.Tensor
    b2: torch.Tensor | None


@dataclass
class Weights:
    dim: int
    heads: int
    blocks: list[Block]
    lnf_w: torch.Tensor
    lnf_b: torch.Tensor | None
    head_w: torch.Tensor
    head_b: torch.Tensor | None
    bias: bool = True
    trace: dict = field(default_factory=dict)


def random_weights(dim: int = 8, heads: int = 2, depth: int = 2, hidden: int = 16, classes: int = 3,
                   bias: bool = True, seed: int = 0) -> Weights:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, s: float = 0.5) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * s)

    def b(n: int) -> torch.Tensor | None:
        return r(n, s=0.1) if bias else None

    blocks = [
        Block(1 + r(dim, s=0.1), b(dim), r(dim, dim), r(dim, dim), r(dim, dim), b(dim), b(dim), b(dim),
              r(dim, dim), b(dim), 1 + r(dim, s=0.1), b(dim), r(hidden, dim), b(hidden), r(dim, hidden), b(dim))
        for _ in range(depth)
    ]
    return Weights(dim, heads, blocks, 1 + r(dim, s=0.1), b(dim), r(classes, dim), b(classes), bias)


# ---- forward -----------------------------------------------------------------------------------------------


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)


def _lin(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x, w, b)


# ---- relevance rules, from the equations ----------------------------------------------------------------------


def r_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, rel: torch.Tensor) -> torch.Tensor:
    """ε: R_i = Σ_j x_i w_ji / stab(z_j) R_j (w as in F.linear: out × in)."""
    z = _lin(x, w, b)
    return torch.einsum("...i,ji,...j->...i", x, w, rel / stab(z, EPS))


def r_layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, rel: torch.Tensor) -> torch.Tensor:
    """Identity rule on the normaliser σ (a constant), ε on the linear rest: y_k = w_k (x_k − mean x)/σ + b_k, so
    R_i = Σ_k x_i (δ_ik − 1/D) w_k/σ · R_k / stab(y_k)."""
    d = x.shape[-1]
    y = _ln(x, w, b)
    sigma = (x.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    centring = torch.eye(d, dtype=x.dtype) - 1.0 / d  # (i, k)
    return torch.einsum("...i,ik,k,...k->...i", x, centring, w, rel / stab(y, EPS) / sigma)


def r_sum(a: torch.Tensor, c: torch.Tensor, rel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    den = stab(a + c, SUM_EPS)
    return a * rel / den, c * rel / den


def r_softmax(x: torch.Tensor, s: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    """R_x_i = x_i (R_i − s_i Σ_j R_j)."""
    return x * (rel - s * rel.sum(-1, keepdim=True))


def r_bilinear(a: torch.Tensor, c: torch.Tensor, rel: torch.Tensor, eq_a: str, eq_c: str, out: torch.Tensor,
               share: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The uniform rule for ``out = a ⊗ c``: each factor gets ``share`` of Σ a c R / stab(out)."""
    q = rel / stab(out, EPS)
    return share * torch.einsum(eq_a, a, c, q), share * torch.einsum(eq_c, a, c, q)


# ---- the model and its relevance ---------------------------------------------------------------------------


def forward(wts: Weights, x: torch.Tensor) -> torch.Tensor:
    """Logits of the class token (token 0) for inputs ``x`` (N, T, D)."""
    for blk in wts.blocks:
        x = _block(wts, blk, x)[0]
    return _lin(_ln(x, wts.lnf_w, wts.lnf_b)[:, 0], wts.head_w, wts.head_b)


def _block(wts: Weights, blk: Block, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    n, t, d = x.shape
    h = wts.heads
    hd = d // h
    a_in = _ln(x, blk.ln1_w, blk.ln1_b)
    q, k, v = (_lin(a_in, w, b) for w, b in ((blk.wq, blk.bq), (blk.wk, blk.bk), (blk.wv, blk.bv)))
    qh, kh, vh = (u.reshape(n, t, h, hd).transpose(1, 2) for u in (q, k, v))
    p = torch.einsum("nhid,nhjd->nhij", qh, kh)
    scores = p / math.sqrt(hd)
    s = torch.softmax(scores, -1)
    o = torch.einsum("nhij,nhjd->nhid", s, vh)
    merged = o.transpose(1, 2).reshape(n, t, d)
    att = _lin(merged, blk.wo, blk.bo)
    x1 = x + att
    m_in = _ln(x1, blk.ln2_w, blk.ln2_b)
    u = _lin(m_in, blk.w1, blk.b1)
    g = F.gelu(u)
    m = _lin(g, blk.w2, blk.b2)
    x2 = x1 + m
    return x2, dict(x=x, a_in=a_in, q=q, k=k, v=v, qh=qh, kh=kh, vh=vh, p=p, scores=scores, s=s, o=o,
                    merged=merged, att=att, x1=x1, m_in=m_in, u=u, g=g, m=m)


def relevance(wts: Weights, x: torch.Tensor, target: torch.Tensor, cp: bool = False) -> dict:
    """Input relevance, the relevance at every block's input and output, and the softmax's absorbed share per
    block, for the logit of ``target`` (LRP's ``init="logit"``)."""
    acts = []
    h = x
    for blk in wts.blocks:
        h, a = _block(wts, blk, h)
        acts.append(a)
    final = _ln(h, wts.lnf_w, wts.lnf_b)
    logits = _lin(final[:, 0], wts.head_w, wts.head_b)
    r_logits = torch.zeros_like(logits)
    r_logits[torch.arange(len(target)), target] = logits[torch.arange(len(target)), target]
    r_cls = r_linear(final[:, 0], wts.head_w, wts.head_b, r_logits)
    r_final = torch.zeros_like(final)
    r_final[:, 0] = r_cls
    r = r_layer_norm(h, wts.lnf_w, wts.lnf_b, r_final)
    out = {"block_out": [], "block_in": [], "softmax_absorbed": [], "logit": r_logits.sum(1)}
    n, t, d = x.shape
    hd = d // wts.heads
    for blk, a in zip(reversed(wts.blocks), reversed(acts), strict=True):
        out["block_out"].insert(0, r)
        r_x1, r_m = r_sum(a["x1"], a["m"], r)
        r_g = r_linear(a["g"], blk.w2, blk.b2, r_m)
        r_u = r_g  # identity rule through GELU
        r_m_in = r_linear(a["m_in"], blk.w1, blk.b1, r_u)
        r_x1 = r_x1 + r_layer_norm(a["x1"], blk.ln2_w, blk.ln2_b, r_m_in)
        r_x, r_att = r_sum(a["x"], a["att"], r_x1)
        r_merged = r_linear(a["merged"], blk.wo, blk.bo, r_att)
        r_o = r_merged.reshape(n, t, wts.heads, hd).transpose(1, 2)
        if cp:
            r_s = torch.zeros_like(a["s"])
            r_vh = torch.einsum("nhij,nhjd,nhid->nhjd", a["s"], a["vh"], r_o / stab(a["o"], EPS))
        else:
            r_s, r_vh = r_bilinear(a["s"], a["vh"], r_o, "nhij,nhjd,nhid->nhij", "nhij,nhjd,nhid->nhjd", a["o"])
        r_scores = r_softmax(a["scores"], a["s"], r_s)
        out["softmax_absorbed"].insert(0, (r_s.sum((1, 2, 3)) - r_scores.sum((1, 2, 3))))
        r_p = r_scores  # the scaling by 1/√d: a proportional split of one term passes relevance on
        kt = a["kh"].transpose(-2, -1)
        r_qh, r_kt = r_bilinear(a["qh"], kt, r_p, "nhid,nhdj,nhij->nhid", "nhid,nhdj,nhij->nhdj", a["p"])
        r_kh = r_kt.transpose(-2, -1)
        r_q, r_k, r_v = (u.transpose(1, 2).reshape(n, t, d) for u in (r_qh, r_kh, r_vh))
        r_a_in = sum(
            r_linear(a["a_in"], w, b, rr)
            for w, b, rr in ((blk.wq, blk.bq, r_q), (blk.wk, blk.bk, r_k), (blk.wv, blk.bv, r_v))
        )
        r = r_x + r_layer_norm(a["x"], blk.ln1_w, blk.ln1_b, r_a_in)
        out["block_in"].insert(0, r)
    out["input"] = r
    return out
