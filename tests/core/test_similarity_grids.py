"""similarity_grid / model_similarity: every cell equals the pairwise functions, checkpoints in every form,
conv layouts, model hygiene, errors."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbexplain as nx
from nbexplain.zoo import cnn, mlp

LAYERS = ["fc1", "relu1", "fc2", "out"]
ALL = ["svcca", "cca", "pwcca", "cka", "cka_debiased", "cka_rbf"]


def checkpoints(t=3):
    """A fake 'training run': interpolate from one init towards another net."""
    a, b = mlp(12, (10, 6), seed=0), mlp(12, (10, 6), seed=1)
    out = []
    for s in torch.linspace(0, 1, t):
        m = mlp(12, (10, 6), seed=0)
        with torch.no_grad():
            for pm, pa, pb in zip(m.parameters(), a.parameters(), b.parameters(), strict=True):
                pm.copy_((1 - s) * pa + s * pb)
        out.append(m)
    return out


@pytest.fixture(scope="module")
def x():
    return torch.randn(120, 12, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def grid(x):
    return nx.similarity_grid(checkpoints(), x, LAYERS, metric=ALL, keep=0.95, progress=False)


def test_every_cell_equals_the_pairwise_functions(grid, x):
    ckpts = checkpoints()
    ref = nx.activations(ckpts[-1], x, LAYERS, dtype=torch.float64)
    assert grid.grid.shape == (3, 4, 4) and grid.metrics == ALL and grid.metric == "svcca"
    for t in (0, 2):
        acts = nx.activations(ckpts[t], x, LAYERS, dtype=torch.float64)
        for i, j in [(0, 0), (1, 2), (2, 1), (3, 3), (0, 3)]:
            if True:
                rn, cn = LAYERS[i], LAYERS[j]
                a, b = acts[rn], ref[cn]
                expect = {
                    "svcca": nx.svcca(a, b, keep=0.95).mean,
                    "cca": nx.cca(a, b).mean,
                    "pwcca": nx.pwcca(a, b).value,
                    "cka": nx.cka(a, b).value,
                    "cka_debiased": nx.cka(a, b, debiased=True).value,
                    "cka_rbf": nx.cka(a, b, kernel="rbf").value,
                }
                coef = nx.cca(a, b).coefficients
                if bool((coef[:-1] - coef[1:] < 1e-6).any()):
                    # tied canonical correlations: the variates inside a tie (and so PWCCA) are not unique
                    expect.pop("pwcca")
                for m, v in expect.items():
                    assert grid.grids[m][t, i, j].item() == pytest.approx(v, abs=1e-9), (m, t, rn, cn)
                spec = grid.spectrum(t, i, j, "svcca")
                torch.testing.assert_close(spec, nx.svcca(a, b, keep=0.95).coefficients.float(), atol=1e-6, rtol=0)


def test_last_checkpoint_against_itself_is_one_on_the_diagonal(grid):
    for m in ALL:
        torch.testing.assert_close(grid.grids[m][-1].diagonal(), torch.ones(4, dtype=torch.float64), atol=1e-9, rtol=0)
    assert grid.checkpoint_labels == ["checkpoint 0", "checkpoint 1", "checkpoint 2"]
    assert grid.layers == grid.reference_layers == LAYERS
    assert grid.kind == "checkpoints" and grid.reference_label == "checkpoint 2"
    assert grid.spectra["svcca"].shape[:3] == (3, 4, 4)
    assert grid.n_samples.eq(120).all()
    assert "checkpoints=3" in repr(grid)


@pytest.mark.parametrize("epsilon", [0.0, 1e-3])
def test_reference_rows_use_symmetry_and_still_equal_the_pairwise_functions(x, epsilon):
    """At the reference checkpoint the grid computes only the upper triangle (mirroring the rest) and sets
    the diagonal to exactly 1 when ε = 0; every cell and spectrum must still equal the direct computation."""
    ckpts = checkpoints()
    metrics = ["svcca", "cca", "cka", "cka_debiased", "cka_rbf"]
    res = nx.similarity_grid(ckpts, x, LAYERS, metric=metrics, keep=0.95, epsilon=epsilon, progress=False)
    ref = nx.activations(ckpts[-1], x, LAYERS, dtype=torch.float64)
    for i, rn in enumerate(LAYERS):
        for j, cn in enumerate(LAYERS):
            a, b = ref[rn], ref[cn]
            expect = {
                "svcca": nx.svcca(a, b, keep=0.95, epsilon=epsilon),
                "cca": nx.cca(a, b, epsilon=epsilon),
            }
            for m, r in expect.items():
                assert res.grids[m][-1, i, j].item() == pytest.approx(r.mean, abs=1e-9), (m, rn, cn)
                torch.testing.assert_close(res.spectrum(2, i, j, m), r.coefficients.float(), atol=1e-6, rtol=0)
            assert res.grids["cka"][-1, i, j].item() == pytest.approx(nx.cka(a, b).value, abs=1e-9)
            assert res.grids["cka_debiased"][-1, i, j].item() == pytest.approx(
                nx.cka(a, b, debiased=True).value, abs=1e-9
            )
            assert res.grids["cka_rbf"][-1, i, j].item() == pytest.approx(nx.cka(a, b, kernel="rbf").value, abs=1e-9)
    for m in metrics:
        torch.testing.assert_close(res.grids[m][-1], res.grids[m][-1].T, atol=1e-12, rtol=0)
    if epsilon == 0.0:
        for m in metrics:
            assert bool(res.grids[m][-1].diagonal().eq(1.0).all()), m
    else:  # the ridge shrinks self-correlations below 1, so the diagonal is computed, not assumed
        assert float(res.grids["cca"][-1].diagonal().max()) < 1.0


def test_state_dicts_and_files_give_the_same_grid(tmp_path, x):
    ckpts = checkpoints()
    by_module = nx.similarity_grid(ckpts, x, LAYERS, metric="cca", progress=False)
    paths = []
    for t, m in enumerate(ckpts):
        p = tmp_path / f"epoch{t}.pt"
        torch.save(m.state_dict() if t != 1 else {"model_state_dict": m.state_dict(), "epoch": 1}, p)
        paths.append(str(p))
    template = mlp(12, (10, 6), seed=5)
    before = {k: v.clone() for k, v in template.state_dict().items()}
    by_file = nx.similarity_grid(paths, x, LAYERS, metric="cca", model=template, progress=False)
    by_state = nx.similarity_grid([m.state_dict() for m in ckpts], x, LAYERS, metric="cca", model=template, progress=False)
    torch.testing.assert_close(by_file.grid, by_module.grid, atol=1e-12, rtol=0)
    torch.testing.assert_close(by_state.grid, by_module.grid, atol=1e-12, rtol=0)
    assert by_file.checkpoint_labels == ["epoch0", "epoch1", "epoch2"]
    for k, v in template.state_dict().items():  # the template is never loaded into
        assert torch.equal(v, before[k])
    # a one-shot generator of (x, y) batches is read once and reused for every checkpoint
    gen = ((x[i : i + 50], None) for i in range(0, 120, 50))
    by_gen = nx.similarity_grid(ckpts, gen, LAYERS, metric="cca", progress=False)
    torch.testing.assert_close(by_gen.grid, by_module.grid, atol=1e-12, rtol=0)
    labelled = nx.similarity_grid({"start": ckpts[0], "end": ckpts[2]}, x, "fc1", progress=False)
    assert labelled.checkpoint_labels == ["start", "end"] and labelled.grid.shape == (2, 1, 1)


def test_pickled_module_files_are_refused(tmp_path, x):
    p = tmp_path / "whole_model.pt"
    torch.save(mlp(12, (10, 6)), p)  # a pickled module, not weights
    with pytest.raises(ValueError, match="weights_only=True"):
        nx.similarity_grid([str(p)], x, LAYERS, model=mlp(12, (10, 6)), progress=False)


def test_model_vs_model_grid(x):
    a, b = mlp(12, (10, 6), seed=0), mlp(12, (16, 8, 4), seed=1)
    res = nx.model_similarity(a, b, x, ["fc1", "fc2"], layers_b=["fc1", "fc2", "fc3"], metric=["cka", "svcca"],
                              model_labels=("small", "deep"), progress=False)
    assert res.kind == "models" and res.grid.shape == (1, 2, 3)
    assert res.checkpoint_labels == ["small"] and res.reference_label == "deep"
    fa = nx.activations(a, x, ["fc2"])["fc2"]
    fb = nx.activations(b, x, ["fc3"])["fc3"]
    assert res.grids["cka"][0, 1, 2].item() == pytest.approx(nx.cka(fa, fb).value, abs=1e-9)
    with pytest.raises(TypeError, match="reference"):
        nx.model_similarity(a, b, x, ["fc1"], reference=a)


def test_conv_channels_resolution_alignment_and_pooling():
    net = cnn(1, image_size=8, width=3, hidden=8, seed=0)
    other = cnn(1, image_size=8, width=3, hidden=8, seed=1)
    imgs = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    layers = ["conv1", "conv2", "fc1"]
    res = nx.model_similarity(net, other, imgs, layers, metric="cca", progress=False, max_samples=100_000)
    with nx.capture(net, ["conv1"]) as oa, torch.no_grad():
        net.eval()(imgs)
    with nx.capture(other, ["conv2", "fc1"]) as ob, torch.no_grad():
        other.eval()(imgs)
    c1 = oa["conv1"].double()  # (30, 3, 8, 8)
    c2 = ob["conv2"].double()  # (30, 6, 4, 4)
    pooled = F.adaptive_avg_pool2d(c1, (4, 4))
    expect = nx.cca(pooled.movedim(1, -1).reshape(-1, 3), c2.movedim(1, -1).reshape(-1, 6)).mean
    assert res.grid[0, 0, 1].item() == pytest.approx(expect, abs=1e-9)
    assert res.n_samples[0, 1].item() == 30 * 16
    expect_dense = nx.cca(c1.mean(dim=(2, 3)), ob["fc1"].double()).mean
    assert res.grid[0, 0, 2].item() == pytest.approx(expect_dense, abs=1e-9)
    assert res.n_samples[0, 2].item() == 30
    # subsampling: deterministic, bounded, and the same subset for both sides (a layer against itself → 1)
    sub = nx.model_similarity(net, net, imgs, ["conv1"], metric="svcca", max_samples=500, progress=False)
    again = nx.model_similarity(net, net, imgs, ["conv1"], metric="svcca", max_samples=500, progress=False)
    assert sub.n_samples.item() == 500 and torch.equal(sub.grid, again.grid)
    assert sub.grid.item() == pytest.approx(1.0, abs=1e-9)
    # a ReLU after a conv keeps the channel layout (positions are samples)
    relu = nx.model_similarity(net, net, imgs, ["relu1", "conv2"], metric="cca", max_samples=100_000, progress=False)
    assert relu.n_samples.tolist() == [[30 * 64, 30 * 16], [30 * 16, 30 * 16]]
    pooled_mode = nx.model_similarity(net, other, imgs, ["conv1"], layers_b=["conv2"], metric="cka", conv="mean",
                                      progress=False)
    assert pooled_mode.grid.item() == pytest.approx(
        nx.cka(c1.mean(dim=(2, 3)), c2.mean(dim=(2, 3))).value, abs=1e-9
    )


def test_model_left_exactly_as_found_also_when_forward_raises(x):
    net = mlp(12, (10, 6), seed=0)
    net.train()
    net.fc1.weight.requires_grad_(False)
    handle = net.fc2.register_forward_hook(lambda *a: None)
    snap = {k: v.clone() for k, v in net.state_dict().items()}
    nx.similarity_grid([net], x, LAYERS, metric=["svcca", "cka"], progress=False)
    assert net.training and not net.fc1.weight.requires_grad and len(net.fc2._forward_hooks) == 1
    assert all(torch.equal(v, snap[k]) for k, v in net.state_dict().items())

    class Boom(nn.Module):
        def forward(self, t):
            raise RuntimeError("boom")

    net.relu2 = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        nx.similarity_grid([net], x, ["fc1"], progress=False)
    assert net.training and len(net.fc2._forward_hooks) == 1 and len(net.fc1._forward_hooks) == 0
    assert all(torch.equal(v, snap[k]) for k, v in net.state_dict().items())
    handle.remove()


def test_dead_layer_gives_nan_cells_and_a_warning(x):
    net = mlp(12, (10, 6), seed=0)
    with torch.no_grad():
        net.fc2.weight.zero_()
        net.fc2.bias.fill_(-1.0)  # relu2 is dead: always 0
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = nx.similarity_grid([net], x, ["fc1", "relu2"], metric=["svcca", "cka"], progress=False)
    assert any("Zero variance" in str(w.message) and "relu2" in str(w.message) for w in rec)
    assert math.isnan(res.grid[0, 1, 1].item()) and math.isnan(res.grid[0, 0, 1].item())
    assert res.grid[0, 0, 0].item() == pytest.approx(1.0, abs=1e-9)


def test_grid_errors(x):
    ckpts = checkpoints(2)
    with pytest.raises(ValueError, match="Did you mean 'fc1'"):
        nx.similarity_grid(ckpts, x, ["fc_1"], progress=False)
    with pytest.raises(ValueError, match="Did you mean 'svcca'"):
        nx.similarity_grid(ckpts, x, LAYERS, metric="svcc", progress=False)
    with pytest.raises(ValueError, match="empty"):
        nx.similarity_grid([], x, LAYERS, progress=False)
    with pytest.raises(ValueError, match="labels"):
        nx.similarity_grid(ckpts, x, LAYERS, checkpoint_labels=["a"], progress=False)
    with pytest.raises(ValueError, match="pass `model=`"):
        nx.similarity_grid([ckpts[0].state_dict()], x, LAYERS, progress=False)
    with pytest.raises(ValueError, match="does not fit"):
        nx.similarity_grid([mlp(12, (5,)).state_dict()], x, LAYERS, model=ckpts[0], progress=False)
    with pytest.raises(FileNotFoundError):
        nx.similarity_grid(["/nonexistent/ckpt.pt"], x, LAYERS, model=ckpts[0], progress=False)
    with pytest.raises(ValueError, match="empty"):
        nx.similarity_grid(ckpts, [], LAYERS, progress=False)
    with pytest.raises(ValueError, match="max_samples|≥ 1"):
        nx.similarity_grid(ckpts, x, LAYERS, max_samples=0, progress=False)
    res = nx.similarity_grid(ckpts, x, LAYERS, metric="cka", progress=False)
    with pytest.raises(ValueError, match="No CCA spectra"):
        res.spectrum(0, 0, 0)


def test_progress_follows_the_policy(x, capsys):
    ckpts = checkpoints()
    quiet = nx.similarity_grid(ckpts, x, ["fc1", "out"], metric=["svcca", "cka"], progress=False)
    assert capsys.readouterr().err == ""
    shown = nx.similarity_grid(ckpts, x, ["fc1", "out"], metric=["svcca", "cka"], progress=True)  # at once
    assert "similarity grid" in capsys.readouterr().err
    auto = nx.similarity_grid(ckpts, x, ["fc1", "out"], metric=["svcca", "cka"])  # default None; quick: none
    assert "similarity grid" not in capsys.readouterr().err
    for res in (shown, auto):
        for m in ("svcca", "cka"):
            assert torch.equal(res.grids[m], quiet.grids[m])
    assert quiet.options == dict(conv="channels", keep=0.99, epsilon=0.0, threshold=1.0, max_samples=10_000, seed=0)
    with pytest.raises(TypeError, match="`progress` must be None"):
        nx.similarity_grid(ckpts, x, ["fc1"], progress="yes")


def test_converged_at_is_the_first_checkpoint_that_stays_above_the_threshold():
    g = torch.tensor(
        [
            [[0.50, 0.1, 0.2], [0.3, 0.6, 0.1]],
            [[0.95, 0.1, 0.2], [0.3, float("nan"), 0.1]],
            [[0.80, 0.1, 0.2], [0.3, 0.92, 0.1]],
            [[0.97, 0.1, 0.2], [0.3, 0.91, 0.1]],
        ],
        dtype=torch.float64,
    )
    res = nx.SimilarityGridResult(
        grids={"svcca": g, "cka": g * 0.5}, spectra={}, checkpoint_labels=list("abcd"), layers=["fc1", "fc2"],
        reference_layers=["fc1", "fc2", "out"], reference_label="d", kind="checkpoints",
        n_samples=torch.ones(2, 3, dtype=torch.int64),
    )
    # fc1 dips below at c: stays from d (3); fc2's NaN at b does not count, stays from c (2)
    assert res.converged_at(0.9) == {"fc1": 3, "fc2": 2}
    assert res.converged_at(0.99) == {"fc1": -1, "fc2": -1}
    assert res.converged_at(0.4, metric="cka") == {"fc1": 1, "fc2": 2}  # halved values: 0.475, 0.4, 0.485 hold
    other = nx.SimilarityGridResult(
        grids={"svcca": g}, spectra={}, checkpoint_labels=list("abcd"), layers=["fc1", "fc2"],
        reference_layers=["a", "fc2", "b"], reference_label="d", kind="checkpoints",
        n_samples=torch.ones(2, 3, dtype=torch.int64),
    )
    assert other.converged_at(0.5) == {"fc2": 2}  # only layers the reference has, read on their own column
    with pytest.raises(ValueError, match="metric"):
        res.converged_at(0.9, metric="pwcca")
