"""Disentangler networks: families of networks of increasing non-linear depth (Ren et al., ICML 2021).

A disentangler of *order* ``l`` maps the model's input to the analysed layer's feature with exactly
``l`` non-linear (ReLU) layers between them; order 0 is an affine map. Both families here are built as

``input normalisation → linear stem → l residual blocks → linear head → feature (de)normalisation``

where each residual block is ``h ↦ h + V·ReLU(U·h + u)`` (one ReLU layer). The residual form makes the
warm start of the paper exact: :meth:`Disentangler.grow` copies the stem, the head and the first blocks
from the previous order and adds new blocks whose output weights ``V`` are zero, so the deeper network
starts as the *same function* as the shallower one, and the component it adds,
``c_l = g_l(x) − g_{l−1}(x)``, starts at zero and grows only where the extra depth helps.

* :class:`DenseDisentangler` — for vector inputs (or any input, flattened): linear layers.
* :class:`ConvDisentangler` — for image inputs ``(C, H, W)`` and spatial features ``(C', H', W')``:
  a strided convolution (stride ``s`` = the input/feature size ratio, kernel ``3s``: each position's
  patch and its neighbours) brings the input to the feature's resolution (or a 3×3 convolution
  followed by adaptive average pooling when the sizes do not divide), blocks use 3×3 convolutions,
  the head is a 1×1 convolution.

Both normalise their input with per-channel statistics and predict the standardised feature, whose
mean *per element* (per channel and position for spatial features) and std per unit (per channel for
spatial features; see :func:`feature_stats`) are stored as buffers; this keeps one learning-rate schedule
suitable for features of any scale. A conv feature's mean and scale depend on the position (zero padding,
borders), which a translation-equivariant network cannot produce; so the head ends in a per-element
``gain`` and ``offset`` that are not trained by gradient but set by least squares after every epoch
(:meth:`Disentangler.refit_affine`) — a fixed affine map per element, so it adds no non-linearity and leaves
every component's order unchanged (a deviation from the paper's plain networks, documented here). Measured
(deepest fit's test R², default schedule): ResNet-18 ``layer2`` on photo crops 0.73, the lesson's MNIST CNN
``conv2`` 0.91; a fixed per-element mean and std instead gave 0.73 / 0.80, per-channel statistics alone
made every order's R² negative on ResNet-18.

A user can supply their own family: any callable
``factory(order, previous) -> nn.Module`` (see :func:`nbexplain.decompose_complexity`).
"""

from __future__ import annotations

import abc
import copy
import math

import torch
from torch import nn

__all__ = [
    "Disentangler",
    "DenseDisentangler",
    "ConvDisentangler",
    "ResidualBlock",
    "make_disentangler",
    "feature_stats",
    "ElementwiseFit",
    "FAMILIES",
]

#: Names accepted by ``decompose_complexity(family=...)``.
FAMILIES = ("auto", "dense", "conv")


class ResidualBlock(nn.Module):
    """``h ↦ h + V·ReLU(U·h + u)``: one ReLU layer; ``V`` starts at zero (the block starts as identity)."""

    def __init__(self, width: int, conv: bool, kernel_size: int = 3) -> None:
        super().__init__()
        if conv:
            self.inner = nn.Conv2d(width, width, kernel_size, padding=kernel_size // 2)
            self.outer = nn.Conv2d(width, width, 1)
        else:
            self.inner = nn.Linear(width, width)
            self.outer = nn.Linear(width, width)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)
        self.act = nn.ReLU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return h + self.outer(self.act(self.inner(h)))


