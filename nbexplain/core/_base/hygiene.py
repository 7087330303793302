"""Leave the user's model exactly as it was found.

Every public nbexplain call that touches a model runs inside :func:`preserved`. On exit — normal or
through an exception — it restores, for every submodule, the train/eval flag and the registered hook
dictionaries, and for every parameter its ``requires_grad`` flag and ``.grad``. With
``values=True`` it also snapshots parameter and buffer *values* and writes them back (used around
code that edits weights, such as LRP canonizers, as a second line of defence).

Each restore step runs on its own, so one that fails cannot leave the rest undone (the failure is reported
after everything else was put back, without hiding an exception the block raised). TorchScript modules are
snapshotted and restored through APIs they support, and the compiled parts of a ``torch.compile``'d model
run their eager code inside the block (:mod:`nbexplain.core._base.compiled`).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .compiled import is_scripted, running_eagerly

__all__ = ["preserved", "ModelSnapshot", "RestoreError", "model_device", "model_dtype"]

# Hook dictionaries on nn.Module (names as of torch 2.x; missing ones are skipped).
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


class RestoreError(RuntimeError):
    """Part of a model's state could not be put back; every other part was (each step runs on its own)."""


def _keys(table: Any) -> list[str]:
    # A ScriptModule's `_parameters`/`_buffers` is an OrderedDictWrapper: it has keys() and [k], but iterating
    # it (list(table), `for k in table`) indexes it with integers and raises a TypeError.
    return list(table.keys())


def _restore_entries(mod: nn.Module, attr: str, saved: dict[str, Any]) -> None:
    """Put back the Parameter/buffer objects of one module (undoes e.g. a canonizer swapping a Parameter)."""
    table = getattr(mod, attr)
    keys = _keys(table)
    for k, v in saved.items():
        if k not in keys or table[k] is not v:
            table[k] = v
    if not is_scripted(mod):  # a ScriptModule can neither gain nor lose entries
        for k in keys:
            if k not in saved:
                del table[k]


def _restore_hooks(mod: nn.Module, saved: dict[str, OrderedDict]) -> None:
    for d, hooks in saved.items():
        current = getattr(mod, d)
        if list(current.keys()) != list(hooks.keys()):
            current.clear()
            current.update(hooks)


def _restore_tensor_hooks(p: torch.Tensor, saved: OrderedDict | None) -> None:
    if saved is None and p._backward_hooks is not None and len(p._backward_hooks):
        p._backward_hooks.clear()
    elif saved is not None and p._backward_hooks is not None:
        if list(p._backward_hooks.keys()) != list(saved.keys()):
            p._backward_hooks.clear()
            p._backward_hooks.update(saved)


