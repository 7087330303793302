"""The LRP engine: the autograd nodes that turn one forward and one backward pass into a relevance propagation.

The hooks that put them into the model live in :mod:`.session` (one :class:`~.session.Session` per
:func:`~nbexplain.lrp` call or :func:`~nbexplain.lrp_rules` block). During the forward pass every module with
a rule is hooked: its output is replaced by the output of
an autograd function that computes the rule's denominators (``Rule.forward``) and whose backward
pass turns the incoming relevance into input relevance (``Rule.backward``). The backward pass is then
a single ``torch.autograd.grad`` call seeded with the explained output, so relevance — not gradient —
flows through the graph. Modules without a rule (max pooling, reshapes, eval-mode dropout) pass it on
along their gradient. A module called more than once gets one autograd node per call.

- A batch norm that normalises exactly the output a Linear/Conv call just produced is folded into that call
  while the forward pass runs (:meth:`.session.Session._merge`): one rule node from the layer's input to the batch
  norm's output, with merged weights derived only when a rule needs them.
- A module mapped to :class:`~.rules.Gradient` (LSTM, GRU, attention, any block, also with tuple outputs)
  gets one :class:`_GradientFunction` node: gradient × input through the module's own graph.
- Operations outside any module with a rule are rejected after the forward pass (``strict``); the error
  names the module whose forward computed them (found by a second, diagnostic pass, :class:`_OpOwners`).
  With ``strict=False`` they get rules consistent with gradient × input during the forward pass
  (:mod:`.functional`), which reads :attr:`.session.Session.depth` to leave the operations inside units alone.
- Weight-sized scratch tensors of the rules live in a :class:`~.ops.Workspace` that the layers take turns on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..result import AttributionResult
from .composites import CONVS, DENSE, Composite
from .functional import ModuleStackMode
from .ops import make_op
from .rules import AlphaBeta, Rule, stabilize

__all__ = ["LRPResult", "UnsupportedModuleError"]


_NONNEG_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid, nn.Softplus)


#: The rules' own tensor operations during the explained forward pass skip torch-function modes (the residual
#: canonizer's, strict=False's functional rules): they are not the model's computation, and every operation
#: through a Python mode costs ≈ 3 µs (≈ 2,000 of them per ResNet-18 αβ call).
_own_ops = getattr(torch._C, "DisableTorchFunction", contextlib.nullcontext)


class UnsupportedModuleError(TypeError):
    """A module (or a functional operation) the explained input reaches has no LRP rule."""


# autograd nodes relevance may pass through unchanged: moving, selecting or copying values, routing to
# a maximum (max pooling, ReLU masks, eval-mode dropout), zero padding — plus nbexplain's own nodes
_SAFE_NODES = (
    "_RuleFunction", "_SumFunction", "_Assign", "AccumulateGrad", "View", "Reshape", "UnsafeView",
    "Permute", "Transpose", "TBackward", "Squeeze", "Unsqueeze", "Slice", "Select", "Cat", "Stack",
    "Split", "Unbind", "Index", "Clone", "ToCopy", "Alias", "AsStrided", "MaxPool", "AdaptiveMaxPool",
    "Relu", "Threshold", "MaxBackward", "Flip", "Roll", "ConstantPadNd", "Contiguous", "Unfold",
    "Narrow", "Identity", "Flatten", "Unflatten", "_GradientFunction", "_SoftmaxRule", "_IdentityRule", "_LinearRule", "_MatmulRule",
    "_NormRule",
    # copies of input elements or constants (relevance following their gradient is consistent): see
    # functional.COPY_LIKE
    "Expand", "Repeat", "Gather", "Take", "Where", "MaskedFill", "Clamp", "Hardtanh", "Sort", "Topk",
    "ReflectionPad", "ReplicationPad", "CopySlices", "CopyBackwards", "Im2Col", "PixelShuffle", "PixelUnshuffle",
)
_ATTENTION_HINT = (
    "a transformer's attention (softmax, products of activations, layer norm, GELU) has rules in "
    "composite='attn_lrp' (AttnLRP) and 'cp_lrp'"
)
_HINTS = {
    "Add": "with canonizers='auto' sums of two activations become Sum modules; a sum with a constant (a "
    "position embedding, a functional bias) needs strict=False, which splits it in proportion to the summands",
    "Sub": "strict=False splits a difference in proportion to its terms",
    "Mean": "use an nn.AdaptiveAvgPool module instead of .mean(), or strict=False (both split a mean in "
    "proportion to its terms)",
    "Sum": "strict=False splits a sum over a dimension in proportion to its terms",
    "Mul": "a product with a factor that does not depend on the input (a layer scale x * self.gamma, a mask "
    "buffer) is a linear layer of its own with canonizers='auto' when the factor is a tensor that broadcasts to the "
    "activation's shape; a product of two activations (a gate, attention) needs strict=False (gradient × input "
    "through it, named in a FunctionalOpsWarning) or a module around it mapped to nx.rules.Gradient(); a product with a "
    "Python number needs strict=False (it splits a scaling in proportion)",
    "Div": "a division by a tensor that does not depend on the input is a linear layer of its own with "
    "canonizers='auto'; other divisions need strict=False or a module around them mapped to nx.rules.Gradient()",
    "Convolution": "call convolutions through nn.Conv / nn.ConvTranspose modules, not F.conv*",
    "Addmm": "call dense layers through nn.Linear, not F.linear / @",
    "Mm": "call dense layers through nn.Linear, not F.linear / @",
    "Softmax": _ATTENTION_HINT,
    "Bmm": _ATTENTION_HINT,
    "NativeLayerNorm": "layer norms have AttnLRP's rule in composite='attn_lrp' and 'cp_lrp'",
    "Gelu": "GELU and other element-wise activations have AttnLRP's identity rule in composite='attn_lrp'",
    "BackwardHookFunction": "a global module backward hook (register_module_full_backward_hook) is registered; "
    "remove it while explaining",
}


def _bad_nodes(out: torch.Tensor, stop: set[int] | frozenset[int] = frozenset()) -> list[Any]:
    """The autograd nodes behind ``out`` that no LRP rule covers (relevance would pass them as gradients).

    ``stop``: ids of nodes where the model's computation begins (the ``grad_fn`` of inputs that were computed
    before the model was called, e.g. by the caller of a gradient method); they and what is behind them are not
    the model's."""
    seen: set[int] = set()
    bad: list[Any] = []
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or id(node) in stop:
            continue
        seen.add(id(node))
        if not type(node).__name__.startswith(_SAFE_NODES):
            bad.append(node)
        stack.extend(nxt for nxt, _ in node.next_functions)
    return bad


