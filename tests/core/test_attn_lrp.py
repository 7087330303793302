"""AttnLRP and CP-LRP (``composite="attn_lrp"`` / ``"cp_lrp"``) against a float64 reference written from the
paper's equations (tests/core/attn_reference.py), on the same transformer built four ways: explicit operations,
``F.scaled_dot_product_attention``, ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` (whose fused
path hides the operations)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nbexplain as nx
from tests.core import attn_reference as ref
from tests.models.state import untouched

TOL = 1e-9


class ExplicitAttention(nn.Module):
    def __init__(self, w: ref.Weights, blk: ref.Block, sdpa: bool) -> None:
        super().__init__()
        d = w.dim
        self.heads, self.sdpa = w.heads, sdpa
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=w.bias) for _ in range(4))
        for lin, wt, b in ((self.q, blk.wq, blk.bq), (self.k, blk.wk, blk.bk), (self.v, blk.wv, blk.bv),
                           (self.o, blk.wo, blk.bo)):
            _set(lin, wt, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n, t, d = x.shape
        hd = d // self.heads
        q, k, v = (f(x).view(n, t, self.heads, hd).transpose(1, 2) for f in (self.q, self.k, self.v))
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            o = att.softmax(dim=-1) @ v
        return self.o(o.transpose(1, 2).reshape(n, t, d))


class MHAAttention(nn.Module):
    def __init__(self, w: ref.Weights, blk: ref.Block) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(w.dim, w.heads, bias=w.bias, batch_first=True)
        _set_mha(self.mha, blk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.mha(x, x, x, need_weights=False)[0]


class Block(nn.Module):
    def __init__(self, w: ref.Weights, blk: ref.Block, kind: str) -> None:
        super().__init__()
        d = w.dim
        self.norm1, self.norm2 = nn.LayerNorm(d, bias=w.bias), nn.LayerNorm(d, bias=w.bias)
        _set(self.norm1, blk.ln1_w, blk.ln1_b)
        _set(self.norm2, blk.ln2_w, blk.ln2_b)
        self.attn = MHAAttention(w, blk) if kind == "mha" else ExplicitAttention(w, blk, sdpa=kind == "sdpa")
        self.fc1, self.fc2 = nn.Linear(d, blk.w1.shape[0], bias=w.bias), nn.Linear(blk.w1.shape[0], d, bias=w.bias)
        _set(self.fc1, blk.w1, blk.b1)
        _set(self.fc2, blk.w2, blk.b2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Net(nn.Module):
    """The reference's transformer on continuous tokens ``(N, T, D)``, its blocks built as ``kind``."""

    def __init__(self, w: ref.Weights, kind: str) -> None:
        super().__init__()
        d = w.dim
        if kind == "encoder_layer":
            self.blocks = nn.ModuleList(_encoder_layer(w, blk) for blk in w.blocks)
        else:
            self.blocks = nn.ModuleList(Block(w, blk, kind) for blk in w.blocks)
        self.norm = nn.LayerNorm(d, bias=w.bias)
        _set(self.norm, w.lnf_w, w.lnf_b)
        self.head = nn.Linear(d, w.head_w.shape[0], bias=w.bias)
        _set(self.head, w.head_w, w.head_b)
        self.double().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


def _set(mod: nn.Module, w: torch.Tensor, b: torch.Tensor | None) -> None:
    mod.double()  # before copying: a float32 parameter would round the reference's weights
    with torch.no_grad():
        mod.weight.copy_(w)
        if b is not None:
            mod.bias.copy_(b)


def _set_mha(mha: nn.MultiheadAttention, blk: ref.Block) -> None:
    mha.double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([blk.wq, blk.wk, blk.wv]))
        if blk.bq is not None:
            mha.in_proj_bias.copy_(torch.cat([blk.bq, blk.bk, blk.bv]))
        _set(mha.out_proj, blk.wo, blk.bo)


