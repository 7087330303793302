"""Per-order metrics of the decomposition: energy, fit quality, reliability (linear knowledge consistency
with a reference network) and the Shapley game behind effectiveness and overfitting (see
:mod:`nbexplain.core.complexity.decompose` for the definitions)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .._base.hygiene import preserved
from .._base.layer_select import resolve_modules
from .._base.model_inputs import Inputs
from .shapley import shapley_values
from .task import _head_loss, _layer_outputs


def _metric_indices(y_tr: torch.Tensor, y_te: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the samples used for metrics: the first ``n`` of each split, or — for class labels —
    the first samples of every class in the training split's class proportions, so that the train and
    test subsets have the same class mix (otherwise the constant-feature baseline of the Shapley game
    shows a train/test loss gap that is only due to different class mixes)."""
    if y_tr.is_floating_point() or y_tr.ndim != 1 or y_te.ndim != 1:
        return torch.arange(min(n, y_tr.shape[0])), torch.arange(min(n, y_te.shape[0]))
    classes, counts = torch.unique(y_tr, return_counts=True)
    share = counts.double() / counts.sum()
    sel_tr, sel_te = [], []
    n_each = min(n, y_tr.shape[0], y_te.shape[0])
    for c, p in zip(classes.tolist(), share.tolist(), strict=True):
        k = int(round(p * n_each))
        idx_tr = torch.nonzero(y_tr == c).flatten()
        idx_te = torch.nonzero(y_te == c).flatten()
        k = min(k, idx_tr.numel(), idx_te.numel())
        sel_tr.append(idx_tr[:k])
        sel_te.append(idx_te[:k])
    i_tr, i_te = torch.sort(torch.cat(sel_tr)).values, torch.sort(torch.cat(sel_te)).values
    if i_tr.numel() < 2 or i_te.numel() < 2:  # classes barely overlap: fall back to the first samples
        return torch.arange(min(n, y_tr.shape[0])), torch.arange(min(n, y_te.shape[0]))
    return i_tr, i_te

def _consistency_inputs(fb: torch.Tensor, feature_shape: tuple[int, ...]) -> torch.Tensor:
    """Reference feature → rows of regressors matching the analysed feature's rows (float64)."""
    fb = fb.double()
    if len(feature_shape) == 3:
        if fb.ndim != 4:
            raise ValueError(
                "The analysed feature is spatial (C, H, W) but the reference layer's output has shape "
                f"{tuple(fb.shape[1:])}; choose a spatial reference_layer."
            )
        if tuple(fb.shape[2:]) != tuple(feature_shape[1:]):
            fb = nn.functional.adaptive_avg_pool2d(fb, feature_shape[1:])
        return fb.movedim(1, -1).reshape(-1, fb.shape[1])
    return fb.reshape(fb.shape[0], -1)


def _to_rows(t: torch.Tensor, feature_shape: tuple[int, ...]) -> torch.Tensor:
    if len(feature_shape) == 3:
        return t.double().movedim(1, -1).reshape(-1, feature_shape[0])
    return t.double().reshape(t.shape[0], -1)


def _from_rows(rows: torch.Tensor, n: int, feature_shape: tuple[int, ...]) -> torch.Tensor:
    if len(feature_shape) == 3:
        c, h, w = feature_shape
        return rows.reshape(n, h, w, c).movedim(-1, 1)
    return rows.reshape(n, *feature_shape)


