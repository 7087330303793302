"""The model's other inputs while activation maximization optimises one of them.

A model with several inputs (``forward(image, mask)``, ``forward(x, cond=c)``) is maximised with respect to one
input, ``wrt``; the others are held fixed: ``maximize_activation(..., inputs=(None, mask), wrt=0)``. Each fixed
tensor has one row (shared by every optimised image) or one row per image; values that are not tensors are
passed unchanged. :class:`FixedInputs` builds the :class:`~nbexplain.core._base.model_inputs.Inputs` of every forward
pass around the optimised batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .._base.model_inputs import InputKey, Inputs, _as_tensor
from .._base.model_io import model_input
from .._base.validation import check_finite

__all__ = ["FixedInputs"]

_HOW = (
    "pass the model's inputs as a tuple (positional), a dict (keyword) or nx.Inputs, with None (or a placeholder "
    "tensor) at the optimised input, e.g. inputs=(None, mask) or inputs={'x': None, 'mask': mask}"
)


class FixedInputs:
    """The inputs held fixed around the optimised one.

    Parameters
    ----------
    inputs
        ``None`` (the model takes one input), or every input of the model as a tuple, a dict or an
        :class:`~nbexplain.core._base.model_inputs.Inputs`. The value at ``wrt`` is replaced by the optimised batch:
        it may be ``None`` or a tensor of the optimised input's shape (its values are not used); a keyword
        ``wrt`` may also be left out of a dict.
    wrt
        The optimised input: a position (int) or keyword name (str). Default: position 0, or the first keyword
        when there are no positional inputs.
    input_shape
        One optimised input's shape, without the batch axis.
    model
        The model (fixed tensors go to its device; floating ones to its dtype).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.feed import FixedInputs
    >>> mask = torch.ones(1, 4, 4)
    >>> feed = FixedInputs((None, mask), None, (1, 4, 4), torch.nn.Linear(1, 1))
    >>> feed.check_batch(3)
    >>> feed(torch.zeros(3, 1, 4, 4))
    Inputs(Tensor(3, 1, 4, 4) float32, Tensor(3, 4, 4) float32)
    """

    def __init__(self, inputs: Any, wrt: InputKey | None, input_shape: tuple[int, ...], model: nn.Module) -> None:
        if inputs is None:
            if wrt is not None:
                raise ValueError(
                    f"`wrt`={wrt!r} chooses one of several inputs, but `inputs` is None; {_HOW}, or leave `wrt` out "
                    "for a model with one input."
                )
            self.args: list[Any] = [None]
            self.kwargs: dict[str, Any] = {}
            self.key: InputKey = 0
            return
        if isinstance(inputs, Inputs):
            args, kwargs = list(inputs.args), dict(inputs.kwargs)
        elif isinstance(inputs, tuple):
            args, kwargs = list(inputs), {}
        elif isinstance(inputs, Mapping):
            bad = [k for k in inputs if not isinstance(k, str)]
            if bad:
                raise TypeError(f"`inputs` is a dict whose keys must be the forward's keyword names, got {bad!r}.")
            args, kwargs = [], dict(inputs)
        else:
            raise TypeError(
                f"`inputs` holds the model's other inputs, held fixed while one is optimised: {_HOW}; got "
                f"{type(inputs).__name__}."
            )
        key = self._key(wrt, args, kwargs)
        args = [_as_tensor(a) for a in args]
        kwargs = {k: _as_tensor(v) for k, v in kwargs.items()}
        placeholder = args[key] if isinstance(key, int) else kwargs.get(key)
        if isinstance(placeholder, torch.Tensor) and tuple(placeholder.shape[1:]) != tuple(input_shape):
            raise ValueError(
                f"`inputs` holds a tensor of shape {tuple(placeholder.shape)} at the optimised input `wrt`={key!r}, "
                f"but input_shape={tuple(input_shape)}; pass None there (its values are not used), or fix "
                "input_shape."
            )

        def fixed(label: str, v: Any) -> Any:
            if not isinstance(v, torch.Tensor):
                return v
            if v.ndim == 0:
                raise ValueError(
                    f"`inputs{label}` is a scalar tensor; a fixed input needs a batch axis: 1 row (shared by every "
                    "optimised image) or one row per image."
                )
            v = model_input(v, model)
            check_finite(v, f"inputs{label}")
            return v

        self.args = [None if i == key else fixed(f"[{i}]", a) for i, a in enumerate(args)]
        self.kwargs = {k: None if k == key else fixed(f"[{k!r}]", v) for k, v in kwargs.items()}
        self.key = key

    @staticmethod
    def _key(wrt: Any, args: list[Any], kwargs: dict[str, Any]) -> InputKey:
        if wrt is None:
            if args:
                return 0
            if kwargs:
                return next(iter(kwargs))
            raise ValueError(f"`inputs` is empty; {_HOW}.")
        if isinstance(wrt, bool) or not isinstance(wrt, (int, str)):
            raise TypeError(f"`wrt` must be an input's position (int) or keyword name (str), got {wrt!r}.")
        if isinstance(wrt, int):
            if not -len(args) <= wrt < len(args):
                raise ValueError(
                    f"`wrt`={wrt} is no position of the {len(args)} positional `inputs`; {_HOW}."
                )
            return wrt % len(args)
        return wrt  # a keyword: replaced when present, added when left out

    def check_batch(self, batch: int) -> None:
        """Every fixed tensor has 1 row or ``batch`` rows (one per optimised image)."""
        items = [(f"[{i}]", a) for i, a in enumerate(self.args)] + [(f"[{k!r}]", v) for k, v in self.kwargs.items()]
        for label, v in items:
            if isinstance(v, torch.Tensor) and v.shape[0] not in (1, batch):
                raise ValueError(
                    f"`inputs{label}` has {v.shape[0]} rows; a fixed input needs 1 row (shared by every optimised "
                    f"image) or one row per image ({batch} here: units × images_per_unit, grouped by unit)."
                )

    @property
    def single(self) -> bool:
        """Whether the model takes only the optimised input."""
        return len(self.args) == 1 and not self.kwargs

    def __call__(self, x: torch.Tensor) -> Inputs:
        """The model's inputs with ``x`` (``n`` rows: 1 for a probe, or the whole batch) at ``wrt``."""
        n = x.shape[0]

        def rows(v: Any) -> Any:
            if not isinstance(v, torch.Tensor) or v.shape[0] == n:
                return v
            return v[:n] if v.shape[0] > n else v.expand(n, *v.shape[1:]).contiguous()

        args = [x if i == self.key else rows(a) for i, a in enumerate(self.args)]
        kwargs = {k: rows(v) for k, v in self.kwargs.items()}
        if isinstance(self.key, str):
            kwargs[self.key] = x
        return Inputs(*args, **kwargs)