class Disentangler(nn.Module, abc.ABC):
    """Base class: normalise input → stem → ``order`` residual blocks → head → de-normalise.

    Attributes
    ----------
    order
        Number of ReLU layers (residual blocks).
    stem, blocks, head
        The linear stem, the ``nn.ModuleList`` of blocks and the linear head.
    """

    order: int

    def __init__(
        self,
        order: int,
        input_shape: tuple[int, ...],
        feature_shape: tuple[int, ...],
        width: int,
        x_mean: torch.Tensor,
        x_std: torch.Tensor,
        f_mean: torch.Tensor,
        f_std: torch.Tensor,
    ) -> None:
        super().__init__()
        self.order = int(order)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.feature_shape = tuple(int(s) for s in feature_shape)
        self.width = int(width)
        self.register_buffer("x_mean", x_mean.detach().clone().float())
        self.register_buffer("x_std", x_std.detach().clone().float())
        self.register_buffer("f_mean", f_mean.detach().clone().float())
        self.register_buffer("f_std", f_std.detach().clone().float())
        # per-element gain and offset of the head (standardised units), not trained by gradient but set by
        # least squares after every epoch (see refit_affine)
        self.register_buffer("gain", torch.ones(self.feature_shape))
        self.register_buffer("offset", torch.zeros(self.feature_shape))
        self.blocks = nn.ModuleList()

    @abc.abstractmethod
    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Map the standardised input ``(N, *input_shape)`` to the hidden representation."""

    @abc.abstractmethod
    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        """Map the hidden representation to the standardised feature ``(N, *feature_shape)``."""

    @abc.abstractmethod
    def _new_block(self) -> nn.Module:
        """A new residual block, one order deeper (``__init__`` and :meth:`grow` append it to ``self.blocks``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The order-``l`` fit ``g_l(x)`` of the feature, shaped ``(N, *feature_shape)``."""
        return self.finish(self.raw(x))

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output ``u(x)`` before the per-element affine map (standardised units)."""
        h = self._embed((x - self.x_mean) / self.x_std)
        for block in self.blocks:
            h = block(h)
        return self._readout(h)

    def finish(self, u: torch.Tensor) -> torch.Tensor:
        """``u ↦ (gain·u + offset)·f_std + f_mean``: from :meth:`raw` to the feature's units."""
        return (u * self.gain + self.offset) * self.f_std + self.f_mean

    def standardise(self, f: torch.Tensor) -> torch.Tensor:
        """The feature in the standardised units of :meth:`raw`: ``(f − f_mean) / f_std``."""
        return (f - self.f_mean) / self.f_std

    @torch.no_grad()
    def refit_affine(self, fit: ElementwiseFit) -> None:
        """Set ``gain`` and ``offset`` to the per-element least-squares fit of the standardised feature on
        :meth:`raw`, from the sums in ``fit``.

        Given the rest of the network this is the exact minimiser over the two buffers (a coordinate step of
        the distillation loss). Elements whose ``u`` barely varies (variance below 1e-3 of the mean; e.g. dead
        units) keep their gain and get only the offset; gains are kept within [0.2, 5] so that one epoch's
        statistics cannot swing the scale the network is being trained for.
        """
        gain, offset = fit.solve(self.gain.double())
        self.gain.copy_(gain.to(self.gain))
        self.offset.copy_(offset.to(self.offset))

    def grow(self, order: int, generator_seed: int | None = None) -> Disentangler:
        """A deeper disentangler that starts as exactly this function (warm start).

        The copy keeps the stem, head and existing blocks; ``order − self.order`` new blocks with zero
        output weights are appended (initialised under ``generator_seed`` when given).
        """
        if order < self.order:
            raise ValueError(f"Cannot grow an order-{self.order} disentangler to order {order}.")
        new = copy.deepcopy(self)
        with torch.random.fork_rng(devices=[]):
            if generator_seed is not None:
                torch.manual_seed(generator_seed)
            dev = next(self.parameters()).device
            for _ in range(order - self.order):
                new.blocks.append(new._new_block().to(dev))
        new.order = int(order)
        return new

    def extra_repr(self) -> str:
        return f"order={self.order}, width={self.width}"


class DenseDisentangler(Disentangler):
    """Dense disentangler: flatten the input, ``Linear`` stem, dense residual blocks, ``Linear`` head."""

    def __init__(self, order: int, input_shape, feature_shape, width, x_mean, x_std, f_mean, f_std) -> None:
        super().__init__(order, input_shape, feature_shape, width, x_mean, x_std, f_mean, f_std)
        d_in = math.prod(self.input_shape)
        d_out = math.prod(self.feature_shape)
        self.stem = nn.Linear(d_in, width)
        self.head = nn.Linear(width, d_out)
        for _ in range(self.order):
            self.blocks.append(self._new_block())

    def _new_block(self) -> nn.Module:
        return ResidualBlock(self.width, conv=False)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x.flatten(1))

    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h).reshape(h.shape[0], *self.feature_shape)