def _graph_error(bad: list[Any], owners: dict[int, str] | None = None) -> UnsupportedModuleError:
    """The error for operations no rule covers, naming the module whose forward computed each."""
    ops = sorted({type(b).__name__ for b in bad})
    where: dict[str, set[str]] = {}
    for b in bad:
        owner = (owners or {}).get(id(b), "")
        if owner:
            where.setdefault(owner, set()).add(type(b).__name__)
    hints = [h for k, h in _HINTS.items() if any(b.startswith(k) for b in ops)]
    located = (
        " Computed in: " + "; ".join(f"{mod}: {sorted(names)}" for mod, names in where.items()) + "."
        if where
        else ""
    )
    return UnsupportedModuleError(
        f"The model computes {ops} on the explained input outside any module with an LRP rule; "
        "relevance would pass these as plain gradients and stop meaning 'contribution'."
        + located
        + " "
        + ("; ".join(h[0].upper() + h[1:] for h in hints) + ". " if hints else "")
        + "Either pass strict=False — every such operation then gets a rule consistent with gradient × input: "
        "reshapes, indexing, concatenation and ReLU pass relevance on unchanged, sums, means and scalings split "
        "it in proportion to their terms, and non-linear operations (gelu, softmax, products, …) get gradient × "
        "input through them, listed in a FunctionalOpsWarning — or move the computation into modules and map "
        "rules to them (a module LRP has no rule for, e.g. an LSTM or attention block, can be mapped to "
        "nx.rules.Gradient(): gradient × input through it)."
    )


