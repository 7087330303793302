"""AttnLRP: relevance through attention, normalisation and the functional operations of transformers.

The rules of Achtibat et al., *AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for Transformers*
(ICML 2024), re-derived from the paper's equations (notation: ``x`` an operation's input, ``z`` its output,
``R`` relevance, ``stab(z) = z + ε·sign(z)``):

- **softmax** ``s = softmax(x)`` (the paper's proposition on the softmax: its first-order Taylor decomposition
  at ``x``): ``R_x = x ⊙ (R_s − s · Σ_j R_s,j)``. It equals gradient × input through the softmax with
  ``R_s / s`` as the seed; it does not conserve relevance (the Taylor expansion's bias term is absorbed).
  Inputs that are ``-inf`` (masked positions, ``s = 0``) get none.
- **bilinear products** ``z = a · b`` (``QKᵀ``, ``AV``, a gate ``u ⊙ v``; the paper's proposition on matrix
  multiplication, the *uniform* rule): each of the ``n`` factors that depend on the input gets ``1/n`` of the ε-rule share, ``R_a = ½ · a ⊙
  (∂z/∂a)ᵀ (R_z / stab(z))``. A product with one factor that depends on the input is linear in it: the ε rule.
- **normalisation** (LayerNorm, RMSNorm, GroupNorm; the paper's identity rule for normalisation layers):
  the normaliser ``σ(x)`` is treated as a constant — the division ``x/σ(x)`` is homogeneous of degree 0, so
  gradient × input through it would be zero; with ``σ`` constant it passes relevance on unchanged — and the
  rest (mean subtraction, the affine ``γ·x̂ + β``) is linear: ``R_x = x ⊙ Jᵀ (R_y / stab(y))`` with ``J`` the
  Jacobian at constant ``σ``. ``β`` absorbs its share like a bias; an RMSNorm passes relevance on unchanged.
- **element-wise non-linearities** (GELU, SiLU, tanh, sigmoid, …; the identity rule): ``R_x = R_y``.
  A gated linear unit ``glu(x) = a ⊙ σ(b)`` splits evenly (half to each half of ``x``).
- **linear layers** (``nn.Linear``, ``F.linear`` of the attention's in- and out-projections, ``x @ W``): ε.
- **CP-LRP** (Ali et al., 2022, "XAI for Transformers: better explanations through conservative propagation";
  the variant AttnLRP compares against): the attention weights are treated as constants, so relevance flows
  through the values only — none through queries and keys.

Sums, means, scalings and additions of a constant (a position embedding) split in proportion to their terms
(ε-free LRP-0), as with ``strict=False``; reshapes, indexing, concatenation (a class token) and masking pass
relevance on.

How the operations are reached: :class:`AttentionRules`, a :class:`torch.overrides.TorchFunctionMode`, is
active only while an explained forward pass of the model runs (a :class:`~.session.Session` enters it per
pass). It intercepts ``softmax``, ``matmul``/``bmm``/``@``/``einsum``/``mul``, ``F.linear``, ``layer_norm``,
``rms_norm``, ``group_norm``, the element-wise activations, ``F.scaled_dot_product_attention`` and
``F.multi_head_attention_forward`` (``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``: with the mode
active torch takes their explicit path, and the attention itself is recomputed here from its parts, so no fused
kernel hides an operation). No class or ``forward`` is patched; outside the call nothing is changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .canonizers import handled
from .composites import ATTENTION_VARIANTS, rms_like
from .engine import _GradientFunction, _replace_leaves, _tensor_leaves
from .functional import (
    _INPLACE_DUNDER,
    _SCALINGS,
    COPY_LIKE,
    LINEAR,
    FunctionalRules,
    _grad_inputs,
    _name,
    taylor_node,
)
from .rules import stabilize

__all__ = ["AttentionRules", "AttentionForward", "EncoderLayerForward", "NormForward", "norm_node", "taylor_node"]

#: Element-wise activations: the identity rule.
_ELEMENTWISE = frozenset(
    """gelu silu sigmoid tanh elu selu celu softplus mish hardswish hardsigmoid leaky_relu softsign tanhshrink
    logsigmoid rrelu prelu""".split()
)
_PRODUCTS = frozenset("matmul __matmul__ __rmatmul__ bmm mm einsum linear bilinear".split())
_MULS = frozenset("mul __mul__ __rmul__ multiply".split())
_MATMULS = frozenset("matmul __matmul__ bmm".split())


class _SoftmaxRule(torch.autograd.Function):
    """``s = softmax(x)`` forwards; ``R_x = x ⊙ (R_s − s Σ R_s)`` backwards (zero where ``x`` is not finite)."""

    @staticmethod
    def forward(ctx, x, s, dim, finite=False):  # type: ignore[override]
        ctx.dim = dim
        # a masked input (-inf, s = 0) gets none: its R_s is 0, and x = 0 there keeps 0 · (…) finite
        # (``finite``: the caller knows x has no -inf — an unmasked attention — and the pass is saved)
        x = x.detach() if finite else torch.nan_to_num(x.detach(), neginf=0.0)
        ctx.save_for_backward(x, s.detach())
        return s.detach()

    @staticmethod
    def backward(ctx, relevance):  # type: ignore[override]
        x, s = ctx.saved_tensors
        return x * (relevance - s * relevance.sum(ctx.dim, keepdim=True)), None, None, None


class _IdentityRule(torch.autograd.Function):
    """``y = f(x)`` (same shape) forwards; ``R_x = R_y`` backwards."""

    @staticmethod
    def forward(ctx, x, y):  # type: ignore[override]
        return y.detach()

    @staticmethod
    def backward(ctx, relevance):  # type: ignore[override]
        return relevance, None


class _LinearRule(torch.autograd.Function):
    """``z = x Wᵀ + b`` (``F.linear``) forwards; ε backwards: ``R_x = x ⊙ ((R / stab(z)) W)``."""

    @staticmethod
    def forward(ctx, x, z, weight, epsilon):  # type: ignore[override]
        ctx.save_for_backward(x.detach(), weight.detach(), stabilize(z.detach(), epsilon))
        return z.detach()

    @staticmethod
    def backward(ctx, relevance):  # type: ignore[override]
        x, weight, den = ctx.saved_tensors
        return x * ((relevance / den) @ weight), None, None, None


class _MatmulRule(torch.autograd.Function):
    """``z = a @ b`` forwards; backwards each factor that depends on the input gets ``share`` of the ε-rule's
    ``a_ik b_kj / stab(z_ij) R_ij`` (the uniform rule: ``share = ½`` when both do, 1 when one does)."""

    @staticmethod
    def forward(ctx, a, b, z, epsilon, share):  # type: ignore[override]
        ctx.share = share
        ctx.need = (a.requires_grad, b.requires_grad)
        ctx.save_for_backward(a.detach(), b.detach(), stabilize(z.detach(), epsilon))
        return z.detach()

    @staticmethod
    def backward(ctx, relevance):  # type: ignore[override]
        a, b, den = ctx.saved_tensors
        q = relevance / den
        if ctx.share != 1:
            q.mul_(ctx.share)
        ra = rb = None
        if ctx.need[0]:
            ra = a * (q @ b.transpose(-2, -1)).sum_to_size(a.shape)
        if ctx.need[1]:
            rb = b * (a.transpose(-2, -1) @ q).sum_to_size(b.shape)
        return ra, rb, None, None, None


class _NormRule(torch.autograd.Function):
    """A layer / RMS norm over the last ``n`` dimensions with its normaliser ``σ`` constant forwards-computed;
    backwards ``R_x = x ⊙ (g − mean g)`` (layer norm; RMS norm: ``x ⊙ g``) with ``g = γ/σ ⊙ R / stab(y)``."""

    @staticmethod
    def forward(ctx, x, y, weight, sigma, dims, centred, epsilon):  # type: ignore[override]
        ctx.dims, ctx.centred = dims, centred
        w = weight.detach() if weight is not None else None
        ctx.save_for_backward(x.detach(), stabilize(y.detach(), epsilon), sigma, w)
        return y.detach()

    @staticmethod
    def backward(ctx, relevance):  # type: ignore[override]
        x, den, sigma, w = ctx.saved_tensors
        g = relevance / den / sigma
        if w is not None:
            g = g * w
        if ctx.centred:
            g = g - g.mean(ctx.dims, keepdim=True)
        return x * g, None, None, None, None, None, None


def _norm_rule(
    x: torch.Tensor, y: torch.Tensor, ndim: int, weight: Any, eps: float | None, centred: bool, epsilon: float,
    rstd: torch.Tensor | None = None,
) -> torch.Tensor:
    dims = tuple(range(-ndim, 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    if rstd is not None:  # 1/σ from the layer's own forward (:class:`NormForward`)
        return _NormRule.apply(x, y.detach(), weight, rstd.reciprocal(), dims, centred, epsilon)
    with torch.no_grad():
        xd = x.detach()
        if centred:  # native_layer_norm returns 1/σ; a fraction of the cost of x.var on CPU
            sigma = torch.native_layer_norm(xd, xd.shape[-ndim:], None, None, eps)[2].reciprocal_()
        else:
            sigma = xd.square().mean(dims, keepdim=True).add_(eps).sqrt_()
    return _NormRule.apply(x, y.detach(), weight, sigma, dims, centred, epsilon)


# ----------------------------------------------------------------------------------------------------------------
# normalisation with a constant normaliser
# ----------------------------------------------------------------------------------------------------------------


def _rms_norm(x: torch.Tensor, shape: Any, weight: Any, eps: float | None) -> torch.Tensor:
    dims = tuple(range(-len(tuple(shape)), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    rms = (x.detach().square().mean(dims, keepdim=True) + eps).sqrt()
    y = x / rms
    return y if weight is None else y * weight


def _group_norm(x: torch.Tensor, groups: int, weight: Any, bias: Any, eps: float) -> torch.Tensor:
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    centred = g - g.mean(-1, keepdim=True)
    sigma = (centred.detach().square().mean(-1, keepdim=True) + eps).sqrt()
    y = (centred / sigma).reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    y = y if weight is None else y * weight.reshape(shape)
    return y if bias is None else y + bias.reshape(shape)


def _norm_args(name: str, args: tuple, kwargs: dict) -> tuple | None:
    """The arguments after ``x`` of ``F.<name>(*args, **kwargs)`` (``None``: not a normalisation)."""
    def arg(i: int, key: str, default: Any = None) -> Any:
        return args[i] if len(args) > i else kwargs.get(key, default)

    if name == "layer_norm":
        return arg(1, "normalized_shape"), arg(2, "weight"), arg(3, "bias"), arg(4, "eps", 1e-5)
    if name == "rms_norm":
        return arg(1, "normalized_shape"), arg(2, "weight"), arg(3, "eps")
    if name == "group_norm":
        return arg(1, "num_groups"), arg(2, "weight"), arg(3, "bias"), arg(4, "eps", 1e-5)
    return None


class _StandIn:
    """An instance ``forward`` for the duration of a session (removed in :meth:`remove`)."""

    def __init__(self, session: Any, module: nn.Module) -> None:
        self.session, self.module = session, module
        module.forward = self  # type: ignore[method-assign]

    def remove(self) -> None:
        if self.module.__dict__.get("forward") is self:
            del self.module.forward


class NormForward(_StandIn):
    """Stands in for the forward of an ``nn.LayerNorm`` with :class:`~.rules.NormIdentity` for the duration of an
    explained pass (an instance attribute ``forward``, removed in :meth:`remove`): one ``native_layer_norm``
    gives the output and the ``1/σ`` the rule needs, kept in ``session.norm_stats`` for the layer's rule node —
    instead of the layer's own forward and a second pass for ``σ``. Outside an explained pass (or called inside
    another unit) the layer's own forward runs."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        s, m = self.session, self.module
        x = args[0] if len(args) == 1 and not kwargs else None
        if not isinstance(x, torch.Tensor) or not x.requires_grad or not s.active or s.depth != 1:
            return type(m).forward(m, *args, **kwargs)
        with torch.no_grad():
            y, _, rstd = torch.native_layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)
        s.norm_stats[id(y)] = (y, rstd)
        return y


