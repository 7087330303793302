"""Models with several inputs: one batch of positional and keyword tensors, batched along the first axis.

Many models take more than one input — ``forward(x, mask)``, ``forward(input_ids, attention_mask=...)``,
``forward(x, lengths)``. nbexplain passes them as one :class:`Inputs` batch, so that every entry point slices,
expands (SmoothGrad's noisy copies, integrated gradients' path points) and moves them together, and calls
``model(*args, **kwargs)``.

The conventions, the same in every entry point that takes data (``inputs=``, ``x=``, ``data=``):

- a **tensor** (or numpy array) is one input, batched along its first axis;
- a **tuple** of tensors is the positional inputs of *one* batch, ``model(*inputs)``;
- a **dict** of tensors is keyword inputs of one batch, ``model(**inputs)``;
- :class:`Inputs` ``(x, mask, lengths=l)`` says both explicitly;
- a **list, DataLoader or other iterable** yields batches. Each item is a tensor, a dict or an
  :class:`Inputs` (the model's inputs), or a tuple/list ``(inputs, label, …)``: the *first* element is what the
  model gets (itself a tensor, a tuple of tensors, a dict or an :class:`Inputs`), the rest are labels and are
  not passed to the model. So a DataLoader that yields ``(x, mask, y)`` must yield ``((x, mask), y)`` instead.

Every tensor in one batch must have the same first-axis size ``N`` (one row per sample). Values that are not
tensors (``None``, numbers, strings, flags) are passed to the model unchanged with every batch. A tensor that is
not batched (e.g. one causal mask shared by all samples) belongs in the model: bind it in a small wrapper
module. Attribution methods explain one of the inputs (``wrt=``: a position or a keyword name; the first input
by default); the others are held fixed, sliced and expanded row by row with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Union

import torch
from torch import nn

from .machinery import batch_slices, is_nbexplain_code

__all__ = ["Inputs", "InputKey", "as_inputs", "iter_inputs", "resolve_wrt", "call_note", "call_model"]

#: A position in the positional inputs or a keyword name.
InputKey = Union[int, str]


def _describe(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"Tensor{tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
    return repr(v) if isinstance(v, (int, float, bool, str, type(None))) else type(v).__name__


def _as_tensor(v: Any) -> Any:
    if type(v).__module__.startswith("numpy") and hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
        return torch.as_tensor(v)
    return v


class Inputs:
    """One batch of model inputs — positional and keyword — batched together along the first axis.

    Parameters
    ----------
    *args
        Positional inputs, ``model(*args, ...)``. Tensors (and numpy arrays) are batched along dim 0; other
        values are passed unchanged with every batch.
    **kwargs
        Keyword inputs, ``model(..., **kwargs)``, the same way.

    Raises
    ------
    ValueError
        When there is no tensor, a tensor is a scalar, or the tensors disagree on the batch size.

    Examples
    --------
    >>> import torch
    >>> from nbexplain import Inputs
    >>> batch = Inputs(torch.zeros(4, 3), mask=torch.ones(4, 3, dtype=torch.bool))
    >>> len(batch), batch.keys
    (4, [0, 'mask'])
    >>> batch.rows(slice(0, 2))
    Inputs(Tensor(2, 3) float32, mask=Tensor(2, 3) bool)
    """

    __slots__ = ("args", "kwargs", "n")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args: tuple[Any, ...] = tuple(_as_tensor(a) for a in args)
        self.kwargs: dict[str, Any] = {k: _as_tensor(v) for k, v in kwargs.items()}
        sizes: dict[str, int] = {}
        for key, v in self._items():
            if isinstance(v, torch.Tensor):
                if v.ndim == 0:
                    raise ValueError(
                        f"Input {self._label(key)} is a scalar tensor; every tensor input needs a batch axis "
                        "(N, …). Pass constants as Python numbers, or bind them in a wrapper module."
                    )
                sizes[self._label(key)] = int(v.shape[0])
        if not sizes:
            raise ValueError("Inputs holds no tensor; pass at least one batched tensor (N, …).")
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{k}: {s}" for k, s in sizes.items())
            raise ValueError(
                f"The inputs of one batch must share their first-axis size (one row per sample), got {listed}. "
                "A tensor shared by all samples (e.g. a causal mask) belongs in the model: bind it in a wrapper "
                "module. For several batches pass a list or a DataLoader instead of a tuple."
            )
        self.n: int = next(iter(sizes.values()))

    # -- structure ------------------------------------------------------------------------------------

    def _items(self) -> Iterator[tuple[InputKey, Any]]:
        yield from enumerate(self.args)
        yield from self.kwargs.items()

    @staticmethod
    def _label(key: InputKey) -> str:
        return f"[{key}]" if isinstance(key, int) else repr(key)

    @property
    def keys(self) -> list[InputKey]:
        """The keys of the tensor inputs: positions (int) and keyword names (str), in call order."""
        return [k for k, v in self._items() if isinstance(v, torch.Tensor)]

    @property
    def tensors(self) -> list[torch.Tensor]:
        """The tensor inputs, in call order."""
        return [v for _, v in self._items() if isinstance(v, torch.Tensor)]

    @property
    def single(self) -> bool:
        """True for one positional tensor and nothing else (the plain ``model(x)`` case)."""
        return len(self.args) == 1 and not self.kwargs

    @property
    def first(self) -> torch.Tensor:
        """The first tensor input."""
        return self.tensors[0]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: InputKey) -> Any:
        """The input at a position (int) or keyword (str)."""
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"An input is chosen by position (int) or keyword (str), got {key!r}.")
        if isinstance(key, int):
            if not -len(self.args) <= key < len(self.args):
                raise KeyError(key)
            return self.args[key]
        return self.kwargs[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, int) and not isinstance(key, bool):
            return -len(self.args) <= key < len(self.args)
        return key in self.kwargs

    def __repr__(self) -> str:
        parts = [_describe(a) for a in self.args] + [f"{k}={_describe(v)}" for k, v in self.kwargs.items()]
        return f"Inputs({', '.join(parts)})"

    def describe(self) -> str:
        """How the model is called with these inputs, e.g. ``model(Tensor(8, 3) float32, mask=…)``."""
        return "model" + repr(self)[len("Inputs"):]

    # -- transforms (all return a new Inputs) ---------------------------------------------------------

    def map(self, fn: Callable[[InputKey, torch.Tensor], torch.Tensor]) -> Inputs:
        """Apply ``fn(key, tensor)`` to every tensor input; other values are kept."""
        args = [fn(i, a) if isinstance(a, torch.Tensor) else a for i, a in enumerate(self.args)]
        kwargs = {k: fn(k, v) if isinstance(v, torch.Tensor) else v for k, v in self.kwargs.items()}
        return Inputs(*args, **kwargs)

    def rows(self, idx: Any) -> Inputs:
        """The samples ``idx`` (a slice, an index tensor or list; repeated indices expand the batch)."""
        if isinstance(idx, (list, tuple)):
            idx = torch.as_tensor(idx, dtype=torch.long)

        def pick(_k: InputKey, t: torch.Tensor) -> torch.Tensor:
            return t[idx.to(t.device)] if isinstance(idx, torch.Tensor) else t[idx]

        return self.map(pick)

    def repeat_interleave(self, repeats: int) -> Inputs:
        """Every sample repeated ``repeats`` times in place (rows ``0,0,…,1,1,…``), as for noisy copies."""
        return self.map(lambda _k, t: t.repeat_interleave(repeats, dim=0))

    def replace(self, key: InputKey, value: Any) -> Inputs:
        """A copy with the input ``key`` replaced by ``value`` (its batch size may differ only if all do)."""
        args, kwargs = list(self.args), dict(self.kwargs)
        if isinstance(key, int):
            args[key] = value
        else:
            kwargs[key] = value
        return Inputs(*args, **kwargs)

    def to_model(self, model: nn.Module) -> Inputs:
        """Every tensor on the model's device; floating tensors in the model's floating dtype (integer ids
        and bool masks keep theirs)."""
        from .model_io import model_input

        return self.map(lambda _k, t: model_input(t, model))

    def to(self, device: torch.device | str) -> Inputs:
        """Every tensor on ``device``."""
        return self.map(lambda _k, t: t.to(device))

    def split(self, batch_size: int) -> Iterator[Inputs]:
        """Consecutive batches of at most ``batch_size`` samples."""
        for rows in batch_slices(self.n, batch_size):
            yield self.rows(rows)

    def call(self, model: Callable[..., Any]) -> Any:
        """``model(*args, **kwargs)``."""
        return model(*self.args, **self.kwargs)


def as_inputs(value: Any, argname: str = "inputs") -> Inputs:
    """One batch of inputs from a tensor, a tuple (positional inputs), a dict (keyword inputs) or an
    :class:`Inputs`; a clear error naming ``argname`` otherwise."""
    if isinstance(value, Inputs):
        return value
    value = _as_tensor(value)
    try:
        if isinstance(value, torch.Tensor):
            return Inputs(value)
        if isinstance(value, tuple):
            return Inputs(*value)
        if isinstance(value, Mapping):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise TypeError(f"`{argname}` is a dict whose keys must be the forward's keyword names, got {bad!r}.")
            return Inputs(**value)
    except ValueError as e:
        raise ValueError(f"`{argname}`: {e}") from None
    raise TypeError(
        f"`{argname}` must be a tensor, a tuple of tensors (the positional inputs of one batch), a dict of "
        f"tensors (keyword inputs) or nx.Inputs(...), got {type(value).__name__}."
    )


def _item_inputs(item: Any, argname: str) -> Inputs:
    """The model's inputs from one item of an iterable of batches."""
    if isinstance(item, (tuple, list)) and not isinstance(item, Inputs):
        if not item:
            raise ValueError(f"`{argname}` yielded an empty batch {item!r}.")
        item = item[0]  # (inputs, label, …): labels are not the model's inputs
        if isinstance(item, list):
            item = tuple(item)
    return as_inputs(item, argname)


