"""nx.lrp on the architectures people bring: residual nets, half precision, RNNs, attention, tuple/dict outputs,
token ids, user backward hooks — each checked against an independent computation and for model hygiene."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.architectures import DictOutput, TupleOutput, resnet18, resnet_bottleneck, rnn_classifier
from nbexplain.core.attribution.lrp.composites import Sum
from nbexplain.core.attribution.lrp.ops import POOLS
from nbexplain.zoo import cnn
from tests.core.test_lrp import _assert_same, _state

COMPOSITES = ("epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat")


_TINY_NORM = {Sum: nx.rules.Norm(1e-15), POOLS: nx.rules.Norm(1e-15)}


def _images(n: int = 3, size: int = 32, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _grad_x_input(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    xi = x.clone().requires_grad_(True)
    out = model(xi)
    return torch.autograd.grad(out[torch.arange(len(x)), target].sum(), xi)[0] * x


# ------------------------------------------------------------------------------------------ residual nets


@pytest.mark.parametrize("make", [lambda: resnet18(width=8), resnet_bottleneck], ids=["resnet18", "bottleneck"])
def test_resnet_epsilon_to_zero_equals_gradient_times_input(make) -> None:
    """ReLU net, batch norm with non-trivial running statistics, in-place ReLU and `out += identity`: LRP-ε with
    ε → 0 (biases in z, residual sums split in proportion) is exactly gradient × input."""
    model = make().double()
    x = _images(dtype=torch.float64)
    target = torch.tensor([1, 4, 7])
    want = _grad_x_input(copy.deepcopy(model), x, target)
    scale = float(want.abs().max())
    # the named composite: its pools and residual sums keep their 1e-9 stabiliser
    res = nx.lrp(model, x, target, composite="epsilon", epsilon=1e-14)
    torch.testing.assert_close(res.attribution, want, rtol=1e-5, atol=1e-6 * scale)
    # every stabiliser → 0: equal to float64 rounding
    tiny = {(nn.Conv2d, nn.Linear): nx.rules.Epsilon(1e-14), **_TINY_NORM}
    res = nx.lrp(model, x, target, composite=tiny)
    torch.testing.assert_close(res.attribution, want, rtol=1e-7, atol=1e-8 * scale)


@pytest.mark.parametrize("make", [lambda: resnet18(width=8), resnet_bottleneck], ids=["resnet18", "bottleneck"])
def test_resnet_conserves_relevance_through_residual_adds(make) -> None:
    """With biases in the rules (ε → 0), input relevance + what the biases absorb (Σ_layers b·∂f/∂z, computed by
    autograd on the unmerged model) is the target score, through every residual add. Without biases every layer
    hands on what it receives, up to neurons whose only non-zero input is their bias (dead receptive fields)."""
    model = make().double()
    x = _images(dtype=torch.float64, seed=1)
    with_bias = nx.lrp(model, x, 3, composite={(nn.Conv2d, nn.Linear): nx.rules.Epsilon(1e-14), **_TINY_NORM})
    absorbed = _absorbed_by_biases(model, x, 3)
    assert float(absorbed.abs().min()) > 1e-3  # the biases do absorb relevance
    torch.testing.assert_close(with_bias.total + absorbed, with_bias.output_relevance, rtol=1e-9, atol=1e-12)

    stages = ["layer1", "layer2", "layer3", "layer4"]
    res = nx.lrp(model, x, 3, composite={(nn.Conv2d, nn.Linear): nx.rules.ZeroRule(bias=False), **_TINY_NORM}, layers=stages)
    for name in stages:
        torch.testing.assert_close(res.layers[name].flatten(1).sum(1), res.output_relevance, rtol=1e-5, atol=1e-10)
    torch.testing.assert_close(res.total, res.output_relevance.double(), rtol=1e-5, atol=1e-10)


def _absorbed_by_biases(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Σ over layers of (effective bias)·∂f/∂z: every batch norm's shift β − μγ/√(σ²+ε) (the bias of the merged
    conv) and the final layer's bias, read with tensor hooks on a copy without in-place ReLUs."""
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    grads: list[tuple[torch.Tensor, torch.Tensor]] = []

    def keep(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if isinstance(module, nn.BatchNorm2d):
            scale = module.weight / torch.sqrt(module.running_var + module.eps)
            bias = (module.bias - module.running_mean * scale).view(1, -1, 1, 1)
        else:
            bias = module.bias.view(1, -1)
        out.register_hook(lambda g, bias=bias: grads.append((g, bias)))

    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d) or m is ref.fc:
            m.register_forward_hook(keep)
    xi = x.clone().requires_grad_(True)
    ref(xi)[:, target].sum().backward()
    return sum((g * b).flatten(1).sum(1) for g, b in grads).detach()


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("make", [lambda: resnet18(width=8), resnet_bottleneck], ids=["resnet18", "bottleneck"])
def test_every_composite_gives_finite_maps_on_resnets(make, composite: str) -> None:
    model = make()
    res = nx.lrp(model, _images(2, seed=2).abs(), torch.tensor([0, 5]), composite=composite)
    assert res.attribution.shape == (2, 3, 32, 32)
    assert torch.isfinite(res.attribution).all() and float(res.attribution.abs().sum()) > 0


