"""Recording a transformer's attention weights during one call, and nowhere else.

:class:`AttentionRecorder` is a context manager for one forward pass at a time. While it is entered it

- registers hooks on the model's modules (removed on exit): a with-kwargs forward pre-hook on every
  ``nn.MultiheadAttention`` that asks for ``need_weights=True, average_attn_weights=False`` and a forward hook
  that records the per-head weights ``(N, heads, L, S)`` and returns what the *caller* asked for (``None`` in
  place of the weights, or their mean over the heads); and on every module a pair of hooks that keep the
  name of the module running, so that functional attention is named by the module that called it (for
  ``softmax(…) @ v``: the module that applies the weights to the values);
- notes the spatial grid of the last ``nn.Conv2d`` that ran before the first attention (:attr:`conv_grid`: a
  patch embedding's token grid, used to lay image tokens out);
- is a :class:`torch.overrides.TorchFunctionMode`, so it sees functional calls made by hand-written blocks:
  ``F.scaled_dot_product_attention`` (its weights are computed explicitly beside the real call, honouring
  ``attn_mask``, ``is_causal``, ``scale`` and ``enable_gqa``; the model still gets the real call's output),
  and a ``softmax`` over the last axis of an ``(…, L, S)`` tensor whose result is then multiplied into values
  (``attn @ v``, ``torch.matmul``, ``torch.bmm``, ``torch.einsum``; a dropout between the two is followed).

Nothing is patched onto a class; outside the ``with`` block the model and torch are exactly as they were. The
mode also turns off torch's fused transformer fast paths for the duration (they would hide the weights).

Each record is ``(name, weights)`` in the order the model ran them, with the weights ``(N, heads, L, S)``:
``N`` the rows of the batch, ``heads`` the fused leading axes (1 when there are none). A softmax over
``(N·heads, L, S)`` (the ``bmm`` layout of ``nn.MultiheadAttention``'s own code) is read batch-major,
``index = sample · heads + head``.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .._base.machinery import Handles

__all__ = ["AttentionRecorder", "sdpa_weights"]

_SOFTMAX = {F.softmax, torch.softmax, torch.Tensor.softmax, torch.special.softmax}
_DROPOUT = {F.dropout, torch.dropout, torch.Tensor.dropout if hasattr(torch.Tensor, "dropout") else F.dropout}
_MATMUL = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm}
_EINSUM = {torch.einsum}


def sdpa_weights(
    query: torch.Tensor, key: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
    scale: float | None = None, enable_gqa: bool = False,
) -> torch.Tensor:
    """The attention weights ``softmax(q kᵀ · scale + mask)`` that ``F.scaled_dot_product_attention`` applies.

    Boolean masks mark the keys that take part (``True``); float masks are added to the scores; ``is_causal``
    lets query ``i`` see keys ``j ≤ i`` (top-left aligned, as torch does). A query row that sees no key gets
    zero weights (torch's output there is zero too). Dropout is not applied: these are the expected weights.

    Examples
    --------
    >>> q = k = torch.randn(1, 2, 3, 4)
    >>> w = sdpa_weights(q, k, is_causal=True)
    >>> w.shape, bool(torch.allclose(w.sum(-1), torch.ones(1, 2, 3))), float(w[0, 0, 0, 1])
    (torch.Size([1, 2, 3, 3]), True, 0.0)
    """
    q, k = query, key
    if enable_gqa and k.ndim >= 3 and q.shape[-3] != k.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = (q @ k.transpose(-2, -1)) * s
    L, S = scores.shape[-2], scores.shape[-1]
    if is_causal:
        allowed = torch.ones(L, S, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    w = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(w, nan=0.0)  # rows with every key masked


def _sdpa_call(args: tuple, kwargs: dict) -> dict[str, Any]:
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    return bound


def _last_axis(dim: Any, ndim: int) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim % ndim == ndim - 1


class AttentionRecorder(TorchFunctionMode):
    """Records the attention weights of one forward pass at a time (see the module docstring).

    Use ``with AttentionRecorder(model) as rec:`` around the calls; :meth:`start` before each forward pass with
    its number of rows, then read :attr:`records`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.records: list[tuple[str, torch.Tensor]] = []
        #: ``(rows, columns)`` of the last ``nn.Conv2d`` output before the first attention (a patch embedding)
        self.conv_grid: tuple[int, int] | None = None
        self._rows = 0
        self._stack: list[str] = []
        self._mha_calls: list[tuple[bool, bool]] = []
        self._tracked: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles = Handles()
        self._mha_names = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]

    # ---- hooks -------------------------------------------------------------------------------------
    def _install(self) -> None:
        for name, mod in self.model.named_modules():
            label = name or type(mod).__name__

            def push(_m: nn.Module, _a: Any, _label: str = label) -> None:
                self._stack.append(_label)

            def pop(_m: nn.Module, _a: Any, _o: Any) -> None:
                if self._stack:
                    self._stack.pop()

            self._handles.add(mod.register_forward_pre_hook(push))
            self._handles.add(mod.register_forward_hook(pop, always_call=True))
            if isinstance(mod, nn.Conv2d):
                self._handles.add(mod.register_forward_hook(self._conv_grid))
            if isinstance(mod, nn.MultiheadAttention):
                self._handles.add(mod.register_forward_pre_hook(self._mha_pre, with_kwargs=True))
                self._handles.add(mod.register_forward_hook(self._mha_post(label)))

    def _conv_grid(self, _m: nn.Module, _a: Any, out: Any) -> None:
        # the spatial grid of the last convolution before the first attention: a patch embedding's token grid
        if not self.records and isinstance(out, torch.Tensor) and out.ndim == 4:
            self.conv_grid = (int(out.shape[-2]), int(out.shape[-1]))

    def _mha_pre(self, mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        sig = inspect.signature(type(mod).forward)
        bound = sig.bind(mod, *args, **kwargs)
        bound.apply_defaults()
        call = {k: v for k, v in list(bound.arguments.items())[1:]}
        self._mha_calls.append((bool(call.get("need_weights", True)), bool(call.get("average_attn_weights", True))))
        call["need_weights"], call["average_attn_weights"] = True, False
        return (), call

    def _mha_post(self, label: str) -> Any:
        def post(_m: nn.Module, _a: Any, out: Any) -> Any:
            need, average = self._mha_calls.pop() if self._mha_calls else (True, True)
            attn_out, weights = out
            if not isinstance(weights, torch.Tensor):
                raise RuntimeError(
                    f"{label!r} (nn.MultiheadAttention) returned no attention weights although nbexplain asked for "
                    "need_weights=True; attention rollout needs them."
                )
            w = weights.unsqueeze(0) if weights.ndim == 3 else weights  # an unbatched call: one sample
            self._record(label, w.detach())
            if not need:
                return attn_out, None
            return attn_out, (weights.mean(dim=-3) if average else weights)

        return post

    # ---- the function mode ---------------------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self._mha_calls:  # inside nn.MultiheadAttention: its hooks record it
            return out
        if func is F.scaled_dot_product_attention:
            c = _sdpa_call(args, kwargs)
            with torch.no_grad():
                w = sdpa_weights(c["query"].detach(), c["key"].detach(), c.get("attn_mask"),
                                 bool(c.get("is_causal", False)), c.get("scale"), bool(c.get("enable_gqa", False)))
            self._record(self._where(), w)
        elif func in _SOFTMAX:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if isinstance(out, torch.Tensor) and out.ndim >= 3 and _last_axis(dim, out.ndim):
                self._tracked[id(out)] = (out, out)
        elif func in _DROPOUT and args and isinstance(args[0], torch.Tensor) and id(args[0]) in self._tracked:
            held, source = self._tracked[id(args[0])]
            if held is args[0] and isinstance(out, torch.Tensor):
                self._tracked[id(out)] = (out, source)
        elif func in _MATMUL and args:
            self._matmul(args[0])
        elif func in _EINSUM:
            for a in (args[1:] if args and isinstance(args[0], str) else args):
                for t in (a if isinstance(a, (list, tuple)) else (a,)):
                    self._matmul(t)
        return out

    def _matmul(self, a: Any) -> None:
        if isinstance(a, torch.Tensor) and id(a) in self._tracked:
            held, source = self._tracked.pop(id(a))
            if held is a:  # named by the module that applies the weights to the values
                self._record(self._where(), source.detach())

    def _where(self) -> str:
        return self._stack[-1] if self._stack else type(self.model).__name__

    def _record(self, where: str, w: torch.Tensor) -> None:
        n = self._rows
        L, S = int(w.shape[-2]), int(w.shape[-1])
        if w.ndim >= 4 and w.shape[0] == n:
            w = w.reshape(n, -1, L, S)
        elif w.ndim == 3 and n and w.shape[0] % n == 0:
            w = w.reshape(n, w.shape[0] // n, L, S)
        else:
            raise ValueError(
                f"The attention weights in {where!r} have shape {tuple(w.shape)}, which does not start with the "
                f"batch of {n} samples: attention rollout reads them as (N, heads, queries, keys) or "
                "(N·heads, queries, keys)."
            )
        taken = sum(1 for name, _ in self.records if name == where or name.startswith(where + "#"))
        self.records.append((where if taken == 0 else f"{where}#{taken}", w.detach()))

    # ---- life cycle --------------------------------------------------------------------------------
    def start(self, rows: int) -> None:
        """Forget the previous pass; the next one runs ``rows`` samples."""
        self.records, self._rows = [], int(rows)
        self.conv_grid = None
        self._stack.clear()
        self._mha_calls.clear()
        self._tracked.clear()

    def __enter__(self) -> AttentionRecorder:
        self._install()
        try:
            return super().__enter__()
        except BaseException:
            self._handles.remove()
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._tracked.clear()
            self._handles.remove()