def iter_inputs(inputs: Any, batch_size: int, argname: str = "inputs") -> Iterator[Inputs]:
    """Batches of model inputs, by the conventions in this module's docstring.

    A tensor, tuple, dict or :class:`Inputs` is one batch split into chunks of ``batch_size`` samples; a
    list, DataLoader or other iterable yields its own batches (not re-split). Strings and bytes are refused.
    """
    if isinstance(inputs, (torch.Tensor, tuple, Mapping, Inputs)) or (
        type(inputs).__module__.startswith("numpy") and hasattr(inputs, "shape")
    ):
        batch = as_inputs(inputs, argname)
        if batch.n == 0:
            return
        yield from batch.split(batch_size)
        return
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Iterable):
        raise TypeError(
            f"`{argname}` must be a tensor, a tuple or dict of tensors (several inputs of one batch), "
            f"nx.Inputs(...), or an iterable of batches (a list or a DataLoader), got {type(inputs).__name__}."
        )
    for item in inputs:
        yield _item_inputs(item, argname)


def resolve_wrt(batch: Inputs, wrt: Any, argname: str = "wrt") -> InputKey:
    """The key of the input an attribution explains: ``wrt`` checked against ``batch``; ``None`` is the first
    tensor input."""
    if wrt is None:
        return batch.keys[0]
    if isinstance(wrt, bool) or not isinstance(wrt, (int, str)):
        raise TypeError(f"`{argname}` must be an input's position (int) or keyword name (str), got {wrt!r}.")
    if wrt not in batch:
        raise ValueError(f"`{argname}`={wrt!r} names no input of {batch.describe()}; choose one of {batch.keys}.")
    if not isinstance(batch[wrt], torch.Tensor):
        raise ValueError(f"`{argname}`={wrt!r} is {_describe(batch[wrt])}, not a tensor; choose one of {batch.keys}.")
    if isinstance(wrt, int) and wrt < 0:
        wrt += len(batch.args)
    return wrt


