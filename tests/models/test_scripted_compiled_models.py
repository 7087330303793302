"""Every entry point on a model as people run it: ``torch.compile``'d, or TorchScript.

A compiled model is explained through its eager module: every call gives exactly what the same call gives on
``model._orig_mod``, nothing is compiled inside nbexplain (Dynamo's frame counters do not move), and the
wrapper and its eager module are left as found — the wrapper's ``forward`` included, so it runs compiled
again afterwards. Layer names work with and without the ``_orig_mod.`` prefix.

A TorchScript model runs what needs no hooks (the gradient family and RDE, equal to the eager model's
values); everything else raises one ``TypeError`` that asks for the eager module, and the model is left
exactly as found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import nbexplain as nx
from tests.models.reference import input_gradient
from tests.models.state import dress, untouched
from tests.models.zoo import compiled, scripted

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:`model` is a torch.compile'd model:UserWarning"),
    pytest.mark.filterwarnings("ignore:`checkpoints` is a torch.compile'd model:UserWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),
]

LAYER = "layer1.0.bn2"
X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3])
NEEDS_HOOKS = (
    "TorchScript module .* needs forward hooks .* "
    "pass the eager module \\(the nn.Module before torch.jit.script"
)


def _stats(net: nn.Module) -> Any:
    return nx.layer_statistics(net, X, [LAYER])[LAYER]


def _capture(net: nn.Module) -> dict[str, torch.Tensor]:
    with nx.capture(net, LAYER) as out, torch.no_grad():
        net(X)
    return dict(out)


def _tracker(net: nn.Module) -> torch.Tensor:
    with nx.SaturationTracker(net, [LAYER]) as tracker, torch.no_grad():
        net(X)
    return tracker.eval_stats[LAYER].covariance


def _inserted(net: nn.Module) -> torch.Tensor:
    proj = nx.DeltaProjection(_stats(nx.core._base.compiled.eager_module(net)), k=2)
    with proj.inserted(net, LAYER), torch.no_grad():
        return net(X)


def _grid(res: Any) -> torch.Tensor:
    return res.grids["svcca"]


#: name → call on the model, returning what is compared between the compiled and the eager model.
CALLS: dict[str, Callable[[nn.Module], Any]] = {
    "layers": lambda net: list(nx.list_layers(net, inputs=X)),
    "activations": lambda net: nx.activations(net, X, LAYER),
    "capture": _capture,
    "SaturationTracker": _tracker,
    "layer_statistics": lambda net: _stats(net).covariance,
    "DeltaProjection.inserted": _inserted,
    "projected_outputs": lambda net: nx.projected_outputs(net, X, LAYER, _stats(net), ks=[1, 2]),
    "delta_curve": lambda net: nx.delta_curve(net, X, LAYER, _stats(net), deltas=[0.9], labels=Y).eigen,
    "probe_accuracy": lambda net: nx.probe_accuracy(net, (X, Y), (X, Y), [LAYER], conv="mean"),
    "similarity_grid": lambda net: _grid(nx.similarity_grid([net], X, [LAYER, "fc"], progress=False)),
    "model_similarity": lambda net: _grid(nx.model_similarity(net, net, X, [LAYER], progress=False)),
    "gradient": lambda net: nx.gradient(net, X, Y).attribution,
    "gradient_x_input": lambda net: nx.gradient_x_input(net, X, Y).attribution,
    "smoothgrad": lambda net: nx.smoothgrad(net, X, Y, n_samples=3, seed=0).attribution,
    "integrated_gradients": lambda net: nx.integrated_gradients(net, X, Y, steps=4).attribution,
    "lrp": lambda net: nx.lrp(net, X, Y).attribution,
    "lrp layers=": lambda net: nx.lrp(net, X, Y, layers=[LAYER]).layers,
    "rde": lambda net: nx.rde(net, X[:2], 0, steps=3, n_noise=2, fractions=2, n_eval=2, n_random=1,
                              progress=False).attribution,
    "continuity": lambda net: nx.continuity(
        lambda z: nx.gradient(net, z, 0).attribution, X[:2], shifts=[0, 1]).explanations,
    "maximize_activation": lambda net: nx.maximize_activation(net, LAYER, 0, (3, 32, 32), steps=2,
                                                              progress=False).images,
    "maximize_activation layer=None": lambda net: nx.maximize_activation(
        net, None, 1, (3, 32, 32), objective="logit", steps=2, progress=False).images,
    "top_activating": lambda net: nx.top_activating(net, X, LAYER, 0, k=2).indices,
    "decompose_complexity": lambda net: nx.decompose_complexity(
        net, (X, Y), (X, Y), LAYER, orders=(1,), epochs=1, reference_model=False, progress=False
    ).energy,
}

#: What a TorchScript model runs (no hooks needed for floating-point inputs).
SCRIPT_OK = ["gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "rde", "continuity"]


def _same(got: Any, want: Any, where: str = "") -> None:
    if isinstance(want, torch.Tensor):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=lambda m: f"{where}: {m}")
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for k in want:
            _same(got[k], want[k], f"{where}[{k!r}]")
    else:
        assert got == want, where


def _frames() -> tuple[int, int]:
    from torch._dynamo.utils import counters

    return sum(counters["frames"].values()), sum(counters["stats"].values())


@pytest.fixture(scope="module")
def compiled_resnet() -> tuple[nn.Module, nn.Module]:
    model, eager, _ = compiled("resnet18")
    return model, eager


@pytest.mark.parametrize("entry", list(CALLS))
def test_compiled_model_is_explained_through_its_eager_module(entry: str, compiled_resnet: Any) -> None:
    model, eager = compiled_resnet
    want = CALLS[entry](eager)
    forward = model.__dict__["forward"]
    frames = _frames()
    with untouched(model):
        got = CALLS[entry](model)
    _same(got, want, entry)
    assert _frames() == frames, f"{entry} made Dynamo compile something"
    assert model.__dict__["forward"] is forward, f"{entry} left the wrapper's forward changed"


def test_compiled_model_keeps_the_users_hooks_and_frozen_parameters() -> None:
    model, eager, case = compiled("resnet18")
    calls = dress(model, "_orig_mod." + case.hook_layer)
    with untouched(model):
        nx.lrp(model, X[:2], 0)
        nx.activations(model, X[:2], LAYER)
        nx.gradient(model, X[:2], 0)
    assert calls["forward"] == 0  # the hook on the wrapper: nbexplain ran the eager module behind it


@pytest.fixture(scope="module")
def scripted_resnet() -> tuple[nn.Module, nn.Module]:
    model, eager, _ = scripted("resnet18")
    return model, eager


def _user_state(model: nn.Module) -> None:
    """What a user's model in the middle of training looks like: train mode, a frozen parameter, a .grad."""
    model.train()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[-1].grad = torch.full_like(params[-1], 0.5)


