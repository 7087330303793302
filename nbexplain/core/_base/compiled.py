"""TorchScript and ``torch.compile`` models: what nbexplain runs, and how it says so.

nbexplain reads layers through forward hooks and edits their outputs (captures, δ projections, LRP rules).
Two ways of running a model do not go through hooks:

- **TorchScript** (``torch.jit.script`` / ``torch.jit.trace``): a ``ScriptModule`` refuses
  ``register_forward_hook``. What needs no hook — input gradients of the model's output (the gradient family,
  rate–distortion masks) for floating-point inputs — runs on it; everything else is refused by
  :func:`require_hooks` with one error that asks for the eager module.
- **torch.compile**: an ``OptimizedModule`` wraps the eager module (``model._orig_mod``), and compiled code
  does not run hooks added to its layers later (measured: a hook added after the first call is silently
  skipped). nbexplain therefore works on the eager module behind it (:func:`eager_module`), and while it works
  every compiled part of a model — the wrapper itself, a compiled submodule, a module compiled in place with
  ``module.compile()`` — runs its eager code (:class:`running_eagerly`, entered by
  :func:`~nbexplain.core._base.hygiene.preserved`). Nothing is compiled inside nbexplain, and the model runs
  compiled again, with its caches untouched, as soon as the call returns. :func:`note_compiled` says so once
  per model.

Layer names are those of the module nbexplain works on (``model._orig_mod`` for a compiled model);
``_orig_mod`` path segments may be given or left out (:func:`strip_compiled`).
"""

from __future__ import annotations

import sys
import warnings
import weakref
from typing import Any

import torch
from torch import nn

from .machinery import user_stacklevel

__all__ = [
    "is_scripted",
    "is_compiled",
    "eager_module",
    "compiled_parts",
    "running_eagerly",
    "note_compiled",
    "require_hooks",
    "strip_compiled",
    "EAGER_HINT",
]

#: What to pass instead of a TorchScript module.
EAGER_HINT = "pass the eager module (the nn.Module before torch.jit.script or torch.jit.trace)"

_SEGMENT = "_orig_mod"
_MISSING = object()
_noted: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def is_scripted(model: Any) -> bool:
    """Whether ``model`` is a TorchScript module (``torch.jit.script`` or ``torch.jit.trace``)."""
    return isinstance(model, torch.jit.ScriptModule)


def _optimized_module_type() -> type | None:
    # torch._dynamo is imported by torch.compile; if it was never imported, no model can be compiled.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return getattr(eval_frame, "OptimizedModule", None) if eval_frame is not None else None


def is_compiled(model: Any) -> bool:
    """Whether ``model`` is the wrapper ``torch.compile(module)`` returns (an ``OptimizedModule``)."""
    kind = _optimized_module_type()
    return kind is not None and isinstance(model, kind)


def eager_module(model: nn.Module) -> nn.Module:
    """The eager module behind a ``torch.compile``'d model (``model._orig_mod``, unwrapped repeatedly);
    any other module is returned as it is."""
    while is_compiled(model):
        model = model._orig_mod
    return model


def compiled_parts(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` whose calls run compiled code: ``torch.compile``'d submodules and
    modules compiled in place with ``module.compile()`` (``""`` is the model itself)."""
    found = []
    for name, mod in model.named_modules():
        if is_scripted(mod):
            continue
        if is_compiled(mod) or mod.__dict__.get("_compiled_call_impl") is not None:
            found.append(name)
    return found


class running_eagerly:  # noqa: N801 — used like a function: `with running_eagerly(model):`
    """Within the block, every compiled part of ``model`` runs its eager code, so hooks on layers are seen.

    A ``torch.compile`` wrapper's ``forward`` is pointed at its eager module's ``__call__`` (which runs that
    module's hooks), and ``module.compile()``'s compiled call is switched off; both are put back exactly on
    exit (the compiled caches are never touched, so nothing recompiles). Blocks may nest.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core._base.compiled import running_eagerly
    >>> net = torch.nn.Linear(2, 2)
    >>> with running_eagerly(net):
    ...     _ = net(torch.ones(1, 2))
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._undo: list[tuple[dict[str, Any], str, Any]] = []

    def __enter__(self) -> running_eagerly:
        seen: set[int] = set()
        try:
            for mod in self.model.modules():
                if id(mod) in seen or is_scripted(mod):
                    continue
                seen.add(id(mod))
                state = mod.__dict__
                if is_compiled(mod):
                    self._undo.append((state, "forward", state.get("forward", _MISSING)))
                    state["forward"] = mod._orig_mod.__call__
                if state.get("_compiled_call_impl") is not None:
                    self._undo.append((state, "_compiled_call_impl", state["_compiled_call_impl"]))
                    state["_compiled_call_impl"] = None
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._undo:
            state, key, value = self._undo.pop()
            if value is _MISSING:
                state.pop(key, None)
            else:
                state[key] = value


def note_compiled(model: nn.Module, argname: str = "model") -> None:
    """Say once per model (a ``UserWarning``) that nbexplain explains the eager code of a compiled model."""
    if model in _noted:
        return
    if is_compiled(model):
        message = (
            f"`{argname}` is a torch.compile'd model: nbexplain explains `{argname}._orig_mod`, the eager "
            "module behind it (compiled code does not run the hooks nbexplain puts on layers, and nothing is "
            "compiled inside nbexplain). While nbexplain works — and inside `with nx.capture(...)`, "
            "nx.SaturationTracker and DeltaProjection.inserted blocks — calling the compiled model runs that "
            "eager module; afterwards it runs compiled again, unchanged. Layer names are those of "
            f"`{argname}._orig_mod` (a leading '_orig_mod.' may be kept or left out)."
        )
    else:
        parts = [n or "(the model itself)" for n in compiled_parts(model)]
        if not parts:
            return
        listed = ", ".join(parts[:5]) + (", …" if len(parts) > 5 else "")
        message = (
            f"`{argname}` has torch.compile'd parts ({listed}): while nbexplain works — and inside "
            "`with nx.capture(...)`, nx.SaturationTracker and DeltaProjection.inserted blocks — they run "
            "their eager code, because compiled code does not run the hooks nbexplain puts on layers; "
            "afterwards they run compiled again, unchanged. Layer names may keep or leave out their "
            "'_orig_mod' parts."
        )
    _noted.add(model)
    warnings.warn(message, UserWarning, stacklevel=user_stacklevel())


def require_hooks(model: nn.Module, argname: str = "model", what: str = "this call") -> None:
    """Refuse a TorchScript model (or one with TorchScript submodules) for work that needs forward hooks.

    Raises
    ------
    TypeError
        Naming the argument, what needs the hooks, the scripted part, and the eager module to pass instead.
    """
    scripted = [name for name, mod in model.named_modules() if is_scripted(mod)]
    if not scripted:
        return
    where = f"`{argname}`" if scripted[0] == "" else f"`{argname}.{scripted[0]}`"
    raise TypeError(
        f"{where} is a TorchScript module (torch.jit.script or torch.jit.trace), and {what} needs forward "
        f"hooks on its layers, which TorchScript modules do not support; {EAGER_HINT}. On TorchScript "
        "models nbexplain runs the gradient family (gradient, gradient_x_input, smoothgrad, "
        "integrated_gradients) and rde, for floating-point inputs."
    )


def strip_compiled(name: str) -> str:
    """A layer name without its ``_orig_mod`` path segments (``"_orig_mod.conv1"`` → ``"conv1"``)."""
    return ".".join(part for part in name.split(".") if part != _SEGMENT)
