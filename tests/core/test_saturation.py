"""Saturation: definitions, the streaming tracker against a float64 reference, hygiene, delve's defects."""

from __future__ import annotations

import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import nbexplain as nx
from nbexplain.core.feature_space.tracking import SaturationTracker
from nbexplain.zoo import cnn, mlp


# ----------------------------------------------------------------- definitions
def ref_k(eigenvalues: list[float], delta: float) -> int:
    """Smallest k whose k largest eigenvalues sum to ≥ δ of the total (plain Python floats)."""
    vals = sorted((max(v, 0.0) for v in eigenvalues), reverse=True)
    total = sum(vals)
    run = 0.0
    for k, v in enumerate(vals, start=1):
        run += v
        if run >= delta * total:
            return k
    return len(vals)


def k_band(eigenvalues: list[float], delta: float, slack: float, mode: str = "textbook") -> range:
    """Every k the counting rule can give when the explained fractions move by ±``slack``.

    k is a threshold on a cumulative sum, so an exact comparison of two k's computed from two routes
    (float32 batch covariances vs a float64 reference, two eigen-solvers, another CPU's BLAS kernels) flips
    whenever the data put a cumulative fraction within round-off of δ. Both rules are monotone in δ, so the
    band is [k(δ − slack), k(δ + slack)].
    """
    lo = nx.intrinsic_dimension(eigenvalues, max(delta - slack, 1e-12), mode=mode)
    hi = nx.intrinsic_dimension(eigenvalues, min(delta + slack, 1.0), mode=mode)
    return range(lo, hi + 1)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("delta", [0.5, 0.9, 0.97, 0.99, 0.9995, 1.0])
def test_intrinsic_dimension_matches_definition(seed, delta):
    g = torch.Generator().manual_seed(seed)
    vals = (torch.rand(12, generator=g, dtype=torch.float64) ** 4).tolist()
    assert nx.intrinsic_dimension(vals, delta) == ref_k(vals, delta)
    assert nx.saturation(vals, delta) == ref_k(vals, delta) / 12


def test_intrinsic_dimension_edge_cases():
    assert nx.intrinsic_dimension([1.0, 0.0, 0.0], 1.0) == 1  # rank 1
    assert nx.intrinsic_dimension([0.0, 0.0], 0.99) == 0  # dead layer
    assert nx.intrinsic_dimension([1.0, 1.0, 1.0, 1.0], 0.99) == 4
    assert nx.intrinsic_dimension([1.0, 1.0, 1.0, 1.0], 0.5) == 2
    assert nx.intrinsic_dimension(torch.tensor([0.1, 3.0, 1.0]), 0.7) == 1  # order does not matter
    assert nx.intrinsic_dimension([2.0, -1e-17, 1.0], 0.9) == 2  # round-off negatives are zero
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="delta"):
            nx.intrinsic_dimension([1.0, 2.0], bad)
    with pytest.raises(ValueError, match="mode"):
        nx.intrinsic_dimension([1.0], 0.9, mode="delvee")
    with pytest.raises(ValueError, match="empty"):
        nx.intrinsic_dimension([], 0.9)
    with pytest.raises(ValueError, match="NaN"):
        nx.intrinsic_dimension([1.0, float("nan")], 0.9)


def test_delve_mode_reproduces_delve_counting_rule_and_textbook_differs():
    from delve.metrics import compute_intrinsic_dimensionality

    differ = 0
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(40, 8, generator=g, dtype=torch.float64) * torch.logspace(0, -2, 8, dtype=torch.float64)
        cov = a.T @ a / 40
        vals = torch.linalg.eigvalsh(cov)
        for delta in (0.9, 0.99):
            # delve takes its own eigh (UPLO='U') and a vectorised sum: its fractions may differ from
            # ours in the last bits, so k is compared within a band of 1e-9 around δ
            theirs = compute_intrinsic_dimensionality(cov.clone(), thresh=delta)
            assert theirs in k_band(vals, delta, 1e-9, mode="delve")
            ours = nx.intrinsic_dimension(vals, delta)
            band = k_band(vals, delta, 1e-9)
            assert max(band[0] - 1, 1) <= theirs <= max(band[-1] - 1, 1)  # delve's k: one less than ours
            differ += theirs != ours
    assert differ > 60


