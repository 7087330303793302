"""Issue 11 on the attribution and δ-projection entry points: models that return tuples or dicts
(``output=``), models on the meta device, and inputs cast to the model's dtype, device and memory format.

Every result is compared with an independent computation: the same body and head run as a plain model,
``torch.autograd.grad`` on an input cast by hand, or the contiguous input.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.architectures import DictOutput, TupleOutput
from nbexplain.core._base.moments import RunningMoments

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST_RDE = dict(steps=3, n_noise=2, fractions=3, n_eval=2, n_random=1, progress=False)

ATTRIBUTIONS = {
    "gradient": lambda m, x, t, **k: nx.gradient(m, x, t, **k).attribution,
    "gradient_x_input": lambda m, x, t, **k: nx.gradient_x_input(m, x, t, **k).attribution,
    "smoothgrad": lambda m, x, t, **k: nx.smoothgrad(m, x, t, n_samples=3, seed=2, **k).attribution,
    "integrated_gradients": lambda m, x, t, **k: nx.integrated_gradients(m, x, t, steps=6, **k).attribution,
    "rde": lambda m, x, t, **k: nx.rde(m, x, t, seed=1, **FAST_RDE, **k).attribution,
}


def parts(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(6, 8), nn.Tanh())
    head = nn.Linear(8, 3)
    return body, head


class Counting(nn.Module):
    """Counts forward calls of the wrapped model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


# ---------------------------------------------------------------- output=


@pytest.mark.parametrize("name", list(ATTRIBUTIONS))
@pytest.mark.parametrize("kind, output", [("tuple", 0), ("dict", "logits"), ("tuple", lambda out: out[0])])
def test_tuple_and_dict_outputs_equal_the_plain_model(name, kind, output):
    body, head = parts()
    plain = nn.Sequential(body, head)
    wrapped = (TupleOutput if kind == "tuple" else DictOutput)(body, head)
    x = torch.rand(4, 6)
    ref = ATTRIBUTIONS[name](plain, x, 1)
    got = ATTRIBUTIONS[name](wrapped, x, 1, output=output)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(ATTRIBUTIONS))
def test_without_output_the_error_lists_what_the_model_returned(name):
    body, head = parts()
    with pytest.raises(ValueError, match=r"tuple of 2: \[0\] Tensor\(\d, 3\) float32, \[1\] Tensor\(\d, 8\).*output="):
        ATTRIBUTIONS[name](TupleOutput(body, head), torch.rand(4, 6), 0)
    with pytest.raises(ValueError, match=r"'logits', 'features'"):
        ATTRIBUTIONS[name](DictOutput(body, head), torch.rand(4, 6), 0, output="probs")


@pytest.mark.parametrize("name", list(ATTRIBUTIONS))
def test_a_wrong_output_fails_after_one_small_forward_pass(name):
    model = Counting(TupleOutput(*parts()))
    with pytest.raises(ValueError, match="out of range"):
        ATTRIBUTIONS[name](model, torch.rand(40, 6), 0, output=3)
    assert model.calls == 1
    model = Counting(DictOutput(*parts()))
    with pytest.raises(ValueError, match="not a key"):
        ATTRIBUTIONS[name](model, torch.rand(40, 6), 0, output="probs")
    assert model.calls == 1


def test_output_type_is_checked():
    with pytest.raises(TypeError, match="`output`"):
        nx.gradient(TupleOutput(*parts()), torch.rand(2, 6), 0, output=1.5)


def test_ig_completeness_through_a_selected_output():
    body, head = parts()
    x = torch.rand(3, 6, dtype=torch.float64)
    model = DictOutput(body, head).double()
    res_ig = nx.integrated_gradients(model, x, 2, output="logits", steps=32)
    attr, err = res_ig.attribution, res_ig.error
    with torch.no_grad():
        delta = head(body(x))[:, 2] - head(body(torch.zeros_like(x)))[:, 2]
    torch.testing.assert_close(attr.sum(1), delta, rtol=0, atol=1e-9)
    assert float(err.abs().max()) < 1e-9


