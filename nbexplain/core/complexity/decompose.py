"""Complexity decomposition of a layer's feature (Ren, Li, Liu, Zhang, ICML 2021).

The feature ``f(x)`` of a chosen layer is explained as a sum of *components of increasing complexity*.
Disentangler networks ``g_l`` with ``l`` non-linear layers (:mod:`nbexplain.core.complexity.disentanglers`) are
trained one after the other, each warm-started from the previous order, to reproduce ``f`` from the
model's input by distillation (MSE). The component of order ``l`` is what the extra depth adds::

    c_l(x) = g_l(x) − g_{l'}(x)        (l' = the previous order in ``orders``; g before the first = 0)

so the components of all orders sum to the deepest fit ``g_L(x)``; ``f − g_L`` is the residual.

Distillation loss: the paper's MSE ``E‖f − g_l(x)‖²`` divided by one constant, the feature's mean
per-element variance over the training samples, so the loss reads ``1 − R²`` whatever the feature's
scale. Units that never vary (dead ReLU units) weigh nothing in it; the disentanglers reproduce them by
their per-element mean (see :func:`nbexplain.core.complexity.disentanglers.feature_stats`), and the result counts
them in ``constant_units``. (Standardising every unit by its own std, as earlier versions did,
let units with a std near 0 dominate: losses of 1e10–1e13 on a trained MLP.)

Features: image inputs with a spatial feature ``(C, H, W)`` get convolutional disentanglers; any other
feature — vectors, token outputs ``(T, D)`` of a transformer layer — dense ones over all its elements
(each token position a set of units, as a conv feature's positions are), with the same metrics.

Metrics, one value per order (all float64):

``energy``
    ``Var(c_l) / Var(f)`` with ``Var(z) = E‖z − E z‖²`` over the training samples used for metrics
    (the paper's energy ratio ρ_l).
``fit_quality`` / ``fit_quality_train``
    ``1 − E‖f − g_l‖² / Var(f)`` (R²) of each cumulative fit on the test / training samples.
``reliability``
    Linear knowledge consistency (Liang et al. 2020, the idea the paper builds on) with a second
    network trained for the same task — the ``reference_model`` (by default the same architecture,
    re-initialised with another seed and trained on the same training set). Exact procedure: take the
    reference network's feature at ``reference_layer`` (default: the same name), average-pooled to the
    analysed feature's spatial size; fit one affine map (ridge 1e-6 · mean eigenvalue, float64 least
    squares, per spatial position for conv features: the ``"channels"`` layout) from it to each
    component ``c_l`` on the training samples; evaluate on the test samples. ``reliability_l = R²``
    of that prediction, clipped to [0, 1]: the fraction of the component's variance that the other
    network also carries, linearly. ``reliability_feature`` is the same for ``f`` itself.
``effectiveness``
    Shapley value of component ``l`` in the game "the network's head (the layers after ``layer``) sees
    a partial sum of components": coalition ``S`` feeds ``h_S = E_train[f] + Σ_{l∈S} (c_l − E_train[c_l])``
    (an absent component is replaced by its mean) and the game's value is the *decrease of the
    training task loss*, ``L_train(∅) − L_train(S)``. By efficiency the values sum to
    ``L_train(∅) − L_train(all)``.
``overfitting``
    Shapley value in the same game for the *test-minus-train loss gap*, ``L_test(S) − L_train(S)``;
    they sum to ``gap(all) − gap(∅)``. Positive: the component widens the generalisation gap.

Shapley values are exact over up to 10 orders (``2**L`` coalitions) and a documented antithetic
permutation-sampling estimate above that (:func:`nbexplain.core.complexity.shapley.shapley_values`).

The task loss is cross-entropy for integer labels and MSE for float targets, or any
``loss(output, y) -> scalar`` (mean over the batch).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
from torch import nn

from .disentanglers import FAMILIES, Disentangler, ElementwiseFit, auto_family, make_disentangler
from .._base.hygiene import model_device, preserved
from .._base.layer_select import resolve_modules
from .._base.model_inputs import InputKey, Inputs, as_inputs, call_model, resolve_wrt
from .._base.model_io import (
    OutputArg,
    check_output_arg,
    check_runnable,
    describe_output,
    probe_output,
    select_output,
)
from .shapley import ShapleyValues, shapley_values
from .._base.validation import (
    check_choice,
    check_finite,
    check_model,
    check_positive_int,
    check_same_samples,
    check_tensor,
)

__all__ = ["decompose_complexity", "ComplexityDecomposition", "DEFAULT_ORDERS"]

#: Default orders: the paper's doubling schedule, shortened for CPU budgets (the paper uses 1 … 32).
DEFAULT_ORDERS = (1, 2, 4, 8)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------------


@dataclass
class ComplexityDecomposition:
    """The result of :func:`decompose_complexity`.

    Attributes
    ----------
    model
        The analysed model (a reference, not a copy).
    layer
        The analysed layer's name.
    orders
        The orders, increasing; every per-order metric is indexed like this tuple.
    disentanglers
        ``{order: Disentangler}``, in eval mode, on the model's device.
    family
        ``"dense"``, ``"conv"`` or ``"custom"``.
    feature_shape, input_shape
        Shape of one sample's feature and of its input the disentanglers read.
    energy, reliability, effectiveness, overfitting
        float64 tensors of shape ``(len(orders),)`` (see the module notes for the exact definitions).
    fit_quality, fit_quality_train
        R² of each cumulative fit ``g_l`` on the test / training samples used for metrics.
    reliability_feature
        Linear consistency (R²) of the whole feature with the reference network's feature.
    history
        ``{order: {"loss": [...], "test_loss": [...], "lr": [...], "seconds": float, "epoch_seconds": [...],
        "epoch_cpu_seconds": [...]}}`` — the training curves and timings. The loss is the MSE divided by
        the feature's mean per-element variance over the training samples, so it reads ``1 − R²``.
    losses
        Task losses: ``"model_train"``/``"model_test"`` (the unmodified network),
        ``"empty_train"``/``"empty_test"`` (head sees the mean feature), ``"full_train"``/``"full_test"``
        (head sees the deepest fit).
    shapley
        The :class:`~nbexplain.core.complexity.shapley.ShapleyValues` of the game ``S ↦ (L_train(S), L_test(S))``.
    reference_model, reference_layer
        The network used for reliability (``None`` when reliability was switched off).
    consistency_maps
        ``{order: (weight, bias)}`` float64 affine maps from the reference feature to each component.
    constant_units
        How many feature elements (one per channel and position for spatial features) do not vary over
        the training samples (variance ≤ 1e-12 × the mean element variance; e.g. dead ReLU units). They
        weigh nothing in the distillation loss and are reproduced by the disentanglers' per-element mean.
    input_key
        For a model with several inputs: the input the disentanglers read (``wrt``; a position or keyword
        name). ``0`` for a model with one input.
    """

    model: nn.Module
    layer: str
    orders: tuple[int, ...]
    disentanglers: dict[int, nn.Module]
    family: str
    feature_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    energy: torch.Tensor
    reliability: torch.Tensor
    effectiveness: torch.Tensor
    overfitting: torch.Tensor
    fit_quality: torch.Tensor
    fit_quality_train: torch.Tensor
    reliability_feature: float
    history: dict[int, dict[str, Any]]
    losses: dict[str, float]
    shapley: Optional[ShapleyValues]
    reference_model: Optional[nn.Module] = None
    reference_layer: Optional[str] = None
    consistency_maps: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    constant_units: int = 0
    input_key: InputKey = 0

    # -- evaluation on new inputs ----------------------------------------------------------------

    def _device(self) -> torch.device:
        for d in self.disentanglers.values():
            for p in d.parameters():
                return p.device
        return torch.device("cpu")

    def _explained(self, x: Any) -> torch.Tensor:
        """The input the disentanglers read: ``x`` itself, or ``x[input_key]`` of several inputs."""
        if isinstance(x, (tuple, list, Mapping, Inputs)):
            batch = as_inputs(tuple(x) if isinstance(x, list) else x, "x")
            if self.input_key not in batch:
                raise ValueError(
                    f"`x` is {batch.describe()}, without the input {self.input_key!r} the disentanglers read."
                )
            label = "x" if batch.single else f"x[{self.input_key!r}]"
            return _check_inputs(batch[self.input_key], label, self.input_shape)
        return _check_inputs(x, "x", self.input_shape)

    @torch.no_grad()
    def reconstructions(self, x: Any, batch_size: int = 256) -> torch.Tensor:
        """The cumulative fits ``g_l(x)`` for every order: ``(len(orders), N, *feature_shape)`` on the CPU.

        ``x`` is the input the disentanglers read; for a model with several inputs, that input alone or all
        of them (a tuple, dict or ``nx.Inputs``, of which ``input_key`` is used).

        Examples
        --------
        >>> res.reconstructions(x_test[:4]).shape  # doctest: +SKIP
        torch.Size([4, 4, 32, 14, 14])
        """
        x = self._explained(x)
        batch_size = check_positive_int(batch_size, "batch_size")
        dev = self._device()
        out = torch.empty(len(self.orders), x.shape[0], *self.feature_shape)
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size].to(device=dev, dtype=torch.float32)
            for i, o in enumerate(self.orders):
                d = self.disentanglers[o]
                was = d.training
                d.eval()
                out[i, s : s + xb.shape[0]] = d(xb).float().cpu()
                d.train(was)
        return out

    def components(self, x: Any, batch_size: int = 256) -> torch.Tensor:
        """The components ``c_l(x)`` of every order: ``(len(orders), N, *feature_shape)`` on the CPU.

        They sum (over the first axis) to the deepest fit ``g_L(x)``.

        Examples
        --------
        >>> c = res.components(x_test[:4])          # doctest: +SKIP
        >>> torch.allclose(c.sum(0), res.reconstructions(x_test[:4])[-1], atol=1e-5)  # doctest: +SKIP
        True
        """
        g = self.reconstructions(x, batch_size)
        c = g.clone()
        c[1:] -= g[:-1]
        return c

    @torch.no_grad()
    def features(self, x: Any, batch_size: int = 256) -> torch.Tensor:
        """The analysed layer's actual feature ``f(x)`` (model in eval mode, left as found); for a model with
        several inputs ``x`` holds all of them (a tuple, dict or ``nx.Inputs``)."""
        x, _ = _model_inputs(x, "x", self.input_key, self.input_shape)
        module = resolve_modules(self.model, self.layer, "layer")[self.layer]
        return _layer_outputs(self.model, module, x, batch_size, self.layer)

    @torch.no_grad()
    def reliable_components(self, x: Any, batch_size: int = 256) -> torch.Tensor:
        """The part of each component predicted from the reference network (``(L, N, *feature_shape)``);
        for a model with several inputs ``x`` holds all of them.

        Raises ``RuntimeError`` when the decomposition was run with ``reference_model=False``.
        """
        if self.reference_model is None or not self.consistency_maps:
            raise RuntimeError("This decomposition has no reference network (reference_model=False).")
        x, _ = _model_inputs(x, "x", self.input_key, self.input_shape)
        ref_mod = resolve_modules(self.reference_model, self.reference_layer, "reference_layer")
        fb = _layer_outputs(self.reference_model, ref_mod[self.reference_layer], x, batch_size, self.reference_layer)
        xb = _consistency_inputs(fb, self.feature_shape)
        out = []
        for o in self.orders:
            w, b = self.consistency_maps[o]
            pred = xb @ w + b
            out.append(_from_rows(pred.float(), x.n, self.feature_shape))
        return torch.stack(out)

    def to(self, device: Union[str, torch.device]) -> "ComplexityDecomposition":
        """Move the disentanglers to ``device`` (in place; returns self)."""
        for d in self.disentanglers.values():
            d.to(device)
        return self

    # -- presentation ------------------------------------------------------------------------------

    def table(self) -> list[dict[str, float]]:
        """One dict per order with every metric (handy for ``pandas.DataFrame(res.table())``)."""
        rows = []
        for i, o in enumerate(self.orders):
            rows.append(
                {
                    "order": o,
                    "energy": float(self.energy[i]),
                    "fit_quality": float(self.fit_quality[i]),
                    "reliability": float(self.reliability[i]),
                    "effectiveness": float(self.effectiveness[i]),
                    "overfitting": float(self.overfitting[i]),
                }
            )
        return rows

    def summary(self) -> str:
        """A plain-text table of the per-order metrics."""
        head = f"{'order':>5} {'energy':>8} {'fit R²':>8} {'reliab.':>8} {'effect.':>9} {'overfit.':>9}"
        lines = [f"complexity decomposition of {self.layer!r} ({self.family} disentanglers)", head]
        for r in self.table():
            lines.append(
                f"{r['order']:>5} {r['energy']:>8.3f} {r['fit_quality']:>8.3f} {r['reliability']:>8.3f} "
                f"{r['effectiveness']:>9.4f} {r['overfitting']:>9.4f}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        e = ", ".join(f"{float(v):.3f}" for v in self.energy)
        return (
            f"ComplexityDecomposition(layer={self.layer!r}, orders={self.orders}, family={self.family!r}, "
            f"energy=[{e}], fit_quality={float(self.fit_quality[-1]):.3f})"
        )


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _check_inputs(x: Any, argname: str, input_shape: Optional[tuple[int, ...]] = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor) and not x.is_floating_point() and not x.is_complex():
        raise TypeError(
            f"`{argname}` has dtype {x.dtype}; decompose_complexity needs float inputs, because the "
            "disentanglers are networks trained on the model's input (token ids cannot be fed to them). For a "
            "text model, decompose a model that starts after the embedding and pass the embedded inputs."
        )
    x = check_tensor(x, argname, min_ndim=2, dtype_kind="float", finite=True)
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"`{argname}` has samples of shape {tuple(x.shape[1:])}, but the decomposition was fitted "
            f"on inputs of shape {tuple(input_shape)}."
        )
    return x


def _model_inputs(
    x: Any, argname: str, wrt: InputKey | None, input_shape: tuple[int, ...] | None = None
) -> tuple[Inputs, InputKey]:
    """The model's inputs as one batch, and the key of the one the disentanglers read (checked: floating,
    finite, of ``input_shape``); every other floating input is checked finite."""
    batch = as_inputs(tuple(x) if isinstance(x, list) else x, argname)
    key = resolve_wrt(batch, wrt, "wrt")
    for k, t in zip(batch.keys, batch.tensors, strict=True):
        label = argname if batch.single else f"{argname}[{k!r}]"
        if k == key:
            _check_inputs(t, label, input_shape)
        else:
            check_finite(t, label)
    return batch, key


def _check_split(value: Any, argname: str, wrt: InputKey | None) -> tuple[Inputs, InputKey, torch.Tensor]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        got = f"a {type(value).__name__} of {len(value)}" if isinstance(value, (tuple, list)) else type(value).__name__
        raise TypeError(
            f"`{argname}` must be a pair (x, y) of inputs and task targets, got {got}. For a model with several "
            f"inputs, group them: {argname}=((x, mask), y), or a dict / nx.Inputs as the first element."
        )
    x, key = _model_inputs(value[0], f"{argname}[0]", wrt)
    y = value[1]
    if isinstance(y, (list, tuple)):
        y = torch.as_tensor(y)
    y = check_tensor(y, f"{argname}[1]", min_ndim=1)
    check_same_samples(x[key], y, (f"{argname}[0]", f"{argname}[1]"))
    if x.n < 2:
        raise ValueError(f"`{argname}` needs at least 2 samples, got {x.n}.")
    return x, key, y


def _check_orders(orders: Any) -> tuple[int, ...]:
    if isinstance(orders, bool):
        raise TypeError("`orders` must be a sequence of non-negative ints such as (1, 2, 4, 8), got a bool.")
    if isinstance(orders, numbers.Integral):
        n = check_positive_int(orders, "orders")
        return tuple(range(1, n + 1))
    if isinstance(orders, torch.Tensor):
        orders = orders.tolist()
    if not isinstance(orders, Sequence) or isinstance(orders, str):
        raise TypeError(
            f"`orders` must be a sequence of non-negative ints such as (1, 2, 4, 8), got {orders!r}."
        )
    if len(orders) == 0:
        raise ValueError("`orders` is empty; pass at least one order, e.g. (1, 2, 4, 8).")
    out = []
    for o in orders:
        if isinstance(o, bool) or not isinstance(o, numbers.Integral):
            raise TypeError(f"`orders` must contain ints (numbers of non-linear layers), got {o!r}.")
        if int(o) < 0:
            raise ValueError(f"`orders` must be ≥ 0 (0 = an affine disentangler), got {o}.")
        out.append(int(o))
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(
            f"`orders` must be strictly increasing (each order warm-starts from the previous), got {tuple(out)}."
        )
    return tuple(out)


def _check_epochs(epochs: Any, n_orders: int) -> tuple[int, ...]:
    if isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool):
        e = check_positive_int(epochs, "epochs")
        return (e,) * n_orders
    if isinstance(epochs, Sequence) and not isinstance(epochs, str):
        if len(epochs) != n_orders:
            raise ValueError(f"`epochs` has {len(epochs)} entries but there are {n_orders} orders; pass one int per order.")
        return tuple(check_positive_int(e, "epochs") for e in epochs)
    raise TypeError(f"`epochs` must be an int or one int per order, got {epochs!r}.")


def _single_forward_hook(module: nn.Module, layer: str, replace: Optional[list] = None):
    """Register a hook that records the module's output (or replaces it by ``replace[0]``)."""
    box: dict[str, Any] = {"calls": 0, "out": None}

    def hook(_m: nn.Module, _i: Any, out: Any) -> Any:
        box["calls"] += 1
        if box["calls"] > 1:
            raise ValueError(
                f"Layer {layer!r} runs more than once per forward pass; choose a layer that runs once."
            )
        if isinstance(out, (tuple, list)) or not isinstance(out, torch.Tensor):
            raise TypeError(f"Layer {layer!r} returns {type(out).__name__}, not a tensor; choose another layer.")
        if replace is not None:
            new = replace[0]
            if tuple(new.shape) != tuple(out.shape):
                raise RuntimeError(
                    f"Replacement for {layer!r} has shape {tuple(new.shape)}, expected {tuple(out.shape)}."
                )
            # a copy: code after the layer may write into its output in place (``out += identity``)
            return new.to(device=out.device, dtype=out.dtype, copy=True)
        # a copy, not ``out.detach()`` (which shares storage): torchvision-style blocks write into a layer's
        # output after the hook has run (``ReLU(inplace=True)``, ``out += identity``); the copy is the value
        # the layer produced. One feature-sized copy per batch, negligible next to the forward pass.
        box["out"] = out.detach().clone()
        return None

    return module.register_forward_hook(hook), box


