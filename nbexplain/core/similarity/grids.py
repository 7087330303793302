"""Layer × layer similarity grids: across training checkpoints, and between two models.

:func:`similarity_grid` runs every checkpoint over the same inputs and compares each of its layers with
each layer of a reference model (by default the last checkpoint) — the training-dynamics figure of the
SVCCA paper — giving a ``(T, L, L_ref)`` tensor per metric. :func:`model_similarity` compares the layers of
two models (``(L_a, L_b)``).

Work is shared: every layer's features are centred, reduced and whitened **once** (one eigen-decomposition
per layer and sample layout) and reused for every pair, so each cell costs one cross-product of whitened
features and a small SVD — instead of redoing both sides' covariances, inverses and reductions per cell.

Samples must correspond across the two layers of a pair. Dense layers give one sample per input. With
``conv="channels"`` (default) a conv layer's spatial positions are samples of its channels (also for the
activations, dropout and pooling layers that follow a conv; a ``(N, T, F)`` token output is read as
``T`` positions of ``F`` features); two conv layers
of different resolutions are compared at the smaller one (the larger map is average-pooled down), a conv
layer against a dense layer is average-pooled to one sample per input, and when a pair has more than
``max_samples`` samples a fixed (seeded) subset of them is used — the same subset for both sides.
``conv="mean"``/``"max"`` pool every conv layer, ``"flatten"`` keeps C·H·W features per input.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._base.capturing import CONV_MODES, InputsArg
from .._base.hygiene import model_device
from .._base.layer_select import list_layers, resolve_modules
from .._base.layouts import LayoutArg, check_layout_arg
from .._base.machinery import check_progress, progress_bar
from .._base.validation import check_choice, check_model, check_positive_int, renamed_arguments
from .checkpoints import CheckpointArg, _checkpoint_items, _label_for, _Materialiser, settled_from
from .grid_cells import _capture_outputs, _GridRun
from .metrics import _check_epsilon, check_keep

__all__ = ["similarity_grid", "model_similarity", "SimilarityGridResult", "GRID_METRICS"]

#: Metrics a grid can compute. ``cka`` is linear CKA; ``cka_debiased`` its debiased form; ``cka_rbf`` RBF CKA.
GRID_METRICS = ("svcca", "cca", "pwcca", "cka", "cka_debiased", "cka_rbf")


@dataclass(repr=False)
class SimilarityGridResult:
    """Similarity of every layer pair, per checkpoint and metric.

    Attributes
    ----------
    grids
        metric → float64 ``(T, L, L_ref)``: ``grids[m][t, i, j]`` is the similarity of layer ``layers[i]``
        at checkpoint ``t`` with layer ``reference_layers[j]`` of the reference. NaN marks an undefined
        cell (a layer with zero variance on these inputs).
    spectra
        CCA-family metric → float32 ``(T, L, L_ref, K)`` canonical correlations of each cell, descending,
        NaN-padded to the longest (``svcca``: of the reduced sides; ``cca``/``pwcca``: full CCA).
    checkpoint_labels, layers, reference_layers, reference_label
        Labels of the three axes and of the reference model.
    kind
        ``"checkpoints"`` (training dynamics) or ``"models"`` (model vs model).
    n_samples
        int64 ``(L, L_ref)``: samples used for each layer pair (depends on conv resolutions).
    options
        The settings used (conv, keep, epsilon, threshold, max_samples, seed).
    layouts
        How each layer's output was read (``"channels_first"``, ``"features_last"``, ``"sequence_first"``;
        see :mod:`nbexplain.core._base.layouts`), for the compared and the reference layers.
    """

    grids: dict[str, torch.Tensor]
    spectra: dict[str, torch.Tensor]
    checkpoint_labels: list[str]
    layers: list[str]
    reference_layers: list[str]
    reference_label: str
    kind: str
    n_samples: torch.Tensor
    options: dict[str, Any] = field(default_factory=dict)
    layouts: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        """Metrics computed, in the order requested."""
        return list(self.grids)

    @property
    def metric(self) -> str:
        """The first (primary) metric."""
        return self.metrics[0]

    @property
    def grid(self) -> torch.Tensor:
        """The primary metric's ``(T, L, L_ref)`` tensor."""
        return self.grids[self.metric]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.grid.shape)  # type: ignore[return-value]

    def __getitem__(self, metric: str) -> torch.Tensor:
        check_choice(metric, "metric", self.metrics)
        return self.grids[metric]

    def converged_at(self, threshold: float = 0.9, metric: str | None = None) -> dict[str, int]:
        """Per layer, the first checkpoint index from which its similarity with the *same* layer of the
        reference stays ≥ ``threshold`` to the last checkpoint (-1: never) — the schedule of SVCCA's *freeze
        training* (Raghu et al. 2017: freeze a layer once it has reached its final representation).

        Only layers that appear among the reference layers are listed; NaN cells count as not reached.

        Examples
        --------
        >>> import torch, nbexplain as nx
        >>> res = nx.SimilarityGridResult(
        ...     grids={"svcca": torch.tensor([[[0.5]], [[0.95]], [[0.8]], [[0.97]], [[1.0]]], dtype=torch.float64)},
        ...     spectra={}, checkpoint_labels=list("abcde"), layers=["fc1"], reference_layers=["fc1"],
        ...     reference_label="e", kind="checkpoints", n_samples=torch.ones(1, 1, dtype=torch.int64))
        >>> res.converged_at(0.9)
        {'fc1': 3}
        """
        m = metric if metric is not None else self.metric
        check_choice(m, "metric", self.metrics)
        if not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool)):
            raise TypeError(f"`threshold` must be a number, got {threshold!r}.")
        grid = self.grids[m]
        out: dict[str, int] = {}
        for i, name in enumerate(self.layers):
            if name not in self.reference_layers:
                continue
            series = grid[:, i, self.reference_layers.index(name)]
            out[name] = int(settled_from(torch.nan_to_num(series, nan=-1.0) >= threshold))
        return out

    def spectrum(self, t: int, i: int, j: int, metric: str | None = None) -> torch.Tensor:
        """Canonical correlations (descending, float32) of cell ``(t, i, j)``.

        ``metric`` defaults to the first CCA-family metric computed.
        """
        if not self.spectra:
            raise ValueError(
                f"No CCA spectra: this grid computed {self.metrics} only. Include 'svcca', 'cca' or "
                "'pwcca' in `metric`."
            )
        m = metric if metric is not None else next(iter(self.spectra))
        check_choice(m, "metric", list(self.spectra))
        s = self.spectra[m][t, i, j]
        return s[~torch.isnan(s)]

    def __repr__(self) -> str:
        t, n_layers, n_ref = self.shape
        counts: dict[str, int] = {}
        for layout in self.layouts.values():
            counts[layout] = counts.get(layout, 0) + 1
        shown = ", ".join(f"{v} {k}" for k, v in counts.items())
        return (
            f"SimilarityGridResult(kind={self.kind!r}, metrics={self.metrics}, checkpoints={t}, "
            f"layers={n_layers}, reference_layers={n_ref}, reference={self.reference_label!r}"
            + (f", layouts: {shown})" if shown else ")")
        )


