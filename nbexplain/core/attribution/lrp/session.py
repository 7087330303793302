"""One LRP session: while it is open, the model's backward pass propagates relevance instead of gradients.

A :class:`Session` lives as long as the rules are on a model — one :func:`nbexplain.lrp` call, or one
``with nx.lrp_rules(model):`` block (:mod:`.context`) — and is the one code path of both (:func:`rules_on`
opens it).

- Its hooks are registered once, in one :class:`~nbexplain.core._base.machinery.Handles` collection, and removed
  together by :meth:`Session.close` (the stand-in forwards of αβ layers, :class:`~.engine._SplitForward`,
  included).
- Each forward pass *of the model itself* is one explained pass. A forward pre-hook on the model (run before
  any other) resets the per-pass state (which layer is the first, the batch-norm merges, the workspace, the
  captured layers) and enters the canonizers — their torch-function modes are active only while the model's
  forward runs, so code around the call is untouched — and ``strict=False``'s functional rules. A forward hook
  on the model (registered last, ``always_call``: also when the forward raises) leaves them again and checks
  the graph behind the outputs: operations no rule covers raise an
  :class:`~.engine.UnsupportedModuleError` (``strict``) that names the module computing each, found by a
  second, diagnostic forward pass.
- A submodule called on its own, outside a forward pass of the model, is not touched.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import FrameType
from typing import Any

import torch
from torch import nn

from ..._base.hygiene import preserved
from ..._base.machinery import Handles, user_stacklevel
from . import engine
from .attention import AttentionForward, EncoderLayerForward, NormForward, norm_node
from .canonizers import Canonizer, MergeBatchNorm, bn_mergeable, shared_dispatch
from .composites import BATCHNORMS, CONVS, DENSE, TRANSPARENT, Composite, Sum
from .engine import (
    _NONNEG_ACTIVATIONS,
    UnsupportedModuleError,
    _bad_nodes,
    _bn_fold,
    _DepthHook,
    _gradient_node,
    _graph_error,
    _OpOwners,
    _own_ops,
    _RuleFunction,
    _SplitForward,
    _SumFunction,
    _tensor_leaves,
    _unsupported,
)
from .functional import FunctionalOpsWarning
from .inputs import computed_in_float32, suspended_backward_hooks
from .ops import POOLS, WEIGHTED, LayerOp, Workspace, make_op
from .rules import AlphaBeta, Epsilon, Gradient, NormIdentity, Pass, Rule

__all__ = ["Session", "rules_on", "NestedRulesError"]

#: Which outputs of a forward pass the graph check reads: all tensors of the output (``nx.lrp_rules``), or the
#: one ``output=`` selects (``nx.lrp``).
Select = Callable[[Any], list[torch.Tensor]]


class NestedRulesError(RuntimeError):
    """LRP rules were to be put on a model (or a module of it) that already has them."""


def all_outputs(output: Any) -> list[torch.Tensor]:
    """Every tensor of a model output (a tensor, or tuples / lists / dicts of them)."""
    return _tensor_leaves(output)


class Session:
    """The hooks that put LRP rules on a model; one explained pass per forward pass of the model.

    State of the latest pass — read after the model returned, before its next forward pass — lives in
    :attr:`rules` (the rule of each hooked layer, by name), :attr:`captured` (relevance at the outputs of the
    ``capture`` layers, filled by the backward pass) and :attr:`workspace` (scratch buffers of the rules, for its
    backward pass).
    """

    def __init__(
        self,
        model: nn.Module,
        composite: Composite,
        canonizers: Sequence[Canonizer],
        capture: Sequence[str] = (),
        *,
        strict: bool = True,
        select: Select = all_outputs,
        pooled: bool = True,
        eval_mode: bool = True,
    ) -> None:
        self.model = model
        self.composite = composite
        self.canonizers = list(canonizers)
        self.capture = set(capture)
        self.strict = strict
        self.select = select
        # pooled: the workspace borrows the CPU buffers kept from the previous call, and the caller closes it
        # after the backward pass (nx.lrp). Without: fresh buffers, left to the garbage collector — inside
        # nx.lrp_rules the backward pass is the user's, and its end is not known here.
        self.pooled = pooled
        self.eval_mode = eval_mode  # False (lrp(eval_mode=False)): training-mode forwards are the point, not an error
        self.handles = Handles()
        #: True while a forward pass of the model runs (the units' hooks act only then).
        self.active = False
        self.diagnosing = False
        self._pass: ExitStack | None = None
        self._frame: Any = None
        self._stop: set[int] = set()
        self._reentered = 0
        self.transparent: set[nn.Module] = set()
        # MergeBatchNorm inside a session: a batch norm whose input is exactly the output a Linear/Conv call just
        # produced is folded into that call while the forward pass runs (no parameter is swapped, no extra
        # trace pass)
        self.merge_bn = any(isinstance(c, MergeBatchNorm) for c in self.canonizers)
        for c in self.canonizers:
            self.transparent |= c.transparent()
        self._reset(pooled=None)
        try:
            self._register(model)
        except BaseException:
            self.handles.remove()
            raise

    def _register(self, model: nn.Module) -> None:
        # strict=False: functional rules (a torch-function mode, entered per pass) that know the module running;
        # their module hooks stay for the session, like the units' (hooks registered while the model's own
        # pre-hooks run would miss that pass)
        self.functional = self.composite.functional_rules(self.model, self.strict)
        if self.functional is not None:
            self.handles.add(self.functional.close)
            self.functional.inside = lambda: self.depth > 0
        # first of all the model's pre-hooks: a pass starts before any unit (the model itself may be one) runs
        self.handles.add(model.register_forward_pre_hook(self._begin, prepend=True, with_kwargs=True))
        units = self._units(model)
        for c in self.canonizers:
            units.update(c.extra_modules())
        composite = self.composite
        for name, mod in units.items():
            self.handles.add(mod.register_forward_pre_hook(_DepthHook(self)))
            if (
                type(mod) in engine._SPLITTABLE  # read per session (tests switch the split off)
                and "forward" not in mod.__dict__
                and isinstance(composite.rule_for(name, mod), AlphaBeta)
            ):
                self.handles.add(_SplitForward(self, name, mod))
            if (
                type(mod) is nn.LayerNorm
                and "forward" not in mod.__dict__
                and isinstance(composite.rule_for(name, mod), NormIdentity)
            ):
                self.handles.add(NormForward(self, mod))
            if getattr(mod, "inplace", False) is True:
                self.handles.add(mod.register_forward_pre_hook(self._copy_input))
            self.handles.add(mod.register_forward_hook(self._make_hook(name)))
        if composite.attention is not None:  # explicit attention paths for the pass (not for modules given a rule)
            for name, mod in model.named_modules():
                if name in units or "forward" in mod.__dict__:
                    continue
                if type(mod) is nn.MultiheadAttention:
                    self.handles.add(AttentionForward(self, mod))
                elif type(mod) is nn.TransformerEncoderLayer:
                    self.handles.add(EncoderLayerForward(self, mod))
        modules = dict(model.named_modules())
        for name in self.capture:
            self.handles.add(modules[name].register_forward_hook(self._make_capture(name)))
        # last of the model's forward hooks: the pass ends after the rule of the model itself (a single layer)
        self.handles.add(model.register_forward_hook(self._end, with_kwargs=True, always_call=True))

    # ------------------------------------------------------------------------------------------------
    # one explained pass per forward pass of the model
    # ------------------------------------------------------------------------------------------------

    def _reset(self, pooled: bool | None) -> None:
        """Fresh per-pass state (``pooled``: whether the workspace takes the buffers kept between calls;
        ``None``: no workspace yet)."""
        self.first_done = False
        self.rules: dict[str, Rule] = {}
        self.captured: dict[str, list[torch.Tensor]] = {}
        # id(rule output) -> (that output, its version, layer input, rule, op, module): see _merge
        self.produced: dict[int, tuple[torch.Tensor, int, torch.Tensor, Rule, Any, nn.Module]] = {}
        self.capture_store: dict[int, tuple[torch.Tensor, Any]] = {}
        # tensors known to be ≥ 0 (ReLU outputs and what max pooling / reshapes make of them), so that
        # z⁺ and αβ skip their x⁻ terms without scanning the input: id -> (tensor, version)
        self.nonneg: dict[int, tuple[torch.Tensor, int]] = {}
        # in-place activations (ReLU(inplace=True)) would put their own graph node between the rules:
        # they get a copy of their input, and the rule function connects to the untouched original
        self.originals: dict[int, list[torch.Tensor]] = {}
        # αβ layers on non-negative inputs: the layer's output from z⁺ + z⁻ (_SplitForward): id(output) ->
        # (output, its version, the op holding the two halves)
        self.halves: dict[int, tuple[torch.Tensor, int, LayerOp]] = {}
        # layer norms under NormIdentity: 1/σ from their one native_layer_norm (attention.NormForward), by output
        self.norm_stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # how many modules with hooks are running now: operations inside them belong to their rule (read by
        # the functional rules of strict=False), and a unit called inside another (a residual Sum inside a
        # block mapped to nx.rules.Gradient()) is part of the outer unit's computation, not a rule of its own
        self.depth = 0
        # a pooled workspace takes the buffers kept from the previous call: made when a pass begins, never before
        # (one made for nothing would take them and never give them back, and count as a call of the weight cache)
        self.workspace: Workspace | None = None if pooled is None else Workspace(pooled=pooled)

    def _clear(self) -> None:
        """Let the activations go as soon as the pass is over (the rule nodes keep what they need)."""
        self.nonneg.clear()
        self.originals.clear()
        self.produced.clear()
        self.capture_store.clear()
        self.halves.clear()
        self.norm_stats.clear()

    def _running(self) -> bool:
        """Whether the pass that began is still on the call stack (else a KeyboardInterrupt, which runs no
        always-called hook, cut it short)."""
        frame: FrameType | None = sys._getframe(2)
        while frame is not None:
            if frame is self._frame:
                return True
            frame = frame.f_back
        return False

    def _begin(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.active and self._running():  # the model calls itself: part of the running pass
            self._reentered += 1
            return None
        self._leave()  # a pass cut short by a KeyboardInterrupt: its modes off, its state gone
        self._reentered = 0
        training = [n or "the model" for n, m in model.named_modules() if m.training] if self.eval_mode else []
        if training:
            raise RuntimeError(
                f"LRP rules explain the model in eval mode, but {training[:3]} are in training mode (model.train(), "
                "or a call with eval_mode=False inside nx.lrp_rules(...)): batch norm and dropout would compute "
                "something the rules do not describe. Call the model in eval mode (the nbexplain methods do by "
                "default), and train it outside the context."
            )
        self._reset(pooled=self.pooled)
        leaves = _tensor_leaves((args, kwargs))
        # the graph check stops where the model's computation begins
        self._stop = {id(t.grad_fn) for t in leaves if t.grad_fn is not None}
        example = next((t.detach() for t in leaves if t.is_floating_point()), None)
        stack = ExitStack()
        try:
            if self.functional is not None:  # below the canonizers' modes: residual sums still become Sum modules
                self.functional.nonlinear = {}
                stack.enter_context(self.functional)
                if hasattr(self.functional, "handlers"):  # the attention rules take the canonizers' handlers
                    stack.enter_context(shared_dispatch(self.functional))
            for c in self.canonizers:
                if not isinstance(c, MergeBatchNorm):  # merged during the forward pass (_merge)
                    stack.enter_context(c.apply(model, example))
        except BaseException:
            stack.close()
            raise
        self._pass = stack
        self._frame = sys._getframe(1)  # the model call's frame (torch's _call_impl), to tell a reentry
        self.active = True
        return None

    def _leave(self) -> None:
        """End the running pass: canonizer and functional modes off, per-pass maps cleared."""
        self.active = False
        self._frame = None
        stack, self._pass = self._pass, None
        try:
            if stack is not None:
                stack.close()
        finally:
            self._clear()

    def _end(self, model: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._reentered:
            self._reentered -= 1
            return None
        if not self.active:  # the pass did not start (a pre-hook raised)
            return None
        self._leave()
        if output is None:  # the forward pass raised: nothing to check, no backward pass will come
            if self.pooled and self.workspace is not None:
                self.workspace.close()
            return None
        if self.functional is not None:
            self.functional.report(stacklevel=user_stacklevel() + 1)
        if not self.diagnosing:
            self._check(args, kwargs, output)
        return None

    def _selected(self, output: Any) -> list[torch.Tensor]:
        try:
            outs = self.select(output)
        except Exception:  # noqa: BLE001 - a wrong `output=` is reported by the caller, with its own message
            return []
        return [t for t in outs if isinstance(t, torch.Tensor) and t.requires_grad]

    def _check(self, args: tuple, kwargs: dict, output: Any) -> None:
        """Operations on the explained input that no rule covers: an error (``strict``) or a warning."""
        bad = {id(b): b for out in self._selected(output) for b in _bad_nodes(out, self._stop)}
        if not bad:
            return
        if self.strict:
            if self.pooled and self.workspace is not None:
                self.workspace.close()
            raise self._locate(args, kwargs)
        warnings.warn(
            f"strict=False: the model computes {sorted({type(b).__name__ for b in bad.values()})} on the "
            "explained input outside any module with an LRP rule, where no functional rule could be "
            "applied; relevance followed their gradient there, which is not a relevance rule. Move them "
            "into a module and map nx.rules.Gradient() (or another rule) to it.",
            FunctionalOpsWarning,
            stacklevel=user_stacklevel(),
        )

    def _locate(self, args: tuple, kwargs: dict) -> UnsupportedModuleError:
        """The graph check failed: run the forward pass again, recording which module created each operation,
        and return the error naming them."""
        owners = _OpOwners(self.model)
        self.diagnosing = True
        try:
            with owners, torch.enable_grad():
                raw = self.model(*args, **kwargs)
        finally:
            owners.close()
            self.diagnosing = False
        if self.pooled and self.workspace is not None:
            self.workspace.close()
        bad = {id(b): b for out in self._selected(raw) for b in _bad_nodes(out, self._stop)}
        return _graph_error(list(bad.values()), owners.owners)

    def close(self) -> None:
        """Remove every hook (and a pass left open by an interrupted forward)."""
        try:
            self._leave()
        finally:
            self.handles.remove()

    # ------------------------------------------------------------------------------------------------
    # the units' hooks
    # ------------------------------------------------------------------------------------------------

    def _units(self, model: nn.Module) -> dict[str, nn.Module]:
        """Modules that get a hook: leaves, and containers the composite maps by name or type."""
        units: dict[str, nn.Module] = {}
        skip: list[str] = []
        for name, mod in model.named_modules():
            if any(name.startswith(s + ".") for s in skip):
                continue
            leaf = next(iter(mod.children()), None) is None
            if leaf and self._functional_leaf(name, mod):
                continue  # its operations get the attention composite's functional rules
            if leaf:
                units[name] = mod
            elif isinstance(mod, WEIGHTED + POOLS):
                # a layer with children of its own (weight parametrizations): one unit, its children are
                # part of how it computes its weight
                units[name] = mod
                skip.append(name)
            elif name and (name in self.composite.names or any(isinstance(mod, t) for t, _ in self.composite.types)):
                units[name] = mod
                skip.append(name)
        return units

    def _functional_leaf(self, name: str, mod: nn.Module) -> bool:
        """A leaf the attention composite maps no rule to (a custom activation module such as a ``GELUActivation``,
        timm's ``LayerScale``): not a unit, so that its functional operations get AttnLRP's rules and the
        canonizers' (``x * self.gamma`` a layer scale); an operation without a rule still fails the graph check,
        naming the module."""
        return (
            self.composite.attention is not None
            and not isinstance(mod, TRANSPARENT)
            and self.composite.rule_for(name, mod) is None
        )

    def _is_nonneg(self, t: torch.Tensor) -> bool:
        entry = self.nonneg.get(id(t))
        return entry is not None and entry[0] is t and entry[1] == t._version

    def _mark_nonneg(self, t: torch.Tensor) -> torch.Tensor:
        self.nonneg[id(t)] = (t, t._version)
        return t

    def _copy_input(self, module: nn.Module, args: tuple) -> Any:
        if not self.active or self.depth > 1:
            return None
        x = args[0] if args else None
        with _own_ops():
            if isinstance(x, torch.Tensor) and x.requires_grad:
                self.originals.setdefault(id(module), []).append(x)
                return (x.clone(),) + tuple(args[1:])
        return None

    def _structured(self, name: str, module: nn.Module, args: tuple, output: Any) -> Any:
        """A module whose output is a tuple/dict (LSTM, GRU, MultiheadAttention, …): only
        :class:`~.rules.Gradient` applies; no rule is an error naming the module."""
        if not any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            return None
        if not any(t.requires_grad for t in _tensor_leaves(output)):
            return None
        rule = self.composite.rule_for(name, module)
        if rule is None and (isinstance(module, TRANSPARENT) or type(module) is nn.Module):
            return None
        if rule is None:
            raise _unsupported(name, module)
        if not isinstance(rule, Gradient):
            raise TypeError(
                f"{name!r} ({type(module).__name__}) returns {type(output).__name__}, not a tensor; only "
                f"nx.rules.Gradient() (gradient × input through the module) applies to it, got {rule!r}."
            )
        self.rules.setdefault(name, rule)
        return _gradient_node(args, output, rule.stabilizer)

    def _make_hook(self, name: str):
        rule_hook = self._make_rule_hook(name)

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if not self.active:  # called outside a forward pass of the model (a submodule called directly)
                return None
            try:
                if self.depth > 1:  # called inside another unit: part of that unit's computation
                    return None
                with _own_ops():
                    return rule_hook(module, args, output)
            finally:
                self.depth -= 1

        return hook

    def _make_rule_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            x = args[0] if args else None
            stash = self.originals.get(id(module))
            if stash:
                x = stash.pop()
            if not isinstance(output, torch.Tensor):
                return self._structured(name, module, args, output)
            if not isinstance(x, torch.Tensor) or not x.requires_grad:
                return None  # not on the explained input's path
            if module in self.transparent:
                if output is not x and self._is_nonneg(x):
                    self._mark_nonneg(output)
                return None
            if self.merge_bn and isinstance(module, BATCHNORMS):
                merged = self._merge(module, x, output)
                if merged is not None:
                    return merged
            is_weighted = isinstance(module, DENSE + CONVS)
            first = is_weighted and not self.first_done
            if is_weighted:
                self.first_done = True
            rule = self.composite.rule_for(name, module, first=first)
            if rule is None:
                if isinstance(module, TRANSPARENT) or type(module) is nn.Module:
                    if isinstance(module, TRANSPARENT) and self._is_nonneg(x):
                        self._mark_nonneg(output)
                    return None
                raise _unsupported(name, module, x, output)
            self.rules.setdefault(name, rule)
            if isinstance(rule, Gradient):
                return _gradient_node(args, output, rule.stabilizer)
            if isinstance(rule, NormIdentity):
                return norm_node(module, x, output, rule.epsilon, self.norm_stats)
            if isinstance(module, Sum):
                if not isinstance(rule, Epsilon):  # Norm and ZeroRule are ε rules too
                    raise TypeError(f"Residual sums take an ε-type rule (nx.rules.Norm(), nx.rules.Epsilon()), got {rule!r}.")
                return _SumFunction.apply(args[0], args[1], output.detach(), max(rule.epsilon, 1e-12))
            supported = isinstance(module, WEIGHTED + POOLS)
            if not supported and not isinstance(rule, Pass):
                same = tuple(output.shape) == tuple(x.shape)
                raise TypeError(
                    f"Rule {rule!r} needs a Linear, Conv, ConvTranspose, batch-norm or average-pooling layer, but "
                    f"{name!r} is a {type(module).__name__}; map nx.rules.Gradient() to it instead"
                    + (" (or nx.rules.Pass() if it acts element-wise)." if same else ".")
                )
            split = self.halves.pop(id(output), None)
            if split is not None and split[0] is output and split[1] == output._version:
                op = split[2]  # made by _SplitForward for this call, holding z⁺ and z⁻
            else:
                op = make_op(module, x, output)
                op.workspace = self.workspace
            if rule.needs_weights and op.weight is None:
                raise TypeError(
                    f"Rule {rule!r} modifies weights, but {name!r} ({type(module).__name__}) has none; "
                    "use nx.rules.Norm() or nx.rules.Epsilon() for pooling layers."
                )
            if self._is_nonneg(x):
                op.nonneg = True
            out = _RuleFunction.apply(x, output.detach(), rule, op, self.merge_bn and is_weighted)
            if (isinstance(rule, Pass) and isinstance(module, _NONNEG_ACTIVATIONS)) or (
                isinstance(module, POOLS) and op.nonneg
            ):
                self._mark_nonneg(out)
            if self.merge_bn and is_weighted:
                self.produced[id(out)] = (out, out._version, x, rule, op, module)
            return out

        return hook

    def _merge(self, bn: nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor | None:
        """Fold ``bn`` into the Linear/Conv call that produced its input ``x`` (if it did, and ``x`` was not
        written since): one rule node from that layer's input to the batch norm's output, with the merged
        weights. The layer's own rule node is then left without a consumer (unless something else reads
        its output, which then correctly gets relevance through it)."""
        src = self.produced.get(id(x))
        if src is None or src[0] is not x or src[1] != x._version or bn.training or not bn_mergeable(bn, src[5]):
            return None
        _, _, lin_in, rule, lin_op, lin = src
        op = lin_op.copy()
        op.merge(*_bn_fold(bn, op.bias, op.weight.dtype))
        # handed on, not shared: the merged node's rule writes into them, and the layer's own node (should
        # something else read its output) then computes its own
        op.halves, lin_op.halves = lin_op.halves, None
        out = _RuleFunction.apply(lin_in, output.detach(), rule, op)
        stored = self.capture_store.get(id(x))
        if stored is not None and stored[0] is x:
            out.register_hook(stored[1])  # relevance "at the layer" = at the merged pair's output
        return out

    def _make_capture(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not self.active or not isinstance(output, torch.Tensor) or not output.requires_grad:
                return
            slots = self.captured.setdefault(name, [])
            # zeros until relevance arrives: an output the explained score does not depend on gets none
            slots.append(torch.zeros_like(output, memory_format=torch.contiguous_format).detach())
            index = len(slots) - 1

            def store(grad: torch.Tensor) -> None:
                slots[index] = grad.detach()

            output.register_hook(store)
            self.capture_store[id(output)] = (output, store)

        return hook



#: Modules that have LRP rules on them now (an open session), so that a second session on them is refused.
_RULED: weakref.WeakSet[nn.Module] = weakref.WeakSet()

_NESTED = {
    "nx.lrp_rules": "nx.lrp_rules(...) contexts do not nest: the model (or a module of it, {names}) already has LRP "
    "rules on it from an enclosing nx.lrp_rules(...) block. Leave that block first, or use one context whose "
    "composite maps every rule you need (an nx.Composite keyed by layer type or name).",
    "nx.lrp": "nx.lrp cannot run inside nx.lrp_rules(...) on the same model ({names} already have LRP rules on "
    "them): inside the context the model's backward pass propagates relevance already, so call "
    "nx.gradient(model, inputs, target) there (it equals nx.lrp(..., init='one')), or call nx.lrp after the block.",
}


@contextmanager
def rules_on(
    model: nn.Module,
    composite: Composite,
    canonizers: Sequence[Canonizer],
    capture: Sequence[str] = (),
    *,
    strict: bool = True,
    select: Select = all_outputs,
    pooled: bool = True,
    what: str = "nx.lrp_rules",
    eval_mode: bool = True,
) -> Iterator[Session]:
    """Put LRP rules on ``model`` for the block (one :class:`Session`) and leave it exactly as found after it.

    The model is in eval mode inside the block, its parameters do not require grad, its own module backward
    hooks are off (they would see relevance) and a float16/bfloat16 model computes in float32 copies of its
    parameters (:mod:`.inputs`). On exit — also through an exception — the hooks go (:class:`Handles`), and
    :func:`~nbexplain.core._base.hygiene.preserved` puts back every mode, hook, ``requires_grad`` and ``.grad``
    (and every value, for canonizers that write into them). ``what`` names the caller in the error raised when
    the model already has rules on it (:class:`NestedRulesError`). ``eval_mode=False`` (``nx.lrp(...,
    eval_mode=False)``) keeps the model's own modes: dropout stays active and a training-mode batch norm
    normalises with the batch's statistics (and updates its running statistics, which are put back on exit).
    """
    mods = list(model.modules())
    ruled = [n or "the model" for n, m in model.named_modules() if m in _RULED]
    if ruled:
        raise NestedRulesError(_NESTED.get(what, _NESTED["nx.lrp_rules"]).format(names=ruled[:3]))
    # a forward pass in training mode updates batch-norm running statistics: snapshot the values then
    values = not eval_mode or any(c.changes_values(model) for c in canonizers)
    with preserved(model, values=values), suspended_backward_hooks(model), computed_in_float32(model):
        if eval_mode:
            model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        _RULED.update(mods)
        try:
            session = Session(
                model, composite, canonizers, capture, strict=strict, select=select, pooled=pooled, eval_mode=eval_mode
            )
            try:
                yield session
            finally:
                session.close()
        finally:
            for m in mods:
                _RULED.discard(m)
