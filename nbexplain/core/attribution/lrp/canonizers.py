"""Canonizers: reversible rewrites that put a model into a form LRP rules apply to.

Each canonizer is used as a context manager, ``with canonizer.apply(model, example): ...``; inside it
the model computes the same function (up to rounding) in a canonical form, and on exit — normally or
through an exception — every change is undone: the original ``Parameter`` objects are put back
untouched (their values are never written to), and exactly the hooks the canonizer added are removed (one
:class:`~nbexplain.core._base.machinery.Handles` collection per use; hooks others add meanwhile stay).
:func:`nbexplain.lrp` and :func:`nbexplain.lrp_rules` also wrap the work in ``preserved(model)``, a second line
of defence; canonizers that *write into* tensors (``changes_values``) also get a snapshot of every value.

- :class:`MergeBatchNorm` folds a batch norm into the Linear/Conv that feeds it
  (``W' = W·γ/√(σ²+ε)``, ``b' = (b − μ)·γ/√(σ²+ε) + β``), so that the rule of that layer sees the
  affine map the pair really computes; the batch norm then passes its input through.
- :class:`ExplicitResidual` turns the addition of two activations (``out += identity`` of a residual
  block, ``x + f(x)``, …) into a call of a :class:`~.composites.Sum` module, which has a rule of its
  own (default: split the relevance in proportion to each branch's contribution). Without it a sum
  would hand each branch the whole relevance (its gradient is 1 for both).
- :class:`ExplicitScale` turns the element-wise product of an activation with a factor that does not depend on
  the input (a layer scale ``x * self.gamma``, ``x / self.tau``) into a call of a :class:`~.ops.Scale` module:
  a diagonal linear layer with a rule of its own (default: ε).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..._base.hygiene import preserved
from ..._base.machinery import Handles
from .composites import CONVS, DENSE, Sum
from .ops import TRANSPOSED, Scale, channel_view

__all__ = [
    "Canonizer", "MergeBatchNorm", "ExplicitResidual", "ExplicitScale", "default_canonizers", "merged_parameters",
    "bn_mergeable", "bn_affine", "shared_dispatch", "handled",
]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_LINEAR = DENSE + CONVS


class Canonizer:
    """Base class: :meth:`apply` is a context manager that changes the model and always undoes it."""

    #: Modules that act as identity while the canonizer is active (LRP gives them no rule).
    def transparent(self) -> set[nn.Module]:
        return set()

    #: Extra modules (not part of the model) that LRP must hook, by name.
    def extra_modules(self) -> dict[str, nn.Module]:
        return {}

    def changes_values(self, model: nn.Module) -> bool:
        """Whether :meth:`apply` writes into this model's parameter or buffer *values* in place (then
        :func:`nbexplain.lrp` snapshots and restores every value). Swapping ``Parameter`` objects does not
        count: the originals are put back untouched."""
        return False

    @contextmanager
    def apply(self, model: nn.Module, example: torch.Tensor | None = None) -> Iterator[None]:
        yield

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def bn_mergeable(bn: nn.Module, lin: nn.Module) -> bool:
    if bn.running_mean is None or bn.running_var is None:
        return False  # batch statistics only: not a fixed affine map
    user_pre_hooks = [h for h in lin._forward_pre_hooks.values() if not getattr(h, "nbexplain_internal", False)]
    if not isinstance(lin._parameters.get("weight"), nn.Parameter) or user_pre_hooks:
        return False  # weight computed by a parametrization or a weight-norm hook: left unmerged
    out_features = lin.out_features if isinstance(lin, nn.Linear) else lin.out_channels
    if isinstance(lin, nn.Linear) and not isinstance(bn, nn.BatchNorm1d):
        return False
    return bn.num_features == out_features


def bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode batch norm as ``y = scale·x + shift`` per channel, in float64."""
    with torch.no_grad():
        scale = bn.running_var.double().add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
    return scale, shift