class ConvDisentangler(Disentangler):
    """Convolutional disentangler for image inputs ``(C, H, W)`` and spatial features ``(C', H', W')``."""

    def __init__(
        self, order: int, input_shape, feature_shape, width, x_mean, x_std, f_mean, f_std, kernel_size: int = 3
    ) -> None:
        super().__init__(order, input_shape, feature_shape, width, x_mean, x_std, f_mean, f_std)
        if len(self.input_shape) != 3 or len(self.feature_shape) != 3:
            raise ValueError(
                "The conv disentangler needs image inputs (C, H, W) and a spatial feature (C', H', W'); "
                f"got input {self.input_shape} and feature {self.feature_shape}. Use family='dense'."
            )
        self.kernel_size = int(kernel_size)
        c_in, h_in, w_in = self.input_shape
        c_out, h_out, w_out = self.feature_shape
        self.pool: nn.Module
        if h_in % h_out == 0 and w_in % w_out == 0 and h_in // h_out == w_in // w_out:
            s = h_in // h_out
            # kernel 3s, stride s, padding s: output side = side / s exactly, and each position sees its own
            # s×s patch and its 8 neighbours. A stem that saw only its own patch restricted the *linear* part
            # of the fit to local functions, so spatial context that a deep layer (ResNet-18's layer2 sees
            # the whole 32×32 image) carries linearly was pushed into higher orders or not fitted at all.
            self.stem = nn.Conv2d(c_in, width, 3 * s, stride=s, padding=s)
            self.pool = nn.Identity()
        else:
            self.stem = nn.Conv2d(c_in, width, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d((h_out, w_out))
        self.head = nn.Conv2d(width, c_out, 1)
        for _ in range(self.order):
            self.blocks.append(self._new_block())

    def _new_block(self) -> nn.Module:
        return ResidualBlock(self.width, conv=True, kernel_size=self.kernel_size)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stem(x))

    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)

    def extra_repr(self) -> str:
        return f"order={self.order}, width={self.width}, kernel_size={self.kernel_size}"


#: An input unit's scale is at least this fraction of the RMS std of all input units (see _channel_stats).
INPUT_STD_FLOOR = 0.1


