"""Feature-space saturation (Shenk, Richter et al. 2020, arXiv 2006.08679).

A layer's features span, over a data set, an ellipsoid described by their covariance. Its *intrinsic
dimension* at δ is the smallest number ``k`` of principal directions whose variance reaches δ of the
total; its *saturation* is ``k / width``. :class:`SaturationTracker` streams exact float64 covariances
(:class:`~nbexplain.core._base.moments.RunningMoments`) of chosen layers through a training loop, keeping
train-mode and eval-mode passes apart, and records saturation per layer per epoch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._base.capturing import CONV_MODES, count_batches, prepared_batches
from .._base.compiled import running_eagerly
from .._base.hygiene import preserved
from .._base.layer_select import list_layers, resolve_modules
from .._base.layouts import LayoutArg, LayoutProbe, check_layout_arg
from .._base.machinery import Handles, check_progress, progress_bar
from .._base.model_inputs import call_model
from .._base.model_io import check_runnable
from .._base.moments import RunningMoments, subsample_positions
from .._base.validation import (
    check_choice,
    check_fraction,
    check_model,
    check_positive_int,
    check_tensor,
    renamed_arguments,
)

__all__ = [
    "saturation",
    "intrinsic_dimension",
    "SaturationTracker",
    "LayerRecord",
    "EpochRecord",
    "layer_statistics",
    "COUNTING_MODES",
]

#: How ``k`` is counted: ``"textbook"`` (the paper's definition) or ``"delve"`` (delve 0.1.50's rule).
COUNTING_MODES = ("textbook", "delve")
PHASES = ("train", "eval")


def _spectrum(eigenvalues: Any) -> torch.Tensor:
    if isinstance(eigenvalues, (list, tuple)):
        eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float64)
    vals = check_tensor(eigenvalues, "eigenvalues", ndim=1)
    if vals.numel() == 0:
        raise ValueError("`eigenvalues` is empty; pass the eigenvalues of a layer's covariance.")
    if not vals.is_floating_point():
        vals = vals.double()
    if not bool(torch.isfinite(vals).all()):
        raise ValueError("`eigenvalues` contains NaN or inf; the covariance it came from is not finite.")
    return vals.detach().to("cpu", torch.float64).clamp_min(0.0).sort(descending=True).values


def intrinsic_dimension(eigenvalues: Any, delta: float = 0.99, *, mode: str = "textbook") -> int:
    """Smallest ``k`` whose ``k`` largest eigenvalues explain at least ``delta`` of the total variance.

    Parameters
    ----------
    eigenvalues
        The covariance spectrum (any order; round-off negatives are treated as 0).
    delta
        Fraction of variance in (0, 1]. The authors recommend 0.97–0.9995; 0.99 is the default.
    mode
        ``"textbook"`` (default): the definition above. ``"delve"``: delve 0.1.50's counting rule, for
        comparing with published delve figures — ``k`` is the number of eigenvalues whose cumulative
        fraction is still *below* δ, at least 1: one less than the definition whenever that is ≥ 2.
        (delve's code also means to add one back when the count falls short of δ by more than 0.02,
        but it slices an already-truncated matrix, so that branch never changes ``k``.)

    Returns
    -------
    int
        ``k`` in ``[1, width]``; ``0`` for a layer with no variance at all (a dead layer).

    Examples
    --------
    >>> import nbexplain as nx
    >>> nx.intrinsic_dimension([6.0, 3.0, 0.9, 0.1], delta=0.9)
    2
    >>> nx.intrinsic_dimension([6.0, 3.0, 0.9, 0.1], delta=0.99)
    3
    >>> nx.intrinsic_dimension([5.0, 4.85, 0.1, 0.05], delta=0.99)  # top 2 explain 0.985
    3
    >>> nx.intrinsic_dimension([5.0, 4.85, 0.1, 0.05], delta=0.99, mode="delve")
    2
    """
    delta = check_fraction(delta, "delta")
    check_choice(mode, "mode", COUNTING_MODES)
    vals = _spectrum(eigenvalues)
    cum = vals.cumsum(0)
    total = float(cum[-1])
    if total <= 0.0:
        return 0 if mode == "textbook" else 1
    if mode == "textbook":
        # First index where the running sum reaches δ·total (cum[-1] is the total, so k ≤ width).
        i = int(torch.searchsorted(cum, torch.tensor([delta * total], dtype=torch.float64), right=False))
        return min(i + 1, vals.numel())
    frac = cum / total
    return max(int((frac < delta).sum()), 1)


def saturation(eigenvalues: Any, delta: float = 0.99, *, mode: str = "textbook") -> float:
    """Saturation = ``intrinsic_dimension(eigenvalues, delta) / width``, in [0, 1].

    Examples
    --------
    >>> import nbexplain as nx
    >>> nx.saturation([6.0, 3.0, 0.9, 0.1], delta=0.9)
    0.5
    """
    k = intrinsic_dimension(eigenvalues, delta, mode=mode)
    return k / len(eigenvalues)


@dataclass
class LayerRecord:
    """One layer's result at the end of an epoch."""

    saturation: float
    intrinsic_dimension: int
    width: int
    count: int
    eigenvalues: torch.Tensor

    @property
    def explained(self) -> torch.Tensor:
        """Cumulative explained-variance fraction for k = 1 … width (float64)."""
        total = float(self.eigenvalues.sum())
        if total <= 0:
            return torch.zeros_like(self.eigenvalues)
        return self.eigenvalues.cumsum(0) / total


