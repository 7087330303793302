"""CCA, SVCCA, PWCCA and CKA against float64 references written from their equations, published values,
invariances, degenerate inputs and argument errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbexplain as nx
from nbexplain.core.similarity import metrics as sim

# ----------------------------------------------------------------------------- references (numpy float64)


def _basis(a: np.ndarray, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis of the column space of centred ``a`` (left singular vectors) and its singular values."""
    ac = a - a.mean(axis=0)
    u, s, _ = np.linalg.svd(ac, full_matrices=False)
    keep = s**2 > rtol * (s[0] ** 2) if s.size and s[0] > 0 else np.zeros_like(s, dtype=bool)
    return u[:, keep], s[keep]


def ref_cca(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Canonical correlations = cosines of the principal angles between the centred column spaces."""
    qx, _ = _basis(x)
    qy, _ = _basis(y)
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


def ref_svcca(x: np.ndarray, y: np.ndarray, keep: float | int) -> np.ndarray:
    def reduce(a: np.ndarray) -> np.ndarray:
        u, s = _basis(a)
        if isinstance(keep, int):
            k = min(keep, s.size)
        else:
            frac = np.cumsum(s**2) / np.sum(s**2)
            k = int(np.searchsorted(frac, keep - 1e-12) + 1)
        return u[:, :k]

    return np.linalg.svd(reduce(x).T @ reduce(y), compute_uv=False)


def ref_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """Morcos et al.: α_i ∝ Σ_j |<h_i, z_j>| over the side with fewer directions."""
    qx, _ = _basis(x)
    qy, _ = _basis(y)
    u, s, vt = np.linalg.svd(qx.T @ qy, full_matrices=False)
    if qx.shape[1] <= qy.shape[1]:
        h, z = qx @ u, x - x.mean(axis=0)
    else:
        h, z = qy @ vt.T, y - y.mean(axis=0)
    alpha = np.abs(h.T @ z).sum(axis=1)
    alpha = alpha / alpha.sum()
    return float(np.sum(alpha * s))


def _center(k: np.ndarray) -> np.ndarray:
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return h @ k @ h


def ref_cka_gram(k: np.ndarray, lg: np.ndarray) -> float:
    kc, lc = _center(k), _center(lg)
    return float(np.sum(kc * lc) / np.sqrt(np.sum(kc * kc) * np.sum(lc * lc)))


def ref_rbf(x: np.ndarray, threshold: float) -> np.ndarray:
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * threshold**2 * np.median(d2)))


def ref_hsic_u_bruteforce(k: np.ndarray, lg: np.ndarray) -> float:
    """Song et al. (2012): the order-4 U-statistic, averaged over every 4-tuple of distinct samples."""
    n = k.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * lg[i, j] + k[i, j] * lg[q, r] - 2 * k[i, j] * lg[i, q]
        count += 1
    return total / count


def seed1337() -> tuple[np.ndarray, np.ndarray]:
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x, y


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- published values


def test_published_cka_values_seed_1337():
    x, y = seed1337()
    assert nx.cka(x, y).value == pytest.approx(0.55761, abs=5e-6)
    assert nx.cka(x, y, kernel="rbf", threshold=0.5).value == pytest.approx(0.65483, abs=5e-6)
    assert nx.cka(x, y, debiased=True).value == pytest.approx(0.51346, abs=5e-6)


def test_published_mean_squared_cca_uses_uncentred_features():
    """Kornblith et al.'s 0.54312 is computed from QR of the *uncentred* features (their tutorial's cca()).

    nbexplain centres, as CCA is defined on covariances; the two agree once the reference centres too.
    """
    x, y = seed1337()
    qx, _ = np.linalg.qr(x)
    qy, _ = np.linalg.qr(y)
    assert np.linalg.norm(qx.T @ qy) ** 2 / 10 == pytest.approx(0.54312, abs=5e-6)
    res = nx.cca(x, y)
    assert res.mean_squared == pytest.approx(float(np.mean(ref_cca(x, y) ** 2)), abs=1e-12)
    assert res.mean_squared == pytest.approx(0.54540, abs=5e-6)


# ----------------------------------------------------------------------------- against references


@pytest.mark.parametrize("shape", [(200, 5, 5), (300, 12, 7), (150, 3, 20)])
def test_cca_matches_principal_angle_reference(shape):
    n, p, q = shape
    g = rng(1)
    x = g.standard_normal((n, p))
    y = x[:, : min(p, q)] @ g.standard_normal((min(p, q), q)) + g.standard_normal((n, q))
    res = nx.cca(x, y)
    ref = ref_cca(x, y)
    assert res.coefficients.dtype == torch.float64
    np.testing.assert_allclose(res.coefficients.numpy(), ref, atol=1e-10)
    assert torch.all(res.coefficients[:-1] >= res.coefficients[1:])
    assert res.mean == pytest.approx(ref.mean(), abs=1e-10)
    assert res.value == res.mean == float(res)


def test_cholesky_and_eigh_whitening_agree(monkeypatch):
    g = rng(2)
    x, y = g.standard_normal((400, 30)), g.standard_normal((400, 20))
    y[:, :10] += x[:, :10]
    fast = nx.cca(x, y)
    pw_fast = nx.pwcca(x, y)
    monkeypatch.setattr(sim, "_CHOLESKY_PIVOT_RTOL", 2.0)  # never accept a Cholesky factor
    slow = nx.cca(x, y)
    torch.testing.assert_close(fast.coefficients, slow.coefficients, atol=1e-11, rtol=0)
    assert nx.pwcca(x, y).value == pytest.approx(pw_fast.value, abs=1e-11)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99, 1.0, 3, 40])
def test_svcca_matches_reference(keep):
    g = rng(3)
    latent = g.standard_normal((500, 6))
    x = latent @ g.standard_normal((6, 25)) + 0.1 * g.standard_normal((500, 25))
    y = latent @ g.standard_normal((6, 15)) + 0.1 * g.standard_normal((500, 15))
    res = nx.svcca(x, y, keep=keep)
    ref = ref_svcca(x, y, keep)
    np.testing.assert_allclose(res.coefficients.numpy(), ref, atol=1e-10)
    assert res.mean == pytest.approx(ref.mean(), abs=1e-10)
    if isinstance(keep, float):
        assert res.x_variance >= keep - 1e-12 and res.y_variance >= keep - 1e-12
    assert res.keep == (keep, keep)


def test_svcca_keep_pair_and_int_cap():
    g = rng(4)
    x, y = g.standard_normal((100, 8)), g.standard_normal((100, 6))
    res = nx.svcca(x, y, keep=(3, 50))
    assert (res.x_rank, res.y_rank) == (3, 6)
    assert res.coefficients.numel() == 3


@pytest.mark.parametrize("widths", [(6, 12), (12, 6), (8, 8)])
def test_pwcca_matches_reference_for_unequal_widths(widths):
    p, q = widths
    g = rng(5)
    x = g.standard_normal((600, p))
    y = np.concatenate([x[:, :3] + 0.3 * g.standard_normal((600, 3)), g.standard_normal((600, q - 3))], axis=1)
    res = nx.pwcca(x, y)
    assert res.value == pytest.approx(ref_pwcca(x, y), abs=1e-10)
    assert res.side == ("x" if p <= q else "y")
    assert res.weights.sum().item() == pytest.approx(1.0)
    assert res.weights.numel() == min(p, q)
    assert res.weighted_mean == res.value
    # the plain mean of the same coefficients is a different summary
    assert res.mean == pytest.approx(ref_cca(x, y).mean(), abs=1e-10)


def test_cumulative_mean_is_reference_98_percent_summary():
    coef = torch.tensor([0.9, 0.8, 0.5, 0.01, 0.005], dtype=torch.float64)
    res = sim.CCAResult(coefficients=coef, n_samples=10, x_rank=5, y_rank=5, epsilon=0.0)

    def sum_threshold(a, threshold):  # google/svcca semantics: first i with sum(a[:i]) >= threshold * sum(a)
        for i in range(len(a)):
            if np.sum(a[:i]) / np.sum(a) >= threshold:
                return i
        return None

    a = coef.numpy()
    i = sum_threshold(a, 0.98)
    assert res.cumulative_mean == pytest.approx(float(np.mean(a[:i])))
    assert res.cumulative_mean != pytest.approx(res.mean)
    assert res.truncated_mean(1.0) == pytest.approx(res.mean)


def test_linear_cka_feature_and_gram_paths_match_reference():
    g = rng(6)
    for n, p, q in [(200, 5, 7), (20, 50, 60)]:  # feature-space path, then Gram path (n small)
        x, y = g.standard_normal((n, p)), g.standard_normal((n, q))
        y[:, :3] += 2 * x[:, :3]
        assert nx.cka(x, y).value == pytest.approx(ref_cka_gram(x @ x.T, y @ y.T), abs=1e-12)


@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
def test_rbf_cka_matches_reference(threshold):
    g = rng(7)
    x, y = g.standard_normal((60, 4)), g.standard_normal((60, 3))
    y[:, 0] += x[:, 0] ** 2
    ref = ref_cka_gram(ref_rbf(x, threshold), ref_rbf(y, threshold))
    res = nx.cka(x, y, kernel="rbf", threshold=threshold)
    assert res.value == pytest.approx(ref, abs=1e-12)
    assert res.threshold == threshold


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_debiased_cka_matches_bruteforce_u_statistic(kernel):
    g = rng(8)
    n = 9
    x, y = g.standard_normal((n, 3)), g.standard_normal((n, 4))
    y[:, 0] += x[:, 0]
    if kernel == "linear":
        k, lg = x @ x.T, y @ y.T  # uncentred: the U-statistic is translation invariant
    else:
        k, lg = ref_rbf(x, 1.0), ref_rbf(y, 1.0)
    ref = ref_hsic_u_bruteforce(k, lg) / math.sqrt(ref_hsic_u_bruteforce(k, k) * ref_hsic_u_bruteforce(lg, lg))
    assert nx.cka(x, y, kernel=kernel, debiased=True).value == pytest.approx(ref, abs=1e-10)


def test_debiased_linear_feature_path_equals_gram_path():
    g = rng(9)
    x, y = g.standard_normal((300, 4)) + 7.0, g.standard_normal((300, 5)) - 3.0
    y[:, 0] += x[:, 1]
    feat = nx.cka(x, y, debiased=True).value  # 300 samples, 9 features: feature-space path
    k, lg = x @ x.T, y @ y.T
    gram = sim.hsic_unbiased_gram(torch.tensor(k), torch.tensor(lg)) / math.sqrt(
        sim.hsic_unbiased_gram(torch.tensor(k), torch.tensor(k)) * sim.hsic_unbiased_gram(torch.tensor(lg), torch.tensor(lg))
    )
    assert feat == pytest.approx(gram, abs=1e-10)


# ----------------------------------------------------------------------------- invariances


def test_cca_of_invertible_map_is_one():
    g = rng(10)
    x = g.standard_normal((500, 12))
    a = g.standard_normal((12, 12)) + 3 * np.eye(12)
    res = nx.cca(x, x @ a + 5.0)
    np.testing.assert_allclose(res.coefficients.numpy(), np.ones(12), atol=1e-9)
    assert nx.svcca(x, x @ a, keep=1.0).mean == pytest.approx(1.0, abs=1e-9)
    assert nx.pwcca(x, x @ a).value == pytest.approx(1.0, abs=1e-9)


def test_invariances_cca_vs_cka():
    g = rng(11)
    x = g.standard_normal((400, 8))
    y = x @ g.standard_normal((8, 6)) + g.standard_normal((400, 6))
    q, _ = np.linalg.qr(g.standard_normal((6, 6)))
    a = g.standard_normal((6, 6)) * np.linspace(0.1, 5, 6)  # far from orthogonal
    base_cca, base_cka = nx.cca(x, y).mean, nx.cka(x, y).value
    # CCA: invariant to invertible maps and translation
    assert nx.cca(x, y @ a + 3).mean == pytest.approx(base_cca, abs=1e-10)
    # CKA: invariant to orthogonal maps, isotropic scaling, translation ...
    assert nx.cka(x, 4.0 * y @ q - 2).value == pytest.approx(base_cka, abs=1e-12)
    assert nx.cka(x, 4.0 * y @ q, kernel="rbf").value == pytest.approx(nx.cka(x, y, kernel="rbf").value, abs=1e-10)
    # ... but not to a general invertible map
    assert abs(nx.cka(x, y @ a).value - base_cka) > 1e-3


def test_symmetry():
    g = rng(12)
    x, y = g.standard_normal((300, 5)), g.standard_normal((300, 9))
    y[:, :2] += x[:, :2]
    assert nx.cca(x, y).mean == pytest.approx(nx.cca(y, x).mean, abs=1e-12)
    assert nx.cka(x, y).value == pytest.approx(nx.cka(y, x).value, abs=1e-12)
    assert nx.svcca(x, y).mean == pytest.approx(nx.svcca(y, x).mean, abs=1e-12)


# ----------------------------------------------------------------------------- degenerate inputs


def test_rank_deficient_inputs_give_the_existing_directions():
    g = rng(13)
    x = g.standard_normal((200, 4))
    y = g.standard_normal((200, 3))
    y[:, 0] += x[:, 0]
    xd = np.concatenate([x, x[:, :2], np.full((200, 1), 0.1)], axis=1)  # duplicated + constant columns
    res = nx.cca(xd, y)
    assert res.x_rank == 4
    np.testing.assert_allclose(res.coefficients.numpy(), nx.cca(x, y).coefficients.numpy(), atol=1e-9)
    assert nx.pwcca(xd, y).value == pytest.approx(nx.pwcca(x, y).value, abs=1e-9)


def test_fewer_samples_than_features_is_finite():
    g = rng(14)
    x, y = g.standard_normal((10, 30)), g.standard_normal((10, 25))
    res = nx.cca(x, y)
    assert res.x_rank == 9 and res.y_rank == 9
    assert torch.isfinite(res.coefficients).all()
    assert nx.svcca(x, y, keep=3).coefficients.numel() == 3


def test_zero_variance_side_is_a_clear_error():
    x = np.random.default_rng(0).standard_normal((50, 3))
    for fn in (nx.cca, nx.svcca, nx.pwcca, nx.cka):
        with pytest.raises(ValueError, match="zero variance"):
            fn(x, np.full((50, 2), 3.7))
    with pytest.raises(ValueError, match="zero variance"):
        nx.cka(np.ones((50, 2)), x, kernel="rbf")


@st.composite
def degenerate_pair(draw):
    n = draw(st.integers(3, 30))
    p = draw(st.integers(1, 10))
    q = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**31 - 1))
    g = np.random.default_rng(seed)
    x, y = g.standard_normal((n, p)), g.standard_normal((n, q))
    if draw(st.booleans()):
        y[:, 0] = x[:, 0] * draw(st.floats(0.1, 10))
    for a in (x, y):
        kind = draw(st.sampled_from(["none", "constant", "duplicate", "scaled", "integer"]))
        if kind == "constant" and a.shape[1] > 1:
            a[:, -1] = draw(st.floats(-1e3, 1e3, allow_nan=False))
        elif kind == "duplicate" and a.shape[1] > 1:
            a[:, -1] = a[:, 0]
        elif kind == "scaled":
            a *= draw(st.sampled_from([1e-6, 1e6]))
        elif kind == "integer":
            a[:] = np.round(a)
    return x, y


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(degenerate_pair())
def test_property_values_in_unit_interval_without_nan(pair):
    x, y = pair
    results = []
    try:
        results = [
            nx.cca(x, y).mean,
            nx.svcca(x, y).mean,
            nx.svcca(x, y, keep=2).mean,
            nx.pwcca(x, y).value,
            nx.cka(x, y).value,
            nx.cka(x, y, kernel="rbf").value,
        ]
    except ValueError as exc:  # only "nothing is defined" cases may raise
        assert "zero variance" in str(exc) or "median pairwise distance" in str(exc)
        return
    for v in results:
        assert math.isfinite(v) and 0.0 <= v <= 1.0
    c = nx.cca(x, y).coefficients
    assert torch.isfinite(c).all() and bool(((c >= 0) & (c <= 1)).all())
    if x.shape[0] >= 4:
        try:
            d = nx.cka(x, y, debiased=True).value
        except ValueError as exc:  # the unbiased self-HSIC can be ≤ 0 with few samples: undefined, said so
            assert "Debiased CKA is undefined" in str(exc) and f"n = {x.shape[0]}" in str(exc)
            return
        assert math.isfinite(d) and -1.0 <= d <= 1.0


@settings(max_examples=20, deadline=None)
@given(st.integers(5, 60), st.integers(1, 6), st.integers(1, 6), st.integers(0, 10_000))
def test_property_cca_matches_reference_on_random_shapes(n, p, q, seed):
    g = np.random.default_rng(seed)
    x, y = g.standard_normal((n, p)), g.standard_normal((n, q))
    np.testing.assert_allclose(nx.cca(x, y).coefficients.numpy(), ref_cca(x, y), atol=1e-7)


# ----------------------------------------------------------------------------- errors and devices


def test_clear_errors():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match="20 samples but `y` has 19"):
        nx.cca(x, torch.randn(19, 3))
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        nx.cka(bad, x)
    with pytest.raises(ValueError, match="2-D"):
        nx.svcca(torch.randn(20), x)
    with pytest.raises(ValueError, match="at least 2 samples"):
        nx.cca(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="at least 4 samples"):
        nx.cka(torch.randn(3, 3), torch.randn(3, 3), debiased=True)
    with pytest.raises(ValueError, match="Did you mean 'linear'"):
        nx.cka(x, x, kernel="linaer")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        nx.svcca(x, x, keep=1.5)
    with pytest.raises(ValueError, match="≥ 1"):
        nx.svcca(x, x, keep=0)
    with pytest.raises(TypeError):
        nx.svcca(x, x, keep=True)
    with pytest.raises(ValueError, match="≥ 0"):
        nx.cca(x, x, epsilon=-1.0)
    with pytest.raises(TypeError, match="Tensor or numpy"):
        nx.cca([[1.0, 2.0]], x)
    with pytest.raises(TypeError, match="real numbers"):
        nx.cca(torch.ones(20, 3, dtype=torch.bool), x)


def test_float32_and_int_inputs_are_computed_in_float64():
    g = rng(15)
    x = g.standard_normal((100, 4)).astype(np.float32)
    y = (10 * g.standard_normal((100, 3))).round().astype(np.int64)
    res = nx.cca(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(res.coefficients.numpy(), ref_cca(x.astype(np.float64), y.astype(np.float64)), atol=1e-10)


def test_epsilon_regularises_like_the_reference():
    g = rng(16)
    x, y = g.standard_normal((80, 5)), g.standard_normal((80, 5))
    res = nx.cca(x, y, epsilon=1e-2)
    # reference: covariances scaled by their largest entry, ε on the diagonal, inverse square roots
    c = np.cov(x.T, y.T)
    sxx, syy, sxy = c[:5, :5], c[5:, 5:], c[:5, 5:]
    mx, my = np.abs(sxx).max(), np.abs(syy).max()
    sxx, syy, sxy = sxx / mx + 1e-2 * np.eye(5), syy / my + 1e-2 * np.eye(5), sxy / np.sqrt(mx * my)

    def isqrt(m):
        w, v = np.linalg.eigh(m)
        return v @ np.diag(w**-0.5) @ v.T

    ref = np.linalg.svd(isqrt(sxx) @ sxy @ isqrt(syy), compute_uv=False)
    np.testing.assert_allclose(res.coefficients.numpy(), ref, atol=1e-10)
    assert res.mean < nx.cca(x, y).mean


@pytest.mark.parametrize("epsilon", [1e-9, 1e-3])
def test_epsilon_on_a_rank_deficient_side_keeps_every_direction_whichever_whitening_runs(monkeypatch, epsilon):
    """ε > 0 shrinks every direction, the null ones too (google/svcca's ridge). Before, a tiny ε (Cholesky
    pivot check fails → eigh path) dropped the null directions while a larger ε kept them."""
    g = rng(17)
    x = g.standard_normal((200, 8))
    x[:, 4:] = x[:, :4] @ g.standard_normal((4, 4))  # rank 4 of 8
    y = x @ g.standard_normal((8, 8)) + g.standard_normal((200, 8))
    c = np.cov(x.T, y.T)
    sxx, syy, sxy = c[:8, :8], c[8:, 8:], c[:8, 8:]
    mx, my = np.diag(sxx).max(), np.diag(syy).max()

    def whiten(s, m):
        w, v = np.linalg.eigh(s / m)
        return v @ np.diag((np.clip(w, 0, None) + epsilon) ** -0.5) @ v.T

    ref = np.linalg.svd(whiten(sxx, mx) @ (sxy / np.sqrt(mx * my)) @ whiten(syy, my), compute_uv=False)
    res = nx.cca(x, y, epsilon=epsilon)
    assert res.x_rank == 8 and res.coefficients.numel() == 8
    assert nx.cca(x, y).coefficients.numel() == 4  # ε = 0: the null directions are dropped
    np.testing.assert_allclose(res.coefficients.numpy(), ref, atol=1e-7)
    monkeypatch.setattr(sim, "_CHOLESKY_PIVOT_RTOL", 2.0)  # force the eigh path
    torch.testing.assert_close(nx.cca(x, y, epsilon=epsilon).coefficients, res.coefficients, atol=1e-7, rtol=0)


@pytest.mark.parametrize("offset", [0.0, 0.5, 3.0, 1e4])
def test_centred_products_without_copies_when_means_are_small(offset):
    """Co-moments from uncentred products with a rank-one correction (means ≤ 1 std) or from centred
    copies (larger means) agree with the float64 definition; constant features are exact zeros."""
    g = rng(21)
    x = offset + g.standard_normal((3000, 12)) @ g.standard_normal((12, 12))
    y = -offset + x[:, :7] @ g.standard_normal((7, 9)) + g.standard_normal((3000, 9))
    x[:, 3] = 5.0  # a constant feature
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    sxx, syy, sxy = sim.centred_products(xt, yt)
    xc, yc = x - x.mean(0), y - y.mean(0)
    xc[:, 3] = 0.0
    for got, want in ((sxx, xc.T @ xc), (syy, yc.T @ yc), (sxy, xc.T @ yc)):
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-10 * np.abs(want).max())
    assert bool((sxx[3] == 0).all() and (sxx[:, 3] == 0).all() and (sxy[3] == 0).all())
    assert torch.equal(sxx, sxx.T)
    a_x, _, _ = sim._product_operand(xt)
    a_y, _, _ = sim._product_operand(yt)
    # the constant column (mean 5, no spread) forces x's centred copy; y is used as it is while its
    # means stay within one standard deviation
    assert a_x is not xt
    assert (a_y is yt) == (offset <= 0.5)
    live = torch.from_numpy(np.ascontiguousarray(np.delete(x, 3, axis=1)))
    assert (sim._product_operand(live)[0] is live) == (offset <= 0.5)
    np.testing.assert_allclose(nx.cca(x, y).coefficients.numpy(), ref_cca(x, y), atol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    x = torch.randn(300, 6, device="cuda")
    y = x[:, :3] + 0.1 * torch.randn(300, 3, device="cuda")
    assert nx.cca(x, y).mean == pytest.approx(nx.cca(x.cpu(), y.cpu()).mean, abs=1e-6)
    assert nx.cka(x, y, kernel="rbf").value == pytest.approx(nx.cka(x.cpu(), y.cpu(), kernel="rbf").value, abs=1e-6)


def test_result_reprs_name_the_headline():
    g = rng(17)
    x, y = g.standard_normal((50, 3)), g.standard_normal((50, 3))
    assert "CCAResult(value=" in repr(nx.cca(x, y))
    assert "side=" in repr(nx.pwcca(x, y))
    assert "kernel='rbf'" in repr(nx.cka(x, y, kernel="rbf"))
