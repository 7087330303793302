"""TorchScript and torch.compile'd models: restored exactly, explained explicitly, never half-way.

- ``preserved`` restores a TorchScript model (whose ``_parameters`` cannot be iterated) exactly, also when the
  block raises, and each restore step runs on its own: one that fails leaves no other undone.
- A ``DeltaProjection`` inserted into a compiled model is applied when the user calls the compiled model
  (Dynamo would skip a hook added after its first call), and the model runs compiled again afterwards.
- Layer names of a compiled model work with and without ``_orig_mod.``; results are keyed as given.
- Compiled submodules and ``module.compile()`` run their eager code while nbexplain works.
"""

from __future__ import annotations

import copy
import shutil
import sys
import warnings

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core._base.compiled import eager_module, is_compiled, running_eagerly
from nbexplain.core._base.hygiene import RestoreError, preserved
from nbexplain.core._base.validation import check_model
from tests.models.state import untouched

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:.*torch.compile'd:UserWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::nbexplain.FunctionalOpsWarning"),
]


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def _mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    net = MLP()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


X = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))


def _state(model: nn.Module) -> dict:
    return {
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: p.grad for n, p in model.named_parameters()},
    }


def _assert_state(model: nn.Module, before: dict) -> None:
    after = _state(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    for n, g in before["grad"].items():
        assert after["grad"][n] is g, f".grad of {n} replaced"


def _users_scripted() -> nn.Module:
    """A TorchScript model in a user's mid-training state: train mode but one module in eval, a frozen
    parameter and a stored gradient."""
    sm = torch.jit.script(_mlp())
    sm.train()
    dict(sm.named_modules())["bn"].eval()
    params = dict(sm.named_parameters())
    params["fc1.weight"].requires_grad_(False)
    params["fc2.bias"].grad = torch.ones(3)
    return sm


# ---------------------------------------------------------------------------------------------------------
# The model is left exactly as found — also for scripted models
# ---------------------------------------------------------------------------------------------------------


def test_preserved_restores_a_scripted_model_when_the_block_raises() -> None:
    sm = _users_scripted()
    before = _state(sm)
    with pytest.raises(ValueError, match="inside the block"):
        with preserved(sm, values=True):
            sm.eval()
            for p in sm.parameters():
                p.requires_grad_(False)
                p.grad = torch.zeros_like(p)
            with torch.no_grad():
                dict(sm.named_parameters())["fc2.weight"].add_(1.0)
            raise ValueError("inside the block")
    _assert_state(sm, before)
    torch.testing.assert_close(dict(sm.named_parameters())["fc2.weight"], _mlp().fc2.weight, rtol=0, atol=0)


def test_a_scripted_call_that_fails_midway_restores_the_model_and_shows_the_real_error() -> None:
    sm = _users_scripted()
    before = _state(sm)
    # The wrong input width fails inside the model's forward, after the call set eval mode and froze every
    # parameter: the model's own error comes out, and everything is put back.
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied|size mismatch|mat1 and mat2"):
        nx.gradient(sm, torch.randn(4, 5), 0)
    _assert_state(sm, before)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied|size mismatch|mat1 and mat2"):
        nx.smoothgrad(sm, torch.randn(4, 5), 0, n_samples=2)
    _assert_state(sm, before)


def test_gradient_family_on_a_scripted_model_equals_autograd() -> None:
    net = _mlp()
    sm = torch.jit.script(copy.deepcopy(net))
    x = X[:5].clone().requires_grad_(True)
    t = torch.tensor([0, 1, 2, 0, 1])
    (want,) = torch.autograd.grad(net(x).gather(1, t[:, None]).sum(), x)
    torch.testing.assert_close(nx.gradient(sm, X[:5], t).attribution, want, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(nx.gradient_x_input(sm, X[:5], t).attribution, want * X[:5], rtol=1e-5, atol=1e-7)
    ig_s = nx.integrated_gradients(sm, X[:5], t, steps=8).attribution
    torch.testing.assert_close(ig_s, nx.integrated_gradients(net, X[:5], t, steps=8).attribution, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: nx.activations(m, X, "fc1"),
        lambda m: nx.list_layers(m),
        lambda m: nx.lrp(m, X, 0),
        lambda m: nx.SaturationTracker(m),
        lambda m: nx.DeltaProjection(nx.layer_statistics(_mlp(), X, ["fc1"])["fc1"], k=1).inserted(m, "fc1")
        .__enter__(),
        lambda m: nx.maximize_activation(m, "fc1", 0, (6,), steps=1, progress=False),
    ],
    ids=["activations", "layers", "lrp", "SaturationTracker", "DeltaProjection.inserted",
         "maximize_activation"],
)
def test_calls_that_need_hooks_refuse_a_scripted_model_once_and_clearly(call) -> None:
    sm = _users_scripted()
    before = _state(sm)
    with pytest.raises(TypeError) as info:
        call(sm)
    text = str(info.value)
    assert "TorchScript module" in text and "needs forward hooks" in text
    assert "pass the eager module (the nn.Module before torch.jit.script or torch.jit.trace)" in text
    assert "contains()" not in text
    _assert_state(sm, before)


def test_a_traced_model_is_handled_like_a_scripted_one() -> None:
    net = _mlp()
    traced = torch.jit.trace(copy.deepcopy(net), X[:2], check_trace=False)
    want = nx.gradient(net, X[:4], 1).attribution
    torch.testing.assert_close(nx.gradient(traced, X[:4], 1).attribution, want, rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="TorchScript module .* eager module"):
        nx.activations(traced, X, "fc1")


class _Stubborn(nn.Linear):
    """A module whose train/eval flag cannot be written back while ``locked`` (a restore step that fails)."""

    locked = False

    def __setattr__(self, name: str, value: object) -> None:
        if name == "training" and type(self).locked:
            raise RuntimeError("training flag is locked")
        super().__setattr__(name, value)


def test_each_restore_step_runs_even_when_another_fails() -> None:
    net = nn.Sequential(nn.Linear(3, 3), _Stubborn(3, 3), nn.Linear(3, 2))
    net.train()
    net[2].weight.requires_grad_(False)
    before = _state(net)
    hooks_before = {n: dict(m._forward_hooks) for n, m in net.named_modules()}
    try:
        with pytest.raises(RestoreError, match="train/eval flag of '1'") as info:
            with preserved(net):
                net.eval()
                for p in net.parameters():
                    p.requires_grad_(True)
                    p.grad = torch.ones_like(p)
                net[0].register_forward_hook(lambda *a: None)
                _Stubborn.locked = True
    finally:
        _Stubborn.locked = False
    assert "everything else was restored" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    after = _state(net)
    # every other module's flag, every requires_grad and .grad, and the hooks were put back
    assert {n: t for n, t in after["training"].items() if n != "1"} == {
        n: t for n, t in before["training"].items() if n != "1"
    }
    assert after["requires_grad"] == before["requires_grad"]
    assert all(after["grad"][n] is None for n in after["grad"])
    assert {n: dict(m._forward_hooks) for n, m in net.named_modules()} == hooks_before


def test_a_failed_restore_does_not_hide_the_error_of_the_block() -> None:
    net = nn.Sequential(_Stubborn(3, 3))
    try:
        with pytest.raises(KeyError, match="the real cause") as info:
            with preserved(net):
                net.eval()
                _Stubborn.locked = True
                raise KeyError("the real cause")
    finally:
        _Stubborn.locked = False
    notes = getattr(info.value, "__notes__", [])
    assert any("could not restore" in n for n in notes)


# ---------------------------------------------------------------------------------------------------------
# Compiled models
# ---------------------------------------------------------------------------------------------------------


def _compiled(seed: int = 0, backend: str = "eager") -> tuple[nn.Module, MLP]:
    net = _mlp(seed)
    model = torch.compile(net, backend=backend)
    with torch.no_grad():
        model(X)  # the user's first call: Dynamo compiles and caches code
    return model, net


def _projected_reference(net: MLP, proj: nx.DeltaProjection, x: torch.Tensor) -> torch.Tensor:
    """fc1's output projected onto the kept directions around the mean, then the rest of the net (float64)."""
    d = copy.deepcopy(net).double()
    h = d.fc1(x.double())
    p, mu = proj.basis.double(), proj.mean.double()
    h = mu + ((h - mu) @ p) @ p.T
    return d.fc2(torch.relu(d.bn(h))).float()


def test_a_delta_projection_inserted_into_a_compiled_model_is_applied() -> None:
    model, net = _compiled()
    plain = net(X).detach()
    stats = nx.layer_statistics(model, X, ["fc1"])["fc1"]
    proj = nx.DeltaProjection(stats, k=1)
    forward = model.__dict__["forward"]
    with untouched(model):
        with proj.inserted(model, "fc1"), torch.no_grad():
            got = model(X)  # the user calls the compiled model
    want = _projected_reference(net, proj, X)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert (got - plain).abs().max() > 0.05  # the projection changes the output: it was not skipped
    assert model.__dict__["forward"] is forward  # runs compiled again
    with torch.no_grad():
        torch.testing.assert_close(model(X), plain)
    # the same with the prefixed name, and through the projection's own context manager
    with nx.DeltaProjection(stats, k=1, model=model, layer="_orig_mod.fc1"), torch.no_grad():
        torch.testing.assert_close(model(X), want, rtol=1e-4, atol=1e-5)


def test_layer_names_work_with_or_without_the_orig_mod_prefix() -> None:
    model, net = _compiled()
    want = nx.activations(net, X, ["fc1", "fc2"])
    assert nx.list_layers(model) == nx.list_layers(net) == ["fc1", "fc2"]
    for names in (["fc1", "fc2"], ["_orig_mod.fc1", "_orig_mod.fc2"], ["_orig_mod.fc1", "fc2"]):
        got = nx.activations(model, X, names)
        assert list(got) == names  # keyed as given
        for given, own in zip(names, ["fc1", "fc2"], strict=True):
            torch.testing.assert_close(got[given], want[own], rtol=0, atol=0)
    with nx.capture(model, "_orig_mod.fc1") as out, torch.no_grad():
        model(X)
    torch.testing.assert_close(out["_orig_mod.fc1"], net.fc1(X).detach(), rtol=0, atol=0)
    res = nx.lrp(model, X[:3], 0, layers=["_orig_mod.fc1", "fc2"])
    ref = nx.lrp(net, X[:3], 0, layers=["fc1", "fc2"])
    assert list(res.layers) == ["_orig_mod.fc1", "fc2"]
    torch.testing.assert_close(res.layers["_orig_mod.fc1"], ref.layers["fc1"])
    with pytest.raises(ValueError, match=r"Unknown layer name.*'_orig_mod.fc9'.*Valid names"):
        nx.activations(model, X, "_orig_mod.fc9")


def test_an_lrp_composite_may_name_layers_with_the_prefix() -> None:
    model, net = _compiled()
    ref = nx.lrp(net, X[:3], 1, composite=nx.Composite({"fc1": nx.rules.Flat(), nn.Linear: nx.rules.Epsilon()})).attribution
    plain = nx.lrp(net, X[:3], 1, composite=nx.Composite({nn.Linear: nx.rules.Epsilon()})).attribution
    comp = nx.Composite({"_orig_mod.fc1": nx.rules.Flat(), nn.Linear: nx.rules.Epsilon()})
    got = nx.lrp(model, X[:3], 1, composite=comp).attribution
    torch.testing.assert_close(got, ref)
    assert not torch.allclose(got, plain)  # the named rule was applied
    assert list(comp.names) == ["_orig_mod.fc1"]  # the user's composite is not changed


def test_a_compiled_model_is_announced_once() -> None:
    model, net = _compiled()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        nx.activations(model, X, "fc1")
        nx.gradient(model, X, 0)
    notes = [w for w in seen if "torch.compile'd" in str(w.message)]
    assert len(notes) == 1
    text = str(notes[0].message)
    assert "model._orig_mod" in text and "eager module" in text and "'_orig_mod.'" in text
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        nx.activations(net, X, "fc1")  # the eager model itself: nothing to say
    assert not [w for w in seen if "torch.compile'd" in str(w.message)]


def test_check_model_returns_the_module_to_work_on() -> None:
    model, net = _compiled()
    assert is_compiled(model) and check_model(model) is net and eager_module(model) is net
    sm = torch.jit.script(_mlp())
    assert check_model(sm, hooks=False) is sm
    with pytest.raises(TypeError, match=r"`reference_model` is a TorchScript module \(.*\), and nx.lrp"):
        check_model(sm, "reference_model", what="nx.lrp")
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        check_model(net.state_dict())


class _Outer(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)))