def ae_with_code() -> tuple[nn.Module, nn.Module, RunningMoments]:
    """An autoencoder that returns ``(reconstruction, code)``, and the plain reconstruction model."""
    torch.manual_seed(0)
    enc = nn.Sequential(OrderedDict(fc=nn.Linear(10, 6), act=nn.Tanh(), code=nn.Linear(6, 4)))
    dec = nn.Linear(4, 10)

    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = enc, dec

        def forward(self, x):
            code = self.encoder(x)
            return {"recon": self.decoder(code), "code": code}

    ae = AE().eval()
    stats = nx.layer_statistics(nn.Sequential(OrderedDict(encoder=enc, decoder=dec)), torch.rand(64, 10), ["encoder.code"])
    return ae, nn.Sequential(OrderedDict(encoder=enc, decoder=dec)).eval(), stats["encoder.code"]


def test_projected_outputs_and_delta_curve_select_an_output():
    ae, plain, st = ae_with_code()
    x = torch.rand(7, 10)
    ref = nx.projected_outputs(plain, x, "encoder.code", st, ks=[1, 2, 4])
    got = nx.projected_outputs(ae, x, "encoder.code", st, ks=[1, 2, 4], output="recon")
    torch.testing.assert_close(got, ref)
    one = nx.projected_outputs(ae, x, "encoder.code", st, ks=[2], output=lambda out: out["recon"])
    torch.testing.assert_close(one[0], ref[1])
    curve = nx.delta_curve(ae, x, "encoder.code", st, deltas=[0.5, 1.0], output="recon", metric="reconstruction")
    ref_curve = nx.delta_curve(plain, x, "encoder.code", st, deltas=[0.5, 1.0], metric="reconstruction")
    torch.testing.assert_close(curve.eigen, ref_curve.eigen)
    assert curve.baseline == pytest.approx(ref_curve.baseline)
    with pytest.raises(ValueError, match=r"'recon'.*output="):
        nx.projected_outputs(ae, x, "encoder.code", st, ks=[1, 2])
    with pytest.raises(ValueError, match="dict with 'recon'"):
        nx.delta_curve(ae, x, "encoder.code", st)


def test_continuity_with_explain_functions_that_select_an_output():
    body, head = parts()
    x = torch.rand(2, 6, dtype=torch.float64)
    end = torch.rand(2, 6, dtype=torch.float64)
    wrapped, plain = TupleOutput(body, head).double(), nn.Sequential(body, head).double()
    got = nx.continuity(lambda z: nx.gradient(wrapped, z, 1, output=0).attribution, x, to=end, steps=5)
    ref = nx.continuity(lambda z: nx.gradient(plain, z, 1).attribution, x, to=end, steps=5)
    torch.testing.assert_close(got.score, ref.score, rtol=1e-12, atol=1e-12)
    ig = nx.continuity(lambda z: nx.integrated_gradients(wrapped, z, 1, output=0, steps=4),
                       x, to=end, steps=3)
    assert ig.explanations.shape == (2, 3, 6)
    # RDE's result carries its map (the mask) as `.attribution`, like every method
    rde = nx.continuity(lambda z: nx.rde(wrapped, z, 1, output=0, seed=0, **FAST_RDE), x, to=end, steps=3)
    assert rde.explanations.shape == (2, 3, 6)


def test_continuity_refuses_token_ids_with_a_reason():
    with pytest.raises(TypeError, match="distances"):
        nx.continuity(lambda z: z, torch.randint(0, 9, (2, 5)), to=torch.zeros(5))


# ---------------------------------------------------------------- meta device


def meta_model() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


@pytest.mark.parametrize("name", list(ATTRIBUTIONS))
def test_meta_model_is_refused_with_the_fix(name):
    with pytest.raises(ValueError, match=r"'meta' device.*to_empty"):
        ATTRIBUTIONS[name](meta_model(), torch.rand(4, 6), 0)