class AttentionForward(_StandIn):
    """``nn.MultiheadAttention`` during an explained pass: its attention computed from its parts by the rules
    (the same computation as intercepting ``F.multi_head_attention_forward``, without the module's fast-path
    checks and argument handling going through the torch-function modes one operation at a time)."""

    def __call__(  # noqa: D102
        self, query: Any, key: Any, value: Any, key_padding_mask: Any = None, need_weights: bool = True,
        attn_mask: Any = None, average_attn_weights: bool = True, is_causal: bool = False,
    ) -> Any:
        s, m = self.session, self.module
        mode = s.functional
        args = (query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal)
        tensors = [t for t in (query, key, value) if isinstance(t, torch.Tensor)]
        if (
            not s.active
            or not isinstance(mode, AttentionRules)
            or len(tensors) != 3
            or not torch.is_grad_enabled()
            or not any(t.requires_grad for t in tensors)
        ):
            return type(m).forward(m, *args)
        with torch._C.DisableTorchFunction():
            batched = query.dim() == 3
            if m.batch_first and batched:  # keep `query is key is value` (the packed projection) when it holds
                if query is key and key is value:
                    query = key = value = query.transpose(1, 0)
                else:
                    query, key, value = (t.transpose(1, 0) for t in (query, key, value))
            separate = not m._qkv_same_embed_dim
            call = dict(
                query=query, key=key, value=value, embed_dim_to_check=m.embed_dim, num_heads=m.num_heads,
                in_proj_weight=m.in_proj_weight, in_proj_bias=m.in_proj_bias, bias_k=m.bias_k, bias_v=m.bias_v,
                add_zero_attn=m.add_zero_attn, dropout_p=m.dropout, out_proj_weight=m.out_proj.weight,
                out_proj_bias=m.out_proj.bias, training=m.training, key_padding_mask=key_padding_mask,
                need_weights=need_weights, attn_mask=attn_mask, use_separate_proj_weight=separate,
                q_proj_weight=m.q_proj_weight if separate else None, k_proj_weight=m.k_proj_weight if separate else None,
                v_proj_weight=m.v_proj_weight if separate else None, average_attn_weights=average_attn_weights,
                is_causal=is_causal,
            )
            out, weights = _mha(mode, F.multi_head_attention_forward, (), call, [])
            if m.batch_first and batched:
                out = out.transpose(1, 0)
        return out, weights