@dataclass
class EpochRecord:
    """What :meth:`SaturationTracker.end_epoch` records: per phase, per layer."""

    epoch: int
    train: dict[str, LayerRecord] = field(default_factory=dict)
    eval: dict[str, LayerRecord] = field(default_factory=dict)
    probes: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def saturation(self, phase: str = "train") -> dict[str, float]:
        """Layer → saturation for ``phase`` (``"train"`` or ``"eval"``)."""
        check_choice(phase, "phase", PHASES)
        return {k: r.saturation for k, r in getattr(self, phase).items()}


_ACCUMULATED = (torch.float32, torch.float64)


class _FeatureFeeder:
    """Turns one layer's output into samples and feeds them to a RunningMoments.

    The layout (which axis holds the features) is resolved on the layer's first call, by the tracker's
    :class:`~nbexplain.core._base.layouts.LayoutProbe`.
    """

    def __init__(self, name: str, conv: str, max_positions: int | None, seed: int) -> None:
        self.name = name
        self.layout: str | None = None
        self.conv = conv
        self.max_positions = max_positions
        self.seed = seed
        self.calls = 0

    def set_layout(self, layout: str, out: torch.Tensor) -> None:
        if self.conv == "cls" and layout == "channels_first" and out.ndim > 2:
            raise ValueError(
                f"Layer {self.name!r} is channels-first {tuple(out.shape)}; `conv='cls'` takes the first token "
                "of token outputs (N, T, D). Use conv='channels', 'mean', 'max' or 'flatten'."
            )
        self.layout = layout

    def _tokens(self, out: torch.Tensor) -> torch.Tensor:
        """A features-last/sequence-first output as ``(N, T…, D)``."""
        return out.movedim(0, 1) if self.layout == "sequence_first" else out

    def width(self, out: torch.Tensor) -> int:
        if out.ndim <= 1:
            return 1
        if out.ndim == 2:
            return int(out.shape[-1])
        if self.layout == "channels_first":
            return int(out.shape[1]) if self.conv != "flatten" else int(out[0].numel())
        return int(out.shape[-1]) if self.conv != "flatten" else int(self._tokens(out)[0].numel())

    def feed(self, moments: RunningMoments, out: torch.Tensor) -> None:
        """Feed a detached, non-empty output (the hook checks both)."""
        self.calls += 1
        if out.ndim == 2 and out.shape[1] == moments.n_features:
            # the common dense case: skip update()'s checks (the hook checked the output)
            moments.add_rows(out if out.dtype in _ACCUMULATED else out.float())
            return
        if out.ndim <= 1:
            moments.update(out.reshape(-1, 1))
            return
        if self.layout != "channels_first":
            t = self._tokens(out)
            if self.conv == "channels":
                moments.update(t.reshape(-1, t.shape[-1]))
            elif self.conv == "cls":
                moments.update(t.reshape(t.shape[0], -1, t.shape[-1])[:, 0])
            elif self.conv == "flatten":
                moments.update(t.reshape(t.shape[0], -1))
            else:
                flat = t.reshape(t.shape[0], -1, t.shape[-1])
                moments.update(flat.mean(dim=1) if self.conv == "mean" else flat.amax(dim=1))
            return
        if self.conv == "channels":
            if self.max_positions is not None:
                out = subsample_positions(out, self.max_positions, seed=self.seed, step=self.calls)
            moments.update_channels(out)
        elif self.conv == "mean":
            moments.update(out.flatten(2).mean(dim=2))
        elif self.conv == "max":
            moments.update(out.flatten(2).amax(dim=2))
        else:
            moments.update(out.reshape(out.shape[0], -1))