@pytest.mark.parametrize("entry", SCRIPT_OK)
def test_scripted_model_runs_what_needs_no_hooks(entry: str, scripted_resnet: Any) -> None:
    model, eager = scripted_resnet
    want = CALLS[entry](eager)
    _user_state(model)
    try:
        with untouched(model):
            got = CALLS[entry](model)
    finally:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)
            p.grad = None
    _same(got, want, entry)


def test_scripted_gradient_equals_autograd(scripted_resnet: Any) -> None:
    model, _ = scripted_resnet
    want, _ = input_gradient(model, X, Y)
    torch.testing.assert_close(nx.gradient(model, X, Y).attribution, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("entry", [e for e in CALLS if e not in SCRIPT_OK])
def test_scripted_model_is_refused_with_one_clear_error(entry: str, scripted_resnet: Any) -> None:
    model, _ = scripted_resnet
    _user_state(model)
    try:
        with pytest.raises(TypeError, match=NEEDS_HOOKS), untouched(model):
            CALLS[entry](model)
    finally:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)
            p.grad = None


def test_scripted_model_on_token_ids_is_refused_clearly() -> None:
    model, _, case = scripted("lstm")
    ids = case.x(3)
    for call in (lambda: nx.gradient(model, ids, 0).attribution, lambda: nx.integrated_gradients(model, ids, 0, steps=2).attribution,
                 lambda: nx.rde(model, ids, 0, steps=2, progress=False)):
        with pytest.raises(TypeError, match="TorchScript module .* attribution for token inputs .* eager"):
            with untouched(model):
                call()
