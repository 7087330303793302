"""Rules for functional operations outside modules (``lrp(..., strict=False)``).

Without a rule, relevance would follow the *gradient* through an operation such as ``t.mean(1)`` or
``t + self.pos``: each token would receive the whole relevance of the mean divided by T instead of its
share, and a position embedding would hand its share to the tokens — maps silently off by 100 %.
With ``strict=False`` every operation on the explained input that runs outside a module with a rule gets
a rule consistent with gradient × input (so an ε → 0 LRP of a ReLU network stays exactly gradient × input):

- operations whose outputs are *copies* of input elements (or constants): reshapes, permutations,
  indexing, ``cat``/``stack``, ``expand``, ``F.relu``, clamping, max pooling, eval-mode dropout, padding —
  relevance follows the gradient, which for them *is* the identity on relevance;
- every other operation ``z = f(a, b, …)`` gets :class:`~.rules.Gradient`'s rule,
  ``R_a = a ⊙ (∂z/∂a)ᵀ (R_z / z)`` — for sums, means and scalings this is the proportional split of LRP-0
  (``t + pos`` gives the tokens ``t/(t+pos)`` of the relevance, ``mean`` gives each term ``a_i/(T·z)``);
- operations that are not linear (``gelu``, ``softmax``, ``layer_norm``, a product of two activations,
  ``F.linear`` with the composite's rule bypassed, …) get the same gradient × input rule, which is not an
  LRP rule (it does not conserve relevance): they are listed in a :class:`FunctionalOpsWarning`, with the
  module whose forward computed them, so that no map changes meaning silently.

Ops inside a module that has a rule (also inside a module mapped to ``nx.rules.Gradient()``) are not touched.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..._base.machinery import Handles

__all__ = ["FunctionalRules", "FunctionalOpsWarning", "ModuleStackMode", "COPY_LIKE", "LINEAR", "taylor_node"]


class FunctionalOpsWarning(UserWarning):
    """``lrp(strict=False)`` explained non-linear functional operations by gradient × input."""


#: Operations whose outputs are copies of input elements or constants: relevance follows their gradient.
COPY_LIKE = frozenset(
    """view view_as reshape reshape_as flatten unflatten permute transpose t movedim moveaxis swapaxes swapdims
    squeeze unsqueeze expand expand_as repeat tile repeat_interleave contiguous clone detach to type float double
    __getitem__ __setitem__ select narrow index_select gather take take_along_dim masked_select cat concat
    concatenate stack hstack vstack dstack split split_with_sizes chunk unbind tensor_split flip fliplr flipud roll
    rot90 diagonal unfold pad relu relu_ relu6 threshold threshold_ hardtanh hardtanh_ clamp clamp_ clip clip_
    max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices max_pool3d_with_indices
    adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d adaptive_max_pool1d_with_indices
    adaptive_max_pool2d_with_indices adaptive_max_pool3d_with_indices max min amax amin topk sort where
    masked_fill masked_fill_ dropout dropout1d dropout2d dropout3d feature_dropout alpha_dropout
    feature_alpha_dropout identity __get__ requires_grad_ zero_pad2d channel_shuffle pixel_shuffle
    pixel_unshuffle""".split()
)

#: Linear operations (sums, means, scalings): gradient × input through them is LRP-0's proportional split,
#: an LRP rule — applied without a warning.
LINEAR = frozenset(
    """add __add__ __radd__ __iadd__ add_ sub __sub__ __rsub__ __isub__ sub_ rsub sum nansum mean nanmean neg
    __neg__ negative neg_ cumsum avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d
    adaptive_avg_pool3d""".split()
)
_SCALINGS = frozenset("mul __mul__ __rmul__ __imul__ mul_ multiply div __truediv__ __itruediv__ div_ divide true_divide".split())

_INPLACE_DUNDER = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul", "__itruediv__": "div"}


def _name(func: Any) -> str:
    return str(getattr(func, "__name__", type(func).__name__))


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _grad_inputs(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    found = {id(t): t for t in _tensors((args, kwargs)) if t.requires_grad and t.is_floating_point()}
    return list(found.values())


def taylor_node(
    func: Callable[..., Any], args: tuple, kwargs: dict, ins: list[torch.Tensor], epsilon: float, factor: float = 1.0
) -> Any:
    """``func(*args, **kwargs)`` through one gradient × input node: ``R_a = factor · a ⊙ (∂z/∂a)ᵀ (R_z / stab(z))``
    for each ``a`` in ``ins``. The operation runs on detached leaves, so its own graph holds this operation only."""
    from .engine import _GradientFunction, _replace_leaves  # noqa: PLC0415 (engine imports this module)

    inner = {id(a): a.detach().requires_grad_(True) for a in ins}
    with torch.enable_grad():
        result = func(*_replace_leaves(args, inner), **_replace_leaves(kwargs, inner))
    outs = [t for t in _tensors(result) if t.requires_grad and t.is_floating_point()]
    if not outs:
        return result
    new = _GradientFunction.apply(
        epsilon, factor, (list(inner.values()), outs), len(ins), *ins, *(o.detach() for o in outs)
    )
    return _replace_leaves(result, {id(o): n for o, n in zip(outs, new, strict=True)})


class ModuleStackMode(torch.overrides.TorchFunctionMode):
    """A torch function mode that knows which module's forward is running: ``self.stack[-1]`` labels it
    (``"'layer1.0' (BasicBlock)"``). Module hooks keep the stack; :meth:`close` removes them."""

    def __init__(self, model: nn.Module, track: bool = True) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.handles = Handles()
        if not track:  # no module labels needed (no report, no error that names the module): no hooks
            return
        try:
            for name, mod in model.named_modules():
                label = f"{name!r} ({type(mod).__name__})" if name else f"the model's own forward ({type(mod).__name__})"
                self.handles.add(mod.register_forward_pre_hook(self._enter(label)))
                self.handles.add(mod.register_forward_hook(self._leave, always_call=True))
        except BaseException:
            self.handles.remove()
            raise

    def _enter(self, label: str) -> Any:
        def pre(module: nn.Module, args: tuple) -> None:
            self.stack.append(label)

        pre.nbexplain_internal = True  # type: ignore[attr-defined]  # not a user's hook: batch norms still merge
        return pre

    def _leave(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.stack:
            self.stack.pop()

    def close(self) -> None:
        """Remove the module hooks."""
        self.handles.remove()


class FunctionalRules(ModuleStackMode):
    """Active during the forward pass of ``lrp(strict=False)``: gives functional operations outside modules with
    rules a gradient-consistent rule (see the module docstring) and records the non-linear ones by module.

    ``inside`` is a callable telling whether a module with a rule is running (its operations are left alone)."""

    def __init__(self, model: nn.Module, track: bool = True) -> None:
        super().__init__(model, track)
        self.inside: Any = lambda: True
        self.nonlinear: dict[str, set[str]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        name = _name(func)
        if name in COPY_LIKE or self.inside() or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        ins = _grad_inputs(args, kwargs)
        if not ins:
            return func(*args, **kwargs)
        inplace = name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("_"))
        if inplace:
            return self._inplace(func, name, args, kwargs)
        return self._wrap(func, name, ins, args, kwargs)

    def _wrap(self, func: Any, name: str, ins: list[torch.Tensor], args: tuple, kwargs: dict) -> Any:
        """``func(*args)`` through one gradient × input node (:func:`taylor_node`, ε = 0: exact gradient × input,
        a zero output passes no relevance), the operation's name recorded when it is not linear."""
        result = taylor_node(func, args, kwargs, ins, 0.0)
        linear = name in LINEAR or (name in _SCALINGS and len(ins) == 1)
        if not linear and any(t.requires_grad and t.is_floating_point() for t in _tensors(result)):
            self.nonlinear.setdefault(name, set()).add(self.stack[-1] if self.stack else "outside any module")
        return result

    def _inplace(self, func: Any, name: str, args: tuple, kwargs: dict) -> Any:
        """``a.op_(…)`` / ``a op= …``: computed out of place from a copy of ``a`` through the rule, then copied
        into ``a`` (so the rule's saved inputs are never overwritten; ``copy_`` hands the relevance of ``a``'s
        new values to the rule's output, also where ``a`` is a view such as ``t[:, 0]``)."""
        target = args[0]
        plain = _INPLACE_DUNDER.get(name, name.rstrip("_"))
        alt = getattr(torch.Tensor, plain, None)
        if not isinstance(target, torch.Tensor) or alt is None:
            self.nonlinear.setdefault(name + " (in place, passed as a gradient)", set()).add(
                self.stack[-1] if self.stack else "outside any module"
            )
            return func(*args, **kwargs)
        before = target.clone() if target.requires_grad else target
        rest = tuple(before if a is target else a for a in args[1:])
        ins = _grad_inputs((before,) + rest, kwargs)
        new = self._wrap(alt, plain, ins, (before,) + rest, kwargs)
        return target.copy_(new)

    def report(self, stacklevel: int = 2) -> None:
        """One :class:`FunctionalOpsWarning` naming the non-linear functional operations and their modules
        (``stacklevel`` as in :func:`warnings.warn`)."""
        if not self.nonlinear:
            return
        where = "; ".join(f"{op} in {', '.join(sorted(owners))}" for op, owners in sorted(self.nonlinear.items()))
        warnings.warn(
            "strict=False: these operations run outside any module with an LRP rule and are not linear, so "
            f"they were explained by gradient × input through them (nx.rules.Gradient's rule, not an LRP rule; it does "
            f"not conserve relevance): {where}. Move them into modules and map rules to those modules to choose "
            "another treatment.",
            FunctionalOpsWarning,
            stacklevel=stacklevel,
        )
