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

import copy
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import nn

from .._base import dense_linalg
from .._base.capturing import CONV_MODES, InputsArg, run_layers
from .._base.hygiene import model_device
from .._base.layer_select import layers as list_layers
from .._base.layer_select import resolve_modules
from .._base.layouts import LayoutArg, check_layout_arg
from .._base.machinery import check_progress, progress_bar
from .._base.validation import check_choice, check_finite, check_model, check_positive_int
from .metrics import (
    RANK_RTOL,
    _center_gram,
    _check_epsilon,
    centre_and_gram,
    check_keep,
    hsic_unbiased_linear,
    rbf_gram,
)

__all__ = ["similarity_grid", "model_similarity", "SimilarityGridResult", "GRID_METRICS"]

#: Metrics a grid can compute. ``cka`` is linear CKA; ``cka_debiased`` its debiased form; ``cka_rbf`` RBF CKA.
GRID_METRICS = ("svcca", "cca", "pwcca", "cka", "cka_debiased", "cka_rbf")
_CCA_FAMILY = ("svcca", "cca", "pwcca")
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
#: Modules whose output keeps their input's layout (a ReLU after a conv is still channel-first).

CheckpointArg = Union[nn.Module, Mapping[str, Any], str, os.PathLike]


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
        t, l, lr = self.shape
        counts: dict[str, int] = {}
        for layout in self.layouts.values():
            counts[layout] = counts.get(layout, 0) + 1
        shown = ", ".join(f"{v} {k}" for k, v in counts.items())
        return (
            f"SimilarityGridResult(kind={self.kind!r}, metrics={self.metrics}, checkpoints={t}, "
            f"layers={l}, reference_layers={lr}, reference={self.reference_label!r}"
            + (f", layouts: {shown})" if shown else ")")
        )


