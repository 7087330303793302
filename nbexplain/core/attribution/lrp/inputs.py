"""What :func:`nbexplain.lrp` does around the model before relevance flows: precision, backward hooks, embeddings.

- :func:`computed_in_float32`: a float16/bfloat16 model is explained in float32. Its parameters and buffers are
  swapped for float32 copies for the duration of the call (the originals are never written to and are put back
  on exit, also when the call raises): in half precision the stabilisers underflow (1e-9 is 0 in float16) and
  sums of zeros divide by zero, which gave all-NaN relevance.
- :func:`suspended_backward_hooks`: a user's ``register_full_backward_hook`` / ``register_full_backward_pre_hook``
  / ``register_backward_hook`` hooks would be called with *relevance* instead of gradients (and may change it);
  they are taken off for the call and put back on exit.
- :class:`EmbeddingTap`: for token-id inputs, relevance is read at an embedding layer's output and summed over
  its features, one value per token.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..._base.compiled import strip_compiled
from ..._base.machinery import Handles
from ..._base.model_inputs import InputKey, Inputs
from ..._base.model_io import reads_other_input
from ..._base.validation import suggest

__all__ = ["HALF", "computed_in_float32", "suspended_backward_hooks", "EmbeddingTap", "resolve_embedding"]

#: Floating dtypes LRP does not compute in (explained in float32 instead).
HALF = (torch.float16, torch.bfloat16)


@contextmanager
def computed_in_float32(model: nn.Module) -> Iterator[bool]:
    """Swap every float16/bfloat16 parameter and buffer for a float32 copy; yields whether anything was swapped.

    The original tensor objects are put back on exit (values never written), so the model is left exactly as
    found; shared parameters stay shared within the call (one copy per original tensor)."""
    swapped: list[tuple[dict[str, Any], str, torch.Tensor]] = []
    copies: dict[int, torch.Tensor] = {}
    try:
        for mod in model.modules():
            for store, make in ((mod._parameters, True), (mod._buffers, False)):
                for name, t in list(store.items()):
                    if t is None or t.dtype not in HALF:
                        continue
                    new = copies.get(id(t))
                    if new is None:
                        data = t.detach().float()
                        new = nn.Parameter(data, requires_grad=False) if make else data
                        new._nbexplain_temporary = True  # lives for one call: not worth caching weights of
                        copies[id(t)] = new
                    swapped.append((store, name, t))
                    store[name] = new
        yield bool(swapped)
    finally:
        for store, name, t in reversed(swapped):
            store[name] = t


_BACKWARD_HOOK_DICTS = ("_backward_hooks", "_backward_pre_hooks")


@contextmanager
def suspended_backward_hooks(model: nn.Module) -> Iterator[list[str]]:
    """Take the model's own module backward hooks off for the call; yields the names of the modules that had them.

    LRP's backward pass carries relevance, not gradients: a backward hook would see (and could change) the
    wrong quantity, and its autograd nodes would hide the graph from LRP's checks. The hooks are put back on
    exit, in their order, also when the call raises."""
    saved: list[tuple[nn.Module, str, OrderedDict]] = []
    names: list[str] = []
    try:
        for name, mod in model.named_modules():
            had = False
            for attr in _BACKWARD_HOOK_DICTS:
                hooks = getattr(mod, attr, None)
                if hooks:
                    saved.append((mod, attr, OrderedDict(hooks)))
                    hooks.clear()
                    had = True
            if had:
                names.append(name or "<model>")
        yield names
    finally:
        for mod, attr, hooks in saved:
            current = getattr(mod, attr)
            current.clear()
            current.update(hooks)


def resolve_embedding(model: nn.Module, x: torch.Tensor, embedding: str | None, what: str = "`x`") -> str | None:
    """The name of the layer whose output is attributed (``None``: the input itself).

    ``embedding`` given: checked against the model's layer names. Not given and ``x`` holds integers: the
    model's only ``nn.Embedding`` (several: the one called with ``x`` itself, decided during the forward pass —
    returned as ``""`` here). ``what`` names ``x`` in messages (e.g. ```x['input_ids']``` for one of several
    inputs)."""
    names = [n for n, _ in model.named_modules() if n]
    if embedding is not None:
        if not isinstance(embedding, str):
            raise TypeError(f"`embedding` must be a layer name (str) or None, got {embedding!r}.")
        if embedding not in names:
            # a compiled model's names may keep or leave out their '_orig_mod' parts
            alias = [n for n in names if strip_compiled(n) == strip_compiled(embedding)]
            if len(alias) == 1:
                return alias[0]
            raise ValueError(
                f"`embedding`={embedding!r} is not a layer of the model.{suggest(embedding, names)} "
                f"Layer names: {names[:30]}."
            )
        return embedding
    if x.is_floating_point():
        return None
    found = [n for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if not found:
        raise TypeError(
            f"{what} holds integer values ({x.dtype}) but the model has no nn.Embedding to attribute them through. "
            f"Pass floating-point inputs ({what.strip('`')}.float()), or name the layer whose output stands for the "
            "tokens with `embedding='name'`."
        )
    return found[0] if len(found) == 1 else ""


class EmbeddingTap:
    """Makes the output of the embedding layer the leaf relevance is read at, for one forward pass.

    With ``name == ""`` every ``nn.Embedding`` is tapped but only one called with the input tensor itself
    counts; :meth:`leaf` raises a clear error when that is not exactly one. With ``batch`` (the model's several
    inputs, ``x`` being its input ``wrt``) a named layer called with another of the inputs instead of ``x``
    (e.g. an integer attention mask shaped like the ids) is refused."""

    def __init__(
        self, model: nn.Module, name: str, x: torch.Tensor, batch: Inputs | None = None, wrt: InputKey = 0
    ) -> None:
        self.name = name
        self.x = x
        self.batch, self.wrt = batch, wrt
        self.leaves: list[tuple[str, torch.Tensor]] = []
        self.handles = Handles()
        modules = dict(model.named_modules())
        if name:
            targets = {name: modules[name]}
        else:
            targets = {n: m for n, m in modules.items() if isinstance(m, nn.Embedding)}
        for n, mod in targets.items():
            # first of the layer's hooks: the LRP session's hooks on it (a layer capture) see the leaf
            self.handles.add(mod.register_forward_hook(self._hook(n), prepend=True))

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if self.name == "" and not (args and args[0] is self.x):
                return None
            other = reads_other_input(args[0], self.batch, self.wrt) if self.batch is not None and args else None
            if other is not None:
                raise ValueError(
                    f"`embedding`={name!r} reads the input {other!r}, not the explained input wrt={self.wrt!r}: its "
                    f"relevance would be attributed to the wrong input. Choose the input it reads with "
                    f"`wrt={other!r}`, or name the layer that reads {self.wrt!r} with `embedding=`."
                )
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                raise ValueError(
                    f"`embedding`={name!r} ({type(module).__name__}) returned "
                    f"{type(output).__name__ if not isinstance(output, torch.Tensor) else output.dtype}; "
                    "relevance is read at a floating tensor output. Name another layer."
                )
            leaf = output.detach().requires_grad_(True)
            self.leaves.append((name, leaf))
            return leaf

        return hook

    def leaf(self, model: nn.Module) -> tuple[str, torch.Tensor]:
        """The tapped output of this forward pass."""
        if len(self.leaves) == 1:
            return self.leaves[0]
        embs = [n for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
        if not self.leaves:
            what = f"layer {self.name!r}" if self.name else f"none of the model's nn.Embedding layers {embs}"
            raise ValueError(
                f"{what} was called with the input during the forward pass, so no token relevance can be read "
                "there; name the layer whose output stands for the tokens with `embedding='name'`."
            )
        raise ValueError(
            f"The embedding output was produced {len(self.leaves)} times in one forward pass "
            f"({[n for n, _ in self.leaves]}); name the one that embeds the input with `embedding='name'`."
        )

    def close(self) -> None:
        self.handles.remove()
