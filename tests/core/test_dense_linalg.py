"""dense_linalg: the numpy (CPU float64) path and the torch path give the same results; blas_phase restores
torch's thread count, also on error."""

from __future__ import annotations

import pytest
import torch

from nbexplain.core._base import dense_linalg as dl


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(300, 40, generator=g, dtype=torch.float64), torch.randn(
        300, 25, generator=g, dtype=torch.float64
    )


def _torch_only(t: torch.Tensor) -> torch.Tensor:
    """The same values, routed to torch (autograd on makes on_numpy false)."""
    return t.clone().requires_grad_(True)


def test_on_numpy_only_for_cpu_float64_without_grad():
    a, _ = _pair()
    assert dl.on_numpy(a)
    assert not dl.on_numpy(a.float())
    assert not dl.on_numpy(_torch_only(a))
    assert not dl.on_numpy(a, a.float())


def test_numpy_and_torch_paths_agree():
    a, b = _pair(1)
    with torch.no_grad():
        ta, tb = _torch_only(a), _torch_only(b)
    xc, mean = dl.centre(a)
    torch.testing.assert_close(mean, a.mean(0))
    torch.testing.assert_close(xc, a - a.mean(0))
    g = dl.gram(xc)
    assert torch.equal(g, g.T)  # syrk's mirrored triangle: symmetric bit for bit
    torch.testing.assert_close(g, xc.T @ xc, atol=1e-10, rtol=1e-12)
    wide = torch.randn(50, 500, dtype=torch.float64)  # the torch path's block-triangular branch (p ≥ 384)
    torch.testing.assert_close(dl.gram(_torch_only(wide)).detach(), dl.gram(wide), atol=1e-10, rtol=1e-12)
    torch.testing.assert_close(dl.cross(a, b), dl.cross(ta, tb).detach(), atol=1e-10, rtol=1e-12)
    torch.testing.assert_close(dl.matmul(a.T, b), (ta.T @ tb).detach(), atol=1e-10, rtol=1e-12)
    s = g / g.diagonal().max()
    vals, vecs = dl.eigh(s)
    tv, _ = torch.linalg.eigh(s)
    torch.testing.assert_close(vals, tv, atol=1e-12, rtol=0)
    torch.testing.assert_close(vecs @ torch.diag(vals) @ vecs.T, s, atol=1e-12, rtol=0)
    m = dl.cross(a, b) / 300.0
    torch.testing.assert_close(dl.svdvals(m), torch.linalg.svdvals(m), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        dl.svdvals(_torch_only(m)).detach(), torch.linalg.svdvals(m), atol=1e-12, rtol=0
    )
    u, sv, vh = dl.svd(m)
    assert u.shape == (40, 25) and vh.shape == (25, 25)
    torch.testing.assert_close(u @ torch.diag(sv) @ vh, m, atol=1e-12, rtol=0)
    assert dl.svdvals(torch.zeros(0, 3, dtype=torch.float64)).numel() == 0


def test_blas_phase_restores_the_thread_count_also_on_error():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with dl.blas_phase(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="boom"):
            with dl.blas_phase(torch.device("cpu")):
                raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
