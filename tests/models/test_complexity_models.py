"""decompose_complexity on real architectures: one tiny case per family, checked against cloned features.

The feature decomposed must be the value the layer produced (a ResNet bn output is rewritten in place by
``out += identity`` and the ReLU after it). With ``metric_samples`` above the split sizes every sample is
used (float targets: no per-class subsampling), so the module's definitions can be recomputed here from ``reconstructions``/``components`` and the
cloned feature: R² ``1 − E‖f − g_l‖² / Var(f)`` on the test split and energy ``Var(c_l) / Var(f)`` on the
training split, ``Var(z) = E‖z − E z‖²``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import nbexplain as nx
from nbexplain import architectures as arch
from tests.models.reference import produced
from tests.models.state import dress, untouched
from tests.models.zoo import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(orders=(1, 2), epochs=1, width=8, train_batch_size=16, reference_model=False, metric_samples=1000,
            progress=False)


def _var(z: torch.Tensor) -> float:
    z = z.double().flatten(1)
    return float((z - z.mean(0)).pow(2).sum(1).mean())


def _case(name: str) -> tuple[torch.nn.Module, Any, str, dict[str, Any], torch.Tensor]:
    if name == "resnet18":
        net = arch.resnet18(width=4)
        return net, build("resnet18")[1], "layer1.0.bn2", {}, torch.randn(48, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    net, case = build(name)
    layer = {"V": "block", "tuple": "body.1"}[name]
    kw: dict[str, Any] = {"family": "dense"} if name == "V" else {"output": 0}
    return net, case, layer, kw, case.x(48)


@pytest.mark.parametrize("name", ["resnet18", "V", "tuple"])
def test_decomposes_the_feature_the_layer_produced(name: str) -> None:
    net, case, layer, kw, x = _case(name)
    dress(net, case.hook_layer)
    # float targets (MSE task loss): the metrics then use the first samples, i.e. all of them here
    y = torch.randn(48, case.n_classes, generator=torch.Generator().manual_seed(1))
    x_tr, y_tr, x_te, y_te = x[:32], y[:32], x[32:], y[32:]
    with untouched(net):
        res = nx.decompose_complexity(net, (x_tr, y_tr), (x_te, y_te), layer, **FAST, **kw)
    f_te = produced(net, x_te, [layer])[layer][0]
    f_tr = produced(net, x_tr, [layer])[layer][0]
    torch.testing.assert_close(res.features(x_te), f_te, rtol=1e-5, atol=1e-6)
    g = res.reconstructions(x_te)
    for i in range(len(res.orders)):
        r2 = 1 - float((f_te.double() - g[i].double()).flatten(1).pow(2).sum(1).mean()) / _var(f_te)
        assert float(res.fit_quality[i]) == pytest.approx(r2, rel=1e-4, abs=1e-5), res.orders[i]
    c = res.components(x_tr)
    energy = torch.tensor([_var(c[i]) / _var(f_tr) for i in range(len(res.orders))], dtype=torch.float64)
    torch.testing.assert_close(res.energy, energy, rtol=1e-4, atol=1e-6)


def test_a_wrong_output_selector_fails_before_any_training() -> None:
    net, case = build("tuple")
    x = case.x(16)
    y = torch.arange(16) % 3
    built: list[int] = []

    def factory(order: int, previous: torch.nn.Module | None) -> torch.nn.Module:
        built.append(order)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4 * 6 * 6), torch.nn.Unflatten(1, (4, 6, 6)))

    dress(net, case.hook_layer)
    with pytest.raises(ValueError, match="tuple"):  # the error lists what the model returned
        with untouched(net):
            nx.decompose_complexity(net, (x, y), (x, y), "body.1", orders=(1,), epochs=1, family=factory,
                                    reference_model=False, progress=False)
    assert built == [], "the disentanglers were built (and trained) before the output was checked"
    with pytest.raises(ValueError, match="output"):
        with untouched(net):
            nx.decompose_complexity(net, (x, y), (x, y), "body.1", orders=(1,), epochs=1, family=factory,
                                    reference_model=False, progress=False, output=5)
    assert built == []
