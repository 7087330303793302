"""gradient, gradient_x_input, smoothgrad and integrated_gradients on real architectures, against autograd.

References: ``torch.autograd.grad`` of the selected output's target score (``output=0`` / ``"logits"`` for
tuple and dict models); for token ids, the gradient at the embedding's output summed over its features;
SmoothGrad rebuilt from its documented noise stream; integrated gradients by our own Gauss–Legendre
quadrature (numpy's nodes) and completeness, exact on a bias-free ReLU network (f is linear on the ray).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import nbexplain as nx
from tests.models.reference import embedding_gradient, input_gradient, replaced_output, select, target_scores
from tests.models.state import dress, untouched
from tests.models.zoo import IMAGE_CASES, build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRAD_CASES = IMAGE_CASES + ["tuple", "dict", "convtranspose"]


def _kw(case: Any) -> dict[str, Any]:
    return {} if case.output is None else {"output": case.output}


def _close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-4, msg: str = "") -> None:
    """float32 autograd through the same kernels: differences are rounding, scaled by the map's size."""
    scale = float(want.abs().max()) or 1.0
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * scale, msg=msg or None)


def _setup(name: str, n: int = 3) -> tuple[torch.nn.Module, Any, torch.Tensor, torch.Tensor]:
    net, case = build(name)
    x = case.x(n)
    t = torch.arange(n) % max(case.n_classes, 1)
    dress(net, case.hook_layer)
    return net, case, x, t


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradient_family_equals_autograd(name: str) -> None:
    net, case, x, t = _setup(name)
    want, _ = input_gradient(net, x, t, case.output)
    with untouched(net):
        g = nx.gradient(net, x, t, **_kw(case)).attribution
        gx = nx.gradient_x_input(net, x, t, **_kw(case)).attribution
        sg = nx.smoothgrad(net, x, t, noise_level=0.1, n_samples=3, seed=0, **_kw(case)).attribution
    _close(g, want)
    _close(gx, want * x)
    # SmoothGrad as documented: per sample i, one (n_samples, …) float32 block of unit noise from a
    # generator seeded with `seed`, scaled by σ = noise_level · (max x_i − min x_i).
    gen = torch.Generator().manual_seed(0)
    ref = torch.empty_like(x)
    for i in range(x.shape[0]):
        eps = torch.randn((3, *x.shape[1:]), generator=gen)
        sigma = 0.1 * float(x[i].max() - x[i].min())
        gi, _ = input_gradient(net, x[i : i + 1] + sigma * eps, t[i].repeat(3), case.output)
        ref[i] = gi.double().mean(0).float()
    _close(sg, ref, msg="smoothgrad")


def _gauss_legendre_ig(net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, steps: int, output: Any) -> torch.Tensor:
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    acc = torch.zeros_like(x, dtype=torch.float64)
    for a, w in zip((nodes + 1) / 2, weights / 2, strict=True):
        g, _ = input_gradient(net, float(a) * x, t, output)
        acc += float(w) * g.double()
    return (acc * x.double()).to(x.dtype)