class _OpOwners(ModuleStackMode):
    """Records which module's forward created each autograd node (for error messages only: it runs in a
    second, diagnostic forward pass after the graph check failed)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.owners: dict[int, str] = {}
        self.keep: list[Any] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        result = func(*args, **(kwargs or {}))
        if self.stack:
            # a composite function (F.multi_head_attention_forward) creates many nodes in one call: tag every
            # new node behind its outputs, back to the nodes tagged before
            todo = [t.grad_fn for t in _tensor_leaves(result) if t.grad_fn is not None]
            while todo:
                node = todo.pop()
                if node is None or id(node) in self.owners:
                    continue
                self.owners[id(node)] = self.stack[-1]
                self.keep.append(node)
                todo.extend(nxt for nxt, _ in node.next_functions)
        return result



class _RuleFunction(torch.autograd.Function):
    """Identity on the module's output in the forward pass; the rule's redistribution backwards."""

    @staticmethod
    def forward(ctx, x, out, rule, op, defer=False):  # type: ignore[override]
        # defer: a Linear/Conv output a batch norm may be folded into next — the merged node then replaces
        # this one, whose denominators would be computed for nothing; they are computed in the backward pass
        # instead, from the output kept by reference (recomputed should code after the layer write into it)
        ctx.defer = defer and not rule.lazy
        saved = () if rule.lazy or ctx.defer else rule.forward(op, x, out)
        ctx.z = (out, out._version) if ctx.defer else None
        ctx.rule, ctx.op = rule, op
        ctx.save_for_backward(x if rule.saves_input or rule.lazy or ctx.defer else None, *saved)
        return out.detach()

    @staticmethod
    def backward(ctx, relevance):  # type: ignore[override]
        x, *saved = ctx.saved_tensors
        if ctx.rule.lazy:
            with torch.no_grad():
                saved = ctx.rule.forward(ctx.op, x, None)
        elif ctx.defer:
            z, version = ctx.z
            ctx.z = None
            with torch.no_grad():
                if z._version != version:
                    z = ctx.op.forward(x, ctx.op.weight, ctx.op.bias)
                saved = ctx.rule.forward(ctx.op, x, z)
        rel = ctx.rule.backward(ctx.op, x, saved, relevance)
        ctx.op.release()  # derived weights go now, so the next layer reuses their memory
        return rel, None, None, None, None


class _GradientFunction(torch.autograd.Function):
    """The :class:`~.rules.Gradient` rule on a module LRP has no rule for (LSTM, GRU, attention, …): identity on
    its tensor outputs forwards; backwards ``R_in = factor · a ⊙ (∂z/∂a)ᵀ (R_out / stab(z))`` for every tensor
    input ``a`` (gradient × input through the module, summed over its outputs), by a nested backward pass through
    the module's own graph. ``factor`` is 1 but for AttnLRP's uniform rule (:mod:`.attention`: ``1/n`` for a
    product of ``n`` activations)."""

    @staticmethod
    def forward(ctx, epsilon, factor, inner, n_in, *tensors):  # type: ignore[override]
        ins, outs = tensors[:n_in], tensors[n_in:]
        ctx.inner = inner
        ctx.n_in = n_in
        ctx.factor = factor
        # denominators now: code after the module may write into its outputs in place
        ctx.save_for_backward(*ins, *(stabilize(o.detach(), epsilon) for o in outs))
        return tuple(o.detach() for o in outs)

    @staticmethod
    def backward(ctx, *relevance):  # type: ignore[override]
        saved = ctx.saved_tensors
        ins, dens = saved[: ctx.n_in], saved[ctx.n_in :]
        inner_in, inner_out = ctx.inner
        seeds = [r / d for r, d in zip(relevance, dens, strict=True)]
        with torch.enable_grad():
            grads = torch.autograd.grad(inner_out, inner_in, seeds, allow_unused=True)
        ctx.inner = None
        rel = [None if g is None else g * a for g, a in zip(grads, ins, strict=True)]
        if ctx.factor != 1:
            rel = [None if r is None else r.mul_(ctx.factor) for r in rel]
        return (None, None, None, None, *rel, *([None] * len(dens)))


def _tensor_leaves(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensor_leaves(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensor_leaves(v)]
    return []


def _replace_leaves(value: Any, new: dict[int, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return new.get(id(value), value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple
        return type(value)(*(_replace_leaves(v, new) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_replace_leaves(v, new) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _replace_leaves(v, new)) for k, v in value.items())
    return value


def _gradient_node(args: tuple, output: Any, epsilon: float) -> Any:
    """``output`` with every tensor that depends on the inputs routed through one :class:`_GradientFunction`."""
    ins = list({id(a): a for a in args if isinstance(a, torch.Tensor) and a.requires_grad}.values())
    outs = [t for t in _tensor_leaves(output) if t.requires_grad and t.is_floating_point()]
    if not ins or not outs:
        return None
    # the outputs enter detached: the outer graph reaches the inputs only through this node
    new = _GradientFunction.apply(epsilon, 1.0, (ins, outs), len(ins), *ins, *(o.detach() for o in outs))
    return _replace_leaves(output, {id(o): n for o, n in zip(outs, new, strict=True)})


class _SumFunction(torch.autograd.Function):
    """``a + b`` forwards; relevance split in proportion to each summand backwards (ε-stabilised)."""

    @staticmethod
    def forward(ctx, a, b, out, epsilon):  # type: ignore[override]
        # the shares are taken now: residual code often updates the summands in place afterwards
        den = stabilize(out, epsilon)
        ctx.save_for_backward(a / den, b / den)
        return out.detach()

    @staticmethod
    def backward(ctx, relevance):  # type: ignore[override]
        qa, qb = ctx.saved_tensors
        return relevance * qa, relevance * qb, None, None


@dataclass(repr=False, kw_only=True)
class LRPResult(AttributionResult):
    """What :func:`lrp` returns: an :class:`~nbexplain.AttributionResult` with LRP's extras.

    Attributes
    ----------
    attribution
        Input relevance, shape of the explained input (``(N, T)`` for token ids).
    target
        The explained class per sample, LongTensor ``(N,)`` (also for ``target=None``: the predicted class);
        for a ``(position, token)``, region or function target the bound
        :class:`~nbexplain.core._base.targets.Target`.
    output
        The model's (selected) output, e.g. ``(N, n_classes)``, in eval mode (after canonization), detached.
    score
        ``(N,)`` float64 — the explained score at the output (the target's logit, a region's summed map, a
        function target's value).
    output_relevance
        ``(N,)`` — the relevance put on the output per sample (in the output's dtype), which LRP conserves:
        ``∂s/∂out ⊙ out`` summed (``init="logit"``: the score itself for a class, token or region, and for a
        function that is homogeneous of degree 1) or ``Σ ∂s/∂out`` (``init="one"``: 1 for a class).
    layers
        Relevance at the *outputs* of the requested layers (``layers=``), by name; a module called more
        than once gets ``name``, ``name#2``, ….
    composite
        The composite that assigned the rules.
    rules
        The rule used for each hooked layer, by name.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> _ = torch.manual_seed(0)  # unseeded, all four ReLUs can be off for an input: a zero logit, 0/0
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8, bias=False), torch.nn.ReLU(), torch.nn.Linear(8, 2, bias=False))
    >>> res = nx.lrp(net, torch.rand(2, 3), composite="epsilon", epsilon=1e-9)
    >>> res.attribution.shape, bool(torch.allclose(res.conservation, torch.ones(2, dtype=torch.float64)))
    (torch.Size([2, 3]), True)
    """

    output_relevance: torch.Tensor
    layers: dict[str, torch.Tensor] = field(default_factory=dict)
    composite: Composite | None = None
    rules: dict[str, Rule] = field(default_factory=dict)

    @property
    def conservation(self) -> torch.Tensor:
        """Σ input relevance ÷ the relevance put on the output, per sample (1 = fully conserved; biases, ε and
        αβ make it differ)."""
        return self.total / self.output_relevance.double()

    @property
    def conservation_error(self) -> torch.Tensor:
        """``|Σ R_in − output_relevance|`` per sample."""
        return (self.total - self.output_relevance.double()).abs()

    def report(self) -> str:
        """A short text summary of conservation over the batch."""
        c = self.conservation
        name = self.composite.name if self.composite is not None else "?"
        return (
            f"LRP ({name}), {len(c)} samples: Σ relevance / explained output = "
            f"{float(c.median()):.4f} median (min {float(c.min()):.4f}, max {float(c.max()):.4f}); "
            f"max |Σ R − f| = {float(self.conservation_error.max()):.3g}"
        )

    def __repr__(self) -> str:
        shape = tuple(self.attribution.shape)
        extra = f", layers={list(self.layers)}" if self.layers else ""
        name = self.composite.name if self.composite is not None else "?"
        return f"LRPResult(attribution={shape}, composite={name!r}, conservation≈{float(self.conservation.median()):.4f}{extra})"


#: Shape-preserving modules that are not element-wise: nx.rules.Pass() would be wrong for them, so it is not offered.
_NOT_ELEMENTWISE = tuple(
    getattr(nn, n)
    for n in (
        "LayerNorm", "GroupNorm", "RMSNorm", "LocalResponseNorm", "InstanceNorm1d", "InstanceNorm2d",
        "InstanceNorm3d", "Softmax", "Softmax2d", "LogSoftmax", "Softmin", "ChannelShuffle", "CrossMapLRN2d",
    )
    if hasattr(nn, n)
)


_TRANSFORMER_PARTS = (
    nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
    nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def _unsupported(name: str, module: nn.Module, x: Any = None, output: Any = None) -> UnsupportedModuleError:
    """The error for a module without a rule. Only remedies that work for it are offered: a Linear/Conv-type
    layer the composite did not map gets a layer rule; ``nx.rules.Pass()`` is offered only when the module kept its
    input's shape (and only for element-wise modules); ``nx.rules.Gradient()`` always works."""
    kind = type(module).__name__
    key = f"torch.nn.{kind}" if getattr(nn, kind, None) is type(module) else kind
    example = (
        f"composite=nx.Composite({{{key}: nx.rules.Gradient(), torch.nn.Conv2d: nx.rules.ZPlus(), "
        f"torch.nn.Linear: nx.rules.Epsilon()}}, first=nx.rules.Flat()), or key the rule by layer name, {{{name!r}: nx.rules.Gradient()}}"
    )
    if isinstance(module, DENSE + CONVS):
        remedy = (
            f"The composite maps no rule to {kind} layers: add one, e.g. {{{key}: nx.rules.ZPlus()}} or nx.rules.Epsilon() "
            f"(every rule of Linear/Conv layers applies to it), or key it by layer name, {{{name!r}: nx.rules.Epsilon()}}."
        )
    elif isinstance(module, _NOT_ELEMENTWISE):
        remedy = (
            f"{kind} mixes the values of a sample (it is not element-wise, so nx.rules.Pass() does not apply): map "
            f"nx.rules.Gradient() to it (gradient × input through it); e.g. {example}."
        )
    elif isinstance(output, torch.Tensor) and isinstance(x, torch.Tensor) and tuple(output.shape) == tuple(x.shape):
        remedy = (
            f"If {kind} acts element-wise (an activation: each output depends on its own input only), map nx.rules.Pass() "
            f"to it (the relevance passes unchanged); otherwise (a normalisation, attention, a custom block) map "
            f"nx.rules.Gradient() to pass gradient × input through it: e.g. {example}."
        )
    elif isinstance(output, torch.Tensor) and isinstance(x, torch.Tensor):
        remedy = (
            f"Map nx.rules.Gradient() to it (it maps {tuple(x.shape)} to {tuple(output.shape)}, so nx.rules.Pass() does not "
            f"apply): gradient × input through the module, which for a linear module without bias (upsampling, a "
            f"fixed filter, a shuffle) is LRP-0's proportional split; e.g. {example}."
        )
    else:
        remedy = (
            f"It returns more than one tensor (an RNN, attention): map nx.rules.Gradient() to it, gradient × input through "
            f"the module; e.g. {example}."
        )
    if isinstance(module, _TRANSFORMER_PARTS) or "Attention" in kind or "Norm" in kind:
        remedy = (
            "For a transformer, pass composite='attn_lrp' (AttnLRP: rules for attention, softmax, LayerNorm, GELU and "
            "position embeddings; 'cp_lrp' for CP-LRP), or nx.Composite({...}, attention='attn_lrp') to keep your "
            "own layer rules. Otherwise: " + remedy
        )
    return UnsupportedModuleError(
        f"LRP has no rule for module {name!r} ({kind}). Supported: Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, "
        "batch norm, average/max/adaptive pooling, Flatten/Unflatten, Dropout, ReLU-family/tanh/GELU activations, "
        "residual sums and layer scales (canonizers='auto'). " + remedy
    )