# ------------------------------------------------------------------------------------------ public API
def _check_metrics(metric: Any) -> list[str]:
    ms = [metric] if isinstance(metric, str) else list(metric)
    if not ms:
        raise ValueError(f"`metric` is empty; choose from {list(GRID_METRICS)}.")
    for m in ms:
        check_choice(m, "metric", GRID_METRICS)
    return list(dict.fromkeys(ms))


def _layer_list(value: Any, model: nn.Module, argname: str) -> list[str]:
    if value is None:
        names = list_layers(model)
        if not names:
            raise ValueError(f"`{argname}`: the model has no analysable layers; pass layer names explicitly.")
        return names
    names = [value] if isinstance(value, str) else list(value)
    resolve_modules(model, names, argname)
    return names


@renamed_arguments(eval="eval_mode", labels="checkpoint_labels")
def similarity_grid(
    checkpoints: CheckpointArg | Sequence[CheckpointArg] | Mapping[str, CheckpointArg],
    inputs: InputsArg,
    layers: str | Sequence[str] | None,
    *,
    metric: str | Sequence[str] = "svcca",
    model: nn.Module | None = None,
    reference: CheckpointArg | None = None,
    reference_layers: str | Sequence[str] | None = None,
    checkpoint_labels: Sequence[str] | None = None,
    reference_label: str | None = None,
    conv: str = "channels",
    keep: float | int = 0.99,
    epsilon: float = 0.0,
    threshold: float = 1.0,
    max_samples: int = 10_000,
    batch_size: int = 256,
    seed: int = 0,
    eval_mode: bool = True,
    progress: bool | None = None,
    layout: LayoutArg = None,
) -> SimilarityGridResult:
    """Compare every layer at every checkpoint with every layer of a reference model.

    Parameters
    ----------
    checkpoints
        Models, state dicts, or checkpoint file paths (loaded with ``torch.load(weights_only=True)``;
        a dict holding the state dict under ``"state_dict"``/``"model_state_dict"``/``"model"`` works too),
        in training order — or a mapping ``label → checkpoint``. A single model is one checkpoint.
    inputs
        The probe inputs: a batch-first tensor or an iterable of batches (``(x, y)`` pairs are fine: the
        model gets ``x``). For models with several inputs a tuple ``(x, mask)``, a dict or ``nx.Inputs`` is
        one batch, and a DataLoader yields ``((x, mask), y)`` (see :func:`nbexplain.activations`). Every
        checkpoint sees the same inputs.
    layers
        Layer names compared at each checkpoint (``None``: all of ``nx.list_layers(model)``).
    metric
        One of ``"svcca"`` (default), ``"cca"``, ``"pwcca"``, ``"cka"`` (linear), ``"cka_debiased"``,
        ``"cka_rbf"`` — or a list; every metric listed is computed in the same pass. Each cell's value is
        the metric's headline (mean canonical correlation for SVCCA/CCA, Σαρ for PWCCA, CKA).
    model
        An architecture to load state dicts / files into (a private copy is used; ``model`` itself is never
        modified). Defaults to the first checkpoint given as a module.
    reference
        What the columns compare against: default the last checkpoint (the trained network). Pass another
        model/state dict/path for a fixed reference.
    reference_layers
        Layer names of the reference (default: ``layers``).
    checkpoint_labels, reference_label
        Axis labels of the checkpoints and of the reference (default: file stems, mapping keys, or
        ``"checkpoint t"``).
    conv
        ``"channels"`` (default): spatial positions are samples of the channels, pairs of different
        resolution are compared at the smaller one, conv vs dense pooled; ``"mean"``/``"max"``: pooled;
        ``"flatten"``: C·H·W features per input.
    keep
        SVCCA's reduction: variance fraction in (0, 1] or number of directions (see :func:`nbexplain.svcca`).
    epsilon
        Ridge on the scaled covariances (CCA family).
    threshold
        RBF bandwidth as a multiple of the median distance (``cka_rbf``).
    max_samples
        Largest number of samples per pair; above it a fixed subset (``seed``) is drawn — the same for both
        layers of the pair.
    batch_size, seed
        Inputs per forward pass; seed of the subsampling.
    eval_mode
        Run every checkpoint in eval mode (default; dropout off, batch-norm running statistics). Modes and
        batch-norm statistics of models passed in are restored afterwards either way.
    progress
        A progress bar over checkpoints: ``None`` (default) once the work has run 2 s; ``True``: always;
        ``False``: never.
    layout
        Which axis holds each layer's features (``"channels_first"``, ``"features_last"``,
        ``"sequence_first"``, or a dict per layer name); by default resolved from each module's type and the
        forward pass (see :mod:`nbexplain.core._base.layouts`).

    Returns
    -------
    SimilarityGridResult
        ``.grid`` ``(T, L, L_ref)`` for the first metric, ``.grids[metric]``, ``.spectra``, labels.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> x = torch.randn(256, 20)
    >>> ckpts = [mlp(20, (16, 8), seed=s) for s in range(3)]
    >>> res = nx.similarity_grid(ckpts, x, ["fc1", "fc2", "out"], metric=["svcca", "cka"], progress=False)
    >>> res.grid.shape, res.metrics
    (torch.Size([3, 3, 3]), ['svcca', 'cka'])
    >>> bool(torch.allclose(res.grids["cka"][-1].diagonal(), torch.ones(3, dtype=torch.float64)))
    True
    """
    metrics, opts = _check_options(metric, conv, keep, epsilon, threshold, max_samples, seed)
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_progress(progress)
    if isinstance(inputs, Iterator):
        # a one-shot iterator (generator): every checkpoint needs the same batches, so keep them
        inputs = list(inputs)
    if model is not None:
        model = check_model(model, "model", what="nx.similarity_grid")
    items, ckpt_labels = _checkpoint_items(checkpoints, checkpoint_labels)
    template = model if model is not None else next((c for c in items if isinstance(c, nn.Module)), None)
    if template is not None:
        argname = "checkpoints" if model is None else "model"
        template = check_model(template, argname, what="nx.similarity_grid")
    ref_model, ref_label = _reference_model(template, items[-1], ckpt_labels[-1], reference, reference_label)
    row_names = _layer_list(layers, template if template is not None else ref_model, "layers")
    ref_names = _layer_list(
        reference_layers if reference_layers is not None else row_names, ref_model, "reference_layers"
    )
    dev = model_device(ref_model)
    if dev.type == "mps":
        dev = torch.device("cpu")
    overrides = check_layout_arg(layout, sorted(set(row_names) | set(ref_names)))
    run = _GridRun(metrics, opts, row_names, ref_names, len(items), dev)
    run.ref_out = _capture_outputs(
        ref_model, inputs, ref_names, batch_size, dev, conv, overrides, run.layouts, eval_mode=eval_mode
    )
    load_rows = _Materialiser(template)
    bar = progress_bar(
        range(len(items)), desc="similarity grid", unit="checkpoint", progress=progress, leave=True
    )
    for t in bar:
        same_as_ref = reference is None and t == len(items) - 1 and row_names == ref_names
        if same_as_ref:  # the last checkpoint is the reference: reuse its outputs and reductions
            outs = run.ref_out
        else:
            net = load_rows(items[t], f"checkpoint {t} ({ckpt_labels[t]!r})")
            outs = _capture_outputs(net, inputs, row_names, batch_size, dev, conv, overrides, run.layouts,
                                    eval_mode=eval_mode)
        run.compare(t, outs, same_as_ref, ckpt_labels[t])
        del outs
    bar.close()
    run.ref_cache.clear()
    run.concat_cache.clear()
    if run.undefined:
        warnings.warn(
            "Zero variance on these inputs (cells are NaN): " + ", ".join(sorted(run.undefined)), stacklevel=2
        )
    return SimilarityGridResult(
        grids=run.cells.grids,
        spectra=run.spectra(),
        checkpoint_labels=ckpt_labels,
        layers=row_names,
        reference_layers=ref_names,
        reference_label=ref_label,
        kind="checkpoints",
        n_samples=run.n_samples,
        options=opts,
        layouts=run.layouts,
    )


