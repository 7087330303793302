"""Argument validation shared by every public entry point.

Each checker raises an error that names the offending argument and says how to fix it, so that user
mistakes surface at the call site instead of deep inside an algorithm.
"""

from __future__ import annotations

import difflib
import functools
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from .compiled import eager_module, note_compiled, require_hooks, strip_compiled

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "check_model",
    "check_tensor",
    "check_finite",
    "check_fraction",
    "check_positive_int",
    "check_choice",
    "check_layer_names",
    "match_layer_names",
    "check_target",
    "check_same_samples",
    "suggest",
    "renamed_arguments",
]


def renamed_arguments(**renamed: str) -> Callable[[F], F]:
    """Decorate a public function whose keyword arguments were renamed: an old name raises a ``TypeError``
    that names the new one (instead of Python's bare "unexpected keyword argument").

    Parameters
    ----------
    **renamed
        ``old="new"`` pairs; ``new`` may be a sentence (e.g. ``"removed: the result always carries .error"``).

    Examples
    --------
    >>> @renamed_arguments(x="inputs")
    ... def f(inputs): return inputs
    >>> f(x=1)
    Traceback (most recent call last):
    TypeError: f(): `x=` is now `inputs=` (nbexplain uses one vocabulary across the API; see docs/architecture.md).
    """

    def decorate(fn: F) -> F:
        # a constructor is named by its class: ExplanationExplorer(), not __init__()
        name = fn.__qualname__.rsplit(".", 1)[0] if fn.__name__ == "__init__" else fn.__name__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old in kwargs.keys() & renamed.keys():
                new = renamed[old]
                fix = f"is now `{new}=`" if new.isidentifier() else new
                raise TypeError(
                    f"{name}(): `{old}=` {fix} (nbexplain uses one vocabulary across the API; "
                    "see docs/architecture.md)."
                )
            return fn(*args, **kwargs)

        wrapper.__renamed_arguments__ = dict(renamed)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def suggest(name: str, options: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest option, or ``""`` when nothing is close."""
    matches = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def check_model(
    model: Any, argname: str = "model", *, hooks: bool = True, what: str = "this call", unwrap: bool = True
) -> nn.Module:
    """Require a ``torch.nn.Module`` and return the module to work on.

    Parameters
    ----------
    model
        The user's model.
    argname
        The argument name used in messages.
    hooks
        Whether the work needs forward hooks on the model's layers (everything but input gradients of the
        model's output does). A TorchScript module is then refused with one clear error asking for the eager
        module (:func:`~nbexplain.core._base.compiled.require_hooks`).
    what
        What needs the hooks, for that error (e.g. ``"nx.lrp"``).
    unwrap
        Return the eager module behind a ``torch.compile``'d model, and say so once. ``False`` (for code that
        just runs the model, such as training it): return ``model`` itself, silently.

    Returns
    -------
    nn.Module
        ``model`` itself, or for a ``torch.compile``'d model the eager module behind it (``model._orig_mod``);
        a one-time ``UserWarning`` says so (:func:`~nbexplain.core._base.compiled.note_compiled`).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core._base.validation import check_model
    >>> net = torch.nn.Linear(2, 2)
    >>> check_model(net) is net
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"`{argname}` must be a torch.nn.Module, got {type(model).__name__}. "
            "Pass the network object itself (not its state_dict or a function)."
        )
    if not unwrap:
        if hooks:
            require_hooks(model, argname, what)
        return model
    note_compiled(model, argname)
    eager = eager_module(model)
    if hooks:
        require_hooks(eager, argname, what)
    return eager


def check_tensor(
    value: Any,
    argname: str,
    *,
    ndim: int | Sequence[int] | None = None,
    min_ndim: int | None = None,
    dtype_kind: str | None = None,
    allow_numpy: bool = True,
    finite: bool = False,
) -> torch.Tensor:
    """Convert ``value`` to a tensor and check its rank, dtype kind and (optionally) finiteness.

    Parameters
    ----------
    value
        A tensor, or a numpy array when ``allow_numpy`` is true.
    argname
        The argument name used in error messages.
    ndim
        Required number of dimensions (an int or a collection of allowed ints).
    min_ndim
        Smallest allowed number of dimensions.
    dtype_kind
        ``"float"`` to require a floating dtype, ``"int"`` to require an integer dtype.
    allow_numpy
        Accept numpy arrays (converted with ``torch.as_tensor``).
    finite
        Reject NaN and infinite values.
    """
    if not isinstance(value, torch.Tensor):
        if allow_numpy and type(value).__module__.startswith("numpy") and hasattr(value, "shape"):
            value = torch.as_tensor(value)
        else:
            raise TypeError(
                f"`{argname}` must be a torch.Tensor"
                + (" or numpy array" if allow_numpy else "")
                + f", got {type(value).__name__}. Convert it with torch.as_tensor(...)."
            )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(
                f"`{argname}` must have {want} dimensions, got shape {tuple(value.shape)}."
            )
    if min_ndim is not None and value.ndim < min_ndim:
        raise ValueError(
            f"`{argname}` must have at least {min_ndim} dimensions (batch first), "
            f"got shape {tuple(value.shape)}. Add a batch dimension with x.unsqueeze(0)."
        )
    if dtype_kind == "float" and not value.is_floating_point():
        raise TypeError(
            f"`{argname}` must be a floating-point tensor, got {value.dtype}. Use x.float()."
        )
    if dtype_kind == "int" and (value.is_floating_point() or value.is_complex()):
        raise TypeError(f"`{argname}` must be an integer tensor, got {value.dtype}. Use x.long().")
    if finite:
        check_finite(value, argname)
    return value


