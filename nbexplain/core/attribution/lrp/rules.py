"""LRP rules as modified gradients.

Every rule redistributes the relevance ``R_out`` of a layer's outputs onto its inputs as

    R_in = x ⊙ (W_modᵀ (R_out / stab(z_mod)))

where ``z_mod`` is the layer's output computed with modified weights / inputs and ``stab`` keeps the
division away from zero. A rule has two halves: :meth:`Rule.forward` computes the denominators it
needs once (none extra for ε and LRP-0, which reuse the layer's output; one forward of the *layer* for
z⁺ and γ with non-negative inputs), and :meth:`Rule.backward` turns the output relevance into input
relevance with transposed layer products only. Rules that do not read the layer's output (``lazy``)
compute their denominators in the backward pass, right before using them, which keeps the peak memory
at that of a plain gradient. So an LRP explanation costs one forward pass, one backward pass and, for
rules that change weights, one extra forward of those layers.

Notation: ``x`` layer input, ``w`` weights, ``b`` bias, ``z = Σ_i x_i w_ij + b_j`` the layer output,
``(·)⁺ = max(·, 0)``, ``(·)⁻ = min(·, 0)``.

Bias conventions (Montavon et al. 2019, "Layer-wise relevance propagation: an overview"):

- LRP-0 and ε: the bias is part of ``z`` (a bias absorbs relevance, so Σ R_in ≠ Σ R_out when b ≠ 0).
- z⁺: the positive part of the bias joins the positive contributions,
  ``z = Σ x⁺w⁺ + Σ x⁻w⁻ + b⁺``.
- αβ: ``b⁺`` joins the positive sum and ``b⁻`` the negative sum.
- γ: the bias is boosted like the weights, ``b + γ b⁺``.
- zᴮ, flat and w²: no bias.

Every rule that uses a bias takes ``bias=False`` to leave it out (then the rule conserves relevance
exactly wherever the denominator is non-zero).

The layer itself is abstracted by a *layer op* (see :mod:`nbexplain.core.attribution.lrp.engine`) with
``op.weight``, ``op.bias``, ``op.forward(x, weight, bias)`` and ``op.backward(grad, x, weight)``
(the transposed product ``Wᵀ grad``). Rules never touch a module's parameters: modified weights are
new tensors.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "Rule",
    "Epsilon",
    "ZeroRule",
    "Gamma",
    "AlphaBeta",
    "ZPlus",
    "ZBox",
    "Flat",
    "WSquare",
    "Norm",
    "Pass",
    "Gradient",
    "NormIdentity",
    "stabilize",
]


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + ε·sign(z)`` with ``sign(0) = +1``; for ``ε = 0``, zeros become ``inf`` (so ``R / z = 0``)."""
    if epsilon == 0:
        return z.masked_fill(z == 0, math.inf)
    # two passes over z: ε carrying z's sign bit, then the sum (−0.0 counts as negative)
    return torch.copysign(z.new_tensor(epsilon), z).add_(z)