def _restore_values(model: nn.Module, values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        current = model.state_dict(keep_vars=True)
        for k, v in values.items():
            cur = current.get(k)
            if cur is not None and (cur.shape != v.shape or not torch.equal(cur, v)):
                cur.copy_(v) if cur.shape == v.shape else cur.set_(v.clone())


@dataclass
class ModelSnapshot:
    """What :func:`preserved` records about a model; :meth:`restore` writes it back.

    Works for eager modules, ``torch.compile`` wrappers and TorchScript modules alike (only public module
    APIs and the tables' ``keys()``/``[k]`` are used, which a ScriptModule supports).
    """

    model: nn.Module
    training: dict[str, bool] = field(default_factory=dict)
    hooks: dict[str, dict[str, OrderedDict]] = field(default_factory=dict)
    requires_grad: dict[str, bool] = field(default_factory=dict)
    grads: dict[str, torch.Tensor | None] = field(default_factory=dict)
    param_objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    buffer_objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    values: dict[str, torch.Tensor] | None = None
    tensor_hooks: dict[str, OrderedDict | None] = field(default_factory=dict)

    @classmethod
    def take(cls, model: nn.Module, values: bool = False) -> ModelSnapshot:
        snap = cls(model)
        for name, mod in model.named_modules(remove_duplicate=False):
            snap.training[name] = mod.training
            snap.hooks[name] = {
                d: OrderedDict(getattr(mod, d)) for d in _HOOK_DICTS if hasattr(mod, d)
            }
            snap.param_objects[name] = {k: mod._parameters[k] for k in _keys(mod._parameters)}
            snap.buffer_objects[name] = {k: mod._buffers[k] for k in _keys(mod._buffers)}
        for name, p in model.named_parameters(remove_duplicate=False):
            snap.requires_grad[name] = p.requires_grad
            snap.grads[name] = p.grad
            snap.tensor_hooks[name] = (
                OrderedDict(p._backward_hooks) if p._backward_hooks is not None else None
            )
        if values:
            snap.values = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
        return snap

    def restore(self) -> None:
        """Write the recorded state back into the model.

        Every step — per module: its Parameter and buffer objects, its train/eval flag, its hooks; per
        parameter: ``requires_grad``, ``.grad``, tensor hooks; then the values — runs on its own, so one that
        fails does not keep the others from running.

        Raises
        ------
        RestoreError
            After all other steps ran, naming each step that failed (the first failure is the cause).
        """
        failed: list[tuple[str, BaseException]] = []

        def step(what: str, fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 — recorded and raised below, after every other step
                failed.append((what, exc))

        modules: dict[str, nn.Module] = {}
        step("listing the modules", lambda: modules.update(self.model.named_modules(remove_duplicate=False)))
        for name, mod in modules.items():
            label = repr(name) if name else "the model"
            if name in self.param_objects:
                step(f"parameters of {label}", _restore_entries, mod, "_parameters", self.param_objects[name])
                step(f"buffers of {label}", _restore_entries, mod, "_buffers", self.buffer_objects[name])
            if name in self.training:
                step(f"train/eval flag of {label}", setattr, mod, "training", self.training[name])
            step(f"hooks of {label}", _restore_hooks, mod, self.hooks.get(name, {}))
        params: dict[str, torch.Tensor] = {}
        step("listing the parameters",
             lambda: params.update(self.model.named_parameters(remove_duplicate=False)))
        for name, p in params.items():
            if name in self.requires_grad and p.requires_grad != self.requires_grad[name]:
                step(f"requires_grad of {name!r}", p.requires_grad_, self.requires_grad[name])
            if name in self.grads and p.grad is not self.grads[name]:
                step(f".grad of {name!r}", setattr, p, "grad", self.grads[name])
            step(f"tensor hooks of {name!r}", _restore_tensor_hooks, p, self.tensor_hooks.get(name))
        if self.values is not None:
            step("parameter and buffer values", _restore_values, self.model, self.values)
        if failed:
            listed = "; ".join(f"{what}: {type(exc).__name__}: {exc}" for what, exc in failed)
            raise RestoreError(
                f"nbexplain could not restore part of the model's state ({listed}); everything else was "
                "restored."
            ) from failed[0][1]


@contextmanager
def preserved(model: nn.Module, *, values: bool = False) -> Iterator[ModelSnapshot]:
    """Context manager that restores the model's modes, hooks, ``requires_grad`` and grads on exit.

    Within the block, the compiled parts of the model (a ``torch.compile`` wrapper, compiled submodules,
    ``module.compile()``) run their eager code, so that hooks on their layers are seen (see
    :class:`~nbexplain.core._base.compiled.running_eagerly`); they run compiled again after it.

    Parameters
    ----------
    model
        The user's model: an ``nn.Module``, a ``torch.compile``'d model or a TorchScript module.
    values
        Also snapshot and restore every parameter and buffer value (costs one copy of the weights).

    Raises
    ------
    RestoreError
        When a part of the state could not be put back (every other part still is). If the block itself
        raised, its exception propagates instead, with the restore failure added as a note.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core._base.hygiene import preserved
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
    >>> with preserved(net):
    ...     _ = net.eval()
    >>> net.training
    True
    """
    snap = ModelSnapshot.take(model, values=values)
    try:
        with running_eagerly(model):
            yield snap
    except BaseException as exc:
        try:
            snap.restore()
        except RestoreError as failure:
            _attach(exc, failure)
        raise
    snap.restore()


def _attach(exc: BaseException, failure: RestoreError) -> None:
    """Keep ``exc`` (the real cause) and add the restore failure to it as a note."""
    text = f"While handling this, {failure}"
    if hasattr(exc, "add_note"):
        exc.add_note(text)
    else:  # Python 3.10
        warnings.warn(text, RuntimeWarning, stacklevel=3)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter (float32 when it has none)."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32
