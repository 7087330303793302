"""Leave the user's model exactly as it was found.

Every public nbexplain call that touches a model runs inside :func:`preserved`. On exit — normal or
through an exception — it restores, for every submodule, the train/eval flag and the registered hook
dictionaries, and for every parameter its ``requires_grad`` flag and ``.grad``. With
``values=True`` it also snapshots parameter and buffer *values* and writes them back (used around
code that edits weights, such as LRP canonizers, as a second line of defence).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["preserved", "ModelSnapshot", "model_device", "model_dtype"]

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


@dataclass
class ModelSnapshot:
    """What :func:`preserved` records about a model; :meth:`restore` writes it back."""

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
    def take(cls, model: nn.Module, values: bool = False) -> "ModelSnapshot":
        snap = cls(model)
        for name, mod in model.named_modules(remove_duplicate=False):
            snap.training[name] = mod.training
            snap.hooks[name] = {
                d: OrderedDict(getattr(mod, d)) for d in _HOOK_DICTS if hasattr(mod, d)
            }
            snap.param_objects[name] = dict(mod._parameters)
            snap.buffer_objects[name] = dict(mod._buffers)
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
        """Write the recorded state back into the model."""
        modules = dict(self.model.named_modules(remove_duplicate=False))
        for name, mod in modules.items():
            if name in self.param_objects:
                # Undo attribute replacement (e.g. a canonizer swapping a Parameter object).
                for k, v in self.param_objects[name].items():
                    if mod._parameters.get(k) is not v:
                        mod._parameters[k] = v
                for k in list(mod._parameters):
                    if k not in self.param_objects[name]:
                        del mod._parameters[k]
                for k, v in self.buffer_objects[name].items():
                    if mod._buffers.get(k) is not v:
                        mod._buffers[k] = v
            if name in self.training:
                mod.training = self.training[name]
            for d, saved in self.hooks.get(name, {}).items():
                current = getattr(mod, d)
                if list(current.keys()) != list(saved.keys()):
                    current.clear()
                    current.update(saved)
        params = dict(self.model.named_parameters(remove_duplicate=False))
        for name, p in params.items():
            if name in self.requires_grad and p.requires_grad != self.requires_grad[name]:
                p.requires_grad_(self.requires_grad[name])
            if name in self.grads and p.grad is not self.grads[name]:
                p.grad = self.grads[name]
            saved_hooks = self.tensor_hooks.get(name)
            if saved_hooks is None and p._backward_hooks is not None and len(p._backward_hooks):
                p._backward_hooks.clear()
            elif saved_hooks is not None and p._backward_hooks is not None:
                if list(p._backward_hooks.keys()) != list(saved_hooks.keys()):
                    p._backward_hooks.clear()
                    p._backward_hooks.update(saved_hooks)
        if self.values is not None:
            with torch.no_grad():
                current = self.model.state_dict(keep_vars=True)
                for k, v in self.values.items():
                    cur = current.get(k)
                    if cur is not None and (cur.shape != v.shape or not torch.equal(cur, v)):
                        cur.copy_(v) if cur.shape == v.shape else cur.set_(v.clone())


@contextmanager
def preserved(model: nn.Module, values: bool = False) -> Iterator[ModelSnapshot]:
    """Context manager that restores the model's modes, hooks, ``requires_grad`` and grads on exit.

    Parameters
    ----------
    model
        The user's model.
    values
        Also snapshot and restore every parameter and buffer value (costs one copy of the weights).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.hygiene import preserved
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
    >>> with preserved(net):
    ...     _ = net.eval()
    >>> net.training
    True
    """
    snap = ModelSnapshot.take(model, values=values)
    try:
        yield snap
    finally:
        snap.restore()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter (float32 when it has none)."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32
