"""DFT-CCA (Raghu et al. 2017, §3.1) against the direct CCA of all C·H·W features and against a float64
reference written from the paper's equations (one complex CCA per spatial frequency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbexplain as nx


def _all_shifts(a: torch.Tensor) -> torch.Tensor:
    """Every cyclic shift of every map: a translation-invariant data set."""
    spatial = a.shape[2:]
    dims = tuple(range(2, a.ndim))
    out = []
    for shift in np.ndindex(*spatial):
        out.append(torch.roll(a, shifts=tuple(int(s) for s in shift), dims=dims))
    return torch.cat(out)


def _pair(c1: int, c2: int, spatial: tuple[int, ...], n: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x and a shift-equivariant, nonlinear, noisy function of it (a circular conv + tanh), before shifting."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, c1, *spatial, generator=g, dtype=torch.float64)
    if len(spatial) == 2:
        k = torch.randn(c2, c1, 3, 3, generator=g, dtype=torch.float64)
        y = F.conv2d(F.pad(base, (1, 1, 1, 1), mode="circular"), k)
    else:
        k = torch.randn(c2, c1, 3, generator=g, dtype=torch.float64)
        y = F.conv1d(F.pad(base, (1, 1), mode="circular"), k)
    y = torch.tanh(y + 0.5 * torch.randn(y.shape, generator=g, dtype=torch.float64))
    return base, y


def _complex_reference(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The paper's equations: DFT each channel over space; at every frequency f the complex covariances
    Σxx(f), Σyy(f), Σxy(f) of the centred coefficients; the canonical correlations at f are the singular
    values of Σxx^{-1/2} Σxy Σyy^{-1/2}; the layer's correlations are those of all frequencies."""
    xs = np.fft.fftn(x.numpy(), axes=tuple(range(2, x.ndim)), norm="ortho").reshape(x.shape[0], x.shape[1], -1)
    ys = np.fft.fftn(y.numpy(), axes=tuple(range(2, y.ndim)), norm="ortho").reshape(y.shape[0], y.shape[1], -1)
    out = []

    def inv_sqrt(m: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(m)
        return (v / np.sqrt(w)) @ v.conj().T

    for f in range(xs.shape[2]):
        a = xs[:, :, f] - xs[:, :, f].mean(0)
        b = ys[:, :, f] - ys[:, :, f].mean(0)
        sxx, syy, sxy = a.conj().T @ a, b.conj().T @ b, a.conj().T @ b
        out.extend(np.linalg.svd(inv_sqrt(sxx) @ sxy @ inv_sqrt(syy), compute_uv=False))
    return np.sort(np.clip(np.array(out), 0, 1))[::-1]


@pytest.mark.parametrize("c1,c2,spatial", [(3, 2, (4, 4)), (2, 3, (3, 5)), (2, 2, (6,)), (1, 2, (2, 3))])
def test_equals_the_direct_cca_of_all_positions_on_translation_invariant_data(c1, c2, spatial):
    base, yb = _pair(c1, c2, spatial)
    x, y = _all_shifts(base), _all_shifts(yb)
    direct = nx.cca(x.flatten(1), y.flatten(1)).coefficients
    res = nx.dft_cca(x, y)
    assert res.coefficients.shape == direct.shape == (min(c1, c2) * math.prod(spatial),)
    torch.testing.assert_close(res.coefficients, direct, rtol=0, atol=1e-10)
    assert res.x_rank == c1 * math.prod(spatial) and res.y_rank == c2 * math.prod(spatial)
    assert 0.3 < res.mean < 0.99  # a partial similarity, so the comparison is not trivially all ones


@pytest.mark.parametrize("spatial", [(4, 4), (3, 5), (5,)])
def test_matches_the_papers_complex_per_frequency_cca(spatial):
    base, yb = _pair(3, 2, spatial, seed=1)
    x, y = _all_shifts(base), _all_shifts(yb)
    ref = _complex_reference(x, y)
    np.testing.assert_allclose(nx.dft_cca(x, y).coefficients.numpy(), ref, rtol=0, atol=1e-9)


def _real_fourier_blocks(x: torch.Tensor) -> list[torch.Tensor]:
    """Independent construction of the real blocks: a real orthogonal Fourier basis per frequency pair."""
    spatial = x.shape[2:]
    coords = np.stack(np.meshgrid(*[np.arange(s) for s in spatial], indexing="ij"), -1).reshape(-1, len(spatial))
    freqs = coords
    n = coords.shape[0]
    blocks, seen = [], set()
    for f in freqs:
        fk = tuple(f)
        partner = tuple((-f) % np.array(spatial))
        if fk in seen:
            continue
        seen.update({fk, partner})
        phase = 2 * np.pi * (coords / np.array(spatial)) @ f
        basis = [np.cos(phase)] if fk == partner else [np.cos(phase), np.sin(phase)]
        flat = x.reshape(x.shape[0], x.shape[1], n).numpy()
        blocks.append(torch.from_numpy(np.concatenate([flat @ b for b in basis], axis=1)))
    return blocks


def test_on_other_data_it_is_the_union_of_per_frequency_ccas():
    """Without translation invariance DFT-CCA is the paper's approximation: it differs from the direct CCA
    (cross-frequency covariance is ignored) and equals the CCAs of the real Fourier blocks taken one by one."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(400, 3, 4, 4, generator=g, dtype=torch.float64)
    x[:, :, :2] += 2.0 * x[:, :1, 2:]  # position-specific structure: not translation invariant
    y = torch.tanh(F.conv2d(x, torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64), padding=1))
    y = y + 0.3 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    blocks = zip(_real_fourier_blocks(x), _real_fourier_blocks(y), strict=True)
    ref = torch.cat([nx.cca(a, b).coefficients for a, b in blocks]).sort(descending=True).values
    res = nx.dft_cca(x, y)
    torch.testing.assert_close(res.coefficients, ref, rtol=0, atol=1e-9)
    direct = nx.cca(x.flatten(1), y.flatten(1)).coefficients
    assert (res.coefficients - direct).abs().max() > 1e-3


def test_svcca_keep_applies_per_frequency_block():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(500, 4, 3, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.3, 0.05]).view(1, 4, 1, 1).double()
    y = torch.tanh(x[:, [1, 0, 3]] + 0.2 * torch.randn(500, 3, 3, 3, generator=g, dtype=torch.float64))
    blocks = zip(_real_fourier_blocks(x), _real_fourier_blocks(y), strict=True)
    for keep in (0.9, 2):
        ref = torch.cat([nx.svcca(a, b, keep=keep).coefficients for a, b in blocks]).sort(descending=True).values
        blocks = zip(_real_fourier_blocks(x), _real_fourier_blocks(y), strict=True)
        res = nx.dft_cca(x, y, keep=keep)
        assert res.keep == (keep, keep)
        torch.testing.assert_close(res.coefficients, ref, rtol=0, atol=1e-9)
    assert nx.dft_cca(x, y, keep=0.9).coefficients.numel() < nx.dft_cca(x, y).coefficients.numel()


def test_a_shift_changes_positions_not_frequencies():
    a = torch.randn(300, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    b = torch.roll(a, shifts=(2, -3), dims=(2, 3))
    assert nx.dft_cca(a, b).mean == pytest.approx(1.0, abs=1e-9)
    # an unrelated layer of the same shape is far from it
    assert nx.dft_cca(a, torch.randn(300, 3, 8, 8, generator=torch.Generator().manual_seed(6))).mean < 0.3


def test_streaming_and_batch_sizes_give_the_same_result():
    base, yb = _pair(3, 2, (4, 4), seed=2)
    x, y = _all_shifts(base).float(), _all_shifts(yb).float()
    one = nx.dft_cca(x, y, batch_size=10_000)
    for bs in (7, 64):
        torch.testing.assert_close(nx.dft_cca(x, y, batch_size=bs).coefficients, one.coefficients, rtol=0, atol=1e-9)
    pairs = ((x[i : i + 50], y[i : i + 50]) for i in range(0, x.shape[0], 50))
    torch.testing.assert_close(nx.dft_cca(pairs).coefficients, one.coefficients, rtol=0, atol=1e-9)
    acc = nx.StreamingDFTCCA(3, 2, (4, 4))
    for i in range(0, x.shape[0], 33):
        acc.update(x[i : i + 33], y[i : i + 33])
    assert acc.n == x.shape[0]
    torch.testing.assert_close(acc.cca().coefficients, one.coefficients, rtol=0, atol=1e-9)
    torch.testing.assert_close(acc.svcca(0.95).coefficients, nx.dft_cca(x, y, keep=0.95).coefficients, rtol=0, atol=1e-9)


def test_spectrum_is_conjugate_symmetric_and_empty_frequencies_are_nan():
    base, yb = _pair(2, 2, (4, 5), seed=7)
    res = nx.dft_cca(_all_shifts(base), _all_shifts(yb))
    s = res.spectrum
    assert s.shape == (4, 5) and s.dtype == torch.float64
    flipped = torch.roll(torch.flip(s, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))  # s[(-u) % H, (-v) % W]
    torch.testing.assert_close(s, flipped)
    # maps that are constant over space carry all their variance at frequency 0
    x = torch.randn(200, 3, 1, 1).expand(200, 3, 4, 4)
    y = x[:, :2] * 2.0 + 0.1 * torch.randn(200, 2, 1, 1)
    res = nx.dft_cca(x, y)
    assert not math.isnan(float(res.spectrum[0, 0]))
    assert torch.isnan(res.spectrum.reshape(-1)[1:]).all()
    assert res.coefficients.numel() == 2


def test_bad_inputs_get_clear_errors():
    a = torch.randn(20, 3, 4, 4)
    with pytest.raises(ValueError, match="same spatial shape.*interpolate"):
        nx.dft_cca(a, torch.randn(20, 3, 5, 5))
    with pytest.raises(ValueError, match="same samples"):
        nx.dft_cca(a, torch.randn(21, 3, 4, 4))
    with pytest.raises(ValueError, match=r"nx.cca / nx.svcca"):
        nx.dft_cca(torch.randn(20, 3), torch.randn(20, 3))
    with pytest.raises(TypeError, match="`y` is missing"):
        nx.dft_cca(a)
    with pytest.raises(ValueError, match="empty iterable"):
        nx.dft_cca(iter([]))
    with pytest.raises(ValueError, match="variance"):
        nx.dft_cca(a, torch.zeros(20, 2, 4, 4))
    with pytest.raises(TypeError, match="real numbers"):
        nx.dft_cca(a.to(torch.complex64), a)
    with pytest.raises(ValueError, match="finite|NaN|inf"):
        nx.dft_cca(a, a.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="at least 2"):
        nx.dft_cca(a[:1], a[:1])
    acc = nx.StreamingDFTCCA(3, 3, (4, 4))
    with pytest.raises(ValueError, match=r"\(batch, 3, 4, 4\)"):
        acc.update(torch.randn(5, 2, 4, 4), torch.randn(5, 3, 4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    base, yb = _pair(3, 2, (4, 4))
    x, y = _all_shifts(base), _all_shifts(yb)
    torch.testing.assert_close(nx.dft_cca(x.cuda(), y.cuda()).coefficients, nx.dft_cca(x, y).coefficients, rtol=0, atol=1e-9)
