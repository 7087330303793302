"""RelevanceFlow without a browser: what the view is sent (values per step, sums), validation, state round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers
from torch import nn

import nbexplain as nx
from nbexplain.widgets import RelevanceFlow


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 20), nn.ReLU(), nn.Linear(20, 5),
    ).eval()


@pytest.fixture(scope="module")
def flow() -> tuple[nn.Module, torch.Tensor, nx.RelevanceFlowResult]:
    net = _net()
    x = torch.rand(3, 1, 8, 8)
    return net, x, nx.relevance_flow(net, x, torch.tensor([0, 4, 2]), "epsilon", progress=False)


def _sent(w: RelevanceFlow, step: int, sample: int) -> np.ndarray:
    """What the view slices out of `values` for a step and sample (the JS stepValues, in numpy)."""
    s = w.step_info[step]
    inner = int(np.prod(s["shape"][1:]))
    start = s["offset"] + sample * inner
    return w.values[start:start + inner].reshape(s["shape"][1:])


def test_each_step_sends_the_relevance_summed_over_channels(flow) -> None:
    _, x, res = flow
    w = RelevanceFlow(res, x)
    assert [s["name"] for s in w.step_info] == res.steps == ["output", "7", "6", "5", "3", "2", "1", "0", "input"]
    kinds = {s["name"]: s["kind"] for s in w.step_info}  # Flatten ("4") has no rule, so no step
    assert kinds == {"output": "bars", "7": "bars", "6": "bars", "5": "bars",
                     "3": "map", "2": "map", "1": "map", "0": "map", "input": "map"}
    assert w.step_info[6]["channels"] == 3 and w.step_info[6]["source_shape"] == [8, 8]
    for i, name in enumerate(res.steps):
        r = res.relevance[name].double()
        want = r.sum(1) if r.ndim == 4 else r.reshape(3, -1)
        for n in range(3):
            np.testing.assert_allclose(_sent(w, i, n).reshape(want[n].shape), want[n].numpy(), rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(w.shown(name, n), want[n].numpy())
    # the output step is the explained score itself, one bar per sample
    np.testing.assert_allclose(w.values[:3], res.score.numpy(), rtol=1e-6)
    # sums and what each step absorbed, from float64 (not differences of the float32 totals)
    tot = res.totals.double()
    np.testing.assert_allclose(w.totals, tot.numpy(), rtol=1e-6)
    np.testing.assert_allclose(w.absorbed, (tot[:, :-1] - tot[:, 1:]).numpy().astype(np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(w.score, res.score.numpy(), rtol=1e-6)
    assert w.step_info[1]["rule"] == repr(res.rules["7"]) and w.step_info[0]["rule"] == "" == w.step_info[-1]["rule"]


def test_tensors_travel_as_binary_buffers(flow) -> None:
    _, x, res = flow
    w = RelevanceFlow(res, x)
    # no trait shadows an ipywidgets one (a list named `layout` broke the front end's child views)
    import ipywidgets
    assert isinstance(w.layout, ipywidgets.Layout)
    _, paths, buffers = _remove_buffers(w.get_state())
    for name in ("values", "totals", "absorbed", "score", "images"):
        assert [name, "view"] in paths
    assert w.images.shape == (3, 8, 8, 1) and w.images.dtype == np.uint8


def test_big_maps_are_pooled_under_the_budget_and_keep_their_source_shape() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 64 * 64, 3)).eval()
    x = torch.rand(2, 1, 64, 64)
    res = nx.relevance_flow(net, x, composite="epsilon", progress=False)
    w = RelevanceFlow(res, max_bytes=8192)
    maps = [s for s in w.step_info if s["kind"] == "map"]
    assert maps and all(s["shape"][1] < 64 and s["source_shape"] == [64, 64] for s in maps)
    assert sum(int(np.prod(s["shape"])) * 4 for s in maps) <= 8192
    # pooled values are block means of the channel sum
    s = w.step_info[-1]
    f = 64 // s["shape"][1]
    full = res.relevance["input"].double().sum(1)
    want = torch.nn.functional.avg_pool2d(full[:, None], f)[:, 0]
    np.testing.assert_allclose(_sent(w, len(w.step_info) - 1, 1), want[1].numpy(), rtol=1e-5, atol=1e-8)
    assert w.shown("input", 1).shape == (64, 64)  # the kernel keeps full resolution


def test_step_and_sample_are_validated_and_sync_both_ways(flow) -> None:
    _, x, res = flow
    w = RelevanceFlow(res, x, sample=2, step=4)
    assert (w.sample, w.step, w.step_name) == (2, 4, "3")
    np.testing.assert_array_equal(w.shown(), res.relevance["3"][2].double().sum(0).numpy())
    seen = []
    w.observe(lambda c: seen.append(c["new"]), "step")
    w.set_state({"step": 8, "sample": 1})  # what the view sends after a click
    assert (w.step, w.sample, w.step_name, seen) == (8, 1, "input", [8])
    assert w.get_state("step") == {"step": 8}
    with pytest.raises(traitlets.TraitError, match=r"`step` must be in 0…8"):
        w.step = 9
    with pytest.raises(traitlets.TraitError, match=r"`sample` must be in 0…2"):
        w.sample = -1
    with pytest.raises(traitlets.TraitError, match="`step` must be"):
        RelevanceFlow(res, step=12)
    with pytest.raises(traitlets.TraitError, match="top_k"):
        RelevanceFlow(res, top_k=0)
    with pytest.raises(KeyError, match="`step` 'fc9'"):
        w.shown("fc9")


def test_bad_arguments_name_the_argument_and_the_fix(flow) -> None:
    net, x, res = flow
    with pytest.raises(TypeError, match=r"`result` must be a RelevanceFlowResult.*from_model"):
        RelevanceFlow(nx.lrp(net, x, composite="epsilon"))
    with pytest.raises(ValueError, match="`inputs` has 2 images for 3 explained samples"):
        RelevanceFlow(res, x[:2])
    with pytest.raises(ValueError, match="`inputs` cannot be drawn as images.*Leave `inputs` out"):
        RelevanceFlow(res, torch.rand(3, 5, 8, 8))
    with pytest.raises(TypeError, match="`inputs` must be one image tensor"):
        RelevanceFlow(res, (x,))
    with pytest.raises(ValueError, match="`max_bytes` must be an int"):
        RelevanceFlow(res, max_bytes=10)
    with pytest.raises(TypeError, match="unexpected keyword argument 'smaple'.*'sample'"):
        RelevanceFlow(res, smaple=1)


def test_titles_and_unit_names_use_the_class_names(flow) -> None:
    _, x, res = flow
    classes = ["zero", "one", "two", "three", "four"]
    w = RelevanceFlow(res, x, classes=classes)
    assert w.titles == ["sample 0 · explains class 0 (zero)", "sample 1 · explains class 4 (four)",
                        "sample 2 · explains class 2 (two)"]
    assert w.step_info[1]["units"] == classes and w.step_info[3]["units"] == []
    assert RelevanceFlow(res).titles[1] == "sample 1 · explains class 4"
    assert repr(w) == "RelevanceFlow(n=3, steps=9, step=0 (output), sample=0)"


def test_from_model_calls_core_and_leaves_the_model_as_found() -> None:
    net = _net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(2, 1, 8, 8)
    w = RelevanceFlow.from_model(net, x, 3, "epsilon", classes=list("abcde"), step=2, progress=False)
    ref = nx.relevance_flow(net, x, 3, "epsilon", progress=False)
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert not any(m._forward_hooks or m._backward_hooks for m in net.modules())
    assert w.step == 2 and w.images.shape == (2, 8, 8, 1)
    torch.testing.assert_close(w.result.totals, ref.totals)
    np.testing.assert_allclose(w.shown("input", 1), ref.relevance["input"][1].double().sum(0).numpy())
    # non-image inputs: no picture under the input step, bars of the input features instead
    mlp = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    v = RelevanceFlow.from_model(mlp, torch.rand(2, 4), composite="epsilon", progress=False)
    assert v.images.shape == (0,) and v.step_info[-1]["kind"] == "bars" and v.step_info[-1]["shape"] == [2, 4]
