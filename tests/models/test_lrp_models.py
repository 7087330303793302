"""LRP on real architectures: exactness, conservation through residual adds, every composite, dtypes.

References (Montavon et al. 2019; NOTES.md): with ReLU networks, LRP-ε with ε → 0 *is* gradient × input,
biases (batch norm merged into the conv before it) and proportional residual splits included — checked in
float64 against ``torch.autograd.grad``. A network with no biases anywhere (batch-norm shifts chosen so the
merged bias is 0) is positively homogeneous, so Σ x ⊙ ∂f/∂x = f(x): relevance must be conserved through
``out += identity`` and through functional ``x = x + f(x)``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import nbexplain as nx
from tests.models.reference import embedding_gradient, input_gradient, select, target_scores
from tests.models.state import dress, untouched
from tests.models.zoo import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LRP_CASES = ["resnet18", "bottleneck", "depthwise", "residual", "shared"]
TINY_EPS = 1e-9  # ε → 0: in float64 the ε rule is then the gradient up to ~1e-9 relative


def homogeneous(net: nn.Module) -> nn.Module:
    """No biases anywhere after batch-norm merging: β = μγ/√(σ²+ε), conv/linear biases 0."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.bias.copy_(m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps))
            elif isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.zero_()
    return net


def _setup(name: str, n: int = 3, dtype: torch.dtype = torch.float64, backward_hook: bool = False) -> tuple[nn.Module, Any, torch.Tensor, torch.Tensor]:
    net, case = build(name)
    net = net.to(dtype)
    dress(net, case.hook_layer, backward=backward_hook)
    x = case.x(n)
    if not case.tokens:
        x = x.to(dtype)
    return net, case, x, torch.arange(n) % case.n_classes


def _close_to(got: torch.Tensor, want: torch.Tensor, rel: float) -> None:
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * float(want.abs().max()))


@pytest.mark.parametrize("name", LRP_CASES + ["upsample", "unet", "densenet", "convnext"])
def test_epsilon_to_zero_is_gradient_times_input(name: str) -> None:
    net, case, x, t = _setup(name)
    g, _ = input_gradient(net, x, t)
    comp: Any = "epsilon"
    if name == "upsample":  # nearest upsampling is linear without bias: its gradient is its LRP rule
        comp = {nn.Upsample: nx.rules.Gradient(), nn.Conv2d: nx.rules.Epsilon(TINY_EPS), nn.Linear: nx.rules.Epsilon(TINY_EPS)}
    if name == "convnext":  # no LRP rule of its own for LayerNorm; GELU by gradient × input too (not Pass)
        comp = {nn.LayerNorm: nx.rules.Gradient(), nn.GELU: nx.rules.Gradient(), nn.Conv2d: nx.rules.Epsilon(TINY_EPS),
                nn.Linear: nx.rules.Epsilon(TINY_EPS)}
    with untouched(net):
        res = nx.lrp(net, x, t, composite=comp, epsilon=TINY_EPS)
    _close_to(res.attribution, g * x, 1e-5)


@pytest.mark.parametrize("name", LRP_CASES + ["densenet"])
def test_every_composite_on_a_bias_free_network_conserves_relevance(name: str) -> None:
    net, case, x, t = _setup(name)
    homogeneous(net)
    with torch.no_grad():
        f = target_scores(net(x), t)
    g, _ = input_gradient(net, x, t)
    torch.testing.assert_close((g * x).flatten(1).sum(1), f)  # the premise: Euler's theorem holds
    for comp in nx.COMPOSITES:
        with untouched(net):
            res = nx.lrp(net, x, t, composite=comp, epsilon=TINY_EPS)
        assert res.attribution.shape == x.shape and bool(res.attribution.isfinite().all()), comp
        torch.testing.assert_close(res.output, net(x).detach(), msg=comp)
        ratio = res.total / f
        if comp == "epsilon":
            torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=1e-6)
        elif "alpha" not in comp:  # αβ conserves only where both signs occur: no assertion
            # z⁺ and γ conserve exactly where a neuron's positive contributions do not vanish; after a
            # proportional residual split a branch can carry relevance of the other sign (measured
            # 0.1–4 % on these ResNets), elsewhere they conserve to the stabiliser.
            tol = 0.06 if name in ("resnet18", "bottleneck") else 1e-3
            torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=tol, msg=comp)


@pytest.mark.parametrize("name", ["tuple", "dict"])
def test_multi_output_models_explain_the_selected_output(name: str) -> None:
    net, case, x, t = _setup(name)
    g, _ = input_gradient(net, x, t, case.output)
    with untouched(net):
        res = nx.lrp(net, x, t, composite="epsilon", epsilon=TINY_EPS, output=case.output)
    _close_to(res.attribution, g * x, 1e-5)
    with pytest.raises(ValueError, match="tuple|dict"):  # what the model returned, and how to choose
        with untouched(net):
            nx.lrp(net, x, t)


