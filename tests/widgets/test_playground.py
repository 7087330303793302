"""Playground without a browser: traits and wire state, frame contents and sizes, the recording's bound and
policy, rewind to the identical first frame, live training on an event loop, δ projections, errors."""

from __future__ import annotations

import asyncio
import threading
import zlib
from typing import Any

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers
from torch import nn

import nbexplain as nx
from nbexplain.core.playground import (
    FEATURES,
    decision_surface,
    neuron_maps,
    plane_grid,
    projected_surface,
    relevance_field,
)
from nbexplain.widgets import Playground
from nbexplain.widgets.delta_explorer import slider_deltas
from nbexplain.widgets.playground_frames import RECORDING_BUDGET, Frame, Recording, quantize_units
from tests.models.state import untouched

LIMIT = 50_000


def _wire_bytes(widget: Playground, name: str) -> int:
    state = widget.get_state(name)
    _, _, buffers = _remove_buffers(state)
    return sum(memoryview(b).nbytes for b in buffers)


def test_traits_layout_and_first_frame() -> None:
    pg = Playground("moons", n=300, seed=3)
    cfg = pg.config
    assert [layer["name"] for layer in cfg["layers"]] == ["act1", "act2", "out"]
    assert [layer["units"] for layer in cfg["layers"]] == [8, 8, 2]
    assert cfg["inputs"] == ["x", "y"] and cfg["edges"] == [[8, 2], [8, 8], [2, 8]]
    assert cfg["classes"] == 2 and cfg["n_train"] == len(pg.data.y_train) and cfg["delta_layers"] == ["act1", "act2"]
    assert pg.static["points"].shape == (300, 2) and pg.static["labels"].dtype == np.uint8
    assert np.array_equal(pg.static["labels"], torch.cat([pg.data.y_train, pg.data.y_test]).numpy())
    assert pg.static["inputs"].shape == (2, cfg["neuron_resolution"], cfg["neuron_resolution"])
    assert pg.state == "idle" and pg.trainer.epoch == 0 and len(pg.frames) == 1
    assert pg.recording["count"] == 1 and pg.delta_layer == "act2"
    assert repr(pg) == "Playground(data=moons, layers=['act1', 'act2', 'out'], epoch=0, state=idle)"
    f = pg.frames[0]
    assert f.surface.shape == (2, 64, 64) and f.neurons.shape == (18, 32, 32) and f.weights.shape == (96,)
    assert f.predicted.shape == (300,) and f.relevance.shape == (3, 32, 32) and f.meta[6] == 0


def test_frame_is_what_the_core_computes() -> None:
    pg = Playground("xor", hidden=(5,), n=200, seed=1)
    pg.train(2)
    f, m, ext = pg.frames[-1], pg.model, pg.data.extent
    p = decision_surface(m, ext, 64).numpy()
    assert np.abs(f.surface / 255.0 - p).max() <= 0.5 / 255 + 1e-6
    maps = neuron_maps(m, ext, f.neurons.shape[1], layers=["act1", "out"])
    real = torch.cat([maps["act1"], maps["out"]]).numpy()
    decoded = f.ranges[:, :1, None] + f.neurons / 255.0 * (f.ranges[:, 1:, None] - f.ranges[:, :1, None])
    span = (f.ranges[:, 1] - f.ranges[:, 0])[:, None, None]
    assert np.all(np.abs(decoded - real) <= span / 510 + 1e-5)
    rel = relevance_field(m, ext, 32, method="lrp")
    assert np.array_equal(f.relevance[:2], rel.relevance.numpy()) and np.array_equal(f.relevance[2], rel.output.numpy())
    assert np.array_equal(f.weights[:10], m.fc1.weight.detach().reshape(-1).numpy())
    with torch.no_grad():
        pred = m(torch.cat([pg.data.x_train, pg.data.x_test])).argmax(1).numpy()
    assert np.array_equal(f.predicted, pred)
    last = pg.trainer.history[-1]
    assert f.meta.tolist() == pytest.approx([2, pg.trainer.steps, last.train_loss, last.test_loss,
                                             last.train_accuracy, last.test_accuracy, 1])
    pg.relevance_method = "gradient_x_input"  # the shown frame is recomputed with the other method
    gxi = relevance_field(m, ext, 32, method="gradient_x_input")
    assert np.array_equal(pg.frame["relevance"][:2], gxi.relevance.numpy())


@pytest.mark.parametrize("kwargs", [{}, {"hidden": (8, 8, 8, 8, 8, 8), "features": FEATURES},
                                    {"data": "spiral", "classes": 3, "n": 1000, "hidden": (16, 16)},
                                    {"data": "blobs", "classes": 6, "n": 1000, "features": FEATURES}])