def test_compiled_submodules_and_module_compile_run_eagerly_while_explained() -> None:
    torch.manual_seed(0)
    eager = _Outer(_mlp())
    nested = _Outer(torch.compile(eager.body, backend="eager"))
    nested.head = eager.head
    inplace = copy.deepcopy(eager)
    inplace.compile(backend="eager")
    with torch.no_grad():
        nested(X), inplace(X)
    want = nx.activations(eager, X, ["body.fc1", "head"])
    for model in (nested, inplace):
        calls = nx.activations(model, X, ["body.fc1", "head"])  # "body._orig_mod.fc1" for the nested one
        for k in want:
            torch.testing.assert_close(calls[k], want[k], rtol=0, atol=0)
        with untouched(model):
            with nx.capture(model, "body.fc1") as out, torch.no_grad():
                model(X)
        torch.testing.assert_close(out["body.fc1"], eager.body.fc1(X).detach(), rtol=0, atol=0)
        lrp = {"strict": False, "composite": "epsilon"}
        ref = nx.lrp(eager, X[:3], 1, **lrp).attribution
        torch.testing.assert_close(nx.lrp(model, X[:3], 1, **lrp).attribution, ref)
    assert inplace.__dict__["_compiled_call_impl"] is not None  # still compiled afterwards


