"""Model hygiene, checked independently of nbexplain's own ``preserved``.

:func:`dress` gives a model what a user's model has: a forward hook and a full backward hook of the user's
own, and a frozen parameter. :func:`untouched` snapshots everything a call must leave as found — every
parameter and buffer bit for bit, every module's training flag, every hook dictionary (the hook objects
themselves), every parameter object, its ``requires_grad`` and ``.grad`` — and asserts it is all the same
after the block, also when the block raises (the exception then propagates unchanged).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["dress", "untouched", "snapshot", "assert_same"]

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


def dress(model: nn.Module, hook_layer: str | None, backward: bool = True) -> dict[str, int]:
    """Register a user's forward hook (on the model) and full backward hook (on ``hook_layer``), and freeze
    the first parameter. Returns the hook call counters (the hooks change nothing)."""
    calls = {"forward": 0, "backward": 0}

    def fwd(_m: nn.Module, _i: Any, _o: Any) -> None:
        calls["forward"] += 1

    def bwd(_m: nn.Module, _gi: Any, _go: Any) -> None:
        calls["backward"] += 1

    model.register_forward_hook(fwd)
    if backward and hook_layer is not None:
        dict(model.named_modules())[hook_layer].register_full_backward_hook(bwd)
    first = next(model.parameters())
    first.requires_grad_(False)
    return calls


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything a call must leave as found, in comparable form (tensors cloned bit for bit)."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "state_ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
        "training": {n: m.training for n, m in model.named_modules(remove_duplicate=False)},
        "hooks": {
            n: {d: list(getattr(m, d).items()) for d in _HOOK_DICTS if hasattr(m, d)}
            for n, m in model.named_modules(remove_duplicate=False)
        },
        "backward_flag": {n: m._is_full_backward_hook for n, m in model.named_modules(remove_duplicate=False)},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters(remove_duplicate=False)},
        "grad": {n: p.grad for n, p in model.named_parameters(remove_duplicate=False)},
        "tensor_hooks": {
            n: None if p._backward_hooks is None else list(p._backward_hooks.items())
            for n, p in model.named_parameters(remove_duplicate=False)
        },
    }


def assert_same(before: dict[str, Any], model: nn.Module, what: str = "the call", values: bool = True) -> None:
    """Assert that ``model`` is exactly as recorded in ``before`` (``values=False``: all but the weights'
    values and gradients, for a block in which the user's own optimiser trains the model)."""
    after = snapshot(model)
    assert after["training"] == before["training"], f"{what} changed train/eval flags"
    assert after["requires_grad"] == before["requires_grad"], f"{what} changed requires_grad"
    for n, g in before["grad"].items() if values else ():
        assert after["grad"][n] is g, f"{what} changed .grad of {n}"
    assert after["hooks"] == before["hooks"], f"{what} left hooks behind or removed the user's hooks"
    assert after["backward_flag"] == before["backward_flag"], f"{what} changed backward-hook mode"
    assert after["tensor_hooks"] == before["tensor_hooks"], f"{what} left tensor hooks on parameters"
    assert after["state_ids"] == before["state_ids"], f"{what} replaced parameter or buffer objects"
    assert after["state"].keys() == before["state"].keys(), f"{what} added or removed state"
    for k, v in before["state"].items() if values else ():
        if v.device.type == "meta":  # holds no values: only its shape and dtype can change
            assert (after["state"][k].shape, after["state"][k].dtype) == (v.shape, v.dtype), f"{what} changed {k}"
            continue
        # Bitwise by construction: nothing may write to the user's weights, not even a rounding error.
        assert torch.equal(after["state"][k], v), f"{what} changed {k}"


@contextmanager
def untouched(model: nn.Module, what: str = "the call") -> Iterator[None]:
    """Assert the model is exactly as found after the block, also when the block raises."""
    before = snapshot(model)
    try:
        yield
    finally:
        assert_same(before, model, what)