class _DepthHook:
    """Forward pre-hook counting the units running (:attr:`.session.Session.depth`); marked as nbexplain's own, so
    that it does not count as a user's weight hook (:func:`~.canonizers.bn_mergeable`)."""

    nbexplain_internal = True

    def __init__(self, session: Any) -> None:
        self.session = session

    def __call__(self, module: nn.Module, args: tuple) -> None:
        if self.session.active:
            self.session.depth += 1


#: Module types whose own forward :class:`_SplitForward` may stand in for (exactly these types: a subclass may
#: compute something else in its forward).
_SPLITTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class _SplitForward:
    """Stands in for the forward of a Linear/Conv layer whose rule is αβ (β > 0) and whose input is known to be
    ≥ 0, for the duration of one explained forward pass (an instance attribute ``forward``, removed in
    :meth:`remove`).

    αβ needs ``z⁺ = W⁺x`` and ``z⁻ = W⁻x`` anyway, and for ``x ≥ 0`` the layer's output is ``z⁺ + z⁻ + b``: the
    two products replace the layer's own one (three passes become two). The output then differs from the
    layer's own computation by float rounding of the same order as the layer's own (both sum the same products
    ``x_i w_ij`` in float32; the difference is bounded by ~ε_float · Σ_i |x_i w_ij|). ``z⁺`` and ``z⁻`` are kept
    for the backward pass (:attr:`~.ops.LayerOp.halves`, on the op that the layer's rule node takes over): two
    output-sized tensors per layer until its backward step, which overwrites them with the shares. A layer
    whose input is the explained input itself is not split even when that input is ≥ 0: there ``z⁺`` and
    ``z⁻`` are large and opposite (dense inputs, mixed-sign weights) and their sum carried several times the
    rounding error of the layer's own output into the whole network (measured in BENCHMARKS.md, "LRP on
    ResNet-18, fourth round")."""

    def __init__(self, session: Any, name: str, module: nn.Module) -> None:
        self.session, self.name, self.module = session, name, module
        module.forward = self  # type: ignore[method-assign]

    def remove(self) -> None:
        if self.module.__dict__.get("forward") is self:
            del self.module.forward

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with _own_ops():
            z = self._split(args, kwargs)
        return type(self.module).forward(self.module, *args, **kwargs) if z is None else z

    def _split(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """``z⁺ + z⁻ + b`` when the split applies (``None``: the layer's own forward runs)."""
        s, m = self.session, self.module
        x = args[0] if len(args) == 1 and not kwargs else None
        if (
            not isinstance(x, torch.Tensor)
            or not x.requires_grad
            or not s.active
            or s.depth != 1
            or not s._is_nonneg(x)
            or not isinstance(m.weight, nn.Parameter)
        ):
            return None
        rule = s.composite.rule_for(self.name, m, first=not s.first_done)
        if not isinstance(rule, AlphaBeta) or not rule.beta:
            return None
        op = make_op(m, x)
        op.workspace = s.workspace
        with torch.no_grad():
            z, halves = op.forward_halves(x, op.weight_map("pos"), op.weight_map("neg"))
            if op.bias is not None:
                z.add_(op.bias_view(z))
        op.release()  # workspace buffers (when the weights were not cached) go back now
        op.halves = halves
        s.halves[id(z)] = (z, z._version, op)  # the layer's rule node takes this op over
        return z


def _bn_fold(bn: nn.Module, bias: torch.Tensor | None, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode batch norm folded into the layer before it: the per-channel factor ``s = γ/√(σ² + ε)`` and
    the merged bias ``(b − μ)·s + β``, in the layer's dtype (five vector operations per call; the float64 round
    trip of :func:`~.canonizers.bn_affine` cost twice as much and changes the factors by float32 rounding only)."""
    with torch.no_grad():
        scale = (bn.running_var.to(dtype) + bn.eps).rsqrt_()
        if bn.weight is not None:
            scale.mul_(bn.weight.to(dtype))
        mean = bn.running_mean.to(dtype)
        shift = torch.neg(mean) if bias is None else bias - mean
        shift.mul_(scale)
        if bn.bias is not None:
            shift.add_(bn.bias.to(dtype))
    return scale, shift
