"""Models with several inputs in every entry point that takes data and is not an attribution (issue 16).

The model is ``masked_pool`` (tests/models/masked_pool.py): ``forward(x, mask=None)`` mean-pools per-token
features over the tokens the mask keeps, so a row that keeps no token pools to exactly 0 — a mask that does not
reach the model shows at once. Every value is compared with a float64 computation straight from the weights,
and every call must leave the (dressed) model exactly as found.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import nbexplain as nx
from nbexplain.core._base.capturing import iter_batches
from nbexplain.core.feature_space.probes import fit_linear_probe
from tests.models.masked_pool import masked_batch, masked_pool, reference
from tests.models.state import dress, untouched

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOL = dict(rtol=1e-5, atol=1e-6)


class Pairs(Dataset):
    """Items ``((x_i, mask_i), y_i)``: the DataLoader's default collate yields ``[[x, mask], y]``."""

    def __init__(self, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.mask, self.y = x, mask, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return (self.x[i], self.mask[i]), self.y[i]


def _net() -> nn.Module:
    net = masked_pool()
    dress(net, "head")
    return net


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32)


# ------------------------------------------------------------------------------------ activations


def test_a_tuple_is_one_batch_of_two_inputs_and_the_mask_reaches_the_model() -> None:
    net = _net()
    x, mask = masked_batch()
    pooled, _ = reference(net, x, mask)
    assert float(reference(net, x, None)[0][2].abs().sum()) > 0.1  # without the mask row 2 is not 0
    with untouched(net):
        got = nx.activations(net, (x, mask), "pool", batch_size=3)["pool"]  # split into 3 + 3 + 2, together
    torch.testing.assert_close(got, _f32(pooled), **TOL)
    assert torch.equal(got[2], torch.zeros(6)) and torch.equal(got[5], torch.zeros(6))


def test_keyword_inputs_and_nx_inputs_give_the_same_values() -> None:
    net = _net()
    x, mask = masked_batch()
    pooled, _ = reference(net, x, mask)
    with untouched(net):
        by_kw = nx.activations(net, {"x": x, "mask": mask}, ["pool", "head"])
        mixed = nx.activations(net, nx.Inputs(x, mask=mask), "pool")["pool"]
    torch.testing.assert_close(by_kw["pool"], _f32(pooled), **TOL)
    torch.testing.assert_close(by_kw["head"], _f32(reference(net, x, mask)[1]), **TOL)
    torch.testing.assert_close(mixed, _f32(pooled), **TOL)


def test_dataloader_of_inputs_and_labels_gives_the_model_only_the_inputs() -> None:
    net = _net()
    x, mask = masked_batch(10)
    y = torch.arange(10) % 3
    seen: list[int] = []
    net.register_forward_pre_hook(lambda _m, args: seen.append(len(args)))
    grouped = DataLoader(Pairs(x, mask, y), batch_size=4)  # yields [[x, mask], y]
    plain = DataLoader(TensorDataset(x, y), batch_size=4)  # yields [x, y]: y is a label, not an input
    with untouched(net, "activations on DataLoaders"):
        with_mask = nx.activations(net, grouped, "pool")["pool"]
        assert seen == [2, 2, 2]
        seen.clear()
        without = nx.activations(net, plain, "pool")["pool"]
        assert seen == [1, 1, 1]
    torch.testing.assert_close(with_mask, _f32(reference(net, x, mask)[0]), **TOL)
    torch.testing.assert_close(without, _f32(reference(net, x, None)[0]), **TOL)
    # a list of ((x, mask), y) batches and of plain tensors
    batches = [((x[:6], mask[:6]), y[:6]), ((x[6:], mask[6:]), y[6:])]
    torch.testing.assert_close(nx.activations(net, batches, "pool")["pool"], with_mask, **TOL)


