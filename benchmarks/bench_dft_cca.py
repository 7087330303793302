"""DFT-CCA benchmarks (issue 17, item 3).

1. Speed at a size where the direct computation still runs: ``nx.dft_cca`` against ``nx.cca`` of the flattened
   ``C·H·W`` features (the computation DFT-CCA replaces; identical results on translation-invariant data),
   16 + 16 channels on 8×8 maps (1,024 features a side), 10,000 maps. Both in this process, alternating; the
   table reports medians and the ratio.
2. The size of the issue: 64 + 64 channels on 32×32 maps (65,536 features a side) × 10,000 inputs, streamed in
   batches of 256 maps from two random conv layers, in a fresh subprocess: wall time of the DFT-CCA itself
   (map generation timed separately and excluded) and the peak resident memory above the after-import level
   (``VmHWM − VmRSS`` from /proc/self/status, as in bench_similarity.py). The direct computation does not run
   at that size: its three float64 covariance blocks alone would need 3 × 65,536² × 8 B ≈ 103 GB.

Run: ``python benchmarks/bench_dft_cca.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import textwrap
import time

import torch

import nbexplain as nx


def bench_speed(n: int, channels: int, side: int, repeats: int) -> list[str]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, channels, side, side, generator=g)
    w = torch.randn(channels, channels, 3, 3, generator=g) / 3.0
    y = torch.tanh(torch.nn.functional.conv2d(x, w, padding=1)) + 0.3 * torch.randn(n, channels, side, side, generator=g)
    direct_t, dft_t = [], []
    direct_v = dft_v = float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        direct_v = nx.cca(x.flatten(1), y.flatten(1)).mean
        direct_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dft_v = nx.dft_cca(x, y, progress=False).mean
        dft_t.append(time.perf_counter() - t0)
    md, mf = statistics.median(direct_t), statistics.median(dft_t)
    feats = channels * side * side
    return [
        f"### Speed: {channels} + {channels} channels × {side}×{side} ({feats} features a side), {n} maps, {repeats} runs",
        "",
        "| computation | median s | runs (s) | mean ρ |",
        "|---|---|---|---|",
        f"| nx.cca of the flattened maps (direct) | {md:.3f} | {', '.join(f'{t:.3f}' for t in direct_t)} | {direct_v:.4f} |",
        f"| nx.dft_cca | {mf:.3f} | {', '.join(f'{t:.3f}' for t in dft_t)} | {dft_v:.4f} |",
        "",
        f"Direct ÷ DFT-CCA time: **{md / mf:.1f}×** (the values differ because random "
        "maps with position-specific noise are not exactly translation invariant; on translation-invariant data they "
        "are equal, tests/core/test_dft_cca.py).",
        "",
    ]


_LARGE = textwrap.dedent(
    """
    import time, torch, nbexplain as nx
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1])
    n, batch, c, side = {n}, 256, 64, 32
    g = torch.Generator().manual_seed(0)
    # two small conv stacks (ReLU in between, so each layer's maps have full rank at every frequency)
    conv_a = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, c, 3, padding=1))
    conv_b = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(32, c, 1), torch.nn.ReLU())
    def make(i):
        with torch.no_grad():
            img = torch.randn(min(batch, n - i), 3, side, side, generator=g)
            return conv_a(img), conv_b(img)
    make(0)  # warm-up of the convolutions
    base = status("VmRSS")
    acc = None
    gen = run = 0.0
    for i in range(0, n, batch):
        t0 = time.perf_counter(); a, b = make(i); gen += time.perf_counter() - t0
        t0 = time.perf_counter()
        if acc is None:
            acc = nx.StreamingDFTCCA(c, c, (side, side))
        acc.update(a, b)
        run += time.perf_counter() - t0
    t0 = time.perf_counter(); res = acc.cca(); run += time.perf_counter() - t0
    print(run, gen, (status("VmHWM") - base) / 1024, res.mean, res.coefficients.numel())
    """
)


def bench_large(n: int) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _LARGE.format(n=n)], capture_output=True, text=True, check=True)
    run, gen, peak_mb, mean, k = out.stdout.split()
    return [
        f"### Size of the issue: 64 + 64 channels × 32×32 (65,536 features a side), {n} inputs, streamed",
        "",
        "| | value |",
        "|---|---|",
        f"| DFT-CCA wall time (update + result, map generation excluded) | {float(run):.1f} s |",
        f"| generating the maps (two conv layers, for reference) | {float(gen):.1f} s |",
        f"| peak memory above the after-import level | {float(peak_mb):.0f} MB |",
        f"| canonical correlations / mean ρ | {k} / {float(mean):.4f} |",
        "| direct CCA: covariance blocks alone | 3 × 65,536² × 8 B ≈ 103 GB — does not run |",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, python {platform.python_version()}\n")
    lines = bench_speed(2000 if args.quick else 10_000, 16, 8, 2 if args.quick else 3)
    lines += bench_large(512 if args.quick else 10_000)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
