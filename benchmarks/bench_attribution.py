"""Sensitivity methods: nbexplain vs captum 0.9 at equal work, in one process.

On the VGG-ish benchmark CNN (``zoo.vgg_like()``, 3×64×64, random init, eval mode) time, per round:

* ``torch.autograd.grad`` of the target scores w.r.t. the input — the plain baseline;
* ``nx.gradient`` vs captum ``Saliency(abs=False)``;
* ``nx.smoothgrad`` vs captum ``NoiseTunnel(Saliency)`` with the same number of noisy samples (and the
  same noise: both draw it from the seeded generator in the same layout);
* ``nx.integrated_gradients`` vs captum ``IntegratedGradients`` at equal steps, Gauss–Legendre, all
  path points in one batch for both (captum's ``internal_batch_size=None`` ≙ nbexplain's
  ``batch_size=n·steps``) and with a bounded batch of 32 path points (the memory-safe setting for long
  runs; nbexplain's default bound is 128 rows).

Rounds interleave every method so that machine load affects all alike; the ratio nbexplain ÷ captum is
taken per round and the median over rounds is reported (min–max beside it).

Run: ``python benchmarks/bench_attribution.py [--rounds 7] [--batch 8] [--steps 32] [--threads N]``
(prints a markdown table).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

import nbexplain as nx
from nbexplain import zoo


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32, help="IG steps and SmoothGrad samples")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    net = zoo.vgg_like().eval()
    for p in net.parameters():
        p.requires_grad_(False)  # captum and the baseline: no parameter gradients either
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 64, 64, generator=g)
    target = torch.randint(0, 10, (args.batch,), generator=g)
    steps = args.steps
    big = args.batch * steps

    def baseline():
        xb = x.clone().requires_grad_(True)
        out = net(xb).gather(1, target[:, None]).sum()
        return torch.autograd.grad(out, xb)[0]

    def cap_sg():
        torch.manual_seed(0)
        return NoiseTunnel(Saliency(net)).attribute(x, nt_type="smoothgrad", nt_samples=steps, stdevs=0.15,
                                                     target=target, abs=False)

    methods: dict[str, Callable[[], object]] = {
        "input gradient (plain torch)": baseline,
        "nbexplain gradient": lambda: nx.gradient(net, x, target).attribution,
        "captum Saliency": lambda: Saliency(net).attribute(x, target=target, abs=False),
        "nbexplain smoothgrad": lambda: nx.smoothgrad(net, x, target, n_samples=steps, noise_level=0.15, seed=0,
                                                      batch_size=big).attribution,
        "captum NoiseTunnel(Saliency)": cap_sg,
        "nbexplain IG (one batch)": lambda: nx.integrated_gradients(net, x, target, steps=steps, batch_size=big).attribution,
        "nbexplain IG (batch_size=32)": lambda: nx.integrated_gradients(net, x, target, steps=steps, batch_size=32).attribution,
        "captum IntegratedGradients": lambda: IntegratedGradients(net).attribute(
            x, target=target, n_steps=steps, method="gausslegendre"),
    }
    pairs = [
        ("gradient", "nbexplain gradient", "captum Saliency"),
        (f"SmoothGrad, {steps} samples", "nbexplain smoothgrad", "captum NoiseTunnel(Saliency)"),
        (f"integrated gradients, {steps} steps, one batch", "nbexplain IG (one batch)", "captum IntegratedGradients"),
        (f"integrated gradients, {steps} steps, batch_size=32", "nbexplain IG (batch_size=32)",
         "captum IntegratedGradients"),
    ]

    # warm-up (allocator, captum imports)
    for fn in methods.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in methods}
    for r in range(args.rounds):
        for name, fn in methods.items():
            times[name].append(timed(fn))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    threads = torch.get_num_threads()
    print(f"\nMachine: {platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, "
          f"{threads} thread(s); zoo.vgg_like() 3×64×64, batch {args.batch}, {args.rounds} rounds.\n")
    print("| method | nbexplain (median s) | captum (median s) | nbexplain ÷ captum, median (min–max) |")
    print("|---|---:|---:|---:|")
    for label, ours, theirs in pairs:
        ratios = [a / b for a, b in zip(times[ours], times[theirs], strict=True)]
        print(f"| {label} | {statistics.median(times[ours]):.3f} | {statistics.median(times[theirs]):.3f} | "
              f"**{statistics.median(ratios):.2f}×** ({min(ratios):.2f}–{max(ratios):.2f}) |")
    base = times["input gradient (plain torch)"]
    ratios = [a / b for a, b in zip(times["nbexplain gradient"], base, strict=True)]
    print(f"\n`nx.gradient` ÷ plain `torch.autograd.grad`: median {statistics.median(ratios):.2f}× "
          f"({min(ratios):.2f}–{max(ratios):.2f}); plain gradient median {statistics.median(base):.3f} s.")


if __name__ == "__main__":
    main()
