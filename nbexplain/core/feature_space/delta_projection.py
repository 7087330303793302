"""Projection of a layer's features onto the eigen-directions that explain δ of their variance.

``x ↦ μ + P_k P_kᵀ (x − μ)`` with ``P_k`` the top-``k(δ)`` eigenvectors of the layer's covariance
(Shenk, Richter et al. 2020). Inserted into a model's forward, it shows what the rest of the network
(a decoder, a classifier head) can still do with only those directions. A random orthonormal ``k``-dim
subspace through the same mean is the control.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._base.hygiene import preserved
from .._base.layer_select import resolve_modules
from .._base.layouts import LayoutProbe, known_layout, rank_layout
from .._base.machinery import Handles, check_progress, progress_bar
from .._base.model_inputs import Inputs, as_inputs, call_model
from .._base.model_io import OutputArg, check_output_arg, check_runnable, probe_output, select_output
from .._base.moments import RunningMoments
from .._base.validation import (
    check_choice,
    check_fraction,
    check_model,
    check_positive_int,
    check_tensor,
    renamed_arguments,
)
from .delta_metrics import MetricArg, check_metric, scorer
from .tracking import COUNTING_MODES, intrinsic_dimension

__all__ = ["DeltaProjection", "DeltaCurveResult", "projected_outputs", "delta_curve", "SUBSPACES"]

#: Which ``k``-dim subspace a projection keeps.
SUBSPACES = ("eigen", "random")


def _random_basis(d: int, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(1, dtype=torch.float64))


@contextmanager
def inserted_map(
    model: nn.Module, layer: str, project: Callable[[torch.Tensor, bool], torch.Tensor], *, what: str
) -> Iterator[None]:
    """Replace ``layer``'s output by ``project(output, channel_first)`` in every forward pass of the block (the
    feature axis from the layer's resolved layout); the model is restored exactly on exit, also on exceptions.
    Shared by :meth:`DeltaProjection.inserted` and the SVCCA projection of :func:`nbexplain.svcca_compression`."""
    net = check_model(model, what=what)
    module = resolve_modules(net, [layer], "layer")[layer]
    probe = LayoutProbe(net, {layer: module}, batch_axis=False)  # projects the feature axis only

    def hook(m: nn.Module, inputs: Any, out: Any) -> Any:
        head = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(head, torch.Tensor):
            raise TypeError(f"Layer {layer!r} returned {type(out).__name__}, not a tensor.")
        channel_first = probe.layout(layer, m, inputs, head) == "channels_first"
        head = project(head, channel_first)
        return type(out)([head, *out[1:]]) if isinstance(out, (tuple, list)) else head

    # `model`, not `net`: a torch.compile'd model called in the block runs its eager module, so the
    # projection is applied (compiled code would skip the hook silently).
    with preserved(model), Handles() as hooks:
        hooks.add(module.register_forward_hook(hook))
        try:
            probe.start()
            yield
        finally:
            probe.stop()


class DeltaProjection:
    """Project features onto the ``k(δ)``-dim principal subspace of a layer, around its mean.

    Parameters
    ----------
    stats
        The layer's statistics: a :class:`~nbexplain.core._base.moments.RunningMoments` (e.g.
        ``tracker.stats["fc1"]`` or ``nx.layer_statistics(...)["fc1"]``).
    delta
        Explained-variance fraction in (0, 1]; ``k = nx.intrinsic_dimension(eigenvalues, delta)``.
    k
        Use exactly ``k`` directions instead of deriving them from ``delta`` (``delta`` is then ignored).
    subspace
        ``"eigen"`` (default): the top-``k`` eigenvectors. ``"random"``: a random orthonormal ``k``-dim
        subspace (the control), drawn from ``seed``.
    seed
        Seed of the random subspace.
    mode
        Counting rule for ``k`` (see :func:`nbexplain.intrinsic_dimension`).
    model, layer
        Optional: given both, the projection itself is a context manager that inserts it into
        ``model``'s forward at ``layer`` (see :meth:`inserted`).

    Attributes
    ----------
    k : int
        Number of kept directions.
    basis : Tensor
        ``(d, k)`` float64 orthonormal basis of the kept subspace.
    mean : Tensor
        ``(d,)`` float64 centre.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> net, x = mlp(16, (8,)), torch.randn(200, 16)
    >>> stats = nx.layer_statistics(net, x, ["fc1"])["fc1"]
    >>> proj = nx.DeltaProjection(stats, delta=0.9)
    >>> feats = nx.activations(net, x, "fc1")["fc1"]
    >>> proj(feats).shape
    torch.Size([200, 8])
    >>> with proj.inserted(net, "fc1"):
    ...     logits = net(x)           # the head sees only the k(0.9) kept directions of fc1
    >>> logits.shape
    torch.Size([200, 10])
    """

    def __init__(
        self,
        stats: RunningMoments,
        delta: float = 0.99,
        *,
        k: int | None = None,
        subspace: str = "eigen",
        seed: int = 0,
        mode: str = "textbook",
        model: nn.Module | None = None,
        layer: str | None = None,
    ) -> None:
        if not isinstance(stats, RunningMoments):
            raise TypeError(
                f"`stats` must be a RunningMoments (e.g. tracker.stats['fc1'] or "
                f"nx.layer_statistics(model, x, ['fc1'])['fc1']), got {type(stats).__name__}."
            )
        if stats.count == 0:
            raise ValueError(f"`stats`{' of ' + repr(stats.name) if stats.name else ''} has seen no samples.")
        self.subspace = check_choice(subspace, "subspace", SUBSPACES)
        self.mode = check_choice(mode, "mode", COUNTING_MODES)
        self.seed = int(seed)
        self.stats = stats
        vals, vecs = stats.eigh()
        self.eigenvalues = vals
        d = stats.n_features
        if k is None:
            self.delta: float | None = check_fraction(delta, "delta")
            self.k = max(intrinsic_dimension(vals.cpu(), self.delta, mode=mode), 1)
        else:
            self.k = check_positive_int(k, "k")
            if self.k > d:
                raise ValueError(f"`k` must be ≤ the layer's width {d}, got {k}.")
            self.delta = None
        self.mean = stats.mean
        if self.subspace == "eigen":
            self.basis = vecs[:, : self.k].contiguous()
        else:
            self.basis = _random_basis(d, self.k, self.seed).to(vecs.device)
        self.model = model
        self.layer = layer
        self._ctx: Any = None

    @property
    def width(self) -> int:
        """The layer's number of features ``d``."""
        return self.stats.n_features

    @property
    def explained(self) -> float:
        """Fraction of the layer's variance inside the kept subspace (for ``"random"``, the measured one)."""
        cov = self.stats.covariance
        total = float(torch.trace(cov))
        if total <= 0:
            return 0.0
        return float(torch.trace(self.basis.T @ cov @ self.basis)) / total

    def project(self, features: torch.Tensor, channel_first: bool = False) -> torch.Tensor:
        """Project ``(n, d)`` features (or a channel-first ``(N, d, *spatial)`` map when
        ``channel_first``) and return them in the input's dtype and device."""
        features = check_tensor(features, "features", min_ndim=1, dtype_kind="float")
        if channel_first and features.ndim > 2:
            moved = features.movedim(1, -1)
            return self.project(moved, channel_first=False).movedim(-1, 1)
        if features.shape[-1] != self.width:
            raise ValueError(
                f"`features` has {features.shape[-1]} features on its last dimension but the projection "
                f"was built for {self.width}."
            )
        work = torch.float64 if features.dtype == torch.float64 else torch.float32
        p = self.basis.to(features.device, work)
        mu = self.mean.to(features.device, work)
        xc = features.to(work) - mu
        return (mu + (xc @ p) @ p.T).to(features.dtype)

    __call__ = project

    @contextmanager
    def inserted(self, model: nn.Module, layer: str) -> Iterator[DeltaProjection]:
        """Within the block, ``layer``'s output is replaced by its projection in every forward pass.

        The model is restored exactly on exit (hooks, modes), also on exceptions. A ``torch.compile``'d
        model runs its eager module (``model._orig_mod``) within the block — compiled code would skip the
        projection — and runs compiled again afterwards; a TorchScript model is refused.
        """
        with inserted_map(model, layer, self.project, what="DeltaProjection.inserted"):
            yield self

    def __enter__(self) -> DeltaProjection:
        if self.model is None or self.layer is None:
            raise RuntimeError(
                "Use `with proj.inserted(model, layer):` or build the projection with model= and layer= "
                "to use it directly as a context manager."
            )
        self._ctx = self.inserted(self.model, self.layer)
        return self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        ctx, self._ctx = self._ctx, None
        return ctx.__exit__(*exc) if ctx is not None else None

    def __repr__(self) -> str:
        src = f"delta={self.delta}" if self.delta is not None else "k given"
        return f"DeltaProjection(k={self.k}/{self.width}, {src}, subspace={self.subspace!r})"