def _check_options(
    metric: Any, conv: Any, keep: Any, epsilon: Any, threshold: Any, max_samples: Any, seed: Any
) -> tuple[list[str], dict[str, Any]]:
    """The metrics asked for, and the checked options as recorded in ``SimilarityGridResult.options``."""
    metrics = _check_metrics(metric)
    check_choice(conv, "conv", CONV_MODES)
    kx, _ = check_keep(keep)
    eps = _check_epsilon(epsilon)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"`threshold` must be a positive number, got {threshold!r}.")
    max_samples = check_positive_int(max_samples, "max_samples")
    return metrics, dict(
        conv=conv, keep=kx, epsilon=eps, threshold=float(threshold), max_samples=max_samples, seed=seed
    )


def _reference_model(
    template: nn.Module | None, last: Any, last_label: str, reference: Any, reference_label: str | None
) -> tuple[nn.Module, str]:
    """The model the columns compare against (``reference``, by default the last checkpoint) and its label."""
    if reference is None:
        ref_item, ref_label = last, reference_label or last_label
    else:
        ref_item = reference
        ref_label = reference_label or (
            _label_for(reference, 0) if not isinstance(reference, nn.Module) else "reference"
        )
    ref_model = _Materialiser(template)(
        ref_item, "`reference`" if reference is not None else "the last checkpoint",
        "reference" if reference is not None else "checkpoints",
    )
    return ref_model, ref_label