# ------------------------------------------------------------------------------------------ checkpoints
def _label_for(item: Any, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.path.splitext(os.path.basename(os.fspath(item)))[0]
    return f"checkpoint {index}"


def _load_state(item: Any, where: str) -> Mapping[str, Any]:
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{where}: no file at {path!r}.")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle refusals, corrupt files
            raise ValueError(
                f"{where}: could not load {path!r} with torch.load(weights_only=True) ({exc}). Save "
                "checkpoints with torch.save(model.state_dict(), path)."
            ) from exc
        item = obj
    if isinstance(item, Mapping):
        if item and all(isinstance(v, torch.Tensor) for v in item.values()):
            return item
        for key in _STATE_KEYS:
            if isinstance(item.get(key), Mapping):
                return item[key]
        raise ValueError(
            f"{where}: this dict is not a state dict (values are not all tensors) and has none of the keys "
            f"{list(_STATE_KEYS)} holding one."
        )
    raise TypeError(
        f"{where}: expected an nn.Module, a state dict or a checkpoint file path, got {type(item).__name__}."
    )


class _Materialiser:
    """Turns checkpoint items into modules, loading state dicts into one reused copy of a template."""

    def __init__(self, template: nn.Module | None) -> None:
        self.template = template
        self._copy: nn.Module | None = None

    def __call__(self, item: Any, where: str, argname: str = "checkpoints") -> nn.Module:
        if isinstance(item, nn.Module):
            return check_model(item, argname, what="nx.similarity_grid")
        state = _load_state(item, where)
        if state and all(k.startswith("_orig_mod.") for k in state):
            # saved from a torch.compile'd model: its keys carry the wrapper's prefix; the template is eager
            state = {k[len("_orig_mod."):]: v for k, v in state.items()}
        if self.template is None:
            raise ValueError(
                f"{where} is a state dict or file: pass `model=` (a model of the same architecture) so it "
                "can be loaded."
            )
        if self._copy is None:
            self._copy = copy.deepcopy(self.template)
        try:
            self._copy.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{where} does not fit `model`'s architecture: {exc}") from exc
        return self._copy


# ------------------------------------------------------------------------------------------ features
def _capture_outputs(
    model: nn.Module, inputs: InputsArg, names: list[str], batch_size: int, device: torch.device,
    conv: str = "channels", overrides: Mapping[str, str] | None = None, layouts: dict[str, str] | None = None,
) -> dict[str, torch.Tensor]:
    """Raw layer outputs over all inputs (eval mode, no grad), float32 on ``device``, features on dim 1.

    Token outputs are moved to ``(N, D, T…)`` so that tokens play the role of positions (``conv="cls"``
    keeps the first token only). Non-finite outputs are an error naming the layer. ``layouts``, when given, is
    filled with each layer's resolved layout.
    """
    modules = resolve_modules(model, names)
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    layouts = {} if layouts is None else layouts
    overrides = {n: v for n, v in (overrides or {}).items() if n in modules}

    def collect(outputs: dict[str, torch.Tensor]) -> None:
        for name, o in outputs.items():
            if o.ndim > 2 and layouts[name] != "channels_first":
                o = o.movedim(0, 1) if layouts[name] == "sequence_first" else o
                o = o.movedim(-1, 1)  # (N, …, D) tokens → features first, tokens as positions
                if conv == "cls":
                    o = o.reshape(o.shape[0], o.shape[1], -1)[:, :, 0]
            elif o.ndim > 2 and conv == "cls":
                raise ValueError(
                    f"Layer {name!r} is channels-first {tuple(o.shape)}; `conv='cls'` takes the first token of "
                    "token outputs (N, T, D). Use conv='channels', 'mean', 'max' or 'flatten' for conv layers."
                )
            try:
                check_finite(o, "inputs")
            except ValueError:
                raise ValueError(
                    f"Layer {name!r} produced non-finite values (NaN or inf) for these inputs; similarity is "
                    "undefined. Check the model for overflow (e.g. half precision) or the inputs."
                ) from None
            chunks[name].append(o.to(device, torch.float32))

    run_layers(model, inputs, modules, collect, batch_size=batch_size, layout=overrides or None, layouts=layouts)
    return {n: torch.cat(c, dim=0) for n, c in chunks.items()}


def _spatial(o: torch.Tensor) -> tuple[int, ...]:
    return tuple(o.shape[2:]) if o.ndim > 2 else ()


def _pair_key(a: torch.Tensor, b: torch.Tensor, conv: str) -> tuple[Any, ...]:
    if conv != "channels":
        return (conv,)
    sa, sb = _spatial(a), _spatial(b)
    if not sa or not sb or len(sa) != len(sb):
        return ("pool",)
    return ("res", tuple(min(u, v) for u, v in zip(sa, sb)))


def _features(o: torch.Tensor, key: tuple[Any, ...], max_samples: int, seed: int) -> torch.Tensor:
    """Features of one layer output for a sample layout ``key`` (float64)."""
    if o.ndim <= 2:
        return o.reshape(o.shape[0], -1).double()
    o = o.double()
    n, c = o.shape[:2]
    mode = key[0]
    if mode in ("pool", "mean"):
        return o.reshape(n, c, -1).mean(dim=2).double()
    if mode == "max":
        return o.reshape(n, c, -1).amax(dim=2).double()
    if mode == "flatten":
        return o.reshape(n, -1).double()
    target = key[1]
    if tuple(o.shape[2:]) != target:
        pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}.get(len(target))
        if pool is None:
            o = o.reshape(n, c, -1).mean(dim=2, keepdim=True)
        else:
            o = pool(o, target)
    feats = o.movedim(1, -1).reshape(-1, c)
    total = feats.shape[0]
    if total > max_samples:
        gen = torch.Generator(device="cpu").manual_seed(int(seed) * 1_000_003 + total)
        idx = torch.randperm(total, generator=gen)[:max_samples].sort().values.to(feats.device)
        feats = feats.index_select(0, idx)
    return feats.double()


