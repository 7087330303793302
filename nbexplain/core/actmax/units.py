"""Which units an activation-maximization call is about: unit arguments, sequence-head pairs, a layer's units.

- :func:`as_units`: a unit argument (an int or a 1-D sequence of ints) as a long tensor.
- :func:`sequence_units`: ``(position, token)`` pairs on a sequence output head ``(N, T, V)``.
- :func:`unit_count`: how many units (features; channels for conv maps) a features-first output shape has.
- :func:`check_input_shape`: one input's shape, without the batch dimension.
- :func:`layer_units`: every unit index of a layer, found with one forward pass (what ``unit=None`` means).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._base.hygiene import model_device, model_dtype, preserved
from .._base.layer_select import resolve_modules
from .._base.model_inputs import InputKey
from .._base.model_io import check_runnable
from .._base.validation import check_model
from .feed import FixedInputs
from .runner import probe

__all__ = ["as_units", "sequence_units", "unit_count", "check_input_shape", "layer_units"]


def as_units(unit: int | Sequence[int] | torch.Tensor, argname: str = "unit") -> torch.Tensor:
    """``unit``, an int or a non-empty 1-D sequence of ints, as a 1-D long tensor."""
    if isinstance(unit, bool):
        raise TypeError(f"`{argname}` must be an int or a sequence of ints, got a bool.")
    if isinstance(unit, numbers.Integral):
        return torch.tensor([int(unit)], dtype=torch.long)
    t = torch.as_tensor(unit)
    if t.is_floating_point() or t.ndim > 1 or t.numel() == 0:
        raise TypeError(f"`{argname}` must be an int or a non-empty 1-D sequence of ints, got {unit!r}.")
    return t.reshape(-1).long()


def unit_count(shape: Sequence[int]) -> int:
    """Units of a features-first output shape ``(N, F, …)``: ``F`` (channels of a conv map); 1 for ``(N,)``."""
    return int(shape[1]) if len(shape) >= 2 else 1


def sequence_units(unit: Any, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``unit`` on a sequence output head (features first ``(1, V, T)``): ``(position, token)`` pairs, as
    (positions, tokens). A bare unit would not say which position, so it is refused naming the axes."""
    vocab, t_len = int(shape[1]), int(shape[2])

    def is_int(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    pairs: Any = None
    if isinstance(unit, tuple) and len(unit) == 2 and all(is_int(v) for v in unit):
        pairs = [unit]
    elif isinstance(unit, (list, tuple)) and unit and all(
        isinstance(p, tuple) and len(p) == 2 and all(is_int(v) for v in p) for p in unit
    ):
        pairs = list(unit)
    elif isinstance(unit, torch.Tensor) and unit.ndim == 2 and unit.shape[1] == 2 and not unit.is_floating_point():
        pairs = [tuple(int(v) for v in row) for row in unit.tolist()]
    if pairs is None:
        example = min(40, vocab - 1)
        hint = ""
        if isinstance(unit, list) and len(unit) == 2 and all(is_int(v) for v in unit):
            hint = f" (a list is several units; write one pair as a tuple, unit={tuple(unit)})"
        raise ValueError(
            f"The model's output is a sequence, (N, T={t_len}, V={vocab}) — positions × tokens — so `unit` must "
            f"name a (position, token) pair, e.g. unit=(-1, {example}) for token {example} at the last position, "
            f"or a list of pairs, one image each; got {unit!r}{hint}. objective='channel' maximises a token's "
            "logit averaged over all positions instead."
        )
    positions = torch.tensor([int(p) for p, _ in pairs], dtype=torch.long)
    tokens = torch.tensor([int(t) for _, t in pairs], dtype=torch.long)
    bad = tokens[(tokens < 0) | (tokens >= vocab)]
    if bad.numel():
        raise ValueError(
            f"token {int(bad[0])} is outside the vocabulary axis (V={vocab}) of the model's output "
            f"(N, T={t_len}, V={vocab}); tokens are 0 … {vocab - 1}."
        )
    return positions, tokens


def check_input_shape(input_shape: Any) -> tuple[int, ...]:
    """``input_shape``: one input's shape without the batch dimension, as a tuple of positive ints."""
    if isinstance(input_shape, torch.Size):
        input_shape = tuple(input_shape)
    if not isinstance(input_shape, (tuple, list)) or not input_shape or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in input_shape
    ):
        raise ValueError(
            f"`input_shape` must be one input's shape without the batch dimension, e.g. (1, 28, 28), got "
            f"{input_shape!r}."
        )
    return tuple(int(s) for s in input_shape)


def layer_units(
    model: nn.Module,
    layer: str,
    input_shape: Sequence[int],
    *,
    inputs: Any = None,
    wrt: InputKey | None = None,
) -> list[int]:
    """Every unit index of ``layer`` — what ``unit=None`` means in :func:`nbexplain.maximize_activation` and
    :func:`nbexplain.top_activating`: its features, or its channels for a conv map (features first).

    One no-grad forward pass on a blank input finds the layer's output shape; the model runs in eval mode
    and is left exactly as found.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.
    layer
        The layer name (see :func:`nbexplain.list_layers`).
    input_shape
        One input's shape without the batch dimension, e.g. ``(1, 28, 28)``.
    inputs, wrt
        For a model with several inputs, as in :func:`nbexplain.maximize_activation`: all of them, with
        ``None`` at ``wrt`` (the input of shape ``input_shape``).

    Returns
    -------
    list[int]
        ``[0, 1, …, n_units - 1]``.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax import layer_units
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(4 * 6 * 6, 3))
    >>> layer_units(net, "1", (1, 8, 8)), layer_units(net, "3", (1, 8, 8))
    ([0, 1, 2, 3], [0, 1, 2])
    """
    model = check_runnable(check_model(model, what="nbexplain.core.actmax.layer_units"))
    if not isinstance(layer, str):
        raise TypeError(f"`layer` must be a layer name (str), got {layer!r}.")
    resolve_modules(model, [layer], "layer")
    shape = check_input_shape(input_shape)
    feed = FixedInputs(inputs, wrt, shape, model)
    with preserved(model):
        model.eval()
        shapes, _ = probe(model, [layer], shape, model_device(model), model_dtype(model), feed)
    return list(range(unit_count(shapes[layer])))