def merged_parameters(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    bn: nn.Module,
    dtype: torch.dtype | None = None,
    layer: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a Linear/Conv with the eval-mode batch norm ``bn`` folded in:
    ``W' = W·γ/√(σ²+ε)``, ``b' = (b − μ)·γ/√(σ²+ε) + β``, in ``dtype`` (default: the weight's).

    ``layer``: the module the weight belongs to — a transposed convolution keeps its output channels along
    dimension 1 of its weight (``None``: along dimension 0, as Linear and Conv do).

    The per-channel factors are computed in float64 (a few values); the weight product in the target dtype
    — one rounding per weight, at a fraction of the cost of a float64 round trip."""
    dtype = weight.dtype if dtype is None else dtype
    scale, shift = bn_affine(bn)
    with torch.no_grad():
        transposed = isinstance(layer, TRANSPOSED)
        groups = layer.groups if transposed else 1  # type: ignore[union-attr]
        new_w = weight.to(dtype) * channel_view(scale.to(dtype), weight, transposed, groups)
        new_b = shift if bias is None else shift + bias.detach().double() * scale
    return new_w, new_b.to(dtype)


class MergeBatchNorm(Canonizer):
    """Fold each batch norm into the Linear/Conv whose output it normalises.

    Pairs are found from ``nn.Sequential`` order (a Linear/Conv directly followed by a batch norm) and,
    given an ``example`` input, by tracing one sample through the model (a batch norm whose input is
    exactly the output tensor of a Linear/Conv, each called once) — which finds the pairs of residual
    blocks written with attributes (``self.bn1(self.conv1(x))``). The trace runs in eval mode under
    ``torch.no_grad()`` (the model's own forward hooks see that one extra call). A batch norm without
    running statistics, or after a layer whose weight comes from a parametrization, is left alone.

    Inside :func:`nbexplain.lrp` none of this runs: there the merge happens during the explained forward
    pass itself — a batch norm whose input is exactly the output a Linear/Conv call just produced (and that
    nothing wrote into since) is folded into that call, per call, with the merged weights materialised
    only when a rule needs them. No parameter is swapped and no extra pass is made.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from nbexplain.core.attribution.lrp import MergeBatchNorm
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
    >>> x = torch.rand(1, 1, 5, 5)
    >>> with MergeBatchNorm().apply(net):
    ...     merged = net(x)
    >>> torch.allclose(merged, net(x), atol=1e-6)
    True
    """

    def __init__(self) -> None:
        self._merged: set[nn.Module] = set()

    def transparent(self) -> set[nn.Module]:  # noqa: D102
        return set(self._merged)

    def pairs(self, model: nn.Module, example: torch.Tensor | None = None) -> list[tuple[nn.Module, nn.Module]]:
        """The (Linear/Conv, batch norm) pairs that will be merged."""
        found: list[tuple[nn.Module, nn.Module]] = []
        paired: set[int] = set()
        for mod in model.modules():
            if isinstance(mod, nn.Sequential):
                kids = list(mod.children())
                for a, b in zip(kids, kids[1:], strict=False):
                    if isinstance(a, _LINEAR) and isinstance(b, _BN) and id(b) not in paired and bn_mergeable(b, a):
                        found.append((a, b))
                        paired.update((id(a), id(b)))
        left = [m for m in model.modules() if isinstance(m, _BN) and id(m) not in paired]
        if left and example is not None:
            found += [p for p in self._trace(model, example) if id(p[0]) not in paired and id(p[1]) not in paired]
        return found

    @staticmethod
    def _trace(model: nn.Module, example: torch.Tensor) -> list[tuple[nn.Module, nn.Module]]:
        calls: dict[int, int] = {}
        produced: dict[int, nn.Module] = {}  # id(output tensor) -> linear/conv module
        consumed: list[tuple[nn.Module, int]] = []  # (bn, id(input tensor))
        keep: list[torch.Tensor] = []  # keep outputs alive so ids stay unique

        def hook(mod: nn.Module, args: tuple, out: Any) -> None:
            calls[id(mod)] = calls.get(id(mod), 0) + 1
            if isinstance(mod, _LINEAR) and isinstance(out, torch.Tensor):
                produced[id(out)] = mod
                keep.append(out)
            elif isinstance(mod, _BN) and args and isinstance(args[0], torch.Tensor):
                consumed.append((mod, id(args[0])))

        # eval mode (batch norms must not update their running statistics; modes restored by preserved), and
        # exactly the hooks added here removed again
        with preserved(model), torch.no_grad(), Handles() as handles:
            model.eval()
            for m in model.modules():
                if isinstance(m, _LINEAR + _BN):
                    handles.add(m.register_forward_hook(hook))
            model(example[:1])
        pairs = []
        for bn, src in consumed:
            lin = produced.get(src)
            if lin is not None and calls.get(id(bn)) == 1 and calls.get(id(lin)) == 1 and bn_mergeable(bn, lin):
                pairs.append((lin, bn))
        return pairs

    @contextmanager
    def apply(self, model: nn.Module, example: torch.Tensor | None = None) -> Iterator[None]:  # noqa: D102
        self._merged = set()
        # one collection undoes everything, newest first: the batch norms' hooks, then each swapped Parameter
        with Handles() as undo:
            undo.add(lambda: setattr(self, "_merged", set()))
            for lin, bn in self.pairs(model, example):
                new_w, new_b = merged_parameters(lin.weight.detach(), lin.bias, bn, layer=lin)
                for name, value in (("weight", new_w), ("bias", new_b)):
                    undo.add(_put_back(lin, name, lin._parameters.get(name)))
                    lin._parameters[name] = nn.Parameter(value, requires_grad=False)
                undo.add(bn.register_forward_hook(_pass_input))
                self._merged.add(bn)
            yield


def _put_back(module: nn.Module, name: str, param: Any) -> Any:
    """A callable that puts ``param`` back as ``module._parameters[name]``."""

    def undo() -> None:
        module._parameters[name] = param

    return undo


def _pass_input(module: nn.Module, args: tuple, out: Any) -> Any:
    return args[0]


_ADDS = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
_INPLACE_ADDS = {torch.Tensor.add_, torch.Tensor.__iadd__}


class _Assign(torch.autograd.Function):
    """``target.copy_(value)`` in place, with the gradient going to ``value`` only; lets an in-place
    ``out += identity`` keep its in-place semantics while its graph comes from the Sum module."""

    @staticmethod
    def forward(ctx, target, value):  # type: ignore[override]
        target.copy_(value)
        ctx.mark_dirty(target)
        return target

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return None, grad


class _Dispatch(TorchFunctionMode):
    """The one torch function mode of the canonizers that rewrite functional calls (residual sums, layer scales):
    each adds handlers by function while it is applied. With a mode active, every torch call of the forward pass
    — attribute reads included, about 2,000 in a ResNet-18 LRP call — is a Python round trip through it, so the
    canonizers share one mode instead of stacking one each (a second mode cost 11 % of a small ResNet-18 call)."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: dict[Any, list[Any]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        out = handled(self.handlers, func, args, kwargs)
        return func(*args, **kwargs) if out is NotImplemented else out


def handled(handlers: dict[Any, list[Any]], func: Any, args: tuple, kwargs: dict) -> Any:
    """The first of ``handlers[func]`` that takes the call (``NotImplemented``: none does)."""
    for handle in handlers.get(func, ()):
        out = handle(func, args, kwargs)
        if out is not NotImplemented:
            return out
    return NotImplemented


_LOCAL = threading.local()


@contextmanager
def shared_dispatch(mode: Any) -> Iterator[None]:
    """For the block, the canonizers register their handlers in ``mode`` (a torch function mode with a
    ``handlers`` dict that it consults first, as :class:`_Dispatch` does) instead of pushing a mode of their own:
    one Python round trip per torch call instead of two (the attention rules' mode, :mod:`.attention`)."""
    before = getattr(_LOCAL, "mode", None)
    _LOCAL.mode = mode
    try:
        yield
    finally:
        _LOCAL.mode = before


@contextmanager
def _handling(handlers: dict[Any, Any]) -> Iterator[None]:
    """Register ``{function: handler}`` in this thread's :class:`_Dispatch` mode (entered here when none is
    active) for the duration of the block. A handler returns ``NotImplemented`` to leave a call alone."""
    mode = getattr(_LOCAL, "mode", None)
    own = mode is None
    if own:
        mode = _Dispatch()
    for f, h in handlers.items():
        mode.handlers.setdefault(f, []).append(h)
    try:
        if own:
            _LOCAL.mode = mode
            with mode:
                yield
        else:
            yield
    finally:
        for f, h in handlers.items():
            mode.handlers[f].remove(h)
            if not mode.handlers[f]:
                del mode.handlers[f]
        if own:
            _LOCAL.mode = None


class ExplicitResidual(Canonizer):
    """Route every addition of two activations through a :class:`~.composites.Sum` module.

    While active, ``a + b``, ``a += b`` and ``torch.add(a, b)`` of two same-shaped tensors that both
    require grad (i.e. both depend on the explained input — the common residual block shape
    ``out = f(x) + shortcut(x)``) call the canonizer's ``Sum`` module instead; LRP hooks it and applies
    its rule. Parameters and buffers never require grad inside :func:`nbexplain.lrp`, so bias-like
    additions are not affected. In-place ``Tensor.add_`` calls are left alone.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.attribution.lrp import ExplicitResidual
    >>> canon = ExplicitResidual()
    >>> a = torch.ones(2, requires_grad=True)
    >>> with canon.apply(torch.nn.Identity()):
    ...     s = a + a
    >>> canon.calls
    1
    """

    def __init__(self) -> None:
        self.sum = Sum()
        self.calls = 0
        self.sum.register_forward_pre_hook(self._count)

    def _count(self, module: nn.Module, args: tuple) -> None:
        self.calls += 1

    def extra_modules(self) -> dict[str, nn.Module]:  # noqa: D102
        return {"<residual sum>": self.sum}

    def _add(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if (
            len(args) == 2
            and isinstance(args[0], torch.Tensor)
            and isinstance(args[1], torch.Tensor)
            and args[0].requires_grad
            and args[1].requires_grad
            and args[0].shape == args[1].shape
            and kwargs.get("alpha", 1) == 1
            and "out" not in kwargs
        ):
            result = self.sum(args[0], args[1])
            if func in _INPLACE_ADDS:
                return _Assign.apply(args[0], result)
            return result
        return NotImplemented

    @contextmanager
    def apply(self, model: nn.Module, example: torch.Tensor | None = None) -> Iterator[None]:  # noqa: D102
        self.calls = 0
        with _handling(dict.fromkeys(_ADDS | _INPLACE_ADDS, self._add)):
            yield


_MULS = {torch.mul, torch.multiply, torch.Tensor.mul, torch.Tensor.multiply, torch.Tensor.__mul__, torch.Tensor.__rmul__}
_DIVS = {torch.div, torch.divide, torch.true_divide, torch.Tensor.div, torch.Tensor.divide, torch.Tensor.true_divide,
         torch.Tensor.__truediv__}
_INPLACE_MULS = {torch.Tensor.mul_, torch.Tensor.multiply_, torch.Tensor.__imul__}
_INPLACE_DIVS = {torch.Tensor.div_, torch.Tensor.divide_, torch.Tensor.true_divide_, torch.Tensor.__itruediv__}


def _constant(t: Any) -> bool:
    """A tensor factor that does not depend on the explained input: a parameter (inside :func:`nbexplain.lrp`
    parameters never require grad), a buffer, a view of either, a constant."""
    return isinstance(t, torch.Tensor) and t.is_floating_point() and (isinstance(t, nn.Parameter) or not t.requires_grad)


def _operands(func: Any, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, bool] | None:
    """``(activation, factor, divide)`` when ``func(*args)`` is a product with (or a division by) a constant
    factor that keeps the activation's shape; else ``None``."""
    if len(args) != 2 or set(kwargs) - {"rounding_mode"} or kwargs.get("rounding_mode") is not None:
        return None
    a, b = args
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return None  # a Python number: left to strict=False (a scaling, split in proportion)
    divide = func in _DIVS or func in _INPLACE_DIVS
    if divide:
        act, factor = a, b  # only the dividend may be the activation: 1/x is not linear
    elif _constant(b) and not _constant(a):
        act, factor = a, b
    else:
        act, factor = b, a
    if not (act.requires_grad and act.is_floating_point()) or _constant(act) or not _constant(factor):
        return None
    try:
        if torch.broadcast_shapes(act.shape, factor.shape) != act.shape:
            return None  # the factor would expand the activation: not a diagonal map of it
    except RuntimeError:
        return None
    return act, factor, divide


class ExplicitScale(Canonizer):
    """Route every element-wise product of an activation with a constant factor through a
    :class:`~.ops.Scale` module — a *layer scale* (``x * self.gamma``, ``self.gamma * x``, ``x.mul_(…)``,
    ``x *= …`` with a learned per-channel factor, as in ConvNeXt and CaiT), and a division by one (``x / self.tau``).

    "Constant" means a tensor that does not depend on the explained input: an ``nn.Parameter`` or a view of one
    (``self.gamma[:, None, None]``), a buffer, a tensor made in ``forward`` from either; the factor must
    broadcast to the activation's shape (a per-channel or per-element factor, not an outer product). LRP reads
    the product as the diagonal linear layer it is and applies the Scale's rule (default: ε with the call's ε;
    any rule of Linear/Conv layers can be mapped to ``nx.canonizers.Scale``). Products of two activations (gates,
    attention) and products with a Python number are left alone.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.attribution.lrp import ExplicitScale
    >>> canon = ExplicitScale()
    >>> a = torch.ones(2, requires_grad=True)
    >>> gamma = torch.nn.Parameter(torch.tensor([0.5, 2.0]))
    >>> with canon.apply(torch.nn.Identity()):
    ...     y = a * gamma
    >>> canon.calls, y.tolist()
    (1, [0.5, 2.0])
    """

    def __init__(self) -> None:
        self.scale = Scale()
        self.calls = 0
        self.scale.register_forward_pre_hook(self._count)

    def _count(self, module: nn.Module, args: tuple) -> None:
        self.calls += 1

    def extra_modules(self) -> dict[str, nn.Module]:  # noqa: D102
        return {"<layer scale>": self.scale}

    def _product(self, func: Any, args: tuple, kwargs: dict) -> Any:
        found = _operands(func, args, kwargs)
        inplace = func in _INPLACE_MULS or func in _INPLACE_DIVS
        if found is None or (inplace and found[0] is not args[0]):
            return NotImplemented
        act, factor, divide = found
        scale = self.scale
        if divide:
            scale.factor = torch.reciprocal(factor.detach())
            scale.compute = lambda x: torch.div(x, factor)
        else:
            scale.factor = factor
            first = args[0] is act
            scale.compute = (lambda x: torch.mul(x, factor)) if first else (lambda x: torch.mul(factor, x))
        try:
            # in place: the rule keeps its input for the backward pass, so it gets a copy that is never written
            result = scale(act.clone() if inplace else act)
        finally:
            scale.factor = scale.compute = None
        if inplace:
            return _Assign.apply(args[0], result)
        return result

    @contextmanager
    def apply(self, model: nn.Module, example: torch.Tensor | None = None) -> Iterator[None]:  # noqa: D102
        self.calls = 0
        with _handling(dict.fromkeys(_MULS | _DIVS | _INPLACE_MULS | _INPLACE_DIVS, self._product)):
            yield


def default_canonizers() -> list[Canonizer]:
    """``[MergeBatchNorm(), ExplicitResidual(), ExplicitScale()]``: what ``canonizers="auto"`` uses."""
    return [MergeBatchNorm(), ExplicitResidual(), ExplicitScale()]