class _Prepared:
    """One layer's features in one sample layout, reduced/whitened once for every pair."""

    def __init__(
        self, x: torch.Tensor, metrics: set[str], keep: float | int, epsilon: float, threshold: float
    ):
        self.n = x.shape[0]
        xc, gram, _ = centre_and_gram(x)
        self.dead = not bool(torch.diagonal(gram).max() > 0)
        if self.dead:
            return
        if metrics & set(_CCA_FAMILY):
            scale = float(torch.diagonal(gram).max())
            s = gram / scale
            vals, vecs = dense_linalg.eigh(s)
            vals, vecs = vals.flip(0).clamp_min(0.0), vecs.flip(1)
            r = int((vals > RANK_RTOL * float(vals[0])).sum())
            # as nx.cca: ε > 0 keeps (and shrinks) every direction, ε = 0 drops the numerically null ones
            self.rank = r if epsilon == 0.0 else vals.numel()
            if isinstance(keep, int):
                self.k = min(keep, r)
            else:
                frac = torch.cumsum(vals[:r], 0) / float(vals[:r].sum())
                self.k = min(int((frac < keep - 1e-12).sum()) + 1, r)
            # SVCCA alone needs only the top-k whitened directions
            cols = self.k if metrics & set(_CCA_FAMILY) == {"svcca"} else self.rank
            w = vecs[:, :cols] * (vals[:cols] + epsilon).rsqrt()
            self.z = dense_linalg.matmul(xc, w / math.sqrt(scale))
            if "pwcca" in metrics:
                self.load = dense_linalg.matmul(s, w)
        if metrics & {"cka", "cka_debiased"}:
            self.xc = xc
            self.gsq = float((gram * gram).sum())
            if "cka_debiased" in metrics:
                self.a = (xc * xc).sum(dim=1)
        if "cka_rbf" in metrics:
            self.kc = _center_gram(rbf_gram(x, threshold))
            self.ksq = float((self.kc * self.kc).sum())


def _cross_products(
    a: _Prepared,
    bs: list[_Prepared],
    metrics: list[str],
    concat_cache: dict[Any, torch.Tensor],
    cache_key: Any,
) -> list[torch.Tensor | None]:
    """Whitened cross-products of one row layer with several reference layers.

    With a ``cache_key`` the reference layers' whitened features are concatenated once (kept in
    ``concat_cache`` for every row) and multiplied as one matrix product; without, one product per layer.
    """
    fam = [m for m in metrics if m in _CCA_FAMILY]
    if not fam or a.dead:
        return [None] * len(bs)
    alive = [b for b in bs if not b.dead]
    if not alive:
        return [None] * len(bs)
    svcca_only = fam == ["svcca"]
    widths = [b.k if svcca_only else b.z.shape[1] for b in alive]
    left = a.z[:, : a.k] if svcca_only else a.z
    if cache_key is None:  # a one-off set of columns: one product per layer, no concatenated copy
        parts = iter([dense_linalg.cross(left, b.z[:, :w]) for b, w in zip(alive, widths)])
    else:
        if cache_key not in concat_cache:
            concat_cache[cache_key] = torch.cat([b.z[:, :w] for b, w in zip(alive, widths)], dim=1)
        parts = iter(dense_linalg.cross(left, concat_cache[cache_key]).split(widths, dim=1))
    return [None if b.dead else next(parts) for b in bs]


def _self_values(a: _Prepared, metrics: list[str]) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """A live layer against itself (ε = 0): every canonical correlation and every CKA is exactly 1."""
    vals = {m: 1.0 for m in metrics}
    specs = {
        m: torch.ones(a.k if m == "svcca" else a.rank, dtype=torch.float64)
        for m in metrics
        if m in _CCA_FAMILY
    }
    if "cka_debiased" in metrics:  # defined only when the unbiased HSIC of the layer with itself is positive
        sa = float(a.a.sum())
        if not hsic_unbiased_linear(a.gsq, float(a.a @ a.a), sa, sa, a.n) > 0:
            vals["cka_debiased"] = math.nan
    return vals, specs


