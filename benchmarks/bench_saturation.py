"""Saturation tracking overhead: training-step time with tracking ÷ without, nbexplain vs delve.

Every Linear/Conv layer is tracked. Times are process CPU time (``time.process_time``) with one torch
thread by default (``--threads``), which is the cost of the work and steady on a shared machine. Both trackers run in this process on separate copies of the same
model (delve never removes its hooks), and the conditions are interleaved repeat by repeat; the table
reports medians over repeats. Also times the DeltaExplorer precompute.

    python benchmarks/bench_saturation.py [--repeats 9] [--mlp-steps 40] [--cnn-steps 3] [--threads 1]
                                          [--max-positions 1024]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time

import torch
from torch import nn

import nbexplain as nx
from nbexplain.architectures import resnet18
from nbexplain.zoo import dense_autoencoder, mlp, vgg_like


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def time_steps(step, n: int) -> float:
    # Process CPU time: with one torch thread it is the cost of the work, and far steadier than wall-clock
    # time on a shared, loaded machine.
    t0 = time.process_time()
    for _ in range(n):
        step()
    return (time.process_time() - t0) / n


def bench_model(name: str, build, x: torch.Tensor, y: torch.Tensor, repeats: int, steps: int, **tracker_kw):
    from delve import SaturationTracker as DelveTracker

    base = build()
    plain = copy.deepcopy(base)
    ours_model = copy.deepcopy(base)
    delve_model = copy.deepcopy(base)
    tmp = tempfile.mkdtemp(prefix="nbx-bench-delve-")
    DelveTracker(tmp, save_to="csv", modules=delve_model, device="cpu", stats=["lsat"])
    ours = nx.SaturationTracker(ours_model, **tracker_kw).start()
    runs = {"plain": make_step(plain, x, y), "nbexplain": make_step(ours_model, x, y),
            "delve": make_step(delve_model, x, y)}
    for step in runs.values():  # warm-up (allocations, first hooks)
        step()
        step()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, step in runs.items():
            times[k].append(time_steps(step, steps))
    t0 = time.perf_counter()
    rec = ours.end_epoch()
    end_epoch_s = time.perf_counter() - t0
    ours.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: statistics.median([t / p for t, p in zip(times[k], times["plain"], strict=False)]) for k in runs}
    return {
        "model": name,
        "layers": len(ours.layers),
        "plain_ms": 1e3 * med["plain"],
        "ours_ratio": ratio["nbexplain"],
        "delve_ratio": ratio["delve"],
        "end_epoch_ms": 1e3 * end_epoch_s,
        "samples_per_epoch": {n: r.count for n, r in rec.train.items()},
    }


def bench_precompute(repeats: int) -> dict:
    from nbexplain.widgets.delta_explorer import DeltaExplorer

    data = nx.data.mnist()
    ae = dense_autoencoder(784, (256, 64), code=32, seed=0)
    nx.zoo.train(ae, data.x_train[:2000], epochs=1, lr=3e-3, progress=False)
    times, ks = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        ex = DeltaExplorer(ae, (data.x_test, data.y_test), n_samples=12)
        times.append(time.perf_counter() - t0)
        ks = len(ex.ks)
    payload = sum(getattr(ex, k).nbytes for k in ("recon", "recon_random", "originals"))
    return {"seconds": statistics.median(times), "distinct_k": ks, "payload_bytes": payload,
            "positions": len(ex.deltas)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--mlp-steps", type=int, default=40, help="MLP training steps per timed repeat")
    ap.add_argument("--cnn-steps", type=int, default=3, help="CNN training steps per timed repeat")
    ap.add_argument("--only", choices=["mlp", "vgg", "resnet"], default=None, help="run one model only")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0 = leave as is)")
    ap.add_argument("--max-positions", type=int, default=None,
                    help="also run the CNN with nbexplain's spatial subsampling at this many positions")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    if args.only in (None, "mlp"):
        rows.append(bench_model("zoo.mlp() 784-256-128-64-10, batch 64", mlp, x, y, args.repeats, args.mlp_steps))
    x = torch.rand(32, 3, 64, 64)
    y = torch.randint(0, 10, (32,))
    if args.only in (None, "vgg"):
        rows.append(bench_model("zoo.vgg_like() 3×64×64, batch 32", vgg_like, x, y, args.repeats, args.cnn_steps))
    if args.max_positions and args.only in (None, "vgg"):
        rows.append(bench_model(f"vgg_like, max_positions={args.max_positions}", vgg_like, x, y, args.repeats,
                                args.cnn_steps, max_positions=args.max_positions))
    if args.only in (None, "resnet"):
        # torchvision-style ResNet-18 (in-place ReLU, residual adds), train mode: 21 tracked conv/linear layers
        x16, y16 = x[:16], y[:16]
        rows.append(bench_model("architectures.resnet18() 3×64×64, batch 16", lambda: resnet18().train(), x16, y16,
                                args.repeats, args.cnn_steps))
    pre = bench_precompute(max(1, args.repeats // 3)) if args.only is None else None

    print(f"\nmachine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{args.repeats} interleaved repeats ({args.mlp_steps} MLP / {args.cnn_steps} CNN steps each); "
          "ratios are medians of per-repeat ratios\n")
    print("| model | tracked layers | plain step (CPU ms) | nbexplain ÷ plain | delve ÷ plain | end_epoch (ms) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['layers']} | {r['plain_ms']:.1f} | {r['ours_ratio']:.3f}× | "
              f"{r['delve_ratio']:.3f}× | {r['end_epoch_ms']:.1f} |")
    if pre is None:
        return
    print(f"\nDeltaExplorer precompute (dense AE 784-256-64-32 on MNIST, 12 samples, {pre['positions']} slider "
          f"positions → {pre['distinct_k']} distinct k, eigen + random): {pre['seconds']:.2f} s median, "
          f"{pre['payload_bytes'] / 1e6:.2f} MB of uint8 images")


if __name__ == "__main__":
    main()
