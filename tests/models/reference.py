"""Independent references for tests/models: what a layer really produced, read by plain hooks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["produced", "channel_features", "token_features"]


def produced(model: nn.Module, x: torch.Tensor, names: list[str], train: bool = False) -> dict[str, list[torch.Tensor]]:
    """Each named layer's outputs, cloned inside the hook (the value the layer produced, before any later
    in-place write), one entry per call. The model's mode is restored; no grad."""
    modules = dict(model.named_modules())
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = []
    for n in names:
        def hook(_m: nn.Module, _i: Any, out: Any, n: str = n) -> None:
            out = out[0] if isinstance(out, (tuple, list)) else out
            seen[n].append(out.detach().clone())
        handles.append(modules[n].register_forward_hook(hook))
    modes = {m: m.training for m in model.modules()}
    try:
        model.train(train)
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.training = t
    return seen


def channel_features(out: torch.Tensor) -> torch.Tensor:
    """``(N, C, *spatial)`` → ``(N·positions, C)``: every position a sample of C channel features."""
    return out.movedim(1, -1).reshape(-1, out.shape[1])


def token_features(out: torch.Tensor) -> torch.Tensor:
    """``(N, T, D)`` → ``(N·T, D)``: every token a sample of D features."""
    return out.reshape(-1, out.shape[-1])