@dataclass
class _Cells:
    """The grid being filled: values per metric ``(T, L, L_ref)`` and spectra per CCA-family metric."""

    grids: dict[str, torch.Tensor]
    spectra: dict[str, dict[tuple[int, int, int], torch.Tensor]]

    def store(self, t: int, i: int, j: int, vals: dict[str, float], specs: dict[str, torch.Tensor]) -> None:
        for m, v in vals.items():
            self.grids[m][t, i, j] = v
        for m, c in specs.items():
            self.spectra[m][(t, i, j)] = c.to("cpu", torch.float32)

    def mirror(self, t: int, i: int, j: int) -> None:
        """Cell ``(t, i, j)`` := cell ``(t, j, i)`` (a symmetric pair of the reference with itself)."""
        for g in self.grids.values():
            g[t, i, j] = g[t, j, i]
        for d in self.spectra.values():
            if (t, j, i) in d:
                d[(t, i, j)] = d[(t, j, i)]


def _fill_group(
    cells: _Cells,
    t: int,
    i: int,
    a: _Prepared,
    js: list[int],
    refs: list[_Prepared],
    metrics: list[str],
    *,
    symmetric: bool,
    self_is_one: bool,
    concat_cache: dict[Any, torch.Tensor],
    key: Any,
) -> None:
    """Cells ``(t, i, j)`` for the reference layers ``js`` (prepared as ``refs``) that share one sample layout.

    ``symmetric``: row ``i`` is reference layer ``i`` of the same model and the metrics are symmetric, so the
    cells left of the diagonal are mirrored from rows already filled. ``self_is_one``: a live layer against
    itself is exactly 1 (ε = 0).
    """
    todo: list[tuple[int, _Prepared]] = []
    for j, b in zip(js, refs, strict=True):
        if symmetric and j < i:
            cells.mirror(t, i, j)
        elif self_is_one and a is b and not a.dead:
            cells.store(t, i, j, *_self_values(a, metrics))
        else:
            todo.append((j, b))
    bs = [b for _, b in todo]
    cache_key = (key, tuple(j for j, _ in todo)) if len(todo) == len(js) else None
    for (j, b), m in zip(todo, _cross_products(a, bs, metrics, concat_cache, cache_key), strict=True):
        cells.store(t, i, j, *_pair_values(a, b, metrics, m))


