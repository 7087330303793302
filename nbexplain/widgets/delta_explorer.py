"""``DeltaExplorer``: the δ slider of feature-space saturation, on precomputed reconstructions."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from ..core._base.hygiene import preserved
from ..core._base.layer_select import list_layers, resolve_modules
from ..core._base.model_inputs import Inputs, as_inputs, call_model
from ..core._base.validation import (
    check_choice,
    check_fraction,
    check_model,
    check_positive_int,
    check_tensor,
    renamed_arguments,
)
from ..core.feature_space.delta_projection import projected_outputs
from ..core.feature_space.tracking import intrinsic_dimension, layer_statistics
from .base import RequestWidget
from .tensor import TensorTrait, downsample_images, to_uint8_images

__all__ = ["DeltaExplorer", "slider_deltas"]

#: Default budget for all precomputed images (eigen + random) sent to the view.
MAX_IMAGE_BYTES = 8_000_000


def slider_deltas(lo: float = 0.5, hi: float = 0.9999, steps: int = 121) -> np.ndarray:
    """Slider positions evenly spaced in ``−log10(1 − δ)`` ("nines"), so δ near 1 gets room, plus δ = 1."""
    u = np.linspace(-math.log10(1 - lo), -math.log10(1 - hi), steps)
    return np.concatenate([1 - 10.0 ** (-u), [1.0]])


def _inputs(x: Any, argname: str) -> Inputs:
    """One batch of the model's inputs; the first (the one shown) an image or vector batch ``(N, …)``."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        x = check_tensor(x, argname, min_ndim=2)
    batch = as_inputs(tuple(x) if isinstance(x, list) else x, argname)
    if batch.first.ndim < 2:
        raise ValueError(
            f"`{argname}`'s first input (the one shown) must be a batch of images or vectors (N, …), got shape "
            f"{tuple(batch.first.shape)}."
        )
    return batch


def _unpack(data: Any) -> tuple[Inputs, torch.Tensor | None, Inputs, torch.Tensor | None]:
    """``inputs=`` as (statistics inputs, their labels, shown inputs, their labels)."""
    """(stats_x, stats_y, show_x, show_y) from a Dataset, an (inputs, y) pair, several inputs or a tensor."""
    if hasattr(data, "x_train") and hasattr(data, "x_test"):
        return (_inputs(data.x_train, "inputs.x_train"), data.y_train, _inputs(data.x_test, "inputs.x_test"),
                data.y_test)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        y = data[1]
        if isinstance(y, np.ndarray):
            y = torch.as_tensor(y)
        if not (isinstance(y, torch.Tensor) and y.ndim == 1 and not y.is_floating_point() and y.dtype != torch.bool):
            got = f"shape {tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"`inputs` is a pair, read as (inputs, labels), but `inputs[1]` ({got}) is not a 1-D integer label "
                "tensor. For a model with several inputs pass them as one batch, nx.Inputs(x, mask), or with "
                "labels as ((x, mask), y)."
            )
        x = _inputs(data[0], "inputs[0]")
        if x.n != y.shape[0]:
            raise ValueError(f"`inputs[0]` has {x.n} samples but `inputs[1]` has {y.shape[0]} labels.")
        return x, y, x, y
    x = _inputs(data, "inputs")
    return x, None, x, None


def _cat(a: Inputs, b: Inputs) -> Inputs:
    """Two batches of the same inputs, one after the other."""
    return Inputs(
        *[torch.cat([u, v]) if isinstance(u, torch.Tensor) else u for u, v in zip(a.args, b.args, strict=True)],
        **{k: torch.cat([u, b.kwargs[k]]) if isinstance(u, torch.Tensor) else u for k, u in a.kwargs.items()},
    )