class _RaisesLate(nn.Module):
    """A ResNet that raises after its residual stages ran (batch norms merged, sums split, rules hooked)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = resnet18(width=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        n.layer2(n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(x))))))
        raise RuntimeError("boom")


@pytest.mark.parametrize("raises", [False, True])
def test_resnet_is_left_bit_for_bit_as_found(raises: bool) -> None:
    model = _RaisesLate() if raises else resnet18(width=8)
    model.train()
    for p in list(model.parameters())[::3]:
        p.requires_grad_(False)
    hook = model.net.layer1 if raises else model.layer1
    hook.register_full_backward_hook(lambda m, gi, go: None)
    before = _state(model)
    for composite in ("epsilon_plus_flat", "epsilon_alpha2_beta1"):
        if raises:
            with pytest.raises(RuntimeError, match="boom"):
                nx.lrp(model, _images(2), 1, composite=composite)
        else:
            nx.lrp(model, _images(2), 1, composite=composite)
        _assert_same(before, _state(model))
    assert all(m.training for m in model.modules())


def test_one_forward_pass_and_no_parameter_swap() -> None:
    """Batch norms are folded in during the explained forward pass: no extra trace pass over the model, and the
    layers run with their own parameters (nothing is swapped in and out)."""
    model = resnet18(width=8)
    calls, swapped = [], []
    originals = {id(m): m.weight for m in model.modules() if isinstance(m, nn.Conv2d)}

    def seen(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        calls.append(1)

    def same(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        swapped.append(module.weight is not originals[id(module)])

    model.register_forward_hook(seen)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(same)
    nx.lrp(model, _images(2), 1)
    assert len(calls) == 1
    assert swapped and not any(swapped)


# ------------------------------------------------------------------------------------------ half precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_half_precision_model_matches_float32_and_is_not_changed(dtype: torch.dtype, composite: str) -> None:
    """float16 used to give all-NaN relevance (ε = 1e-9 underflows, a pool over a dead channel is 0/0). Half models
    are explained in float32: the result equals that of the same (rounded) weights in float32."""
    half = resnet18(width=8).to(dtype)
    as_float = copy.deepcopy(half).float()
    x = _images(2, seed=3).abs()
    before = _state(half)
    res = nx.lrp(half, x, torch.tensor([2, 6]), composite=composite)
    want = nx.lrp(as_float, x, torch.tensor([2, 6]), composite=composite)
    assert res.attribution.dtype == torch.float32 and torch.isfinite(res.attribution).all()
    torch.testing.assert_close(res.attribution, want.attribution, rtol=1e-4, atol=1e-6 * float(want.attribution.abs().max()))
    torch.testing.assert_close(res.output_relevance, want.output_relevance)
    _assert_same(before, _state(half))
    assert all(p.dtype == dtype for p in half.parameters())


def test_half_precision_dense_average_pool_over_a_dead_channel() -> None:
    """The 0/0 case itself: an average pool over an all-zero (dead ReLU) channel."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([0.0, -100.0]))  # channel 1 is dead
    net = net.half().eval()
    res = nx.lrp(net, torch.rand(2, 1, 6, 6), 0, composite="epsilon")
    assert torch.isfinite(res.attribution).all()


def test_non_finite_relevance_is_an_error_not_a_result() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[2].weight.fill_(1e308)  # the output overflows to inf
    with pytest.raises(FloatingPointError, match="non-finite relevance"):
        nx.lrp(net, torch.ones(1, 3, dtype=torch.float64), 0, composite="epsilon")


