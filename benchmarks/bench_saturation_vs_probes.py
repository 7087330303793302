"""Saturation is cheap next to probes (issue 17, item 7): the cost of reading every layer of one network both ways.

The feature-space saturation article (Shenk, Richter et al., 2020) presents saturation as a far cheaper
signal than linear probes: it needs the layer's covariance (one pass of the data, an eigendecomposition per
layer), while a probe trains a classifier per layer. Both are timed here on the same network, layers and
data, in this process, alternating, as process CPU time (steady on a shared machine):

* saturation, after the fact: ``nx.layer_statistics`` on the training inputs (one forward pass, float64
  covariances; conv maps read per position, ``conv="channels"``, the saturation default) + ``nx.saturation``;
* saturation while training: the extra cost of ``nx.SaturationTracker`` over one epoch of plain training
  (what a user pays to get it for free at every epoch);
* probes: ``nx.probe_accuracy`` (a forward pass of train and test inputs + one L2 logistic-regression probe
  per layer on globally pooled features, ``conv="mean"``, the probe default).

Network: ``nbexplain.zoo.cnn`` (conv1, conv2, fc1, out) trained for two epochs on the bundled 5,000-image MNIST
sample (4,000 train / 1,000 test). Run: ``python benchmarks/bench_saturation_vs_probes.py [--repeats 5]
[--threads 1]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import nbexplain as nx
from nbexplain.data import mnist
from nbexplain.zoo import cnn, train

LAYERS = ["conv1", "conv2", "fc1", "out"]


def cpu(fn) -> tuple[float, object]:
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = mnist()
    model = cnn()
    train(model, data.x_train, data.y_train, epochs=2, progress=False)
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test

    def saturation_after() -> dict[str, float]:
        stats = nx.layer_statistics(model, xtr, LAYERS, progress=False)
        return {k: nx.saturation(v.eigenvalues, 0.99) for k, v in stats.items()}

    def probes() -> dict[str, float]:
        return nx.probe_accuracy(model, (xtr, ytr), (xte, yte), LAYERS, progress=False)

    def epoch(tracked: bool) -> None:
        net = cnn()
        net.load_state_dict(model.state_dict())
        opt = torch.optim.SGD(net.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()

        def run() -> None:
            for i in range(0, xtr.shape[0], 64):
                opt.zero_grad(set_to_none=True)
                loss_fn(net(xtr[i : i + 64]), ytr[i : i + 64]).backward()
                opt.step()

        if tracked:
            with nx.SaturationTracker(net, LAYERS) as tracker:
                run()
                tracker.end_epoch()
        else:
            run()

    saturation_after(), probes()  # warm-up
    t_sat, t_probe, t_plain, t_tracked = [], [], [], []
    sat = acc = None
    for _ in range(args.repeats):
        t, sat = cpu(saturation_after)
        t_sat.append(t)
        t, acc = cpu(probes)
        t_probe.append(t)
        t_plain.append(cpu(lambda: epoch(False))[0])
        t_tracked.append(cpu(lambda: epoch(True))[0])
    ms, mp = statistics.median(t_sat), statistics.median(t_probe)
    overhead = statistics.median([b - a for a, b in zip(t_plain, t_tracked, strict=True)])
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} torch thread(s), python {platform.python_version()}; medians of {args.repeats} "
          "alternating repeats, process CPU time\n")
    print("| way to read 4 layers (conv1, conv2, fc1, out) | median CPU s | runs |")
    print("|---|---|---|")
    print(f"| saturation after training (layer_statistics + saturation) | {ms:.2f} | {', '.join(f'{t:.2f}' for t in t_sat)} |")
    print(f"| saturation while training (tracker overhead over one epoch) | {overhead:.2f} | "
          f"{', '.join(f'{b - a:.2f}' for a, b in zip(t_plain, t_tracked, strict=True))} |")
    print(f"| linear probes (probe_accuracy) | {mp:.2f} | {', '.join(f'{t:.2f}' for t in t_probe)} |")
    print(f"\nprobes ÷ saturation after training: **{mp / ms:.1f}×**; "
          f"probes ÷ tracker overhead: **{mp / max(overhead, 1e-9):.1f}×**")
    print("saturation:", {k: round(v, 3) for k, v in (sat or {}).items()})
    print("probe accuracy:", {k: round(v, 3) for k, v in (acc or {}).items()})


if __name__ == "__main__":
    main()