@torch.no_grad()
def _layer_outputs(
    model: nn.Module, module: nn.Module, x: Inputs | torch.Tensor, batch_size: int, layer: str
) -> torch.Tensor:
    """Outputs of ``module`` for every input (model in eval mode), float32 on the CPU."""
    x = as_inputs(x, "x")
    chunks = []
    with preserved(model):
        model.eval()
        handle, box = _single_forward_hook(module, layer)
        try:
            for b in x.split(batch_size):
                box["calls"], box["out"] = 0, None
                call_model(model, b.to_model(model))
                if box["out"] is None:
                    raise ValueError(
                        f"Layer {layer!r} did not run during the forward pass; choose a layer used by forward()."
                    )
                chunks.append(box["out"].float().cpu())
        finally:
            handle.remove()
    return torch.cat(chunks)


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
    for c, p in zip(classes.tolist(), share.tolist()):
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


def _cross_entropy(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the class axis of nbexplain's output convention: ``(N, C)`` and dense maps
    ``(N, C, H, W)`` (labels ``(N, H, W)``) on axis 1, a 3-D sequence ``(N, T, V)`` on its last axis, with one
    label per position ``(N, T)`` (torch's own convention would read T as the classes)."""
    if out.ndim == 3:
        if tuple(t.shape) != tuple(out.shape[:2]):
            raise ValueError(
                f"the output is a sequence (N, T={out.shape[1]}, V={out.shape[2]}) with its classes last, so the "
                f"labels need one class per position, shape (N, {out.shape[1]}), not {tuple(t.shape)}; reduce the "
                "output to one position with output=lambda out: out[:, -1], or pass loss= a function"
            )
        out = out.movedim(-1, 1)
    return nn.functional.cross_entropy(out, t)


def _resolve_loss(loss: Any, y: torch.Tensor) -> LossFn:
    if callable(loss):
        return loss
    check_choice(loss, "loss", ("auto", "cross_entropy", "mse"))
    if loss == "auto":
        loss = "mse" if y.is_floating_point() else "cross_entropy"
    if loss == "cross_entropy":
        if y.is_floating_point():
            raise TypeError("loss='cross_entropy' needs integer class labels as targets; use y.long().")
        return _cross_entropy

    def mse(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(out, t.to(out.dtype).reshape(out.shape))

    return mse


def _probe_task_loss(
    model: nn.Module, x: Inputs, y: torch.Tensor, output: OutputArg, loss_fn: LossFn
) -> None:
    """One forward pass on two samples: ``output=`` selects a tensor and the task loss accepts it.

    Run before any training, so that a tuple-output model or a mismatched loss fails in a second.
    """
    picked = probe_output(model, x, output)
    try:
        with torch.no_grad():
            value = loss_fn(picked, y[:2].to(picked.device))
    except Exception as err:  # noqa: BLE001 - re-raised with what the model returned
        raise ValueError(
            f"The task loss failed on the selected model output {describe_output(picked)} and targets "
            f"{describe_output(y[:2])}: {err}. Check `loss=` and, for models with several outputs, `output=`."
        ) from err
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError(
            f"The task loss must return a scalar tensor, got {describe_output(value)}; check `loss=`."
        )


@torch.no_grad()
def _head_loss(
    model: nn.Module,
    module: nn.Module,
    layer: str,
    x: Inputs | torch.Tensor,
    y: torch.Tensor,
    feature: Optional[torch.Tensor],
    loss_fn: LossFn,
    batch_size: int,
    output: OutputArg = None,
) -> float:
    """Mean task loss when ``module``'s output is replaced by ``feature`` (or left alone when None)."""
    x = as_inputs(x, "x")
    dev = model_device(model)
    box: list = [None]
    handle, calls = (None, None)
    if feature is not None:
        handle, calls = _single_forward_hook(module, layer, replace=box)
    total, n = 0.0, 0
    try:
        for s in range(0, x.n, batch_size):
            xb = x.rows(slice(s, s + batch_size)).to_model(model)
            if feature is not None:
                box[0] = feature[s : s + batch_size].to(dev)
                calls["calls"] = 0
            out = select_output(call_model(model, xb), output)
            total += float(loss_fn(out, y[s : s + batch_size].to(dev))) * xb.n
            n += xb.n
    finally:
        if handle is not None:
            handle.remove()
    return total / n


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


def _fresh_reference(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every hook removed and every parameter re-initialised under ``seed``."""
    ref = copy.deepcopy(model)
    for mod in ref.modules():
        for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                  "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            if hasattr(mod, d):
                getattr(mod, d).clear()
    for p in ref.parameters():
        p.grad = None
        p.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        n_reset = 0
        for mod in ref.modules():
            if hasattr(mod, "reset_parameters") and callable(mod.reset_parameters):
                mod.reset_parameters()
                n_reset += 1
    if n_reset == 0:
        raise ValueError(
            "Cannot re-initialise a copy of `model` for the reliability reference (none of its modules has "
            "reset_parameters()); pass reference_model=<a second trained network> or reference_model=False."
        )
    return ref


def _train_reference(
    ref: nn.Module, x: Inputs | torch.Tensor, y: torch.Tensor, loss_fn: LossFn, epochs: int, seed: int,
    batch_size: int, progress: bool, output: OutputArg = None,
) -> list[float]:
    from tqdm.auto import tqdm

    x = as_inputs(x, "x")
    dev = model_device(ref)
    opt = torch.optim.Adam([p for p in ref.parameters() if p.requires_grad], lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    ref.train()
    bar = tqdm(range(epochs), desc="reference network", disable=not progress, leave=False)
    for _ in bar:
        order = torch.randperm(x.n, generator=gen)
        total = 0.0
        for s in range(0, x.n, batch_size):
            idx = order[s : s + batch_size]
            if idx.numel() < 2 and x.n > 1:
                continue
            loss = loss_fn(select_output(call_model(ref, x.rows(idx).to_model(ref)), output), y[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        losses.append(total / x.n)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    ref.eval()
    for p in ref.parameters():
        p.grad = None
    return losses


def _train_disentangler(
    d: nn.Module, x: torch.Tensor, f: torch.Tensor, xt: torch.Tensor, ft: torch.Tensor, f_scale: torch.Tensor,
    epochs: int, lr: tuple[float, float], batch_size: int, seed: int, bar_desc: str, progress: bool,
) -> dict[str, Any]:
    """Distil ``f`` into ``d`` by MSE (divided by ``f_scale``²), log-spaced learning rate.

    After every epoch a :class:`Disentangler`'s per-element gain and offset are set by least squares on that
    epoch's mini-batches (:meth:`~nbexplain.core.complexity.disentanglers.Disentangler.refit_affine`).
    """
    from tqdm.auto import tqdm

    dev = next(d.parameters()).device
    scale = f_scale.to(dev)
    refit = isinstance(d, Disentangler)
    opt = torch.optim.Adam(d.parameters(), lr=lr[0])
    gen = torch.Generator().manual_seed(seed)
    hist: dict[str, Any] = {
        "loss": [], "test_loss": [], "lr": [], "seconds": 0.0, "epoch_seconds": [], "epoch_cpu_seconds": [],
    }
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), desc=bar_desc, disable=not progress, leave=False)
    for e in bar:
        rate = lr[0] * (lr[1] / lr[0]) ** (e / (epochs - 1)) if epochs > 1 else lr[0]
        for g in opt.param_groups:
            g["lr"] = rate
        te, ce = time.perf_counter(), time.process_time()
        d.train()
        order = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        fit = ElementwiseFit() if refit else None
        for s in range(0, x.shape[0], batch_size):
            idx = order[s : s + batch_size]
            xb, fb = x[idx].to(dev), f[idx].to(dev)
            if fit is not None:
                u = d.raw(xb)
                fit.add(u, d.standardise(fb))
                pred = d.finish(u)
            else:
                pred = d(xb)
            loss = (((pred - fb) / scale) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        if fit is not None and fit.n >= 2:
            d.refit_affine(fit)
        hist["epoch_seconds"].append(time.perf_counter() - te)
        hist["epoch_cpu_seconds"].append(time.process_time() - ce)
        hist["loss"].append(total / x.shape[0])
        hist["lr"].append(rate)
        d.eval()
        with torch.no_grad():
            tl = 0.0
            for s in range(0, xt.shape[0], 512):
                xb, fb = xt[s : s + 512].to(dev), ft[s : s + 512].to(dev)
                tl += float((((d(xb) - fb) / scale) ** 2).mean()) * xb.shape[0]
            hist["test_loss"].append(tl / xt.shape[0])
        bar.set_postfix(loss=f"{hist['loss'][-1]:.4f}", test=f"{hist['test_loss'][-1]:.4f}")
    for p in d.parameters():
        p.grad = None
    d.eval()
    hist["seconds"] = time.perf_counter() - t0
    return hist


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------


def decompose_complexity(
    model: nn.Module,
    layer: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    orders: Union[int, Sequence[int]] = DEFAULT_ORDERS,
    epochs: Union[int, Sequence[int]] = 10,
    seed: int = 0,
    *,
    family: Union[str, Callable[[int, Optional[nn.Module]], nn.Module]] = "auto",
    width: Optional[int] = None,
    kernel_size: int = 3,
    lr: tuple[float, float] = (1e-3, 1e-5),
    batch_size: int = 64,
    reference_model: Union[None, bool, nn.Module] = None,
    reference_layer: Optional[str] = None,
    reference_epochs: int = 2,
    loss: Union[str, LossFn] = "auto",
    metric_samples: int = 1000,
    shapley: str = "auto",
    shapley_permutations: int = 200,
    resume: Optional[ComplexityDecomposition] = None,
    progress: bool = True,
    output: OutputArg = None,
    wrt: InputKey | None = None,
) -> ComplexityDecomposition:
    """Decompose a layer's feature into components of increasing complexity (Ren et al., ICML 2021).

    Parameters
    ----------
    model
        The trained network (any ``nn.Module``); it is left exactly as found.
    layer
        Name of the layer whose output is decomposed (see :func:`nbexplain.layers`); it must run once per
        forward pass.
    train, test
        ``(x, y)`` pairs: inputs and task targets (class indices, or float targets for regression). The
        disentanglers are trained on ``train[0]``; ``test`` is used for test curves, fit quality,
        reliability and the overfitting metric. For a model with several inputs ``x`` is a tuple
        (positional, ``model(x, mask)``), a dict (keyword) or ``nx.Inputs``: ``train=((x, mask), y)``; the
        model gets all of them, the disentanglers read one (``wrt``).
    orders
        Increasing numbers of non-linear layers of the disentanglers (0 = affine), e.g. ``(1, 2, 4, 8)``;
        an int ``n`` means ``1 … n``.
    epochs
        Training epochs per order (an int, or one per order).
    seed
        Seeds initialisation, mini-batch order, the default reference network and Shapley sampling (the
        global RNG is left alone).
    family
        ``"auto"`` (conv disentanglers for image inputs with a spatial feature, dense otherwise, e.g. for a
        transformer layer's ``(T, D)`` tokens),
        ``"dense"``, ``"conv"``, or a callable ``factory(order, previous)`` returning an ``nn.Module``
        that maps inputs to features (``previous`` is the trained module of the previous order or
        ``None``; warm-start from it yourself).
    width
        Hidden width (default: max(32, feature channels) for conv, 256 for dense).
    kernel_size
        Kernel of the conv blocks.
    lr
        ``(start, end)``: Adam's learning rate decays log-linearly over each order's epochs (the paper's
        1e-3 → 1e-5).
    batch_size
        Mini-batch size for distillation.
    reference_model
        A second network trained for the same task, used for reliability. ``None`` (default): a copy of
        ``model`` re-initialised with ``seed + 1`` and trained for ``reference_epochs`` epochs (Adam,
        lr 1e-3, batch 64) on ``train``. ``False``: skip reliability (NaN).
    reference_layer
        The reference network's layer to compare with (default: ``layer``).
    reference_epochs
        Epochs for the default reference network.
    loss
        Task loss for effectiveness and overfitting: ``"auto"`` (cross-entropy for integer targets, MSE
        for float), ``"cross_entropy"``, ``"mse"`` or ``loss(output, y) -> scalar``. Cross-entropy reads the
        classes where the attribution targets do: axis 1 of ``(N, C)`` and of dense maps ``(N, C, H, W)``
        (labels ``(N, H, W)``), the last axis of a sequence ``(N, T, V)`` (labels ``(N, T)``).
    metric_samples
        How many training and test samples the metrics use: the first ones, or for class labels the
        first of every class in the training split's class proportions (same class mix on both sides).
    shapley
        ``"auto"`` (exact up to 10 orders), ``"exact"`` or ``"permutation"``.
    shapley_permutations
        Orders sampled by the permutation estimate.
    resume
        A previous result for the same model and layer: its trained disentanglers are reused for the
        orders they cover (and as the warm start of new, deeper ones), as is its reference network.
    progress
        Progress bars over orders and epochs.
    output
        For models that return a tuple, dict or output object: which tensor the task loss reads (an index,
        a key or attribute name, or a callable on the model's output; see
        :func:`nbexplain.core._base.model_io.select_output`). Checked with one forward pass before any training.
    wrt
        For a model with several inputs: the input the disentanglers read (a position or keyword name;
        default the first), a floating tensor. The components are functions of that input alone; what the
        feature owes to the other inputs stays in the residual ``f − g_L`` (see ``fit_quality``).

    Returns
    -------
    ComplexityDecomposition
        With ``.components(x)``, ``.energy``, ``.reliability``, ``.effectiveness``, ``.overfitting``,
        ``.fit_quality``, ``.history`` … (see the module notes for the exact definitions).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(256, 4), torch.randint(0, 3, (256,))
    >>> res = nx.decompose_complexity(net, "1", (x[:200], y[:200]), (x[200:], y[200:]),
    ...                               orders=(0, 1, 2), epochs=2, width=16, progress=False,
    ...                               reference_model=False)
    >>> res.components(x[:5]).shape, res.energy.shape
    (torch.Size([3, 5, 8]), torch.Size([3]))
    """
    from tqdm.auto import tqdm

    model = check_runnable(check_model(model, what="nx.decompose_complexity"))
    output = check_output_arg(output)
    if not isinstance(layer, str):
        raise TypeError(f"`layer` must be one layer name (str), got {type(layer).__name__}.")
    module = resolve_modules(model, layer, "layer")[layer]
    x_tr, key, y_tr = _check_split(train, "train", wrt)
    x_te, _, y_te = _check_split(test, "test", key)
    if x_tr.keys != x_te.keys:
        raise ValueError(f"`train` and `test` hold different inputs: {x_tr.describe()} vs {x_te.describe()}.")
    if tuple(x_tr[key].shape[1:]) != tuple(x_te[key].shape[1:]):
        raise ValueError(
            f"`train` and `test` inputs differ in shape: {tuple(x_tr[key].shape[1:])} vs "
            f"{tuple(x_te[key].shape[1:])}."
        )
    orders = _check_orders(orders)
    epoch_list = _check_epochs(epochs, len(orders))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be an int, got {seed!r}.")
    seed = int(seed)
    custom = callable(family) and not isinstance(family, str)
    if not custom:
        check_choice(family, "family", FAMILIES)
    if width is not None:
        width = check_positive_int(width, "width")
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    if kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` must be odd (so that blocks keep the spatial size), got {kernel_size}.")
    if (
        not isinstance(lr, (tuple, list)) or len(lr) != 2
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0 for v in lr)
    ):
        raise ValueError(f"`lr` must be a pair (start, end) of positive numbers, got {lr!r}.")
    lr = (float(lr[0]), float(lr[1]))
    batch_size = check_positive_int(batch_size, "batch_size")
    reference_epochs = check_positive_int(reference_epochs, "reference_epochs")
    metric_samples = check_positive_int(metric_samples, "metric_samples")
    check_choice(shapley, "shapley", ("auto", "exact", "permutation"))
    shapley_permutations = check_positive_int(shapley_permutations, "shapley_permutations")
    if reference_model is not None and reference_model is not False and not isinstance(reference_model, nn.Module):
        raise TypeError(
            "`reference_model` must be a second trained nn.Module, None (train one) or False (skip reliability), "
            f"got {type(reference_model).__name__}."
        )
    if reference_model is True:
        reference_model = None
    loss_fn = _resolve_loss(loss, y_tr)
    if reference_model is not None and reference_model is not False:
        reference_model = check_runnable(
            check_model(reference_model, "reference_model", what="nx.decompose_complexity"), "reference_model"
        )
    _probe_task_loss(model, x_tr, y_tr, output, loss_fn)
    if resume is not None and not isinstance(resume, ComplexityDecomposition):
        raise TypeError(f"`resume` must be a previous ComplexityDecomposition, got {type(resume).__name__}.")

    dev = model_device(model)
    settings = {
        "family": family if not custom else "custom", "width": width, "kernel_size": kernel_size,
        "lr": lr, "batch_size": batch_size, "seed": seed, "epochs": dict(zip(orders, epoch_list)),
        "metric_samples": metric_samples, "loss": loss if isinstance(loss, str) else "custom",
    }
    # the disentanglers are float32 networks on the model's device, whatever the model's dtype
    xd_tr, xd_te = x_tr[key].float(), x_te[key].float()

    with preserved(model):
        model.eval()
        f_tr = _layer_outputs(model, module, x_tr, 256, layer)
        f_te = _layer_outputs(model, module, x_te, 256, layer)
        feature_shape = tuple(f_tr.shape[1:])
        input_shape = tuple(xd_tr.shape[1:])
        if custom:
            fam = "custom"
        else:
            fam = auto_family(input_shape, feature_shape) if family == "auto" else family
            if fam == "conv" and (len(input_shape) != 3 or len(feature_shape) != 3):
                raise ValueError(
                    f"family='conv' needs image inputs (C, H, W) and a spatial layer output (C, H, W); got "
                    f"input {input_shape} and feature {feature_shape}. Use family='dense' or 'auto'."
                )
        if width is None:
            width = max(32, feature_shape[0]) if fam == "conv" else 256
            settings["width"] = width

        if resume is not None:
            if resume.layer != layer or tuple(resume.feature_shape) != feature_shape:
                raise ValueError(
                    f"`resume` decomposed layer {resume.layer!r} with feature shape {resume.feature_shape}; "
                    f"this call asks for {layer!r} with {feature_shape}. Resume only the same layer."
                )
            if resume.input_key != key:
                raise ValueError(
                    f"`resume` distilled from input {resume.input_key!r}, this call from {key!r} (`wrt`)."
                )
            if resume.family != fam:
                raise ValueError(f"`resume` used family {resume.family!r}, this call {fam!r}.")
            if fam != "custom" and resume.settings.get("width") != width:
                raise ValueError(f"`resume` used width {resume.settings.get('width')}, this call {width}.")

        # one scale for the whole distillation loss: the paper's MSE divided by the feature's mean
        # per-element variance, so the loss reads 1 − R² and units that never vary weigh nothing
        elem_var = f_tr.double().var(dim=0, unbiased=False)
        mean_var = float(elem_var.mean())
        if not mean_var > 0:
            raise ValueError(
                f"The output of {layer!r} is constant on the training samples; nothing to decompose. "
                "Choose another layer or more varied inputs."
            )
        f_scale = torch.tensor(math.sqrt(mean_var), dtype=torch.float32)
        constant_units = int((elem_var <= (1e-6) ** 2 * mean_var).sum())

        # ---------------- train the disentanglers, order by order ----------------
        trained: dict[int, nn.Module] = {}
        history: dict[int, dict[str, Any]] = {}
        previous_pool: dict[int, nn.Module] = dict(resume.disentanglers) if resume is not None else {}
        stat_idx = torch.randperm(x_tr.n, generator=torch.Generator().manual_seed(seed))[:4096]
        outer = tqdm(orders, desc=f"complexity of {layer}", disable=not progress)
        for i, o in enumerate(outer):
            outer.set_postfix(order=o)
            if o in previous_pool:
                trained[o] = previous_pool[o].to(dev)
                history[o] = resume.history.get(o, {}) if resume is not None else {}
                continue
            below = [k for k in list(trained) + list(previous_pool) if k < o]
            prev = None
            if below:
                k_prev = max(below)
                prev = trained[k_prev] if k_prev in trained else previous_pool[k_prev]
            init_seed = seed * 7919 + o
            if custom:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(init_seed)
                    d = family(o, prev)
                if not isinstance(d, nn.Module):
                    raise TypeError(f"`family({o}, previous)` must return an nn.Module, got {type(d).__name__}.")
                d = d.to(dev)
            elif prev is not None and isinstance(prev, Disentangler):
                d = prev.grow(o, generator_seed=init_seed)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(init_seed)
                    d = make_disentangler(fam, o, xd_tr[stat_idx], f_tr[stat_idx], width, kernel_size)
                d = d.to(dev)
            with torch.no_grad():
                probe = d(xd_tr[:2].to(dev))
            if tuple(probe.shape[1:]) != feature_shape:
                raise ValueError(
                    f"The order-{o} disentangler outputs samples of shape {tuple(probe.shape[1:])}, "
                    f"but {layer!r} outputs {feature_shape}."
                )
            history[o] = _train_disentangler(
                d, xd_tr, f_tr, xd_te, f_te, f_scale, epoch_list[i], lr, batch_size,
                seed * 7919 + 104729 + o, f"order {o}", progress,
            )
            trained[o] = d
        outer.close()

        # ---------------- metrics on the metric samples ----------------
        i_tr, i_te = _metric_indices(y_tr, y_te, metric_samples)
        xm_tr, ym_tr, fm_tr = x_tr.rows(i_tr), y_tr[i_tr], f_tr[i_tr]
        xm_te, ym_te, fm_te = x_te.rows(i_te), y_te[i_te], f_te[i_te]
        result = ComplexityDecomposition(
            model=model, layer=layer, orders=orders, disentanglers=trained, family=fam,
            feature_shape=feature_shape, input_shape=input_shape,
            energy=torch.empty(0), reliability=torch.empty(0), effectiveness=torch.empty(0),
            overfitting=torch.empty(0), fit_quality=torch.empty(0), fit_quality_train=torch.empty(0),
            reliability_feature=float("nan"), history=history, losses={}, shapley=None, settings=settings,
            constant_units=constant_units, input_key=key,
        )
        g_tr = result.reconstructions(xm_tr[key])
        g_te = result.reconstructions(xm_te[key])
        c_tr = g_tr.clone()
        c_tr[1:] -= g_tr[:-1]
        c_te = g_te.clone()
        c_te[1:] -= g_te[:-1]

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

        # ---------------- reliability (linear knowledge consistency) ----------------
        ref = None
        ref_layer = reference_layer if reference_layer is not None else layer
        if reference_model is False:
            result.reliability = torch.full((len(orders),), float("nan"), dtype=torch.float64)
        else:
            if reference_model is not None:
                ref = check_model(reference_model, "reference_model")
            elif resume is not None and resume.reference_model is not None and resume.reference_layer == ref_layer:
                ref = resume.reference_model
            else:
                ref = _fresh_reference(model, seed + 1).to(dev)
                _train_reference(ref, x_tr, y_tr, loss_fn, reference_epochs, seed + 1, 64, progress, output)
            ref_module = resolve_modules(ref, ref_layer, "reference_layer")[ref_layer]
            with preserved(ref):
                fb_tr = _layer_outputs(ref, ref_module, xm_tr, 256, ref_layer)
                fb_te = _layer_outputs(ref, ref_module, xm_te, 256, ref_layer)
            xr_tr = _consistency_inputs(fb_tr, feature_shape)
            xr_te = _consistency_inputs(fb_te, feature_shape)
            rel = []
            for k, o in enumerate(orders):
                w, b = _fit_affine(xr_tr, _to_rows(c_tr[k], feature_shape))
                result.consistency_maps[o] = (w, b)
                r = _r2(_to_rows(c_te[k], feature_shape), xr_te @ w + b)
                rel.append(min(1.0, max(0.0, r)) if not math.isnan(r) else r)
            result.reliability = torch.tensor(rel, dtype=torch.float64)
            w, b = _fit_affine(xr_tr, _to_rows(fm_tr, feature_shape))
            result.reliability_feature = min(1.0, max(0.0, _r2(_to_rows(fm_te, feature_shape), xr_te @ w + b)))
            result.reference_model, result.reference_layer = ref, ref_layer

        # ---------------- effectiveness & overfitting (Shapley over components) ----------------
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
            game, len(orders), method=shapley, n_permutations=shapley_permutations, seed=seed, progress=progress
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
    return result
