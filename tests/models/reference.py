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


def select(raw: Any, output: Any) -> torch.Tensor:
    """The model output a test explains: the tensor itself, ``raw[index]`` or ``raw[key]``."""
    return raw if output is None else raw[output]


def target_scores(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each row's target score; extra dimensions (an image output) are summed."""
    flat = out.reshape(out.shape[0], out.shape[1], -1).sum(2)
    return flat[torch.arange(out.shape[0]), target]


def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, output: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``∂ f_target / ∂x`` by plain autograd (eval mode, parameters untouched), and the scores."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        s = target_scores(select(model(xg), output), target)
        (g,) = torch.autograd.grad(s.sum(), xg)
    return g, s.detach()


def embedding_gradient(
    model: nn.Module, ids: torch.Tensor, target: torch.Tensor, layer: str, output: Any = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``∂ f_target / ∂e`` at the output ``e`` of the embedding ``layer`` (N, T, D), ``e`` itself, the scores."""
    kept: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
        e = out.detach().clone().requires_grad_(True)
        kept.append(e)
        return e

    h = dict(model.named_modules())[layer].register_forward_hook(hook)
    try:
        with torch.enable_grad():
            s = target_scores(select(model(ids), output), target)
            (g,) = torch.autograd.grad(s.sum(), kept[0])
    finally:
        h.remove()
    return g, kept[0].detach(), s.detach()


def replaced_output(model: nn.Module, x: torch.Tensor, layer: str, value: torch.Tensor, output: Any = None) -> torch.Tensor:
    """The model's (selected) output when ``layer`` outputs ``value`` instead (no grad)."""
    h = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, _o: value)
    try:
        with torch.no_grad():
            return select(model(x), output)
    finally:
        h.remove()
