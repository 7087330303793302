"""Shared by the LRP benchmarks: time methods against a baseline round by round, print the ratio table.

Each round times the baseline and then every method once, in one process; the ratio of a method is taken
against the baseline of the same round, so slow phases of a shared machine hit both. Wall-clock and process
CPU time are both kept: with one torch thread the CPU time is the steadier measure.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class RatioRuns:
    """Per-round baseline times, method times and method ÷ baseline ratios (wall and CPU)."""

    base: dict[str, list[float]] = field(default_factory=lambda: {"wall": [], "cpu": []})
    times: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def input_gradient(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The baseline: ``torch.autograd.grad`` of the target scores with respect to the input."""
    rows = torch.arange(x.shape[0])

    def gradient() -> torch.Tensor:
        xi = x.detach().requires_grad_(True)
        return torch.autograd.grad(model(xi)[rows, target].sum(), xi)[0]

    return gradient


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def time_against(baseline: Callable[[], object], methods: dict[str, Callable[[], object]], rounds: int) -> RatioRuns:
    """Warm every callable up once, then run ``rounds`` interleaved rounds."""
    baseline()
    for fn in methods.values():
        fn()
    runs = RatioRuns(times={k: [] for k in methods}, ratios={k: {"wall": [], "cpu": []} for k in methods})
    for _ in range(rounds):
        gw, gc = _timed(baseline)
        runs.base["wall"].append(gw)
        runs.base["cpu"].append(gc)
        for name, fn in methods.items():
            w, c = _timed(fn)
            runs.times[name].append(w)
            runs.ratios[name]["wall"].append(w / gw)
            runs.ratios[name]["cpu"].append(c / gc)
    return runs


def print_ratio_table(title: str, runs: RatioRuns, note: str = "", baseline: str = "input gradient") -> None:
    """A markdown table: median times, median ratio (wall), its range, median ratio (CPU)."""
    med = statistics.median
    print(f"# {title}")
    extra = f", {note}" if note else ""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
        f"{extra}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print("| method | median wall time (s) | median ratio, wall | min–max, wall | median ratio, CPU time |")
    print("|---|---|---|---|---|")
    print(f"| {baseline} | {med(runs.base['wall']):.3f} | 1.00× | — | 1.00× |")
    for name, r in runs.ratios.items():
        rw, rc = r["wall"], r["cpu"]
        print(f"| {name} | {med(runs.times[name]):.3f} | {med(rw):.2f}× | {min(rw):.2f}–{max(rw):.2f}× | {med(rc):.2f}× |")