def _channel_stats(t: torch.Tensor, spatial: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per channel (broadcastable to one sample), float64 accumulation (input normalisation).

    A std below ``INPUT_STD_FLOOR`` × the RMS std of all channels is raised to that floor. Without the floor,
    a pixel that is almost always 0 in the training images (an MNIST border pixel: std 5e-5) was divided by
    its tiny std, and a test image with ink there reached the network 3,000× amplified (test R² −24 on a
    ViT token layer whose training R² was 0.9).
    """
    t64 = t.double()
    if spatial and t.ndim >= 3:
        dims = [0] + list(range(2, t.ndim))
        mean = t64.mean(dim=dims, keepdim=True)[0]
        std = t64.std(dim=dims, keepdim=True)[0]
    else:
        mean = t64.mean(dim=0)
        std = t64.std(dim=0)
    rms = float(std.square().mean().sqrt())
    floor = INPUT_STD_FLOOR * rms if rms > 0 else 1.0
    return mean.float(), std.clamp_min(floor).float()


#: A feature unit's output scale is at least this fraction of the layer's RMS unit std (see feature_stats).
STD_FLOOR = 1e-2


def feature_stats(f: torch.Tensor, spatial: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The feature's de-normalisation: a mean per element and a std per unit, float64 accumulation.

    The mean is taken per element (shape ``f.shape[1:]``), also for spatial features: a conv feature's
    mean depends on the position (zero padding, image borders), often more than it varies between samples
    (on ResNet-18's ``layer2``, default width, the variance between samples is 12–19 % of the per-channel
    variance), and a translation-equivariant disentangler cannot produce such an offset. It is the starting
    point; the per-element ``gain`` and ``offset`` refitted during training correct it where the network
    does produce part of the position dependence from the input (centred digits). The std is per element for vector
    features and per channel for spatial ones (``spatial=True``; the std of the centred feature over
    samples and positions): a position-dependent *gain* is something an equivariant network would have to
    undo (on the lesson's MNIST CNN a per-element std lowered the deepest fit's R² from 0.84 to 0.80). A std
    below ``STD_FLOOR`` × the RMS std of all units (dead units) is raised to that floor, so a constant unit
    is reproduced by its mean and adds no noise of the layer's scale.
    """
    t64 = f.double()
    mean = t64.mean(dim=0)
    centred = t64 - mean
    if spatial and f.ndim >= 3:
        dims = [0] + list(range(2, f.ndim))
        std = centred.square().mean(dim=dims, keepdim=True)[0].sqrt()
    else:
        std = centred.square().mean(dim=0).sqrt()
    rms = float(std.square().mean().sqrt())
    floor = STD_FLOOR * rms if rms > 0 else 1.0
    return mean.float(), std.clamp_min(floor).float()


class ElementwiseFit:
    """Running sums for the per-element least squares ``t ≈ a·u + b`` (float64), over mini-batches.

    ``add(u, t)`` with ``u`` and ``t`` of shape ``(N, *feature_shape)``; ``solve(fallback_gain)`` returns
    ``(a, b)`` (see :meth:`Disentangler.refit_affine` for the guards).
    """

    GAIN_RANGE = (0.2, 5.0)

    def __init__(self) -> None:
        self.n = 0
        self.sums: list[torch.Tensor] | None = None

    @torch.no_grad()
    def add(self, u: torch.Tensor, t: torch.Tensor) -> None:
        """Accumulate one mini-batch."""
        u, t = u.detach().double(), t.detach().double()
        parts = [u.sum(0), (u * u).sum(0), t.sum(0), (u * t).sum(0)]
        self.sums = parts if self.sums is None else [a + b for a, b in zip(self.sums, parts, strict=True)]
        self.n += u.shape[0]

    def solve(self, fallback_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-element gain and offset (float64)."""
        if self.sums is None or self.n < 2:
            raise ValueError("ElementwiseFit needs at least 2 samples.")
        su, suu, st, sut = (v / self.n for v in self.sums)
        var = suu - su * su
        cov = sut - su * st
        ok = var > 1e-3 * var.mean().clamp_min(1e-30)
        gain = torch.where(ok, cov / var.clamp_min(1e-30), fallback_gain.to(var)).clamp(*self.GAIN_RANGE)
        return gain, st - gain * su


def make_disentangler(
    family: str,
    order: int,
    x: torch.Tensor,
    f: torch.Tensor,
    width: int,
    kernel_size: int = 3,
) -> Disentangler:
    """Build a fresh order-``order`` disentangler of ``family`` ('dense' or 'conv') for data like ``(x, f)``.

    ``x`` and ``f`` are (a sample of) the training inputs and features; they set the normalisation
    buffers and the shapes.
    """
    input_shape, feature_shape = tuple(x.shape[1:]), tuple(f.shape[1:])
    image = family == "conv"
    x_mean, x_std = _channel_stats(x, spatial=image)
    f_mean, f_std = feature_stats(f, spatial=image)
    if family == "conv":
        return ConvDisentangler(
            order, input_shape, feature_shape, width, x_mean, x_std, f_mean, f_std, kernel_size=kernel_size
        )
    return DenseDisentangler(order, input_shape, feature_shape, width, x_mean, x_std, f_mean, f_std)


def auto_family(input_shape: tuple[int, ...], feature_shape: tuple[int, ...]) -> str:
    """``'conv'`` for image inputs with a spatial feature, ``'dense'`` otherwise."""
    return "conv" if len(input_shape) == 3 and len(feature_shape) == 3 else "dense"
