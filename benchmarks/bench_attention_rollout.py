"""Attention rollout: ``nx.attention_rollout`` against a plain forward pass of the same model, in one process.

On a small ViT (``nbexplain.architectures.vit``: 28×28 single-channel images, 4×4 patches → 49 patch tokens +
a class token, width 32, 4 pre-norm ``nn.TransformerEncoderLayer`` blocks of 4 heads, random init, eval mode)
time, per round:

* the plain forward pass ``model(x)`` under ``torch.no_grad()`` — the baseline (torch may take its fused
  transformer fast path here);
* ``nx.attention_rollout(model, x)`` — one forward pass that records every layer's per-head weights (the fast
  path is off while it records: the fused kernel never forms them), then the float64 rollout, the class-token
  row and the upsampled patch map;
* a hand-written rollout, what a user writes without nbexplain: a forward pre-hook per
  ``nn.MultiheadAttention`` asking for ``need_weights=True, average_attn_weights=False``, a forward hook keeping
  the weights, then the same float64 rollout — no hygiene, no checks, no functional attention.

Rounds interleave the two; the ratio is taken per round and the median over rounds reported (min–max beside
it), of wall-clock and of process CPU time.

Run: ``python benchmarks/bench_attention_rollout.py [--rounds 11] [--batch 64] [--threads N]``
(prints a markdown table).
"""

from __future__ import annotations

import argparse

import torch
from ratio_timing import print_ratio_table, time_against

import nbexplain as nx
from nbexplain.architectures import vit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = vit(image=28, patch=4, dim=32, depth=4, heads=4)
    x = torch.rand(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    def rollout() -> torch.Tensor:
        return nx.attention_rollout(model, x, progress=False).attribution

    mhas = [m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)]

    def by_hand() -> torch.Tensor:
        kept: list[torch.Tensor] = []

        def ask(_m: torch.nn.Module, a: tuple, kw: dict) -> tuple[tuple, dict]:
            return a, {**kw, "need_weights": True, "average_attn_weights": False}

        def keep(_m: torch.nn.Module, _a: tuple, out: tuple) -> None:
            kept.append(out[1])

        hooks = [h for m in mhas for h in (m.register_forward_pre_hook(ask, with_kwargs=True),
                                           m.register_forward_hook(keep))]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in hooks:
                h.remove()
        roll = None
        for a in kept:
            mixed = 0.5 * a.mean(1).double() + 0.5 * torch.eye(a.shape[-1], dtype=torch.float64)
            mixed = mixed / mixed.sum(-1, keepdim=True)
            roll = mixed if roll is None else mixed @ roll
        return roll[:, 0]

    runs = time_against(forward, {"nx.attention_rollout": rollout, "hand-written rollout": by_hand}, args.rounds)
    print_ratio_table(
        "Attention rollout vs a plain forward pass", runs,
        note=f"ViT 28×28/4, width 32, depth 4, 4 heads, batch {args.batch}, {args.rounds} rounds",
        baseline="plain forward pass (no_grad)",
    )


if __name__ == "__main__":
    main()
