"""LRP cost relative to a plain input gradient, side by side with captum's LRP.

Model: ``nbexplain.zoo.vgg_like()`` (3×64×64 inputs, batch 32, random init, eval mode). Every method is
timed in the same process, interleaved round by round, and divided by the plain input-gradient time
of the same round; the table reports medians over the rounds, of wall-clock time and of process CPU
time (steadier on a shared machine, with ``--threads 1``).

- gradient: ``torch.autograd.grad(model(x)[range, target].sum(), x)`` — the baseline (1.00×).
- nx.lrp(..., "epsilon_plus_flat"): flat on conv1, z⁺ on the other convolutions, ε on dense layers.
- nx.lrp(..., "epsilon"): ε everywhere (the rule set captum's LRP uses).
- captum LRP: ``captum.attr.LRP`` with its default rules (ε = 1e-9 on conv/linear/pooling layers);
  captum has no rule for ``nn.Flatten``, so it explains the same modules (shared weights) in a wrapper
  that flattens with ``torch.flatten`` in ``forward``.

Run: ``python benchmarks/bench_lrp.py [--rounds 7] [--batch 32] [--threads N]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from ratio_timing import input_gradient, print_ratio_table, time_against

import nbexplain as nx
from nbexplain.zoo import vgg_like


class _FunctionalFlatten(torch.nn.Module):
    """The same layers as ``vgg_like`` with the flatten done in ``forward`` (captum refuses nn.Flatten)."""

    def __init__(self, model: torch.nn.Sequential) -> None:
        super().__init__()
        names = [n for n, _ in model.named_children()]
        cut = names.index("flatten")
        self.features = torch.nn.Sequential(*list(model.children())[:cut])
        self.head = torch.nn.Sequential(*list(model.children())[cut + 1 :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(torch.flatten(self.features(x), 1))


def _captum_lrp(model: torch.nn.Sequential) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    try:
        from captum.attr import LRP
    except Exception:  # captum is a test-only peer
        return None
    wrapped = _FunctionalFlatten(model).eval()

    def run(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LRP(wrapped).attribute(x.clone().requires_grad_(True), target=target)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = vgg_like().eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 64, 64, generator=gen)
    target = torch.randint(0, 10, (args.batch,), generator=gen)
    gradient = input_gradient(model, x, target)

    methods: dict[str, Callable[[], object]] = {
        "nx.lrp epsilon_plus_flat": lambda: nx.lrp(model, x, target, composite="epsilon_plus_flat"),
        "nx.lrp epsilon": lambda: nx.lrp(model, x, target, composite="epsilon"),
    }
    captum = _captum_lrp(model)
    if captum is not None:
        methods["captum LRP (ε)"] = lambda: captum(x, target)

    runs = time_against(gradient, methods, args.rounds)
    print_ratio_table(f"LRP vs plain input gradient — vgg_like, batch {args.batch}×3×64×64, {args.rounds} rounds", runs, "")

if __name__ == "__main__":
    main()
