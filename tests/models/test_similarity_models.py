"""Similarity grids on real architectures, against nx.svcca / nx.cka on cloned layer outputs.

The issue's numbers: on a ResNet bn layer the grid read 0.607 where the produced features give 0.768 (the
hook kept a tensor that ``out += identity`` and the in-place ReLU rewrote), and on a transformer block read
channel-first 0.014 where feature-last gives 0.674.
"""

from __future__ import annotations

import pytest
import torch

import nbexplain as nx
from nbexplain import architectures as arch
from tests.models.reference import channel_features, produced, token_features
from tests.models.state import dress, untouched
from tests.models.zoo import V, build

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    if name == "resnet18":
        return arch.resnet18(width=8, seed=0), arch.resnet18(width=8, seed=1)
    torch.manual_seed(0)
    a = V().eval()
    torch.manual_seed(1)
    return a, V().eval()


@pytest.mark.parametrize(("name", "layers"), [("resnet18", ["layer1.0.bn2", "layer1.1.bn1"]), ("V", ["block"])])
def test_grid_equals_pairwise_metrics_of_the_produced_features(name: str, layers: list[str]) -> None:
    a, b = _pair(name)
    x = torch.randn(8, *( (3, 32, 32) if name == "resnet18" else (1, 16, 16)), generator=torch.Generator().manual_seed(0))
    read = token_features if name == "V" else channel_features
    fa = {n: read(o[0]).double() for n, o in produced(a, x, layers).items()}
    fb = {n: read(o[0]).double() for n, o in produced(b, x, layers).items()}
    dress(a, "fc" if name == "resnet18" else "patch")
    with untouched(a), untouched(b):
        res = nx.model_similarity(a, b, x, layers, metric=["svcca", "cka"], progress=False)
    for i, rn in enumerate(layers):
        for j, cn in enumerate(layers):
            # float64 on identical features: only the order of float64 sums differs
            want_s = nx.svcca(fa[rn], fb[cn], keep=0.99).mean
            want_c = nx.cka(fa[rn], fb[cn]).value
            assert float(res.grids["svcca"][0, i, j]) == pytest.approx(want_s, abs=1e-6), (rn, cn)
            assert float(res.grids["cka"][0, i, j]) == pytest.approx(want_c, abs=1e-6), (rn, cn)


def test_non_finite_inputs_are_a_clear_error() -> None:
    net, case = build("conv_bn_relu")
    x = case.x(4)
    x[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="(?i)finite|nan"):
        with untouched(net):
            nx.similarity_grid([net], x, ["0", "1"], progress=False)
    x[1, 0, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="(?i)finite|inf"):
        with untouched(net):
            nx.model_similarity(net, net, x, ["0"], progress=False)


def test_float64_model_and_channels_last_inputs_give_the_float32_grid() -> None:
    net, case = build("resnet18")
    x = case.x(4)
    layers = ["layer1.0.bn2", "layer2.0.bn1"]
    want = nx.similarity_grid([net], x, layers, metric=["svcca", "cka"], progress=False)
    got_cl = nx.similarity_grid([net], x.to(memory_format=torch.channels_last), layers, metric=["svcca", "cka"],
                                progress=False)
    net64 = net.double()
    with untouched(net64):
        got64 = nx.similarity_grid([net64], x, layers, metric=["svcca", "cka"], progress=False)
    for m in ("svcca", "cka"):
        torch.testing.assert_close(got_cl.grids[m], want.grids[m], rtol=0, atol=1e-4)
        torch.testing.assert_close(got64.grids[m], want.grids[m], rtol=0, atol=1e-4)


def test_grid_call_that_raises_leaves_models_as_found() -> None:
    net, case = build("resnet18")
    dress(net, case.hook_layer)
    x = case.x(2)

    def batches():
        yield x
        raise RuntimeError("data loader failed")

    with pytest.raises(RuntimeError, match="data loader failed"):
        with untouched(net):
            nx.similarity_grid([net], batches(), [case.channel_layer], progress=False)
    with pytest.raises(ValueError, match="layer1.0.bnn2"):
        with untouched(net):
            nx.similarity_grid([net], x, ["layer1.0.bnn2"], progress=False)
