"""Modified weights (W⁺, W⁻, γ-boosted) kept between LRP calls: any change of a parameter between two calls gives
the new model's answer, the cache never keeps a model alive, and model hygiene is unchanged."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core.attribution.lrp import ops
from tests.core.test_lrp import _assert_same, _state

COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1")


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        # > ops._BLOCK weights, so the cached path also covers the layers the call's workspace used to serve
        nn.Conv2d(8, 4096, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4096, 8, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def _x() -> torch.Tensor:
    return torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))


def _fresh(model: nn.Module, x: torch.Tensor, composite: str) -> torch.Tensor:
    """The answer for ``model`` computed on a copy with new parameter objects (nothing cached for them)."""
    return nx.lrp(copy.deepcopy(model), x, 0, composite=composite).attribution


def _cached_for(model: nn.Module) -> int:
    ids = {id(p) for p in model.parameters()}
    return sum(1 for key in list(ops._CACHE) if key[0] in ids)


@pytest.mark.parametrize("composite", COMPOSITES)
def test_repeated_call_uses_the_cache_and_gives_the_same_answer(composite: str) -> None:
    net, x = _net(), _x()
    first = nx.lrp(net, x, 0, composite=composite).attribution
    assert _cached_for(net) > 0
    second = nx.lrp(net, x, 0, composite=composite).attribution
    torch.testing.assert_close(second, first, rtol=0, atol=0)  # the same weights, the same kernels
    torch.testing.assert_close(second, _fresh(net, x, composite), rtol=1e-5, atol=1e-7)


def _sgd_step(net: nn.Module, x: torch.Tensor) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    net(x).square().sum().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    net.eval()


def _load_other(net: nn.Module, x: torch.Tensor) -> None:
    net.load_state_dict(_net(seed=7).state_dict())


def _data_write(net: nn.Module, x: torch.Tensor) -> None:
    # through .data: the version counter does not move; the sampled elements do
    for p in net.parameters():
        p.data.mul_(-1.5).add_(0.01)


def _nograd_write(net: nn.Module, x: torch.Tensor) -> None:
    # one element, off the strided sample: only the version counter sees it
    with torch.no_grad():
        net[3].weight[1, 0, 0, 1] += 3.0
        net[5].weight[1, 1, 0, 0] -= 3.0


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("change", [_sgd_step, _load_other, _data_write, _nograd_write])
def test_a_change_between_calls_gives_the_new_answer(composite: str, change) -> None:
    net, x = _net(), _x()
    before = nx.lrp(net, x, 0, composite=composite).attribution
    change(net, x)
    after = nx.lrp(net, x, 0, composite=composite).attribution
    expected = _fresh(net, x, composite)
    assert not torch.allclose(expected, before, rtol=1e-3, atol=1e-6)  # the change matters
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-7)


def test_replaced_parameter_object_is_not_confused_with_the_old_one() -> None:
    net, x = _net(), _x()
    nx.lrp(net, x, 0, composite="epsilon_plus_flat")
    net[3].weight = nn.Parameter(torch.randn_like(net[3].weight))
    torch.testing.assert_close(
        nx.lrp(net, x, 0, composite="epsilon_plus_flat").attribution, _fresh(net, x, "epsilon_plus_flat")
    )


def test_cache_does_not_keep_the_model_alive() -> None:
    net, x = _net(), _x()
    nx.lrp(net, x, 0, composite="epsilon_alpha2_beta1")
    ids = {id(p) for p in net.parameters()}
    assert any(key[0] in ids for key in ops._CACHE)
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None
    assert not any(key[0] in ids for key in ops._CACHE)


def test_hygiene_unchanged_with_a_warm_cache() -> None:
    net, x = _net(), _x()
    net[3].weight.requires_grad_(False)
    net[0].register_forward_hook(lambda m, a, o: None)
    before = _state(net)
    for composite in COMPOSITES * 2:  # the second round runs on cached weights
        nx.lrp(net, x, 0, composite=composite)
        _assert_same(before, _state(net))


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "CACHE_BYTES", 200_000)
    ops.clear_weight_cache()
    net, x = _net(), _x()
    out = nx.lrp(net, x, 0, composite="epsilon_alpha2_beta1").attribution
    assert sum(e.nbytes for e in ops._CACHE.values()) <= 200_000
    torch.testing.assert_close(out, _fresh(net, x, "epsilon_alpha2_beta1"), rtol=1e-5, atol=1e-7)
    ops.clear_weight_cache()
    assert not ops._CACHE


def test_a_cache_too_small_for_one_call_keeps_what_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Room for one large weight: αβ's W⁻ does not push out the W⁺ the same call used (no thrashing: W⁻ is
    computed in the call's workspace), and the kept W⁺ serves the next call."""
    net, x = _net(), _x()
    big = net[3].weight
    monkeypatch.setattr(ops, "CACHE_BYTES", big.numel() * big.element_size() + 50_000)
    ops.clear_weight_cache()
    first = nx.lrp(net, x, 0, composite="epsilon_alpha2_beta1").attribution
    entry = ops._CACHE.get((id(big), "pos"))
    assert entry is not None and (id(big), "neg") not in ops._CACHE
    second = nx.lrp(net, x, 0, composite="epsilon_alpha2_beta1").attribution
    assert ops._CACHE.get((id(big), "pos")) is entry
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    torch.testing.assert_close(first, _fresh(net, x, "epsilon_alpha2_beta1"), rtol=1e-5, atol=1e-7)
    ops.clear_weight_cache()


def test_half_precision_models_leave_nothing_in_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """float16 models are explained through float32 copies that live for one call: caching their weights would
    only trade the call's reused workspace for fresh allocations."""
    made: list[int] = []
    original = ops._Derived.__init__

    def counted(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ops._Derived, "__init__", counted)
    net, x = _net().half(), _x()
    res = nx.lrp(net, x, 0, composite="epsilon_plus_flat")
    assert torch.isfinite(res.attribution).all()
    assert not made
    nx.lrp(_net(), x, 0, composite="epsilon_plus_flat")  # the float32 model's weights are kept
    assert made
