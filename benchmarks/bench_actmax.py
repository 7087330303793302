"""Activation maximization: optimisation steps per second, nbexplain vs hand-written loops.

For the lesson's MNIST CNN (``zoo.cnn()``, a batch of 10 class logits) and the VGG-ish CNN
(``zoo.vgg_like()``, 3×64×64, a batch of 4 channels of ``conv3_2``), time:

* ``plain loop + transforms`` — a hand-written gradient-ascent loop (sigmoid pixels, Adam) applying the
  same robustness transforms as nbexplain's standard recipe (reflect pad, jitter, per-image random scale
  and rotation in one ``grid_sample``, jitter, centre crop), written inline here in plain torch;
* ``nbexplain, pixels + transforms`` — ``maximize_activation(param="pixel", decorrelate=False)`` (the
  same sigmoid pixels as the plain loop) with its standard transforms;
* ``plain loop, no transforms`` and ``nbexplain, pixels, no transforms`` — the raw loops;
* ``nbexplain, Fourier + transforms`` — the default parameterisation;
* for the channel objective also nbexplain with ``early_exit=False`` (by default it stops each forward
  pass after the objective's layer, which the plain loops do not).

Each configuration runs ``STEPS`` steps (``VGG_STEPS`` on the VGG-ish CNN); the median over ``REPEATS`` runs is reported, interleaved so
that machine load affects all alike. The ratio is nbexplain's time over the matching plain loop's (1.0
= as fast; the issue's target is ≤ 1.2 with transforms). ``torch.set_num_threads(1)`` is used so that
the ratios are stable on a shared machine.

Run: ``python benchmarks/bench_actmax.py`` (prints a markdown table).
"""

from __future__ import annotations

import math
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import nbexplain as nx
from nbexplain import zoo

STEPS = 64
VGG_STEPS = 24
REPEATS = 5


# ---------------------------------------------------------------------------------------------------
# Hand-written baselines
# ---------------------------------------------------------------------------------------------------
def plain_transforms(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The standard recipe written out by hand: pad, jitter, scale+rotate (one warp), jitter, crop."""
    n, _, h, w = x.shape
    side = min(h, w)
    pad, jit, small = max(1, round(0.06 * side)), max(1, round(0.04 * side)), max(1, round(0.02 * side))
    x = F.pad(x, (pad,) * 4, mode="reflect")
    dy, dx = (int(v) for v in torch.randint(0, 2 * jit + 1, (2,), generator=g))
    H, W = x.shape[-2:]
    x = F.pad(x, (jit,) * 4, mode="replicate")[..., dy : dy + H, dx : dx + W]
    scales = torch.tensor([1.0, 0.975, 1.025, 0.95, 1.05], dtype=torch.float64)
    s = scales[torch.randint(0, 5, (n,), generator=g)]
    angles = torch.arange(-5.0, 6.0, dtype=torch.float64)
    a = torch.deg2rad(angles[torch.randint(0, 11, (n,), generator=g)])
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = torch.cos(a) / s
    theta[:, 0, 1] = -torch.sin(a) * H / W / s
    theta[:, 1, 0] = torch.sin(a) * W / H / s
    theta[:, 1, 1] = torch.cos(a) / s
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    dy, dx = (int(v) for v in torch.randint(0, 2 * small + 1, (2,), generator=g))
    x = F.pad(x, (small,) * 4, mode="replicate")[..., dy : dy + H, dx : dx + W]
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top : top + h, left : left + w]


def plain_loop(model: torch.nn.Module, layer: str, units: list[int], shape: tuple[int, ...],
               transforms: bool, steps: int) -> torch.Tensor:
    """Gradient ascent the way one writes it by hand: sigmoid pixels, a hook on the layer, Adam."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    param = (torch.randn(len(units), *shape, generator=g) * 0.01).requires_grad_(True)
    opt = torch.optim.Adam([param], lr=0.1)
    store: dict[str, torch.Tensor] = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda _m, _i, o: store.__setitem__("out", o))
    idx = torch.tensor(units)
    try:
        for _ in range(steps):
            img = torch.sigmoid(param)
            x = plain_transforms(img, g) if transforms else img
            model(x)
            out = store["out"]
            picked = out[torch.arange(len(units)), idx]
            value = picked.flatten(1).mean(1) if picked.ndim > 1 else picked
            opt.zero_grad()
            (-value.sum()).backward()
            opt.step()
    finally:
        handle.remove()
        for p in model.parameters():
            p.requires_grad_(True)
    return torch.sigmoid(param).detach()


