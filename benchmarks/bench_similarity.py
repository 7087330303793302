"""Representation similarity benchmarks (issue 4).

1. ``nx.cca`` on 1024 + 1024 features × 10,000 samples against a plain numpy implementation of the reference
   algorithm (google/svcca's ``get_cca_similarity``: ``np.cov`` of both sides stacked, scaling, ``pinv``,
   matrix square roots by ``eigh``, SVD) written for this benchmark.
2. ``nx.similarity_grid`` (SVCCA, 99% variance) of 2 checkpoints × 4 layers of width 256 on 4,000 samples
   against reducing (SVD) and correlating (the numpy reference CCA) each of the 32 cells separately.
3. Peak memory of ``nx.StreamingSimilarity`` against in-memory ``nx.cca`` on 1,000,000 samples of 32 + 32
   features, each in a fresh subprocess: peak resident set size at the end (``VmHWM`` of /proc/self/status)
   minus the resident set size (``VmRSS``) after imports and a warm-up. Not ``resource.getrusage().ru_maxrss``:
   after fork + exec it keeps the parent's high-water mark; not tracemalloc: it does not see torch's memory.

Both sides of every timing run in this process, alternating, and the tables report medians. Thread counts follow
the environment and are printed (on a machine shared with other jobs, ``OMP_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1`` gives steadier ratios). Run: ``python benchmarks/bench_similarity.py`` (``--quick``
for a smoke run).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import textwrap
import time

import numpy as np
import torch

import nbexplain as nx
from nbexplain.zoo import mlp


# --------------------------------------------------------------------------------- numpy reference CCA
def numpy_reference_cca(acts1: np.ndarray, acts2: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """The reference algorithm, in plain numpy, on (neurons, datapoints) arrays: canonical correlations."""
    numx = acts1.shape[0]
    covariance = np.cov(acts1, acts2)
    sxx = covariance[:numx, :numx]
    sxy = covariance[:numx, numx:]
    syy = covariance[numx:, numx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx = sxx / xmax
    syy = syy / ymax
    sxy = sxy / np.sqrt(xmax * ymax)
    sxx = sxx + epsilon * np.eye(numx)
    syy = syy + epsilon * np.eye(syy.shape[0])

    def sqrtm_psd(a: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(a)
        return (v * np.sqrt(w)) @ v.T

    invsqrt_xx = sqrtm_psd(np.linalg.pinv(sxx))
    invsqrt_yy = sqrtm_psd(np.linalg.pinv(syy))
    arr = invsqrt_xx @ sxy @ invsqrt_yy
    return np.abs(np.linalg.svd(arr, compute_uv=False))


def numpy_svcca_cell(acts1: np.ndarray, acts2: np.ndarray, keep: float = 0.99) -> float:
    """One SVCCA cell the reference way: SVD-reduce both (neurons, datapoints) sides, then reference CCA."""

    def reduce(a: np.ndarray) -> np.ndarray:
        c = a - a.mean(axis=1, keepdims=True)
        _, s, vt = np.linalg.svd(c, full_matrices=False)
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.searchsorted(frac, keep - 1e-12) + 1)
        return s[:k, None] * vt[:k]

    return float(np.mean(numpy_reference_cca(reduce(acts1), reduce(acts2))))


def alternate(fa, fb, repeats: int) -> tuple[list[float], list[float], object, object]:
    ta, tb, oa, ob = [], [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        oa = fa()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ob = fb()
        tb.append(time.perf_counter() - t0)
    return ta, tb, oa, ob


# ---------------------------------------------------------------------------------------- 1. single CCA
def bench_cca(n: int, p: int, repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, p))
    y = x @ (rng.standard_normal((p, p)) / np.sqrt(p)) + rng.standard_normal((n, p))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    xT, yT = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)  # the reference's (neurons, datapoints)
    nx.cca(xt[:200, :16], yt[:200, :16])  # warm-up
    ta, tb, res, ref = alternate(lambda: nx.cca(xt, yt), lambda: numpy_reference_cca(xT, yT), repeats)
    diff = float(np.max(np.abs(res.coefficients.numpy() - ref)))
    ma, mb = statistics.median(ta), statistics.median(tb)
    return [
        f"| `cca`, {p} + {p} features × {n:,} samples | seconds (median of {repeats}) |",
        "|---|---:|",
        f"| `nx.cca` (float64) | {ma:.2f} |",
        f"| numpy reference algorithm (float64) | {mb:.2f} |",
        f"| **speed-up** | **{mb / ma:.2f}×** |",
        f"| max abs difference of the {ref.size} coefficients | {diff:.1e} |",
        f"| mean coefficient nbexplain / reference | {res.mean:.10f} / {ref.mean():.10f} |",
    ]


# ---------------------------------------------------------------------------------------- 2. SVCCA grid
def bench_grid(n: int, width: int, repeats: int) -> list[str]:
    layers = ["fc1", "fc2", "fc3", "fc4"]
    ckpts = [mlp(784, (width,) * 4, seed=s) for s in (0, 1)]
    x = torch.rand(n, 784, generator=torch.Generator().manual_seed(0))

    def ours() -> torch.Tensor:
        return nx.similarity_grid(ckpts, x, layers, metric="svcca", keep=0.99, progress=False).grid

    def baseline() -> np.ndarray:
        acts = [nx.activations(m, x, layers, dtype=torch.float64) for m in ckpts]
        ref = {k: v.numpy().T for k, v in acts[-1].items()}
        out = np.zeros((len(ckpts), len(layers), len(layers)))
        for t, a in enumerate(acts):
            for i, rn in enumerate(layers):
                for j, cn in enumerate(layers):
                    out[t, i, j] = numpy_svcca_cell(a[rn].numpy().T, ref[cn])
        return out

    ours()  # warm-up
    ta, tb, g, b = alternate(ours, baseline, repeats)
    diff = float(np.max(np.abs(g.numpy() - b)))
    ma, mb = statistics.median(ta), statistics.median(tb)
    cells = len(ckpts) * len(layers) ** 2
    return [
        f"| SVCCA grid, 2 checkpoints × 4 layers × width {width}, {n:,} samples ({cells} cells) | seconds (median of {repeats}) |",
        "|---|---:|",
        "| `nx.similarity_grid(..., metric=\"svcca\")` (forward passes included) | " f"{ma:.2f} |",
        "| numpy baseline: per cell SVD-reduce both sides + reference CCA (same forward passes) | " f"{mb:.2f} |",
        f"| **speed-up** | **{mb / ma:.1f}×** |",
        f"| max abs difference over the {cells} cells | {diff:.1e} |",
    ]


# ---------------------------------------------------------------------------------------- 3. memory
MEMORY_CHILD = textwrap.dedent(
    """
    import sys, torch, nbexplain as nx
    mode, n, p, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    def status(key):  # kB values from /proc/self/status: VmRSS (now), VmHWM (peak so far)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
    torch.manual_seed(0); _ = nx.cca(torch.randn(64, 4), torch.randn(64, 4))   # load everything first
    def make(i):  # batch i of the data, deterministic: the same samples in both modes
        g = torch.Generator().manual_seed(i)
        x = torch.randn(batch, p, generator=g)
        return x, x[:, : p // 2].repeat(1, 2) + torch.randn(batch, p, generator=g)
    base = status("VmRSS")
    if mode == "stream":
        acc = nx.StreamingSimilarity(p, p)
        for i in range(n // batch):
            acc.update(*make(i))
        value = acc.cca().mean
    else:
        parts = [make(i) for i in range(n // batch)]
        x = torch.cat([a for a, _ in parts]); y = torch.cat([b for _, b in parts]); del parts
        value = nx.cca(x, y).mean
    print(repr(value), base, status("VmHWM"))
    """
)


def bench_memory(n: int, p: int, batch: int) -> list[str]:
    rows = {}
    for mode in ("stream", "memory"):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, mode, str(n), str(p), str(batch)],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        rows[mode] = (float(out[0]), int(out[1]), int(out[2]))
    (vs, bs, ps), (vm, bm, pm) = rows["stream"], rows["memory"]
    data_mib = n * 2 * p * 4 / 2**20
    return [
        f"| CCA of {p} + {p} float32 features × {n:,} samples ({data_mib:.0f} MiB of data) | extra peak RSS (MiB) |",
        "|---|---:|",
        f"| `nx.StreamingSimilarity`, batches of {batch:,} | {(ps - bs) / 1024:.0f} |",
        f"| in-memory `nx.cca` on the concatenated features | {(pm - bm) / 1024:.0f} |",
        f"| **ratio** | **{(pm - bm) / max(ps - bs, 1):.0f}×** |",
        f"| mean coefficient streaming / in-memory | {vs:.12f} / {vm:.12f} |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat (smoke test)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    reps = 1 if args.quick else args.repeats
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info())
    except ImportError:
        blas = "unknown"
    print(f"## Similarity (issue 4) — {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, numpy/BLAS threads: {blas}, torch {torch.__version__}, "
          f"numpy {np.__version__}\n")
    sizes = dict(cca=(2000, 128), grid=(1000, 64), mem=(100_000, 32)) if args.quick else dict(
        cca=(10_000, 1024), grid=(4000, 256), mem=(1_000_000, 32))
    for lines in (
        bench_cca(*sizes["cca"], reps),
        bench_grid(*sizes["grid"], reps),
        bench_memory(*sizes["mem"], batch=10_000),
    ):
        print("\n".join(lines) + "\n", flush=True)


if __name__ == "__main__":
    main()
