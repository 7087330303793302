"""Forward passes for activation maximization: the model run with the objective's layers captured.

- :class:`Runner`: runs the model and collects the objective's layers (features first), with its hooks
  registered once per call and, after a first pass, an early exit at the last needed layer.
- :func:`probe`: one no-grad pass on a blank input — the layers' output shapes and execution order.
- :class:`SelectedOutput`: the user's model with its selected output exposed as a layer, for ``layer=None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._base.capturing import capture, features_first
from .._base.layer_select import resolve_modules
from .._base.machinery import Handles
from .._base.model_inputs import Inputs, call_model
from .._base.model_io import OutputArg, StopForward, select_output
from .feed import FixedInputs

__all__ = ["Runner", "probe", "SelectedOutput"]


class Runner:
    """Runs the model and collects the objective's layers; hooks live exactly as long as the context."""

    def __init__(self, model: nn.Module, layers: Sequence[str], early_exit: bool) -> None:
        self.model = model
        self.layer_names = list(layers)
        self.modules = resolve_modules(model, self.layer_names, "layer")
        self.early_exit = early_exit
        self._hooks = Handles()
        self._armed = False
        self.forward_calls = 0

    def __enter__(self) -> Runner:
        self._capture = capture(self.model, self.layer_names, detach=False)
        self.outputs = self._capture.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._hooks.remove()
        finally:
            self._armed = False
            self._capture.__exit__(*exc)

    def arm_early_exit(self, order: list[str]) -> None:
        """After a first pass: stop at the last needed layer when each ran exactly once."""
        if not self.early_exit or self._armed:
            return
        if any(len(self.outputs.calls.get(n, [])) != 1 for n in self.layer_names):
            return
        last = self.modules[order[-1]]

        def stop(_m: nn.Module, _i: Any, _o: Any) -> None:
            raise StopForward

        self._hooks.add(last.register_forward_hook(stop))
        self._armed = True

    def __call__(self, batch: Inputs) -> dict[str, torch.Tensor]:
        self.outputs.clear()
        self.forward_calls += 1
        try:
            call_model(self.model, batch)
        except StopForward:
            pass
        missing = [n for n in self.layer_names if n not in self.outputs]
        if missing:
            raise RuntimeError(
                f"Layer(s) {missing} did not run during the forward pass; choose layers used by model.forward."
            )
        return features_first(self.outputs, self.outputs.layouts)


def probe(model: nn.Module, layers: Sequence[str], input_shape: tuple[int, ...], device: torch.device,
          dtype: torch.dtype, feed: FixedInputs | None = None,
          layouts: dict[str, str] | None = None) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """One forward pass on a blank input (with the fixed other inputs of ``feed``): output shapes of the layers
    (features first), and their order of execution; ``layouts``, when given, receives each layer's resolved
    layout."""
    order: list[str] = []
    with torch.no_grad(), capture(model, list(layers)) as out:
        x = torch.zeros((1, *input_shape), device=device, dtype=dtype)
        batch = feed(x) if feed is not None else Inputs(x)
        try:
            call_model(model, batch)
        except Exception as err:  # the user's model rejected the shape: say so clearly
            how = "" if batch.single else f" (called as {batch.describe()})"
            raise ValueError(
                f"The model rejected an input of shape {tuple(x.shape)} built from "
                f"input_shape={tuple(input_shape)} (one input's shape, without the batch dimension){how}: "
                f"{type(err).__name__}: {err}"
            ) from err
        for name in layers:
            if name not in out:
                raise ValueError(
                    f"Layer {name!r} did not run during the forward pass; choose a layer used by model.forward."
                )
        for name in out.calls:
            order.append(name)
    # capture fills dicts in hook order: re-derive the execution order from insertion order
    moved = features_first({n: out[n] for n in layers}, out.layouts)
    if layouts is not None:
        layouts.update(out.layouts)
    return {n: tuple(moved[n].shape) for n in layers}, order


class SelectedOutput(nn.Module):
    """The user's model with its selected output exposed as a layer (``"output"``), for ``layer=None``."""

    LAYER = "output"

    def __init__(self, model: nn.Module, output: OutputArg) -> None:
        super().__init__()
        self.model = model
        self.selector = output
        self.output = nn.Identity()

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:  # noqa: D102
        return self.output(select_output(self.model(*args, **kwargs), self.selector))
