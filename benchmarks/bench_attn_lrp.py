"""AttnLRP and CP-LRP cost on a small vision transformer relative to a plain input gradient (issue 13: ≤ 1.5×).

Model: lesson 06's ViT, ``nbexplain.architectures.vit(image=28, patch=7, dim=32, depth=2, heads=2)`` (random
weights, eval mode; the cost does not depend on training), inputs ``batch × 1 × 28 × 28`` (MNIST-sized); a wider
and deeper ViT (``dim=64, depth=4, heads=4``) as a second case. Every method is timed in the same process,
interleaved round by round, and divided by the input-gradient time of the same round (``ratio_timing``); the
table reports medians over the rounds, of wall-clock time and of process CPU time.

- input gradient: ``torch.autograd.grad(model(x)[range, target].sum(), x)`` — the baseline (1.00×);
- ``nx.lrp(model, x, target, composite="attn_lrp")`` and ``"cp_lrp"`` (the rules on for the call only, the model
  restored afterwards — included in the time);
- ``nx.gradient_x_input`` (nbexplain's own gradient method, for scale).

Run: ``python benchmarks/bench_attn_lrp.py [--rounds 9] [--batch 256] [--threads 1]``.
"""

from __future__ import annotations

import argparse

import torch
from ratio_timing import input_gradient, print_ratio_table, time_against

import nbexplain as nx
from nbexplain.architectures import vit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for label, kwargs in (("lesson 06 ViT (dim 32, depth 2, 2 heads)", dict(dim=32, depth=2, heads=2)),
                          ("wider ViT (dim 64, depth 4, 4 heads)", dict(dim=64, depth=4, heads=4))):
        model = vit(image=28, patch=7, **kwargs)
        x = torch.rand(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        target = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(1))
        methods = {
            "nx.lrp attn_lrp": lambda m=model, x=x, t=target: nx.lrp(m, x, t, composite="attn_lrp", progress=False),
            "nx.lrp cp_lrp": lambda m=model, x=x, t=target: nx.lrp(m, x, t, composite="cp_lrp", progress=False),
            "nx.gradient_x_input": lambda m=model, x=x, t=target: nx.gradient_x_input(m, x, t, progress=False),
        }
        runs = time_against(input_gradient(model, x, target), methods, args.rounds)
        print_ratio_table(f"AttnLRP on a {label}, {args.batch} × 1 × 28 × 28", runs, note=f"{args.rounds} rounds")
        print()


if __name__ == "__main__":
    main()