def _number(value: Any, argname: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(float(value)):
        raise TypeError(f"`{argname}` must be a real number, got {value!r}.")
    if float(value) < low:
        raise ValueError(f"`{argname}` must be ≥ {low}, got {value}.")
    return float(value)


def _pos(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clamp(min=0)


def _neg(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clamp(max=0)


def _nonneg(op: Any, x: torch.Tensor) -> bool:
    """Whether every entry of the layer input is ≥ 0 (then the x⁻ terms of z⁺ / αβ vanish and are
    skipped). The engine knows it for inputs coming from a ReLU; otherwise it is checked once per call."""
    if op.nonneg is None:
        op.nonneg = x.numel() == 0 or bool(x.min() >= 0)
    return op.nonneg


def _share(relevance: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``relevance / den``, written into ``den``'s memory when shapes allow: the denominator is a
    saved tensor used exactly once, and reusing it saves one allocation per layer."""
    if den.shape == relevance.shape and den.dtype == relevance.dtype:
        return torch.div(relevance, den, out=den)
    return relevance / den


def _wpos(op: Any) -> torch.Tensor:
    return op.derived("w+", lambda: op.weight_map("pos"))


def _wneg(op: Any) -> torch.Tensor:
    return op.derived("w-", lambda: op.weight_map("neg"))


class Rule:
    """Base class of all LRP rules.

    Subclasses implement :meth:`forward` (denominators, computed once in the forward pass) and
    :meth:`backward` (relevance of the inputs from the relevance of the outputs). The base is not an
    ``abc.ABC`` on purpose: :class:`Gradient` implements neither (the engine runs plain autograd through
    the modules mapped to it), so the two methods raise ``NotImplementedError`` if ever reached.

    Attributes
    ----------
    needs_weights
        Whether the rule modifies weights (then it only applies to layers with weights: Linear,
        Conv, batch norm); parameter-free layers (average pooling) accept only rules without it.
    """

    needs_weights = False
    #: Whether the rule guarantees Σ R_in = Σ R_out (up to the stabiliser) when no bias is used.
    conserving = True
    #: Whether :meth:`forward` may run in the backward pass instead (it does not read the layer output
    #: ``z``): the denominators then live only while they are used, which lowers the peak memory.
    lazy = False
    #: Whether :meth:`backward` reads the layer input ``x`` (else it is not kept for the backward pass).
    saves_input = True

    def forward(self, op: Any, x: torch.Tensor, z: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Tensors the backward half needs; ``z`` is the layer's real output (``None`` when a
        :attr:`lazy` rule runs this in the backward pass)."""
        raise NotImplementedError

    def backward(self, op: Any, x: torch.Tensor, saved: Sequence[torch.Tensor], relevance: torch.Tensor) -> torch.Tensor:
        """Relevance of the layer's input (shape of ``x``) from the relevance of its output."""
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._params() == other._params()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted((k, repr(v)) for k, v in self._params().items()))))


class Epsilon(Rule):
    """LRP-ε: ``R_i = Σ_j x_i w_ij / (z_j + ε·sign(z_j)) · R_j`` with ``z_j = Σ_i x_i w_ij + b_j``.

    ε absorbs some relevance of weak or contradictory activations (sparser, less noisy maps);
    ε → 0 gives LRP-0. Costs no extra forward pass: the denominator is the layer's own output.

    Parameters
    ----------
    epsilon
        The stabiliser ε ≥ 0.
    bias
        Include the bias in ``z`` (default, the convention of Montavon et al. 2019).

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import Epsilon
    >>> Epsilon(0.25)
    Epsilon(epsilon=0.25, bias=True)
    """

    def __init__(self, epsilon: float = 1e-6, *, bias: bool = True) -> None:
        self.epsilon = _number(epsilon, "epsilon")
        self.bias = bool(bias)

    def _params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "bias": self.bias}

    def forward(self, op, x, z):  # noqa: D102
        if not self.bias and op.bias is not None:
            # recomputed without the bias rather than z − b: no cancellation where b dominates z
            z = op.forward_unbiased(x)
        return (stabilize(z, self.epsilon),)

    def backward(self, op, x, saved, relevance):  # noqa: D102
        (den,) = saved
        return op.transpose(_share(relevance, den), x).mul_(x)


class ZeroRule(Epsilon):
    """LRP-0: ``R_i = Σ_j x_i w_ij / z_j · R_j`` (the bias is part of ``z_j``); outputs with
    ``z_j = 0`` pass no relevance. Equivalent to gradient × input on a ReLU network without biases.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import ZeroRule
    >>> ZeroRule()
    ZeroRule(bias=True)
    """

    def __init__(self, *, bias: bool = True) -> None:
        super().__init__(0.0, bias=bias)

    def _params(self) -> dict[str, Any]:
        return {"bias": self.bias}