def _fit_affine(xr: torch.Tensor, yr: torch.Tensor, ridge: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge least squares ``y ≈ x W + b`` in float64 (ridge relative to the mean eigenvalue)."""
    mx, my = xr.mean(0), yr.mean(0)
    xc, yc = xr - mx, yr - my
    gram = xc.T @ xc
    lam = ridge * float(gram.diagonal().mean().clamp_min(1e-30))
    w = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), xc.T @ yc)
    return w, my - mx @ w


def _r2(target: torch.Tensor, pred: torch.Tensor) -> float:
    """``1 − E‖t − p‖² / E‖t − E t‖²`` (rows = samples), float64."""
    t, p = target.double(), pred.double()
    sst = float(((t - t.mean(0)) ** 2).sum())
    if sst <= 0:
        return float("nan")
    return 1.0 - float(((t - p) ** 2).sum()) / sst


def _variance(t: torch.Tensor) -> float:
    """``E‖z − E z‖²`` over the first axis, float64."""
    t = t.double().reshape(t.shape[0], -1)
    return float(((t - t.mean(0)) ** 2).sum(1).mean())



def _fit_metrics(
    result: Any, layer: str, fm_tr: torch.Tensor, fm_te: torch.Tensor, g_tr: torch.Tensor, g_te: torch.Tensor,
    c_tr: torch.Tensor,
) -> None:
    """``energy`` and the fit qualities (R² of each cumulative fit) of ``result``, from the fits ``g`` and
    the training components ``c_tr``."""
    var_f = _variance(fm_tr)
    if var_f <= 0:
        raise ValueError(f"The output of {layer!r} is constant on the training samples; nothing to decompose.")
    result.energy = torch.tensor([_variance(c) / var_f for c in c_tr], dtype=torch.float64)
    ftr_rows = fm_tr.double().reshape(fm_tr.shape[0], -1)
    fte_rows = fm_te.double().reshape(fm_te.shape[0], -1)
    result.fit_quality_train = torch.tensor(
        [_r2(ftr_rows, g.double().reshape(g.shape[0], -1)) for g in g_tr], dtype=torch.float64
    )
    result.fit_quality = torch.tensor(
        [_r2(fte_rows, g.double().reshape(g.shape[0], -1)) for g in g_te], dtype=torch.float64
    )


def _components(g: torch.Tensor) -> torch.Tensor:
    """Components ``c_l = g_l − g_{l'}`` from the cumulative fits ``g`` (orders on the first axis)."""
    c = g.clone()
    c[1:] -= g[:-1]
    return c


def _reliability(
    result: Any, ref: nn.Module, ref_layer: str, xm_tr: Inputs, xm_te: Inputs, c_tr: torch.Tensor,
    c_te: torch.Tensor, fm_tr: torch.Tensor, fm_te: torch.Tensor,
) -> None:
    """Linear knowledge consistency of every component (and of the feature) with ``ref``'s feature at
    ``ref_layer``: the affine maps, ``reliability`` and ``reliability_feature`` of ``result``."""
    feature_shape = result.feature_shape
    ref_module = resolve_modules(ref, ref_layer, "reference_layer")[ref_layer]
    with preserved(ref):
        fb_tr = _layer_outputs(ref, ref_module, xm_tr, 256, ref_layer)
        fb_te = _layer_outputs(ref, ref_module, xm_te, 256, ref_layer)
    xr_tr = _consistency_inputs(fb_tr, feature_shape)
    xr_te = _consistency_inputs(fb_te, feature_shape)
    rel = []
    for k, o in enumerate(result.orders):
        w, b = _fit_affine(xr_tr, _to_rows(c_tr[k], feature_shape))
        result.consistency_maps[o] = (w, b)
        r = _r2(_to_rows(c_te[k], feature_shape), xr_te @ w + b)
        rel.append(min(1.0, max(0.0, r)) if not math.isnan(r) else r)
    result.reliability = torch.tensor(rel, dtype=torch.float64)
    w, b = _fit_affine(xr_tr, _to_rows(fm_tr, feature_shape))
    result.reliability_feature = min(1.0, max(0.0, _r2(_to_rows(fm_te, feature_shape), xr_te @ w + b)))
    result.reference_model, result.reference_layer = ref, ref_layer


def _shapley_metrics(
    result: Any, call: Any, xm_tr: Inputs, ym_tr: torch.Tensor, fm_tr: torch.Tensor, c_tr: torch.Tensor,
    xm_te: Inputs, ym_te: torch.Tensor, fm_te: torch.Tensor, c_te: torch.Tensor,
) -> None:
    """``effectiveness``, ``overfitting``, ``shapley`` and ``losses`` of ``result``: Shapley values of the
    components in the game "the head sees a partial sum of components" (train and test task loss)."""
    model, module, layer, loss_fn, output = call.model, call.module, call.layer, call.loss_fn, call.output
    mu = fm_tr.mean(0, keepdim=True)
    cbar = c_tr.mean(1, keepdim=True)
    cc_tr, cc_te = c_tr - cbar, c_te - cbar

    def game(coalition: frozenset) -> torch.Tensor:
        h_tr = mu.expand_as(fm_tr).clone()
        h_te = mu.expand_as(fm_te).clone()
        for k in coalition:
            h_tr += cc_tr[k]
            h_te += cc_te[k]
        return torch.tensor(
            [
                _head_loss(model, module, layer, xm_tr, ym_tr, h_tr, loss_fn, 256, output),
                _head_loss(model, module, layer, xm_te, ym_te, h_te, loss_fn, 256, output),
            ],
            dtype=torch.float64,
        )

    sv = shapley_values(
        game, len(result.orders), method=call.shapley, n_permutations=call.shapley_permutations, seed=call.seed,
        progress=call.progress,
    )
    result.shapley = sv
    result.effectiveness = -sv.values[:, 0].clone()
    result.overfitting = (sv.values[:, 1] - sv.values[:, 0]).clone()
    result.losses = {
        "model_train": _head_loss(model, module, layer, xm_tr, ym_tr, None, loss_fn, 256, output),
        "model_test": _head_loss(model, module, layer, xm_te, ym_te, None, loss_fn, 256, output),
        "empty_train": float(sv.empty[0]),
        "empty_test": float(sv.empty[1]),
        "full_train": float(sv.full[0]),
        "full_test": float(sv.full[1]),
    }