def test_frames_stay_under_50_kB_on_the_wire(kwargs: dict) -> None:
    data = kwargs.pop("data", "moons")
    pg = Playground(data, **kwargs)
    assert pg.frames[0].nbytes < LIMIT
    assert _wire_bytes(pg, "frame") == pg.frames[0].nbytes  # every array travels as a binary buffer
    state, _, _ = _remove_buffers(pg.get_state("frame"))
    assert set(state["frame"]) >= {"surface", "neurons", "ranges", "weights", "predicted", "relevance", "meta"}


def _frame(i: int, size: int = 1000) -> Frame:
    z = np.zeros
    return Frame(surface=np.full((size,), i % 256, np.uint8), neurons=z((0,), np.uint8), ranges=z((0, 2), np.float32),
                 weights=z((0,), np.float32), predicted=z((0,), np.uint8), relevance=z((0,), np.float32),
                 meta=np.array([i, i, 0, 0, 0, 0, 0], np.float32))


def test_recording_keeps_first_and_latest_and_stays_under_budget() -> None:
    rec = Recording(budget=10 * 1028)  # room for ten frames of 1028 bytes
    for i in range(200):
        rec.add(_frame(i))
        assert rec.nbytes <= rec.budget
        assert rec.frames[0].step == 0 and rec.frames[-1].step == i
    steps = [f.step for f in rec.frames]
    assert steps == sorted(steps) and len(steps) >= 5
    gaps = np.diff(steps[:-1])
    assert len(set(gaps.tolist())) == 1  # evenly thinned history before the latest frame
    assert rec.stride == gaps[0]
    stacked = rec.stacked()
    assert stacked["count"] == len(rec.frames) and stacked["surface"].shape == (len(rec.frames), 1000)
    assert RECORDING_BUDGET == 20_000_000


def test_widget_recording_is_bounded() -> None:
    pg = Playground("moons", hidden=(4,), n=100)
    pg._recording.budget = 5 * pg.frames[0].nbytes
    pg.train(30)
    assert pg.recording_bytes <= 5 * pg.frames[0].nbytes
    assert pg.frames[0].epoch == 0 and pg.frames[-1].epoch == 30
    assert pg.recording["count"] == len(pg.frames)
    assert _wire_bytes(pg, "recording") == pg.recording_bytes


def test_rewind_gives_the_identical_first_frame_and_run() -> None:
    pg = Playground("circles", n=200, seed=5)
    first = pg.frames[0]
    pg.train(3)
    run = pg.frames
    assert not run[-1].same_as(first)
    pg.rewind()
    assert pg.state == "idle" and pg.trainer.epoch == 0 and len(pg.frames) == 1
    assert pg.frames[0].same_as(first)
    assert np.array_equal(pg.frame["surface"], first.surface)
    pg.train(3)
    assert all(a.same_as(b) for a, b in zip(pg.frames, run, strict=True))


