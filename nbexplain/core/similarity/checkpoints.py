"""Checkpoints of a similarity grid: models, state dicts or files, loaded into one reused copy of a template."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

import torch
from torch import nn

from .._base.validation import check_model

_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")

CheckpointArg = Union[nn.Module, Mapping[str, Any], str, os.PathLike]


def _label_for(item: Any, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.path.splitext(os.path.basename(os.fspath(item)))[0]
    return f"checkpoint {index}"


def _load_state(item: Any, where: str) -> Mapping[str, Any]:
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{where}: no file at {path!r}.")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle refusals, corrupt files
            raise ValueError(
                f"{where}: could not load {path!r} with torch.load(weights_only=True) ({exc}). Save "
                "checkpoints with torch.save(model.state_dict(), path)."
            ) from exc
        item = obj
    if isinstance(item, Mapping):
        if item and all(isinstance(v, torch.Tensor) for v in item.values()):
            return item
        for key in _STATE_KEYS:
            if isinstance(item.get(key), Mapping):
                return item[key]
        raise ValueError(
            f"{where}: this dict is not a state dict (values are not all tensors) and has none of the keys "
            f"{list(_STATE_KEYS)} holding one."
        )
    raise TypeError(
        f"{where}: expected an nn.Module, a state dict or a checkpoint file path, got {type(item).__name__}."
    )


class _Materialiser:
    """Turns checkpoint items into modules, loading state dicts into one reused copy of a template."""

    def __init__(self, template: nn.Module | None) -> None:
        self.template = template
        self._copy: nn.Module | None = None

    def __call__(self, item: Any, where: str, argname: str = "checkpoints") -> nn.Module:
        if isinstance(item, nn.Module):
            return check_model(item, argname, what="nx.similarity_grid")
        state = _load_state(item, where)
        if state and all(k.startswith("_orig_mod.") for k in state):
            # saved from a torch.compile'd model: its keys carry the wrapper's prefix; the template is eager
            state = {k[len("_orig_mod."):]: v for k, v in state.items()}
        if self.template is None:
            raise ValueError(
                f"{where} is a state dict or file: pass `model=` (a model of the same architecture) so it "
                "can be loaded."
            )
        if self._copy is None:
            self._copy = copy.deepcopy(self.template)
        try:
            self._copy.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{where} does not fit `model`'s architecture: {exc}") from exc
        return self._copy


def _looks_like_state_dict(m: Mapping[str, Any]) -> bool:
    return bool(m) and (
        all(isinstance(v, torch.Tensor) for v in m.values())
        or any(isinstance(m.get(k), Mapping) for k in _STATE_KEYS)
    )


def _checkpoint_items(checkpoints: Any, labels: Sequence[str] | None) -> tuple[list[Any], list[str]]:
    """The checkpoints as a list, and their labels (given, mapping keys, file stems or ``checkpoint t``)."""
    if isinstance(checkpoints, Mapping) and not _looks_like_state_dict(checkpoints):
        items = list(checkpoints.values())
        default_labels = [str(k) for k in checkpoints.keys()]
    elif isinstance(checkpoints, (nn.Module, str, os.PathLike, Mapping)):
        items = [checkpoints]
        default_labels = [_label_for(checkpoints, 0)]
    else:
        items = list(checkpoints)
        default_labels = [_label_for(c, i) for i, c in enumerate(items)]
    if not items:
        raise ValueError("`checkpoints` is empty; pass at least one model, state dict or path.")
    if labels is not None:
        labels = [str(s) for s in labels]
        if len(labels) != len(items):
            raise ValueError(f"`checkpoint_labels` has {len(labels)} entries for {len(items)} checkpoints.")
    return items, labels if labels is not None else default_labels


def settled_from(ok: torch.Tensor) -> torch.Tensor:
    """Along dim 0 (checkpoints): the first index from which ``ok`` holds at every later checkpoint, or -1 where
    it does not hold at the last one — "reached and kept" for learned-at and freeze-training schedules.

    Examples
    --------
    >>> settled_from(torch.tensor([[False, True], [True, True], [False, True], [True, True]]))
    tensor([3, 0])
    """
    tail = torch.flip(torch.cumprod(torch.flip(ok, [0]).to(torch.int64), 0), [0]).bool()  # ok from t on
    return torch.where(tail.any(0), tail.to(torch.int64).argmax(0), torch.full(tail.shape[1:], -1))