@renamed_arguments(labels="model_labels")
def model_similarity(
    model_a: CheckpointArg,
    model_b: CheckpointArg,
    inputs: InputsArg,
    layers: str | Sequence[str] | None,
    *,
    layers_b: str | Sequence[str] | None = None,
    metric: str | Sequence[str] = "svcca",
    model_labels: tuple[str, str] = ("A", "B"),
    **kwargs: Any,
) -> SimilarityGridResult:
    """Layer × layer similarity between two models: every layer of ``model_a`` against every layer of ``model_b``.

    Parameters
    ----------
    model_a, model_b
        Models (or state dicts / paths with ``model=`` given in ``kwargs``). The architectures may differ.
    inputs
        Probe inputs both models see (as in :func:`similarity_grid`; both models take the same inputs).
    layers, layers_b
        Layers of A (rows) and of B (columns; default: the same names).
    metric
        As in :func:`similarity_grid`.
    model_labels
        Names of the two models.
    **kwargs
        Any other :func:`similarity_grid` option (``conv``, ``keep``, ``max_samples``, ``eval_mode``,
        ``progress``, …).

    Returns
    -------
    SimilarityGridResult
        ``kind == "models"``; ``.grid[0]`` is the ``(L_a, L_b)`` matrix.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> res = nx.model_similarity(mlp(20, (16, 8), seed=0), mlp(20, (16, 8), seed=1), torch.randn(300, 20),
    ...                           ["fc1", "fc2"], metric="cka", progress=False)
    >>> res.kind, res.grid[0].shape
    ('models', torch.Size([2, 2]))
    """
    for bad in ("reference", "reference_layers", "reference_label"):
        if bad in kwargs:
            raise TypeError(f"model_similarity() sets `{bad}` itself; use model_b / layers_b / model_labels.")
    if len(model_labels) != 2:
        raise ValueError(f"`model_labels` must be two names (model A, model B), got {model_labels!r}.")
    for argname, given in (("model_a", model_a), ("model_b", model_b)):
        if isinstance(given, nn.Module):  # named as the caller knows them (similarity_grid says "reference")
            check_model(given, argname, what="nx.model_similarity")
    res = similarity_grid(
        [model_a],
        inputs,
        layers,
        metric=metric,
        reference=model_b,
        reference_layers=layers_b,
        checkpoint_labels=[str(model_labels[0])],
        reference_label=str(model_labels[1]),
        **kwargs,
    )
    res.kind = "models"
    return res