def test_step_epoch_limit_and_history() -> None:
    pg = Playground("xor", hidden=(4,), n=100, epoch_limit=3)
    per_epoch = -(-len(pg.data.y_train) // 10)
    pg.step()
    assert pg.trainer.epoch == 1 and pg.trainer.steps == per_epoch and pg.state == "paused"
    pg.step(batches=2)
    assert pg.trainer.epoch == 1 and pg.trainer.steps == per_epoch + 2
    pg.train(10)
    assert pg.trainer.epoch == 3 and pg.state == "done"
    h = pg.history
    assert h["metrics"].shape == (3, 5) and h["metrics"][:, 0].tolist() == [1, 2, 3]
    assert h["saturation"].shape == (3, 1) and h["layers"] == ["act1"]
    assert h["similarity"].shape == (4, 2) and np.allclose(h["similarity"][-1], 1.0)
    with pytest.raises(RuntimeError, match="epoch_limit"):
        pg.play()


def test_projection_surfaces_and_slider_positions() -> None:
    pg = Playground("moons", hidden=(6, 5), n=200)
    pg.train(2)
    proj = pg.projection
    assert proj["layer"] == "act2" and proj["width"] == 5
    assert proj["surfaces"].shape == (2, 5, 2, 64, 64) and proj["surfaces"].dtype == np.uint8
    stats = pg.trainer.layer_statistics()["act2"]
    for k in (1, 3, 5):
        p = projected_surface(pg.model, "act2", stats, k=k, extent=pg.data.extent, resolution=64).numpy()
        assert np.abs(proj["surfaces"][0, k - 1] / 255.0 - p).max() <= 0.5 / 255 + 1e-6
    vals = stats.eigenvalues
    grid = slider_deltas()  # the float64 slider positions (the view gets them as float32)
    assert np.array_equal(proj["deltas"], grid.astype(np.float32))
    assert proj["ks"].tolist() == [max(nx.intrinsic_dimension(vals, float(d)), 1) for d in grid]
    assert proj["ks"][0] <= proj["ks"][-1] == 5
    pg.delta_layer = "act1"
    assert pg.projection["layer"] == "act1" and pg.projection["width"] == 6
    with pytest.raises(Exception, match="delta_layer"):
        pg.delta_layer = "out"
    assert pg.delta_layer == "act1"


def in_fresh_thread(fn: Any) -> Any:
    """``fn()`` on a thread of its own, its exception re-raised here: the asyncio tests need a thread with no
    event loop running (in one pytest process the browser tests' Playwright keeps one on the main thread)."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the event-loop test did not finish in 120 s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_live_training_on_an_event_loop_pauses_at_once() -> None:
    pg = Playground("moons", n=200)
    frames: list[int] = []
    pg.observe(lambda c: frames.append(int(c["new"]["step"])), "frame")

    async def run() -> tuple[int, int]:
        pg.play()
        assert pg.state == "training"
        while pg.trainer.epoch < 2:
            await asyncio.sleep(0.01)
        pg.pause()
        seen, steps = len(frames), pg.trainer.steps
        await asyncio.sleep(0.1)
        return seen, steps

    seen, steps = in_fresh_thread(lambda: asyncio.run(run()))
    assert pg.state == "paused" and len(frames) == seen and pg.trainer.steps == steps  # nothing ran after pause
    assert len(frames) >= 3 and pg.recording["count"] == len(pg.frames)
    assert pg.frames[-1].step == steps and pg.projection["width"] == 8
    assert torch.get_num_threads() >= 1


def test_pause_from_another_thread_waits_for_the_slice_in_progress() -> None:
    # JupyterLab delivers a view's messages on a kernel subshell thread while training runs on the main loop
    pg = Playground("moons", n=300)
    seen: list[tuple[int, int]] = []

    async def run() -> None:
        pg.play()
        while pg.trainer.epoch < 1:
            await asyncio.sleep(0)

        def other() -> None:
            pg.pause()
            seen.append((pg.trainer.steps, pg.frames[-1].step))

        thread = threading.Thread(target=other)
        thread.start()
        while thread.is_alive():  # keep the training task running while the other thread pauses
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)

    in_fresh_thread(lambda: asyncio.run(run()))
    (steps, last), = seen
    assert pg.state == "paused" and last == steps == pg.trainer.steps  # the last frame is the final state
    assert pg.frame["step"] == steps


def test_closing_stops_training() -> None:
    pg = Playground("moons", hidden=(3,), n=100)

    async def run() -> int:
        pg.play()
        await asyncio.sleep(0.05)
        pg.close()
        steps = pg.trainer.steps
        await asyncio.sleep(0.05)
        return steps

    steps = in_fresh_thread(lambda: asyncio.run(run()))
    assert pg.trainer.steps == steps and pg._task is None


def test_play_without_a_running_loop_points_to_train() -> None:
    pg = Playground("moons", hidden=(3,), n=100)
    with pytest.raises(RuntimeError, match=r"\.train\(epochs\)"):
        in_fresh_thread(pg.play)  # a thread with no running event loop, as in a plain script
    assert pg.state == "idle"


def test_own_data_and_own_model() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(150, 2, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # three classes
    pg = Playground((x, y), hidden=(5,))
    assert pg.dataset == "custom" and pg.config["classes"] == 3
    net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 3))
    net.train(False)
    mine = Playground((x, y), model=net)
    assert mine.model is not net and mine.config["custom_model"] and mine.config["inputs"] == ["x", "y"]
    assert [layer["name"] for layer in mine.config["layers"]] == ["1", "2"] and mine.config["edges"] == [[6, 2], [3, 6]]
    with untouched(net):  # the user's module is never trained: the playground trains a copy (.model)
        before = net[0].weight.detach().clone()
        mine.train(1)
        assert not torch.equal(before, mine.model[0].weight)
        assert isinstance(mine.model, nn.Sequential) and mine.model(x[:3]).shape == (3, 3)
        mine.learning_rate = 0.1  # a new run starts again from the weights the model came with
        assert mine.trainer.epoch == 0 and torch.equal(before, mine.model[0].weight) and mine.model is not net
    assert not net.training


def test_settings_start_a_new_run_and_bad_ones_keep_the_old() -> None:
    pg = Playground("moons", n=200)
    pg.train(1)
    pg.hidden = [3]
    assert [layer["units"] for layer in pg.config["layers"]] == [3, 2] and pg.trainer.epoch == 0
    with pytest.raises(ValueError, match="hidden"):
        pg.hidden = [100]
    assert pg.hidden == [3] and [layer["units"] for layer in pg.config["layers"]] == [3, 2]
    pg.dataset = "spiral"
    assert pg.config["dataset"] == "spiral"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"data": 3}, "`data` must be"), ({"data": "moons", "resolution": 3}, "`resolution`"),
    ({"data": "moons", "model": "net"}, "`model` must be"), ({"data": "moons", "delta": 1.5}, "`delta`"),
    ({"data": "moons", "hidden": 8}, "`hidden`"), ({"data": "moons", "colour": 1}, "colour"),
    ({"data": "pizza"}, "pizza|moons"),
])
def test_bad_arguments_name_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        Playground(**kwargs)


def test_bad_calls() -> None:
    pg = Playground("moons", hidden=(3,), n=100)
    with pytest.raises(ValueError, match="`epochs`"):
        pg.train(0)
    with pytest.raises(ValueError, match="`batches`"):
        pg.step(batches=0)


def test_quantize_units_round_trip_and_png() -> None:
    maps = torch.randn(4, 8, 8)
    maps[2] = 0.5  # a constant unit is read back exactly
    q, rng = quantize_units(maps)
    back = rng[:, :1, None] + q / 255.0 * (rng[:, 1:, None] - rng[:, :1, None])
    assert np.abs(back - maps.numpy()).max() <= (maps.max() - maps.min()).item() / 510 + 1e-6
    assert np.all(back[2] == 0.5)
    with pytest.raises(ValueError, match="NaN"):
        quantize_units(torch.full((1, 2, 2), float("nan")))
    png = Playground("moons", hidden=(3,), n=100).to_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (256, 256)
    idat = png[png.index(b"IDAT") + 4: png.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)


def test_noise_and_test_split_are_settings_of_the_run() -> None:
    """The issue's data controls: noise and the train/test split start a new run on the data they describe
    (the user's own (x, y) split again at the new fraction)."""
    pg = Playground("moons", n=200, seed=1)
    assert len(pg.data.y_test) == 60 and pg.test_fraction == 0.3
    pg.test_fraction = 0.5
    assert len(pg.data.y_test) == 100 and len(pg.data.y_train) == 100 and pg.trainer.epoch == 0
    quiet = pg.data.x_train.clone()
    pg.noise = 0.3
    assert pg.data.x_train.shape == quiet.shape and not torch.equal(pg.data.x_train, quiet)
    with pytest.raises(traitlets.TraitError):
        pg.test_fraction = 0.0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 2, generator=g)
    mine = Playground((x, (x[:, 0] > 0).long()), hidden=(3,), test_fraction=0.25)
    assert len(mine.data.y_test) == 30
    mine.test_fraction = 0.5
    assert len(mine.data.y_test) == 60 and mine.dataset == "custom"


def test_layer_similarity_is_computed_once_per_new_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """step() ends an epoch (the history is built) and settles (the history is sent again): the CKA strip is
    computed once, not twice; a call that adds no snapshot computes none; a rewind computes it again."""
    import nbexplain.core.playground.trainer as trainer_mod

    calls = []
    real = trainer_mod.layer_similarity
    monkeypatch.setattr(trainer_mod, "layer_similarity", lambda snaps: calls.append(len(snaps)) or real(snaps))
    pg = Playground("xor", hidden=(4,), n=120, seed=2)
    calls.clear()
    pg.step()
    assert calls == [2]  # one epoch: the start and epoch 1 compared, once
    pg.step(batches=1)  # no epoch ended: no new snapshot, no new CKA
    assert calls == [2]
    pg.train(2)  # one per epoch, none more when it settles
    assert calls == [2, 3, 4]
    assert pg.history["similarity"].shape == (4, len(pg.config["layers"]))
    assert np.array_equal(pg.history["similarity"], real(pg.trainer.snapshots).float().numpy())
    pg.rewind()
    assert calls == [2, 3, 4, 1] and pg.history["similarity"].shape[0] == 1


def _count_calls(monkeypatch: pytest.MonkeyPatch, targets: list[tuple[Any, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for module, name in targets:
        real = getattr(module, name)
        key = f"{module.__name__}.{name}"
        counts[key] = 0

        def counted(*args: Any, _real: Any = real, _key: str = key, **kwargs: Any) -> Any:
            counts[_key] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    return counts


def test_frames_reuse_the_runs_grids_and_checked_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame builds no plane grid and checks no model (the run's PlaneSampler holds both); a new run (new
    data, network or resolution) gets a new sampler, and its frames are what the core computes afresh."""
    import nbexplain.core.playground.plane as plane_mod
    import nbexplain.core.playground.relevance as relevance_mod
    import nbexplain.core.playground.sampler as sampler_mod

    pg = Playground("moons", hidden=(6,), n=150, seed=4)
    counts = _count_calls(monkeypatch, [(plane_mod, "plane_grid"), (sampler_mod, "plane_grid"),
                                        (relevance_mod, "plane_grid"), (plane_mod, "check_model"),
                                        (relevance_mod, "check_model"), (sampler_mod, "check_model")])
    pg.step(batches=3)
    pg._push_frame()
    assert sum(counts.values()) == 0, counts
    first = pg._plane
    pg.dataset = "circles"  # a new run: new data (a new extent), so a new sampler with its own grids
    assert pg._plane is not first and pg._plane.extent == pg.data.extent and pg._plane.model is pg.model
    built = sum(counts.values())
    assert built > 0  # the new run built its grids and checked its model …
    pg.step(batches=2)
    pg._push_frame()
    assert sum(counts.values()) == built  # … once
    monkeypatch.undo()
    f = pg.frames[-1]
    p = decision_surface(pg.model, pg.data.extent, 64).numpy()
    assert np.abs(f.surface / 255.0 - p).max() <= 0.5 / 255 + 1e-6
    rel = relevance_field(pg.model, pg.data.extent, 32)
    assert np.array_equal(f.relevance[:2], rel.relevance.numpy())
    hidden = pg._plane
    pg.hidden = [3, 3]  # a new network: a new sampler bound to it
    assert pg._plane is not hidden and pg._plane.model is pg.model
    small = Playground("moons", hidden=(6,), n=150, seed=4, resolution=16)
    assert small._plane.grid(16).shape == (256, 2) and small.frames[0].surface.shape == (2, 16, 16)


class _LogitsAndHidden(nn.Module):
    """A user's model that returns (logits, hidden) — as many research models do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 6)
        self.act = nn.Tanh()
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.fc1(x))
        return self.head(h), h


def test_a_model_returning_a_tuple_needs_output() -> None:
    torch.manual_seed(0)
    net = _LogitsAndHidden()
    with untouched(net), pytest.raises(ValueError, match=r"returned tuple of 2: \[0\] Tensor\(2, 2\).*`output=`"):
        Playground("moons", model=net, n=100)
    with pytest.raises(ValueError, match="`output` selects the logits of your own `model`"):
        Playground("moons", output=0, n=100)
    with pytest.raises(TypeError, match="`output` must be None, an int index"):
        Playground("moons", model=net, output=1.5, n=100)
    with pytest.raises(ValueError, match=r"`output`=2 is out of range"):
        Playground("moons", model=net, output=2, n=100)


@pytest.mark.parametrize("output", [0, lambda out: out[0]])
def test_output_selects_the_logits_of_a_tuple_model(output: Any) -> None:
    torch.manual_seed(0)
    net = _LogitsAndHidden()
    with untouched(net):
        pg = Playground("moons", model=net, output=output, n=120, seed=1)
        assert [layer["name"] for layer in pg.config["layers"]] == ["model.act", "model.head"]
        assert pg.config["delta_layers"] == ["model.act"] and pg.config["edges"] == [[6, 2], [2, 6]]
        before = pg.model.fc1.weight.detach().clone()
        pg.train(2)
        assert isinstance(pg.model, _LogitsAndHidden)  # the export is the user's kind of module, trained
        assert not torch.equal(before, pg.model.fc1.weight)
        f = pg.frames[-1]
        logits, _ = pg.model(plane_grid(pg.data.extent, 64))
        p = torch.softmax(logits.detach(), 1).T.reshape(2, 64, 64).numpy()
        assert np.abs(f.surface / 255.0 - p).max() <= 0.5 / 255 + 1e-6
        with torch.no_grad():
            pred = pg.model(torch.cat([pg.data.x_train, pg.data.x_test]))[0].argmax(1).numpy()
        assert np.array_equal(f.predicted, pred)
        pg.delta_layer = "model.act"
        assert pg.projection["width"] == 6 and pg.projection["surfaces"].shape[:2] == (2, 6)
        assert pg.history["similarity"].shape == (3, 2)
