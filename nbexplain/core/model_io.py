"""Feeding a model and reading what it returns, the same way in every entry point.

- :func:`select_output`: one ``output=`` selector for models that return a tuple, a dict, a NamedTuple or an
  object with attributes (an index, a key/attribute name, or a callable on the model's output).
- :func:`check_output_arg`: validates the selector itself before any work.
- :func:`check_runnable`: a clear error for a model whose weights live on the ``meta`` device.
- :func:`model_input`: inputs to the model's device; floating inputs to the model's floating dtype; integer
  inputs (token ids) and bool masks keep their dtype.
- :func:`probe_output`: one forward pass on the first samples that checks the selected output has one row
  per sample, run before any heavy work so a wrong ``output=`` fails in a second, not after training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Union

import torch
from torch import nn

from .hygiene import model_device, model_dtype, preserved

__all__ = [
    "OutputArg",
    "describe_output",
    "check_output_arg",
    "select_output",
    "check_runnable",
    "model_input",
    "probe_output",
]

#: What ``output=`` accepts: ``None`` (the model returns a tensor), an index, a key/attribute name, or a callable.
OutputArg = Union[None, int, str, Callable[[Any], torch.Tensor]]

_HOW = (
    "pass `output=` to choose the tensor to explain: an index (output=0), a key or attribute name "
    "(output='logits') or a function of the model's output (output=lambda out: out[0])"
)


def _describe_one(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    return type(value).__name__


def describe_output(raw: Any) -> str:
    """A one-line description of what a model returned, e.g. ``tuple of 2: [0] Tensor(8, 10) float32, …``."""
    if isinstance(raw, torch.Tensor):
        return _describe_one(raw)
    fields = getattr(raw, "_fields", None)
    if isinstance(raw, tuple) and fields is not None:  # a NamedTuple
        inner = ", ".join(f"{f}={_describe_one(getattr(raw, f))}" for f in fields)
        return f"{type(raw).__name__}({inner})"
    if isinstance(raw, (tuple, list)):
        inner = ", ".join(f"[{i}] {_describe_one(v)}" for i, v in enumerate(raw))
        return f"{type(raw).__name__} of {len(raw)}: {inner}"
    if isinstance(raw, Mapping):
        inner = ", ".join(f"{k!r}: {_describe_one(v)}" for k, v in raw.items())
        return f"{type(raw).__name__} with {inner}"
    return f"an object of type {type(raw).__name__}"


def check_output_arg(output: Any, argname: str = "output") -> OutputArg:
    """Validate an ``output=`` selector's type (the model is not run)."""
    if output is None or isinstance(output, str) or callable(output):
        return output
    if isinstance(output, bool) or not isinstance(output, int):
        raise TypeError(
            f"`{argname}` must be None, an int index, a str key or attribute name, or a callable on the "
            f"model's output; got {output!r}."
        )
    return output


def select_output(raw: Any, output: OutputArg = None, argname: str = "output") -> torch.Tensor:
    """Pick the tensor to explain from whatever the model returned.

    Parameters
    ----------
    raw
        The model's return value.
    output
        ``None`` (``raw`` must be a tensor), an index into a tuple/list, a key of a dict or the name of
        an attribute (NamedTuple fields, output objects with attributes), or a callable ``raw -> Tensor``.

    Raises
    ------
    ValueError
        Naming what the model returned and how to choose, when the selector does not fit.
    """
    if output is None:
        if isinstance(raw, torch.Tensor):
            return raw
        raise ValueError(f"The model returned {describe_output(raw)}; {_HOW}.")
    if callable(output) and not isinstance(output, str):
        picked = output(raw)
        where = f"`{argname}` (a callable)"
    elif isinstance(output, str):
        if isinstance(raw, Mapping):
            if output not in raw:
                raise ValueError(
                    f"`{argname}`={output!r} is not a key of what the model returned "
                    f"({describe_output(raw)}); use one of {list(raw.keys())}."
                )
            picked = raw[output]
        elif hasattr(raw, output) and not isinstance(raw, torch.Tensor):
            picked = getattr(raw, output)
        else:
            raise ValueError(
                f"`{argname}`={output!r} names no key or attribute of what the model returned "
                f"({describe_output(raw)}); {_HOW}."
            )
        where = f"`{argname}`={output!r}"
    else:
        if not isinstance(raw, (tuple, list)):
            raise ValueError(
                f"`{argname}`={output!r} is an index, but the model returned {describe_output(raw)}, "
                f"which cannot be indexed; {_HOW}."
            )
        if not -len(raw) <= output < len(raw):
            raise ValueError(
                f"`{argname}`={output!r} is out of range: the model returned {describe_output(raw)}."
            )
        picked = raw[output]
        where = f"`{argname}`={output!r}"
    if not isinstance(picked, torch.Tensor):
        raise ValueError(
            f"{where} selected {describe_output(picked)}, not a tensor; the model returned "
            f"{describe_output(raw)}."
        )
    return picked


def check_runnable(model: nn.Module, argname: str = "model") -> nn.Module:
    """Refuse a model whose parameters or buffers live on the ``meta`` device (they hold no values)."""
    for t in (*model.parameters(), *model.buffers()):
        if t.device.type == "meta":
            raise ValueError(
                f"`{argname}` has parameters on the 'meta' device, which hold no values, so it cannot run. "
                "Materialise it first, e.g. model.to_empty(device='cpu') followed by "
                "model.load_state_dict(...), or build it outside torch.device('meta')."
            )
    return model


def model_input(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``x`` on the model's device; floating ``x`` in the model's floating dtype.

    Integer inputs (token ids for an ``nn.Embedding``) and bool masks keep their dtype.
    """
    device = model_device(model)
    if x.is_floating_point():
        return x.to(device=device, dtype=model_dtype(model))
    return x.to(device=device)


def probe_output(
    model: nn.Module, x: torch.Tensor, output: OutputArg = None, argname: str = "output", samples: int = 2
) -> torch.Tensor:
    """Run the model once on the first ``samples`` rows of ``x`` and return the selected output.

    Checks that the selection is a tensor with one row per sample, so a wrong ``output=`` (or a model that
    reduces over the batch) is reported before any heavy work. The model's state is left as found.
    """
    xs = model_input(x[:samples], model)
    with preserved(model), torch.no_grad():
        model.eval()
        picked = select_output(model(xs), output, argname)
    if picked.ndim == 0 or picked.shape[0] != xs.shape[0]:
        raise ValueError(
            f"The selected model output has shape {tuple(picked.shape)} for a batch of {xs.shape[0]} samples; "
            f"it must have one row per sample (batch first). Choose another tensor with `{argname}`."
        )
    return picked