def _run(model: nn.Module, x: Inputs | torch.Tensor, batch_size: int, output: OutputArg = None) -> torch.Tensor:
    batches = as_inputs(x, "inputs").split(batch_size)
    outs = [select_output(call_model(model, b.to_model(model), "inputs"), output).detach().cpu() for b in batches]
    return torch.cat(outs)


def _check_call(model: Any, x: Any, output: Any, what: str) -> tuple[nn.Module, Inputs, OutputArg]:
    """Model, inputs and ``output=`` checked — the latter by one forward pass — before any heavy work.

    ``x`` is one batch of inputs (a tensor, or a tuple / dict / ``nx.Inputs`` of several), returned as
    :class:`~nbexplain.core._base.model_inputs.Inputs`."""
    model = check_runnable(check_model(model, what=what))
    output = check_output_arg(output)
    if isinstance(x, torch.Tensor) or type(x).__module__.startswith("numpy"):
        x = check_tensor(x, "inputs", min_ndim=1)
    batch = as_inputs(x, "inputs")
    probe_output(model, batch, output)
    return model, batch, output


@renamed_arguments(x="inputs")
def projected_outputs(
    model: nn.Module,
    inputs: torch.Tensor | tuple | Mapping[str, Any] | Inputs,
    layer: str,
    stats: RunningMoments,
    *,
    ks: Sequence[int],
    subspace: str = "eigen",
    seed: int = 0,
    batch_size: int = 256,
    progress: bool | None = None,
    output: OutputArg = None,
) -> torch.Tensor:
    """The model's outputs on ``inputs`` with ``layer`` projected onto ``k`` directions, for every ``k``.

    Parameters
    ----------
    model
        Any model; run in eval mode under ``torch.no_grad`` (its modes are restored).
    inputs
        Input batch ``(N, …)``; for a model with several inputs a tuple (positional, ``model(x, mask)``),
        a dict (keyword) or ``nx.Inputs``, sliced together.
    layer
        Layer whose output is projected.
    stats
        That layer's statistics (see :class:`DeltaProjection`).
    ks
        The numbers of kept directions, e.g. every distinct ``k`` a δ slider can reach.
    subspace, seed
        ``"eigen"`` or the ``"random"`` control (see :class:`DeltaProjection`).
    batch_size
        Inputs per forward pass.
    progress
        ``None`` (default): a progress bar once the work has run 2 s; ``True``: always; ``False``: never.
    output
        For a model that returns a tuple, dict or output object: which output to keep (an index, a key or
        attribute name, or a callable on the output), checked by one forward pass before any other work.
        Inputs are cast to the model's device and floating dtype.

    Returns
    -------
    Tensor
        ``(len(ks), N, *output_shape)`` on the CPU; for an autoencoder these are reconstructions.

    Notes
    -----
    When the layers after ``layer`` treat samples independently, all ``k`` run in one pass: the layer's
    output is replaced by the stack of its projections, so the layers before it run once (checked against
    a plain pass; otherwise, and for models that reshape to the input's batch size, one pass per ``k``).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import dense_autoencoder
    >>> ae, x = dense_autoencoder(64, (32,), code=8), torch.rand(50, 64)
    >>> stats = nx.layer_statistics(ae, x, ["encoder.code"])["encoder.code"]
    >>> nx.projected_outputs(ae, x[:4], "encoder.code", stats, ks=[1, 4, 8]).shape
    torch.Size([3, 4, 64])
    """
    model, batch, output = _check_call(model, inputs, output, "nx.projected_outputs")
    resolve_modules(model, [layer], "layer")
    batch_size = check_positive_int(batch_size, "batch_size")
    show = check_progress(progress)
    ks = [check_positive_int(k, "ks") for k in ks]
    if not ks:
        raise ValueError("`ks` is empty; pass at least one number of directions.")
    projs = [DeltaProjection(stats, k=k, subspace=subspace, seed=seed) for k in ks]
    with preserved(model), torch.no_grad():
        model.eval()
        if len(projs) > 1 and batch.n >= 2:
            stacked = _stacked_outputs(model, batch, layer, projs, batch_size, show, output)
            if stacked is not None:
                return stacked
        results = []
        with _progress(len(projs), f"projecting {layer}", show) as bar:
            for proj in projs:
                with proj.inserted(model, layer):
                    results.append(_run(model, batch, batch_size, output))
                bar.update(1)
    return torch.stack(results)


