"""nx.attention_rollout against a float64 reference written from Abnar & Zuidema (2020).

The reference recomputes every layer's attention weights by hand from the model's own projection weights
(never from what nbexplain recorded), then rolls them out with explicit loops:
Â_l = (1 − r)·fuse_heads(A_l) + r·I, rows renormalised, rollout = Â_L ⋯ Â_1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbexplain as nx
from nbexplain.architectures import vit
from nbexplain.core.attribution.patches import image_map, patch_grid, upsample_patch_map
from tests.models.state import dress, untouched

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------------
# the reference
# ---------------------------------------------------------------------------------------------------------


def reference_rollout(attn: list[np.ndarray], fusion: str = "mean", residual: float = 0.5) -> np.ndarray:
    """Per sample, per layer: fuse heads, mix the identity, renormalise rows, multiply (later layers left)."""
    n, _, t, _ = attn[0].shape
    out = np.zeros((n, t, t))
    for s in range(n):
        acc = np.eye(t)
        for a in attn:
            heads = a[s].astype(np.float64)
            fused = {"mean": heads.mean(0), "max": heads.max(0), "min": heads.min(0)}[fusion]
            mixed = (1 - residual) * fused + residual * np.eye(t)
            for i in range(t):
                mixed[i] /= mixed[i].sum()
            acc = mixed @ acc
        out[s] = acc
    return out


def softmax_np(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def mha_weights(mha: nn.MultiheadAttention, x: torch.Tensor) -> np.ndarray:
    """(N, heads, T, T) self-attention weights of ``mha`` on batch-first ``x``, by hand in numpy."""
    w = mha.in_proj_weight.detach().double().numpy()
    b = mha.in_proj_bias.detach().double().numpy()
    xs = x.detach().double().numpy()
    d = mha.embed_dim
    h = mha.num_heads
    q, k = xs @ w[:d].T + b[:d], xs @ w[d:2 * d].T + b[d:2 * d]
    n, t, _ = xs.shape
    q = q.reshape(n, t, h, d // h).transpose(0, 2, 1, 3)
    k = k.reshape(n, t, h, d // h).transpose(0, 2, 1, 3)
    return softmax_np(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // h))


# ---------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------


class MHANet(nn.Module):
    """Two nn.MultiheadAttention layers with residuals over an embedded sequence (N, T, 3)."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(3, dim)
        self.attn1 = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.attn2 = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.attn1(h, h, h, need_weights=False)[0]
        out, avg = self.attn2(h, h, h)  # the caller asks for the head-averaged weights (the default)
        self.seen_weights = avg
        return self.head((h + out)[:, 0])


