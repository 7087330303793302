"""Layer ops: the few linear maps LRP rules need from a layer, independent of the module type.

An op exposes ``weight``/``bias`` (the tensors the module really uses, possibly canonized),
``forward(x, weight, bias)`` (the layer's linear map with substituted parameters) and
``backward(grad, x, weight)`` (the transposed map ``Wᵀ grad``, shaped like ``x``). Rules combine them;
no op ever changes a module.
"""

from __future__ import annotations

import abc
import math
import threading
import weakref
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "clear_weight_cache", "Workspace", "Halves", "LayerOp", "LinearOp", "ConvOp", "ConvTransposeOp", "AffineOp",
    "ScaleOp", "Scale", "PoolOp", "IdentityOp", "make_op", "channel_view", "WEIGHTED", "POOLS", "TRANSPOSED",
]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Transposed convolutions: linear maps whose rules are those of convolutions, with the transposed operator.
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
POOLS = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)


class Scale(nn.Module):
    """An element-wise product of an activation with a factor that does not depend on the explained input
    (a learned per-channel *layer scale* ``x * self.gamma`` as in ConvNeXt and CaiT, a mask buffer, a division
    by a learned temperature), as a module of its own, so that LRP reads it as the diagonal linear layer it is.

    Created by the :class:`~nbexplain.core.attribution.lrp.canonizers.ExplicitScale` canonizer (part of
    ``canonizers="auto"``) and never added to the user's model. Use the type as a composite key to choose its
    rule, e.g. ``{nx.canonizers.Scale: nx.rules.ZPlus()}``; by default it gets the ε rule with the call's ε (for a diagonal
    map: ``R_in = x·w / (x·w + ε·sign(x·w)) · R_out``, the relevance passes unchanged up to the ε absorption).
    Every rule of Linear/Conv layers applies to it, read with a diagonal weight matrix.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.attribution.lrp import Scale
    >>> s = Scale()
    >>> s.factor = torch.tensor([2.0, 3.0])
    >>> s(torch.ones(1, 2))
    tensor([[2., 3.]])
    """

    def __init__(self) -> None:
        super().__init__()
        #: The factor of the current call (plain attribute, never registered as this module's parameter).
        self.__dict__["factor"] = None
        #: The product exactly as the model wrote it (``a * p``, ``p * a``, ``a / p``); ``None``: ``x * factor``.
        self.__dict__["compute"] = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("factor", "compute"):  # a parameter of the user's model: held, not registered here
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.compute is not None:
            return self.compute(x)
        return x * self.factor


#: Module types that carry weights a rule can modify.
WEIGHTED = (nn.Linear,) + _CONVS + TRANSPOSED + _BATCHNORMS + (Scale,)


