"""SVCCA's aligned directions against a float64 reference written from the paper's two steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nbexplain as nx


def _reference(x: np.ndarray, y: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD-reduce each centred side to `keep` of its variance, then CCA by explicit inverse square roots:
    returns (ρ, x-variates, y-variates) with unit-variance variates."""

    def reduce(a: np.ndarray) -> np.ndarray:
        ac = a - a.mean(0)
        _, s, vt = np.linalg.svd(ac, full_matrices=False)
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.sum(frac < keep - 1e-12)) + 1
        return ac @ vt[:k].T

    xr, yr = reduce(x), reduce(y)

    def inv_sqrt(m: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(m)
        return (v / np.sqrt(w)) @ v.T

    sxx, syy, sxy = xr.T @ xr, yr.T @ yr, xr.T @ yr
    ix, iy = inv_sqrt(sxx), inv_sqrt(syy)
    u, s, vt = np.linalg.svd(ix @ sxy @ iy)
    k = min(xr.shape[1], yr.shape[1])
    zx, zy = xr @ ix @ u[:, :k], yr @ iy @ vt.T[:, :k]
    return s[:k], zx / zx.std(0, ddof=1), zy / zy.std(0, ddof=1)


def _two_layers(seed: int = 0, n: int = 800) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, generator=g, dtype=torch.float64)
    x = torch.tanh(z @ torch.randn(4, 12, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(n, 12, generator=g, dtype=torch.float64)
    y = torch.relu(z @ torch.randn(4, 9, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(n, 9, generator=g, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("keep", [0.99, 0.9])
def test_variates_and_correlations_match_the_reference(keep):
    x, y = _two_layers()
    d = nx.svcca_directions(x, y, keep=keep)
    rho, zx, zy = _reference(x.numpy(), y.numpy(), keep)
    np.testing.assert_allclose(d.coefficients.numpy(), rho, rtol=0, atol=1e-10)
    torch.testing.assert_close(d.coefficients, nx.svcca(x, y, keep=keep).coefficients, rtol=0, atol=1e-10)
    # each variate equals the reference's up to the pair's sign, and both sides flip together
    for i in range(rho.size):
        s = np.sign(np.dot(d.x_variates[:, i].numpy(), zx[:, i]))
        np.testing.assert_allclose(d.x_variates[:, i].numpy(), s * zx[:, i], atol=1e-8)
        np.testing.assert_allclose(d.y_variates[:, i].numpy(), s * zy[:, i], atol=1e-8)


def test_variates_are_orthonormal_and_aligned_pair_by_pair():
    x, y = _two_layers(seed=1)
    d = nx.svcca_directions(x, y)
    k = d.coefficients.numel()
    zx, zy = d.x_variates, d.y_variates
    eye = torch.eye(k, dtype=torch.float64)
    torch.testing.assert_close(torch.corrcoef(zx.T), eye, atol=1e-9, rtol=0)
    torch.testing.assert_close(torch.corrcoef(zy.T), eye, atol=1e-9, rtol=0)
    cross = torch.corrcoef(torch.cat([zx, zy], 1).T)[:k, k:]
    torch.testing.assert_close(torch.diagonal(cross), d.coefficients, atol=1e-9, rtol=0)
    torch.testing.assert_close(cross - torch.diag(torch.diagonal(cross)), torch.zeros(k, k, dtype=torch.float64), atol=1e-9, rtol=0)
    assert (d.x_weights.gather(0, d.x_weights.abs().argmax(0, keepdim=True)) > 0).all()


def test_transforms_reproduce_the_variates_and_apply_to_new_inputs():
    x, y = _two_layers(seed=2, n=1200)
    d = nx.svcca_directions(x[:1000], y[:1000], n_directions=2)
    assert d.x_variates.shape == (1000, 2) and d.x_weights.shape == (12, 2) and d.y_weights.shape == (9, 2)
    torch.testing.assert_close(d.transform_x(x[:1000]), d.x_variates)
    torch.testing.assert_close(d.transform_y(y[:1000]), d.y_variates)
    # held-out inputs: the top pair still lines up
    hx, hy = d.transform_x(x[1000:]), d.transform_y(y[1000:])
    assert float(torch.corrcoef(torch.stack([hx[:, 0], hy[:, 0]]))[0, 1]) > 0.8
    with pytest.raises(ValueError, match="12 features"):
        d.transform_x(y)


def test_neurons_do_not_line_up_but_directions_do():
    """The paper's figure 1 in numbers: the same code z in two layers with different neuron bases."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2000, 5, generator=g, dtype=torch.float64)
    q1, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    x, y = z @ q1, z @ q2
    neuron_corr = torch.corrcoef(torch.cat([x, y], 1).T)[:5, 5:].diagonal().abs()
    d = nx.svcca_directions(x, y)
    direction_corr = torch.corrcoef(torch.cat([d.x_variates, d.y_variates], 1).T)[:5, 5:].diagonal()
    assert float(neuron_corr.mean()) < 0.7
    torch.testing.assert_close(direction_corr, torch.ones(5, dtype=torch.float64), atol=1e-9, rtol=0)


def test_bad_arguments():
    x, y = _two_layers()
    with pytest.raises(ValueError, match="n_directions"):
        nx.svcca_directions(x, y, n_directions=0)
    with pytest.raises(ValueError, match="same|samples"):
        nx.svcca_directions(x, y[:10])
    with pytest.raises(ValueError, match="keep"):
        nx.svcca_directions(x, y, keep=1.5)
