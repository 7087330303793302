"""maximize_activation and top_activating on real architectures, against cloned layer outputs.

The objective a result reports must be the value the layer produced: the batch norm output before the
in-place ReLU after it (also with ``early_exit=False``, when the ReLU runs), the channel mean for conv maps,
and for token outputs ``(N, T, D)`` feature ``unit`` pooled over the tokens (mean) — ``unit`` is a feature
index, so ``unit ≥ D`` is an error.
"""

from __future__ import annotations

import pytest
import torch

import nbexplain as nx
from tests.models.reference import produced
from tests.models.state import dress, untouched
from tests.models.zoo import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(steps=6, param="pixel", transforms=None, lr=0.05, progress=False)


def _pooled(out: torch.Tensor, unit: int, tokens: bool) -> torch.Tensor:
    return out[..., unit].mean(1) if tokens else out[:, unit].flatten(1).mean(1)


@pytest.mark.parametrize(("name", "layer", "width"), [("V", "block", 8), ("vit", "encoder.layers.0", 16)])
def test_token_layer_unit_is_a_feature(name: str, layer: str, width: int) -> None:
    net, case = build(name)
    dress(net, case.hook_layer)
    unit = width - 1
    with untouched(net):
        res = nx.maximize_activation(net, layer, unit, case.shape, **FAST)
    out = produced(net, res.images, [layer])[layer][0]
    torch.testing.assert_close(res.final.float(), _pooled(out, unit, True), rtol=1e-4, atol=1e-5)
    assert float(res.trajectory[:, 0].std()) > 1e-6, "the objective did not change: not a feature"
    for bad in (width, width + 2):
        with pytest.raises(ValueError, match=str(bad)):
            with untouched(net):
                nx.maximize_activation(net, layer, bad, case.shape, **FAST)


@pytest.mark.parametrize("early_exit", [True, False])
@pytest.mark.parametrize(("name", "layer"), [("conv_bn_relu", "1"), ("resnet18", "layer1.0.bn2")])
def test_objective_is_what_the_layer_produced(name: str, layer: str, early_exit: bool) -> None:
    net, case = build(name)
    dress(net, case.hook_layer)
    with untouched(net):
        res = nx.maximize_activation(net, layer, [0, 2], case.shape, early_exit=early_exit, **FAST)
    out = produced(net, res.images, [layer])[layer][0]
    want = torch.stack([_pooled(out[i : i + 1], u, False)[0] for i, u in enumerate([0, 2])])
    torch.testing.assert_close(res.final.float(), want, rtol=1e-4, atol=1e-5)


def test_model_output_objective_on_a_dict_model() -> None:
    net, case = build("dict")
    dress(net, case.hook_layer)
    with untouched(net):
        res = nx.maximize_activation(net, None, 1, case.shape, objective="logit", output="logits", **FAST)
    with torch.no_grad():
        want = net(res.images)["logits"][:, 1]
    torch.testing.assert_close(res.final.float(), want, rtol=1e-4, atol=1e-5)
    with untouched(net):  # a layer inside the body needs no output=
        res = nx.maximize_activation(net, "head", 1, case.shape, objective="logit", **FAST)
    with torch.no_grad():
        torch.testing.assert_close(res.final.float(), net(res.images)["logits"][:, 1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "layer", "tokens"), [("resnet18", "layer1.0.bn2", False), ("conv_bn_relu", "1", False),
                                                       ("V", "block", True)])
def test_top_activating_ranks_by_the_produced_values(name: str, layer: str, tokens: bool) -> None:
    net, case = build(name)
    dress(net, case.hook_layer)
    data = case.x(12)
    units = [0, 3]
    with untouched(net):
        top = nx.top_activating(net, data, layer, units, k=3, batch_size=5)
    out = produced(net, data, [layer])[layer][0]
    for row, u in enumerate(units):
        vals, idx = _pooled(out, u, tokens).topk(3)
        torch.testing.assert_close(top.values[row], vals, rtol=1e-4, atol=1e-5)
        assert top.indices[row].tolist() == idx.tolist()
        if not tokens:
            torch.testing.assert_close(top.maps[row], out[idx, u], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unit"):
        with untouched(net):
            nx.top_activating(net, data, layer, [99], k=3)