def channel_view(scale: torch.Tensor, weight: torch.Tensor, transposed: bool = False, groups: int = 1) -> torch.Tensor:
    """A per-output-channel vector ``scale`` shaped to multiply ``weight`` of a Linear/Conv (output channels
    along dim 0) or of a transposed convolution (weight ``(C_in, C_out/groups, k…)``: output channel
    ``g·C_out/groups + j`` of group ``g`` is column ``j`` of that group's rows)."""
    rest = (1,) * (weight.ndim - 2)
    if not transposed:
        return scale.view(-1, *((1,) * (weight.ndim - 1)))
    c_in, per = weight.shape[0], weight.shape[1]
    return scale.view(groups, 1, per).expand(groups, c_in // groups, per).reshape(c_in, per, *rest)


#: Weight elements per block when deriving weights (1 MiB of float32).
_BLOCK = 2**18


#: Scratch memory kept between LRP calls (bytes); larger buffers are freed at the end of each call.
POOL_BYTES = 64 * 2**20
_POOL: list[torch.Tensor] = []
_POOL_LOCK = threading.Lock()
_CALLS = 0


#: Memory for modified weights kept between LRP calls (bytes, all models together; least recently used
#: entries are dropped first). 128 MiB holds W⁺ and W⁻ of a ResNet-18 (2 × 45 MB).
CACHE_BYTES = 128 * 2**20
#: Entries of the derived-weight cache: (id(parameter), modification) -> _Derived, least recently used first.
_CACHE: OrderedDict[tuple[int, Any], _Derived] = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: Entries used by this many most recent LRP calls are never pushed out (see _cached).
_RECENT_CALLS = 8
#: Elements of a parameter compared on every use of a cached entry (a strided sample, see _Derived).
_SAMPLE = 64


class _Derived:
    """A weight derived from a parameter (its positive part, …), valid while the parameter is unchanged.

    Validity is checked on every use, cheaply: the parameter is the same object (held by a weak reference, so
    a model is never kept alive by the cache), its storage is the same (``data_ptr``, shape, dtype) and its
    version counter has not moved (every in-place write counts: an optimiser step, ``load_state_dict``,
    ``nn.init`` under ``no_grad``). Writes through ``param.data`` bypass the version counter; a strided sample
    of ``_SAMPLE`` elements is compared too, which catches any update of the whole tensor (an old-style
    optimiser, ``p.data.copy_(…)``) — an edit through ``.data`` of a few elements only can slip through it
    (call :func:`clear_weight_cache` after such an edit)."""

    __slots__ = ("ref", "key", "version", "ptr", "view", "sample", "value", "nbytes", "call", "checked")

    def __init__(self, param: torch.Tensor, key: tuple[int, Any], value: torch.Tensor) -> None:
        self.ref = weakref.ref(param, lambda _r, k=key: _drop(k))
        self.key = key
        self.version = param._version
        self.ptr = (param.data_ptr(), tuple(param.shape), param.stride(), param.dtype, param.device)
        #: The strided sample as a view of the parameter's storage (reads its current values; a new storage
        #: changes ``data_ptr``) and as a copy of the values the entry was derived from.
        self.view = _sample(param)
        self.sample = self.view.clone()
        self.value = value
        self.nbytes = value.numel() * value.element_size()
        #: The LRP call that used the entry last (see :func:`_cached`).
        self.call = 0
        #: The LRP call that last found the entry :meth:`valid` (a later use in the same call checks only the
        #: object and its version counter: nothing writes a model's weights while nbexplain explains it).
        self.checked = 0

    def valid(self, param: torch.Tensor) -> bool:
        return (
            self.ref() is param
            and self.version == param._version
            and self.ptr == (param.data_ptr(), tuple(param.shape), param.stride(), param.dtype, param.device)
            and torch.equal(self.sample, self.view)
        )


def _sample(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // _SAMPLE)]


def _drop(key: tuple[int, Any]) -> None:
    with _CACHE_LOCK:
        _CACHE.pop(key, None)


def _param(module: nn.Module) -> torch.Tensor | None:
    """The module's weight when it is a parameter that outlives the call (the key of the weight cache)."""
    w = module.weight
    if not isinstance(w, nn.Parameter) or getattr(w, "_nbexplain_temporary", False):
        return None
    return w


def clear_weight_cache() -> None:
    """Forget every modified weight kept between LRP calls (they are recomputed on the next call)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cached(param: torch.Tensor | None, fn: Any, make: Any, scratch: Any, call: int) -> torch.Tensor:
    """``make()`` for the modification ``fn`` of the parameter ``param``, kept between calls (see :class:`_Derived`).

    When keeping it would push out an entry used by one of the last :data:`_RECENT_CALLS` LRP calls (``call`` is
    this call's number), the cache is too small for the models in use: ``scratch()`` computes it in the call's
    workspace instead — no fresh weight-sized allocation per call, no entries pushed out and recomputed over and
    over (measured: a ResNet-18 with a 30 MiB cache and eviction by plain LRU ran `epsilon_plus_flat` at 1.67×
    against 1.53× without any cache). Entries unused for longer (a model no longer explained) make room. ``param=None`` (a weight that is not a module
    parameter): ``scratch()`` every time."""
    if param is None or CACHE_BYTES <= 0:
        return scratch()
    key = (id(param), fn)
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is not None:
            _CACHE.move_to_end(key)
    if entry is not None and (
        (call and entry.checked == call and entry.ref() is param and entry.version == param._version)
        or entry.valid(param)
    ):
        entry.call = entry.checked = call
        return entry.value
    nbytes = param.numel() * param.element_size()
    with _CACHE_LOCK:
        if entry is not None:
            _CACHE.pop(key, None)
        total = sum(e.nbytes for e in _CACHE.values())
        victims, room = [], total
        for e in _CACHE.values():  # least recently used first
            if room + nbytes <= CACHE_BYTES:
                break
            if e.call > call - _RECENT_CALLS:
                return scratch()
            victims.append(e.key)
            room -= e.nbytes
        if room + nbytes > CACHE_BYTES:
            return scratch()
        for k in victims:
            _CACHE.pop(k, None)
    value = make()
    entry = _Derived(param, key, value)
    entry.call = entry.checked = call
    with _CACHE_LOCK:
        _CACHE[key] = entry
    return value


class Workspace:
    """Weight-sized scratch buffers reused by the layers of one LRP call, one layer after the other.

    A CPU allocation of several MB is served with fresh pages whose first touch costs more than the
    arithmetic on them; LRP needs a modified copy of each layer's weights for a moment, so the layers
    take turns on the same buffers. A buffer is lent to one op until that op's :meth:`LayerOp.release`;
    an op that asks while every buffer is lent gets a fresh allocation (never a shared one)."""

    def __init__(self, pooled: bool = True) -> None:
        global _CALLS
        #: Whether the buffers come from (and :meth:`close` returns them to) the pool kept between calls. A
        #: workspace whose backward pass is not run by nbexplain (``nx.lrp_rules``) is not pooled: it could not
        #: be closed safely, and it is left to the garbage collector.
        self.pooled = pooled
        with _POOL_LOCK:  # buffers kept from the previous call (their pages are already mapped)
            _CALLS += 1
            #: This call's number (the weight cache keeps what one call uses together, see _cached).
            self.call = _CALLS
            self.buffers: list[torch.Tensor] = list(_POOL) if pooled else []
            if pooled:
                _POOL.clear()
        self.owner: list[Any] = [None] * len(self.buffers)

    def close(self) -> None:
        """End of the call: keep up to :data:`POOL_BYTES` of CPU buffers for the next call, free the rest."""
        if not self.pooled:
            return
        keep, total = [], 0
        for buf in sorted(self.buffers, key=lambda b: -b.numel()):
            size = buf.numel() * buf.element_size()
            if buf.device.type == "cpu" and total + size <= POOL_BYTES:
                keep.append(buf)
                total += size
        with _POOL_LOCK:
            if not _POOL:
                _POOL.extend(keep)
        self.buffers, self.owner = [], []

    def take(self, op: Any, like: torch.Tensor) -> torch.Tensor | None:
        """A contiguous tensor shaped like ``like``, lent to ``op`` (``None``: allocate yourself)."""
        shape = like.shape
        n = like.numel()
        for i, buf in enumerate(self.buffers):
            if self.owner[i] is None and buf.dtype == like.dtype and buf.device == like.device:
                if buf.numel() < n:
                    buf = self.buffers[i] = torch.empty(n, dtype=like.dtype, device=like.device)
                self.owner[i] = op
                return buf[:n].view(shape)
        if len(self.buffers) >= 4:
            return None
        self.buffers.append(torch.empty(n, dtype=like.dtype, device=like.device))
        self.owner.append(op)
        return self.buffers[-1].view(shape)

    def give_back(self, op: Any, tensor: torch.Tensor | None = None) -> None:
        """Return the buffers lent to ``op`` (only the one holding ``tensor`` when given)."""
        for i, o in enumerate(self.owner):
            if o is op and (tensor is None or self.buffers[i].data_ptr() == tensor.data_ptr()):
                self.owner[i] = None


#: CPU convolutions whose output has at most this many positions over the whole batch (N · H_out · W_out),
#: and all 1×1 convolutions, compute αβ's z⁺/z⁻ and their transposed products as plain matrix products
#: (unfold → GEMM → fold) instead of convolution calls: there the convolution library spends more time
#: re-laying-out the weights on every call than multiplying (ResNet-18's 512-channel layers at 2×2 with a
#: batch of 8: 32 positions; measured in BENCHMARKS.md, "LRP on ResNet-18, fourth round"). 0 turns the
#: matrix-product path off (1×1 convolutions included).
MATMUL_POSITIONS = 128
#: CPU convolutions with at most this many input channels (an image's first layer) compute αβ's transposed
#: products as one batched GEMM and a fold: the convolution library's transposed pass onto 1–4 channels runs
#: far below its peak (a 3-channel 7×7 stride-2 layer: two transposed passes ≈ 3× one GEMM + fold). 0: off.
MATMUL_MAX_INPUT_CHANNELS = 4


#: CPU convolutions that run αβ's products as convolution calls take the pair's transposed step as one
#: transposed convolution of the stacked shares ``[s⁺; s⁻]`` with ``[W⁺; W⁻]`` (the sum comes out directly):
#: ResNet-18's 64-channel 16×16 layers, batch 8, 4.6 vs 6.0 ms for two passes and their sum.
STACKED_TRANSPOSE = True


class Halves:
    """``z⁺ = W⁺x`` and ``z⁻ = W⁻x`` of one layer call (raw weights, no bias), kept from the forward pass for
    the αβ rule's backward step (see :meth:`LayerOp.forward_halves`), which turns them into shares
    (:meth:`to_shares`) for :meth:`LayerOp.transpose_halves`.

    ``pos`` and ``neg`` are laid out like the layer's output (channel axis ``channel_axis``), or — when the
    layer ran as a matrix product (:meth:`ConvOp.forward_halves`) — as ``(C, N, L)`` views of the two halves of
    one channel-major ``(2C, N·L)`` buffer :attr:`rows` (``L`` output positions per sample), the layout the
    transposed matrix product reads. One op holds them at a time (the engine hands them on, the rule takes them
    off the op before they are overwritten).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.attribution.lrp.ops import Halves
    >>> h = Halves(torch.ones(1, 3), -torch.ones(1, 3), channel_axis=1)
    >>> h.to_shares(torch.full((1, 3), 6.0), (torch.tensor([1.0, 2.0, 5.0]), 2.0), (torch.zeros(3), -1.0))
    >>> h.pos.tolist(), h.neg.tolist()
    ([[6.0, 4.0, 2.0]], [[6.0, 6.0, 6.0]])
    """

    __slots__ = ("pos", "neg", "rows", "channel_axis", "shape", "stack", "stacked")

    def __init__(
        self,
        pos: torch.Tensor,
        neg: torch.Tensor,
        channel_axis: int,
        rows: torch.Tensor | None = None,
        shape: tuple[int, int, int] | None = None,
        stack: bool = False,
    ) -> None:
        self.pos, self.neg = pos, neg
        self.channel_axis = channel_axis
        #: The ``(2C, N·L)`` buffer behind ``pos``/``neg`` in the matrix layout (``None``: output layout).
        self.rows = rows
        #: ``(N, C, L)`` in the matrix layout.
        self.shape = shape
        #: Whether :meth:`to_shares` writes the shares into one ``(N, 2C, …)`` tensor, :attr:`stacked`, that a
        #: single transposed convolution with the weights ``[W⁺; W⁻]`` reads (output layout only).
        self.stack = stack
        self.stacked: torch.Tensor | None = None

    def channel(self, v: torch.Tensor) -> torch.Tensor:
        """A per-output-channel vector shaped to broadcast against :attr:`pos` / :attr:`neg`."""
        return v.view((-1,) + (1,) * (self.pos.ndim - 1 - self.channel_axis))

    def align(self, t: torch.Tensor) -> torch.Tensor:
        """An output-shaped tensor (the relevance of the layer's output) laid out like :attr:`pos`."""
        if self.rows is None:
            return t
        n, c, length = self.shape  # type: ignore[misc]
        return t.reshape(n, c, length).transpose(0, 1)

    def to_shares(
        self, relevance: torch.Tensor, pos: tuple[torch.Tensor, float], neg: tuple[torch.Tensor, float]
    ) -> None:
        """Turn each half ``z`` into ``k · R / (z + c)`` for its ``(c, k)`` (``c`` per output channel), with
        ``R`` the output-shaped ``relevance``: two passes per half, ``(z + c)/k`` in place, then ``R / ·``
        (in place, or into :attr:`stacked`). :attr:`pos`/:attr:`neg` are the shares afterwards."""
        r = self.align(relevance)
        halves = (self.pos, self.neg)
        targets = halves
        if self.stack:
            c = self.pos.shape[1]
            self.stacked = self.pos.new_empty((self.pos.shape[0], 2 * c) + tuple(self.pos.shape[2:]))
            targets = (self.stacked[:, :c], self.stacked[:, c:])
        for half, target, (shift, k) in zip(halves, targets, (pos, neg), strict=True):
            torch.add(self.channel(shift / k), half, alpha=1.0 / k, out=half)
            torch.div(r, half, out=target)
        self.pos, self.neg = targets


class LayerOp(abc.ABC):
    """Base class; ``weight``/``bias`` are ``None`` for parameter-free layers.

    Weight-sized tensors an op derives (the positive part of the weights, batch-norm-merged weights) are
    computed on first use and dropped by :meth:`release` as soon as the layer's backward step is done, so
    only one layer's derived weights are alive at a time: the allocator then hands the next layer the same
    memory instead of fresh pages (which on CPU cost more than the arithmetic)."""

    bias: torch.Tensor | None = None
    #: Whether the layer's input is known to be ≥ 0 (set by the engine; ``None``: unknown, rules check).
    nonneg: bool | None = None
    #: Per-output-channel factor of a batch norm folded into this layer (``None``: not merged). The
    #: merged weight ``W·scale`` is materialised only when a rule asks for :attr:`weight`.
    scale: torch.Tensor | None = None
    _weight: torch.Tensor | None = None
    _raw_weight: torch.Tensor | None = None
    #: Scratch memory shared by the ops of one LRP call (set by the engine; ``None``: allocate).
    workspace: Workspace | None = None
    #: The module's weight parameter (``None``: not a parameter, e.g. a parametrized weight computed per
    #: call): modifications of it are cached between calls, keyed on it (see :func:`_cached`).
    param: torch.Tensor | None = None
    #: ``W⁺x`` and ``W⁻x`` with the raw weight and no bias, computed in the forward pass when they gave the
    #: layer's output (see ``engine._SplitForward`` and :meth:`forward_halves`); dropped by :meth:`release`.
    halves: Halves | None = None

    @property
    def weight(self) -> torch.Tensor | None:
        """The weight the rules see (batch-norm merged when :meth:`merge` was called)."""
        if self.scale is None:
            return self._weight
        if self._weight is None:
            self._weight = self.weight_map(None)
        return self._weight

    @weight.setter
    def weight(self, value: torch.Tensor | None) -> None:
        self._weight = value

    def weight_map(self, fn: Any = None) -> torch.Tensor:
        """The (merged) weight, modified by ``fn``, as one new tensor.

        ``fn``: ``None`` (the weight itself), ``"pos"``/``"neg"`` (its positive / negative part),
        ``("boost", γ)`` (``w + γ·w⁺``) or a function that modifies a block of weights *in place* and returns it. With ``fn`` given and
        :attr:`raw_units`, the modification of the *raw* weight (the batch-norm factor left to the rule). Large weights are written into
        the call's :class:`Workspace` and modified there in place (in blocks of output channels for a
        function): no weight-sized temporary is allocated, so no fresh pages are touched.

        A modification of the module's own parameter (``fn`` a string or tuple; no batch-norm factor applied,
        i.e. unmerged or :attr:`raw_units`) is kept between calls (:func:`_cached`): the next call on the same,
        unchanged parameter reuses it instead of reading and writing the whole weight again."""
        w = self._raw_weight if self.scale is not None else self._weight
        if (
            isinstance(fn, (str, tuple))
            and (self.scale is None or self.raw_units)
            and self.param is not None
            and self.param.data_ptr() == w.data_ptr()
        ):
            return _cached(
                self.param,
                fn,
                lambda: self._weight_map(w, fn, None),
                lambda: self._weight_map(w, fn, self.workspace),
                0 if self.workspace is None else self.workspace.call,
            )
        return self._weight_map(w, fn, self.workspace)

    def _weight_map(self, w: torch.Tensor, fn: Any, workspace: Workspace | None) -> torch.Tensor:
        out = workspace.take(self, w) if workspace is not None and w.numel() > _BLOCK else None
        if out is None:
            out = torch.empty_like(w, memory_format=torch.contiguous_format)
        if self.scale is not None and not (self.raw_units and fn is not None):  # see raw_units
            torch.mul(w, self.scale_view(w), out=out)
            src = out
        else:
            src = w
        if fn == "pos":
            return torch.clamp(src, min=0, out=out)
        if fn == "neg":
            return torch.clamp(src, max=0, out=out)
        if isinstance(fn, tuple) and fn[0] == "boost":  # w + γ·w⁺ in two passes, no temporary
            if src is not out:
                torch.clamp(src, min=0, out=out)
                return torch.add(src, out, alpha=fn[1], out=out)
            gamma = fn[1]
            fn = lambda t: t.add_(t.clamp(min=0), alpha=gamma)  # noqa: E731  (merged in place: by blocks)
        if src is not out:
            out.copy_(src)
        if fn is not None:
            step = max(1, _BLOCK // max(1, w[0].numel()))
            for i in range(0, w.shape[0], step):
                fn(out[i : i + step])
        return out

    #: Whether :meth:`weight_map` derives modified weights from the raw (unmerged) weight: a merged op whose
    #: batch-norm factors are all > 0. Every modification the rules make (``w⁺``, ``w⁻``, ``w + γw⁺``) is
    #: positively homogeneous per output channel, ``m(W·s) = m(W)·s`` for ``s > 0``, so the factor moves to
    #: the output side: a rule divides its denominator's bias and ε by ``s`` (:meth:`units`) and the
    #: denominator it computes is ``den / s``; ``x ⊙ m(W)ᵀ (R / (den/s)) = x ⊙ m(W·s)ᵀ (R / den)`` — the same
    #: relevance without a pass over the weights to multiply them by ``s``.
    raw_units: bool = False

    def merge(self, scale: torch.Tensor, bias: torch.Tensor) -> None:
        """Fold a per-output-channel affine map ``y ↦ scale·y + …`` (an eval-mode batch norm) into the op:
        the weight becomes ``W·scale`` (lazily) and the bias ``bias`` (already merged)."""
        self._raw_weight, self._weight = self._weight, None
        self.scale = scale
        self.bias = bias
        self.raw_units = bool((scale > 0).all())

    def units(self, v: torch.Tensor | float | None) -> torch.Tensor | None:
        """A per-output-channel vector (a bias, ε) in the units of :meth:`weight_map`'s weights: ``v / s``
        when :attr:`raw_units`, else ``v`` (a number becomes a vector; ``None`` stays ``None``)."""
        if v is None:
            return None
        w = self._raw_weight if self.scale is not None else self._weight
        if not isinstance(v, torch.Tensor):
            v = w.new_full((self.out_channels(w),), float(v))
        return v / self.scale if self.raw_units else v

    def out_channels(self, w: torch.Tensor) -> int:
        """How many output channels the weight ``w`` has (its first dimension, for Linear and Conv)."""
        return w.shape[0]

    def scale_view(self, w: torch.Tensor) -> torch.Tensor:
        """The merged batch norm's per-output-channel :attr:`scale` shaped to multiply the weight ``w``."""
        return channel_view(self.scale, w)

    def transpose(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``Wᵀ grad`` with the op's own (possibly merged) weight; for a merged op the batch-norm factor is
        applied to ``grad`` (output-sized) instead of to the weight (often far larger)."""
        if self.scale is not None and self._weight is None:
            return self.backward(grad * self.bias_shape(self.scale, grad), x, self._raw_weight)
        return self.backward(grad, x, self.weight)

    def forward_unbiased(self, x: torch.Tensor) -> torch.Tensor:
        """``W x`` with the op's own (possibly merged) weight and no bias (merged: ``scale ⊙ (W_raw x)``,
        without materialising the merged weight)."""
        if self.scale is not None and self._weight is None:
            z = self.forward(x, self._raw_weight, None)
            return z.mul_(self.bias_shape(self.scale, z))
        return self.forward(x, self.weight, None)

    def bias_shape(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """A per-output-channel vector shaped to broadcast against an output ``z``."""
        return v

    def copy(self) -> LayerOp:
        """A new op for the same layer call (same weights, bias, workspace and flags), without derived tensors
        or halves: cheaper than building one from the module again."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.pop("_derived", None)
        new.halves = None
        return new

    def release(self) -> None:
        """Drop derived weight-sized tensors (called after the layer's backward step)."""
        self.__dict__.pop("_derived", None)
        self.halves = None
        if self.scale is not None:
            self._weight = None
        if self.workspace is not None:
            self.workspace.give_back(self)

    def derived(self, key: str, fn: Any) -> Any:
        """``fn()`` computed once per op until :meth:`release` (e.g. the positive part of the weights,
        shared by the forward and backward halves of a rule)."""
        cache = self.__dict__.setdefault("_derived", {})
        if key not in cache:
            cache[key] = fn()
        return cache[key]

    def forward_halves(
        self, x: torch.Tensor, wp: torch.Tensor, wn: torch.Tensor, total: bool = True
    ) -> tuple[torch.Tensor | None, Halves]:
        """``z⁺ = W⁺x`` and ``z⁻ = W⁻x`` (no bias) and, with ``total``, their sum: the output-shaped ``W x`` for
        ``x ≥ 0`` (``None`` without)."""
        zp, zn = self.forward(x, wp, None), self.forward(x, wn, None)
        halves = Halves(zp, zn, channel_axis=zp.ndim - 1 if isinstance(self, LinearOp) else 1)
        return (zp + zn if total else None), halves

    def transpose_halves(self, halves: Halves, x: torch.Tensor, wp: torch.Tensor, wn: torch.Tensor) -> torch.Tensor:
        """``W⁺ᵀ halves.pos + W⁻ᵀ halves.neg``, shaped like ``x`` (a new tensor)."""
        return self.backward(halves.pos, x, wp).add_(self.backward(halves.neg, x, wn))

    def backward_many(self, grad: torch.Tensor, x: torch.Tensor, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """``[Wᵀ grad for W in weights]``: the same output-side ``grad`` through several weights. Dense layers
        and ungrouped convolutions do it in one transposed pass with the weights stacked along the input
        dimension (a layer with few input channels, an image's first convolution, runs its transposed
        convolution far below peak: three 3-channel passes cost 2.7× one 9-channel pass)."""
        return [self.backward(grad, x, w) for w in weights]

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, weight: Any, bias: Any) -> torch.Tensor:
        """The layer's output for input ``x`` with the (possibly rule-modified) ``weight`` and ``bias``."""

    @abc.abstractmethod
    def backward(self, grad: torch.Tensor, x: torch.Tensor, weight: Any) -> torch.Tensor:
        """The vector-Jacobian product of :meth:`forward` with ``grad``, with respect to ``x``."""

    def bias_view(self, z: torch.Tensor) -> torch.Tensor:
        """The bias shaped to broadcast against the output ``z``."""
        return self.bias  # type: ignore[return-value]


class IdentityOp(LayerOp):
    """For rules that need no layer algebra (Pass): the identity map."""

    def forward(self, x, weight, bias):  # noqa: D102
        return x

    def backward(self, grad, x, weight):  # noqa: D102
        return grad


class LinearOp(LayerOp):
    def __init__(self, module: nn.Linear) -> None:
        self.param = _param(module)
        self.weight = module.weight.detach()
        self.bias = None if module.bias is None else module.bias.detach()

    def forward(self, x, weight, bias):  # noqa: D102
        return F.linear(x, weight, bias)

    def backward(self, grad, x, weight):  # noqa: D102
        return grad.matmul(weight)

    def backward_many(self, grad, x, weights):  # noqa: D102
        return list(grad.matmul(torch.cat(weights, dim=1)).split(weights[0].shape[1], dim=-1))


class ConvOp(LayerOp):
    def __init__(self, module: nn.Module) -> None:
        self.param = _param(module)
        self.weight = module.weight.detach()
        self.bias = None if module.bias is None else module.bias.detach()
        self.dims = module.weight.ndim - 2
        self.kernel_size = tuple(module.weight.shape[2:])
        self.stride = module.stride
        self.dilation = module.dilation
        self.groups = module.groups
        self.padding_mode = module.padding_mode
        self.fn = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        if module.padding_mode != "zeros":
            self.padding: Any = (0,) * self.dims
            self.pre_pad: Any = module._reversed_padding_repeated_twice
        else:
            self.padding = module.padding
            self.pre_pad = None
        if isinstance(self.padding, str):
            if self.padding == "valid":
                self.padding = (0,) * self.dims
            else:  # "same": torch pads (k-1)*d split left/right; only symmetric when (k-1)*d is even
                k = module.kernel_size
                total = [d * (kk - 1) for d, kk in zip(self.dilation, k, strict=True)]
                if any(t % 2 for t in total):
                    # asymmetric same-padding: pad explicitly (left = total//2, right = rest)
                    pads: list[int] = []
                    for t in reversed(total):
                        pads += [t // 2, t - t // 2]
                    self.pre_pad = tuple(pads)
                    self.padding_mode = "zeros"
                    self.padding = (0,) * self.dims
                else:
                    self.padding = tuple(t // 2 for t in total)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.pad(x, self.pre_pad, mode=mode)

    def forward(self, x, weight, bias):  # noqa: D102
        if self.pre_pad is not None:
            x = self._pad(x)
        return self.fn(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def backward(self, grad, x, weight):  # noqa: D102
        if self.pre_pad is not None:
            # relevance-free fold-back of the padding: the VJP of the pad (sums the copies of each pixel).
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                xp = self._pad(xr)
                g = self._backward(grad, xp.detach(), weight)
                return torch.autograd.grad(xp, xr, g)[0]
        return self._backward(grad, x, weight)

    def _matmul_ok(self, x: torch.Tensor) -> bool:
        """Whether this call can run as unfold → GEMM → fold (CPU, 2-d, ungrouped, zero padding, float)."""
        return (
            self.dims == 2
            and self.groups == 1
            and self.pre_pad is None
            and x.ndim == 4
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
        )

    def _positions(self, x: torch.Tensor) -> int:
        """N · (output positions per sample) of this layer on ``x``."""
        return x.shape[0] * math.prod(self._out_size(x))

    def _as_matmul(self, x: torch.Tensor) -> bool:
        """Whether αβ's products of this call run as GEMMs (see :data:`MATMUL_POSITIONS`)."""
        if MATMUL_POSITIONS <= 0 or not self._matmul_ok(x):
            return False
        return all(k == 1 for k in self.kernel_size) or self._positions(x) <= MATMUL_POSITIONS

    def _few_inputs(self, x: torch.Tensor) -> bool:
        """Whether αβ's transposed step of this call runs as one batched GEMM (:data:`MATMUL_MAX_INPUT_CHANNELS`)."""
        return self._matmul_ok(x) and x.shape[1] <= MATMUL_MAX_INPUT_CHANNELS

    def forward_halves(self, x, wp, wn, total=True):  # noqa: D102
        if not self._as_matmul(x):
            z, halves = super().forward_halves(x, wp, wn, total)
            # CPU: one transposed convolution of [s⁺; s⁻] with [W⁺; W⁻] (see STACKED_TRANSPOSE)
            halves.stack = (
                STACKED_TRANSPOSE
                and x.device.type == "cpu"
                and self.groups == 1
                and self.pre_pad is None
                and not self._few_inputs(x)
            )
            return z, halves
        n, c = x.shape[0], wp.shape[0]
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (N, K, L)
        k, length = cols.shape[1], cols.shape[2]
        cols = cols.transpose(0, 1).reshape(k, n * length)
        rows = x.new_empty(2 * c, n * length)
        torch.mm(wp.reshape(c, k), cols, out=rows[:c])
        torch.mm(wn.reshape(c, k), cols, out=rows[c:])
        pos, neg = rows[:c].view(c, n, length), rows[c:].view(c, n, length)
        z = None
        if total:
            z = x.new_empty((n, c) + self._out_size(x))
            torch.add(pos.transpose(0, 1), neg.transpose(0, 1), out=z.view(n, c, length))
        return z, Halves(pos, neg, channel_axis=0, rows=rows, shape=(n, c, length))

    def transpose_halves(self, halves, x, wp, wn):  # noqa: D102
        c = wp.shape[0]
        k = wp[0].numel()
        if halves.rows is not None:  # one GEMM over the batch, then the columns folded back onto the input
            n, _, length = halves.shape
            cols = torch.mm(wp.reshape(c, k).t(), halves.rows[:c])
            cols.addmm_(wn.reshape(c, k).t(), halves.rows[c:])
            return self._fold(cols.view(k, n, length).transpose(0, 1), x)
        if halves.stacked is not None:
            return self._backward(halves.stacked, x, self._stacked_weights(wp, wn))
        if self._few_inputs(x):  # per sample: small weights
            n = x.shape[0]
            sp, sn = halves.pos.reshape(n, c, -1), halves.neg.reshape(n, c, -1)
            cols = torch.matmul(wp.reshape(c, k).t(), sp)  # (N, K, L)
            cols.baddbmm_(wn.reshape(c, k).t().expand(n, k, c), sn)
            return self._fold(cols, x)
        return super().transpose_halves(halves, x, wp, wn)

    def _stacked_weights(self, wp: torch.Tensor, wn: torch.Tensor) -> torch.Tensor:
        """``[W⁺; W⁻]`` along the output channels; large ones in the call's workspace (no fresh pages per layer)."""
        buf = None
        if self.workspace is not None and 2 * wp.numel() > _BLOCK:
            buf = self.workspace.take(self, wp.expand(2, *wp.shape))
        if buf is None:
            return torch.cat([wp, wn])
        return torch.cat([wp, wn], out=buf.view((-1,) + tuple(wp.shape[1:])))

    def _fold(self, cols: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.fold(cols, tuple(x.shape[2:]), self.kernel_size, self.dilation, self.padding, self.stride)

    def _out_size(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, k, s, p, d in zip(x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation, strict=True)
        )

    def backward_many(self, grad, x, weights):  # noqa: D102
        if self.pre_pad is not None or self.groups != 1:
            return super().backward_many(grad, x, weights)
        k = len(weights)
        # the input only gives the transposed convolution its shape: a broadcast view, no memory
        shape = (grad.shape[0], k * x.shape[1]) + tuple(x.shape[2:])
        g = self._backward(grad, x.narrow(1, 0, 1).expand(shape), torch.cat(weights, dim=1))
        return list(g.split(x.shape[1], dim=1))

    def _patches(self) -> bool:
        """Whether the convolution cuts its input into non-overlapping patches (a ViT's patch embedding):
        2-d, stride = kernel, no padding or dilation, ungrouped."""
        return (
            self.dims == 2
            and self.groups == 1
            and self.pre_pad is None
            and tuple(self.stride) == self.kernel_size
            and all(p == 0 for p in self.padding)
            and all(d == 1 for d in self.dilation)
        )

    def _patch_backward(self, grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``Wᵀ grad`` for non-overlapping patches: one GEMM, each patch's columns put back in place (the
        rows and columns past the last whole patch, which the convolution never read, get 0). Exact, and far
        cheaper on CPU than the generic transposed convolution (10 ms → well under 1 ms on lesson 06's ViT)."""
        n, c_out, ho, wo = grad.shape
        c_in, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
        rows = grad.permute(0, 2, 3, 1).reshape(n * ho * wo, c_out) @ weight.reshape(c_out, c_in * kh * kw)
        out = rows.view(n, ho, wo, c_in, kh, kw).permute(0, 3, 1, 4, 2, 5).reshape(n, c_in, ho * kh, wo * kw)
        h, w = x.shape[2], x.shape[3]
        if (h, w) != (ho * kh, wo * kw):
            out = F.pad(out, (0, w - wo * kw, 0, h - ho * kh))
        return out

    def _backward(self, grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self._patches() and grad.ndim == 4:
            return self._patch_backward(grad, x, weight)
        if x.shape[0] != grad.shape[0]:
            x = x.expand(grad.shape[0], *x.shape[1:])
        return torch.ops.aten.convolution_backward(
            grad,
            x,
            weight,
            None,
            list(self.stride),
            list(self.padding),
            list(self.dilation),
            False,
            [0] * self.dims,
            self.groups,
            (True, False, False),
        )[0]

    def bias_view(self, z):  # noqa: D102
        return self.bias.view(-1, *([1] * self.dims))  # type: ignore[union-attr]

    def bias_shape(self, v, z):  # noqa: D102
        return v.view(-1, *([1] * self.dims))


class ConvTransposeOp(LayerOp):
    """A transposed convolution ``ConvTranspose1d/2d/3d``: the linear map ``z = Wᵀ x + b`` whose adjoint is the
    ordinary convolution with the same weight, so every rule of convolutions applies unchanged — its forward
    half is the transposed convolution with modified weights, its backward half the convolution.

    The weight is ``(C_in, C_out/groups, k…)``: output channels run along dimension 1 within each group (a
    merged batch norm's factors are placed accordingly, :func:`channel_view`). The output padding is read from
    the output the layer really produced, so a call with ``output_size=`` is explained as computed."""

    def __init__(self, module: nn.Module, x: torch.Tensor, out: torch.Tensor | None = None) -> None:
        self.param = _param(module)
        self.weight = module.weight.detach()
        self.bias = None if module.bias is None else module.bias.detach()
        self.dims = module.weight.ndim - 2
        self.stride = tuple(module.stride)
        self.padding = tuple(module.padding)
        self.dilation = tuple(module.dilation)
        self.groups = module.groups
        self.output_padding = tuple(module.output_padding)
        if out is not None and out.ndim == x.ndim:
            k = module.kernel_size
            self.output_padding = tuple(
                int(o) - ((int(i) - 1) * s - 2 * p + d * (kk - 1) + 1)
                for o, i, s, p, d, kk in zip(
                    out.shape[2:], x.shape[2:], self.stride, self.padding, self.dilation, k, strict=True
                )
            )
        self.fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[self.dims - 1]
        self.adjoint = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]

    def out_channels(self, w):  # noqa: D102
        return w.shape[1] * self.groups

    def scale_view(self, w):  # noqa: D102
        return channel_view(self.scale, w, transposed=True, groups=self.groups)

    def forward(self, x, weight, bias):  # noqa: D102
        return self.fn(x, weight, bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation)

    def backward(self, grad, x, weight):  # noqa: D102
        # the adjoint of a transposed convolution is the convolution with the same weight (its output has
        # exactly the input's size: output_padding < stride drops out of the floor division)
        return self.adjoint(grad, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def backward_many(self, grad, x, weights):  # noqa: D102
        if self.groups != 1:
            return super().backward_many(grad, x, weights)
        # one convolution with the weights stacked along the input-channel dimension (dim 0 here)
        g = self.backward(grad, x, torch.cat(weights, dim=0))
        return list(g.split(weights[0].shape[0], dim=1))

    def bias_view(self, z):  # noqa: D102
        return self.bias.view(-1, *([1] * self.dims))  # type: ignore[union-attr]

    def bias_shape(self, v, z):  # noqa: D102
        return v.view(-1, *([1] * self.dims))


class ScaleOp(LayerOp):
    """A :class:`Scale` (``z = x ⊙ w``, ``w`` broadcast to ``x``'s shape): a linear layer with a diagonal weight
    matrix and no bias. The rules read it as such: ``w⁺``, ``w⁻``, ``w + γw⁺`` are taken element-wise, and a
    stabiliser or bias is a number broadcast to every element."""

    def __init__(self, module: Scale) -> None:
        factor = module.factor
        if not isinstance(factor, torch.Tensor):
            raise TypeError("A Scale module needs its `factor` (a tensor) set before it is called.")
        temporary = getattr(factor, "_nbexplain_temporary", False)
        self.param = factor if isinstance(factor, nn.Parameter) and not temporary else None
        self.weight = factor.detach()

    def units(self, v):  # noqa: D102
        if v is None or isinstance(v, torch.Tensor):
            return v
        return self._weight.new_tensor(float(v))

    def forward(self, x, weight, bias):  # noqa: D102
        z = x * weight
        return z if bias is None else z + bias

    def backward(self, grad, x, weight):  # noqa: D102
        return grad * weight

    def bias_view(self, z):  # noqa: D102
        return self.bias  # type: ignore[return-value]


class AffineOp(LayerOp):
    """A batch-norm layer that was not merged into a preceding layer, read as the channel-wise affine
    map ``y = a·x + c`` it computes in eval mode (``a = γ/√(σ²+ε)``, ``c = β − μ·a``)."""

    def __init__(self, module: nn.Module, x: torch.Tensor) -> None:
        if module.running_mean is not None and not module.training:
            mean, var = module.running_mean.detach(), module.running_var.detach()
        else:  # no running statistics: batch statistics, as the module uses them
            dims = [0] + list(range(2, x.ndim))
            mean = x.detach().mean(dims)
            var = x.detach().var(dims, unbiased=False)
        scale = torch.rsqrt(var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach()
        shift = -mean * scale
        if module.bias is not None:
            shift = shift + module.bias.detach()
        self.weight = scale.to(x.dtype)
        self.bias = shift.to(x.dtype)
        self.extra = x.ndim - 2

    def _view(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, *([1] * self.extra))

    def forward(self, x, weight, bias):  # noqa: D102
        y = x * self._view(weight)
        return y if bias is None else y + self._view(bias)

    def backward(self, grad, x, weight):  # noqa: D102
        return grad * self._view(weight)

    def bias_view(self, z):  # noqa: D102
        return self._view(self.bias)  # type: ignore[arg-type]


class PoolOp(LayerOp):
    """Average pooling (fixed positive weights): a linear map without parameters."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        name = type(module).__name__
        dims = int(name[-2])
        if name.startswith("Adaptive"):
            fn = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[dims - 1]
            self.fn = lambda x: fn(x, module.output_size)
        else:
            if dims == 1:
                self.fn = lambda x: F.avg_pool1d(
                    x, module.kernel_size, module.stride, module.padding, module.ceil_mode, module.count_include_pad
                )
            else:
                fn = F.avg_pool2d if dims == 2 else F.avg_pool3d
                self.fn = lambda x: fn(
                    x,
                    module.kernel_size,
                    module.stride,
                    module.padding,
                    module.ceil_mode,
                    module.count_include_pad,
                    module.divisor_override,
                )

    def forward(self, x, weight, bias):  # noqa: D102
        return self.fn(x)

    def backward(self, grad, x, weight):  # noqa: D102
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            return torch.autograd.grad(self.fn(xr), xr, grad)[0]


def make_op(module: nn.Module, x: torch.Tensor, out: torch.Tensor | None = None) -> LayerOp:
    """The op for a module LRP can redistribute through; ``out``: the output the module produced from ``x``
    (fixes the output size of a transposed convolution called with ``output_size=``)."""
    if isinstance(module, nn.Linear):
        return LinearOp(module)
    if isinstance(module, _CONVS):
        return ConvOp(module)
    if isinstance(module, TRANSPOSED):
        return ConvTransposeOp(module, x, out)
    if isinstance(module, Scale):
        return ScaleOp(module)
    if isinstance(module, _BATCHNORMS):
        return AffineOp(module, x)
    if isinstance(module, POOLS):
        return PoolOp(module)
    return IdentityOp()
