"""``Playground``: a small network trained live on 2-D toy data, with its decision surface, neurons, relevance,
saturation and similarity drawn as it learns (issue 15). Every map comes from ``nbexplain.core.playground``;
this module builds a run (data, network, trainer, the plane's sampler), encodes its frames and keeps the
recording; the training loop and the commands (play, pause, step, train, rewind) are in ``playground_run``."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from ..core._base.model_io import OutputArg, check_output_arg
from ..core.feature_space.delta_projection import SUBSPACES
from ..core.feature_space.tracking import intrinsic_dimension
from ..core.playground import (
    RELEVANCE_METHODS,
    FeatureMap,
    PlaneSampler,
    PlaygroundTrainer,
    SelectedOutput,
    ToyDataset,
    as_toy_dataset,
    hidden_layers,
    playground_network,
    projected_surfaces,
    toy_dataset,
)
from .base import NbxWidget
from .delta_explorer import slider_deltas
from .playground_frames import (
    RECORDING_BUDGET,
    Frame,
    Recording,
    meta_row,
    quantize_probabilities,
    quantize_units,
    wire,
)
from .playground_run import PlaygroundRun, single_thread

__all__ = ["Playground"]

_STATES = ("idle", "training", "paused", "done")
#: Bytes the neuron maps of one frame may take (their resolution r is chosen to fit).
_NEURON_BUDGET = 20_000
#: A frame's binary payload stays under this (the issue's 50 kB) whenever the neuron maps at r = 8 leave room.
_FRAME_BUDGET = 49_000
#: Resolution of the relevance field in a frame (float32, 3 channels: 12 kB at 32).
_RELEVANCE_RES = 32
#: While training, the δ projections are recomputed at an epoch's end at most this often (seconds).
_PROJECTION_EVERY_S = 2.0
_REBUILD = ("dataset", "noise", "test_fraction", "features", "hidden", "activation", "learning_rate", "l2", "batch_size")


def _dict_trait() -> traitlets.Dict:
    return traitlets.Dict().tag(sync=True, to_json=wire)


class Playground(PlaygroundRun, NbxWidget):
    """A TensorFlow-Playground-like trainer in the notebook, with explanations none of the originals has.

    A small network learns a 2-D toy problem live, in the kernel, while the notebook stays usable (training
    runs as an asyncio task on the kernel's event loop and yields between frames). The view shows the decision
    surface with the points (misclassified ones marked), every neuron's activation map in the network diagram
    with edges as wide as their weights, loss and accuracy, each hidden layer's saturation k(δ)/width, the CKA
    similarity of each layer to its latest state, the relevance of the two inputs (LRP or gradient × input) at
    the point under the pointer and as a field over the plane, and a δ slider that projects one layer onto its
    top-k(δ) eigen-directions (or a random k-dim subspace) and redraws the surface.

    Parameters
    ----------
    data
        A dataset name (``"moons"``, ``"circles"``, ``"xor"``, ``"spiral"``, ``"blobs"``), your own ``(x, y)``
        pair (``x`` of shape ``(N, 2)``, ``y`` integer labels ``0 … C−1``) or an ``nx.ToyDataset``.
    model
        Your own ``nn.Module`` taking ``(N, 2)`` points to ``(N, C)`` logits; ``features``, ``hidden`` and
        ``activation`` are then ignored (the view hides those controls). The playground trains a copy of it
        (``.model``); your module is left exactly as it was, and every new run starts again from its weights.
    output
        For your own ``model`` that returns a tuple, a dict or an output object (e.g. ``(logits, hidden)``): which
        of its outputs are the class logits — an index (``output=0``), a key or attribute name
        (``output="logits"``) or a function of the model's output, as ``output=`` of ``nx.lrp`` and the other
        explainers. ``None`` (default): the model returns the logits tensor itself.
    features, hidden, activation
        The playground network (``nx.playground_network``): input features, hidden widths, activation.
    learning_rate, l2, batch_size
        SGD settings (L2 as weight decay), as in TensorFlow Playground.
    noise, test_fraction, n, classes
        The generated dataset (``classes`` for spiral arms and blobs).
    seed
        Seeds the data, the initial weights and the batch order: the same seed gives the same run.
    epoch_limit
        Training stops (state ``"done"``) after this many epochs; 0 = no limit.
    resolution
        Pixels per side of the decision surface (the neuron maps use the largest size ≤ 32 that fits a frame).
    delta
        δ of the saturation measures and the slider's start.
    scale
        Presentation scale of text (1.5 for a projector).

    Attributes
    ----------
    model : nn.Module
        The network being trained (export it as any module).
    data : ToyDataset
        The points as tensors (``x_train``, ``y_train``, ``x_test``, ``y_test``).
    trainer : PlaygroundTrainer
        The optimiser state, ``epoch``, ``steps``, ``history`` and ``saturation``.
    frames : list[Frame]
        The recorded frames (binary maps and metrics; see ``playground_frames``). Recording policy: every
        frame is kept until the frames exceed 20 MB; then every other frame is dropped (the first and the
        latest always stay) and only every second frame is recorded from then on, halving again at each
        further overflow. The recording goes to the view when training pauses or stops, so its timeline
        replays the run without the kernel, in an exported page too.

    Changing the dataset, network or optimiser settings (in Python or in the view) starts a new run from the
    seed's initial weights. ``.play()`` needs a running event loop (a Jupyter kernel); in a script use
    ``.train(epochs)``.

    Examples
    --------
    >>> from nbexplain.widgets import Playground
    >>> pg = Playground("xor", hidden=(4,), seed=1, n=200)
    >>> pg.train(2)
    >>> pg.trainer.epoch, pg.state
    (2, 'paused')
    >>> pg.frames[0].surface.shape
    (2, 64, 64)
    """

    _bundle = "playground"

    state = traitlets.Enum(_STATES, default_value="idle").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    dataset = traitlets.Unicode("moons").tag(sync=True)
    noise = traitlets.Float(0.1, min=0.0).tag(sync=True)
    #: The share of the points held out as the test set (drawn hollow; the test loss and accuracy are on them).
    test_fraction = traitlets.Float(0.3, min=0.05, max=0.9).tag(sync=True)
    features = traitlets.List(traitlets.Unicode(), default_value=["x", "y"]).tag(sync=True)
    hidden = traitlets.List(traitlets.Int(), default_value=[8, 8]).tag(sync=True)
    activation = traitlets.Unicode("tanh").tag(sync=True)
    learning_rate = traitlets.Float(0.03).tag(sync=True)
    l2 = traitlets.Float(0.0).tag(sync=True)
    batch_size = traitlets.Int(10).tag(sync=True)
    epoch_limit = traitlets.Int(0, min=0).tag(sync=True)
    relevance_method = traitlets.Enum(RELEVANCE_METHODS, default_value="lrp").tag(sync=True)
    delta = traitlets.Float(0.99).tag(sync=True)
    delta_layer = traitlets.Unicode("").tag(sync=True)
    basis = traitlets.Enum(SUBSPACES, default_value="eigen").tag(sync=True)
    #: Layout and names: extent, classes, layers [{name, units}], inputs, edge shapes, resolutions, …
    config = traitlets.Dict().tag(sync=True)
    #: Points (N, 2) float32 (train then test), labels uint8, the input column's maps.
    static = _dict_trait()
    #: The live frame (see ``playground_frames``).
    frame = _dict_trait()
    #: All recorded frames stacked (sent when training pauses or stops).
    recording = _dict_trait()
    #: Per epoch: metrics (E, 5), saturation (E, L), similarity (E, L).
    history = _dict_trait()
    #: The δ slider's precomputed surfaces for `delta_layer`.
    projection = _dict_trait()

    def __init__(
        self,
        data: Any = "moons",
        *,
        model: nn.Module | None = None,
        output: OutputArg = None,
        features: Sequence[str] = ("x", "y"),
        hidden: Sequence[int] = (8, 8),
        activation: str = "tanh",
        learning_rate: float = 0.03,
        l2: float = 0.0,
        batch_size: int = 10,
        noise: float = 0.1,
        test_fraction: float = 0.3,
        n: int = 500,
        classes: int = 2,
        seed: int = 0,
        epoch_limit: int = 0,
        resolution: int = 64,
        delta: float = 0.99,
        scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be an nn.Module taking (N, 2) points to class logits, or None for the "
                            f"playground network; got {type(model).__name__}.")
        check_output_arg(output)
        if output is not None and model is None:
            raise ValueError("`output` selects the logits of your own `model` (one that returns a tuple or dict); "
                             "the playground network returns logits itself: leave `output` out.")
        if not isinstance(resolution, int) or not 8 <= resolution <= 256:
            raise ValueError(f"`resolution` must be an integer in 8…256 (pixels per side), got {resolution!r}.")
        if not (isinstance(delta, (int, float)) and 0 < delta <= 1):
            raise ValueError(f"`delta` must be in (0, 1] (a fraction of variance), got {delta!r}.")
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise TypeError(f"`hidden` must be a sequence of widths such as (8, 8), got {hidden!r}.")
        if isinstance(features, str) or not isinstance(features, Sequence):
            raise TypeError(f"`features` must be a sequence of feature names such as ('x', 'y'), got {features!r}.")
        super().__init__(scale=scale, **kwargs)
        self._ready = False
        self._user_model = model  # never trained itself: every run trains a copy (the user's module stays as given)
        self._output = output
        self._given_data: ToyDataset | None = None
        self._given_xy: tuple[Any, Any] | None = None
        if isinstance(data, ToyDataset):
            self._given_data = data
            name = data.name
        elif isinstance(data, str):
            name = data
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            self._given_xy = (data[0], data[1])
            name = "custom"
        else:
            raise TypeError(f"`data` must be a dataset name ('moons', 'circles', 'xor', 'spiral', 'blobs'), an "
                            f"(x, y) pair or an nx.ToyDataset; got {type(data).__name__}.")
        self._n, self._classes = n, classes
        self._seed, self._resolution = seed, resolution
        self._recording = Recording(RECORDING_BUDGET)
        self._task: asyncio.Task | None = None
        self._last_projection = 0.0
        self._last_similarity = 0.0
        self._reverting = False
        self._lock = threading.RLock()  # one slice of SGD, or one command, at a time
        with self.hold_sync():
            self.dataset = name
            self.noise, self.features, self.hidden = float(noise), list(features), [int(h) for h in hidden]
            self.test_fraction = float(test_fraction)
            self.activation, self.learning_rate, self.l2 = activation, float(learning_rate), float(l2)
            self.batch_size, self.epoch_limit, self.delta = int(batch_size), int(epoch_limit), float(delta)
        self._build()
        self._ready = True
        self.on_msg(self._handle_message)

    # ---------------------------------------------------------------- building a run
    def _make_data(self) -> ToyDataset:
        if self._given_xy is not None and self.dataset == "custom":  # the user's (x, y), split at the current fraction
            return as_toy_dataset(*self._given_xy, test_fraction=self.test_fraction, seed=self._seed)
        if self._given_data is not None and self.dataset == self._given_data.name:
            return self._given_data  # a ToyDataset is used as split
        return toy_dataset(self.dataset, self._n, noise=self.noise, test_fraction=self.test_fraction,
                           classes=self._classes, seed=self._seed)

    def _build(self) -> None:
        """A new run: data, network (from the seed), trainer, layout, the first frame."""
        data = self._make_data()
        if self._user_model is not None:  # a new run trains a fresh copy of the module as the user gave it
            model = copy.deepcopy(self._user_model)
        else:
            model = playground_network(tuple(self.features), tuple(self.hidden), data.classes,
                                       activation=self.activation, seed=self._seed)
        # what core runs: the model, or the model with `output=` choosing its logits (training it trains `model`)
        net = model if self._output is None else SelectedOutput(model, self._output)
        trainer = PlaygroundTrainer(net, data, learning_rate=self.learning_rate, l2=self.l2,
                                    batch_size=self.batch_size, seed=self._seed, delta=self.delta)
        self.data, self.model, self.trainer, self._net = data, model, trainer, net
        self._layers = hidden_layers(net)
        self._layout()
        self._recording.clear()
        self._similarity_cache = np.zeros((0, len(self._layers)), np.float32)
        self._similarity_of: dict[str, torch.Tensor] | None = None  # the snapshot the cache was computed up to
        with self.hold_sync():
            self.state = "idle"
            self.error = ""
            if self.delta_layer not in list(self.trainer.layers):
                self.delta_layer = self._default_delta_layer()
            self.history = self._history()
            self.recording = {"count": 0}
            self._push_frame(record=True)
            self.projection = {}
        self._sync_recording()

    def _default_delta_layer(self) -> str:
        inner = list(self.trainer.layers)
        return inner[-1] if inner else ""

    def _layout(self) -> None:
        """Sizes and names the view needs, the static part (points, labels, input maps), and the run's
        :class:`PlaneSampler` (the model checked and the plane's grids built once for every frame of the run)."""
        model, data = self._net, self.data
        self._plane = PlaneSampler(model, data.extent)
        units = {k: int(v.shape[0]) for k, v in self._plane.neuron_maps(2, self._layers).items()}
        total = sum(units.values())
        # the neuron maps take what a frame has left under _FRAME_BUDGET (at most _NEURON_BUDGET), at r ≥ 8
        x, y = data.x.float(), data.y
        n_points = len(y)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        weights = sum(m.weight.numel() for m in linears)
        rest = (data.classes * self._resolution**2 + 3 * 4 * _RELEVANCE_RES**2 + n_points + 4 * weights
                + 8 * total + 64)
        budget = max(0, min(_NEURON_BUDGET, _FRAME_BUDGET - rest))
        r = int(max(8, min(32, self._resolution, int((budget / max(total, 1)) ** 0.5))))
        self._r = r
        feature_map = next((m for m in model.children() if isinstance(m, FeatureMap)), None)
        grid = self._plane.grid(r)
        if feature_map is not None:
            names = list(feature_map.features)
            with torch.no_grad():
                inputs = feature_map(grid)
        else:
            names, inputs = ["x", "y"], grid
        inputs = inputs.T.reshape(len(names), r, r)
        in_q, in_ranges = quantize_units(inputs)
        columns = [len(names)] + [units[name] for name in self._layers]
        self._linears = linears
        shapes = [list(m.weight.shape) for m in self._linears]
        chained = len(shapes) == len(columns) - 1 and all(
            s == [columns[i + 1], columns[i]] for i, s in enumerate(shapes))
        if not chained:
            self._linears = []
        self._points = x
        self.config = {
            "dataset": data.name, "classes": int(data.classes), "extent": [float(v) for v in data.extent],
            "inputs": names, "layers": [{"name": n, "units": units[n]} for n in self._layers],
            "edges": shapes if chained else [], "resolution": self._resolution, "neuron_resolution": r,
            "relevance_resolution": _RELEVANCE_RES, "n_train": int(data.x_train.shape[0]),
            "custom_model": self._user_model is not None, "seed": self._seed,
            "delta_layers": list(self.trainer.layers),
        }
        self.static = {"points": x.numpy().astype(np.float32), "labels": y.numpy().astype(np.uint8),
                       "inputs": in_q, "input_ranges": in_ranges}

    # ---------------------------------------------------------------- frames
    def _make_frame(self) -> Frame:
        plane, R = self._plane, self._resolution
        surface = plane.surface(R)
        maps = plane.neuron_maps(self._r, self._layers)
        neurons, ranges = quantize_units(torch.cat([maps[n] for n in self._layers]))  # float32 CPU
        if self._linears:
            weights = torch.cat([m.weight.detach().float().cpu().reshape(-1) for m in self._linears]).numpy()
        else:
            weights = np.zeros((0,), np.float32)
        predicted = plane.predict(self._points).cpu().numpy().astype(np.uint8)
        rel = plane.relevance(_RELEVANCE_RES, self.relevance_method)
        relevance = torch.cat([rel.relevance, rel.output[None]]).numpy()  # float32 CPU images
        t = self.trainer
        return Frame(surface=quantize_probabilities(surface), neurons=neurons, ranges=ranges,
                     weights=weights.astype(np.float32), predicted=predicted,
                     relevance=np.ascontiguousarray(relevance, dtype=np.float32),
                     meta=meta_row(t.epoch, t.steps, t.history[-1] if t.history else None))

    def _push_frame(self, record: bool = True) -> Frame:
        frame = self._make_frame()
        if record:
            self._recording.add(frame)
        self.frame = {**frame.arrays(), "epoch": frame.epoch, "step": frame.step}
        return frame

    @property
    def frames(self) -> list[Frame]:
        """The recorded frames, oldest first (see the class docstring for the policy)."""
        return list(self._recording.frames)

    @property
    def recording_bytes(self) -> int:
        """Bytes of the recorded frames (≤ 20 MB)."""
        return self._recording.nbytes

    def _sync_recording(self) -> None:
        self.recording = self._recording.stacked()

    # ---------------------------------------------------------------- per epoch
    def _history(self, similarity: bool = True) -> dict[str, Any]:
        t = self.trainer
        inner = list(t.layers)
        metrics = np.array([[m.epoch, m.train_loss, m.test_loss, m.train_accuracy, m.test_accuracy]
                            for m in t.history], dtype=np.float32).reshape(-1, 5)
        sat = np.array([[s.get(n, 0.0) for n in inner] for s in t.saturation], dtype=np.float32)
        # (epochs + 1, layers): CKA of each layer, from the start on, with its latest state — computed once per
        # new snapshot (an epoch's end, a rewind), however often the history is sent
        if similarity and (t.snapshots[-1] is not self._similarity_of):
            self._similarity_cache = t.similarity().float().numpy()
            self._similarity_of = t.snapshots[-1]
            self._last_similarity = time.perf_counter()
        return {"layers": inner, "metrics": metrics, "saturation": sat.reshape(len(t.saturation), len(inner)),
                "similarity": self._similarity_cache, "similarity_layers": self._layers}

    def _on_epoch(self) -> None:
        # While training live, the CKA strip (it grows with the epochs) and the δ surfaces are refreshed at most
        # every _PROJECTION_EVERY_S; pausing refreshes both.
        live = self.state == "training"
        due = not live or time.perf_counter() - self._last_similarity > _PROJECTION_EVERY_S
        self.history = self._history(similarity=due)
        if live and time.perf_counter() - self._last_projection > _PROJECTION_EVERY_S:
            self._compute_projection()

    def _compute_projection(self) -> None:
        self._last_projection = time.perf_counter()
        layer = self.delta_layer
        stats = self.trainer.layer_statistics() if self.trainer.history else {}
        if not layer or layer not in stats:
            self.projection = {"layer": layer, "width": 0}
            return
        st = stats[layer]
        vals = st.eigenvalues.cpu()
        width = int(vals.numel())
        ext, R = self.data.extent, self._resolution
        surfaces = np.stack([quantize_probabilities(projected_surfaces(
            self._net, layer, st, extent=ext, resolution=R, basis=basis, seed=self._seed))
            for basis in SUBSPACES])
        grid = slider_deltas()
        ks = np.array([max(intrinsic_dimension(vals, float(d)), 1) for d in grid], dtype=np.float32)
        self.projection = {"layer": layer, "width": width, "epoch": int(self.trainer.epoch),
                           "spectrum": vals.numpy().astype(np.float32), "deltas": grid.astype(np.float32),
                           "ks": ks, "surfaces": surfaces}

    # ---------------------------------------------------------------- settings
    @traitlets.observe(*_REBUILD)
    def _settings_changed(self, change: dict[str, Any]) -> None:
        if not self._ready or self._reverting:
            return
        self.pause()
        try:
            with self._lock, single_thread():
                self._build()
        except Exception as err:  # e.g. an invalid width typed in the view: keep the old run
            self._reverting = True
            try:
                setattr(self, change["name"], change["old"])
            finally:
                self._reverting = False
            self.error = f"{type(err).__name__}: {err}"
            # ipywidgets holds a view's values in _property_lock while their observers run: raise only to Python
            if change["name"] not in getattr(self, "_property_lock", {}):
                raise

    @traitlets.observe("relevance_method")
    def _method_changed(self, _change: dict[str, Any]) -> None:
        if self._ready and self.state != "training":
            with self._lock, single_thread():
                self._push_frame(record=False)

    @traitlets.observe("delta_layer")
    def _delta_layer_changed(self, change: dict[str, Any]) -> None:
        if not self._ready:
            return
        if change["new"] not in list(self.trainer.layers):
            self.delta_layer = change["old"]
            raise traitlets.TraitError(f"`delta_layer` must be one of the hidden layers {list(self.trainer.layers)}, "
                                       f"got {change['new']!r}.")
        if self.state != "training":
            with self._lock, single_thread():
                self._compute_projection()

    def close(self) -> None:
        """Stop training (the background task ends at its next check) and close the widget."""
        lock = getattr(self, "_lock", None)  # absent when __init__ raised early (close runs from __del__)
        if lock is not None:
            with lock:
                if self.state == "training":
                    self.state = "paused"
        super().close()

    def to_png(self) -> bytes:
        """The current decision surface with the points, as PNG bytes (the view's button saves all canvases)."""
        from .playground_png import surface_png

        frame = self._recording.frames[-1] if self._recording.frames else self._make_frame()
        return surface_png(frame.surface, self.static["points"], self.static["labels"], frame.predicted,
                           self.data.extent)

    def _repr_fields(self) -> dict[str, Any]:
        return {"data": self.dataset, "layers": self._layers, "epoch": self.trainer.epoch, "state": self.state}