def test_single_tensor_inputs_are_unchanged() -> None:
    net = _net()
    x, _ = masked_batch()
    chunks = list(iter_batches(x, 3))
    assert [c.n for c in chunks] == [3, 3, 2] and all(c.single for c in chunks)
    assert torch.equal(torch.cat([c[0] for c in chunks]), x)
    with untouched(net):
        got = nx.activations(net, x, "pool")["pool"]
    torch.testing.assert_close(got, _f32(reference(net, x, None)[0]), **TOL)


def test_token_ids_and_bool_masks_keep_their_dtype_and_floats_follow_the_model() -> None:
    net = masked_pool(vocab=11).double()
    ids, mask = masked_batch(vocab=11)
    seen = {}
    net.register_forward_pre_hook(lambda _m, args: seen.update(ids=args[0].dtype, mask=args[1].dtype))
    got = nx.activations(net, (ids, mask), "pool", dtype=torch.float64)["pool"]
    assert seen == {"ids": torch.int64, "mask": torch.bool}
    torch.testing.assert_close(got, reference(net, ids, mask)[0], rtol=1e-12, atol=1e-12)
    seen.clear()
    nx.activations(net.float(), (ids, mask.float()), "pool")
    assert seen["mask"] == torch.float32


def test_a_model_error_says_how_nbexplain_called_the_model() -> None:
    class NeedsMask(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(5, 2)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * mask

    x, mask = masked_batch()
    with pytest.raises(TypeError, match="mask") as err:
        nx.activations(NeedsMask(), x, "fc")
    assert "nbexplain called model(Tensor(8, 4, 5) float32)" in err.value.__notes__[0]
    assert "tuple (positional) or dict (keyword)" in err.value.__notes__[0]
    # (inputs, labels) passed where one batch of inputs belongs: the labels reach the model as a second input
    net = masked_pool()
    with pytest.raises(RuntimeError) as err:
        nx.activations(net, (x, torch.arange(8)), "pool")
    note = err.value.__notes__[0]
    assert "model(Tensor(8, 4, 5) float32, Tensor(8,) int64)" in note and "(inputs, labels)" in note
    # nbexplain's own errors, raised by its hooks inside the forward pass, carry no note
    class Named(nn.Module):
        def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"h": h}

    class WithDict(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.named = Named()

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.named(x * mask[..., None])["h"]

    with pytest.raises(TypeError, match="returned dict, not a tensor") as err:
        nx.activations(WithDict(), (x, mask), "named")
    assert not getattr(err.value, "__notes__", None)


def test_non_finite_values_are_reported_per_input() -> None:
    net = masked_pool()
    x, mask = masked_batch()
    weights = mask.float()
    weights[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"`inputs\[1\]` contains 1 non-finite"):
        nx.activations(net, (x, weights), "pool")
    with pytest.raises(ValueError, match=r"`inputs\['mask'\]` contains 1 non-finite"):
        nx.layer_statistics(net, {"x": x, "mask": weights}, ["pool"])
    with pytest.raises(ValueError, match="share their first-axis size"):
        nx.activations(net, (x, mask[:5]), "pool")


def test_layers_with_an_example_of_several_inputs() -> None:
    net = _net()
    x, mask = masked_batch()
    with untouched(net):
        listed = nx.list_layers(net, kinds="all", inputs=(x, mask))
        by_kw = nx.list_layers(net, kinds="all", inputs={"x": x, "mask": mask})
    assert list(listed) == ["proj", "act", "pool", "head"] == list(by_kw)
    assert listed.shapes["pool"] == (8, 6) and listed.layouts["act"] == "features_last"


# ------------------------------------------------------------------------- saturation, probes, δ


def test_layer_statistics_of_a_masked_layer() -> None:
    net = _net()
    x, mask = masked_batch(40, seed=3)
    pooled, _ = reference(net, x, mask)
    with untouched(net):
        stats = nx.layer_statistics(net, (x, mask), ["pool"], batch_size=16)["pool"]
    mu = pooled.mean(0)
    cov = (pooled - mu).T @ (pooled - mu) / pooled.shape[0]
    assert stats.count == 40
    torch.testing.assert_close(stats.mean.double(), mu, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(stats.covariance.double(), cov, rtol=1e-4, atol=1e-7)


def test_probe_accuracy_on_several_inputs() -> None:
    net = _net()
    x, mask = masked_batch(120, seed=4)
    mask[::3] = False  # every third row keeps no token: its pooled features are exactly 0
    y = (mask.sum(1) == 0).long()
    train, test = ((x[:80], mask[:80]), y[:80]), ((x[80:], mask[80:]), y[80:])
    with untouched(net):
        acc = nx.probe_accuracy(net, train, test, layers=["pool"], conv="mean")
        by_kw = nx.probe_accuracy(net, ({"x": x[:80], "mask": mask[:80]}, y[:80]),
                                  (nx.Inputs(x[80:], mask=mask[80:]), y[80:]), layers=["pool"], conv="mean")
    ref_tr, ref_te = _f32(reference(net, x[:80], mask[:80])[0]), _f32(reference(net, x[80:], mask[80:])[0])
    expected = fit_linear_probe(ref_tr, y[:80], ref_te, y[80:], n_classes=2).test_accuracy
    assert acc["pool"] == expected == by_kw["pool"] and expected >= 0.95
    blind = nx.probe_accuracy(net, (x[:80], y[:80]), (x[80:], y[80:]), layers=["pool"], conv="mean")
    assert blind["pool"] < 0.85  # without the mask the task is not linearly decodable from the pooled features
    with pytest.raises(TypeError, match=r"got a tuple of 3.*train=\(\(x, mask\), y\)"):
        nx.probe_accuracy(net, (x[:80], mask[:80], y[:80]), test)
    with pytest.raises(ValueError, match="`train\\[0\\]` has 80 samples but `train\\[1\\]` has 79"):
        nx.probe_accuracy(net, ((x[:80], mask[:80]), y[:79]), test)


def test_projected_outputs_and_delta_curve_on_several_inputs() -> None:
    net = _net()
    x, mask = masked_batch(30, seed=5)
    pooled, logits = reference(net, x, mask)
    stats = nx.layer_statistics(net, (x, mask), ["pool"])["pool"]
    with untouched(net):
        outs = nx.projected_outputs(net, (x, mask), "pool", stats, ks=[1, 2, 6], batch_size=7)
    w2, b2 = net.head.weight.double(), net.head.bias.double()
    for i, k in enumerate([1, 2, 6]):
        proj = nx.DeltaProjection(stats, k=k)
        p = proj.mean + (pooled - proj.mean) @ proj.basis @ proj.basis.T
        torch.testing.assert_close(outs[i].double(), p @ w2.T + b2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outs[2].double(), logits, rtol=1e-4, atol=1e-5)
    # a projection before the masked pooling: the mask (N rows) cannot follow a stacked K·N batch, so each k
    # runs on its own — with the mask
    act = nx.layer_statistics(net, (x, mask), ["act"])["act"]
    with untouched(net):
        outs = nx.projected_outputs(net, (x, mask), "act", act, ks=[1, 3])
    h = torch.relu(x.double() @ net.proj.weight.detach().double().T + net.proj.bias.detach().double())
    m = mask.double()[..., None]
    for i, k in enumerate([1, 3]):
        proj = nx.DeltaProjection(act, k=k)
        hp = proj.mean + (h - proj.mean) @ proj.basis @ proj.basis.T
        pooled_k = (hp * m).sum(1) / m.sum(1).clamp_min(1.0)
        torch.testing.assert_close(outs[i].double(), pooled_k @ w2.T + b2, rtol=1e-4, atol=1e-5)
    target = logits.argmax(1)
    target[:4] = (target[:4] + 1) % 3  # four wrong labels: the unprojected accuracy is 26/30
    with untouched(net):
        curve = nx.delta_curve(net, {"x": x, "mask": mask}, "pool", stats, deltas=[0.5, 1.0], labels=target)
    assert curve.baseline == pytest.approx(26 / 30) and float(curve.eigen[-1]) == pytest.approx(26 / 30)
    with pytest.raises(ValueError, match="`inputs` has 30 samples but `labels` has 29"):
        nx.delta_curve(net, (x, mask), "pool", stats, labels=target[:29])


# --------------------------------------------------------------------------------- similarity


def test_model_similarity_and_similarity_grid_see_every_input() -> None:
    a, b = _net(), masked_pool(seed=1)
    x, mask = masked_batch(64, seed=6)
    fa, fb = _f32(reference(a, x, mask)[0]), _f32(reference(b, x, mask)[0])
    with untouched(a), untouched(b):
        res = nx.model_similarity(a, b, (x, mask), ["pool"], metric="cka", progress=False)
        grid = nx.similarity_grid([a, b], iter([((x, mask), None)]), ["pool"], metric="cka", progress=False)
    expected = nx.cka(fa, fb).value
    assert float(res.grid[0, 0, 0]) == pytest.approx(expected, rel=1e-5)
    assert float(grid.grid[0, 0, 0]) == pytest.approx(expected, rel=1e-5)  # a one-shot generator, kept for both
    assert float(grid.grid[1, 0, 0]) == pytest.approx(1.0, rel=1e-6)


# ----------------------------------------------------------------------------- actmax


def test_top_activating_reads_every_input_and_shows_the_chosen_one() -> None:
    net = _net()
    x, mask = masked_batch(20, seed=7)
    pooled, _ = reference(net, x, mask)
    with untouched(net):
        top = nx.top_activating(net, (x, mask), "pool", [0, 3], k=4, batch_size=6, progress=False)
        masks = nx.top_activating(net, {"x": x, "mask": mask}, "pool", [0, 3], k=4, wrt="mask", progress=False)
    for row, unit in enumerate([0, 3]):
        vals, idx = pooled[:, unit].topk(4)
        torch.testing.assert_close(top.values[row].double(), vals, **TOL)
        assert torch.equal(top.indices[row], idx)
        assert torch.equal(top.images[row], x[idx])
        assert torch.equal(masks.images[row], mask[idx].float())
    with pytest.raises(ValueError, match="`wrt`='lengths' names no input"):
        nx.top_activating(net, (x, mask), "pool", 0, wrt="lengths", progress=False)


def test_maximize_activation_holds_the_other_inputs_fixed() -> None:
    net = _net()
    x, mask = masked_batch(20, seed=8)
    keep = torch.tensor([[True, True, False, False]])
    none = torch.zeros(1, 4, dtype=torch.bool)
    kw = dict(steps=6, value_range=(-2, 2), progress=False, transforms=None)
    with untouched(net):
        res = nx.maximize_activation(net, "pool", [0, 1], (4, 5), inputs=(None, keep), reference=(x, mask), **kw)
        masked_out = nx.maximize_activation(net, "pool", [0, 1], (4, 5), inputs={"mask": none}, wrt="x", **kw)
        per_image = nx.maximize_activation(net, "pool", [0, 1], (4, 5), inputs=(None, torch.cat([keep, none])),
                                           **kw)
    final_ref = reference(net, res.images, keep.expand(2, 4))[0]
    torch.testing.assert_close(res.final.double(), final_ref[[0, 1], [0, 1]], **TOL)
    torch.testing.assert_close(res.reference_values.double(), reference(net, x, mask)[0][:, [0, 1]].T, **TOL)
    assert torch.equal(masked_out.final, torch.zeros(2))  # the mask keeps no token: nothing can move the pool
    per_ref = reference(net, per_image.images, torch.cat([keep, none]))[0]
    torch.testing.assert_close(per_image.final.double(), per_ref[[0, 1], [0, 1]], **TOL)
    assert float(per_image.final[1]) == 0.0
    # layer=None: the model's own output, with the mask held fixed
    logit = nx.maximize_activation(net, None, 2, (4, 5), objective="logit", inputs=nx.Inputs(None, keep), **kw)
    torch.testing.assert_close(logit.final.double(), reference(net, logit.images, keep)[1][:, 2], **TOL)
    with pytest.raises(ValueError, match=r"`inputs\[1\]` has 3 rows; a fixed input needs 1 row"):
        nx.maximize_activation(net, "pool", [0, 1], (4, 5), inputs=(None, mask[:3]), **kw)
    with pytest.raises(TypeError, match="`inputs` holds the model's other inputs"):
        nx.maximize_activation(net, "pool", 0, (4, 5), inputs=keep, **kw)
    with pytest.raises(ValueError, match="placeholder|pass None there"):
        nx.maximize_activation(net, "pool", 0, (4, 5), inputs=(torch.zeros(1, 3, 5), keep), **kw)
    with pytest.raises(ValueError, match="`wrt`=1 chooses one of several inputs, but `inputs` is None"):
        nx.maximize_activation(net, "pool", 0, (4, 5), wrt=1, **kw)


# ----------------------------------------------------------------------------- complexity


def test_decompose_complexity_with_several_inputs() -> None:
    net = _net()
    x, mask = masked_batch(96, seed=9)
    _, logits = reference(net, x, mask)
    y = (logits + 0.5 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))).float()
    kw = dict(orders=(0, 1), epochs=2, width=8, progress=False, reference_model=False, metric_samples=64)
    with untouched(net):
        res = nx.decompose_complexity(net, ((x[:64], mask[:64]), y[:64]), ((x[64:], mask[64:]), y[64:]), "pool",
                                      **kw)
    assert res.input_key == 0 and res.input_shape == (4, 5)
    torch.testing.assert_close(res.features((x[:5], mask[:5])).double(), reference(net, x[:5], mask[:5])[0], **TOL)
    # the task loss of the unmodified model reads the mask: the squared error of the float64 outputs
    assert res.losses["model_train"] == pytest.approx(float((logits[:64] - y[:64]).pow(2).mean()), rel=1e-5)
    assert res.losses["model_test"] == pytest.approx(float((logits[64:] - y[64:]).pow(2).mean()), rel=1e-5)
    assert torch.equal(res.components(x[:3]), res.components(nx.Inputs(x[:3], mask[:3])))
    with pytest.raises(TypeError, match=r"`train\[0\]\['mask'\]` has dtype torch.bool"):
        nx.decompose_complexity(net, ({"x": x[:64], "mask": mask[:64]}, y[:64]),
                                ({"x": x[64:], "mask": mask[64:]}, y[64:]), "pool", wrt="mask", **kw)
    with pytest.raises(ValueError, match="`train` and `test` hold different inputs"):
        nx.decompose_complexity(net, ((x[:64], mask[:64]), y[:64]), (x[64:], y[64:]), "pool", **kw)


def test_decompose_complexity_trains_its_reference_on_every_input() -> None:
    net = _net()
    x, mask = masked_batch(48, seed=10)
    y = reference(net, x, mask)[1].argmax(1)
    with untouched(net):
        res = nx.decompose_complexity(net, ((x[:32], mask[:32]), y[:32]), ((x[32:], mask[32:]), y[32:]), "pool",
                                      orders=(0, 1), epochs=1, width=8, progress=False, reference_epochs=1)
    ref = res.reference_model
    fb = reference(ref, x[:4], mask[:4])[0]
    assert torch.equal(fb[2], torch.zeros(6, dtype=torch.float64))
    rel = res.reliable_components((x[:4], mask[:4]))
    w, b = res.consistency_maps[res.orders[0]]
    torch.testing.assert_close(rel[0].double(), fb @ w + b, rtol=1e-4, atol=1e-5)
