"""Training a playground network step by step, with exact rewind and per-epoch saturation.

SGD on the mean cross-entropy of minibatches, as TensorFlow Playground trains; L2 is weight decay on the
weight matrices (``p.ndim ≥ 2``), not on biases. Each epoch visits the training points in a fresh random order
drawn from the trainer's own generator (seeded by ``seed``; the global RNG is never used).

Saturation follows :class:`nbexplain.SaturationTracker`'s definition: every minibatch's train-mode outputs of
each hidden layer are streamed into a :class:`~nbexplain.RunningMoments`; at the end of the epoch the layer's
saturation is ``nx.saturation(moments.eigenvalues, delta)`` and the moments become
:meth:`PlaygroundTrainer.layer_statistics` (for the δ projection).
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._base.hygiene import model_device, model_dtype, preserved
from .._base.layer_select import resolve_modules
from .._base.machinery import Handles
from .._base.moments import RunningMoments
from .._base.validation import check_fraction, check_model, check_positive_int
from ..feature_space.tracking import layer_statistics as _layer_statistics
from ..feature_space.tracking import saturation as _saturation
from .datasets import ToyDataset, check_seed
from .network import hidden_layers
from .plane import run_layers
from .similarity import layer_activations, layer_similarity

__all__ = ["PlaygroundTrainer", "EpochMetrics"]

#: Probe points (the first training points) on which each epoch's activations are kept for the similarity grid.
PROBE_POINTS = 256


@dataclass(frozen=True)
class EpochMetrics:
    """Loss (mean cross-entropy) and accuracy after an epoch, on the train and test splits (eval mode)."""

    epoch: int
    train_loss: float
    test_loss: float
    train_accuracy: float
    test_accuracy: float


def _number(value: Any, argname: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (float(value) == float(value)):
        raise TypeError(f"`{argname}` must be a number, got {value!r}.")
    v = float(value)
    if (positive and not v > 0) or v < 0 or v == float("inf"):
        raise ValueError(f"`{argname}` must be a finite number {'> 0' if positive else '≥ 0'}, got {value!r}.")
    return v


class PlaygroundTrainer:
    """Train a model on a :class:`ToyDataset` in steps, rewind to the identical start, track saturation.

    Parameters
    ----------
    model
        A network from points ``(N, 2)`` to ``data.classes`` logits (:func:`playground_network` or your own);
        it is trained in place (only its parameters that require grad). Between calls its modes, hooks and
        ``requires_grad`` flags are as you left them.
    data
        The :class:`ToyDataset`.
    learning_rate
        SGD step size (> 0).
    l2
        Weight decay on the weight matrices (≥ 0).
    batch_size
        Points per minibatch; the last minibatch of an epoch holds the remainder.
    seed
        Seed of the order in which each epoch visits the points.
    delta
        δ of the saturation ``k(δ)/width`` (in (0, 1]).

    Attributes
    ----------
    epoch, steps : int
        Finished epochs and minibatch steps since the start (or the last :meth:`rewind`).
    history : list[EpochMetrics]
        One per finished epoch.
    saturation : list[dict[str, float]]
        Per finished epoch: hidden layer → ``k(δ)/width``.
    snapshots : list[dict[str, Tensor]]
        Activations of every :func:`hidden_layers` layer on the probe points (the first 256 training points):
        one before training, then one per epoch (for :meth:`similarity`).
    layers : list[str]
        The hidden layers whose saturation is tracked.

    Examples
    --------
    >>> import nbexplain as nx
    >>> data = nx.toy_dataset("xor", 200, seed=0)
    >>> trainer = nx.PlaygroundTrainer(nx.playground_network(hidden=(4,)), data, learning_rate=0.1)
    >>> m = trainer.run_epoch()
    >>> m.epoch, trainer.steps, sorted(trainer.saturation[-1])
    (1, 14, ['act1'])
    >>> w1 = trainer.model.fc1.weight.clone()
    >>> trainer.rewind(); _ = trainer.run_epoch()   # the same start and batch order: the same weights
    >>> bool((trainer.model.fc1.weight == w1).all())
    True
    """

    def __init__(self, model: nn.Module, data: ToyDataset, *, learning_rate: float = 0.03, l2: float = 0.0,
                 batch_size: int = 10, seed: int = 0, delta: float = 0.99) -> None:
        self.model = check_model(model, what="nx.PlaygroundTrainer")
        if not isinstance(data, ToyDataset):
            raise TypeError("`data` must be a ToyDataset: nx.toy_dataset('moons') or nx.as_toy_dataset(x, y), "
                            f"got {type(data).__name__}.")
        self.data = data
        self.learning_rate = _number(learning_rate, "learning_rate", positive=True)
        self.l2 = _number(l2, "l2", positive=False)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_seed(seed)
        self.delta: float = check_fraction(delta, "delta")
        logits, _ = run_layers(self.model, data.x_train[:2])
        if logits.shape[1] != data.classes:
            raise ValueError(f"`model` returns {logits.shape[1]} logits but `data` has {data.classes} classes; "
                             f"build it with classes={data.classes}.")
        drawn = self._drawn = hidden_layers(self.model)
        self.layers: list[str] = drawn[:-1] if len(drawn) > 1 else drawn
        self._modules: dict[str, nn.Module] = resolve_modules(self.model, self.layers, "layers")
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("`model` has no parameter that requires grad: nothing to train.")
        groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": self.l2},
                  {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
        self.optimizer: torch.optim.SGD = torch.optim.SGD([g for g in groups if g["params"]], lr=self.learning_rate)
        dev, dtype = model_device(self.model), model_dtype(self.model)
        self._x: torch.Tensor = data.x_train.to(dev, dtype)
        self._y: torch.Tensor = data.y_train.to(dev)
        self._x_test: torch.Tensor = data.x_test.to(dev, dtype)
        self._y_test: torch.Tensor = data.y_test.to(dev)
        self._probe: torch.Tensor = data.x_train[:PROBE_POINTS]
        self._gen: torch.Generator = torch.Generator().manual_seed(self.seed)
        self._initial: tuple[dict[str, Any], dict[str, Any], torch.Tensor] = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()),
                         self._gen.get_state())
        self._reset_counters()

    # ------------------------------------------------------------------ state
    def _reset_counters(self) -> None:
        self.epoch = 0
        self.steps = 0
        self.history: list[EpochMetrics] = []
        self.saturation: list[dict[str, float]] = []
        self._order: torch.Tensor | None = None
        self._pos = 0
        self._moments: dict[str, RunningMoments] = {}
        self._last_stats: dict[str, RunningMoments] = {}
        self.snapshots: list[dict[str, torch.Tensor]] = [layer_activations(self.model, self._probe, self._drawn)]

    def rewind(self) -> None:
        """Back to the initial weights, optimizer state and batch order: training again gives identical weights."""
        weights, opt_state, gen_state = self._initial
        with torch.no_grad():
            self.model.load_state_dict(weights)  # copies in place: the Parameter objects stay the same
        self.optimizer.load_state_dict(copy.deepcopy(opt_state))
        self._gen.set_state(gen_state)
        self._reset_counters()

    # --------------------------------------------------------------- training
    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, out: Any) -> None:
            h = out.detach()
            h = h.reshape(h.shape[0], -1)
            m = self._moments.get(name)
            if m is None:
                m = self._moments[name] = RunningMoments(h.shape[1], name=name)
            m.update(h)
        return hook

    def _attach(self, hooks: Handles) -> None:
        for name, mod in self._modules.items():
            hooks.add(mod.register_forward_hook(self._hook(name)))

    def step(self, batches: int = 1) -> None:
        """Train on ``batches`` minibatches (continuing the current epoch; an epoch ends when every point was seen)."""
        batches = check_positive_int(batches, "batches")
        n = len(self._y)
        with preserved(self.model), Handles() as hooks:
            self.model.train()
            self._attach(hooks)
            for _ in range(batches):
                if self._order is None:
                    self._order = torch.randperm(n, generator=self._gen)
                    self._pos = 0
                idx = self._order[self._pos: self._pos + self.batch_size].to(self._x.device)
                loss = F.cross_entropy(self.model(self._x[idx]), self._y[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self._pos += len(idx)  # only a finished step moves on (a step that raised is retried)
                self.steps += 1
                if self._pos >= n:
                    hooks.remove()  # the epoch's metrics are computed without feeding the statistics
                    self._end_epoch()
                    self._attach(hooks)
            self.optimizer.zero_grad(set_to_none=True)

    def batches_left(self) -> int:
        """Minibatches to the end of the epoch under way (a whole epoch when none is)."""
        n = len(self._y)
        remaining = n - self._pos if self._order is not None else n
        return -(-remaining // self.batch_size)

    def run_epoch(self) -> EpochMetrics:
        """Train to the end of the current epoch (a whole epoch when none is under way); its metrics."""
        self.step(self.batches_left())
        return self.history[-1]

    def _end_epoch(self) -> None:
        self._order = None
        self.epoch += 1
        self.saturation.append({n: _saturation(m.eigenvalues.cpu(), self.delta) for n, m in self._moments.items()})
        self._last_stats, self._moments = self._moments, {}
        self.history.append(self.evaluate())
        self.snapshots.append(layer_activations(self.model, self._probe, self._drawn))

    def evaluate(self) -> EpochMetrics:
        """Loss and accuracy of the model as it is now, on both splits (eval mode; the model is left as found)."""
        with preserved(self.model), torch.no_grad():
            self.model.eval()
            out = []
            for x, y in ((self._x, self._y), (self._x_test, self._y_test)):
                logits = self.model(x)
                out += [float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean())]
        return EpochMetrics(self.epoch, out[0], out[2], out[1], out[3])

    # ----------------------------------------------------------------- reading
    def layer_statistics(self) -> dict[str, RunningMoments]:
        """Hidden layer → the last finished epoch's statistics (train-mode outputs over its minibatches); before
        the first epoch, the statistics of the current model on the training points."""
        if self._last_stats:
            return dict(self._last_stats)
        return _layer_statistics(self.model, self.data.x_train, self.layers)

    def similarity(self) -> torch.Tensor:
        """Linear CKA of every snapshot against the latest, per layer: ``(epochs + 1, len(hidden_layers))``."""
        return layer_similarity(self.snapshots)

    def __repr__(self) -> str:
        return (f"PlaygroundTrainer(epoch={self.epoch}, steps={self.steps}, lr={self.learning_rate}, l2={self.l2}, "
                f"batch_size={self.batch_size})")