# ------------------------------------------------------------ streaming tracker
def reference_spectrum(outputs: list[torch.Tensor], channel_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    feats = []
    for o in outputs:
        o = o.double()
        feats.append(o.movedim(1, -1).reshape(-1, o.shape[1]) if channel_first and o.ndim > 2 else o)
    x = torch.cat(feats)
    mu = x.mean(0)
    cov = (x - mu).T @ (x - mu) / x.shape[0]
    return cov, torch.linalg.eigvalsh(cov).flip(0)


@pytest.mark.parametrize("sizes", [[64, 64, 64], [1, 7, 100, 33]])
def test_tracker_equals_reference_mlp(sizes):
    net = mlp(20, (16, 8), seed=1)
    gen = torch.Generator().manual_seed(sum(sizes))
    xs = [torch.randn(n, 20, generator=gen) * 3 + 5 for n in sizes]
    with nx.capture(net, ["fc1", "fc2", "out"]) as cap:
        outs = {k: [] for k in ["fc1", "fc2", "out"]}
        with torch.no_grad():
            for x in xs:
                net(x)
                for k in outs:
                    outs[k].append(cap[k].clone())
    with SaturationTracker(net, delta=0.95) as tr:
        with torch.no_grad():
            for x in xs:
                net(x)
        live = tr.saturation()
        rec = tr.end_epoch()
    for name in ["fc1", "fc2", "out"]:
        cov, vals = reference_spectrum(outs[name], False)
        # float32 activations, summed in float32 blocks of up to 16 batches (shifted) and merged in
        # float64: equal to float32 precision (eps 1.2e-7, times the few dozen additions of a block) of
        # the covariance's scale. Measured worst case over random data: 2.4e-6 of the scale.
        torch.testing.assert_close(tr.stats[name].covariance, cov, rtol=1e-5, atol=1e-5 * float(cov.abs().max()))
        torch.testing.assert_close(rec.train[name].eigenvalues, vals.clamp_min(0), rtol=1e-5, atol=1e-6)
        # float32-accurate statistics: k within the band of fractions ±1e-5 around δ (exact k would flip
        # on another CPU's kernels whenever a cumulative fraction lies that close to δ)
        assert rec.train[name].intrinsic_dimension in k_band(vals.tolist(), 0.95, 1e-5)
        assert rec.train[name].count == sum(sizes)
        assert live[name] == rec.train[name].saturation


@pytest.mark.filterwarnings("ignore:Layer 'conv2' \\(eval\\) saw 16 samples")
def test_tracker_equals_reference_conv_channels_and_pooled():
    net = cnn(seed=0)
    xs = [torch.rand(n, 1, 28, 28) for n in (5, 3, 8)]
    outs = {"conv1": [], "conv2": []}
    with nx.capture(net, list(outs)) as cap, torch.no_grad():
        net.eval()
        for x in xs:
            net(x)
            for k in outs:
                outs[k].append(cap[k].clone())
    net.train()
    for conv in ("channels", "mean"):
        with torch.no_grad(), SaturationTracker(net, ["conv1", "conv2"], conv=conv) as tr:
            net.eval()
            for x in xs:
                net(x)
            rec = tr.end_epoch()
        net.train()
        for name in outs:
            if conv == "channels":
                cov, vals = reference_spectrum(outs[name], True)
            else:
                cov, vals = reference_spectrum([o.mean(dim=(2, 3)) for o in outs[name]], False)
            torch.testing.assert_close(tr.eval_stats[name].covariance, cov, rtol=1e-5, atol=1e-7)
            assert rec.eval[name].intrinsic_dimension in k_band(vals.tolist(), 0.99, 1e-5)
            assert rec.train == {}


def test_train_and_eval_statistics_are_kept_apart():
    net = nn.Sequential(nn.Linear(6, 6), nn.Dropout(0.5), nn.Linear(6, 4))
    x = torch.randn(200, 6)
    with torch.no_grad(), SaturationTracker(net, ["2"]) as tr:
        net.train()
        net(x)
        net.eval()
        net(x)
        net(x)
        train_cov, eval_cov = tr.stats["2"].covariance, tr.eval_stats["2"].covariance
        rec = tr.end_epoch()
    assert tr.stats["2"].count == 200 and tr.eval_stats["2"].count == 400
    assert not torch.allclose(train_cov, eval_cov)
    with nx.capture(net, "2") as cap, torch.no_grad():
        net.eval()
        net(x)
    torch.testing.assert_close(eval_cov, reference_spectrum([cap["2"]], False)[0], rtol=1e-6, atol=1e-7)
    assert set(rec.train) == set(rec.eval) == {"2"}


def test_end_epoch_history_reset_observers_and_extra():
    net = mlp(10, (8,))
    seen = []
    with SaturationTracker(net) as tr:
        unsubscribe = tr.observe(seen.append)
        for epoch in range(3):
            with torch.no_grad():
                net(torch.randn(50 * (epoch + 1), 10))
            rec = tr.end_epoch(probes={"fc1": 0.5}, loss=1.0 / (epoch + 1))
            assert tr.stats["fc1"].count == 50 * (epoch + 1)  # reset: only this epoch's samples
        unsubscribe()
        with torch.no_grad():
            net(torch.randn(20, 10))
        tr.end_epoch()
    assert len(seen) == 3 and seen[-1] is tr.history[2]
    assert [r.epoch for r in tr.history] == [0, 1, 2, 3]
    assert rec.probes == {"fc1": 0.5} and rec.extra == {"loss": 1.0 / 3}
    assert list(tr.series()) == ["fc1", "out"] and len(tr.series()["fc1"]) == 4
    assert all(v != v for v in tr.series("eval")["fc1"])  # NaN: no eval passes
    with pytest.raises(TypeError, match="callable"):
        tr.observe(3)


def test_subsampled_positions_close_to_exact():
    net = cnn(seed=0).eval()
    x = torch.rand(16, 1, 28, 28)
    exact = nx.layer_statistics(net, x, ["conv1"])["conv1"]
    sub = nx.layer_statistics(net, x, ["conv1"], max_positions=200, batch_size=4)["conv1"]
    assert sub.count == 16 * 200
    rel = (sub.covariance - exact.covariance).norm() / exact.covariance.norm()
    assert rel < 0.1


# --------------------------------------------------------------------- hygiene
def snapshot(net: nn.Module):
    return (
        {k: v.clone() for k, v in net.state_dict().items()},
        [m.training for m in net.modules()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in net.modules()],
        [p.requires_grad for p in net.parameters()],
    )


def assert_same(a, b):
    assert a[1:] == b[1:]
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]), k