def test_meta_model_is_refused_by_delta_functions():
    st = RunningMoments(8).update(torch.randn(50, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="'meta' device"):
        nx.projected_outputs(meta_model(), torch.rand(4, 6), "0", st, ks=[1, 2])
    with pytest.raises(ValueError, match="'meta' device"):
        nx.delta_curve(meta_model(), torch.rand(4, 6), "0", st)


# ---------------------------------------------------------------- dtypes and memory formats


def small_cnn(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 3),
    )
    nx.architectures.settle_batch_norm(net, torch.rand(16, 3, 6, 6))
    return net.eval().to(dtype)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_other_model_dtypes_cast_the_input(dtype, tol):
    """Reference: autograd on the input cast to the model's dtype by hand; the result is in x's dtype."""
    net = small_cnn(dtype)
    x = torch.rand(2, 3, 6, 6)
    xm = x.to(dtype).requires_grad_(True)
    (ref,) = torch.autograd.grad(net(xm)[:, 1].sum(), xm)
    g = nx.gradient(net, x, 1).attribution
    assert g.dtype == torch.float32
    torch.testing.assert_close(g, ref.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(nx.gradient_x_input(net, x, 1).attribution, ref.float() * x, rtol=tol, atol=tol)
    sg = nx.smoothgrad(net, x, 1, noise_level=0.0, n_samples=2).attribution
    torch.testing.assert_close(sg, ref.float(), rtol=tol, atol=tol)
    res_ig = nx.integrated_gradients(net, x, 1, steps=16)
    attr, err = res_ig.attribution, res_ig.error
    assert attr.dtype == torch.float32 and err.dtype == torch.float64
    assert bool(torch.isfinite(attr).all())
    with torch.no_grad():
        scale = float((net(x.to(dtype))[:, 1] - net(torch.zeros_like(x, dtype=dtype))[:, 1]).abs().max())
    assert float(err.abs().max()) < 0.05 * scale + 20 * tol


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_rde_mask_is_finite(dtype):
    """Regression: the mask was optimised in the model's dtype; float16 Adam turned it all-NaN silently
    (its ε underflows). It is optimised in float32 now."""
    torch.manual_seed(0)
    net = nn.Linear(6, 3)
    with torch.no_grad():
        net.weight[:, 3:] = 0  # unused inputs: zero distortion gradient
    res = nx.rde(net.to(dtype), torch.rand(2, 6), 0, l1=0.0, steps=5, n_noise=4, fractions=3, n_eval=4,
                 n_random=1, progress=False)
    assert bool(torch.isfinite(res.attribution).all()) and bool(torch.isfinite(res.curve).all())
    assert res.attribution.dtype == torch.float32
    assert bool((res.attribution[:, 3:] == 0.5).all())  # no gradient, no ℓ1: untouched


def test_channels_last_inputs_give_the_contiguous_result():
    net = small_cnn()
    x = torch.rand(3, 3, 6, 6)
    xcl = x.to(memory_format=torch.channels_last)
    for name, f in ATTRIBUTIONS.items():
        a, b = f(net, xcl, 2), f(net, x, 2)
        assert a.shape == x.shape, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_delta_functions_cast_inputs_to_the_model_dtype():
    """Regression: projected_outputs/delta_curve moved inputs to the device only: float32 data on a float64
    model crashed in the first matmul."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(5, 7), act=nn.ReLU(), out=nn.Linear(7, 3))).double().eval()
    x = torch.rand(6, 5)
    st = nx.layer_statistics(net, x.double(), ["fc1"])["fc1"]
    got = nx.projected_outputs(net, x, "fc1", st, ks=[2, 7])
    ref = nx.projected_outputs(net, x.double(), "fc1", st, ks=[2, 7])
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(got[1], net(x.double()).detach(), rtol=1e-10, atol=1e-10)  # k = width: identity
    y = torch.randint(0, 3, (6,))
    curve = nx.delta_curve(net, x, "fc1", st, deltas=[0.5, 1.0], labels=y)
    assert curve.metric == "accuracy" and 0.0 <= float(curve.eigen[0]) <= 1.0
    cl = nx.projected_outputs(small_cnn(), torch.rand(4, 3, 6, 6).to(memory_format=torch.channels_last), "2",
                              RunningMoments(4).update(torch.rand(80, 4, dtype=torch.float64)), ks=[1, 4])
    assert cl.shape == (2, 4, 3)


# ---------------------------------------------------------------- hygiene on the new paths


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()},
        "hooks": {n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for n, m in model.named_modules()},
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["training"] == b["training"]
    assert a["requires_grad"] == b["requires_grad"]
    assert a["hooks"] == b["hooks"]
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    for k in a["grad"]:
        assert (a["grad"][k] is None) == (b["grad"][k] is None), k
        if a["grad"][k] is not None:
            assert torch.equal(a["grad"][k], b["grad"][k]), k


class TupleRecorder(nn.Module):
    """Batch norm and dropout in train mode, a frozen layer, an existing .grad, a user hook; returns a
    tuple; optionally raises on the n-th forward call (after the probe)."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fc1, self.bn, self.drop, self.out = nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.Linear(8, 3)
        self.out.weight.requires_grad_(False)
        self.fc1.weight.grad = torch.ones_like(self.fc1.weight)
        self.fc1.register_forward_hook(lambda m, i, o: None)
        self.fail_at, self.calls = fail_at, 0

    def forward(self, x):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("boom in the middle of the work")
        h = self.drop(torch.relu(self.bn(self.fc1(x))))
        return self.out(h), h


@pytest.mark.parametrize("name", list(ATTRIBUTIONS))
@pytest.mark.parametrize("fail_at", [None, 1, 2])
def test_hygiene_with_output_selector(name, fail_at):
    torch.manual_seed(0)
    model = TupleRecorder(fail_at).train()
    before = snapshot(model)
    if fail_at is None:
        ATTRIBUTIONS[name](model, torch.rand(4, 6), 1, output=0, batch_size=2)
    else:
        with pytest.raises(RuntimeError, match="boom"):
            ATTRIBUTIONS[name](model, torch.rand(4, 6), 1, output=0, batch_size=2)
    assert model.calls >= (fail_at or 2)
    assert_same(before, snapshot(model))
    assert model.training


@pytest.mark.parametrize("fail_at", [None, 1, 2, 4])
def test_delta_hygiene_with_output_selector(fail_at):
    torch.manual_seed(0)
    model = TupleRecorder(fail_at).train()
    st = RunningMoments(8).update(torch.randn(40, 8, dtype=torch.float64))
    before = snapshot(model)
    if fail_at is None:
        nx.projected_outputs(model, torch.rand(5, 6), "fc1", st, ks=[1, 3], output=0)
        nx.delta_curve(model, torch.rand(5, 6), "fc1", st, deltas=[0.5, 1.0], output=0, metric="output_mse")
    else:
        with pytest.raises(RuntimeError, match="boom"):
            nx.projected_outputs(model, torch.rand(5, 6), "fc1", st, ks=[1, 3], output=0)
    assert_same(before, snapshot(model))


class BatchMean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 3)

    def forward(self, x):
        return (self.lin(x).mean(0, keepdim=True),)


@pytest.mark.parametrize("name", list(ATTRIBUTIONS))
def test_an_output_without_one_row_per_sample_is_refused(name):
    """gradient and gradient × input check this in their first chunk (no separate probe pass: it cost
    ~10 % of a small-batch gradient); the others in the probe."""
    with pytest.raises(ValueError, match="one row per sample"):
        ATTRIBUTIONS[name](BatchMean(), torch.rand(4, 6), 0, output=0)