def call_note(batch: Inputs, argname: str = "inputs") -> str:
    """A note for an error raised inside ``model(...)``: how nbexplain called the model and why."""
    if batch.single:
        return (
            f"nbexplain called {batch.describe()}. If the model takes several inputs, pass them together as a "
            f"tuple (positional) or dict (keyword) of tensors, or nx.Inputs(x, mask=...)."
        )
    return (
        f"nbexplain called {batch.describe()}: a tuple is read as the positional inputs of one batch and a dict "
        f"as keyword inputs. If the tuple was (inputs, labels), pass only the inputs: an attribution's classes go "
        f"in `target=`, and data for statistics may be a list or DataLoader of (inputs, label) batches."
    )


def _raised_by_nbexplain(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is nbexplain's own code (a hook's or rule's clear
    error)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return is_nbexplain_code(tb.tb_frame.f_code.co_filename)


def call_model(model: Callable[..., Any], batch: Inputs, argname: str = "inputs") -> Any:
    """``model(*batch.args, **batch.kwargs)``. An error the model raises that the way it was called may
    explain gets :func:`call_note` as a note, so the traceback says how nbexplain called the model: a
    ``TypeError`` (a wrong number of inputs) always, and with several inputs also a ``RuntimeError``,
    ``ValueError`` or ``IndexError`` (mismatched shapes, e.g. labels read as an input). Out-of-memory errors and
    nbexplain's own errors raised in its hooks get none."""
    try:
        return batch.call(model)
    except (TypeError, RuntimeError, ValueError, IndexError) as err:
        why = isinstance(err, TypeError) or not batch.single
        if why and not isinstance(err, torch.OutOfMemoryError) and not _raised_by_nbexplain(err):
            note = call_note(batch, argname)
            if note not in getattr(err, "__notes__", ()):
                if hasattr(err, "add_note"):
                    err.add_note(note)
                else:  # Python 3.10: stored where 3.11's traceback (and the exceptiongroup backport) looks
                    err.__notes__ = [*getattr(err, "__notes__", []), note]  # type: ignore[union-attr]
        raise