def _pair_values(
    a: _Prepared, b: _Prepared, metrics: list[str], m: torch.Tensor | None = None
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    vals: dict[str, float] = {}
    specs: dict[str, torch.Tensor] = {}
    if a.dead or b.dead:
        return {m: math.nan for m in metrics}, {}
    fam = [m for m in metrics if m in _CCA_FAMILY]
    if fam:
        if m is None:
            m = (
                dense_linalg.cross(a.z[:, : a.k], b.z[:, : b.k])
                if fam == ["svcca"]
                else dense_linalg.cross(a.z, b.z)
            )
        if "svcca" in fam:
            c = dense_linalg.svdvals(m[: a.k, : b.k]).clamp(0.0, 1.0)
            vals["svcca"] = float(c.mean())
            specs["svcca"] = c
        if "pwcca" in fam:
            u, c, vh = dense_linalg.svd(m)
            c = c.clamp(0.0, 1.0)
            load = (a.load @ u) if a.rank <= b.rank else (b.load @ vh.T)
            wts = load.abs().sum(dim=0)
            wts = wts / wts.sum()
            vals["pwcca"] = float((wts * c).sum())
            specs["pwcca"] = c
            if "cca" in fam:
                vals["cca"] = float(c.mean())
                specs["cca"] = c
        elif "cca" in fam:
            c = dense_linalg.svdvals(m).clamp(0.0, 1.0)
            vals["cca"] = float(c.mean())
            specs["cca"] = c
    if "cka" in metrics or "cka_debiased" in metrics:
        cross = dense_linalg.cross(a.xc, b.xc)
        csq = float((cross * cross).sum())
        if "cka" in metrics:
            vals["cka"] = min(max(csq / math.sqrt(a.gsq * b.gsq), 0.0), 1.0)
        if "cka_debiased" in metrics:
            n = a.n
            sa, sb = float(a.a.sum()), float(b.a.sum())
            hxy = hsic_unbiased_linear(csq, float(a.a @ b.a), sa, sb, n)
            hxx = hsic_unbiased_linear(a.gsq, float(a.a @ a.a), sa, sa, n)
            hyy = hsic_unbiased_linear(b.gsq, float(b.a @ b.a), sb, sb, n)
            vals["cka_debiased"] = (
                min(max(hxy / math.sqrt(hxx * hyy), -1.0), 1.0) if hxx > 0 and hyy > 0 else math.nan
            )
    if "cka_rbf" in metrics:
        vals["cka_rbf"] = min(max(float((a.kc * b.kc).sum()) / math.sqrt(a.ksq * b.ksq), 0.0), 1.0)
    return vals, specs


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


def similarity_grid(
    checkpoints: CheckpointArg | Sequence[CheckpointArg] | Mapping[str, CheckpointArg],
    inputs: InputsArg,
    layers: str | Sequence[str] | None,
    metric: str | Sequence[str] = "svcca",
    *,
    model: nn.Module | None = None,
    reference: CheckpointArg | None = None,
    reference_layers: str | Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    reference_label: str | None = None,
    conv: str = "channels",
    keep: float | int = 0.99,
    epsilon: float = 0.0,
    threshold: float = 1.0,
    max_samples: int = 10_000,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool | None = True,
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
        Layer names compared at each checkpoint (``None``: all of ``nx.layers(model)``).
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
    labels, reference_label
        Axis labels (default: file stems, mapping keys, or ``"checkpoint t"``).
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
    batch_size, seed, progress
        Forward batch size; seed of the subsampling; a progress bar over checkpoints (``True``, the
        default: at once; ``None``: once the work has run for more than 2 s; ``False``: never).
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
    items, ckpt_labels = _checkpoint_items(checkpoints, labels)
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
        ref_model, inputs, ref_names, batch_size, dev, conv, overrides, run.layouts
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
            outs = _capture_outputs(net, inputs, row_names, batch_size, dev, conv, overrides, run.layouts)
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


def _checkpoint_items(checkpoints: Any, labels: Sequence[str] | None) -> tuple[list[Any], list[str]]:
    """The checkpoints as a list, and their labels (given, mapping keys, file stems or ``checkpoint t``)."""
    if isinstance(checkpoints, Mapping) and not _looks_like_state_dict(checkpoints):
        items = list(checkpoints.values())
        default_labels = [str(k) for k in checkpoints.keys()]
    elif isinstance(checkpoints, (nn.Module, str, os.PathLike, Mapping)):
        items = [checkpoints]
        default_labels = [_label_for(checkpoints, 0)]
    else:
        items = list(checkpoints)
        default_labels = [_label_for(c, i) for i, c in enumerate(items)]
    if not items:
        raise ValueError("`checkpoints` is empty; pass at least one model, state dict or path.")
    if labels is not None:
        labels = [str(s) for s in labels]
        if len(labels) != len(items):
            raise ValueError(f"`labels` has {len(labels)} entries for {len(items)} checkpoints.")
    return items, labels if labels is not None else default_labels


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


class _GridRun:
    """The grid being filled, checkpoint by checkpoint, and the work shared between checkpoints: the
    reference layers' outputs and prepared (reduced/whitened) features, and concatenated reference blocks."""

    def __init__(
        self, metrics: list[str], opts: dict[str, Any], row_names: list[str], ref_names: list[str],
        t_count: int, dev: torch.device,
    ) -> None:
        self.metrics = metrics
        self.opts, self.row_names, self.ref_names, self.dev = opts, row_names, ref_names, dev
        shape = (t_count, len(row_names), len(ref_names))
        self.cells = _Cells(
            grids={m: torch.full(shape, math.nan, dtype=torch.float64) for m in self.metrics},
            spectra={m: {} for m in self.metrics if m in _CCA_FAMILY},
        )
        self.shape = shape
        self.n_samples = torch.zeros(len(row_names), len(ref_names), dtype=torch.int64)
        self.undefined: set[str] = set()
        self.layouts: dict[str, str] = {}
        self.ref_out: dict[str, torch.Tensor] = {}
        self.ref_cache: dict[tuple[str, tuple[Any, ...]], _Prepared] = {}
        self.concat_cache: dict[Any, torch.Tensor] = {}

    def _prepare(self, name: str, src: dict[str, torch.Tensor], cache: dict, key: tuple[Any, ...]) -> None:
        if (name, key) not in cache:
            o = self.opts
            feats = _features(src[name], key, o["max_samples"], o["seed"])
            cache[(name, key)] = _Prepared(feats, set(self.metrics), o["keep"], o["epsilon"], o["threshold"])

    def compare(self, t: int, outs: dict[str, torch.Tensor], same_as_ref: bool, label: str) -> None:
        """Row ``t``: every layer of one checkpoint (its outputs ``outs``) against every reference layer."""
        n_ref = next(iter(self.ref_out.values())).shape[0]
        for name, o in outs.items():
            if o.shape[0] != n_ref:
                raise RuntimeError(
                    f"Layer {name!r} produced a different number of samples than the reference."
                )
        row_cache: dict[tuple[str, tuple[Any, ...]], _Prepared] = self.ref_cache if same_as_ref else {}
        mirror = "pwcca" not in self.metrics  # PWCCA weights one side: not symmetric
        with dense_linalg.blas_phase(self.dev):
            for i, rn in enumerate(self.row_names):
                groups: dict[tuple[Any, ...], list[int]] = {}
                for j, cn in enumerate(self.ref_names):
                    key = _pair_key(outs[rn], self.ref_out[cn], self.opts["conv"])
                    groups.setdefault(key, []).append(j)
                    self._prepare(rn, outs, row_cache, key)
                    self._prepare(cn, self.ref_out, self.ref_cache, key)
                for key, js in groups.items():
                    a = row_cache[(rn, key)]
                    refs = [self.ref_cache[(self.ref_names[j], key)] for j in js]
                    self.n_samples[i, js] = a.n
                    if a.dead:
                        self.undefined.add(f"{rn} at {label}")
                    dead = [self.ref_names[j] for j, b in zip(js, refs, strict=True) if b.dead]
                    self.undefined.update(f"{name} of the reference" for name in dead)
                    _fill_group(
                        self.cells, t, i, a, js, refs, self.metrics, symmetric=same_as_ref and mirror,
                        self_is_one=self.opts["epsilon"] == 0.0, concat_cache=self.concat_cache, key=key,
                    )

    def spectra(self) -> dict[str, torch.Tensor]:
        """The CCA spectra as float32 ``(T, L, L_ref, K)`` tensors, NaN-padded to the longest."""
        out: dict[str, torch.Tensor] = {}
        for m, d in self.cells.spectra.items():
            kmax = max((c.numel() for c in d.values()), default=0)
            arr = torch.full((*self.shape, max(kmax, 1)), math.nan, dtype=torch.float32)
            for (t, i, j), c in d.items():
                arr[t, i, j, : c.numel()] = c
            out[m] = arr
        return out


def _looks_like_state_dict(m: Mapping[str, Any]) -> bool:
    return bool(m) and (
        all(isinstance(v, torch.Tensor) for v in m.values())
        or any(isinstance(m.get(k), Mapping) for k in _STATE_KEYS)
    )


def model_similarity(
    model_a: CheckpointArg,
    model_b: CheckpointArg,
    inputs: InputsArg,
    layers: str | Sequence[str] | None,
    layers_b: str | Sequence[str] | None = None,
    metric: str | Sequence[str] = "svcca",
    *,
    labels: tuple[str, str] = ("A", "B"),
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
    labels
        Names of the two models.
    **kwargs
        Any other :func:`similarity_grid` option (``conv``, ``keep``, ``max_samples``, …).

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
            raise TypeError(f"model_similarity() sets `{bad}` itself; use model_b / layers_b / labels.")
    if len(labels) != 2:
        raise ValueError(f"`labels` must be two names (model A, model B), got {labels!r}.")
    for argname, given in (("model_a", model_a), ("model_b", model_b)):
        if isinstance(given, nn.Module):  # named as the caller knows them (similarity_grid says "reference")
            check_model(given, argname, what="nx.model_similarity")
    res = similarity_grid(
        [model_a],
        inputs,
        layers,
        metric,
        reference=model_b,
        reference_layers=layers_b,
        labels=[str(labels[0])],
        reference_label=str(labels[1]),
        **kwargs,
    )
    res.kind = "models"
    return res
