"""The task side of the decomposition: the task loss, and the network's head fed a replaced feature.

A forward hook on the analysed layer records its output (:func:`_layer_outputs`) or replaces it
(:func:`_head_loss`, the value of the Shapley game's coalitions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._base.hygiene import model_device, preserved
from .._base.machinery import Handles, batch_slices
from .._base.model_inputs import Inputs, as_inputs, call_model
from .._base.model_io import OutputArg, describe_output, probe_output, select_output
from .._base.validation import check_choice

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _single_forward_hook(module: nn.Module, layer: str, replace: list | None = None):
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
    with preserved(model), Handles() as hooks:
        model.eval()
        handle, box = _single_forward_hook(module, layer)
        hooks.add(handle)
        for b in x.split(batch_size):
            box["calls"], box["out"] = 0, None
            call_model(model, b.to_model(model))
            if box["out"] is None:
                raise ValueError(
                    f"Layer {layer!r} did not run during the forward pass; choose a layer used by forward()."
                )
            chunks.append(box["out"].float().cpu())
    return torch.cat(chunks)


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
    feature: torch.Tensor | None,
    loss_fn: LossFn,
    batch_size: int,
    output: OutputArg = None,
) -> float:
    """Mean task loss when ``module``'s output is replaced by ``feature`` (or left alone when None)."""
    x = as_inputs(x, "x")
    dev = model_device(model)
    box: list = [None]
    total, n = 0.0, 0
    with Handles() as hooks:
        if feature is not None:
            handle, calls = _single_forward_hook(module, layer, replace=box)
            hooks.add(handle)
        for sl in batch_slices(x.n, batch_size):
            xb = x.rows(sl).to_model(model)
            if feature is not None:
                box[0] = feature[sl].to(dev)
                calls["calls"] = 0
            out = select_output(call_model(model, xb), output)
            total += float(loss_fn(out, y[sl].to(dev))) * xb.n
            n += xb.n
    return total / n