@pytest.mark.parametrize("name", ["V", "vit"])
def test_the_suggested_gradient_rule_for_attention_works(name: str) -> None:
    net, case, x, t = _setup(name, n=2)
    try:
        nx.lrp(net, x, t)
    except nx.UnsupportedModuleError as err:  # the error names the module: full dotted name and type
        names = {n: type(m).__name__ for n, m in net.named_modules() if n}
        named = any(f"'{n}' ({k})" in str(err) for n, k in names.items())
        assert named or "strict=False" in str(err), str(err)  # or: functional ops, and the way out
    comp = {nn.MultiheadAttention: nx.rules.Gradient(), nn.LayerNorm: nx.rules.Gradient(),
            nn.Linear: nx.rules.Epsilon(TINY_EPS), nn.Conv2d: nx.rules.Epsilon(TINY_EPS)}
    g, _ = input_gradient(net, x, t)
    with untouched(net):
        res = nx.lrp(net, x, t, composite=comp, strict=False)
    _close_to(res.attribution, g * x, 1e-5)  # every rule follows the gradient: gradient × input


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_token_ids_through_the_embedding_with_the_gradient_rule_on_the_rnn(name: str) -> None:
    net, case, ids, t = _setup(name)
    rnn = nn.LSTM if name == "lstm" else nn.GRU
    try:
        nx.lrp(net, ids, t, embedding="emb")
    except nx.UnsupportedModuleError as err:
        assert f"'rnn' ({rnn.__name__})" in str(err) and "Gradient" in str(err), str(err)
        assert "Backward0" not in str(err)  # autograd node names mean nothing to a user
    g, e, _ = embedding_gradient(net, ids, t, "emb")
    with untouched(net):
        res = nx.lrp(net, ids, t, composite={rnn: nx.rules.Gradient(), nn.Linear: nx.rules.Epsilon(TINY_EPS)}, embedding="emb")
    assert res.attribution.shape == ids.shape
    _close_to(res.attribution, (g * e).sum(-1), 1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("composite", "min_cos"), [("epsilon", 0.8), ("epsilon_plus_flat", 0.98)])
def test_half_precision_relevance_is_finite_and_close_to_float32(dtype: torch.dtype, composite: str, min_cos: float) -> None:
    net, case, x, t = _setup("resnet18", dtype=dtype)
    # the reference: the same rounded weights and inputs, explained in float32
    want = nx.lrp(build("resnet18")[0].to(dtype).float(), x.float(), t, composite=composite).attribution
    with untouched(net):
        res = nx.lrp(net, x, t, composite=composite)
    rel = res.attribution.float()
    assert bool(rel.isfinite().all()), f"{dtype} LRP returned non-finite relevance"
    # Measured with bfloat16 arithmetic: cosine ≥ 0.91 (ε, a gradient × input: noisy), ≥ 0.998 (z⁺/flat).
    cos = torch.nn.functional.cosine_similarity(rel.flatten(1), want.flatten(1), dim=1)
    assert bool((cos > min_cos).all()), cos


def test_float64_and_channels_last_give_the_float32_relevance() -> None:
    net, case, x, t = _setup("resnet18", dtype=torch.float32)
    want = nx.lrp(net, x, t, composite="epsilon_plus_flat").attribution
    with untouched(net):
        got = nx.lrp(net, x.to(memory_format=torch.channels_last), t, composite="epsilon_plus_flat").attribution
    _close_to(got, want, 1e-4)
    net64 = net.double()
    with untouched(net64):
        got64 = nx.lrp(net64, x, t, composite="epsilon_plus_flat").attribution
    _close_to(got64.float(), want, 1e-4)


def test_a_users_full_backward_hook_is_handled_or_named() -> None:
    plain, case, x, t = _setup("resnet18", dtype=torch.float32)
    want = nx.lrp(plain, x, t).attribution
    net, _, _, _ = _setup("resnet18", dtype=torch.float32, backward_hook=True)
    try:
        with untouched(net):
            got = nx.lrp(net, x, t).attribution
    except (ValueError, TypeError) as err:
        assert "hook" in str(err) and "fc" in str(err), str(err)
    else:
        _close_to(got, want, 1e-5)


def test_lrp_calls_that_raise_leave_the_model_as_found() -> None:
    net, case, x, t = _setup("resnet18", dtype=torch.float32, backward_hook=True)
    with pytest.raises(ValueError, match="target"):
        with untouched(net):
            nx.lrp(net, x, 99, canonizers="auto", strict=False)
    with pytest.raises(ValueError, match="layer1.0.bn9"):
        with untouched(net):
            nx.lrp(net, x, 0, layers=["layer1.0.bn9"])
    bad = x[:, :2]  # two channels for a three-channel stem: the forward pass itself raises
    with pytest.raises((RuntimeError, ValueError)):
        with untouched(net):
            nx.lrp(net, bad, 0)
    out = select(net(x), None)
    assert out.shape == (3, 10)