def test_hooks_removed_and_model_untouched_also_on_exception():
    net = cnn(seed=0)
    net.conv2.register_forward_hook(lambda *a: None)  # the user's own hook must survive
    net.bn1.eval()  # mixed modes must survive too; frozen BN statistics keep the values comparable
    net.bn2.eval()
    before = snapshot(net)
    with torch.no_grad(), SaturationTracker(net) as tr:
        net(torch.rand(2, 1, 28, 28))
        with pytest.warns(RuntimeWarning):
            tr.end_epoch()
    assert_same(before, snapshot(net))
    with pytest.raises(RuntimeError, match="boom"):
        with SaturationTracker(net):
            net.fc1.register_forward_pre_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
            net(torch.rand(2, 1, 28, 28))
    net.fc1._forward_pre_hooks.clear()
    assert_same(before, snapshot(net))
    # layer_statistics runs in eval mode and restores train mode and hooks.
    nx.layer_statistics(net, torch.rand(4, 1, 28, 28))
    assert_same(before, snapshot(net))


def test_closed_tracker_and_bad_inputs():
    net = mlp(10, (8,))
    tr = SaturationTracker(net)
    with tr:
        with pytest.raises(ValueError, match="No forward pass"):
            tr.end_epoch()
        with pytest.raises(RuntimeError, match="already running"):
            tr.start()
        net(torch.randn(30, 10))
        tr.end_epoch()
    assert tr.closed and len(tr.history) == 1
    assert tr.saturation()["fc1"] == tr.history[0].train["fc1"].saturation  # results stay readable
    with pytest.raises(RuntimeError, match="closed"):
        tr.end_epoch()
    with pytest.raises(RuntimeError, match="closed"):
        tr.__enter__()
    net(torch.randn(5, 10))  # no hook left: nothing recorded
    assert tr.stats["fc1"].count == 30
    with pytest.raises(ValueError, match="Unknown layer"):
        SaturationTracker(net, ["fc9"])
    with pytest.raises(ValueError, match="delta"):
        SaturationTracker(net, delta=0)
    with pytest.raises(ValueError, match="conv"):
        SaturationTracker(net, conv="channel")
    with pytest.raises(TypeError, match="Module"):
        SaturationTracker(net.state_dict())
    with pytest.raises(ValueError, match="eval"):
        SaturationTracker(net).saturation("eval")


@pytest.mark.filterwarnings("ignore:Initializing zero-element")
def test_non_finite_activations_name_the_layer_and_rank_deficiency_warns():
    net = mlp(10, (8,))
    with SaturationTracker(net) as tr:
        with pytest.raises(ValueError, match="'fc1'"):
            net(torch.full((4, 10), float("nan")))
    with SaturationTracker(net, ["fc1"]) as tr:
        with torch.no_grad():
            net(torch.randn(5, 10))
        with pytest.warns(RuntimeWarning, match="rank-deficient"):
            rec = tr.end_epoch()
    assert rec.train["fc1"].intrinsic_dimension <= 5
    with SaturationTracker(net, ["fc1"]) as tr, warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            net(torch.randn(50, 10))
        tr.end_epoch()
    empty = nn.Sequential(nn.Linear(3, 0))
    with SaturationTracker(empty, ["0"]) as tr, pytest.raises(ValueError, match="'0' produced an empty"):
        empty(torch.randn(2, 3))


