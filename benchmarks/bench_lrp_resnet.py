"""LRP cost on a torchvision-style ResNet-18 relative to a plain input gradient, with zennit side by side.

Model: ``nbexplain.architectures.resnet18()`` (width 64, random weights, batch norm settled on noise, eval
mode), inputs 8×3×64×64. Every method is timed in the same process, interleaved round by round, and divided
by the plain input-gradient time of the same round; the table reports medians over the rounds, of wall-clock
time and of process CPU time (steadier on a shared machine, with ``--threads 1``).

- gradient: ``torch.autograd.grad(model(x)[range, target].sum(), x)`` — the baseline (1.00×).
- ``nx.lrp(..., composite)`` for ``epsilon``, ``epsilon_plus_flat``, ``epsilon_gamma_box``,
  ``epsilon_alpha2_beta1`` (batch norm merged, residual sums split in proportion, the model restored).
- zennit (test-only peer, LGPL, optional): the same four rule sets with its ``ResNetCanonizer``, on a deep copy
  of the model (zennit leaves merged batch-norm weights behind). zennit imports ``torchvision`` at import time;
  torchvision does not import beside the CPU torch used here, so a stand-in ``torchvision`` package is put on
  ``sys.path`` whose ``models.resnet.BasicBlock``/``Bottleneck`` *are* nbexplain.architectures' classes, which
  lets zennit's ResNet canonizer apply. Install zennit with ``pip install --no-deps zennit`` (a plain
  ``pip install zennit`` pulls torchvision and, with it, a different — CUDA — torch build).

Run: ``python benchmarks/bench_lrp_resnet.py [--rounds 7] [--batch 8] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from collections.abc import Callable

import torch
from ratio_timing import input_gradient, print_ratio_table, time_against

import nbexplain as nx
from nbexplain.architectures import resnet18

COMPOSITES = ("epsilon", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1")

_STANDIN = {
    "torchvision/__init__.py": "from . import models\n",
    "torchvision/models/__init__.py": "from . import resnet\n",
    "torchvision/models/resnet.py": "from nbexplain.architectures import BasicBlock, Bottleneck, ResNet\n",
}


def _torchvision_standin() -> str:
    """A temp dir holding a ``torchvision`` package whose ResNet blocks are nbexplain.architectures' classes."""
    root = tempfile.mkdtemp(prefix="nbx-tv-")
    for rel, text in _STANDIN.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return root


def _zennit_methods(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, n_classes: int
) -> tuple[dict[str, Callable[[], object]], str]:
    """zennit's four composites on a deep copy of ``model`` (empty with a reason when zennit is missing)."""
    if "torchvision" not in sys.modules:
        sys.path.insert(0, _torchvision_standin())
    try:
        from zennit.attribution import Gradient
        from zennit.composites import (
            EpsilonAlpha2Beta1,
            EpsilonGammaBox,
            EpsilonPlusFlat,
            LayerMapComposite,
            layer_map_base,
        )
        from zennit.rules import Epsilon
        from zennit.torchvision import ResNetCanonizer
        from zennit.types import Convolution, Linear
    except Exception as err:  # zennit is an optional test-only peer
        return {}, f"zennit not run: {type(err).__name__}: {err}"
    twin = copy.deepcopy(model).eval()
    low, high = float(x.min()), float(x.max())
    makers = {
        "epsilon": lambda: LayerMapComposite(
            layer_map_base() + [(Convolution, Epsilon()), (Linear, Epsilon())], canonizers=[ResNetCanonizer()]
        ),
        "epsilon_plus_flat": lambda: EpsilonPlusFlat(canonizers=[ResNetCanonizer()]),
        "epsilon_gamma_box": lambda: EpsilonGammaBox(low=low, high=high, canonizers=[ResNetCanonizer()]),
        "epsilon_alpha2_beta1": lambda: EpsilonAlpha2Beta1(canonizers=[ResNetCanonizer()]),
    }
    seed = torch.eye(n_classes)[target]

    def run(make: Callable[[], object]) -> Callable[[], object]:
        def call() -> object:
            with Gradient(twin, make()) as attributor:
                return attributor(x, seed)[1]

        return call

    from importlib.metadata import version as dist_version

    return {f"zennit {k}": run(m) for k, m in makers.items()}, f"zennit {dist_version('zennit')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-zennit", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = resnet18(width=args.width).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 64, 64, generator=gen)
    target = torch.randint(0, 10, (args.batch,), generator=gen)
    gradient = input_gradient(model, x, target)

    methods: dict[str, Callable[[], object]] = {
        f"nx.lrp {c}": (lambda c=c: nx.lrp(model, x, target, composite=c)) for c in COMPOSITES
    }
    peer = "zennit skipped (--no-zennit)"
    if not args.no_zennit:
        extra, peer = _zennit_methods(model, x, target, 10)
        methods.update(extra)

    runs = time_against(gradient, methods, args.rounds)
    print_ratio_table(f"LRP vs plain input gradient — resnet18(width={args.width}), batch {args.batch}×3×64×64, {args.rounds} rounds", runs, peer)

if __name__ == "__main__":
    main()
