"""Foundation benchmarks: JS bundle sizes, Heatmap wire size (binary vs JSON lists), activations throughput.

Run: .venv/bin/python benchmarks/bench_foundation.py  (prints a markdown table for BENCHMARKS.md)
"""

from __future__ import annotations

import gzip
import json
import platform
import statistics
import time

import torch
from ipywidgets.widgets.widget import _remove_buffers

import nbexplain as nx
from nbexplain import data, zoo
from nbexplain.widgets import Heatmap
from nbexplain.widgets.base import STATIC


def bundle_sizes() -> list[tuple[str, int, int]]:
    rows = []
    for f in sorted(STATIC.glob("*.js")):
        raw = f.read_bytes()
        rows.append((f.name, len(raw), len(gzip.compress(raw, 9))))
    return rows


def heatmap_wire() -> tuple[int, int, int]:
    m = data.mnist()
    h = Heatmap(m.x_test[:64], images=m.x_test[:64])
    state, _, buffers = _remove_buffers(h.get_state())
    binary = sum(b.nbytes for b in buffers) + len(json.dumps(state))
    as_lists = dict(h.get_state())
    as_lists["maps"] = h.maps.tolist()
    as_lists["images"] = h.images.tolist()
    json_only = len(json.dumps(as_lists, default=str))
    maps_json = len(json.dumps(h.maps.tolist()))
    return binary, json_only, maps_json


def plain_hook_activations(model: torch.nn.Module, x: torch.Tensor, names: list[str], batch_size: int) -> dict:
    """The hand-written baseline: forward hooks, a loop, reshape conv outputs to (N·H·W, C)."""
    mods = dict(model.named_modules())
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [
        mods[n].register_forward_hook(
            lambda m, i, o, n=n: store[n].append(
                o.detach().movedim(1, -1).reshape(-1, o.shape[1]) if o.ndim > 2 else o.detach()
            )
        )
        for n in names
    ]
    model.eval()
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            model(x[s : s + batch_size])
    for h in hooks:
        h.remove()
    return {n: torch.cat(v) for n, v in store.items()}


def activations_throughput(repeats: int = 7) -> tuple[float, float, float]:
    m = data.mnist()
    net = zoo.cnn().eval()
    x = m.x_train[:2000]
    names = nx.list_layers(net)
    nx.activations(net, x[:256], names)  # warm-up
    plain_hook_activations(net, x[:256], names, 256)
    ours, base = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        nx.activations(net, x, names, batch_size=256)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        plain_hook_activations(net, x, names, 256)
        base.append(time.perf_counter() - t)
    o, b = statistics.median(ours), statistics.median(base)
    return x.shape[0] / o, x.shape[0] / b, o / b


def main() -> None:
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print("\n| bundle | minified bytes | gzip bytes |\n|---|---:|---:|")
    for name, raw, gz in bundle_sizes():
        print(f"| {name} | {raw:,} | {gz:,} |")
    binary, json_only, maps_json = heatmap_wire()
    print("\n| Heatmap of 64 MNIST maps + images | bytes |\n|---|---:|")
    print(f"| binary buffers + JSON state (what nbexplain sends) | {binary:,} |")
    print(f"| everything as JSON lists | {json_only:,} |")
    print(f"| ratio JSON ÷ binary | {json_only / binary:.2f}× |")
    ours, base, ratio = activations_throughput()
    print("\n| nx.activations, zoo.cnn, 2,000 MNIST images, all 4 layers | samples/s |\n|---|---:|")
    print(f"| nx.activations | {ours:,.0f} |")
    print(f"| hand-written forward-hook loop | {base:,.0f} |")
    print(f"| time ratio nbexplain ÷ baseline (median of 7) | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