# ---------------------------------------------------------------- delve defects
def test_delve_defects_pinned(tmp_path):
    """delve 0.1.50 keeps only the last batch of an epoch, counts k one lower, and leaves its hooks."""
    from delve import SaturationTracker as DelveTracker
    from delve.metrics import compute_intrinsic_dimensionality

    data = nx.data.digits()
    torch.manual_seed(0)
    net = mlp(64, (32,), seed=0)
    x = data.x_train.reshape(len(data.x_train), -1)[:600]
    batches = x.split(100)
    delve = DelveTracker(str(tmp_path), save_to="csv", modules=net, device="cpu", stats=["lsat", "idim"])
    with torch.no_grad(), SaturationTracker(net, ["fc1"]) as ours:
        for b in batches:
            net(b)
        cov_delve = delve.logs["train-covariance-matrix"]["fc1"].fix()
        cov_ours = ours.stats["fc1"].covariance
        rec = ours.end_epoch()
    # (1) delve's covariance is the last mini-batch's, not the epoch's.
    last_only = reference_spectrum([net.fc1(batches[-1]).detach()], False)[0]
    whole = reference_spectrum([net.fc1(b).detach() for b in batches], False)[0]
    torch.testing.assert_close(cov_delve, last_only, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(cov_ours, whole, rtol=1e-6, atol=1e-8)
    assert not torch.allclose(cov_delve, whole, rtol=1e-2)
    # (2) its counting rule is reproduced by mode="delve" and can be one lower than the definition.
    k_delve = compute_intrinsic_dimensionality(cov_delve.clone(), 0.99)
    assert k_delve in k_band(torch.linalg.eigvalsh(cov_delve), 0.99, 1e-9, mode="delve")
    assert rec.train["fc1"].intrinsic_dimension in k_band(torch.linalg.eigvalsh(whole).tolist(), 0.99, 1e-5)
    # (3) its hooks stay on the model after use; ours are gone.
    assert len(net.fc1._forward_hooks) >= 1
    delve.close()
    assert len(net.fc1._forward_hooks) >= 1


# ------------------------------------------------------------------ distributed
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tracker_worker(rank: int, world: int, port: int, x: torch.Tensor, out: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        net = cnn(seed=0)
        shard = x[rank::world]
        with torch.no_grad(), SaturationTracker(net, ["conv1", "fc1"]) as tr:
            net.train()
            for b in shard.split(7):
                net(b)
            if rank == 0:
                net.eval()  # only rank 0 sees eval passes: the sync must still line up
                net(shard[:3])
            rec = tr.end_epoch()
        # Plain RunningMoments on unequal shards of fixed data: exact up to float64 round-off.
        data = torch.randn(500, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 5
        raw = nx.RunningMoments(6)
        for chunk in data.split([180, 320])[rank].split(37):
            raw.update(chunk)
        raw.all_reduce()
        out[rank] = {
            "raw": raw.state_dict(),
            "train": {k: tr.stats[k].state_dict() for k in ("conv1", "fc1")},
            "eval": {k: tr.eval_stats[k].state_dict() for k in tr.eval_stats},
            "k": {k: r.intrinsic_dimension for k, r in rec.train.items()},
        }
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.filterwarnings("ignore:Layer 'fc1'")
def test_tracker_two_processes_equal_one_process():
    torch.manual_seed(0)
    x = torch.rand(40, 1, 28, 28)
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_tracker_worker, args=(2, _free_port(), x, out), nprocs=2, join=True)
    net = cnn(seed=0)
    with torch.no_grad(), SaturationTracker(net, ["conv1", "fc1"]) as tr:
        for rank in (0, 1):  # the same batches as the two ranks saw, one after the other
            for b in x[rank::2].split(7):
                net(b)
        rec = tr.end_epoch()
    data = torch.randn(500, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 5
    raw = nx.RunningMoments(6)
    for part in data.split([180, 320]):
        for chunk in part.split(37):
            raw.update(chunk)
    for rank in (0, 1):
        got = out[rank]
        m = nx.RunningMoments.from_state_dict(got["raw"])
        assert m.count == 500
        torch.testing.assert_close(m.mean, raw.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.covariance, raw.covariance, rtol=1e-12, atol=1e-12)
        # Through the model: equal up to the float32 round-off of the forward passes themselves
        # (the worker processes run with other thread counts, so activations differ in the last bit).
        for k in ("conv1", "fc1"):
            m = nx.RunningMoments.from_state_dict(got["train"][k])
            ref = tr.stats[k].covariance
            assert m.count == tr.stats[k].count
            torch.testing.assert_close(m.covariance, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))
            torch.testing.assert_close(m.mean, tr.stats[k].mean, rtol=1e-5, atol=1e-6 * float(tr.stats[k].mean.abs().max()))
        assert got["k"] == {k: r.intrinsic_dimension for k, r in rec.train.items()}
        assert nx.RunningMoments.from_state_dict(got["eval"]["fc1"]).count == 3