class Norm(Epsilon):
    """Proportional redistribution ``R_i = Σ_j x_i w_ij / z_j · R_j`` with a tiny stabiliser: the
    default rule of average-pooling layers (and residual sums), where all weights are positive.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import Norm
    >>> Norm()
    Norm(epsilon=1e-09)
    """

    def __init__(self, epsilon: float = 1e-9) -> None:
        super().__init__(epsilon, bias=True)

    def _params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}


class Gamma(Rule):
    """LRP-γ: favours positive contributions, ``R_i = Σ_j x_i (w_ij + γ w_ij⁺) / Σ_i' x_i' (w_i'j + γ w_i'j⁺) · R_j``.

    The bias is boosted like the weights (``b + γ b⁺``). Derived for non-negative inputs (layers after a
    ReLU); applied as written to any input. γ → ∞ approaches z⁺. One extra forward pass of the layer.

    Parameters
    ----------
    gamma
        γ ≥ 0 (0.25 is the "best practice" value for convolutions, Kohlbrenner et al. 2020).
    epsilon
        Stabiliser of the denominator.
    bias
        Include the (boosted) bias.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import Gamma
    >>> Gamma(0.25)
    Gamma(gamma=0.25, epsilon=1e-06, bias=True)
    """

    needs_weights = True
    lazy = True

    def __init__(self, gamma: float = 0.25, *, epsilon: float = 1e-6, bias: bool = True) -> None:
        self.gamma = _number(gamma, "gamma")
        self.epsilon = _number(epsilon, "epsilon")
        self.bias = bool(bias)

    def _params(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "epsilon": self.epsilon, "bias": self.bias}

    def _boost(self, t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.clamp(min=0).mul_(self.gamma).add_(t)

    def _weight(self, op: Any) -> torch.Tensor:
        return op.derived("w-gamma", lambda: op.weight_map(("boost", self.gamma)))

    def forward(self, op, x, z):  # noqa: D102
        b = self._boost(op.bias) if self.bias else None
        zg = op.forward(x, self._weight(op), op.units(b))
        if not op.raw_units:
            return (stabilize(zg, self.epsilon),)
        # in the weights' units (den / s, see LayerOp.raw_units): ε / s per output channel, with z's sign
        eps = op.bias_shape(op.units(self.epsilon), zg)
        return (torch.copysign(eps, zg).add_(zg),)

    def backward(self, op, x, saved, relevance):  # noqa: D102
        (den,) = saved
        return op.backward(_share(relevance, den), x, self._weight(op)).mul_(x)


class ZPlus(Rule):
    """LRP-z⁺ (deep Taylor decomposition of a ReLU layer): only positive contributions count,
    ``R_i = Σ_j (x_i⁺ w_ij⁺ + x_i⁻ w_ij⁻) / (Σ_i' (x_i'⁺ w_i'j⁺ + x_i'⁻ w_i'j⁻) + b_j⁺) · R_j``.

    For non-negative inputs (after a ReLU, checked at run time) the x⁻ terms vanish and the rule costs
    one extra forward pass of the layer. Equals α1β0.

    Parameters
    ----------
    epsilon
        Stabiliser of the (non-negative) denominator.
    bias
        Include ``b⁺`` in the denominator (default; Montavon et al. 2019).

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import ZPlus
    >>> ZPlus()
    ZPlus(epsilon=1e-09, bias=True)
    """

    needs_weights = True
    lazy = True

    def __init__(self, *, epsilon: float = 1e-9, bias: bool = True) -> None:
        self.epsilon = _number(epsilon, "epsilon")
        self.bias = bool(bias)

    def _params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "bias": self.bias}

    def forward(self, op, x, z):  # noqa: D102
        wp = _wpos(op)
        # b⁺ + ε as the bias: the stabiliser costs no extra pass over the output
        b = _pos(op.bias) if self.bias and op.bias is not None else None
        b = op.units(self.epsilon if b is None else b + self.epsilon)
        if _nonneg(op, x):
            zp = op.forward(x, wp, b)
        else:
            zp = op.forward(x.clamp(min=0), wp, b) + op.forward(x.clamp(max=0), _wneg(op), None)
        return (zp,)

    def backward(self, op, x, saved, relevance):  # noqa: D102
        (den,) = saved
        s = _share(relevance, den)
        if _nonneg(op, x):
            return op.backward(s, x, _wpos(op)).mul_(x)
        gp, gn = op.backward_many(s, x, [_wpos(op), _wneg(op)])  # one stacked transposed pass
        return gp.mul_(x.clamp(min=0)).add_(gn.mul_(x.clamp(max=0)))