def nbx(model: torch.nn.Module, layer: str, units: list[int], shape: tuple[int, ...], objective: str,
        steps: int, **kw) -> torch.Tensor:
    return nx.maximize_activation(model, layer, units, shape, (0, 1), steps=steps, objective=objective,
                                  progress=False, **kw).images


# ---------------------------------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> float:
    # CPU time of this process: with one torch thread it is what the work costs, and it is far less
    # disturbed than wall-clock time by other jobs sharing the machine.
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def bench_model(name: str, model: torch.nn.Module, layer: str, units: list[int], shape: tuple[int, ...],
                objective: str, steps: int) -> list[tuple[str, str, float, float | None]]:
    configs: dict[str, Callable[[], object]] = {
        "plain loop + transforms": lambda: plain_loop(model, layer, units, shape, True, steps),
        "nbexplain, pixels + transforms": lambda: nbx(model, layer, units, shape, objective, steps, param="pixel",
                                                      decorrelate=False),
        "plain loop, no transforms": lambda: plain_loop(model, layer, units, shape, False, steps),
        "nbexplain, pixels, no transforms": lambda: nbx(model, layer, units, shape, objective, steps,
                                                        param="pixel", decorrelate=False, transforms=None),
        "nbexplain, Fourier + transforms": lambda: nbx(model, layer, units, shape, objective, steps),
    }
    early_exit_matters = layer != list(dict(model.named_modules()))[-1]
    if early_exit_matters:
        configs["nbexplain, pixels + transforms, early_exit=False"] = lambda: nbx(
            model, layer, units, shape, objective, steps, param="pixel", decorrelate=False, early_exit=False)
    for fn in configs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(REPEATS):
        for k, fn in configs.items():
            times[k].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for k in configs:
        base = "plain loop + transforms" if "transforms" in k and "no transforms" not in k else "plain loop, no transforms"
        ratio = None if k.startswith("plain") else med[k] / med[base]
        rows.append((name, k, steps / med[k], ratio))
    return rows


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cnn = zoo.cnn()
    from nbexplain import data

    d = data.mnist()
    zoo.train(cnn, d.x_train[:2000], d.y_train[:2000], epochs=1, progress=False)
    vgg = zoo.vgg_like()
    rows = []
    rows += bench_model("MNIST CNN, 10 class logits (1×28×28)", cnn, "out", list(range(10)), (1, 28, 28), "logit",
                        STEPS)
    rows += bench_model("VGG-ish CNN, 4 channels of conv3_2 (3×64×64)", vgg, "conv3_2", [0, 1, 2, 3],
                        (3, 64, 64), "channel", VGG_STEPS)
    print(f"Machine: {platform.machine()}, {platform.system()}, Python {sys.version.split()[0]}, "
          f"torch {torch.__version__}, 1 thread; {STEPS} (CNN) / {VGG_STEPS} (VGG) steps per run (process CPU time, setup and "
          f"final forward included), median of {REPEATS} interleaved runs.\n")
    print("| model | configuration | steps/s | time ÷ matching plain loop |")
    print("|---|---|---:|---:|")
    for model, cfg, sps, ratio in rows:
        r = "—" if ratio is None or math.isnan(ratio) else f"{ratio:.2f}×"
        print(f"| {model} | {cfg} | {sps:.1f} | {r} |")


if __name__ == "__main__":
    main()