class EncoderLayerForward(_StandIn):
    """``nn.TransformerEncoderLayer`` during an explained pass: its explicit path (pre- or post-norm), without the
    fast-path checks (which would run one by one through the torch-function modes, and which the explained input
    rules out anyway: it requires grad)."""

    def __call__(  # noqa: D102
        self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None, is_causal: bool = False
    ) -> Any:
        s, m = self.session, self.module
        if not s.active or not isinstance(src, torch.Tensor) or not src.requires_grad:
            return type(m).forward(m, src, src_mask, src_key_padding_mask, is_causal)
        x = src
        if m.norm_first:
            x = x + m._sa_block(m.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
            return x + m._ff_block(m.norm2(x))
        x = m.norm1(x + m._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
        return m.norm2(x + m._ff_block(x))


def norm_node(
    module: nn.Module, x: torch.Tensor, output: torch.Tensor, epsilon: float, stats: dict | None = None
) -> torch.Tensor:
    """The identity rule of a normalisation module's call (``x`` its input, ``output`` what it returned;
    ``stats``: the ``1/σ`` kept by :class:`NormForward`, by output)."""
    if isinstance(module, nn.LayerNorm):
        kept = stats.pop(id(output), None) if stats is not None else None
        rstd = kept[1] if kept is not None and kept[0] is output else None
        return _norm_rule(x, output, len(module.normalized_shape), module.weight, module.eps, True, epsilon, rstd)
    if hasattr(nn, "RMSNorm") and isinstance(module, nn.RMSNorm):
        return _norm_rule(x, output, len(module.normalized_shape), module.weight, module.eps, False, epsilon)
    if isinstance(module, nn.GroupNorm):
        fn, rest = _group_norm, (module.num_groups, module.weight, module.bias, module.eps)
    elif rms_like(module):
        eps = getattr(module, "eps", getattr(module, "variance_epsilon", None))
        fn, rest = _rms_norm, ((x.shape[-1],), module.weight, eps)
        with torch.no_grad():
            same = fn(x.detach(), *rest).to(output.dtype)
        if not torch.allclose(same, output.detach(), rtol=1e-3, atol=1e-5 * float(output.detach().abs().max()) + 1e-12):
            raise TypeError(
                f"{type(module).__name__} looks like an RMS norm but does not compute weight · x / √(mean(x²) + eps), "
                "so nx.rules.NormIdentity cannot explain it; map nx.rules.Gradient() (or your own rule) to it by type "
                "or name in an nx.Composite(..., attention='attn_lrp')."
            )
    else:
        raise TypeError(
            f"nx.rules.NormIdentity applies to LayerNorm, RMSNorm and GroupNorm modules, not {type(module).__name__}; "
            "map nx.rules.Gradient() to it instead."
        )
    return _constant_normaliser(fn, x, rest, output, epsilon)


def _constant_normaliser(
    fn: Callable[..., torch.Tensor], x: torch.Tensor, rest: tuple, output: torch.Tensor, epsilon: float
) -> torch.Tensor:
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        inner = fn(leaf, *rest)
    (out,) = _GradientFunction.apply(epsilon, 1.0, ([leaf], [inner]), 1, x, output.detach())
    return out


# ----------------------------------------------------------------------------------------------------------------
# the torch-function mode
# ----------------------------------------------------------------------------------------------------------------


class AttentionRules(FunctionalRules):
    """The AttnLRP (or CP-LRP) rules for functional operations, active during an explained forward pass.

    Operations inside modules with rules are left alone (``inside()``). Operations it has no rule for pass
    untouched under ``strict`` (the session's graph check then names them and their module); with
    ``strict=False`` they get gradient × input through them and are listed in a ``FunctionalOpsWarning``.
    """

    def __init__(self, model: nn.Module, *, epsilon: float, variant: str = "attn_lrp", strict: bool = True) -> None:
        # module labels serve strict=False's report only: under strict no per-module hooks (≈ 2 per module per pass)
        super().__init__(model, track=not strict)
        if variant not in ATTENTION_VARIANTS:
            raise ValueError(f"`attention` must be one of {ATTENTION_VARIANTS} or None, got {variant!r}.")
        self.epsilon = epsilon
        self.cp = variant == "cp_lrp"
        self.strict = strict
        # CP-LRP: softmax outputs (and their copies) by id -> (tensor, version): constants in later products
        self.probs: dict[int, tuple[torch.Tensor, int]] = {}
        # the canonizers' handlers (residual sums, layer scales), consulted first: they share this mode
        # (canonizers.shared_dispatch) instead of stacking a second one
        self.handlers: dict[Any, list[Any]] = {}

    def __enter__(self) -> AttentionRules:
        self.probs = {}
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.probs = {}
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        if self.handlers:
            out = handled(self.handlers, func, args, kwargs)
            if out is not NotImplemented:
                return out
        if self.inside() or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        name = _name(func)
        if name in COPY_LIKE:
            result = func(*args, **kwargs)
            if self.probs:
                self._carry_mark(args, result)
            return result
        ins = _grad_inputs(args, kwargs)
        if not ins:
            return func(*args, **kwargs)
        handler = _HANDLERS.get(name)
        if handler is not None:
            result = handler(self, func, args, kwargs, ins)
            if result is not NotImplemented:
                return result
        if _linear(name, args, ins) and len(ins) == 1 and name not in _INPLACE_DUNDER and not name.endswith("_"):
            x = ins[0]
            if _is_scaling(name, args, x):
                return self.scaled(func, args, kwargs, x)
        if self.strict and not _linear(name, args, ins):
            return func(*args, **kwargs)  # no rule: the session's graph check reports it, with its module
        return super().__torch_function__(func, types, args, kwargs)

    # ---- CP-LRP marks --------------------------------------------------------------------------------------

    def _mark(self, t: torch.Tensor) -> torch.Tensor:
        self.probs[id(t)] = (t, t._version)
        return t

    def _marked(self, t: Any) -> bool:
        entry = self.probs.get(id(t)) if isinstance(t, torch.Tensor) else None
        return entry is not None and entry[0] is t and entry[1] == t._version

    def _carry_mark(self, args: tuple, result: Any) -> None:
        if any(self._marked(a) for a in _tensor_leaves(args)):
            for t in _tensor_leaves(result):
                self._mark(t)

    # ---- rules ----------------------------------------------------------------------------------------------

    def softmax(
        self, x: torch.Tensor, dim: int, compute: Callable[[torch.Tensor], torch.Tensor], finite: bool = False
    ) -> torch.Tensor:
        """``compute(x)`` (a softmax over ``dim``) through the softmax rule (CP-LRP: marked as a constant for the
        products that use it); ``finite``: ``x`` is known to hold no ``-inf``."""
        s = compute(x.detach())
        out = _SoftmaxRule.apply(x, s, dim, finite)
        return self._mark(out) if self.cp else out

    def product(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """A product of tensors: the uniform rule over the factors that depend on the input, ε for one."""
        if self.cp and any(self._marked(a) for a in _tensor_leaves(args)):
            args = _replace_leaves(args, {id(a): a.detach() for a in _tensor_leaves(args) if self._marked(a)})
        slots = [t for t in _tensor_leaves((args, kwargs)) if t.requires_grad and t.is_floating_point()]
        if not slots:
            return func(*args, **kwargs)
        name = _name(func)
        if name == "linear" and not kwargs and len(slots) == 1 and slots[0] is args[0]:
            z = func(*_replace_leaves(args, {id(args[0]): args[0].detach()}))
            return _LinearRule.apply(args[0], z, args[1], self.epsilon)
        if name in _MATMULS and not kwargs and len(args) == 2 and min(args[0].dim(), args[1].dim()) >= 2:
            a, b = args
            if a is not b:
                z = func(a.detach(), b.detach())
                return _MatmulRule.apply(a, b, z, self.epsilon, 1.0 / len(slots))
        ins = list({id(t): t for t in slots}.values())
        return taylor_node(func, args, kwargs, ins, self.epsilon, 1.0 / len(slots))

    def identity(self, func: Callable[..., Any], args: tuple, kwargs: dict, x: torch.Tensor) -> torch.Tensor:
        """An element-wise non-linearity: relevance passes unchanged."""
        detached = _replace_leaves(args, {id(x): x.detach()})
        if kwargs.get("inplace") or any(a is True for a in args[1:]):  # F.silu(x, inplace=True): never write into x
            detached = _replace_leaves(args, {id(x): x.detach().clone()})
        y = func(*detached, **kwargs)
        return _IdentityRule.apply(x, y)

    def scaled(self, func: Callable[..., Any], args: tuple, kwargs: dict, x: torch.Tensor) -> torch.Tensor:
        """``x`` times (or divided by) a constant, same shape: LRP-0's split of one term passes relevance on."""
        y = func(*_replace_leaves(args, {id(x): x.detach()}), **kwargs)
        return _IdentityRule.apply(x, y)

    def proportional(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """A linear operation (a sum, a scaling, the addition of a mask): LRP-0's proportional split."""
        ins = _grad_inputs(args, kwargs)
        return taylor_node(func, args, kwargs, ins, 0.0) if ins else func(*args, **kwargs)

    def attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        scale: float,
        dropout_p: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``softmax(q kᵀ · scale + mask) v`` from its parts, each through its rule — the operations a hand-written
        block performs, in the same order, so the fused and the explicit path give the same relevance.
        ``mask``: boolean (True = attend) or additive. Returns ``(output, attention weights)``."""
        kt = k.transpose(-2, -1)
        scores = self.product(torch.matmul, (q, kt), {})
        scores = self.scaled(torch.mul, (scores, scale), {}, scores)
        if mask is not None:
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, -math.inf)
            else:
                scores = self.proportional(torch.add, (scores, mask), {})
        probs = self.softmax(scores, -1, lambda t: torch.softmax(t, -1), finite=mask is None)
        if dropout_p > 0:
            probs = F.dropout(probs, dropout_p, training=True)
        return self.product(torch.matmul, (probs, v), {}), probs


def _linear(name: str, args: tuple, ins: list[torch.Tensor]) -> bool:
    """Whether ``name`` is linear in its inputs that depend on the explained input (a sum, a mean, a scaling by
    a constant; a division only by a constant)."""
    plain = _INPLACE_DUNDER.get(name, name.rstrip("_") if not name.startswith("_") else name)
    if plain in LINEAR:
        return True
    if plain in _SCALINGS and len(ins) == 1:
        divide = plain in {"div", "__truediv__", "divide", "true_divide"}
        return not divide or (len(args) > 0 and args[0] is ins[0])
    return False


def _is_scaling(name: str, args: tuple, x: torch.Tensor) -> bool:
    """``x * c``, ``c * x``, ``x / c`` or ``-x`` for a constant ``c`` that does not widen ``x``'s shape."""
    if name in ("neg", "__neg__", "negative"):
        return True
    if name not in _SCALINGS or len(args) != 2:
        return False
    other = args[1] if args[0] is x else args[0]
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        return True
    return isinstance(other, torch.Tensor) and not other.requires_grad and other.dim() <= x.dim() and all(
        o in (1, s) for o, s in zip(reversed(other.shape), reversed(x.shape), strict=False)  # trailing dims
    )


# ---- handlers: (mode, func, args, kwargs, inputs that require grad) -> result or NotImplemented ---------------


def _softmax(mode: AttentionRules, func: Any, args: tuple, kwargs: dict, ins: list) -> Any:
    x = args[0] if args else kwargs.get("input")
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    if not isinstance(x, torch.Tensor) or not x.requires_grad or dim is None:
        return NotImplemented
    rest = {k: v for k, v in kwargs.items() if k not in ("input", "dim")}
    return mode.softmax(x, dim, lambda t: func(t, dim, *args[2:], **rest))


def _product(mode: AttentionRules, func: Any, args: tuple, kwargs: dict, ins: list) -> Any:
    if _name(func) in _MULS and len(ins) < 2:
        return NotImplemented  # a scaling: proportional
    return mode.product(func, args, kwargs)


#: ``input + α · (a ⋅ b)`` operations: their argument names and the product each adds.
_ADD_PRODUCTS: dict[str, tuple[tuple[str, str, str], Callable[..., torch.Tensor]]] = {
    "addmm": (("input", "mat1", "mat2"), torch.matmul),
    "baddbmm": (("input", "batch1", "batch2"), torch.matmul),
    "addbmm": (("input", "batch1", "batch2"), torch.bmm),
    "addmv": (("input", "mat", "vec"), torch.mv),
}


def _add_product(mode: AttentionRules, func: Any, args: tuple, kwargs: dict, ins: list) -> Any:
    """``β · input + α · (a ⋅ b)`` (``torch.addmm`` — Hugging Face GPT-2's ``Conv1D`` —, ``baddbmm`` — attention
    scores with an ALiBi bias —, ``addbmm``, ``addmv``) taken apart: the product through its rule (ε for one
    factor that depends on the input, the uniform rule for two), the scalings passing relevance on, and the sum
    split in proportion (a constant ``input`` keeps its share, as a bias does). ``addmm(b, x, W)`` with only ``x``
    depending on the input is the ε rule of the linear layer ``x W + b`` itself."""
    name = _name(func)
    names, product = _ADD_PRODUCTS[name]
    if len(args) > 3 or set(kwargs) - {*names, "beta", "alpha"}:
        return NotImplemented  # positional β/α or out=: left to the graph check
    given = dict(zip(names, args, strict=False)) | {k: kwargs[k] for k in names if k in kwargs}
    if len(given) != 3 or not all(isinstance(given[k], torch.Tensor) for k in names):
        return NotImplemented
    inp, a, b = (given[k] for k in names)
    beta, alpha = kwargs.get("beta", 1), kwargs.get("alpha", 1)
    if not all(isinstance(v, (int, float)) for v in (beta, alpha)):
        return NotImplemented
    if name == "addmm" and beta == 1 and alpha == 1 and a.requires_grad and not (inp.requires_grad or b.requires_grad):
        z = func(inp, a.detach(), b)
        return _LinearRule.apply(a, z, b.t(), mode.epsilon)
    term = mode.product(product, (a, b), {})
    if name == "addbmm":
        term = mode.proportional(torch.sum, (term, 0), {})
    if alpha != 1:
        term = mode.scaled(torch.mul, (term, alpha), {}, term)
    if beta == 0:
        return term
    if inp.requires_grad:
        other = inp if beta == 1 else mode.scaled(torch.mul, (inp, beta), {}, inp)
    else:
        other = inp if beta == 1 else inp * beta
    return mode.proportional(torch.add, (term, other), {})


def _activation(mode: AttentionRules, func: Any, args: tuple, kwargs: dict, ins: list) -> Any:
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor) or len(ins) != 1 or ins[0] is not x:
        return NotImplemented
    return mode.identity(func, args, kwargs, x)


def _glu(mode: AttentionRules, func: Any, args: tuple, kwargs: dict, ins: list) -> Any:
    x = args[0] if args else kwargs.get("input")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", -1)
    if not isinstance(x, torch.Tensor) or len(ins) != 1:
        return NotImplemented
    a, b = x.chunk(2, dim)  # chunk: relevance follows it back to x
    return mode.product(torch.mul, (a, mode.identity(torch.sigmoid, (b,), {}, b)), {})


def _norm(mode: AttentionRules, func: Any, args: tuple, kwargs: dict, ins: list) -> Any:
    x = args[0] if args else kwargs.get("input")
    name = _name(func)
    found = _norm_args(name, args, kwargs)
    if found is None or not isinstance(x, torch.Tensor) or len(ins) != 1 or ins[0] is not x:
        return NotImplemented
    y = func(*_replace_leaves(args, {id(x): x.detach()}), **kwargs)
    if name == "layer_norm":
        shape, weight, _, eps = found
        return _norm_rule(x, y, len(tuple(shape)), weight, eps, True, mode.epsilon)
    if name == "rms_norm":
        shape, weight, eps = found
        return _norm_rule(x, y, len(tuple(shape)), weight, eps, False, mode.epsilon)
    return _constant_normaliser(_group_norm, x, found, y, mode.epsilon)


def _sdpa(mode: AttentionRules, func: Any, args: tuple, kwargs: dict, ins: list) -> Any:
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    bound = dict(zip(names, args, strict=False))  # positional arguments given, by name
    bound.update(kwargs)
    q, k, v = bound["query"], bound["key"], bound["value"]
    if mode.cp:  # only the values carry relevance: no need to propagate through queries and keys at all
        q, k = q.detach(), k.detach()
    if bound.get("enable_gqa", False) and q.shape[-3] != k.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(rep, -3), v.repeat_interleave(rep, -3)
    length, source = q.shape[-2], k.shape[-2]
    mask = bound.get("attn_mask")
    if bound.get("is_causal", False):
        mask = torch.ones(length, source, dtype=torch.bool, device=q.device).tril()
    scale = bound.get("scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    out, _ = mode.attention(q, k, v, mask, scale, float(bound.get("dropout_p", 0.0) or 0.0))
    return out


def _mha(mode: AttentionRules, func: Any, args: tuple, kwargs: dict, ins: list) -> Any:
    """``F.multi_head_attention_forward`` (what ``nn.MultiheadAttention`` calls) from its parts."""
    names = (
        "query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias", "bias_k",
        "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias", "training", "key_padding_mask",
        "need_weights", "attn_mask", "use_separate_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
        "static_k", "static_v", "average_attn_weights", "is_causal",
    )
    b = dict(zip(names, args, strict=False))  # positional arguments given, by name
    b.update(kwargs)
    unsupported = [n for n in ("bias_k", "bias_v", "static_k", "static_v") if b.get(n) is not None]
    if b.get("add_zero_attn"):
        unsupported.append("add_zero_attn")
    if unsupported:
        where = mode.stack[-1] if mode.stack else "the model"
        raise TypeError(
            f"The attention rules do not cover nn.MultiheadAttention with {unsupported} (in {where}); map "
            "nx.rules.Gradient() to that module (gradient × input through it) in your composite."
        )
    query, key, value = b["query"], b["key"], b["value"]
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if b.get("key_padding_mask") is not None:
            b["key_padding_mask"] = b["key_padding_mask"].unsqueeze(0)
    length, batch, dim = query.shape
    heads = int(b["num_heads"])
    head_dim = dim // heads
    if b.get("use_separate_proj_weight"):
        weights = (b["q_proj_weight"], b["k_proj_weight"], b["v_proj_weight"])
    else:
        weights = tuple(b["in_proj_weight"].chunk(3))
    bias = b.get("in_proj_bias")
    biases = tuple(bias.chunk(3)) if bias is not None else (None, None, None)
    if query is key and key is value and not b.get("use_separate_proj_weight"):  # self-attention: one packed projection
        q, k, v = mode.product(F.linear, (query, b["in_proj_weight"], bias), {}).chunk(3, -1)
    else:
        q, k, v = (mode.product(F.linear, (t, w, c), {}) for t, w, c in zip((query, key, value), weights, biases, strict=True))
    source = k.shape[0]

    def split(t: torch.Tensor, n: int) -> torch.Tensor:  # (n, batch, dim) -> (batch, heads, n, head_dim)
        return t.reshape(n, batch * heads, head_dim).transpose(0, 1).reshape(batch, heads, n, head_dim)

    q, k, v = split(q, length), split(k, source), split(v, source)
    if mode.cp:
        q, k = q.detach(), k.detach()
    mask = _mha_mask(b, length, source, batch, heads, q.dtype, q.device)
    dropout = float(b.get("dropout_p", 0.0)) if b.get("training", False) else 0.0
    out, probs = mode.attention(q, k, v, mask, 1.0 / math.sqrt(head_dim), dropout)
    out = out.permute(2, 0, 1, 3).reshape(length * batch, dim)
    out = mode.product(F.linear, (out, b["out_proj_weight"], b.get("out_proj_bias")), {}).reshape(length, batch, dim)
    weights_out = None
    if b.get("need_weights", True):
        weights_out = probs.detach()
        if b.get("average_attn_weights", True):
            weights_out = weights_out.mean(1)
        if not batched:
            weights_out = weights_out.squeeze(0)
    return (out if batched else out.squeeze(1)), weights_out


def _mha_mask(
    b: dict, length: int, source: int, batch: int, heads: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor | None:
    """nn.MultiheadAttention's masks (``attn_mask``: True or ``-inf`` = not attended; ``key_padding_mask``:
    True = padding; ``is_causal`` without a mask: causal) as one additive mask ``(batch, heads, L, S)``."""
    total = None

    def additive(m: torch.Tensor) -> torch.Tensor:
        if m.dtype == torch.bool:
            return torch.zeros(m.shape, dtype=dtype, device=device).masked_fill(m, -math.inf)
        return m.to(dtype)

    attn_mask = b.get("attn_mask")
    if attn_mask is None and b.get("is_causal", False):
        attn_mask = torch.ones(length, source, dtype=torch.bool, device=device).triu(1)
    if attn_mask is not None:
        m = additive(attn_mask)
        total = m.reshape(batch, heads, length, source) if m.dim() == 3 else m
    padding = b.get("key_padding_mask")
    if padding is not None:
        p = additive(padding).reshape(batch, 1, 1, source)
        total = p if total is None else total + p
    return total


_HANDLERS: dict[str, Callable[..., Any]] = {
    "softmax": _softmax,
    "scaled_dot_product_attention": _sdpa,
    "multi_head_attention_forward": _mha,
    "glu": _glu,
    **dict.fromkeys(_PRODUCTS | _MULS, _product),
    **dict.fromkeys(_ADD_PRODUCTS, _add_product),
    **dict.fromkeys(_ELEMENTWISE, _activation),
    # x / max(‖x‖, eps) (Swin-v2's cosine attention): a normalisation, its normaliser held constant — the identity
    # rule, as for layer and RMS norms without their affine part
    "normalize": _activation,
    **dict.fromkeys(("layer_norm", "rms_norm", "group_norm"), _norm),
}