class SDPABlock(nn.Module):
    def __init__(self, dim: int, heads: int, causal: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.heads, self.causal = heads, causal

    def split(self, t: torch.Tensor) -> torch.Tensor:
        n, T, d = t.shape
        return t.reshape(n, T, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return x + self.proj(o.transpose(1, 2).reshape(x.shape))


class SoftmaxBlock(SDPABlock):
    """softmax(q kᵀ / √d) v written out (bmm layout: (N·heads, T, T)), with a dropout in between."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads, causal=False)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, T, d = x.shape
        q, k, v = (self.split(t).reshape(n * self.heads, T, d // self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        attn = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(d // self.heads)
        attn = self.drop(attn.softmax(dim=-1))
        o = (attn @ v).reshape(n, self.heads, T, d // self.heads)
        return x + self.proj(o.transpose(1, 2).reshape(n, T, d))


class GPT(nn.Module):
    """Token ids → embedding → attention blocks → logits of the last token."""

    def __init__(self, block: str, vocab: int = 11, dim: int = 8, heads: int = 2, depth: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        make = {"sdpa": lambda: SDPABlock(dim, heads, causal=True), "softmax": lambda: SoftmaxBlock(dim, heads)}[block]
        self.blocks = nn.ModuleList([make() for _ in range(depth)])
        self.out = nn.Linear(dim, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids)
        for b in self.blocks:
            h = b(h)
        return self.out(h[:, -1])


def hand_block_weights(block: SDPABlock, x: torch.Tensor, causal: bool) -> np.ndarray:
    w = block.qkv.weight.detach().double().numpy()
    b = block.qkv.bias.detach().double().numpy()
    xs = x.detach().double().numpy()
    n, t, d = xs.shape
    h = block.heads
    q = (xs @ w[:d].T + b[:d]).reshape(n, t, h, d // h).transpose(0, 2, 1, 3)
    k = (xs @ w[d:2 * d].T + b[d:2 * d]).reshape(n, t, h, d // h).transpose(0, 2, 1, 3)
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // h)
    if causal:
        s = np.where(np.tril(np.ones((t, t))) > 0, s, -np.inf)
    return softmax_np(s)


def gpt_reference(model: GPT, ids: torch.Tensor, causal: bool) -> list[np.ndarray]:
    out = []
    with torch.no_grad():
        h = model.emb(ids)
        for blk in model.blocks:
            out.append(hand_block_weights(blk, h, causal))
            h = blk(h)
    return out


# ---------------------------------------------------------------------------------------------------------
# against the reference
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_multihead_attention_matches_the_float64_reference(fusion: str) -> None:
    torch.manual_seed(0)
    net = MHANet().double().eval()
    x = torch.randn(5, 6, 3, dtype=torch.float64)
    res = nx.attention_rollout(net, x, head_fusion=fusion)
    with torch.no_grad():
        h1 = net.embed(x)
        a1 = mha_weights(net.attn1, h1)
        h2 = h1 + net.attn1(h1, h1, h1)[0]
        a2 = mha_weights(net.attn2, h2)
    ref = reference_rollout([a1, a2], fusion)
    assert list(res.attention) == ["attn1", "attn2"]
    np.testing.assert_allclose(res.attention["attn1"].numpy(), a1, atol=1e-12)
    np.testing.assert_allclose(res.attention["attn2"].numpy(), a2, atol=1e-12)
    np.testing.assert_allclose(res.rollout.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(res.tokens.numpy(), ref[:, 0], atol=1e-12)
    assert torch.equal(res.attribution, res.tokens)  # not an image: one score per token
    assert res.target is None and res.score is None and res.method == "attention_rollout"


def test_multihead_attention_returns_what_the_caller_asked_for() -> None:
    """attn1 asked for no weights, attn2 for the head average: the model's own computation is unchanged."""
    torch.manual_seed(1)
    net = MHANet().double().eval()
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    with torch.no_grad():
        plain = net(x)
        plain_avg = net.seen_weights.clone()
    res = nx.attention_rollout(net, x)
    torch.testing.assert_close(res.output, plain, rtol=0, atol=1e-12)
    torch.testing.assert_close(net.seen_weights, plain_avg, rtol=0, atol=1e-12)
    torch.testing.assert_close(net.seen_weights, res.attention["attn2"].mean(1), rtol=0, atol=1e-12)


def test_residual_zero_is_the_plain_product_of_head_means() -> None:
    torch.manual_seed(2)
    net = MHANet().double().eval()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    res = nx.attention_rollout(net, x, residual=0.0, token=2)
    a = [w.mean(1) for w in res.attention.values()]
    torch.testing.assert_close(res.rollout, a[1] @ a[0])
    torch.testing.assert_close(res.tokens, (a[1] @ a[0])[:, 2])


def vit_reference(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        t = model.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([model.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + model.pos
        out = []
        for layer in model.encoder.layers:
            out.append(mha_weights(layer.self_attn, layer.norm1(t)))  # pre-norm: attention reads norm1(t)
            t = layer(t)
    return out


def test_vit_transformer_encoder_matches_the_reference_and_maps_patches_to_pixels() -> None:
    """nn.TransformerEncoder in eval mode takes a fused fast path that hides the weights: it must not."""
    model = vit().double()
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    res = nx.attention_rollout(model, x)
    ref = reference_rollout(vit_reference(model, x))
    np.testing.assert_allclose(res.rollout.numpy(), ref, atol=1e-12)
    assert res.extra_tokens == 1 and res.grid == (4, 4)
    cls_row = ref[:, 0, 1:].reshape(3, 4, 4)
    expected = np.repeat(np.repeat(cls_row, 4, axis=1), 4, axis=2)
    np.testing.assert_allclose(res.attribution.numpy(), expected, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(res.output, model(x))


def test_token_none_is_the_mean_over_query_rows() -> None:
    model = vit().double()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    res = nx.attention_rollout(model, x, token=None)
    ref = reference_rollout(vit_reference(model, x))
    np.testing.assert_allclose(res.tokens.numpy(), ref.mean(1), atol=1e-12)
    last = nx.attention_rollout(model, x, token=-1)
    np.testing.assert_allclose(last.tokens.numpy(), ref[:, -1], atol=1e-12)


@pytest.mark.parametrize("block", ["sdpa", "softmax"])
def test_hand_written_attention_matches_the_reference(block: str) -> None:
    """F.scaled_dot_product_attention(is_causal=True) and softmax(q kᵀ) v in the bmm layout (N·heads, T, T)."""
    torch.manual_seed(3)
    model = GPT(block).double().eval()
    ids = torch.randint(0, 11, (4, 7))
    res = nx.attention_rollout(model, ids, token=-1)
    ref_w = gpt_reference(model, ids, causal=block == "sdpa")
    assert list(res.attention) == ["blocks.0", "blocks.1"]
    for got, want in zip(res.attention.values(), ref_w, strict=True):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    ref = reference_rollout(ref_w)
    np.testing.assert_allclose(res.tokens.numpy(), ref[:, -1], atol=1e-12)
    assert res.attribution.shape == (4, 7)
    if block == "sdpa":  # causal: the first token sees only itself, so its rollout row is e_0
        np.testing.assert_allclose(res.rollout[:, 0].numpy(), np.eye(7)[[0] * 4], atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(res.output, model(ids))


class EinsumBlock(SDPABlock):
    """nn.Softmax as a submodule and torch.einsum for both products: named by the block, not by its softmax."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads, causal=False)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
        attn = self.softmax(torch.einsum("nhid,nhjd->nhij", q, k) / math.sqrt(q.shape[-1]))
        o = torch.einsum("nhij,nhjd->nhid", attn, v)
        return x + self.proj(o.transpose(1, 2).reshape(x.shape))


def test_einsum_attention_with_a_softmax_module_is_named_by_its_block() -> None:
    torch.manual_seed(7)
    block = EinsumBlock(8, 2).double().eval()
    net = nn.Sequential(block, EinsumBlock(8, 2).double()).eval()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    res = nx.attention_rollout(net, x, token=None)
    assert list(res.attention) == ["0", "1"]
    with torch.no_grad():
        ref_w = [hand_block_weights(net[0], x, False), hand_block_weights(net[1], net[0](x), False)]
    np.testing.assert_allclose(res.attention["1"].numpy(), ref_w[1], atol=1e-12)
    np.testing.assert_allclose(res.tokens.numpy(), reference_rollout(ref_w).mean(1), atol=1e-12)


def test_sdpa_masks_and_scale_are_honoured() -> None:
    from nbexplain.core.attribution.attention_capture import sdpa_weights

    torch.manual_seed(4)
    q, k = torch.randn(2, 3, 5, 4, dtype=torch.float64), torch.randn(2, 3, 5, 4, dtype=torch.float64)
    keep = torch.rand(5, 5) > 0.3
    keep.fill_diagonal_(True)
    s = (q @ k.transpose(-2, -1)) * 0.7
    want = torch.softmax(s.masked_fill(~keep, float("-inf")), -1)
    torch.testing.assert_close(sdpa_weights(q, k, keep, scale=0.7), want)
    add = torch.randn(5, 5, dtype=torch.float64)
    torch.testing.assert_close(sdpa_weights(q, k, add), torch.softmax(q @ k.transpose(-2, -1) / 2 + add, -1))
    # the weights reproduce torch's own output
    v = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(sdpa_weights(q, k, keep, scale=0.7) @ v,
                               F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=0.7))


def test_batch_size_splitting_gives_the_same_result() -> None:
    model = vit()
    x = torch.rand(7, 1, 16, 16)
    whole = nx.attention_rollout(model, x)
    split = nx.attention_rollout(model, x, batch_size=3)
    torch.testing.assert_close(split.rollout, whole.rollout, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(split.attribution, whole.attribution, rtol=1e-6, atol=1e-7)
    for k in whole.attention:
        torch.testing.assert_close(split.attention[k], whole.attention[k], rtol=1e-5, atol=1e-6)


def test_continuity_takes_the_per_pixel_rollout_map() -> None:
    """(N, H, W) maps for (N, C, H, W) images: the same score as the map placed in an input-shaped tensor."""
    model = vit(in_channels=3)
    x = torch.rand(2, 3, 16, 16)
    got = nx.continuity(lambda z: nx.attention_rollout(model, z), x, shifts=[-2, 0, 2])

    def padded(z: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(z)
        out[:, 0] = nx.attention_rollout(model, z).attribution.to(z.dtype)
        return out

    want = nx.continuity(padded, x, shifts=[-2, 0, 2])
    torch.testing.assert_close(got.score, want.score, rtol=1e-5, atol=1e-9)
    assert got.explanations.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"one value per pixel \(N, H, W\)"):
        nx.continuity(lambda z: torch.zeros(2, 4, 4), x, shifts=[-2, 0, 2])


def test_layers_selects_what_is_composed() -> None:
    model = vit().double()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    ref_w = vit_reference(model, x)
    res = nx.attention_rollout(model, x, layers=["encoder.layers.1.self_attn"])
    np.testing.assert_allclose(res.rollout.numpy(), reference_rollout(ref_w[1:]), atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# patch grids
# ---------------------------------------------------------------------------------------------------------


def test_patch_grid_inference_and_its_errors() -> None:
    assert patch_grid(17, 16, 16) == (1, (4, 4))
    assert patch_grid(16, 16, 16) == (0, (4, 4))
    assert patch_grid(5 + 8, 16, 32) == (5, (2, 4))  # class + 4 registers in front of a 2×4 grid
    assert patch_grid(7, 16, 16) == (3, (2, 2))  # the grid that uses the most tokens
    with pytest.raises(ValueError, match=r"Cannot place 3 tokens on a 6×10 image.*grid=\(rows, columns\)"):
        patch_grid(3, 6, 10)
    with pytest.raises(ValueError, match="does not divide the 16×16 image"):
        patch_grid(10, 16, 16, grid=(3, 3))
    with pytest.raises(ValueError, match="has 25 patches but the attention has only 17 tokens"):
        patch_grid(17, 20, 20, grid=(5, 5))
    with pytest.raises(TypeError, match="`grid` must be a pair of positive ints"):
        patch_grid(17, 16, 16, grid=(4,))
    up = upsample_patch_map(torch.arange(6.0).reshape(1, 2, 3), 4, 6)
    assert up[0, 3, 5] == 5 and up[0, 0, 1] == 0 and up[0, 2, 2] == 4
    assert image_map(torch.zeros(2, 3, 4, 4), (2, 3, 4, 4)).shape == (2, 3, 4, 4)
    assert image_map(torch.zeros(2, 3, 3), (2, 1, 4, 4)) is None


class Rect(nn.Module):
    """8×2-pixel patches (a 2×8 grid on 16×16 images) and a class token: 17 tokens, like 4×4 square patches."""

    def __init__(self, unfold: bool = False) -> None:
        super().__init__()
        self.unfold = unfold
        self.patch = nn.Conv2d(1, 8, (8, 2), stride=(8, 2))
        self.cut, self.embed = nn.Unfold((5, 2), stride=(5, 2)), nn.Linear(10, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(self.cut(x).transpose(1, 2)) if self.unfold else self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1)
        return self.attn(t, t, t)[0][:, 0]


def test_the_grid_of_a_convolutional_patch_embedding_is_read_from_it() -> None:
    torch.manual_seed(5)
    net = Rect().eval()
    x = torch.rand(2, 1, 16, 16)
    res = nx.attention_rollout(net, x)
    assert res.extra_tokens == 1 and res.grid == (2, 8)  # not the 4×4 square grid the token count suggests
    want = res.tokens[:, 1:].reshape(2, 2, 8).repeat_interleave(8, 1).repeat_interleave(2, 2)
    torch.testing.assert_close(res.attribution, want)


def test_an_image_model_whose_grid_cannot_be_inferred_asks_for_grid() -> None:
    torch.manual_seed(5)
    net = Rect(unfold=True).eval()  # 5×2 patches on 10×16 images: 2×8 patches + a class token
    x = torch.rand(2, 1, 10, 16)
    with pytest.raises(ValueError, match=r"Cannot place 17 tokens on a 10×16 image.*grid=\(rows, columns\)"):
        nx.attention_rollout(net, x)
    res = nx.attention_rollout(net, x, grid=(2, 8))
    assert res.extra_tokens == 1
    want = res.tokens[:, 1:].reshape(2, 2, 8).repeat_interleave(5, 1).repeat_interleave(2, 2)
    torch.testing.assert_close(res.attribution, want)


# ---------------------------------------------------------------------------------------------------------
# hygiene and bad inputs
# ---------------------------------------------------------------------------------------------------------


def test_the_model_is_left_as_found_also_when_the_call_raises() -> None:
    model = vit()
    model.train()
    dress(model, None, backward=False)
    x = torch.rand(2, 1, 16, 16)
    with untouched(model, "attention_rollout"):
        nx.attention_rollout(model, x)
    with untouched(model, "attention_rollout(token=99)"), pytest.raises(ValueError, match="`token`=99 is out of range"):
        nx.attention_rollout(model, x, token=99)

    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit = vit()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.vit(x)
            raise RuntimeError("boom")

    boom = Boom()
    with untouched(boom, "a failing model"), pytest.raises(RuntimeError, match="boom"):
        nx.attention_rollout(boom, x)
    # no mode left active, and the fast path is back
    assert not torch.overrides._is_torch_function_mode_enabled()


def test_a_model_with_no_attention_is_refused_clearly() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Softmax(dim=-1))
    with untouched(net), pytest.raises(ValueError, match=r"`model` \(Sequential\) ran no attention.*nn.MultiheadAttention.*"
                                                         r"scaled_dot_product_attention.*softmax"):
        nx.attention_rollout(net, torch.rand(2, 4, 4))


def test_bad_arguments_name_themselves() -> None:
    model = vit()
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="head_fusion"):
        nx.attention_rollout(model, x, head_fusion="median")
    for bad in (1.0, -0.1, True):
        with pytest.raises(ValueError, match=r"`residual` must be a number in \[0, 1\)"):
            nx.attention_rollout(model, x, residual=bad)
    with pytest.raises(TypeError, match="`token` must be a token index"):
        nx.attention_rollout(model, x, token=0.5)
    with pytest.raises(ValueError, match=r"`layers` names \['nope'\].*encoder.layers.0.self_attn"):
        nx.attention_rollout(model, x, layers="nope")
    with pytest.raises(TypeError, match="batch_size"):
        nx.attention_rollout(model, x, batch_size=0.5)
    with pytest.raises(TypeError, match="`inputs` must be"):
        nx.attention_rollout(model, [1, 2])
    with pytest.raises(TypeError, match="model"):
        nx.attention_rollout("vit", x)
    with pytest.raises(ValueError, match="`grid` is for image inputs"):
        nx.attention_rollout(GPT("sdpa"), torch.randint(0, 11, (2, 5)), grid=(1, 5))
    with pytest.raises(TypeError, match="conservation"):
        _ = nx.attention_rollout(model, x).conservation


def test_cross_attention_is_refused_with_the_layers_to_choose() -> None:
    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self_attn = nn.MultiheadAttention(4, 1, batch_first=True)
            self.cross = nn.MultiheadAttention(4, 1, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.self_attn(x, x, x)[0]
            return self.cross(h, x[:, :3], x[:, :3])[0].sum(1)

    net = Cross().eval()
    x = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match=r"\{'cross': \(5, 3\)\}.*not square.*`layers=`"):
        nx.attention_rollout(net, x)
    assert nx.attention_rollout(net, x, layers=["self_attn"]).tokens.shape == (2, 5)


def test_a_key_padding_mask_through_the_encoder_is_honoured() -> None:
    """TransformerEncoder turns padded batches into nested tensors on its fast path; rollout must still see
    the weights, and padded keys get none."""
    torch.manual_seed(6)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2).eval()

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = enc

        def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
            return self.enc(x, src_key_padding_mask=pad)[:, 0]

    x = torch.randn(2, 6, 8)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[0, 4:] = True
    res = nx.attention_rollout(Net(), (x, pad))
    first = res.attention["enc.layers.0.self_attn"]
    assert float(first[0, :, :, 4:].abs().max()) == 0.0
    assert torch.allclose(first.sum(-1), torch.ones(2, 2, 6))


def test_a_causal_encoder_keeps_its_mask() -> None:
    """is_causal with a mask: the weights rollout reads are the masked ones the model used."""
    torch.manual_seed(8)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).double().eval()
    mask = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = enc

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.enc(x, mask=mask, is_causal=True)[:, -1]

    net = Net()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    res = nx.attention_rollout(net, x, token=-1)
    with torch.no_grad():
        h = x
        ref = []
        for lyr in enc.layers:
            q = lyr.self_attn  # the causal weights by hand
            d, hd = q.embed_dim, q.embed_dim // q.num_heads
            wt, b = q.in_proj_weight.numpy(), q.in_proj_bias.numpy()
            qq = (h.numpy() @ wt[:d].T + b[:d]).reshape(3, 5, 2, hd).transpose(0, 2, 1, 3)
            kk = (h.numpy() @ wt[d:2 * d].T + b[d:2 * d]).reshape(3, 5, 2, hd).transpose(0, 2, 1, 3)
            w = softmax_np(qq @ kk.transpose(0, 1, 3, 2) / math.sqrt(hd) + mask.numpy())
            ref.append(w)
            h = lyr(h, src_mask=mask, is_causal=True)
        torch.testing.assert_close(res.output, net(x))
    for got, want in zip(res.attention.values(), ref, strict=True):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    np.testing.assert_allclose(res.tokens.numpy(), reference_rollout(ref)[:, -1], atol=1e-12)