class AlphaBeta(Rule):
    """LRP-αβ: ``R_i = Σ_j (α (x_i w_ij)⁺ / z_j⁺ − β (x_i w_ij)⁻ / z_j⁻) · R_j`` with ``α − β = 1``,
    ``z_j⁺ = Σ_i (x_i w_ij)⁺ + b_j⁺`` and ``z_j⁻ = Σ_i (x_i w_ij)⁻ + b_j⁻``.

    A neuron without negative (positive) contributions passes ``α R_j`` (``−β R_j``·0): conservation
    holds only where both sums are non-zero. For non-negative inputs (after a ReLU) with β > 0 the engine
    forms the layer's own output as ``z⁺ + z⁻ + b`` from the two products the rule needs (one extra forward
    pass of the layer in all; the output then agrees with the layer's own to float rounding); four extra
    passes for signed inputs. Backwards, the shares ``α R / (z⁺ + b⁺ + ε)`` and ``−β R / (z⁻ + b⁻ − ε)`` are
    formed in place on the kept products and go through one transposed step together (on CPU one transposed
    convolution with ``[W⁺; W⁻]``, or unfold → GEMM → fold where a layer has few output positions).

    Parameters
    ----------
    alpha, beta
        α ≥ 1 and β = α − 1 ≥ 0 (give one or both; α2β1 and α1β0 are the usual choices).
    epsilon
        Stabiliser of both denominators.
    bias
        Split the bias into ``b⁺`` and ``b⁻`` and add them to ``z⁺`` and ``z⁻`` (default).

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import AlphaBeta
    >>> AlphaBeta(2, 1)
    AlphaBeta(alpha=2.0, beta=1.0, epsilon=1e-09, bias=True)
    """

    needs_weights = True
    lazy = True
    conserving = False

    def __init__(
        self, alpha: float | None = 2.0, beta: float | None = None, *, epsilon: float = 1e-9, bias: bool = True
    ) -> None:
        if alpha is None and beta is None:
            raise ValueError("Give `alpha` or `beta` (α − β = 1), e.g. AlphaBeta(2, 1).")
        if alpha is None:
            alpha = _number(beta, "beta") + 1.0
        if beta is None:
            beta = _number(alpha, "alpha") - 1.0
        self.alpha = _number(alpha, "alpha")
        self.beta = _number(beta, "beta")
        if abs(self.alpha - self.beta - 1.0) > 1e-12:
            raise ValueError(
                f"LRP-αβ needs α − β = 1 (relevance conservation), got α={self.alpha}, β={self.beta}. "
                f"Use e.g. AlphaBeta({self.beta + 1:g}, {self.beta:g})."
            )
        self.epsilon = _number(epsilon, "epsilon")
        self.bias = bool(bias)

    def _params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "epsilon": self.epsilon, "bias": self.bias}

    def forward(self, op, x, z):  # noqa: D102
        # nothing ahead of time: backward computes each sign's denominator right before using it
        return ()

    def _half(self, op: Any, x: torch.Tensor, relevance: torch.Tensor, sign: str) -> torch.Tensor:
        """One sign's term for non-negative inputs: ``x ⊙ W_sᵀ (R / (z_s ± ε))`` with ``W_s = W⁺`` or
        ``W⁻``; the modified weight lives only while this term is computed."""
        w = op.weight_map(sign)
        b = (_pos if sign == "pos" else _neg)(op.bias) if self.bias else None
        eps = self.epsilon if sign == "pos" else -self.epsilon
        den = op.forward(x, w, op.units(eps if b is None else b + eps))  # ± ε as part of the bias
        out = op.backward(_share(relevance, den), x, w).mul_(x)
        if op.workspace is not None:
            op.workspace.give_back(op, w)
        return out

    def _paired(self, op: Any, x: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        """Non-negative input, β > 0: ``x ⊙ (W⁺ᵀ s⁺ + W⁻ᵀ s⁻)`` with the shares ``s⁺ = α R / (z⁺ + b⁺ + ε)`` and
        ``s⁻ = −β R / (z⁻ + b⁻ − ε)``. ``z± = W±x`` come from the forward pass when it computed them (they gave
        the layer's output, see ``engine._SplitForward``), else from two products now. Each half becomes its
        share in two passes (:meth:`~.ops.Halves.to_shares`: α and −β go into the stabilised denominators), the
        pair goes through one transposed step (:meth:`~.ops.LayerOp.transpose_halves`) and is multiplied by
        ``x`` once."""
        wp, wn = op.weight_map("pos"), op.weight_map("neg")
        h, op.halves = op.halves, None  # written in place below: nobody else may read them afterwards
        if h is None or not (op.scale is None or op.raw_units):
            h = op.forward_halves(x, wp, wn, total=False)[1]
        b = op.bias if self.bias else None
        cp = op.units(self.epsilon if b is None else b.clamp(min=0) + self.epsilon)
        cn = op.units(-self.epsilon if b is None else b.clamp(max=0) - self.epsilon)
        h.to_shares(relevance, (cp, self.alpha), (cn, -self.beta))
        return op.transpose_halves(h, x, wp, wn).mul_(x)

    def backward(self, op, x, saved, relevance):  # noqa: D102
        if _nonneg(op, x):
            if self.beta:
                return self._paired(op, x, relevance)
            return self._half(op, x, relevance, "pos").mul_(self.alpha)
        wp, wn = _wpos(op), _wneg(op)
        bp = _pos(op.bias) if self.bias else None
        bn = _neg(op.bias) if self.bias else None
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        zp = op.forward(xp, wp, op.units(self.epsilon if bp is None else bp + self.epsilon)) + op.forward(xn, wn, None)
        zn = op.forward(xp, wn, op.units(-self.epsilon if bn is None else bn - self.epsilon)) + op.forward(xn, wp, None)
        sp, sn = relevance / zp, relevance / zn
        gp, gn = op.backward_many(sp, x, [wp, wn])  # stacked transposed passes (see LayerOp.backward_many)
        pos = xp * gp + xn * gn
        if not self.beta:
            return self.alpha * pos
        hn, hp = op.backward_many(sn, x, [wn, wp])
        neg = xp * hn + xn * hp
        return self.alpha * pos - self.beta * neg


class ZBox(Rule):
    """LRP-zᴮ (deep Taylor decomposition for inputs bounded by ``low ≤ x ≤ high``), for the first layer:
    ``R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / Σ_i' (x_i' w_i'j − l_i' w_i'j⁺ − h_i' w_i'j⁻) · R_j``.
    No bias. Two extra forward passes of the layer.

    Parameters
    ----------
    low, high
        The box bounds: numbers, or tensors broadcastable to one input sample (e.g. per-channel
        bounds of normalised images, shape ``(C, 1, 1)``). ``None`` takes the smallest / largest value
        of the batch being explained.
    epsilon
        Stabiliser of the denominator.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import ZBox
    >>> ZBox(0.0, 1.0)
    ZBox(low=0.0, high=1.0, epsilon=1e-06)
    """

    needs_weights = True
    lazy = True

    def __init__(
        self, low: float | torch.Tensor | None = None, high: float | torch.Tensor | None = None, *, epsilon: float = 1e-6
    ) -> None:
        for name, v in (("low", low), ("high", high)):
            if v is not None and not isinstance(v, torch.Tensor):
                _number(v, name, low=-math.inf)
        if isinstance(low, numbers.Real) and isinstance(high, numbers.Real) and float(low) > float(high):
            raise ValueError(f"ZBox needs low ≤ high, got low={low}, high={high}.")
        self.low = float(low) if isinstance(low, numbers.Real) else low
        self.high = float(high) if isinstance(high, numbers.Real) else high
        self.epsilon = _number(epsilon, "epsilon")

    def _params(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "epsilon": self.epsilon}

    def bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bounds as tensors of ``x``'s shape, dtype and device."""
        out = []
        for v, reduce in ((self.low, torch.min), (self.high, torch.max)):
            if v is None:
                v = reduce(x.detach())
            v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
            try:
                out.append(v.expand_as(x))
            except RuntimeError as err:
                raise ValueError(
                    f"ZBox bound of shape {tuple(v.shape)} does not broadcast to the layer input "
                    f"{tuple(x.shape)}; give a number or a tensor shaped like one sample."
                ) from err
        return out[0], out[1]

    def forward(self, op, x, z):  # noqa: D102
        low, high = self.bounds(x)
        # bounds shared by every sample (the usual case) are pushed through the layer once, not N times
        low, high = (b[:1] if b.shape[0] == 1 or b.stride(0) == 0 else b for b in (low, high))
        w = op.weight
        zb = op.forward(x, w, None) - op.forward(low, _pos(w), None) - op.forward(high, _neg(w), None)
        return (stabilize(zb, self.epsilon),)

    def backward(self, op, x, saved, relevance):  # noqa: D102
        (den,) = saved
        low, high = self.bounds(x)
        s = _share(relevance, den)
        w = op.weight
        gx, gl, gh = op.backward_many(s, x, [w, _pos(w), _neg(w)])  # one stacked transposed pass
        return gx.mul_(x).sub_(low * gl).sub_(high * gh)


class Flat(Rule):
    """Flat rule: every input in a neuron's receptive field gets an equal share,
    ``R_i = Σ_j 1 / (Σ_i' 1) · R_j`` (weights and inputs set to 1, no bias).

    On a dense first layer every input receives the same relevance — expected, not a bug.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import Flat
    >>> Flat()
    Flat()
    """

    needs_weights = True
    lazy = True

    def _weight(self, w: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(w)

    @staticmethod
    def _collapsed(op: Any) -> torch.Tensor | None:
        """For a dense layer or an ungrouped (transposed) conv every output sees the same all-ones weights, so
        the outputs can be summed first and spread back with a single all-ones output channel — the same
        numbers at a fraction of the cost of a full transposed convolution."""
        w = op.weight
        kind = type(op).__name__
        if kind == "LinearOp" or (kind == "ConvOp" and op.groups == 1):
            return op.derived("ones1", lambda: torch.ones_like(w[:1]))
        if kind == "ConvTransposeOp" and op.groups == 1:  # output channels along dim 1 of its weight
            return op.derived("ones1", lambda: torch.ones_like(w[:, :1]))
        return None

    def forward(self, op, x, z):  # noqa: D102
        ones = torch.ones_like(x[:1])
        w1 = self._collapsed(op) if type(self) is Flat else None
        w = self._weight(op.weight) if w1 is None else w1
        return (stabilize(op.forward(ones, w, None), 1e-12),)

    def backward(self, op, x, saved, relevance):  # noqa: D102
        (den,) = saved
        w1 = self._collapsed(op) if type(self) is Flat else None
        if w1 is None:
            return op.backward(relevance / den, x, self._weight(op.weight))
        dim = -1 if type(op).__name__ == "LinearOp" else 1
        return op.backward(relevance.sum(dim, keepdim=True) / den, x, w1)


class WSquare(Flat):
    """w² rule: ``R_i = Σ_j w_ij² / Σ_i' w_i'j² · R_j`` (independent of the input, no bias); for the
    first layer of a network whose input has no natural reference point.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import WSquare
    >>> WSquare()
    WSquare()
    """

    def _weight(self, w: torch.Tensor) -> torch.Tensor:
        return w * w


class Pass(Rule):
    """Pass the relevance through unchanged (``R_in = R_out``): for element-wise activations
    (ReLU family, tanh, …) and other shape-preserving modules that should not redistribute relevance.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import Pass
    >>> Pass()
    Pass()
    """

    saves_input = False

    def forward(self, op, x, z):  # noqa: D102
        if tuple(x.shape) != tuple(z.shape):
            raise ValueError(
                f"The Pass rule needs a module whose output has the input's shape; got input "
                f"{tuple(x.shape)} and output {tuple(z.shape)}. Map nx.rules.Gradient() to it (gradient × input through "
                "the module), or a layer rule (nx.rules.Epsilon(), nx.rules.ZPlus(), …) if it is a Linear, Conv or ConvTranspose."
            )
        return ()

    def backward(self, op, x, saved, relevance):  # noqa: D102
        return relevance


class Gradient(Rule):
    """Gradient × input through a module LRP has no rule for (LSTM, GRU, attention, a custom block):
    ``R_in = a ⊙ (∂z/∂a)ᵀ (R_out / z)`` for every tensor input ``a`` and output ``z`` of the module (also for
    modules returning tuples, e.g. ``(output, (h, c))``). Where the relevance arriving at ``z`` is itself
    gradient × input (ε → 0 LRP of a ReLU network, other Gradient modules), the result is exactly gradient ×
    input at ``a``. For a linear map without bias it is LRP-0; for max pooling it sends the relevance to the
    maximum. It does not conserve relevance through non-linear modules.

    Parameters
    ----------
    epsilon
        ``None`` (default): no stabiliser, ``R_out / z`` exactly (an output that is exactly 0 passes no
        relevance) — what a user who maps ``nx.rules.Gradient()`` expects: gradient × input. A number ε divides by
        ``z + ε·sign(z)`` instead, which damps outputs near 0 (and moves the result away from gradient × input
        by about ε/|z| there). The call's ``epsilon=`` does not change it: it sets the ε of the named
        composites' rules.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import Gradient
    >>> Gradient()
    Gradient(epsilon=None)
    >>> Gradient(1e-6).stabilizer
    1e-06
    """

    conserving = False

    def __init__(self, epsilon: float | None = None) -> None:
        self.epsilon = None if epsilon is None else _number(epsilon, "epsilon")

    @property
    def stabilizer(self) -> float:
        """The ε of the division (0: none; a zero output then passes no relevance)."""
        return 0.0 if self.epsilon is None else self.epsilon

    def _params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}


class NormIdentity(Rule):
    """AttnLRP's identity rule for normalisation layers (``nn.LayerNorm``, ``nn.RMSNorm``, ``nn.GroupNorm``;
    Achtibat et al. 2024): the normaliser ``σ(x)`` is treated as a constant, so the division by it passes
    relevance on unchanged, and the linear rest (mean subtraction, the affine ``γ·x̂ + β``) gets the ε rule,
    ``R_x = x ⊙ Jᵀ (R_y / stab(y))`` with ``J`` the layer's Jacobian at constant ``σ``. ``β`` absorbs its share
    like a bias; an RMSNorm passes relevance on unchanged. (Gradient × input through the division would give
    none: ``x/σ(x)`` is homogeneous of degree 0.) The attention composites (``"attn_lrp"``, ``"cp_lrp"``) map it
    to every normalisation layer.

    Parameters
    ----------
    epsilon
        The stabiliser of ``R_y / y`` (the call's ``epsilon=`` for the attention composites).

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import NormIdentity
    >>> NormIdentity()
    NormIdentity(epsilon=1e-06)
    """

    conserving = False

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = _number(epsilon, "epsilon")

    def _params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}
