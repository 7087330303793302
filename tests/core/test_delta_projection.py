"""δ projection against the explicit formula; reconstructions and accuracy as functions of δ."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core._base.moments import RunningMoments
from nbexplain.core.feature_space.delta_projection import DeltaProjection
from nbexplain.zoo import cnn, dense_autoencoder, mlp


def stats_of(x: torch.Tensor) -> RunningMoments:
    return RunningMoments(x.shape[1]).update(x.double())


def explicit(x: torch.Tensor, k: int) -> torch.Tensor:
    """μ + P_k P_kᵀ (x − μ), P_k = top-k eigenvectors of the population covariance (float64)."""
    x = x.double()
    mu = x.mean(0)
    cov = (x - mu).T @ (x - mu) / x.shape[0]
    _, vecs = torch.linalg.eigh(cov)
    p = vecs.flip(1)[:, :k]
    return mu + (x - mu) @ p @ p.T


def test_projection_equals_explicit_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 7, generator=g, dtype=torch.float64) @ torch.randn(7, 7, generator=g, dtype=torch.float64) + 4
    st = stats_of(x)
    vals = st.eigenvalues
    for delta in (0.5, 0.9, 0.99, 1.0):
        proj = DeltaProjection(st, delta)
        k = nx.intrinsic_dimension(vals, delta)
        assert proj.k == k
        torch.testing.assert_close(proj(x), explicit(x, k), rtol=1e-10, atol=1e-10)
        assert proj.explained >= delta - 1e-12
    torch.testing.assert_close(DeltaProjection(st, k=7)(x), x, rtol=1e-10, atol=1e-10)
    # Idempotent, and float32 input comes back as float32.
    p = DeltaProjection(st, 0.9)
    torch.testing.assert_close(p(p(x)), p(x), rtol=1e-10, atol=1e-10)
    assert p(x.float()).dtype == torch.float32


def test_random_control_is_orthonormal_seeded_and_explains_less():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 10, generator=g, dtype=torch.float64) * torch.logspace(1, -1, 10, dtype=torch.float64)
    st = stats_of(x)
    eig = DeltaProjection(st, 0.9)
    rnd = DeltaProjection(st, 0.9, subspace="random", seed=3)
    assert rnd.k == eig.k
    torch.testing.assert_close(rnd.basis.T @ rnd.basis, torch.eye(rnd.k, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(rnd.basis, DeltaProjection(st, 0.9, subspace="random", seed=3).basis)
    assert not torch.allclose(rnd.basis, DeltaProjection(st, 0.9, subspace="random", seed=4).basis)
    assert rnd.explained < eig.explained
    err_eig = (eig(x) - x).pow(2).sum()
    err_rnd = (rnd(x) - x).pow(2).sum()
    assert err_eig < err_rnd


def test_channel_first_maps_project_per_position():
    maps = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    feats = maps.movedim(1, -1).reshape(-1, 4)
    p = DeltaProjection(stats_of(feats), k=2)
    out = p.project(maps, channel_first=True)
    torch.testing.assert_close(out.movedim(1, -1).reshape(-1, 4), explicit(feats, 2), rtol=1e-10, atol=1e-10)


def test_inserted_changes_forward_and_restores_model():
    net = mlp(12, (9,), seed=0)
    x = torch.randn(80, 12)
    st = nx.layer_statistics(net, x, ["fc1"])["fc1"]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plain = net(x)
    proj = DeltaProjection(st, k=2)
    with proj.inserted(net, "fc1"):
        out = net(x)
    feats = nx.activations(net, x, "fc1")["fc1"]
    expected = net.out(net.relu1(proj(feats)))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, plain)
    torch.testing.assert_close(net(x), plain)
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # Constructor form, and restoring on exceptions.
    with pytest.raises(RuntimeError, match="inside"):
        with DeltaProjection(st, k=2, model=net, layer="fc1"):
            assert len(net.fc1._forward_hooks) == 1
            raise RuntimeError("inside")
    assert len(net.fc1._forward_hooks) == 0
    with pytest.raises(RuntimeError, match="inserted"):
        with DeltaProjection(st, k=2):
            pass


def test_reconstruction_error_falls_as_delta_rises_and_beats_random():
    data = nx.data.digits()
    x = data.x_train.reshape(len(data.x_train), -1)[:600]
    ae = dense_autoencoder(64, (32,), code=16, seed=0)
    nx.zoo.train(ae, x, epochs=8, lr=3e-3, batch_size=64, seed=0, progress=False)
    st = nx.layer_statistics(ae, x, ["encoder.code"])["encoder.code"]
    deltas = [0.5, 0.8, 0.9, 0.95, 0.99, 1.0]
    curve = nx.delta_curve(ae, x[:200], "encoder.code", st, deltas=deltas, metric="reconstruction")
    assert curve.metric == "reconstruction"
    assert torch.all(curve.eigen[1:] <= curve.eigen[:-1] + 1e-9)  # non-increasing in δ
    assert curve.eigen[0] > curve.eigen[-1]
    assert torch.all(curve.eigen[:-1] <= curve.random[:-1] + 1e-9)
    assert abs(float(curve.eigen[-1]) - curve.baseline) < 1e-4
    recon = nx.projected_outputs(ae, x[:5], "encoder.code", st, ks=[1, 16])
    assert recon.shape == (2, 5, 64)


def test_accuracy_under_projection_conv_classifier():
    data = nx.data.digits()
    net = cnn(image_size=8, width=8, seed=0)
    nx.zoo.train(net, data.x_train[:800], data.y_train[:800], epochs=3, lr=3e-3, seed=0, progress=False)
    x, y = data.x_test[:200], data.y_test[:200]
    st = nx.layer_statistics(net, data.x_train[:400], ["conv2"])["conv2"]
    curve = nx.delta_curve(net, x, "conv2", st, deltas=[0.3, 0.9, 1.0], labels=y)
    assert curve.metric == "accuracy"
    assert curve.eigen[-1] == pytest.approx(curve.baseline, abs=0.011)
    assert curve.eigen[0] <= curve.eigen[-1]
    assert curve.ks.tolist() == sorted(curve.ks.tolist())


def test_bad_inputs():
    st = stats_of(torch.randn(50, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="RunningMoments"):
        DeltaProjection(torch.eye(4), 0.9)
    with pytest.raises(ValueError, match="delta"):
        DeltaProjection(st, 1.2)
    with pytest.raises(ValueError, match="width"):
        DeltaProjection(st, k=5)
    with pytest.raises(ValueError, match="subspace"):
        DeltaProjection(st, subspace="rand")
    with pytest.raises(ValueError, match="no samples"):
        DeltaProjection(RunningMoments(4), 0.9)
    with pytest.raises(ValueError, match="features"):
        DeltaProjection(st, 0.9)(torch.randn(3, 5))
    net = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="Unknown layer"):
        with DeltaProjection(st, 0.9).inserted(net, "1"):
            pass
    with pytest.raises(ValueError, match="labels"):
        nx.delta_curve(net, torch.randn(5, 4), "0", st, labels=torch.zeros(4, dtype=torch.long))


def test_stacked_projection_pass_equals_one_pass_per_k():
    from nbexplain.core.feature_space.delta_projection import DeltaProjection, _run, _stacked_outputs

    net = cnn(seed=0).eval()
    x = torch.rand(9, 1, 28, 28)
    st = nx.layer_statistics(net, torch.rand(64, 1, 28, 28), ["conv2"])["conv2"]
    ks = [1, 3, 8, 32]
    projs = [DeltaProjection(st, k=k) for k in ks]
    with torch.no_grad():
        stacked = _stacked_outputs(net, x, "conv2", projs, batch_size=4, show=False)
        assert stacked is not None  # the CNN's head treats samples independently
        for j, p in enumerate(projs):
            with p.inserted(net, "conv2"):
                torch.testing.assert_close(stacked[j], _run(net, x, 4), rtol=1e-4, atol=1e-5)
    # An autoencoder that reshapes to the input's batch size falls back to one pass per k.
    ae = dense_autoencoder(64, (16,), code=4, seed=0).eval()
    st = nx.layer_statistics(ae, torch.rand(50, 64), ["encoder.code"])["encoder.code"]
    out = nx.projected_outputs(ae, torch.rand(6, 64), "encoder.code", st, ks=[1, 2, 4])
    assert out.shape == (3, 6, 64)
    assert all(len(m._forward_hooks) == 0 for m in ae.modules())


def test_progress_bars_close_finished_when_stacking_gives_up(monkeypatch):
    """The stacked pass gives up early for a model that reshapes to the input's batch size. tqdm's
    notebook bar treats a close with n < total as a failure (red, and it stays on screen even with
    leave=False), so every bar must be closed with n == total."""
    from tqdm import tqdm as std_tqdm

    import nbexplain.core._base.machinery as machinery

    closed: list[tuple[str, int, int | None]] = []

    class Recording(std_tqdm):
        def close(self) -> None:
            if not self.disable and not getattr(self, "_recorded", False):
                self._recorded = True
                closed.append((self.desc, self.n, self.total))
            super().close()

    ae = dense_autoencoder(64, (16,), code=4, seed=0).eval()
    st = nx.layer_statistics(ae, torch.rand(50, 64), ["encoder.code"])["encoder.code"]
    monkeypatch.setattr(machinery, "tqdm", Recording)  # every bar goes through the one progress policy
    out = nx.projected_outputs(ae, torch.rand(600, 64), "encoder.code", st, ks=[1, 2, 3, 4], progress=True)
    assert out.shape == (4, 600, 64)
    assert len(closed) == 2  # the abandoned stacked attempt, then one pass per k
    assert all(n == total for _, n, total in closed), closed