# ------------------------------------------------------------------------------------------ RNNs, attention


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_layer_names_itself_and_takes_the_gradient_rule(cell: str) -> None:
    model = rnn_classifier(cell)
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(0))
    kind = "LSTM" if cell == "lstm" else "GRU"
    with pytest.raises(nx.UnsupportedModuleError, match=rf"'rnn' \({kind}\).*nx\.rules\.Gradient\(\)"):
        nx.lrp(model, ids, 1)
    eps = 1e-6
    res = nx.lrp(model, ids, 1, composite={"rnn": nx.rules.Gradient(eps), nn.Linear: nx.rules.Epsilon(eps)})
    assert res.attribution.shape == (3, 7)

    # reference in float64 from the rule's definitions: ε at the head, gradient × input through the RNN
    ref = copy.deepcopy(model).double()
    e = ref.emb(ids).detach().requires_grad_(True)
    seq, _ = ref.rnn(e)
    h = seq[:, -1].detach()
    z = ref.head(h)
    r_out = torch.zeros_like(z)
    r_out[:, 1] = z[:, 1].detach()
    stab = lambda t: t + eps * torch.where(t >= 0, 1.0, -1.0).to(t)  # noqa: E731
    r_h = h * ((r_out / stab(z.detach())) @ ref.head.weight)
    seed = torch.zeros_like(seq)
    seed[:, -1] = r_h / stab(h)
    want = (torch.autograd.grad(seq, e, seed)[0] * e).sum(-1)
    torch.testing.assert_close(res.attribution.double(), want, rtol=1e-4, atol=1e-6)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(5, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        a, _ = self.attn(h, h, h)
        return self.head(a[:, 0])


def test_multihead_attention_is_named_and_takes_the_gradient_rule() -> None:
    torch.manual_seed(0)
    model = _Attention().eval()
    x = torch.randn(2, 4, 5)
    with pytest.raises(nx.UnsupportedModuleError, match=r"'attn' \(MultiheadAttention\)"):
        nx.lrp(model, x, 0)
    res = nx.lrp(model, x, 0, composite={nn.MultiheadAttention: nx.rules.Gradient(), nn.Linear: nx.rules.Epsilon()})
    assert res.attribution.shape == x.shape and torch.isfinite(res.attribution).all()
    # gradient × input through the attention block, ε rules on the Linear layers: for ε → 0 and a module that
    # is linear in nothing, the relevance still follows the chain x ⊙ ∂(...)ᵀ(R/z) — check against autograd
    xi = x.clone().double().requires_grad_(True)
    ref = copy.deepcopy(model).double()
    h = ref.proj(xi)
    hd = h.detach().requires_grad_(True)
    a, _ = ref.attn(hd, hd, hd)
    a0 = a[:, 0].detach()
    z = ref.head(a0)
    stab = lambda t: t + 1e-6 * torch.where(t >= 0, 1.0, -1.0).to(t)  # noqa: E731
    r = torch.zeros_like(z)
    r[:, 0] = z[:, 0].detach()
    r_a0 = a0 * ((r / stab(z.detach())) @ ref.head.weight)
    seed = torch.zeros_like(a)
    seed[:, 0] = r_a0 / stab(a0)
    r_h = torch.autograd.grad(a, hd, seed)[0] * hd
    want = torch.autograd.grad(h, xi, r_h / stab(h.detach()))[0] * xi
    torch.testing.assert_close(res.attribution.double(), want.detach(), rtol=1e-4, atol=1e-6)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * 2


def test_functional_operations_are_named_with_their_module() -> None:
    net = nn.Sequential(nn.Linear(4, 4), _Block(), nn.Linear(4, 2))
    with pytest.raises(nx.UnsupportedModuleError, match=r"MulBackward0.*'1' \(_Block\)"):
        nx.lrp(net, torch.rand(2, 4), 0)
    assert nx.lrp(net, torch.rand(2, 4), 0, composite={_Block: nx.rules.Gradient(), nn.Linear: nx.rules.Epsilon()}).attribution.shape == (2, 4)


def test_user_backward_hooks_are_suspended_and_restored() -> None:
    """A user's full backward hook used to make LRP refuse the model (its autograd node is no rule); now LRP
    runs as without it, the hook sees no relevance, and it is back in place afterwards."""
    model = resnet18(width=8)
    x = _images(2, seed=4)
    want = nx.lrp(model, x, 1).attribution
    calls: list[str] = []
    model.layer2.register_full_backward_hook(lambda m, gi, go: calls.append("full"))
    model.fc.register_full_backward_pre_hook(lambda m, go: calls.append("pre"))
    before = _state(model)
    res = nx.lrp(model, x, 1)
    torch.testing.assert_close(res.attribution, want)
    assert calls == []
    _assert_same(before, _state(model))
    model(x.clone().requires_grad_(True)).sum().backward()
    assert sorted(calls) == ["full", "pre"]


# ------------------------------------------------------------------------------------------ output=, embedding=


def test_tuple_and_dict_outputs_are_chosen_with_output() -> None:
    body, head = resnet18(width=8), nn.Linear(10, 4)
    x = _images(2, seed=5)
    tup, dic = TupleOutput(body, head).eval(), DictOutput(body, head).eval()
    with pytest.raises(ValueError, match=r"tuple of 2: \[0\] Tensor\(2, 4\).*output="):
        nx.lrp(tup, x, 1)
    with pytest.raises(ValueError, match="not a key"):
        nx.lrp(dic, x, 1, output="scores")
    features = nx.lrp(tup, x, 1, output=1)
    torch.testing.assert_close(features.attribution, nx.lrp(body, x, 1).attribution)
    logits = nx.lrp(tup, x, 3, output=0, composite="epsilon")
    torch.testing.assert_close(logits.attribution, nx.lrp(nn.Sequential(body, head), x, 3, composite="epsilon").attribution)
    torch.testing.assert_close(nx.lrp(dic, x, 3, output="logits", composite="epsilon").attribution, logits.attribution)
    torch.testing.assert_close(nx.lrp(dic, x, 3, output=lambda o: o["logits"], composite="epsilon").attribution, logits.attribution)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_token_ids_are_attributed_through_the_embedding(cell: str) -> None:
    model = rnn_classifier(cell)
    ids = torch.randint(0, 50, (4, 6), generator=torch.Generator().manual_seed(1))
    comp = {nn.LSTM: nx.rules.Gradient(), nn.GRU: nx.rules.Gradient(), nn.Linear: nx.rules.Epsilon()}
    auto = nx.lrp(model, ids, 2, composite=comp)
    named = nx.lrp(model, ids, 2, composite=comp, embedding="emb")
    assert auto.attribution.shape == (4, 6)
    torch.testing.assert_close(auto.attribution, named.attribution)
    with pytest.raises(ValueError, match="Did you mean 'emb'"):
        nx.lrp(model, ids, 2, composite=comp, embedding="embb")


class _BagOfTokens(nn.Module):
    """Token and position embeddings (two nn.Embedding), summed per token, flattened into a bias-free Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(20, 4)
        self.pos = nn.Embedding(5, 4)
        self.flat = nn.Flatten()
        self.head = nn.Linear(20, 3, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = self.pos(torch.arange(ids.shape[1]))  # also an nn.Embedding, not called with the input
        return self.head(self.flat(self.tok(ids) + positions))


def test_token_relevance_is_conserved_and_the_input_embedding_is_found() -> None:
    torch.manual_seed(0)
    model = _BagOfTokens().double().eval()
    ids = torch.randint(0, 20, (3, 5))
    res = nx.lrp(model, ids, 1, composite={nn.Linear: nx.rules.ZeroRule()}, strict=False)
    assert res.attribution.shape == (3, 5)
    # a bias-free linear read-out of e = tok + pos: LRP-0 relevance at e is e ⊙ ∂f/∂e (Σ = f). The functional
    # `+ positions` splits it in proportion to the summands (strict=False's rule for sums), so the tokens get
    # tok ⊙ ∂f/∂e — gradient × input at the token embedding's output, what nx.gradient_x_input(embedding=…)
    # reads — and the position embedding keeps pos ⊙ ∂f/∂e, like a bias. (Before, relevance followed the
    # gradient through the sum and the tokens also received the positions' share.)
    tok = model.tok(ids).detach().requires_grad_(True)
    pos = model.pos.weight.detach()
    f = model.head((tok + pos).flatten(1))[:, 1]
    g = torch.autograd.grad(f.sum(), tok)[0]
    torch.testing.assert_close(res.attribution, (g * tok).sum(-1).detach())
    torch.testing.assert_close(res.total + (g * pos).flatten(1).sum(1).double(), res.output_relevance.double())


def test_integer_input_without_embedding_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="no nn.Embedding.*embedding="):
        nx.lrp(cnn(width=4, hidden=8), torch.ones(2, 1, 28, 28, dtype=torch.long), 0)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["positive-bn-scale", "a-negative-bn-scale"])
@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_batch_norm_folded_on_the_fly_equals_a_model_with_merged_weights(composite: str, sign: float) -> None:
    """The batch norm is folded into the conv during the pass (its factor applied on the activation side when
    positive); the result equals that of a model whose conv already carries the merged weights."""
    torch.manual_seed(3)
    conv, bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.weight[2] *= sign
        bn.bias.uniform_(-0.3, 0.3)
    head = [nn.ReLU(), nn.Conv2d(6, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)]
    net = nn.Sequential(conv, bn, *head).double().eval()
    with torch.no_grad():
        net[4].running_var.uniform_(0.5, 2.0)
    merged = copy.deepcopy(net)
    for i in (0, 3):
        c, b = merged[i], merged[i + 1]
        scale = b.weight / torch.sqrt(b.running_var + b.eps)
        with torch.no_grad():
            c.weight.mul_(scale.view(-1, 1, 1, 1))
            c.bias.copy_((c.bias - b.running_mean) * scale + b.bias)
        merged[i + 1] = nn.Identity()
    x = _images(2, size=8, seed=6, dtype=torch.float64)
    a = nx.lrp(net, x, 1, composite=composite)
    b = nx.lrp(merged, x, 1, composite=composite, canonizers=None)
    torch.testing.assert_close(a.attribution, b.attribution, rtol=1e-9, atol=1e-12)