def test_running_eagerly_nests_and_restores_exactly() -> None:
    model, net = _compiled()
    forward = model.__dict__["forward"]
    with running_eagerly(model):
        inner = model.__dict__["forward"]
        with running_eagerly(model):
            pass
        assert model.__dict__["forward"] == inner
        seen = []
        h = net.fc1.register_forward_hook(lambda *a: seen.append(1))
        model(X)
        h.remove()
        assert seen == [1]
    assert model.__dict__["forward"] is forward


def test_a_state_dict_saved_from_a_compiled_model_loads_into_the_eager_template() -> None:
    model_a, net_a = _compiled(0)
    _, net_b = _compiled(1)
    saved = torch.compile(net_b, backend="eager").state_dict()  # keys "_orig_mod.fc1.weight", …
    assert all(k.startswith("_orig_mod.") for k in saved)
    got = nx.similarity_grid([saved], X, ["fc1"], metric="cka", model=model_a, reference=net_a,
                             progress=False)
    want = nx.similarity_grid([net_b], X, ["fc1"], metric="cka", reference=net_a, progress=False)
    torch.testing.assert_close(got.grids["cka"], want.grids["cka"])


@pytest.mark.slow
def test_the_default_inductor_backend_is_never_compiled_inside_nbexplain() -> None:
    from torch._dynamo.utils import counters

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("inductor needs a C compiler, and this machine has none")
    net = _mlp()
    model = torch.compile(net)
    try:
        with torch.no_grad():
            model(X)
    except Exception as exc:  # noqa: BLE001 — the user's own compile, before nbexplain is involved
        pytest.skip(f"inductor cannot compile on this machine: {type(exc).__name__}: {exc}")
    frames = dict(counters["frames"])
    stats = nx.layer_statistics(model, X, ["fc1"])["fc1"]
    torch.testing.assert_close(stats.covariance, nx.layer_statistics(net, X, ["fc1"])["fc1"].covariance)
    with nx.SaturationTracker(model, ["fc1"]) as tracker, torch.no_grad():
        model(X[:7])  # a new batch size: compiled code would recompile (and trace the tracker's hook)
    assert tracker.eval_stats["fc1"].count == 7
    proj = nx.DeltaProjection(stats, k=1)
    with proj.inserted(model, "fc1"), torch.no_grad():
        got = model(X)
    torch.testing.assert_close(got, _projected_reference(net, proj, X), rtol=1e-4, atol=1e-5)
    assert dict(counters["frames"]) == frames  # nothing was compiled inside nbexplain
    with torch.no_grad():
        torch.testing.assert_close(model(X), net(X), rtol=1e-5, atol=1e-6)


def test_the_compile_warning_points_at_the_users_line() -> None:
    import warnings

    net = nn.Sequential(nn.Linear(4, 3))
    compiled = torch.compile(net, backend="eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nx.gradient(compiled, torch.rand(2, 4), 0)
        line = sys._getframe().f_lineno - 1
    noted = [w for w in caught if "torch.compile" in str(w.message)]
    assert noted and noted[0].filename == __file__ and noted[0].lineno == line