@contextmanager
def _progress(total: int, desc: str, show: bool | None) -> Iterator[Any]:
    """A transient progress bar (the one progress policy) that disappears when the block ends, also on an
    early return.

    tqdm's notebook bar treats ``n < total`` at close as a failure: it turns red and stays on screen even
    with ``leave=False``. Giving up on the stacked pass is not a failure, so the total is set to what was done.
    """
    bar = progress_bar(total=total, desc=desc, progress=show)
    try:
        yield bar
    finally:
        bar.total = bar.n
        bar.close()


def _stacked_outputs(
    model: nn.Module, x: Inputs | torch.Tensor, layer: str, projs: list[DeltaProjection], batch_size: int,
    show: bool | None, output: OutputArg = None,
) -> torch.Tensor | None:
    """All projections in one pass per chunk: the layer's output (n samples) is replaced by the stack of
    its K projections (K·n samples), so the layers before it run once instead of K times.

    Valid when the rest of the network treats samples independently (eval mode). Returns ``None`` —
    and the caller runs one pass per k — when the model rejects the larger batch (e.g. it reshapes to
    the input's batch size) or when a check against a plain one-k pass disagrees.
    """
    module = resolve_modules(model, [layer], "layer")[layer]
    # The layout from the module's type or the output's rank (no forward pass watched). Where that is wrong for
    # an untyped module, the exact one-k check below (through `inserted`, which watches the forward pass)
    # disagrees and the caller falls back to one pass per k.
    n_k = len(projs)

    def hook(m: nn.Module, inputs: Any, out: Any) -> Any:
        if not isinstance(out, torch.Tensor):
            raise TypeError("stacking needs a tensor output")
        layout = known_layout(m) or rank_layout(out.ndim)
        batch_dim = 1 if layout == "sequence_first" else 0
        projected = [p.project(out, channel_first=layout == "channels_first") for p in projs]
        return torch.cat(projected, dim=batch_dim)

    chunk = max(2, min(batch_size, 8192 // n_k))
    outs: list[torch.Tensor] = []
    batches = list(as_inputs(x, "inputs").split(chunk))
    with _progress(len(batches), f"projecting {layer}", show) as bar:
        try:
            for i, b in enumerate(batches):
                b = b.to_model(model)
                with Handles() as hooks:
                    hooks.add(module.register_forward_hook(hook))
                    y = select_output(b.call(model), output)
                n = b.n
                if not isinstance(y, torch.Tensor) or y.shape[0] != n_k * n:
                    return None
                y = y.detach().cpu().reshape(n_k, n, *y.shape[1:])
                if i == 0:
                    # Guard against silent broadcasting in the rest of the network: check one k exactly.
                    for j in {0, n_k - 1}:
                        with projs[j].inserted(model, layer):
                            ref = select_output(b.call(model), output).detach().cpu()
                        if ref.shape != y[j].shape or not torch.allclose(ref, y[j], rtol=1e-4, atol=1e-5):
                            return None
                outs.append(y)
                bar.update(1)
        except (RuntimeError, ValueError, TypeError):
            return None
    return torch.cat(outs, dim=1)


@dataclass
class DeltaCurveResult:
    """A quantity as a function of δ, for the eigen-subspace and the random control.

    ``metric`` names it (see :mod:`nbexplain.core.feature_space.delta_metrics`): ``"accuracy"`` and ``"agreement"`` (higher
    is better), ``"reconstruction"`` (MSE against the input) and ``"output_mse"`` (against the unprojected
    output; lower is better), or the ``__name__`` of a metric function.
    """

    deltas: torch.Tensor
    ks: torch.Tensor
    metric: str
    eigen: torch.Tensor
    random: torch.Tensor
    baseline: float


@renamed_arguments(x="inputs", target="labels")
def delta_curve(
    model: nn.Module,
    inputs: torch.Tensor | tuple | Mapping[str, Any] | Inputs,
    layer: str,
    stats: RunningMoments,
    *,
    deltas: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999),
    labels: torch.Tensor | None = None,
    metric: MetricArg = None,
    ignore_index: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    output: OutputArg = None,
    progress: bool | None = None,
) -> DeltaCurveResult:
    """Accuracy, reconstruction error or another metric of the model's output under projection, per δ.

    Parameters
    ----------
    model, inputs, layer, stats
        As in :func:`projected_outputs`.
    deltas
        δ values in (0, 1].
    labels
        True labels, for ``metric="accuracy"`` (the default when they are given): the output's shape without
        its class axis — ``(N,)`` for class scores ``(N, C)``, ``(N, T)`` for a sequence ``(N, T, V)``,
        ``(N, H, W)`` for a dense map ``(N, C, H, W)``. With several inputs in ``inputs``,
        ``metric="reconstruction"`` compares with the first.
    seed
        Seed of the random-subspace control.
    output
        Which of the model's outputs to score when it returns a tuple, dict or output object (see
        :func:`projected_outputs`); a function can also reduce the output, e.g. ``output=lambda out: out[:, -1]``
        scores a language model's last position against ``(N,)`` labels.
    metric
        What to score (see :mod:`nbexplain.core.feature_space.delta_metrics`): ``"accuracy"`` (needs ``labels``),
        ``"reconstruction"`` (MSE against ``inputs``: an autoencoder, whose output has the input's shape),
        ``"output_mse"`` (MSE against the unprojected output), ``"agreement"`` (fraction of argmax predictions
        equal to the unprojected ones), or a function ``metric(projected, unprojected) -> float``. Without
        ``labels`` it must be given: nbexplain does not guess from shapes whether an output is a
        reconstruction (a 3-class segmentation of RGB images has its input's shape).
    ignore_index
        With ``metric="accuracy"``: the label of entries that have none (e.g. ``-100`` for padding, ``255`` for
        void pixels); they are left out of the accuracy.
    seed, batch_size, progress
        As in :func:`projected_outputs`.

    Returns
    -------
    DeltaCurveResult
        ``eigen`` and ``random`` values per δ, plus the unprojected ``baseline``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> net, x, y = mlp(16, (8,)), torch.randn(100, 16), torch.randint(0, 10, (100,))
    >>> stats = nx.layer_statistics(net, x, ["fc1"])["fc1"]
    >>> curve = nx.delta_curve(net, x, "fc1", stats, deltas=[0.5, 1.0], labels=y)
    >>> curve.metric, abs(float(curve.eigen[-1]) - curve.baseline) <= 0.01
    ('accuracy', True)
    >>> nx.delta_curve(net, x, "fc1", stats, deltas=[0.5, 1.0], metric="agreement").metric
    'agreement'
    """
    model, batch, output = _check_call(model, inputs, output, "nx.delta_curve")
    first = batch.first
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_progress(progress)
    ds = [check_fraction(d, "deltas") for d in deltas]
    if not ds:
        raise ValueError("`deltas` is empty.")
    metric, labels = check_metric(metric, labels, first, ignore_index)
    vals = stats.eigenvalues.cpu()
    ks = [max(intrinsic_dimension(vals, d), 1) for d in ds]
    distinct = sorted(set(ks))
    with preserved(model), torch.no_grad():
        model.eval()
        plain = _run(model, batch, batch_size, output)
    score = scorer(metric, first, plain, labels, ignore_index)  # checks labels and shapes before the projections

    options: dict[str, Any] = dict(ks=distinct, seed=seed, batch_size=batch_size, output=output, progress=progress)
    eig = projected_outputs(model, batch, layer, stats, subspace="eigen", **options)
    rnd = projected_outputs(model, batch, layer, stats, subspace="random", **options)
    by_k = {k: (score(e), score(r)) for k, e, r in zip(distinct, eig, rnd, strict=False)}
    return DeltaCurveResult(
        deltas=torch.tensor(ds, dtype=torch.float64),
        ks=torch.tensor(ks),
        metric=metric if isinstance(metric, str) else getattr(metric, "__name__", "custom"),
        eigen=torch.tensor([by_k[k][0] for k in ks], dtype=torch.float64),
        random=torch.tensor([by_k[k][1] for k in ks], dtype=torch.float64),
        baseline=score(plain),
    )