def check_finite(value: torch.Tensor, argname: str) -> torch.Tensor:
    """Reject tensors containing NaN or infinity, saying how many entries are bad.

    A finite sum proves every entry finite (NaN and ±inf propagate through addition), so the usual case
    costs one memory-bound reduction; only a non-finite sum (bad entries, or an overflowing sum of finite
    ones) pays for the element-wise check.
    """
    if value.is_floating_point() or value.is_complex():
        if value.numel() == 0 or bool(torch.isfinite(value.sum())):
            return value
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            raise ValueError(
                f"`{argname}` contains {int(bad.sum())} non-finite values (NaN or inf) out of "
                f"{value.numel()}. Clean the data or check the model for overflow."
            )
    return value


def check_fraction(
    value: Any, argname: str, *, low_open: bool = True, high_closed: bool = True
) -> float:
    """Require a real number in (0, 1] (or the interval the flags describe)."""
    interval = ("(" if low_open else "[") + "0, 1" + ("]" if high_closed else ")")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(float(value)):
        raise TypeError(f"`{argname}` must be a number in {interval}, got {value!r}.")
    v = float(value)
    lo_ok = v > 0 if low_open else v >= 0
    hi_ok = v <= 1 if high_closed else v < 1
    if not (lo_ok and hi_ok):
        raise ValueError(f"`{argname}` must lie in {interval}, got {v}.")
    return v


def check_positive_int(value: Any, argname: str, *, allow_zero: bool = False) -> int:
    """Require an integer ≥ 1 (or ≥ 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{argname}` must be an integer, got {value!r}.")
    lowest = 0 if allow_zero else 1
    if int(value) < lowest:
        raise ValueError(f"`{argname}` must be ≥ {lowest}, got {value}.")
    return int(value)


def check_choice(value: Any, argname: str, choices: Iterable[str]) -> str:
    """Require one of a fixed set of strings, suggesting the closest on a typo."""
    options = list(choices)
    if value not in options:
        raise ValueError(
            f"`{argname}` must be one of {options}, got {value!r}.{suggest(str(value), options)}"
        )
    return value


def match_layer_names(
    requested: str | Iterable[str], available: Sequence[str], argname: str = "layers"
) -> dict[str, str]:
    """Map each requested layer name to the model's own name for it.

    A name matches itself, or — for ``torch.compile``'d models and submodules — the name with its
    ``_orig_mod`` path segments given or left out (``"_orig_mod.conv1"`` and ``"conv1"`` both name ``conv1``
    of ``model._orig_mod``). Raises a ``ValueError`` that lists the valid names (and the closest match) for
    unknown ones.
    """
    names = [requested] if isinstance(requested, str) else list(requested)
    if not names:
        raise ValueError(f"`{argname}` is empty; pass at least one layer name, e.g. {list(available[:3])}.")
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"`{argname}` must contain layer names (str), got {n!r}.")
    own = set(available)
    aliases: dict[str, list[str]] = {}
    for a in available:
        aliases.setdefault(strip_compiled(a), []).append(a)
    matched: dict[str, str] = {}
    unknown = []
    for n in names:
        if n in own:
            matched[n] = n
            continue
        candidates = aliases.get(strip_compiled(n), [])
        if len(candidates) == 1:
            matched[n] = candidates[0]
        else:
            unknown.append(n)
    if unknown:
        shown = list(available) if len(available) <= 40 else list(available[:40]) + ["…"]
        hint = suggest(unknown[0], available)
        raise ValueError(
            f"Unknown layer name(s) in `{argname}`: {unknown}.{hint} Valid names: {shown}. "
            "List them with nx.list_layers(model)."
        )
    return matched


def check_layer_names(
    requested: str | Iterable[str], available: Sequence[str], argname: str = "layers"
) -> list[str]:
    """Validate layer names against a model's modules; returns them as given.

    Raises a ``ValueError`` that lists the valid names (and the closest match) for unknown ones. Names of
    compiled models may keep or leave out their ``_orig_mod`` parts (see :func:`match_layer_names`).
    """
    match_layer_names(requested, available, argname)
    return [requested] if isinstance(requested, str) else list(requested)


def check_target(target: Any, n: int, n_classes: int | None = None, argname: str = "target") -> torch.Tensor:
    """Turn an int or ``(N,)`` integer tensor into a LongTensor of shape ``(n,)`` and range-check it."""
    if isinstance(target, bool):
        raise TypeError(f"`{argname}` must be an int or a LongTensor of shape (N,), got a bool.")
    if isinstance(target, numbers.Integral):
        t = torch.full((n,), int(target), dtype=torch.long)
    else:
        if isinstance(target, (list, tuple)):
            target = torch.as_tensor(target)
        t = check_tensor(target, argname, ndim=(0, 1), dtype_kind="int").long().reshape(-1)
        if t.numel() == 1 and n != 1:
            t = t.expand(n).clone()
        if t.numel() != n:
            raise ValueError(
                f"`{argname}` has {t.numel()} entries but the input batch has {n} samples; "
                "pass one class index per sample or a single int."
            )
    if n_classes is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) >= n_classes):
        raise ValueError(
            f"`{argname}` contains class indices outside [0, {n_classes - 1}] "
            f"(got min {int(t.min())}, max {int(t.max())}); the model has {n_classes} outputs."
        )
    return t


def check_same_samples(x: torch.Tensor, y: torch.Tensor, names: tuple[str, str] = ("x", "y")) -> None:
    """Require two ``(n_samples, …)`` arrays to have the same number of samples."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"`{names[0]}` has {x.shape[0]} samples but `{names[1]}` has {y.shape[0]}; "
            "both must hold the same samples in the same order (dimension 0)."
        )
