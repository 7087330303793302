"""Argument checks of :func:`~nbexplain.core.complexity.decompose.decompose_complexity`: the inputs the
disentanglers read, the ``(x, y)`` splits, orders, epochs, and the whole call (:func:`_check_call`)."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from .._base.layer_select import resolve_modules
from .._base.machinery import check_progress
from .._base.model_inputs import InputKey, Inputs, as_inputs, resolve_wrt
from .._base.model_io import OutputArg, check_output_arg, check_runnable
from .._base.validation import (
    check_choice,
    check_finite,
    check_model,
    check_positive_int,
    check_same_samples,
    check_tensor,
)
from .disentanglers import FAMILIES
from .task import LossFn, _probe_task_loss, _resolve_loss


def _check_inputs(x: Any, argname: str, input_shape: tuple[int, ...] | None = None) -> torch.Tensor:
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
    if any(b <= a for a, b in itertools.pairwise(out)):
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



@dataclass
class _Call:
    """The checked arguments of one ``decompose_complexity`` call."""

    model: nn.Module
    layer: str
    module: nn.Module
    output: OutputArg
    x_tr: Inputs
    y_tr: torch.Tensor
    x_te: Inputs
    y_te: torch.Tensor
    key: InputKey
    orders: tuple[int, ...]
    epochs: tuple[int, ...]
    seed: int
    family: Any
    custom: bool
    width: int | None
    kernel_size: int
    lr: tuple[float, float]
    batch_size: int
    reference_model: Union[None, bool, nn.Module]
    reference_layer: str | None
    reference_epochs: int
    loss: Any
    loss_fn: LossFn
    metric_samples: int
    shapley: str
    shapley_permutations: int
    resume: Any
    progress: bool | None


def _check_lr(lr: Any) -> tuple[float, float]:
    if (
        not isinstance(lr, (tuple, list)) or len(lr) != 2
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0 for v in lr)
    ):
        raise ValueError(f"`lr` must be a pair (start, end) of positive numbers, got {lr!r}.")
    return (float(lr[0]), float(lr[1]))


def _check_reference(reference_model: Any) -> Union[None, bool, nn.Module]:
    if reference_model is not None and reference_model is not False and not isinstance(reference_model, nn.Module):
        raise TypeError(
            "`reference_model` must be a second trained nn.Module, None (train one) or False (skip reliability), "
            f"got {type(reference_model).__name__}."
        )
    return None if reference_model is True else reference_model


def _check_call(
    model: Any, layer: Any, train: Any, test: Any, orders: Any, epochs: Any, *, seed: Any, family: Any,
    width: Any, kernel_size: Any, lr: Any, batch_size: Any, reference_model: Any, reference_layer: Any,
    reference_epochs: Any, loss: Any, metric_samples: Any, shapley: Any, shapley_permutations: Any,
    resume: Any, progress: Any, output: Any, wrt: Any,
) -> _Call:
    """Every argument of ``decompose_complexity`` checked, in the order the errors are reported, and one
    forward pass that checks ``output=`` and the task loss."""
    from .result import ComplexityResult  # imports this module

    model = check_runnable(check_model(model, what="nx.decompose_complexity"))
    output = check_output_arg(output)
    if isinstance(train, str):
        raise TypeError(
            f"decompose_complexity(): the second argument is `train` (an (inputs, labels) pair), got the string "
            f"{train!r}; the order is decompose_complexity(model, train, test, layer, *, ...)."
        )
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
    custom = callable(family) and not isinstance(family, str)
    if not custom:
        check_choice(family, "family", FAMILIES)
    if width is not None:
        width = check_positive_int(width, "width")
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    if kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` must be odd (so that blocks keep the spatial size), got {kernel_size}.")
    lr = _check_lr(lr)
    batch_size = check_positive_int(batch_size, "batch_size")
    reference_epochs = check_positive_int(reference_epochs, "reference_epochs")
    metric_samples = check_positive_int(metric_samples, "metric_samples")
    check_choice(shapley, "shapley", ("auto", "exact", "permutation"))
    shapley_permutations = check_positive_int(shapley_permutations, "shapley_permutations")
    reference_model = _check_reference(reference_model)
    progress = check_progress(progress)
    loss_fn = _resolve_loss(loss, y_tr)
    if reference_model is not None and reference_model is not False:
        reference_model = check_runnable(
            check_model(reference_model, "reference_model", what="nx.decompose_complexity"), "reference_model"
        )
    _probe_task_loss(model, x_tr, y_tr, output, loss_fn)
    if resume is not None and not isinstance(resume, ComplexityResult):
        raise TypeError(f"`resume` must be a previous ComplexityResult, got {type(resume).__name__}.")
    return _Call(
        model=model, layer=layer, module=module, output=output, x_tr=x_tr, y_tr=y_tr, x_te=x_te, y_te=y_te,
        key=key, orders=orders, epochs=epoch_list, seed=int(seed), family=family, custom=custom, width=width,
        kernel_size=kernel_size, lr=lr, batch_size=batch_size, reference_model=reference_model,
        reference_layer=reference_layer, reference_epochs=reference_epochs, loss=loss, loss_fn=loss_fn,
        metric_samples=metric_samples, shapley=shapley, shapley_permutations=shapley_permutations,
        resume=resume, progress=progress,
    )