def _encoder_layer(w: ref.Weights, blk: ref.Block) -> nn.TransformerEncoderLayer:
    layer = nn.TransformerEncoderLayer(w.dim, w.heads, blk.w1.shape[0], dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True, bias=w.bias)
    _set_mha(layer.self_attn, blk)
    _set(layer.linear1, blk.w1, blk.b1)
    _set(layer.linear2, blk.w2, blk.b2)
    _set(layer.norm1, blk.ln1_w, blk.ln1_b)
    _set(layer.norm2, blk.ln2_w, blk.ln2_b)
    return layer


KINDS = ["explicit", "sdpa", "mha", "encoder_layer"]


def _inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("variant", ["attn_lrp", "cp_lrp"])
@pytest.mark.parametrize("kind", KINDS)
def test_relevance_matches_the_float64_reference_from_the_equations(kind: str, variant: str) -> None:
    w = ref.random_weights()
    net, x = Net(w, kind), _inputs()
    torch.testing.assert_close(net(x), ref.forward(w, x), atol=1e-12, rtol=1e-12)  # the same model
    target = torch.tensor([0, 2, 1])
    want = ref.relevance(w, x, target, cp=variant == "cp_lrp")
    with untouched(net):
        got = nx.lrp(net, x, target, composite=variant, layers=[f"blocks.{i}" for i in range(2)])
    scale = want["input"].abs().max()
    assert scale > 1e-3  # a real map, not zeros
    torch.testing.assert_close(got.attribution, want["input"], atol=TOL * scale, rtol=1e-7)
    for i in range(2):  # the relevance at every block's output, layer by layer
        torch.testing.assert_close(got.layers[f"blocks.{i}"], want["block_out"][i], atol=TOL * scale, rtol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_fused_and_explicit_attention_give_the_same_relevance(kind: str) -> None:
    w = ref.random_weights(seed=3)
    x, target = _inputs(4), torch.tensor([1, 1, 0])
    explicit = nx.lrp(Net(w, "explicit"), x, target, composite="attn_lrp").attribution
    got = nx.lrp(Net(w, kind), x, target, composite="attn_lrp").attribution
    torch.testing.assert_close(got, explicit, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("kind", ["explicit", "encoder_layer"])
def test_conservation_block_by_block(kind: str) -> None:
    """Without biases, CP-LRP conserves relevance through every block (up to ε); AttnLRP loses exactly the
    softmax's Taylor remainder, which the reference computes from the equations."""
    w = ref.random_weights(bias=False, seed=5)
    net, x, target = Net(w, kind), _inputs(6), torch.tensor([2, 0, 1])
    names = [f"blocks.{i}" for i in range(2)]
    cp = nx.lrp(net, x, target, composite="cp_lrp", layers=names, epsilon=1e-12)
    logit = net(x)[torch.arange(3), target]
    sums = [cp.attribution.sum((1, 2))] + [cp.layers[n].sum((1, 2)) for n in names]
    for s in sums:  # input, after block 0, after block 1: all equal the logit
        torch.testing.assert_close(s, logit, rtol=1e-8, atol=1e-10)
    ref.EPS, eps = 1e-12, ref.EPS
    try:
        want = ref.relevance(w, x, target)
    finally:
        ref.EPS = eps
    attn = nx.lrp(net, x, target, composite="attn_lrp", layers=names, epsilon=1e-12)
    ins = [attn.attribution.sum((1, 2)), attn.layers[names[0]].sum((1, 2))]
    outs = [attn.layers[n].sum((1, 2)) for n in names]
    for i in range(2):
        absorbed = want["softmax_absorbed"][i]
        assert absorbed.abs().max() > 1e-4  # the softmax rule is not conservative: the test can tell
        torch.testing.assert_close(ins[i], outs[i] - absorbed, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(outs[-1], logit, rtol=1e-8, atol=1e-10)  # the final norm and head: conserved


def test_one_attention_head_by_hand() -> None:
    """One head, written out with explicit loops over the indices of the paper's equations."""
    torch.manual_seed(0)
    t, d = 4, 3
    x = torch.randn(1, t, d, dtype=torch.float64)
    wq, wk, wv = (torch.randn(d, d, dtype=torch.float64) for _ in range(3))

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v = (nn.Linear(d, d, bias=False).double() for _ in range(3))
            for lin, wt in zip((self.q, self.k, self.v), (wq, wk, wv), strict=True):
                _set(lin, wt, None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.q(x), self.k(x), self.v(x)
            return (torch.softmax(q @ k.transpose(1, 2), -1) @ v).sum((1, 2))[:, None]

    res = nx.lrp(Head().eval(), x, 0, composite="attn_lrp", epsilon=1e-12)
    xx = x[0]
    q, k, v = xx @ wq.T, xx @ wk.T, xx @ wv.T
    p = q @ k.T
    s = torch.softmax(p, -1)
    o = s @ v

    def uniform(a, b, out, rel):  # out[i, c] = Σ_j a[i, j] b[j, c]: half of each term's share to a, half to b
        ra, rb = torch.zeros_like(a), torch.zeros_like(b)
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                for c in range(b.shape[1]):
                    share = a[i, j] * b[j, c] / out[i, c] * rel[i, c]
                    ra[i, j] += share / 2
                    rb[j, c] += share / 2
        return ra, rb

    r_s, r_v = uniform(s, v, o, o.clone())  # the sum hands each output its value
    r_p = torch.zeros(t, t, dtype=torch.float64)
    for i in range(t):
        for j in range(t):
            r_p[i, j] = p[i, j] * (r_s[i, j] - s[i, j] * r_s[i].sum())
    r_q, r_kt = uniform(q, k.T, p, r_p)
    r_k = r_kt.T
    r_x = torch.zeros(t, d, dtype=torch.float64)
    for proj, rel, w_ in ((q, r_q, wq), (k, r_k, wk), (v, r_v, wv)):
        for a in range(t):
            for i in range(d):
                r_x[a, i] += sum(xx[a, i] * w_[j, i] / proj[a, j] * rel[a, j] for j in range(d))
    torch.testing.assert_close(res.attribution[0], r_x, atol=1e-9, rtol=1e-7)


def test_masked_positions_get_no_relevance_and_nothing_is_nan() -> None:
    """A causal mask (``-inf`` scores) through SDPA, nn.MultiheadAttention and by hand."""
    w = ref.random_weights(seed=7)
    x = _inputs(8)

    class Causal(nn.Module):
        def __init__(self, how: str) -> None:
            super().__init__()
            self.how = how
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True).double()
            _set_mha(self.mha, w.blocks[0])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = x.shape[1]
            if self.how == "mha":
                mask = nn.Transformer.generate_square_subsequent_mask(t, dtype=x.dtype)
                out = self.mha(x, x, x, attn_mask=mask, is_causal=True, need_weights=False)[0]
            else:
                e, hd = 8, 4
                q, k, v = F.linear(x, self.mha.in_proj_weight, self.mha.in_proj_bias).chunk(3, -1)
                q, k, v = (u.view(x.shape[0], t, 2, hd).transpose(1, 2) for u in (q, k, v))
                if self.how == "sdpa":
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                else:
                    s = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(hd))
                    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
                    o = s.softmax(-1) @ v
                out = self.mha.out_proj(o.transpose(1, 2).reshape(x.shape[0], t, e))
            return out[:, 0]  # the first token sees only itself

    maps = {}
    for how in ("mha", "sdpa", "hand"):
        net = Causal(how).eval()
        res = nx.lrp(net, x, 1, composite="attn_lrp")
        assert torch.isfinite(res.attribution).all()
        assert res.attribution[:, 1:].abs().max() == 0  # later tokens are masked for token 0
        maps[how] = res.attribution
    torch.testing.assert_close(maps["sdpa"], maps["hand"], atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(maps["mha"], maps["hand"], atol=1e-12, rtol=1e-9)


def test_training_in_the_same_process_is_unchanged() -> None:
    """The rules are on only during the call: SGD before and after it equals SGD of a twin that never saw it."""
    def make() -> nn.Module:
        torch.manual_seed(0)
        return nx.architectures.vit(dim=8, depth=1, heads=2).train()

    def train(net: nn.Module, steps: int) -> None:
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(1)
        for _ in range(steps):
            x, y = torch.randn(4, 1, 16, 16, generator=g), torch.randint(0, 10, (4,), generator=g)
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()

    a, b = make(), make()
    train(a, 2)
    train(b, 2)
    with untouched(a):
        for composite in ("attn_lrp", "cp_lrp"):
            nx.lrp(a, torch.randn(2, 1, 16, 16), composite=composite)
    train(a, 2)
    train(b, 2)
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), n


def test_a_vit_with_class_token_and_position_embedding() -> None:
    """nbexplain's ViT (patch conv, class token, ``+ self.pos`` in forward, nn.TransformerEncoder): the default
    composite refuses it and points at attn_lrp; attn_lrp explains it, the model untouched."""
    net = nx.architectures.vit().double()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    with untouched(net), pytest.raises(nx.UnsupportedModuleError, match="attn_lrp"):
        nx.lrp(net, x)
    with untouched(net):
        res = nx.lrp(net, x, composite="attn_lrp")
    assert res.attribution.shape == x.shape and torch.isfinite(res.attribution).all()
    assert res.rules["encoder.layers.0.norm1"] == nx.rules.NormIdentity(1e-6)
    # the position embedding takes its proportional share: without it (pos = 0) the input gets more
    no_pos = nx.architectures.vit().double()
    with torch.no_grad():
        no_pos.pos.zero_()
    assert not torch.equal(nx.lrp(no_pos, x, composite="attn_lrp").attribution, res.attribution)


class _UnfoldViT(nn.Module):
    """A ViT that cuts patches with ``F.unfold`` and embeds them with ``nn.Linear`` (no conv), or with the
    equivalent ``Conv2d(stride=patch)``: the same function, written two ways."""

    def __init__(self, conv: bool, p: int = 4, d: int = 12) -> None:
        super().__init__()
        self.p, self.conv = p, conv
        self.embed = nn.Conv2d(1, d, p, stride=p, bias=False) if conv else nn.Linear(p * p, d, bias=False)
        self.block = nn.TransformerEncoderLayer(d, 3, 2 * d, dropout=0.0, batch_first=True, norm_first=True, bias=False)
        self.norm = nn.LayerNorm(d, bias=False)
        self.head = nn.Linear(d, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv:
            t = self.embed(x).flatten(2).transpose(1, 2)
        else:
            t = self.embed(F.unfold(x, self.p, stride=self.p).transpose(1, 2))
        return self.head(self.norm(self.block(t)).mean(1))


def test_patches_cut_by_unfold_or_by_a_strided_conv_are_explained_alike() -> None:
    """``F.unfold`` is a copy of pixels (relevance follows it); a patch embedding written as unfold + Linear
    and as a conv with stride = kernel (computed by nbexplain as one GEMM) give the same map, and CP-LRP without
    biases conserves the logit through it."""
    torch.manual_seed(5)
    lin = _UnfoldViT(conv=False).double().eval()
    conv = _UnfoldViT(conv=True).double().eval()
    conv.load_state_dict({**lin.state_dict(), "embed.weight": lin.embed.weight.reshape(12, 1, 4, 4)})
    x = torch.rand(3, 1, 12, 14, dtype=torch.float64)  # 14 is not a multiple of 4: the last 2 columns are unread
    torch.testing.assert_close(lin(x), conv(x))
    for composite in ("attn_lrp", "cp_lrp"):
        with untouched(lin), untouched(conv):
            a = nx.lrp(lin, x, 1, composite=composite, epsilon=1e-12).attribution
            b = nx.lrp(conv, x, 1, composite=composite, epsilon=1e-12).attribution
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        assert (a[..., 12:] == 0).all()
    cp = nx.lrp(lin, x, 1, composite="cp_lrp", epsilon=1e-12).attribution
    torch.testing.assert_close(cp.sum((1, 2, 3)), lin(x)[:, 1], rtol=1e-8, atol=1e-10)


class _FusedOpsAttention(nn.Module):
    """One attention head over an ALiBi-style score bias, its projections and scores written with fused BLAS
    calls (``torch.addmm`` as Hugging Face GPT-2's Conv1D, ``torch.baddbmm`` as BLOOM) or spelled out; and a
    cosine-attention variant (``F.normalize``, Swin v2) or its spelled-out twin (divided by the detached norm)."""

    def __init__(self, fused: bool, cosine: bool = False, d: int = 6, t: int = 5) -> None:
        super().__init__()
        self.fused, self.cosine = fused, cosine
        self.w = nn.Parameter(torch.randn(d, 3 * d) / d**0.5)  # Conv1D layout: (in, out)
        self.b = nn.Parameter(torch.randn(3 * d) * 0.1)
        self.register_buffer("alibi", -0.3 * (torch.arange(t)[None, :] - torch.arange(t)[:, None]).abs().float())
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        if self.fused:
            qkv = torch.addmm(self.b, x.reshape(-1, d), self.w).view(n, t, 3 * d)
        else:
            qkv = F.linear(x, self.w.t(), self.b)
        q, k, v = qkv.split(d, -1)
        if self.cosine:
            if self.fused:
                q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
            else:
                q = q / q.norm(dim=-1, keepdim=True).detach()
                k = k / k.norm(dim=-1, keepdim=True).detach()
        alibi = self.alibi.expand(n, t, t)
        if self.fused:
            scores = torch.baddbmm(alibi, q, k.transpose(1, 2), beta=1.0, alpha=d**-0.5)
        else:
            scores = (q @ k.transpose(1, 2)) * d**-0.5 + alibi
        return self.head((scores.softmax(-1) @ v).mean(1))


@pytest.mark.parametrize("cosine", [False, True])
def test_fused_blas_projections_and_scores_are_explained_as_written_out(cosine: bool) -> None:
    """``addmm`` (a linear layer: the ε rule with its bias, as F.linear), ``baddbmm`` (scaled scores plus a constant
    bias: the uniform rule, the scaling passing relevance on, the bias keeping its proportional share) and
    ``F.normalize`` (the identity rule) give the same maps, in float64, as the same model spelled out with the
    operations the float64 reference tests above cover."""
    torch.manual_seed(11)
    fused = _FusedOpsAttention(fused=True, cosine=cosine).double().eval()
    plain = _FusedOpsAttention(fused=False, cosine=cosine).double().eval()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(fused(x), plain(x))
    # the spelled-out division by a detached norm is a scaling by a tensor: the ε rule (one term); with ε → 0 it is
    # the identity rule F.normalize gets
    eps = 1e-12 if cosine else 1e-6
    for composite in ("attn_lrp", "cp_lrp"):
        with untouched(fused):
            a = nx.lrp(fused, x, 2, composite=composite, epsilon=eps).attribution
        b = nx.lrp(plain, x, 2, composite=composite, epsilon=eps).attribution
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        assert a.abs().sum() > 0


def test_gamma_for_vision_and_a_hybrid_cnn_transformer() -> None:
    class Hybrid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4))
            self.block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.stem(x).flatten(2).transpose(1, 2)
            return self.head(self.block(t).mean(1))

    torch.manual_seed(0)
    net = Hybrid().eval()
    with torch.no_grad():
        net.stem[1].running_mean.uniform_(-0.2, 0.2)
        net.stem[1].running_var.uniform_(0.5, 1.5)
    x = torch.rand(2, 1, 16, 16)
    comp = nx.Composite({nn.Conv2d: nx.rules.ZPlus(), nn.Linear: nx.rules.Epsilon()}, first=nx.rules.Flat(),
                        attention="attn_lrp")
    with untouched(net):
        res = nx.lrp(net, x, composite=comp)
    assert res.rules["stem.0"] == nx.rules.Flat() and res.rules["block.norm1"] == nx.rules.NormIdentity(1e-6)
    assert torch.isfinite(res.attribution).all() and res.attribution.abs().sum() > 0
    gamma = nx.lrp(net, x, composite="attn_lrp", gamma=0.25)
    assert gamma.rules["head"] == nx.rules.Gamma(0.25)


def test_token_ids_through_the_embedding() -> None:
    """A GPT-style causal LM on token ids: per-token relevance is the sum over embedding features of the
    relevance at the embedding's output."""
    from tests.models.zoo import CausalLM

    torch.manual_seed(0)
    net = CausalLM().double().eval()
    ids = torch.randint(0, 40, (2, 10))
    with untouched(net):
        res = nx.lrp(net, ids, 3, composite="attn_lrp", embedding="emb", output=lambda y: y[:, -1])
    assert res.attribution.shape == ids.shape
    with_features = nx.lrp(net, ids, 3, composite="cp_lrp", embedding="emb", output=lambda y: y[:, -1])
    assert torch.isfinite(with_features.attribution).all()
    assert not torch.allclose(res.attribution, with_features.attribution)


def test_unsupported_attention_options_and_ops_fail_clearly() -> None:
    class ZeroAttn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(4, 1, add_zero_attn=True, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mha(x, x, x)[0].sum(1)

    net = ZeroAttn().eval()
    with untouched(net), pytest.raises(TypeError, match=r"add_zero_attn.*nx.rules.Gradient\(\)"):
        nx.lrp(net, torch.randn(2, 3, 4), 0, composite="attn_lrp")

    class Exp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.exp(x))

    net = Exp().eval()
    with untouched(net), pytest.raises(nx.UnsupportedModuleError, match="Exp"):
        nx.lrp(net, torch.randn(2, 4), 0, composite="attn_lrp")
    with pytest.raises(ValueError, match="`attention` must be None or one of"):
        nx.Composite({}, attention="attn")


class LlamaRMSNorm(nn.Module):
    """A hand-written RMS norm as in LLaMA (a leaf with ``weight`` and ``variance_epsilon``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(dim))
        self.variance_epsilon = 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


class SiLUActivation(nn.Module):
    """A custom parameter-free activation module (as Hugging Face's ACT2FN classes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.silu(x)


class LlamaBlock(nn.Module):
    """A LLaMA-style block without biases: RMS norm, causal SDPA attention, SwiGLU MLP (a gated product)."""

    def __init__(self, dim: int, norm: str) -> None:
        super().__init__()
        self.norm1 = {"module": lambda: nn.RMSNorm(dim, eps=1e-6), "llama": lambda: LlamaRMSNorm(dim)}.get(
            norm, lambda: None)()
        self.norm2 = {"module": lambda: nn.RMSNorm(dim, eps=1e-6), "llama": lambda: LlamaRMSNorm(dim)}.get(
            norm, lambda: None)()
        self.w = nn.Parameter(1 + 0.1 * torch.randn(dim))
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)
        self.gate, self.up = nn.Linear(dim, 2 * dim, bias=False), nn.Linear(dim, 2 * dim, bias=False)
        self.down = nn.Linear(2 * dim, dim, bias=False)
        self.act = SiLUActivation()

    def _norm(self, which: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        if which is None:  # functional
            return F.rms_norm(x, (x.shape[-1],), self.w, 1e-6)
        return which(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n, t, d = x.shape
        q, k, v = self.qkv(self._norm(self.norm1, x)).view(n, t, 3, 2, d // 2).permute(2, 0, 3, 1, 4)
        x = x + self.o(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(n, t, d))
        h = self._norm(self.norm2, x)
        return x + self.down(self.act(self.gate(h)) * self.up(h))


@pytest.mark.parametrize("norm", ["functional", "module", "llama"])
def test_a_llama_style_block_conserves_under_cp_lrp(norm: str) -> None:
    """RMS norms (functional, nn.RMSNorm, hand-written) pass relevance on, the SwiGLU gate splits it evenly, a
    custom activation module gets the identity rule: without biases, CP-LRP conserves the logit exactly."""
    torch.manual_seed(0)
    block = LlamaBlock(8, norm)
    if norm != "functional":
        for m in (block.norm1, block.norm2):
            with torch.no_grad():
                m.weight.copy_(block.w)
    net = nn.Sequential(block, nn.Flatten(), nn.Linear(5 * 8, 3, bias=False)).double().eval()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with untouched(net):
        res = nx.lrp(net, x, 1, composite="cp_lrp", epsilon=1e-12)
    torch.testing.assert_close(res.attribution.sum((1, 2)), net(x)[:, 1], rtol=1e-8, atol=1e-10)
    attn = nx.lrp(net, x, 1, composite="attn_lrp", epsilon=1e-12).attribution
    assert torch.isfinite(attn).all() and not torch.allclose(attn, res.attribution)
    if norm != "functional":  # the three ways to write the norm give the same relevance
        block.norm1 = block.norm2 = None
        torch.testing.assert_close(nx.lrp(net, x, 1, composite="attn_lrp", epsilon=1e-12).attribution, attn)


def test_a_module_that_only_looks_like_an_rms_norm_is_refused() -> None:
    class FakeRMSNorm(LlamaRMSNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return self.weight * torch.tanh(x)

    net = nn.Sequential(FakeRMSNorm(4), nn.Linear(4, 2)).eval()
    with untouched(net), pytest.raises(TypeError, match="looks like an RMS norm"):
        nx.lrp(net, torch.randn(3, 4), 0, composite="attn_lrp")


class GPT2Block(nn.Module):
    """A hand-written GPT-2 block: LayerNorm, one c_attn projection split into q, k, v, causal attention by
    ``F.scaled_dot_product_attention`` (``fused``) or written out, c_proj, and a GELU (tanh) MLP."""

    def __init__(self, dim: int, heads: int, fused: bool) -> None:
        super().__init__()
        self.heads, self.fused = heads, fused
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.c_attn, self.c_proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.c_fc, self.c_out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (u.view(n, t, self.heads, d // self.heads).transpose(1, 2) for u in (q, k, v))
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
            y = att.softmax(dim=-1) @ v
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(n, t, d))
        return x + self.c_out(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, fused: bool, vocab: int = 30, length: int = 9, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(length, dim)
        self.h = nn.ModuleList(GPT2Block(dim, 2, fused) for _ in range(2))
        self.ln_f, self.lm_head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def test_a_gpt2_style_language_model_on_token_ids() -> None:
    """Token ids through the embedding, learned positions from a second embedding, causal SDPA: the next-token
    logit at the last position explained per token, the same whether attention is fused or written out."""
    ids = torch.randint(0, 30, (3, 9), generator=torch.Generator().manual_seed(1))
    maps = {}
    for fused in (True, False):
        net = GPT2(fused).double().eval()
        with untouched(net):
            res = nx.lrp(net, ids, 7, composite="attn_lrp", embedding="wte", output=lambda y: y[:, -1])
        assert res.attribution.shape == ids.shape and torch.isfinite(res.attribution).all()
        maps[fused] = res.attribution
    torch.testing.assert_close(maps[True], maps[False], atol=1e-12, rtol=1e-9)
    assert maps[True].abs().sum() > 0


def test_attention_rules_as_a_context_for_gradient_methods() -> None:
    """Inside nx.lrp_rules(model, "attn_lrp") the model's backward pass propagates AttnLRP relevance: nx.gradient
    there is nx.lrp(..., init="one"), and gradient × input multiplies it by the input."""
    net = nx.architectures.vit(dim=8, depth=1, heads=2).double()
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    want = nx.lrp(net, x, 4, composite="attn_lrp", init="one").attribution
    with untouched(net):
        with nx.lrp_rules(net, "attn_lrp"):
            got = nx.gradient(net, x, 4).attribution
            gxi = nx.gradient_x_input(net, x, 4).attribution
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gxi, want * x, rtol=1e-10, atol=1e-12)


class TimmLayerScale(nn.Module):
    """timm's LayerScale: a leaf module with a parameter and no rule of its own."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(0.1 + 0.05 * torch.randn(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * self.gamma


class TimmBlock(nn.Module):
    """A timm-style ViT block: fused qkv Linear with permute/unbind, ``attn.softmax(dim=-1)``, Dropout modules,
    nn.GELU, LayerScale (as a module, or inline as ``x * gamma``)."""

    def __init__(self, dim: int, module_scale: bool) -> None:
        super().__init__()
        self.heads, self.module_scale = 2, module_scale
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.qkv, self.proj, self.attn_drop = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), nn.Dropout(0.1)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.1), nn.Linear(4 * dim, dim))
        self.ls1, self.ls2 = TimmLayerScale(dim), TimmLayerScale(dim)

    def _scale(self, ls: TimmLayerScale, x: torch.Tensor) -> torch.Tensor:
        return ls(x) if self.module_scale else x * ls.gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(dim=-1))
        x = x + self._scale(self.ls1, self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)))
        return x + self._scale(self.ls2, self.mlp(self.norm2(x)))


def test_a_timm_style_block_with_a_layer_scale_module() -> None:
    """A leaf module the composite has no rule for (timm's LayerScale) leaves its operations to the attention rules
    and canonizers (``x * gamma`` is a layer scale): the same map as the block with the product written inline."""
    torch.manual_seed(0)
    inline = nn.Sequential(TimmBlock(8, module_scale=False), nn.Flatten(), nn.Linear(40, 3)).double().eval()
    as_module = nn.Sequential(TimmBlock(8, module_scale=True), nn.Flatten(), nn.Linear(40, 3)).double().eval()
    as_module.load_state_dict(inline.state_dict())
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with untouched(as_module):
        got = nx.lrp(as_module, x, 2, composite="attn_lrp")
    want = nx.lrp(inline, x, 2, composite="attn_lrp")
    torch.testing.assert_close(got.attribution, want.attribution, rtol=1e-10, atol=1e-12)
    assert "<layer scale>" in got.rules and got.attribution.abs().sum() > 0


def test_a_bert_style_encoder_with_a_padding_mask() -> None:
    """BERT-style: word + position + type embeddings, post-norm, ``scores + (1 − mask)·finfo.min``, the softmax
    as ``nn.functional.softmax``, GELU, a tanh pooler; padded tokens get no relevance."""

    class Bert(nn.Module):
        def __init__(self, vocab: int = 40, dim: int = 8) -> None:
            super().__init__()
            self.word, self.pos, self.token_type = nn.Embedding(vocab, dim), nn.Embedding(12, dim), nn.Embedding(2, dim)
            self.ln, self.ln2, self.ln3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
            self.inter, self.out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
            self.pooler, self.cls = nn.Linear(dim, dim), nn.Linear(dim, 3)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # noqa: D102
            h = self.ln(self.word(ids) + self.pos(torch.arange(ids.shape[1])) + self.token_type(torch.zeros_like(ids)))
            n, t, d = h.shape
            q, k, v = (f(h).view(n, t, 2, d // 2).permute(0, 2, 1, 3) for f in (self.q, self.k, self.v))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // 2)
            scores = scores + (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
            ctx = torch.matmul(nn.functional.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).reshape(n, t, d)
            a = self.ln2(self.o(ctx) + h)
            h = self.ln3(self.out(nn.functional.gelu(self.inter(a))) + a)
            return self.cls(torch.tanh(self.pooler(h[:, 0])))

    torch.manual_seed(0)
    net = Bert().double().eval()
    ids = torch.randint(0, 40, (2, 12))
    mask = torch.ones(2, 12)
    mask[1, 8:] = 0
    with untouched(net):
        res = nx.lrp(net, (ids, mask), 1, composite="attn_lrp", embedding="word", wrt=0)
    assert torch.isfinite(res.attribution).all() and res.attribution[0].abs().sum() > 0
    assert res.attribution[1, 8:].abs().max() == 0  # padding: masked out of every attention row
