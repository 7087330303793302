"""Dense kernels shared by the statistics and similarity code.

:func:`add_gram` / :func:`sym_from_upper` accumulate symmetric products in place in any dtype (the
saturation tracker's float32 blocks). The other functions take and return torch tensors; on the CPU, for
float64 tensors that need no autograd, their work runs in numpy (zero-copy views), for two measured reasons (2-core machine, torch 2.13 with MKL, numpy
with OpenBLAS):

* numpy calls ``syrk`` for ``aᵀa``: half the flops of the GEMM torch runs (4000 × 256: 6 ms vs 11 ms), and
  its GEMM and small SVDs are 10–30% faster here.
* **One thread pool.** Alternating torch (OpenMP/MKL) and numpy (OpenBLAS) ops makes both pools' worker
  threads spin on the same cores: a 2-checkpoint SVCCA grid took 1.15–1.25 s mixed and 0.72–0.78 s with either
  pool limited to one thread. Keeping a whole computation in one library avoids the fight.

Elsewhere (CUDA, float32, tensors that require grad) the same calls run in torch, on the tensor's device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = [
    "add_gram",
    "sym_from_upper",
    "blas_phase",
    "on_numpy",
    "centre",
    "column_moments",
    "gram",
    "cross",
    "matmul",
    "eigh",
    "svdvals",
    "svd",
]


def on_numpy(*ts: torch.Tensor) -> bool:
    """True when every tensor is a CPU float64 tensor without autograd (numpy can take it over)."""
    return all(t.device.type == "cpu" and t.dtype == torch.float64 and not t.requires_grad for t in ts)


@contextmanager
def blas_phase(device: torch.device) -> Iterator[None]:
    """Run a stretch of numpy-BLAS work with torch's intra-op pool at one thread, then restore it.

    torch's OpenMP workers spin for a while after every parallel op (even a ``flip`` or a dtype cast of a
    64k-element tensor) and take the cores from OpenBLAS's threads. Inside this block torch runs such
    glue ops inline. Only on the CPU; the previous thread count comes back also on error.
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before > 1:
            torch.set_num_threads(before)


def _block_count(d: int) -> int:
    """Column blocks for :func:`add_gram` on the CPU (measured, float32, one thread: 1024 × 256 rows
    take 1.5 ms in 4 block rows vs 2.0 ms as one GEMM; 1024 × 512: 5.0 vs 7.8 ms; below 96 one GEMM wins)."""
    return 1 if d < 96 else 2 if d < 192 else 4 if d < 384 else 8


def add_gram(out: torch.Tensor, c: torch.Tensor, rows_are_samples: bool = True) -> None:
    """``out += cᵀc`` (``c`` is ``(n, d)``; ``c cᵀ`` for ``(d, n)`` when not ``rows_are_samples``).

    Only the **upper triangle** of ``out`` (with the diagonal) is guaranteed: on the CPU a wide product is
    formed as block rows ``out[Bᵢ, Bᵢ:] += c_{Bᵢ}ᵀ c_{Bᵢ:}``, skipping the lower blocks (up to ~45% of the
    flops, which is what a symmetric rank-k update saves; torch has no ``syrk``). Readers symmetrise from
    the upper triangle (:func:`sym_from_upper`). On other devices: one GEMM.
    """
    d = c.shape[1] if rows_are_samples else c.shape[0]
    nb = _block_count(d) if c.device.type == "cpu" else 1
    if nb == 1:
        if rows_are_samples:
            out.addmm_(c.T, c)
        else:
            out.addmm_(c, c.T)
        return
    b = -(-d // nb)
    for s in range(0, d, b):
        if rows_are_samples:
            out[s : s + b, s:].addmm_(c[:, s : s + b].T, c[:, s:])
        else:
            out[s : s + b, s:].addmm_(c[s : s + b], c[s:].T)


def sym_from_upper(m: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix whose upper triangle (with the diagonal) is that of ``m``."""
    return torch.triu(m) + torch.triu(m, 1).T


def _np(t: torch.Tensor) -> np.ndarray:
    return t.numpy()  # a view with the tensor's strides; numpy copies only if BLAS needs it


def centre(x: torch.Tensor, mean: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x − mean, mean)`` over the rows (a new tensor; ``x`` is not modified); ``mean`` if already known."""
    if mean is None:
        mean = torch.from_numpy(_np(x).mean(axis=0)) if on_numpy(x) else x.mean(dim=0)
    if on_numpy(x, mean):
        return torch.from_numpy(_np(x) - _np(mean)), mean
    return x - mean, mean


def column_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means and column sums of squares (``Σᵢ xᵢⱼ²``), without a temporary copy of ``x``."""
    if on_numpy(x):
        a = _np(x)
        return torch.from_numpy(a.mean(axis=0)), torch.from_numpy(np.einsum("ij,ij->j", a, a))
    return x.mean(dim=0), torch.linalg.vector_norm(x, dim=0).square()


def gram(a: torch.Tensor) -> torch.Tensor:
    """``aᵀa``, exactly symmetric.

    numpy recognises ``aᵀ·a`` of one buffer, calls ``syrk`` and mirrors the triangle, so the result is
    symmetric bit for bit. Elsewhere :func:`add_gram` forms the upper triangle, which is mirrored.
    """
    if on_numpy(a):
        an = _np(a)
        return torch.from_numpy(an.T @ an)
    g = a.new_zeros(a.shape[1], a.shape[1])
    add_gram(g, a)
    return sym_from_upper(g)


def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``aᵀb``."""
    if on_numpy(a, b):
        return torch.from_numpy(_np(a).T @ _np(b))
    return a.T @ b


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a b``."""
    if on_numpy(a, b):
        return torch.from_numpy(_np(a) @ _np(b))
    return a @ b


def eigh(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix (its lower triangle is read)."""
    if on_numpy(s):
        vals, vecs = np.linalg.eigh(_np(s))
        return torch.from_numpy(vals), torch.from_numpy(vecs)
    return torch.linalg.eigh(s)  # type: ignore[return-value]


def svdvals(m: torch.Tensor) -> torch.Tensor:
    """Singular values, descending."""
    if m.numel() == 0:
        return m.new_zeros(0)
    if on_numpy(m):
        return torch.from_numpy(np.linalg.svd(_np(m), compute_uv=False))
    return torch.linalg.svdvals(m)


def svd(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``(u, s, vh)``."""
    if on_numpy(m):
        u, s, vh = np.linalg.svd(_np(m), full_matrices=False)
        return torch.from_numpy(u), torch.from_numpy(s), torch.from_numpy(vh)
    return torch.linalg.svd(m, full_matrices=False)  # type: ignore[return-value]
