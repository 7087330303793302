"""Playground speed in the browser (issue 15): frames drawn per second in Chromium while a 2-8-8-2 network trains
on 500 points (64×64 surface, every neuron's map, the relevance field), the kernel's latency answering another
cell meanwhile, bytes per frame and the recorded history's size.

It starts the browser tests' JupyterLab and Debian Chromium (``tests/browser/harness.py``), opens a notebook with
``Playground("moons", n=500)``, and per round: rewinds, presses play, lets it run, and counts

- frames drawn: the view's ``data-frame`` counter (one per animation frame that drew a new frame), over the
  page's own ``performance.now()``;
- frames pushed: how often the kernel set the ``frame`` trait (an observer in the kernel);
- latency: the round trip of ``execute("x = 1")`` from a second websocket client while training, against the
  same round trip with the kernel idle (the harness opens a websocket per call, so the idle figure is the floor).

A last run trains for ``--long`` seconds to show the recording's bound (20 MB, thinned evenly). Medians over the
rounds are printed as a Markdown table. Run: ``python benchmarks/bench_playground.py`` (``--quick`` for a smoke
run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))
from harness import Lab  # noqa: E402

ROOT = ".nbx-playground"
SETUP = (
    "from nbexplain.widgets import Playground\n"
    "pg = Playground('moons', n=500, hidden=(8, 8), resolution=64, seed=0)\n"
    "pushed = [0]\n"
    "pg.observe(lambda c: pushed.__setitem__(0, pushed[0] + 1), 'frame')\n"
    "pg"
)


def _drawn(nb) -> tuple[float, float]:  # noqa: ANN001
    return tuple(nb.page.evaluate(
        f"() => [+document.querySelector('{ROOT}').dataset.frame, performance.now()]"))  # type: ignore[return-value]


def _latencies(nb, seconds: float) -> list[float]:  # noqa: ANN001
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        nb.execute("x = 1")
        out.append(1000 * (time.perf_counter() - t0))
        time.sleep(0.2)
    return out


def kernel_only(seconds: float) -> tuple[float, float]:
    """Frames per second the widget's loop produces in this process with no browser and no comm (the same
    asyncio task, with an event loop here instead of a kernel's), and the median lateness of a 50 ms timer on
    that loop meanwhile (how long other work waits)."""
    import asyncio

    from nbexplain.widgets import Playground

    pg = Playground("moons", n=500, hidden=(8, 8), resolution=64, seed=0)
    count = [0]
    pg.observe(lambda c: count.__setitem__(0, count[0] + 1), "frame")

    async def go() -> tuple[float, float]:
        pg.play()
        await asyncio.sleep(1.0)
        c0, t0, late = count[0], time.perf_counter(), []
        while time.perf_counter() - t0 < seconds:
            a = time.perf_counter()
            await asyncio.sleep(0.05)
            late.append(1000 * (time.perf_counter() - a - 0.05))
        fps = (count[0] - c0) / (time.perf_counter() - t0)
        pg.pause()
        return fps, statistics.median(late)

    return asyncio.run(go())


def run(rounds: int, seconds: float, long: float) -> None:
    alone = [kernel_only(seconds) for _ in range(rounds)]
    rows = []
    load_before = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    with Lab() as lab:
        nb = lab.open_notebook([SETUP], name="bench_playground", viewport=(1200, 1400))
        with nb:
            nb.view(ROOT)
            nb.page.locator(f"{ROOT}[data-ready='true'][data-frame]").wait_for()
            idle = _latencies(nb, 3.0)
            play = nb.page.locator(f"{ROOT} button.nbx-pg-play")
            for r in range(rounds):
                nb.execute("pg.rewind(); pushed[0] = 0")
                nb.page.locator(f"{ROOT}[data-state='idle'][data-epoch='0']").wait_for()
                play.click()
                nb.page.locator(f"{ROOT}[data-state='training']").wait_for()
                nb.page.wait_for_timeout(1000)  # past the start
                f0, t0 = _drawn(nb)
                p0 = int(nb.execute("print(pushed[0])"))
                lat = _latencies(nb, seconds)
                f1, t1 = _drawn(nb)
                p1 = int(nb.execute("print(pushed[0])"))
                play.click()
                nb.page.locator(f"{ROOT}[data-state='paused']").wait_for(timeout=30_000)
                info = nb.execute("f = pg.frames[-1]; print(pg.trainer.epoch, f.nbytes, len(pg.frames), "
                                  "pg.recording_bytes)").split()
                rows.append({"drawn": 1000 * (f1 - f0) / (t1 - t0), "pushed": (p1 - p0) / ((t1 - t0) / 1000),
                             "lat": statistics.median(lat), "lat_max": max(lat), "epochs": int(info[0]),
                             "frame_bytes": int(info[1]), "recorded": int(info[2]), "rec_bytes": int(info[3])})
                print(f"round {r}: {rows[-1]}", flush=True)
            # the recording's bound on a long run
            nb.execute("pg.rewind()")
            play.click()
            nb.page.locator(f"{ROOT}[data-state='training']").wait_for()
            nb.page.wait_for_timeout(int(1000 * long))
            play.click()
            nb.page.locator(f"{ROOT}[data-state='paused']").wait_for(timeout=60_000)
            longrun = nb.execute("print(pg.trainer.epoch, len(pg.frames), pg.recording_bytes, pg._recording.stride, "
                                 "pg._recording._seen)").split()
            assert nb.page_errors == [], nb.page_errors
    med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads here; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {rounds} rounds of {seconds:.0f} s; "
          f"load average {load_before} before, {', '.join(f'{v:.1f}' for v in os.getloadavg())} after "
          f"on {os.cpu_count()} CPUs")
    print()
    print("| figure | median | rounds |")
    print("|---|---|---|")
    series = {k: ", ".join(f"{r[k]:.1f}" for r in rows) for k in ("drawn", "pushed", "lat")}
    print(f"| frames drawn per second in Chromium | {med['drawn']:.1f} | {series['drawn']} |")
    print(f"| frames pushed per second by the kernel | {med['pushed']:.1f} | "
          f"{series['pushed']} |")
    print(f"| epochs trained per round | {med['epochs']:.0f} | {', '.join(str(r['epochs']) for r in rows)} |")
    print(f"| `execute('x = 1')` round trip while training, ms | {med['lat']:.0f} (max {max(r['lat_max'] for r in rows):.0f}) | "
          f"{series['lat']} |")
    print(f"| frames per second of the loop alone (no browser, no comm; this process) | "
          f"{statistics.median(a[0] for a in alone):.1f} | {', '.join(f'{a[0]:.1f}' for a in alone)} |")
    print(f"| lateness of a 50 ms timer on that loop meanwhile, ms | {statistics.median(a[1] for a in alone):.0f} | "
          f"{', '.join(f'{a[1]:.0f}' for a in alone)} |")
    print(f"| the same round trip, kernel idle, ms | {statistics.median(idle):.0f} | – |")
    print(f"| bytes per frame (binary) | {med['frame_bytes']:.0f} | – |")
    print(f"| recorded frames / bytes after a round | {med['recorded']:.0f} / {med['rec_bytes'] / 1e6:.1f} MB | – |")
    print(f"| long run ({long:.0f} s, {longrun[0]} epochs): frames pushed, kept, bytes, stride | "
          f"{longrun[4]}, {longrun[1]}, {int(longrun[2]) / 1e6:.1f} MB, {longrun[3]} | – |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--long", type=float, default=40.0)
    parser.add_argument("--quick", action="store_true", help="one short round (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.long = 1, 3.0, 5.0
    run(args.rounds, args.seconds, args.long)


if __name__ == "__main__":
    main()