def _output_tensor(name: str, out: Any) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"Layer {name!r} returned {type(out).__name__}, not a tensor; it cannot be tracked.")
    if not out.is_floating_point():
        raise TypeError(
            f"Layer {name!r} returned a {out.dtype} tensor; only floating outputs can be tracked."
        )
    return out


class SaturationTracker:
    """Track per-layer feature-space saturation through a training loop.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``. A ``torch.compile``'d model runs its eager module (``model._orig_mod``)
        while the tracker is open, because compiled code does not run the tracker's hooks; it runs compiled
        again after :meth:`close`.
    layers
        Layer names (see :func:`nbexplain.list_layers`); default: every Linear and Conv/ConvTranspose layer.
    delta
        Explained-variance fraction δ in (0, 1] used for ``saturation`` (default 0.99).
    conv
        How multi-dimensional outputs become samples: ``"channels"`` (default; every spatial position of a
        conv map, or every token of a token output, is a sample), ``"mean"``/``"max"`` (pooled per image or
        sequence), ``"flatten"``, or ``"cls"`` (the first token of token outputs).
    max_positions
        With ``conv="channels"``: keep at most this many spatial positions per image and batch (a
        deterministic random subset that changes from batch to batch). ``None`` (default) keeps all:
        exact statistics.
    mode
        Counting rule for ``k``: ``"textbook"`` (default) or ``"delve"`` (see :func:`intrinsic_dimension`).
    device
        Where the float64 statistics live; default: the device of each layer's output.
    sync
        All-reduce the statistics across processes at :meth:`end_epoch` when ``torch.distributed`` is
        initialised (``None``, default: when it is initialised; every rank must call ``end_epoch``).
    seed
        Seed of the spatial subsampling.
    layout
        Which axis holds each layer's features (``"channels_first"``, ``"features_last"``,
        ``"sequence_first"``, or a dict per layer); by default resolved from the module's type and the first
        forward pass (see :mod:`nbexplain.core._base.layouts`). The result is in :attr:`layouts`.

    Attributes
    ----------
    history : list[EpochRecord]
        One record per :meth:`end_epoch`, with train and eval results per layer.
    stats : dict[str, RunningMoments]
        Train-mode statistics per layer (``covariance``, ``mean``, ``count``, ``eigenvalues``,
        ``eigenvectors``) — those of the epoch in progress, or of the last finished epoch when none
        has been seen since. ``eval_stats`` is the same for eval-mode passes.

    Notes
    -----
    The tracker takes no data: it records the forward passes your loop makes, so a model with several
    inputs (``model(x, mask)``, ``model(ids, attention_mask=m)``) needs nothing special. A forward pass
    counts as train or eval according to the tracked module's own ``training`` flag.
    Hooks are attached on entering the ``with`` block (or :meth:`start`) and all removed on exit (or
    :meth:`close`), also when the block raises. Results stay readable after closing; recording does not.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> net = mlp(16, (32, 8))
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> with nx.SaturationTracker(net) as tracker:
    ...     for epoch in range(2):
    ...         for _ in range(5):
    ...             loss = net(torch.randn(64, 16)).logsumexp(1).mean()
    ...             opt.zero_grad(); loss.backward(); opt.step()
    ...         record = tracker.end_epoch()
    >>> sorted(record.saturation("train"))
    ['fc1', 'fc2', 'out']
    >>> len(tracker.history)
    2
    >>> len(net._forward_hooks) + sum(len(m._forward_hooks) for m in net.modules())
    0
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | Sequence[str] | None = None,
        *,
        delta: float = 0.99,
        conv: str = "channels",
        max_positions: int | None = None,
        mode: str = "textbook",
        device: torch.device | str | None = None,
        sync: bool | None = None,
        seed: int = 0,
        layout: LayoutArg = None,
    ) -> None:
        self.model = check_runnable(check_model(model, what="nx.SaturationTracker"))
        # The object the user calls: while the tracker runs, its compiled parts run their eager code.
        self._called = model
        self._eager: running_eagerly | None = None
        if layers is None:
            names = list_layers(self.model)
            if not names:
                raise ValueError(
                    "`model` has no Linear or Conv layers to track; pass `layers=` explicitly "
                    f"(its modules: {[n for n, _ in self.model.named_modules() if n][:20]})."
                )
            layers = names
        self.modules = resolve_modules(self.model, layers)
        self.layers = list(self.modules)
        self.delta = check_fraction(delta, "delta")
        self.conv = check_choice(conv, "conv", CONV_MODES)
        self.max_positions = (
            None if max_positions is None else check_positive_int(max_positions, "max_positions")
        )
        self.mode = check_choice(mode, "mode", COUNTING_MODES)
        self.device = torch.device(device) if device is not None else None
        self.sync = sync
        self.history: list[EpochRecord] = []
        self._feeders = {n: _FeatureFeeder(n, self.conv, self.max_positions, seed) for n in self.modules}
        self._probe = LayoutProbe(self.model, self.modules, check_layout_arg(layout, self.layers))
        self._current: dict[str, dict[str, RunningMoments]] = {p: {} for p in PHASES}
        self._last: dict[str, dict[str, RunningMoments]] = {p: {} for p in PHASES}
        self._handles = Handles()
        self._observers: list[Callable[[EpochRecord], Any]] = []
        self._state = "new"  # new → open → closed
        self.recording = True

    # ------------------------------------------------------------- lifecycle
    def start(self) -> SaturationTracker:
        """Attach the hooks (what entering the ``with`` block does)."""
        if self._state == "open":
            raise RuntimeError("This SaturationTracker is already running.")
        if self._state == "closed":
            raise RuntimeError(
                "This SaturationTracker was closed; its results stay readable, but to record again "
                "create a new nx.SaturationTracker(model, ...)."
            )
        self._eager = running_eagerly(self._called).__enter__()
        self._probe.start()
        for name, module in self.modules.items():
            self._handles.add(module.register_forward_hook(self._make_hook(name)))
        self._state = "open"
        return self

    def close(self) -> None:
        """Remove every hook. Results (``history``, ``stats``) stay readable."""
        self._handles.remove()
        self._probe.stop()
        if self._eager is not None:
            self._eager.__exit__()
            self._eager = None
        self._state = "closed"

    def __enter__(self) -> SaturationTracker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._state == "closed"

    def _make_hook(self, name: str) -> Callable[..., None]:
        feeder = self._feeders[name]

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not self.recording:
                return
            out = _output_tensor(name, output)
            if feeder.layout is None:
                feeder.set_layout(self._probe.layout(name, module, inputs, out), out)
                if self._probe.done:
                    self._probe.stop()
            if out.numel() == 0:
                raise ValueError(
                    f"Layer {name!r} produced an empty output {tuple(out.shape)}; its activations "
                    "cannot be tracked. Leave it out of `layers`."
                )
            # detached: nothing below records autograd history, so no no_grad context is needed (this
            # runs for every tracked layer and batch; its Python overhead is part of the tracking cost)
            out = out.detach()
            store = self._current["train" if module.training else "eval"]
            moments = store.get(name)
            if moments is None:
                moments = RunningMoments(feeder.width(out), device=self.device or out.device, name=name)
                store[name] = moments
            feeder.feed(moments, out)

        return hook

    # --------------------------------------------------------------- results
    def observe(self, callback: Callable[[EpochRecord], Any]) -> Callable[[], None]:
        """Call ``callback(record)`` after every :meth:`end_epoch`. Returns a function that unsubscribes."""
        if not callable(callback):
            raise TypeError(f"`callback` must be callable, got {type(callback).__name__}.")
        self._observers.append(callback)

        def unobserve() -> None:
            if callback in self._observers:
                self._observers.remove(callback)

        return unobserve

    def _sync(self) -> None:
        import torch.distributed as dist

        if self.sync is False or not (dist.is_available() and dist.is_initialized()):
            if self.sync is True:
                raise RuntimeError("sync=True needs an initialised torch.distributed process group.")
            return
        for phase in PHASES:
            store = self._current[phase]
            widths = torch.tensor(
                [float(store[n].n_features) if n in store else 0.0 for n in self.layers], dtype=torch.float64
            )
            dev = next((m.device for m in store.values() if m.device is not None), None)
            if dev is not None and dev.type != "cpu" and dist.get_backend() != "gloo":
                widths = widths.to(dev)
            dist.all_reduce(widths, op=dist.ReduceOp.MAX)
            for n, w in zip(self.layers, widths.tolist(), strict=False):
                if w == 0:
                    continue
                if n not in store:
                    store[n] = RunningMoments(int(w), device=self.device or dev, name=n)
                store[n].all_reduce()
                if store[n].count == 0:
                    del store[n]

    def end_epoch(self, probes: dict[str, float] | None = None, **extra: Any) -> EpochRecord:
        """Record saturation, intrinsic dimension and eigen-spectrum of every layer, then reset.

        Parameters
        ----------
        probes
            Optional layer → probe accuracy (e.g. from :func:`nbexplain.probe_accuracy`), stored with the
            record and shown by the dashboard.
        **extra
            Any other values to keep with the record (e.g. ``loss=0.3``).

        Returns
        -------
        EpochRecord
            Also appended to :attr:`history`; observers are called with it.
        """
        if self._state == "closed":
            raise RuntimeError(
                "This SaturationTracker was closed (its `with` block ended); end_epoch() must be called "
                "inside the block. Create a new tracker to record more epochs."
            )
        self._sync()
        if not any(self._current[p] for p in PHASES):
            raise ValueError(
                "No forward pass reached the tracked layers since the last end_epoch(); run batches "
                f"through the model inside the tracker first (tracked: {self.layers})."
            )
        record = EpochRecord(epoch=len(self.history), probes=dict(probes) if probes else None, extra=extra)
        for phase in PHASES:
            out = getattr(record, phase)
            store = self._current[phase]
            for name in self.layers:
                if name not in store:
                    continue
                m = store[name]
                if m.count < m.n_features:
                    warnings.warn(
                        f"Layer {name!r} ({phase}) saw {m.count} samples for {m.n_features} features: its "
                        "covariance is rank-deficient, so its saturation is bounded by "
                        f"{m.count / m.n_features:.2f}. Run more samples per epoch.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                vals = m.eigenvalues.cpu()
                k = intrinsic_dimension(vals, self.delta, mode=self.mode)
                out[name] = LayerRecord(
                    saturation=k / m.n_features,
                    intrinsic_dimension=k,
                    width=m.n_features,
                    count=m.count,
                    eigenvalues=vals,
                )
            if store:
                self._last[phase] = store
            self._current[phase] = {}
        self.history.append(record)
        for cb in list(self._observers):
            cb(record)
        return record

    def _phase_stats(self, phase: str) -> dict[str, RunningMoments]:
        cur = self._current[phase]
        return dict(cur) if cur else dict(self._last[phase])

    @property
    def stats(self) -> dict[str, RunningMoments]:
        """Train-mode statistics per layer (epoch in progress, else the last finished epoch)."""
        return self._phase_stats("train")

    @property
    def eval_stats(self) -> dict[str, RunningMoments]:
        """Eval-mode statistics per layer (epoch in progress, else the last finished epoch)."""
        return self._phase_stats("eval")

    def saturation(self, phase: str = "train", delta: float | None = None) -> dict[str, float]:
        """Layer → saturation of the current statistics (see :attr:`stats`), at ``delta`` (default: the
        tracker's δ)."""
        check_choice(phase, "phase", PHASES)
        d = self.delta if delta is None else check_fraction(delta, "delta")
        stats = self._phase_stats(phase)
        if not stats:
            raise ValueError(
                f"No {phase}-mode statistics yet: run forward passes with the model in "
                f"{'train' if phase == 'train' else 'eval'} mode inside the tracker."
            )
        return {n: saturation(m.eigenvalues.cpu(), d, mode=self.mode) for n, m in stats.items()}

    def series(self, phase: str = "train") -> dict[str, list[float]]:
        """Layer → saturation per recorded epoch (NaN where the layer had no ``phase`` samples)."""
        check_choice(phase, "phase", PHASES)
        return {
            n: [getattr(r, phase)[n].saturation if n in getattr(r, phase) else math.nan for r in self.history]
            for n in self.layers
        }

    @property
    def layouts(self) -> dict[str, str]:
        """Each layer's resolved layout (layers that have not run yet are missing)."""
        return {n: f.layout for n, f in self._feeders.items() if f.layout is not None}

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for layout in self.layouts.values():
            counts[layout] = counts.get(layout, 0) + 1
        shown = ", ".join(f"{v} {k}" for k, v in counts.items()) or "not yet seen"
        return (
            f"SaturationTracker({len(self.layers)} layers, delta={self.delta}, conv={self.conv!r}, "
            f"epochs={len(self.history)}, state={self._state}, layouts: {shown})"
        )


@renamed_arguments(eval="eval_mode")
def layer_statistics(
    model: nn.Module,
    inputs: Any,
    layers: str | Sequence[str] | None = None,
    *,
    conv: str = "channels",
    batch_size: int = 256,
    eval_mode: bool = True,
    max_positions: int | None = None,
    layout: LayoutArg = None,
    progress: bool | None = None,
) -> dict[str, RunningMoments]:
    """Exact float64 mean and covariance of layers' features over a data set, streamed batch by batch.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.
    inputs
        A batch-first tensor or an iterable of batches (``DataLoader``; ``(x, y)`` items give the model
        ``x``). Several inputs: a tuple ``(x, mask)`` or a dict is one batch (``model(x, mask)``), and a
        DataLoader yields ``((x, mask), y)`` (see :func:`nbexplain.activations`).
    layers
        Layer names; default every Linear and Conv layer.
    conv, max_positions, layout
        As in :class:`SaturationTracker`.
    batch_size
        Inputs per forward pass when ``inputs`` is one batch (a tensor, tuple, dict or ``nx.Inputs``).
    eval_mode
        Run in eval mode (default). The model's modes are restored afterwards.
    progress
        ``None`` (default): a progress bar once the work has run 2 s; ``True``: always; ``False``: never.

    Returns
    -------
    dict[str, RunningMoments]

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> stats = nx.layer_statistics(mlp(16, (8,)), torch.randn(100, 16), ["fc1"])
    >>> stats["fc1"].count, tuple(stats["fc1"].covariance.shape)
    (100, (8, 8))
    """
    model = check_runnable(check_model(model, what="nx.layer_statistics"))
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_progress(progress)
    # In train mode a forward pass updates batch-norm running statistics: put their values back too.
    with preserved(model, values=not eval_mode):
        if eval_mode:
            model.eval()
        tracker = SaturationTracker(model, layers, conv=conv, max_positions=max_positions, sync=False, layout=layout)
        seen = False
        with torch.no_grad(), tracker, progress_bar(total=count_batches(inputs, batch_size), unit="batch",
                                                    desc="layer statistics", progress=progress) as bar:
            for batch in prepared_batches(inputs, batch_size, model):
                seen = True
                call_model(model, batch)
                bar.update(1)
        if not seen:
            raise ValueError("`inputs` is empty: it yielded no batches.")
        stats: dict[str, RunningMoments] = {}
        for phase in PHASES:
            for name, m in tracker._current[phase].items():
                stats.setdefault(name, m)
    missing = [n for n in tracker.layers if n not in stats]
    if missing:
        raise RuntimeError(
            f"Layer(s) {missing} did not run during the forward pass; choose layers used by model.forward."
        )
    return {n: stats[n] for n in tracker.layers}
