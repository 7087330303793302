"""The LRP engine: hooks that turn one forward and one backward pass into a relevance propagation.

During the forward pass every module with a rule is hooked: its output is replaced by the output of
an autograd function that computes the rule's denominators (``Rule.forward``) and whose backward
pass turns the incoming relevance into input relevance (``Rule.backward``). The backward pass is then
a single ``torch.autograd.grad`` call seeded with the explained output, so relevance — not gradient —
flows through the graph. Modules without a rule (max pooling, reshapes, eval-mode dropout) pass it on
along their gradient. A module called more than once gets one autograd node per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn

from ..hygiene import model_device, model_dtype, preserved
from ..validation import (
    check_finite,
    check_layer_names,
    check_model,
    check_positive_int,
    check_target,
    check_tensor,
)
from .canonizers import Canonizer, MergeBatchNorm, bn_affine, bn_mergeable, default_canonizers
from .composites import BATCHNORMS, CONVS, DENSE, TRANSPARENT, Composite, Key, Sum, get_composite
from .ops import POOLS, WEIGHTED, Workspace, make_op
from .rules import Epsilon, Gradient, Pass, Rule, stabilize

__all__ = ["lrp", "LRPResult", "UnsupportedModuleError"]


#: Input values per pass when ``batch_size=None``.
_AUTO_BATCH_VALUES = 2**21

_NONNEG_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid, nn.Softplus)


def _check_finite(x: torch.Tensor) -> None:
    """One reduction instead of a full mask; the detailed count only when something is wrong."""
    if not bool(torch.isfinite(x.sum())):
        check_finite(x, "x")
        raise ValueError("`x` sums to a non-finite value (overflow); rescale the input.")


class UnsupportedModuleError(TypeError):
    """A module (or a functional operation) the explained input reaches has no LRP rule."""


# autograd nodes relevance may pass through unchanged: moving, selecting or copying values, routing to
# a maximum (max pooling, ReLU masks, eval-mode dropout), zero padding — plus nbexplain's own nodes
_SAFE_NODES = (
    "_RuleFunction", "_SumFunction", "_Assign", "AccumulateGrad", "View", "Reshape", "UnsafeView",
    "Permute", "Transpose", "TBackward", "Squeeze", "Unsqueeze", "Slice", "Select", "Cat", "Stack",
    "Split", "Unbind", "Index", "Clone", "ToCopy", "Alias", "AsStrided", "MaxPool", "AdaptiveMaxPool",
    "Relu", "Threshold", "MaxBackward", "Flip", "Roll", "ConstantPadNd", "Contiguous", "Unfold",
    "Narrow", "Identity", "Flatten", "Unflatten",
)
_HINTS = {
    "Add": "make sums explicit with canonizers='auto' (residual sums of two activations are handled)",
    "Mean": "use an nn.AdaptiveAvgPool module instead of .mean() (it gets the proportional rule)",
    "Convolution": "call convolutions through nn.Conv modules, not F.conv*",
    "Addmm": "call dense layers through nn.Linear, not F.linear / @",
    "Mm": "call dense layers through nn.Linear, not F.linear / @",
}


def _check_graph(out: torch.Tensor, regions: dict[int, set[int]]) -> None:
    """Walk the autograd graph of the LRP forward pass and reject operations no rule covers.

    ``regions`` maps the output node of a module mapped to :class:`Gradient` to the nodes of its
    inputs: everything between them propagates plain gradients on purpose."""
    seen: set[int] = set()
    bad: list[str] = []
    stack: list[tuple[Any, frozenset[int]]] = [(out.grad_fn, frozenset())]
    while stack:
        node, stops = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        name = type(node).__name__
        if id(node) in stops:
            stops = frozenset()
        if id(node) in regions:
            stops = frozenset(regions[id(node)])
        elif not stops and not name.startswith(_SAFE_NODES):
            bad.append(name)
        for nxt, _ in node.next_functions:
            stack.append((nxt, stops))
    if bad:
        ops = sorted(set(bad))
        hints = [h for k, h in _HINTS.items() if any(b.startswith(k) for b in ops)]
        raise UnsupportedModuleError(
            f"The model computes {ops} on the explained input outside any module with an LRP rule; "
            "relevance would pass these as plain gradients and stop meaning 'contribution'. "
            + ("; ".join(h[0].upper() + h[1:] for h in hints) + ". " if hints else "")
            + "Move the computation into modules and map rules to them, or pass strict=False to let "
            "relevance follow the gradient through them."
        )


class _RuleFunction(torch.autograd.Function):
    """Identity on the module's output in the forward pass; the rule's redistribution backwards."""

    @staticmethod
    def forward(ctx, x, out, rule, op):  # type: ignore[override]
        saved = () if rule.lazy else rule.forward(op, x, out)
        ctx.rule, ctx.op = rule, op
        ctx.save_for_backward(x if rule.saves_input or rule.lazy else None, *saved)
        return out.detach()

    @staticmethod
    def backward(ctx, relevance):  # type: ignore[override]
        x, *saved = ctx.saved_tensors
        if ctx.rule.lazy:
            with torch.no_grad():
                saved = ctx.rule.forward(ctx.op, x, None)
        rel = ctx.rule.backward(ctx.op, x, saved, relevance)
        ctx.op.release()  # derived weights go now, so the next layer reuses their memory
        return rel, None, None, None


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


@dataclass
class LRPResult:
    """What :func:`lrp` returns.

    Attributes
    ----------
    relevance
        Input relevance, shape of ``x``.
    target
        The explained class per sample, LongTensor ``(N,)``.
    output
        The model's output ``(N, n_classes)`` in eval mode (after canonization).
    explained
        The relevance put on the target output per sample ``(N,)`` — its score (``init="logit"``) or 1.
    layers
        Relevance at the *outputs* of the requested layers (``layers=``), by name; a module called more
        than once gets ``name``, ``name#2``, ….
    composite
        The composite that assigned the rules.
    rules
        The rule used for each hooked layer, by name.
    """

    relevance: torch.Tensor
    target: torch.Tensor
    output: torch.Tensor
    explained: torch.Tensor
    layers: dict[str, torch.Tensor] = field(default_factory=dict)
    composite: Composite | None = None
    rules: dict[str, Rule] = field(default_factory=dict)

    @property
    def total(self) -> torch.Tensor:
        """Σ input relevance per sample (float64)."""
        return self.relevance.detach().double().flatten(1).sum(1)

    @property
    def conservation(self) -> torch.Tensor:
        """Σ input relevance ÷ explained output per sample (1 = fully conserved; biases, ε and
        αβ make it differ)."""
        return self.total / self.explained.double()

    @property
    def conservation_error(self) -> torch.Tensor:
        """``|Σ R_in − explained|`` per sample."""
        return (self.total - self.explained.double()).abs()

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
        shape = tuple(self.relevance.shape)
        extra = f", layers={list(self.layers)}" if self.layers else ""
        name = self.composite.name if self.composite is not None else "?"
        return f"LRPResult(relevance={shape}, composite={name!r}, conservation≈{float(self.conservation.median()):.4f}{extra})"


def _unsupported(name: str, module: nn.Module) -> UnsupportedModuleError:
    kind = type(module).__name__
    return UnsupportedModuleError(
        f"LRP has no rule for module {name!r} ({kind}). Supported: Linear, Conv1d/2d/3d, batch norm, "
        "average/max/adaptive pooling, Flatten/Unflatten, Dropout, ReLU-family/tanh activations. "
        f"If {kind} is an element-wise activation, map nx.Pass() to it; to send relevance along its "
        f"plain gradient, map nx.Gradient(): e.g. composite=nx.Composite({{{kind}: nx.Pass(), "
        "torch.nn.Conv2d: nx.ZPlus(), torch.nn.Linear: nx.Epsilon()}, first=nx.Flat()), or key it by "
        f"layer name {{{name!r}: nx.Pass()}}."
    )


class _Session:
    """Hooks of one :func:`lrp` call; removed in :meth:`close`."""

    def __init__(
        self,
        model: nn.Module,
        composite: Composite,
        canonizers: Sequence[Canonizer],
        capture: Sequence[str],
    ) -> None:
        self.composite = composite
        self.capture = set(capture)
        self.handles: list[Any] = []
        self.first_done = False
        self.rules: dict[str, Rule] = {}
        self.captured: dict[str, list[torch.Tensor]] = {}
        self.regions: dict[int, set[int]] = {}
        self.transparent: set[nn.Module] = set()
        # MergeBatchNorm inside lrp: a batch norm whose input is exactly the output a Linear/Conv call just
        # produced is folded into that call while the forward pass runs (no parameter is swapped, no extra
        # trace pass): id(rule output) -> (that output, its version, layer input, rule, op, module)
        self.merge_bn = any(isinstance(c, MergeBatchNorm) for c in canonizers)
        self.produced: dict[int, tuple[torch.Tensor, int, torch.Tensor, Rule, Any, nn.Module]] = {}
        self.capture_store: dict[int, tuple[torch.Tensor, Any]] = {}
        self.workspace = Workspace()
        # tensors known to be ≥ 0 (ReLU outputs and what max pooling / reshapes make of them), so that
        # z⁺ and αβ skip their x⁻ terms without scanning the input: id -> (tensor, version)
        self.nonneg: dict[int, tuple[torch.Tensor, int]] = {}
        for c in canonizers:
            self.transparent |= c.transparent()
        units = self._units(model)
        for c in canonizers:
            units.update(c.extra_modules())
        # in-place activations (ReLU(inplace=True)) would put their own graph node between the rules:
        # they get a copy of their input, and the rule function connects to the untouched original
        self.originals: dict[int, list[torch.Tensor]] = {}
        for name, mod in units.items():
            if getattr(mod, "inplace", False) is True:
                self.handles.append(mod.register_forward_pre_hook(self._copy_input))
            self.handles.append(mod.register_forward_hook(self._make_hook(name)))
        for name in self.capture:
            mod = dict(model.named_modules())[name]
            self.handles.append(mod.register_forward_hook(self._make_capture(name)))

    def _units(self, model: nn.Module) -> dict[str, nn.Module]:
        """Modules that get a hook: leaves, and containers the composite maps by name or type."""
        units: dict[str, nn.Module] = {}
        skip: list[str] = []
        for name, mod in model.named_modules():
            if any(name.startswith(s + ".") for s in skip):
                continue
            leaf = next(iter(mod.children()), None) is None
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

    def _is_nonneg(self, t: torch.Tensor) -> bool:
        entry = self.nonneg.get(id(t))
        return entry is not None and entry[0] is t and entry[1] == t._version

    def _mark_nonneg(self, t: torch.Tensor) -> torch.Tensor:
        self.nonneg[id(t)] = (t, t._version)
        return t

    def _copy_input(self, module: nn.Module, args: tuple) -> Any:
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and x.requires_grad:
            self.originals.setdefault(id(module), []).append(x)
            return (x.clone(),) + tuple(args[1:])
        return None

    def _make_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            x = args[0] if args else None
            stash = self.originals.get(id(module))
            if stash:
                x = stash.pop()
            if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor) or not x.requires_grad:
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
                raise _unsupported(name, module)
            self.rules.setdefault(name, rule)
            if isinstance(rule, Gradient):
                if output.grad_fn is not None:
                    self.regions[id(output.grad_fn)] = {id(a.grad_fn) for a in args if isinstance(a, torch.Tensor) and a.grad_fn is not None}
                return None
            if isinstance(module, Sum):
                if not isinstance(rule, Epsilon):  # Norm and ZeroRule are ε rules too
                    raise TypeError(f"Residual sums take an ε-type rule (nx.Norm(), nx.Epsilon()), got {rule!r}.")
                return _SumFunction.apply(args[0], args[1], output.detach(), max(rule.epsilon, 1e-12))
            supported = isinstance(module, WEIGHTED + POOLS)
            if not supported and not isinstance(rule, Pass):
                raise TypeError(
                    f"Rule {rule!r} needs a Linear, Conv, batch-norm or average-pooling layer, but "
                    f"{name!r} is a {type(module).__name__}; map nx.Pass() or nx.Gradient() to it instead."
                )
            op = make_op(module, x)
            op.workspace = self.workspace
            if rule.needs_weights and op.weight is None:
                raise TypeError(
                    f"Rule {rule!r} modifies weights, but {name!r} ({type(module).__name__}) has none; "
                    "use nx.Norm() or nx.Epsilon() for pooling layers."
                )
            if self._is_nonneg(x):
                op.nonneg = True
            out = _RuleFunction.apply(x, output.detach(), rule, op)
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
        op = make_op(lin, lin_in)
        op.workspace = self.workspace
        scale, shift = bn_affine(bn)
        bias = shift if op.bias is None else shift + op.bias.double() * scale
        op.merge(scale.to(op.weight.dtype), bias.to(op.weight.dtype))
        op.nonneg = lin_op.nonneg
        out = _RuleFunction.apply(lin_in, output.detach(), rule, op)
        stored = self.capture_store.get(id(x))
        if stored is not None and stored[0] is x:
            out.register_hook(stored[1])  # relevance "at the layer" = at the merged pair's output
        return out

    def _make_capture(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
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

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.nonneg.clear()  # let activations go as soon as the backward pass is done with them
        self.originals.clear()
        self.produced.clear()
        self.capture_store.clear()


CanonizersArg = Union[str, None, Iterable[Canonizer]]


def _resolve_canonizers(canonizers: CanonizersArg) -> list[Canonizer]:
    if canonizers is None or canonizers is False:
        return []
    if isinstance(canonizers, str):
        if canonizers != "auto":
            raise ValueError(f"`canonizers` must be 'auto', None or a list of canonizers, got {canonizers!r}.")
        return default_canonizers()
    if isinstance(canonizers, Canonizer):
        return [canonizers]
    out = list(canonizers)
    for c in out:
        if not isinstance(c, Canonizer):
            raise TypeError(f"`canonizers` must contain nx.MergeBatchNorm() / nx.ExplicitResidual() objects, got {c!r}.")
    return out


def lrp(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    composite: str | Composite | Rule | Mapping[Key, Rule] = "epsilon_plus_flat",
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    low: float | torch.Tensor | None = None,
    high: float | torch.Tensor | None = None,
    canonizers: CanonizersArg = "auto",
    layers: str | Sequence[str] | None = None,
    init: str = "logit",
    batch_size: int | None = None,
    progress: bool | None = None,
    strict: bool = True,
) -> LRPResult:
    """Layer-wise relevance propagation: how much each input feature contributes to a class score.

    The score ``f_t(x)`` of the target class is handed backwards layer by layer; each layer splits the
    relevance of its outputs over its inputs by a rule (see :mod:`nbexplain.core.relevance.rules`). One
    forward and one backward pass (plus one extra forward of the layers whose rule modifies weights, and,
    for batch norms outside ``nn.Sequential`` order, a one-sample forward that finds the layer feeding them).
    The model is explained in eval mode and left exactly as found — parameters, buffers, modes, hooks,
    ``requires_grad`` — also when it raises.

    Parameters
    ----------
    model
        A classifier returning ``(N, n_classes)`` scores (logits; remove a final softmax).
    x
        Inputs ``(N, …)``; converted to the model's dtype and device.
    target
        The class to explain: an int for all samples, or a LongTensor ``(N,)`` (one class per sample,
        so several classes can be explained in one batch).
    composite
        Which rule each layer gets: a name — ``"epsilon"``, ``"epsilon_plus"``, ``"epsilon_plus_flat"``
        (default: flat on the first layer, z⁺ on convolutions, ε on dense layers),
        ``"epsilon_gamma_box"``, ``"epsilon_alpha2_beta1"``, ``"epsilon_alpha2_beta1_flat"`` — an
        :class:`~nbexplain.core.relevance.Composite`, a dict ``{layer type or layer name: rule}``, or one
        rule for every Linear and Conv layer (``nx.ZPlus()``).
    epsilon, gamma
        ε of the dense layers' ε rule and γ of ``epsilon_gamma_box`` (named composites only).
    low, high
        Input bounds of the zᴮ rule of ``epsilon_gamma_box`` (numbers or tensors shaped like one sample;
        default: the batch's smallest and largest value).
    canonizers
        ``"auto"`` (merge batch norms into the preceding Linear/Conv and make residual sums explicit),
        ``None``, or a list of canonizer objects. Always undone on return.
    layers
        Layer name(s) whose output relevance to return in ``result.layers``.
    init
        ``"logit"``: start from the target score (Σ relevance ≈ f_t(x)); ``"one"``: start from 1.
    batch_size
        Explain at most this many samples per pass (bounds memory). ``None``: as many as fit in about
        2²¹ input values per pass (2,674 MNIST digits, 170 images of 3×64×64, 13 of 3×224×224).
    progress
        Show a progress bar over batches (default: when there is more than one batch).
    strict
        Reject models that compute on the input outside modules with rules (``F.linear``, ``x * w``,
        ``.mean()``, …), naming the operations; ``False`` lets relevance follow their gradient.

    Returns
    -------
    LRPResult
        ``.relevance`` (shape of ``x``), ``.conservation`` (Σ R ÷ explained output per sample),
        ``.layers``, ``.output``, ``.explained``, ``.target``, ``.rules``, ``.report()``.

    Raises
    ------
    UnsupportedModuleError
        When the input reaches a module without a rule (the message says how to map one).

    Examples
    --------
    >>> import torch
    >>> import nbexplain as nx
    >>> from nbexplain.zoo import cnn
    >>> model = cnn()
    >>> x = torch.rand(4, 1, 28, 28)
    >>> result = nx.lrp(model, x, target=3)
    >>> result.relevance.shape
    torch.Size([4, 1, 28, 28])
    >>> res = nx.lrp(model, x, torch.tensor([0, 1, 2, 3]), composite="epsilon", layers=["conv2"])
    >>> res.layers["conv2"].shape
    torch.Size([4, 32, 14, 14])
    """
    check_model(model)
    x = check_tensor(x, "x", min_ndim=2, dtype_kind="float")
    _check_finite(x)
    if init not in ("logit", "one"):
        raise ValueError(f"`init` must be 'logit' or 'one', got {init!r}.")
    comp = get_composite(composite, epsilon=epsilon, gamma=gamma, low=low, high=high)
    names = [n for n, _ in model.named_modules()]
    comp.check_names(names)
    capture = [] if layers is None else check_layer_names(layers, [n for n in names if n], "layers")
    canons = _resolve_canonizers(canonizers)
    n = x.shape[0]
    if n == 0:
        raise ValueError("`x` is empty; pass at least one sample.")
    per_sample = max(1, x[0].numel())
    bs = max(1, _AUTO_BATCH_VALUES // per_sample) if batch_size is None else check_positive_int(batch_size, "batch_size")
    device, dtype = model_device(model), model_dtype(model)
    if isinstance(target, torch.Tensor):
        target = target.to("cpu")
    tgt = check_target(target, n)
    values = any(c.changes_values(model) for c in canons)
    starts = list(range(0, n, bs))
    show = progress if progress is not None else len(starts) > 1
    rel_parts, out_parts, expl_parts = [], [], []
    layer_parts: dict[str, list[torch.Tensor]] = {}
    rules: dict[str, Rule] = {}
    with preserved(model, values=values):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        iterator: Iterable[int] = starts
        if show:
            from tqdm.auto import tqdm

            iterator = tqdm(starts, desc="LRP", unit="batch")
        for s in iterator:
            session: _Session | None = None
            xb = x[s : s + bs].to(device=device, dtype=dtype).detach().requires_grad_(True)
            try:
                with ExitStack() as canonized:
                    # canonizers are active for the forward pass only: the backward pass needs nothing
                    # from them (rules keep the tensors they use), so the model is restored early
                    for c in canons:
                        if not isinstance(c, MergeBatchNorm):  # merged during the forward pass (_Session)
                            canonized.enter_context(c.apply(model, xb.detach()))
                    session = _Session(model, comp, canons, capture)
                    with torch.enable_grad():
                        out = model(xb)
                    session.close()
                with torch.enable_grad():
                    if not isinstance(out, torch.Tensor) or out.ndim != 2:
                        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                        raise ValueError(
                            f"lrp explains class scores: the model must return (N, n_classes), got {shape}."
                        )
                    tb = tgt[s : s + bs].to(out.device)
                    if int(tb.min()) < 0 or int(tb.max()) >= out.shape[1]:
                        raise ValueError(
                            f"`target` contains class indices outside [0, {out.shape[1] - 1}] (got min "
                            f"{int(tb.min())}, max {int(tb.max())}); the model has {out.shape[1]} outputs."
                        )
                    if not out.requires_grad:
                        raise ValueError("The model output does not depend on `x` (no gradient path); nothing to explain.")
                    if strict:
                        _check_graph(out, session.regions)
                    rows = torch.arange(out.shape[0], device=out.device)
                    picked = out.detach()[rows, tb]
                    explained = picked if init == "logit" else torch.ones_like(picked)
                    seed = torch.zeros_like(out)
                    seed[rows, tb] = explained
                    (rel,) = torch.autograd.grad(out, xb, seed)
            finally:
                if session is not None:
                    session.close()
                    session.workspace.close()
            rel_parts.append(rel.detach())
            out_parts.append(out.detach())
            expl_parts.append(explained)
            missing = [n for n in capture if n not in session.captured]
            if missing:
                raise ValueError(
                    f"Layer(s) {missing} in `layers` were not called on the explained input during the forward "
                    "pass (or sit inside a module mapped as one unit), so they have no relevance; pick layers "
                    f"the input passes through, e.g. {list(session.rules)[:6]}."
                )
            for name, slots in session.captured.items():
                for i, t in enumerate(slots):
                    key = name if i == 0 else f"{name}#{i + 1}"
                    layer_parts.setdefault(key, []).append(t)
            for k, v in session.rules.items():
                rules.setdefault(k, v)
    cat = (lambda parts: parts[0]) if len(rel_parts) == 1 else (lambda parts: torch.cat(parts))
    return LRPResult(
        relevance=cat(rel_parts),
        target=tgt,
        output=cat(out_parts),
        explained=cat(expl_parts),
        layers={k: cat(v) for k, v in layer_parts.items()},
        composite=comp,
        rules=rules,
    )