class DeltaExplorer(RequestWidget):
    """Explore what a layer keeps at δ: spectrum, k(δ), saturation and reconstructions through it.

    Every reconstruction (or prediction) for every distinct ``k`` the δ slider can reach is computed
    once here and sent as uint8 images; the view swaps them locally (no kernel message), so it also
    works in an exported page. Changing ``layer`` or asking for other samples recomputes in the kernel: the
    view sends a request (the :class:`~nbexplain.widgets.base.RequestWidget` protocol, latest wins) and shows
    it is busy; a failed request is shown as ``error`` and leaves the previous layer and samples in place.
    Setting ``layer`` or ``sample_seed`` from Python recomputes too.

    Parameters
    ----------
    model
        An autoencoder (reconstructions are shown) or a classifier returning class scores ``(N, C)``
        (accuracy under projection and per-sample predictions are shown). For sequence or dense outputs
        (language models, segmentation) use :func:`nbexplain.delta_curve` with per-position labels or a
        ``metric=``.
    inputs
        The data: a tensor, an ``(x, y)`` pair of inputs and integer labels, or a
        :class:`nbexplain.data.Dataset` (statistics from its training split, samples and scores from its
        test split). For a model with several inputs: ``nx.Inputs(x, mask)`` or a dict (one batch, no
        labels) or ``((x, mask), y)``; the first input is the one shown (and, for an autoencoder, the one
        its output is compared with). A pair is always read as (inputs, labels).
    layer
        The projected layer. Default: the last layer of ``model.encoder`` for an autoencoder, else the
        last hidden Linear/Conv layer.
    n_samples
        Number of samples shown.
    delta
        Initial δ.
    deltas
        Slider positions (default :func:`slider_deltas`: 0.5 … 0.9999 on a "nines" scale, and 1).
    max_stats_samples, max_eval_samples
        Caps on the samples used for the statistics and for the error/accuracy curves.
    seed
        Seed of the random-subspace control and of sample selection.
    mode
        ``"reconstruction"`` (the output is compared with the shown input), ``"accuracy"`` (class scores
        against the labels), or ``None``: reconstruction when the output has the input's shape, else accuracy.
        A segmentation net whose class maps happen to have the image's shape (3 classes on RGB) is not an
        autoencoder: it is refused in accuracy mode, and ``mode=None`` would show its logits as images, so
        say what the model is.

    Attributes
    ----------
    k, saturation
        At the current Python-side ``delta``.
    precompute_seconds : float
        Time the last precomputation took.
    sample_indices : Tensor
        Indices (into the shown data) of the samples in the grid.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.zoo import dense_autoencoder
    >>> from nbexplain.widgets import DeltaExplorer
    >>> ae = dense_autoencoder(64, (32,), code=8)
    >>> ex = DeltaExplorer(ae, torch.rand(100, 1, 8, 8), n_samples=4)
    >>> ex.layer, ex.mode
    ('encoder.code', 'reconstruction')
    """

    _bundle = "delta_explorer"

    layer = traitlets.Unicode("").tag(sync=True)
    layer_options = traitlets.List(traitlets.Unicode()).tag(sync=True)
    mode = traitlets.Enum(["reconstruction", "accuracy"], default_value="reconstruction").tag(sync=True)
    width = traitlets.Int(0).tag(sync=True)
    delta = traitlets.Float(0.99).tag(sync=True)
    show_random = traitlets.Bool(False).tag(sync=True)
    deltas = TensorTrait("float32", ndim=1)
    k_index = TensorTrait("float32", ndim=1)  # slider position → index into `ks`
    ks = traitlets.List(traitlets.Int()).tag(sync=True)
    eigenvalues = TensorTrait("float32", ndim=1)
    originals = TensorTrait("uint8", ndim=4)
    recon = TensorTrait("uint8", ndim=5)
    recon_random = TensorTrait("uint8", ndim=5)
    predictions = TensorTrait("uint8", ndim=2)
    predictions_random = TensorTrait("uint8", ndim=2)
    labels = traitlets.List(traitlets.Int()).tag(sync=True)
    metric_name = traitlets.Unicode("mse").tag(sync=True)
    metric = TensorTrait("float32", ndim=1)  # per distinct k
    metric_random = TensorTrait("float32", ndim=1)
    baseline = traitlets.Float(0.0).tag(sync=True)
    sample_seed = traitlets.Int(0).tag(sync=True)
    cell_size = traitlets.Int(72, min=16, max=512).tag(sync=True)

    @renamed_arguments(data="inputs", x="inputs")
    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        layer: str | None = None,
        *,
        n_samples: int = 12,
        delta: float = 0.99,
        deltas: Any = None,
        max_stats_samples: int = 4000,
        max_eval_samples: int = 500,
        seed: int = 0,
        cell_size: int = 72,
        max_bytes: int = MAX_IMAGE_BYTES,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.model = model = check_model(model, what="nx.widgets.DeltaExplorer")
        if mode is not None:
            check_choice(mode, "mode", ("reconstruction", "accuracy"))
        self._mode = mode
        self._stats_x, self._stats_y, self._show_x, self._show_y = _unpack(inputs)
        self._stats_x = self._stats_x.rows(slice(0, check_positive_int(max_stats_samples, "max_stats_samples")))
        self._n_samples = check_positive_int(n_samples, "n_samples")
        self._max_eval = check_positive_int(max_eval_samples, "max_eval_samples")
        self._max_bytes = int(max_bytes)
        self._seed = int(seed)
        grid = slider_deltas() if deltas is None else np.asarray(
            [check_fraction(float(d), "deltas") for d in deltas], dtype=np.float64
        )
        if grid.size == 0:
            raise ValueError("`deltas` is empty; pass slider positions in (0, 1].")
        self._grid = np.sort(grid)
        options = list_layers(model)
        if layer is None:
            layer = self._default_layer(model, options)
        resolve_modules(model, [layer], "layer")
        if layer not in options:
            options.append(layer)
        super().__init__(cell_size=cell_size, **kwargs)
        self.stats: Any = None
        self.precompute_seconds = 0.0
        self._serving = False
        with self.hold_sync():
            self.layer_options = options
            self.layer = layer
            self.delta = check_fraction(delta, "delta")
        self._compute()
        self.observe(self._on_request, names=["layer", "sample_seed"])

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _default_layer(model: nn.Module, options: list[str]) -> str:
        enc = getattr(model, "encoder", None)
        if isinstance(enc, nn.Module):
            inner = [f"encoder.{n}" for n in list_layers(enc)]
            if inner:
                return inner[-1]
        if len(options) >= 2:
            return options[-2]
        if options:
            return options[0]
        raise ValueError("`model` has no Linear/Conv layers; pass `layer=` explicitly.")

    def _sample_indices(self) -> torch.Tensor:
        # A seeded random draw (data sets are often sorted by class, so the first samples are not
        # representative); "other samples" increments `sample_seed`.
        n = self._show_x.n
        k = min(self._n_samples, n)
        g = torch.Generator().manual_seed(self._seed * 7919 + int(self.sample_seed))
        return torch.randperm(n, generator=g)[:k].sort().values

    def _on_request(self, change: dict[str, Any]) -> None:
        """``layer`` or ``sample_seed`` set from Python: recompute (the view's requests go through _serve)."""
        if self._serving:
            return
        self.busy = True
        try:
            self._compute()
            self.error = ""
        except Exception as exc:  # shown in the view; the kernel keeps running
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.busy = False

    def _serve(self, content: dict[str, Any]) -> None:
        """The view asks for another layer and/or other samples: ``{"layer": str, "sample_seed": int}``.

        On failure the previous layer and samples (and their precomputed state) are kept and the error
        is raised (shown as ``error`` by :class:`RequestWidget`).
        """
        layer = str(content.get("layer", self.layer))
        if layer not in self.layer_options:
            raise ValueError(f"`layer` {layer!r} is not one of this explorer's layers {self.layer_options}.")
        seed = content.get("sample_seed", self.sample_seed)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"`sample_seed` must be a non-negative int, got {seed!r}.")
        before = (self.layer, self.sample_seed)
        if (layer, seed) == before:
            return
        # _compute writes only these before its one synced write at the end: a failure leaves the rest as it was
        computed = (self.stats, self.sample_indices)
        self._serving = True
        try:
            self.layer, self.sample_seed = layer, seed
            self._compute()
        except Exception:
            self.layer, self.sample_seed = before
            self.stats, self.sample_indices = computed  # the previous state again, without computing it twice
            raise
        finally:
            self._serving = False

    # -------------------------------------------------------------- compute
    def _compute(self) -> None:
        t0 = time.perf_counter()
        model, layer = self.model, self.layer
        self.stats = layer_statistics(model, self._stats_x, [layer])[layer]
        vals = self.stats.eigenvalues.cpu()
        ks_at = [max(intrinsic_dimension(vals, float(d)), 1) for d in self._grid]
        distinct = sorted(set(ks_at))
        k_index = np.array([distinct.index(k) for k in ks_at], dtype=np.float32)
        idx = self._sample_indices()
        self.sample_indices = idx
        shown = self._show_x.rows(idx)
        with preserved(model), torch.no_grad():
            model.eval()
            probe_out = call_model(model, shown.rows(slice(0, 1)).to_model(model), "inputs")
        show = shown.first
        if not isinstance(probe_out, torch.Tensor):
            raise ValueError(
                "DeltaExplorer needs a model that returns one tensor; for tuple or dict outputs use "
                "nx.delta_curve(..., output=...)."
            )
        same = tuple(probe_out.shape[1:]) == tuple(show.shape[1:])
        is_ae = same if self._mode is None else self._mode == "reconstruction"
        if is_ae and not same:
            raise ValueError(
                f"mode='reconstruction' compares the output with the shown input, but the output has shape "
                f"{tuple(probe_out.shape[1:])} per sample and the input {tuple(show.shape[1:])}."
            )
        if not is_ae and probe_out.ndim != 2:
            raise ValueError(
                f"DeltaExplorer shows one predicted class per sample, for class scores (N, C); one sample's output has "
                f"shape {tuple(probe_out.shape[1:])}. For a sequence or dense output use nx.delta_curve(model, inputs, "
                "layer, stats, labels=labels per position or pixel) or its metric=."
            )
        if not is_ae and probe_out.shape[1] > 256:
            raise ValueError(
                f"DeltaExplorer shows predicted classes as 8-bit values, but the model has {probe_out.shape[1]} "
                "classes (at most 256); use nx.delta_curve for the accuracy curve."
            )
        n_eval = min(self._max_eval, self._show_x.n)
        ev_inputs = self._show_x.rows(slice(0, n_eval))
        ev_x = ev_inputs.first
        ev_y = None if self._show_y is None else self._show_y[:n_eval]
        if not is_ae and ev_y is None:
            raise ValueError(
                "The model's output is not shaped like its input (not an autoencoder) and `inputs` has no "
                "labels: pass (x, y) or a Dataset to see accuracy under projection."
            )
        # One pass per distinct k over the shown samples and the evaluation set together.
        both = _cat(shown, ev_inputs)
        eig = projected_outputs(model, both, layer, self.stats, ks=distinct, subspace="eigen", seed=self._seed)
        rnd = projected_outputs(model, both, layer, self.stats, ks=distinct, subspace="random", seed=self._seed)
        n_show = show.shape[0]
        state: dict[str, Any] = {}
        if is_ae:
            def score(out: torch.Tensor) -> float:
                return float((out[n_show:].double() - ev_x.double()).pow(2).mean())

            lo, hi = float(show.min()), float(show.max())
            originals = to_uint8_images(show, value_range=(lo, hi))
            rec = [to_uint8_images(o[:n_show].clamp(lo, hi), value_range=(lo, hi)) for o in eig]
            rec_r = [to_uint8_images(o[:n_show].clamp(lo, hi), value_range=(lo, hi)) for o in rnd]
            recon, recon_random = np.stack(rec), np.stack(rec_r)
            budget = self._max_bytes
            if recon.nbytes + recon_random.nbytes + originals.nbytes > budget:
                kk, nn_, h, w, c = recon.shape
                share = budget // (2 * kk + 1)
                def pool(a: np.ndarray) -> np.ndarray:
                    flat = a.reshape(-1, h, w, c)
                    return downsample_images(flat, share * flat.shape[0] // max(nn_, 1))
                originals = pool(originals)
                recon = pool(recon).reshape(kk, nn_, *originals.shape[1:])
                recon_random = pool(recon_random).reshape(kk, nn_, *originals.shape[1:])
            with torch.no_grad(), preserved(model):
                model.eval()
                plain = call_model(model, ev_inputs.to_model(model), "inputs").cpu()
            state.update(
                mode="reconstruction", metric_name="mse", originals=originals, recon=recon,
                recon_random=recon_random, predictions=np.zeros((0,), np.uint8),
                predictions_random=np.zeros((0,), np.uint8), labels=[],
                baseline=float((plain.double() - ev_x.double()).pow(2).mean()),
            )
        else:
            assert ev_y is not None
            def score(out: torch.Tensor) -> float:
                return float((out[n_show:].argmax(-1) == ev_y).double().mean())

            with torch.no_grad(), preserved(model):
                model.eval()
                plain = call_model(model, ev_inputs.to_model(model), "inputs").cpu()
            labels = [] if self._show_y is None else [int(v) for v in self._show_y[idx]]
            img = show if show.ndim == 4 else show.reshape(show.shape[0], 1, 1, -1)
            state.update(
                mode="accuracy", metric_name="accuracy",
                originals=to_uint8_images(img if img.shape[1] in (1, 3) else img.mean(1, keepdim=True)),
                recon=np.zeros((0,), np.uint8), recon_random=np.zeros((0,), np.uint8),
                predictions=np.stack([o[:n_show].argmax(-1).numpy() for o in eig]).astype(np.uint8),
                predictions_random=np.stack([o[:n_show].argmax(-1).numpy() for o in rnd]).astype(np.uint8),
                labels=labels, baseline=float((plain.argmax(-1) == ev_y).double().mean()),
            )
        metric = np.array([score(o) for o in eig], dtype=np.float32)
        metric_r = np.array([score(o) for o in rnd], dtype=np.float32)
        with self.hold_sync():
            for key, value in state.items():
                setattr(self, key, value)
            self.width = self.stats.n_features
            self.deltas = self._grid.astype(np.float32)
            self.k_index = k_index
            self.ks = distinct
            self.eigenvalues = vals.numpy().astype(np.float32)
            self.metric = metric
            self.metric_random = metric_r
        self.precompute_seconds = time.perf_counter() - t0

    # ---------------------------------------------------------------- results
    @property
    def k(self) -> int:
        """``k(δ)`` at the Python-side ``delta``."""
        return max(intrinsic_dimension(self.stats.eigenvalues.cpu(), self.delta), 1)

    @property
    def saturation(self) -> float:
        """``k / width`` at the Python-side ``delta``."""
        return self.k / self.stats.n_features

    def _repr_fields(self) -> dict[str, Any]:
        return {"layer": repr(self.layer), "mode": self.mode, "width": self.width, "ks": len(self.ks)}