@pytest.mark.parametrize("name", ["resnet18", "vit", "V", "depthwise", "residual", "tuple", "dict"])
def test_integrated_gradients_quadrature_and_completeness(name: str) -> None:
    net, case, x, t = _setup(name)
    with untouched(net):
        res_ig = nx.integrated_gradients(net, x, t, steps=8, **_kw(case))
        attr, err = res_ig.attribution, res_ig.error
    _close(attr, _gauss_legendre_ig(net, x, t, 8, case.output), msg="quadrature")
    with torch.no_grad():
        fx = target_scores(select(net(x), case.output), t).double()
        fb = target_scores(select(net(torch.zeros_like(x)), case.output), t).double()
    gap = attr.double().flatten(1).sum(1) - (fx - fb)
    torch.testing.assert_close(err.double(), gap, rtol=1e-4, atol=1e-5 * float((fx - fb).abs().max()))
    if name == "residual":  # bias-free ReLU net: f(αx) = αf(x), so the quadrature is exact
        torch.testing.assert_close(gap, torch.zeros_like(gap), rtol=0, atol=1e-5 * float(fx.abs().max()))


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("embedding", ["emb", None])
def test_token_ids_are_attributed_through_the_embedding(name: str, embedding: str | None) -> None:
    net, case, ids, t = _setup(name)
    g, e, fx = embedding_gradient(net, ids, t, "emb")
    with untouched(net):
        grad = nx.gradient(net, ids, t, embedding=embedding).attribution
        gxi = nx.gradient_x_input(net, ids, t, embedding=embedding).attribution
        sg0 = nx.smoothgrad(net, ids, t, noise_level=0.0, n_samples=2, embedding=embedding).attribution
        res_ig = nx.integrated_gradients(net, ids, t, steps=16, embedding=embedding)
        ig, err = res_ig.attribution, res_ig.error
    assert grad.shape == gxi.shape == sg0.shape == ig.shape == ids.shape
    # sensitivities are reduced to the per-token L2 norm, contributions are summed (sensitivity.py docstring)
    _close(grad, g.norm(dim=-1))
    _close(gxi, (g * e).sum(-1))
    _close(sg0, g.norm(dim=-1), msg="smoothgrad without noise is the gradient")
    # completeness in embedding space, against a zero embedding (the baseline of token attributions)
    fb = target_scores(replaced_output(net, ids, "emb", torch.zeros_like(e)), t).double()
    gap = ig.double().sum(1) - (fx.double() - fb)
    torch.testing.assert_close(err.double(), gap, rtol=1e-4, atol=1e-6)
    assert float(gap.abs().max()) < 1e-2 * float((fx.double() - fb).abs().max())


class TwoEmbeddings(torch.nn.Module):
    """Token ids read by two embeddings (tokens and a second table): which one to attribute is ambiguous."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(20, 6)
        self.aux = torch.nn.Embedding(20, 6)
        self.head = torch.nn.Linear(6, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head((self.tok(ids) + self.aux(ids)).mean(1))


def test_token_ids_with_an_ambiguous_or_unknown_embedding_are_clear_errors() -> None:
    torch.manual_seed(0)
    net = TwoEmbeddings().eval()
    ids = torch.randint(0, 20, (2, 5))
    with pytest.raises(ValueError, match="embedding="):
        with untouched(net):
            nx.gradient(net, ids, 0)
    with untouched(net):
        got = nx.gradient_x_input(net, ids, 0, embedding="aux").attribution
    g, e, _ = embedding_gradient(net, ids, torch.zeros(2, dtype=torch.long), "aux")
    _close(got, (g * e).sum(-1))
    with pytest.raises(ValueError, match="embs"):
        with untouched(net):
            nx.gradient(net, ids, 0, embedding="embs")


@pytest.mark.parametrize("name", ["resnet18", "dict"])
def test_gradient_calls_that_raise_leave_the_model_as_found(name: str) -> None:
    net, case, x, t = _setup(name)
    calls = {
        "gradient": lambda **kw: nx.gradient(net, x, 99, **kw).attribution,
        "smoothgrad": lambda **kw: nx.smoothgrad(net, x, 99, n_samples=2, **kw).attribution,
        "integrated_gradients": lambda **kw: nx.integrated_gradients(net, x, 99, steps=2, **kw).attribution,
    }
    for fn in calls.values():
        with pytest.raises(ValueError, match="target"):
            with untouched(net):
                fn(**_kw(case))
    if case.output is not None:
        for fn in calls.values():
            with pytest.raises(ValueError, match="logits"):  # the error lists what the model returned
                with untouched(net):
                    fn()


def test_float64_and_channels_last_give_the_float32_gradient() -> None:
    net, case, x, t = _setup("resnet18")
    want = nx.gradient(net, x, t).attribution
    got_cl = nx.gradient(net, x.to(memory_format=torch.channels_last), t).attribution
    _close(got_cl, want, rel=1e-4)
    net64 = net.double()
    with untouched(net64):
        got64 = nx.gradient(net64, x, t).attribution
        ig64 = nx.integrated_gradients(net64, x, t, steps=4).attribution
    _close(got64.float(), want, rel=1e-4)
    _close(ig64.float(), nx.integrated_gradients(net.float(), x, t, steps=4).attribution, rel=1e-4)
