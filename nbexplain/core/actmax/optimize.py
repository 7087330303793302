"""Activation maximization: what input does a unit respond to most?

Gradient ascent on the input (Erhan, Bengio, Courville & Vincent 2009) for a neuron, a channel, a class
logit or a direction in a layer's feature space, made readable with the recipe of Olah, Mordvintsev &
Schubert (2017, "Feature Visualization"): a decorrelated Fourier parameterisation, transformation
robustness (pad, jitter, scale, rotate), optional L2 / total-variation penalties, and a diversity term
for several images of one unit. :func:`top_activating` finds the real examples a unit responds to most.

Objectives are small objects: each maps the captured layer outputs of a batch to one value per image.
They add and scale (``channel("conv2", 3) + 0.5 * neuron("fc1", 7)``), and a whole batch can optimise a
different unit per image — several units are visualised by one optimisation.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn

from .feed import FixedInputs
from .._base.capturing import capture, features_first, prepared_batches
from .._base.hygiene import model_device, preserved
from .image_param import PARAMETERIZATIONS, RANGE_MODES, ImageParam, _check_range, image_param
from .._base.layer_select import resolve_modules
from .._base.model_inputs import InputKey, Inputs, call_model, resolve_wrt
from .._base.model_io import OutputArg, StopForward, check_output_arg, check_runnable, select_output
from .transforms import Compose, Transform, l2_penalty, standard_transforms, total_variation
from .._base.validation import check_choice, check_model, check_positive_int, check_tensor

__all__ = [
    "Objective",
    "neuron",
    "channel",
    "class_logit",
    "direction",
    "diversity",
    "maximize_activation",
    "ActivationMaximization",
    "top_activating",
    "TopActivating",
    "OBJECTIVES",
]

#: Names accepted by ``maximize_activation(objective=...)``.
OBJECTIVES = ("auto", "neuron", "channel", "logit", "logit_minus_others", "direction")

UnitArg = Union[int, Sequence[int], torch.Tensor, None]


# ----------------------------------------------------------------------------------------------------
# Objectives
# ----------------------------------------------------------------------------------------------------
class Objective(abc.ABC):
    """A quantity to maximise: ``objective(outputs) -> (B,)`` from ``{layer: output}`` of a batch.

    Combine with ``+``, ``-`` and scalar ``*``. :meth:`for_image` returns the objective of one image of
    the batch broadcast over ``n`` rows (used to score real data with the same objective).
    """

    #: Layers whose outputs the objective reads.
    layers: tuple[str, ...] = ()
    #: Terms that only make sense within an optimised batch (diversity) are excluded from data scores.
    batch_only: bool = False

    @abc.abstractmethod
    def __call__(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The objective of every image of the batch, ``(B,)``, from ``{layer: output}``."""

    @abc.abstractmethod
    def for_image(self, index: int, n: int) -> Objective | None:
        """This objective as image ``index`` of the batch sees it, for a batch of ``n`` other inputs."""

    def check(self, shapes: dict[str, tuple[int, ...]], batch: int) -> None:
        """Validate unit indices against the layer output shapes ``(1, …)`` of one input."""
        return  # a hook: objectives without unit indices have nothing to check

    def describe(self) -> str:
        """A short human-readable label (used in titles)."""
        return type(self).__name__

    # algebra
    def __add__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return _Sum([(1.0, self), (1.0, other)])

    def __sub__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return _Sum([(1.0, self), (-1.0, other)])

    def __mul__(self, weight: float) -> Objective:
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            return NotImplemented
        return _Sum([(float(weight), self)])

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return _Sum([(-1.0, self)])

    def __repr__(self) -> str:
        return f"<Objective {self.describe()}>"


class _Sum(Objective):
    def __init__(self, terms: Sequence[tuple[float, Objective]]) -> None:
        flat: list[tuple[float, Objective]] = []
        for w, t in terms:
            if isinstance(t, _Sum):
                flat.extend((w * w2, t2) for w2, t2 in t.terms)
            else:
                flat.append((w, t))
        self.terms = flat
        seen: list[str] = []
        for _, t in flat:
            seen.extend(n for n in t.layers if n not in seen)
        self.layers = tuple(seen)

    def __call__(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        total: torch.Tensor | None = None
        for w, t in self.terms:
            v = w * t(outputs)
            total = v if total is None else total + v
        assert total is not None
        return total

    def for_image(self, index: int, n: int) -> Objective | None:
        parts = [(w, t.for_image(index, n)) for w, t in self.terms if not t.batch_only]
        kept = [(w, t) for w, t in parts if t is not None]
        return _Sum(kept) if kept else None

    def check(self, shapes: dict[str, tuple[int, ...]], batch: int) -> None:
        for _, t in self.terms:
            t.check(shapes, batch)

    def describe(self) -> str:
        out = ""
        for w, t in self.terms:
            sign = "-" if w < 0 else "+"
            mag = abs(w)
            term = t.describe() if mag == 1 else f"{mag:g}·{t.describe()}"
            out = (f"-{term}" if sign == "-" else term) if not out else f"{out} {sign} {term}"
        return out


def _as_units(unit: int | Sequence[int] | torch.Tensor, argname: str = "unit") -> torch.Tensor:
    if isinstance(unit, bool):
        raise TypeError(f"`{argname}` must be an int or a sequence of ints, got a bool.")
    if isinstance(unit, numbers.Integral):
        return torch.tensor([int(unit)], dtype=torch.long)
    t = torch.as_tensor(unit)
    if t.is_floating_point() or t.ndim > 1 or t.numel() == 0:
        raise TypeError(f"`{argname}` must be an int or a non-empty 1-D sequence of ints, got {unit!r}.")
    return t.reshape(-1).long()


def _rows(units: torch.Tensor, batch: int) -> torch.Tensor:
    if units.numel() == 1:
        return units.expand(batch)
    if units.numel() != batch:
        raise ValueError(
            f"The objective names {units.numel()} units but the batch holds {batch} images; "
            "pass one unit per image or a single unit."
        )
    return units


def _output(outputs: dict[str, torch.Tensor], layer: str) -> torch.Tensor:
    try:
        return outputs[layer]
    except KeyError:
        raise RuntimeError(
            f"Layer {layer!r} did not run during the forward pass; choose a layer used by model.forward."
        ) from None


class _Indexed(Objective):
    """Shared machinery of neuron/channel/logit: a layer and one unit index per image."""

    kind = "unit"

    def __init__(self, layer: str, unit: int | Sequence[int] | torch.Tensor) -> None:
        if not isinstance(layer, str):
            raise TypeError(f"`layer` must be a layer name (str), got {layer!r}.")
        self.layer = layer
        self.layers = (layer,)
        self.units = _as_units(unit)

    def _n_units(self, shape: tuple[int, ...]) -> int:
        return int(shape[1]) if len(shape) >= 2 else 1

    def check(self, shapes: dict[str, tuple[int, ...]], batch: int) -> None:  # noqa: D102
        shape = shapes[self.layer]
        n = self._n_units(shape)
        bad = self.units[(self.units < 0) | (self.units >= n)]
        if bad.numel():
            raise ValueError(
                f"unit {int(bad[0])} is out of range for layer {self.layer!r}, which has {n} "
                f"{'channels' if len(shape) > 2 else 'units'} (valid: 0 … {n - 1}); output shape per "
                f"input is {tuple(shape[1:])}."
            )
        _rows(self.units, batch)

    def _select(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = _output(outputs, self.layer)
        rows = _rows(self.units.to(out.device), out.shape[0])
        return out, rows

    def for_image(self, index: int, n: int) -> Objective:  # noqa: D102
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        u = self.units if self.units.numel() == 1 else self.units[index : index + 1]
        clone.units = u.clone()
        return clone

    def describe(self) -> str:  # noqa: D102
        u = self.units.tolist()
        return f"{self.kind}({self.layer!r}, {u[0] if len(u) == 1 else u})"


class _Neuron(_Indexed):
    kind = "neuron"

    def __init__(self, layer: str, unit: Any, position: Sequence[int] | None = None) -> None:
        super().__init__(layer, unit)
        self.position = None if position is None else tuple(int(p) for p in position)

    def check(self, shapes: dict[str, tuple[int, ...]], batch: int) -> None:  # noqa: D102
        super().check(shapes, batch)
        spatial = shapes[self.layer][2:]
        if self.position is not None and (
            len(self.position) != len(spatial) or any(not 0 <= p < s for p, s in zip(self.position, spatial, strict=False))
        ):
            raise ValueError(
                f"`position` {self.position} does not fit layer {self.layer!r}'s spatial shape {tuple(spatial)}."
            )

    def __call__(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        out, rows = self._select(outputs)
        picked = out[torch.arange(out.shape[0], device=out.device), rows]
        if picked.ndim == 1:
            return picked
        if self.position is None:
            centre = tuple(s // 2 for s in picked.shape[1:])
        else:
            centre = self.position
        index: tuple[Any, ...] = (slice(None),) + tuple(centre)
        return picked[index]


class _Channel(_Indexed):
    kind = "channel"

    def __call__(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        out, rows = self._select(outputs)
        picked = out[torch.arange(out.shape[0], device=out.device), rows]
        return picked.reshape(picked.shape[0], -1).mean(dim=1)


class _Logit(_Indexed):
    kind = "logit"

    def __init__(self, layer: str, unit: Any, minus_others: bool = False, position: Any = None) -> None:
        super().__init__(layer, unit)
        self.minus_others = bool(minus_others)
        if self.minus_others:
            self.kind = "logit_minus_others"
        self.positions = None if position is None else _as_units(position, "position")

    def check(self, shapes: dict[str, tuple[int, ...]], batch: int) -> None:  # noqa: D102
        shape = shapes[self.layer]
        if self.positions is None and len(shape) == 3:
            raise ValueError(
                f"Layer {self.layer!r} gives {shape[1]} logits at each of {shape[2]} positions per input (a "
                f"sequence output); a class-logit objective needs one position: e.g. class_logit({self.layer!r}, "
                f"{int(self.units[0])}, position=-1) for the last, or unit=(position, token) with layer=None."
            )
        if self.positions is None and len(shape) != 2:
            raise ValueError(
                f"A class-logit objective needs a layer with (N, n_classes) outputs; layer {self.layer!r} "
                f"gives {tuple(shape[1:])} per input. Use the model's output layer."
            )
        if self.positions is not None:
            if len(shape) != 3:
                raise ValueError(
                    f"`position` names a position of a sequence output (N, T, V); layer {self.layer!r} gives "
                    f"{tuple(shape[1:])} per input (features first), which has {len(shape) - 2} position axes."
                )
            t_len = int(shape[2])
            bad = self.positions[(self.positions < -t_len) | (self.positions >= t_len)]
            if bad.numel():
                raise ValueError(
                    f"position {int(bad[0])} is outside the {t_len} positions of layer {self.layer!r} (valid: "
                    f"0 … {t_len - 1}, or -{t_len} … -1 counted from the end)."
                )
            _rows(self.positions, batch)
        if self.minus_others and shape[1] < 2:
            raise ValueError("`minus_others` needs at least two classes.")
        super().check(shapes, batch)

    def __call__(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        out, rows = self._select(outputs)
        ar = torch.arange(out.shape[0], device=out.device)
        if self.positions is not None:  # (B, V, T) features first: the logits at each image's position
            pos = _rows(self.positions.to(out.device), out.shape[0]) % out.shape[2]
            out = out[ar, :, pos]
        target = out[ar, rows]
        if not self.minus_others:
            return target
        others = (out.sum(dim=1) - target) / (out.shape[1] - 1)
        return target - others

    def for_image(self, index: int, n: int) -> Objective:  # noqa: D102
        clone = super().for_image(index, n)
        if self.positions is not None and self.positions.numel() > 1:
            clone.positions = self.positions[index : index + 1].clone()
        return clone

    def describe(self) -> str:  # noqa: D102
        if self.positions is None:
            return super().describe()
        k = max(self.units.numel(), self.positions.numel())
        pairs = list(zip(_rows(self.positions, k).tolist(), _rows(self.units, k).tolist(), strict=True))
        shown = pairs[0] if len(set(pairs)) == 1 else pairs
        return f"{self.kind}({self.layer!r}, (position, token)={shown})"


class _Direction(Objective):
    def __init__(self, layer: str, vector: torch.Tensor, cosine: bool = False) -> None:
        if not isinstance(layer, str):
            raise TypeError(f"`layer` must be a layer name (str), got {layer!r}.")
        v = check_tensor(vector, "direction", ndim=(1, 2), dtype_kind="float", finite=True).detach()
        if v.ndim == 1:
            v = v[None]
        norms = v.norm(dim=1)
        if bool((norms == 0).any()):
            raise ValueError("A `direction` vector is all zeros; pass a non-zero direction.")
        self.layer = layer
        self.layers = (layer,)
        self.vectors = (v / norms[:, None]).to(torch.float32)
        self.cosine = bool(cosine)

    def check(self, shapes: dict[str, tuple[int, ...]], batch: int) -> None:  # noqa: D102
        shape = shapes[self.layer]
        n = int(shape[1]) if len(shape) >= 2 else 1
        if self.vectors.shape[1] != n:
            raise ValueError(
                f"The direction has {self.vectors.shape[1]} entries but layer {self.layer!r} has {n} "
                "features (channels for conv layers)."
            )
        if self.vectors.shape[0] not in (1, batch):
            raise ValueError(f"Pass one direction or one per image ({batch}), got {self.vectors.shape[0]}.")

    def __call__(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        out = _output(outputs, self.layer)
        feats = out.reshape(out.shape[0], out.shape[1], -1)  # (B, F, positions)
        v = self.vectors.to(device=out.device, dtype=out.dtype)
        if v.shape[0] == 1:
            v = v.expand(out.shape[0], -1)
        dots = torch.einsum("bfp,bf->bp", feats, v)
        if self.cosine:
            dots = dots / feats.norm(dim=1).clamp_min(1e-8)
        return dots.mean(dim=1)

    def for_image(self, index: int, n: int) -> Objective:  # noqa: D102
        clone = object.__new__(_Direction)
        clone.__dict__.update(self.__dict__)
        clone.vectors = self.vectors if self.vectors.shape[0] == 1 else self.vectors[index : index + 1]
        return clone

    def describe(self) -> str:  # noqa: D102
        return f"direction({self.layer!r})"


class _Diversity(Objective):
    batch_only = True

    def __init__(self, layer: str, groups: Sequence[int] | torch.Tensor | None = None) -> None:
        self.layer = layer
        self.layers = (layer,)
        self.groups = None if groups is None else torch.as_tensor(groups).long().reshape(-1)

    def check(self, shapes: dict[str, tuple[int, ...]], batch: int) -> None:  # noqa: D102
        if self.groups is not None and self.groups.numel() != batch:
            raise ValueError(f"`groups` has {self.groups.numel()} entries for a batch of {batch} images.")

    def __call__(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: D102
        out = _output(outputs, self.layer)
        b = out.shape[0]
        f = out.reshape(b, out.shape[1], -1)
        gram = torch.bmm(f, f.transpose(1, 2)).reshape(b, -1)  # style of each image (Gatys et al.)
        gram = gram / gram.norm(dim=1, keepdim=True).clamp_min(1e-8)
        sim = gram @ gram.T
        groups = torch.zeros(b, dtype=torch.long) if self.groups is None else self.groups
        same = (groups[:, None] == groups[None, :]).to(out.device)
        same.fill_diagonal_(False)
        count = same.sum(dim=1).clamp_min(1)
        # Negative mean cosine similarity to the other images of the same unit.
        return -(sim * same).sum(dim=1) / count

    def for_image(self, index: int, n: int) -> None:  # noqa: D102
        return None

    def describe(self) -> str:  # noqa: D102
        return f"diversity({self.layer!r})"


def neuron(layer: str, unit: int | Sequence[int], position: Sequence[int] | None = None) -> Objective:
    """One unit of a layer; for conv layers one position of a channel (the centre by default).

    ``unit`` may be a sequence with one index per image of the batch.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.optimize import neuron
    >>> neuron("fc", 2)({"fc": torch.arange(8.0).reshape(2, 4)})
    tensor([2., 6.])
    """
    return _Neuron(layer, unit, position)


def channel(layer: str, unit: int | Sequence[int]) -> Objective:
    """The mean of one channel of a conv layer over all positions (a neuron for dense layers).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.optimize import channel
    >>> channel("conv", [0, 1])({"conv": torch.arange(16.0).reshape(2, 2, 2, 2)})
    tensor([ 1.5000, 13.5000])
    """
    return _Channel(layer, unit)


def class_logit(
    layer: str, unit: int | Sequence[int], minus_others: bool = False, position: int | Sequence[int] | None = None
) -> Objective:
    """A class logit (pre-softmax score, Simonyan et al. 2014); with ``minus_others`` minus the mean of
    the other logits, so the image must favour this class rather than raise every score.

    For a sequence output ``(N, T, V)`` (a language-model head) ``position`` names where: the logit of token
    ``unit`` at that position (negative positions count from the end; one per image allowed), and
    ``minus_others`` subtracts the mean of the other tokens at the same position.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.optimize import class_logit
    >>> class_logit("out", 0, minus_others=True)({"out": torch.tensor([[3.0, 1.0, 2.0]])})
    tensor([1.5000])
    >>> seq = torch.arange(6.0).reshape(1, 3, 2)              # (B, V=3, T=2), features first
    >>> class_logit("out", 2, position=-1)({"out": seq})
    tensor([5.])
    """
    return _Logit(layer, unit, minus_others, position)


def direction(layer: str, vector: torch.Tensor, cosine: bool = False) -> Objective:
    """Projection of a layer's features onto a direction (averaged over positions for conv layers).

    ``vector`` is ``(F,)`` or one direction per image ``(B, F)``; it is normalised to unit length. With
    ``cosine=True`` the cosine similarity is used instead of the dot product.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.optimize import direction
    >>> direction("fc", torch.tensor([1.0, 1.0]))({"fc": torch.tensor([[1.0, 1.0]])})
    tensor([1.4142])
    """
    return _Direction(layer, vector, cosine)


def diversity(layer: str, groups: Sequence[int] | None = None) -> Objective:
    """Olah et al.'s diversity term: minus the mean cosine similarity between the Gram matrices of a
    layer's activations of an image and of the other images of its group (the same unit).

    Add it with a weight: ``channel("conv2", 3) + 0.1 * diversity("conv1")``.
    """
    return _Diversity(layer, groups)


def _sequence_units(unit: Any, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``unit`` on a sequence output head (features first ``(1, V, T)``): ``(position, token)`` pairs, as
    (positions, tokens). A bare unit would not say which position, so it is refused naming the axes."""
    vocab, t_len = int(shape[1]), int(shape[2])

    def is_int(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    pairs: Any = None
    if isinstance(unit, tuple) and len(unit) == 2 and all(is_int(v) for v in unit):
        pairs = [unit]
    elif isinstance(unit, (list, tuple)) and unit and all(
        isinstance(p, tuple) and len(p) == 2 and all(is_int(v) for v in p) for p in unit
    ):
        pairs = list(unit)
    elif isinstance(unit, torch.Tensor) and unit.ndim == 2 and unit.shape[1] == 2 and not unit.is_floating_point():
        pairs = [tuple(int(v) for v in row) for row in unit.tolist()]
    if pairs is None:
        example = min(40, vocab - 1)
        hint = ""
        if isinstance(unit, list) and len(unit) == 2 and all(is_int(v) for v in unit):
            hint = f" (a list is several units; write one pair as a tuple, unit={tuple(unit)})"
        raise ValueError(
            f"The model's output is a sequence, (N, T={t_len}, V={vocab}) — positions × tokens — so `unit` must "
            f"name a (position, token) pair, e.g. unit=(-1, {example}) for token {example} at the last position, "
            f"or a list of pairs, one image each; got {unit!r}{hint}. objective='channel' maximises a token's "
            "logit averaged over all positions instead."
        )
    positions = torch.tensor([int(p) for p, _ in pairs], dtype=torch.long)
    tokens = torch.tensor([int(t) for _, t in pairs], dtype=torch.long)
    bad = tokens[(tokens < 0) | (tokens >= vocab)]
    if bad.numel():
        raise ValueError(
            f"token {int(bad[0])} is outside the vocabulary axis (V={vocab}) of the model's output "
            f"(N, T={t_len}, V={vocab}); tokens are 0 … {vocab - 1}."
        )
    return positions, tokens


def _named_objective(
    kind: str, layer: str, units: torch.Tensor | None, vectors: torch.Tensor | None, module: nn.Module,
    shape: tuple[int, ...] | None = None,
) -> Objective:
    if kind == "direction":
        assert vectors is not None
        return _Direction(layer, vectors)
    assert units is not None
    if kind == "auto":
        # channel means for outputs with positions (N, C, *spatial) — conv, pool, activations after
        # them — and the unit itself for (N, F) outputs.
        spatial = len(shape) >= 3 if shape is not None else False
        kind = "channel" if spatial else "neuron"
    if kind == "neuron":
        return _Neuron(layer, units)
    if kind == "channel":
        return _Channel(layer, units)
    return _Logit(layer, units, minus_others=kind == "logit_minus_others")


# ----------------------------------------------------------------------------------------------------
# Forward passes with hooks registered once per call
# ----------------------------------------------------------------------------------------------------
class _Runner:
    """Runs the model and collects the objective's layers; hooks live exactly as long as the context."""

    def __init__(self, model: nn.Module, layers: Sequence[str], early_exit: bool) -> None:
        self.model = model
        self.layer_names = list(layers)
        self.modules = resolve_modules(model, self.layer_names, "layer")
        self.early_exit = early_exit
        self._stop_handle: Any = None
        self.forward_calls = 0

    def __enter__(self) -> _Runner:
        self._capture = capture(self.model, self.layer_names, detach=False)
        self.outputs = self._capture.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stop_handle is not None:
            self._stop_handle.remove()
            self._stop_handle = None
        self._capture.__exit__(*exc)

    def arm_early_exit(self, order: list[str]) -> None:
        """After a first pass: stop at the last needed layer when each ran exactly once."""
        if not self.early_exit or self._stop_handle is not None:
            return
        if any(len(self.outputs.calls.get(n, [])) != 1 for n in self.layer_names):
            return
        last = self.modules[order[-1]]

        def stop(_m: nn.Module, _i: Any, _o: Any) -> None:
            raise StopForward

        self._stop_handle = last.register_forward_hook(stop)

    def __call__(self, batch: Inputs) -> dict[str, torch.Tensor]:
        self.outputs.clear()
        self.forward_calls += 1
        try:
            call_model(self.model, batch)
        except StopForward:
            pass
        missing = [n for n in self.layer_names if n not in self.outputs]
        if missing:
            raise RuntimeError(
                f"Layer(s) {missing} did not run during the forward pass; choose layers used by model.forward."
            )
        return features_first(self.outputs, self.outputs.layouts)


def _probe(model: nn.Module, layers: Sequence[str], input_shape: tuple[int, ...], device: torch.device,
           dtype: torch.dtype, feed: FixedInputs | None = None,
           layouts: dict[str, str] | None = None) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """One forward pass on a blank input (with the fixed other inputs of ``feed``): output shapes of the layers
    (features first), and their order of execution; ``layouts``, when given, receives each layer's resolved
    layout."""
    order: list[str] = []
    with torch.no_grad(), capture(model, list(layers)) as out:
        x = torch.zeros((1, *input_shape), device=device, dtype=dtype)
        batch = feed(x) if feed is not None else Inputs(x)
        try:
            call_model(model, batch)
        except Exception as err:  # the user's model rejected the shape: say so clearly
            how = "" if batch.single else f" (called as {batch.describe()})"
            raise ValueError(
                f"The model rejected an input of shape {tuple(x.shape)} built from "
                f"input_shape={tuple(input_shape)} (one input's shape, without the batch dimension){how}: "
                f"{type(err).__name__}: {err}"
            ) from err
        for name in layers:
            if name not in out:
                raise ValueError(
                    f"Layer {name!r} did not run during the forward pass; choose a layer used by model.forward."
                )
        for name in out.calls:
            order.append(name)
    # capture fills dicts in hook order: re-derive the execution order from insertion order
    moved = features_first({n: out[n] for n in layers}, out.layouts)
    if layouts is not None:
        layouts.update(out.layouts)
    return {n: tuple(moved[n].shape) for n in layers}, order


class _SelectedOutput(nn.Module):
    """The user's model with its selected output exposed as a layer (``"output"``), for ``layer=None``."""

    LAYER = "output"

    def __init__(self, model: nn.Module, output: OutputArg) -> None:
        super().__init__()
        self.model = model
        self.selector = output
        self.output = nn.Identity()

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:  # noqa: D102
        return self.output(select_output(self.model(*args, **kwargs), self.selector))


# ----------------------------------------------------------------------------------------------------
# maximize_activation
# ----------------------------------------------------------------------------------------------------
@dataclass
class ActivationMaximization:
    """Result of :func:`maximize_activation`.

    Attributes
    ----------
    images
        ``(B, *input_shape)`` optimised inputs (CPU, float32); ``B = len(units) · images_per_unit``,
        grouped by unit.
    trajectory
        ``(steps, B)`` objective value of every image at every step (on the transformed images that
        the step optimised; penalties not included).
    final
        ``(B,)`` objective of the final images, untransformed, in eval mode.
    percentile
        ``(B,)`` percent of the reference examples whose objective lies below ``final`` (NaN without
        ``reference``). Above 99 means the image drives the unit harder than 99% of real data.
    units
        The unit of every image (``None`` for custom objectives and directions); ``(position, token)`` pairs
        for a sequence output head.
    layer
        The layer (``None`` for custom objectives spanning several layers).
    objective
        A readable description of what was maximised.
    reference_values
        ``(B, N)`` the objective on every reference example (``None`` without reference).
    settings
        The parameters of the run (steps, lr, param, penalties, transforms, seed).
    """

    images: torch.Tensor
    trajectory: torch.Tensor
    final: torch.Tensor
    percentile: torch.Tensor
    units: list[int] | list[tuple[int, int]] | None
    layer: str | None
    objective: str
    reference_values: torch.Tensor | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        pct = self.percentile
        p = "n/a" if bool(torch.isnan(pct).all()) else ", ".join(f"{v:.1f}" for v in pct.tolist()[:6])
        return (
            f"ActivationMaximization({self.objective}, images={tuple(self.images.shape)}, "
            f"steps={self.trajectory.shape[0]}, final={[round(v, 3) for v in self.final.tolist()[:6]]}, "
            f"percentile=[{p}])"
        )


def _check_number(value: Any, argname: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise TypeError(f"`{argname}` must be a finite number, got {value!r}.")
    if float(value) < minimum:
        raise ValueError(f"`{argname}` must be ≥ {minimum}, got {value}.")
    return float(value)


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    if isinstance(input_shape, torch.Size):
        input_shape = tuple(input_shape)
    if not isinstance(input_shape, (tuple, list)) or not input_shape or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in input_shape
    ):
        raise ValueError(
            f"`input_shape` must be one input's shape without the batch dimension, e.g. (1, 28, 28), got "
            f"{input_shape!r}."
        )
    return tuple(int(s) for s in input_shape)


def _all_units(model: nn.Module, layer: str, input_shape: tuple[int, ...], device: torch.device,
               dtype: torch.dtype, feed: FixedInputs | None = None) -> torch.Tensor:
    shapes, _ = _probe(model, [layer], input_shape, device, dtype, feed)
    shape = shapes[layer]
    return torch.arange(int(shape[1]) if len(shape) >= 2 else 1)


def _build_transforms(transforms: Any, input_shape: tuple[int, ...]) -> Callable[..., torch.Tensor] | None:
    if transforms is None or transforms is False:
        return None
    if len(input_shape) != 3:
        if transforms == "standard" or transforms is True:
            return None  # image transforms only apply to (C, H, W) inputs
        raise ValueError("Image `transforms` need input_shape (C, H, W); pass transforms=None for other inputs.")
    if transforms == "standard" or transforms is True:
        return standard_transforms(input_shape[1], input_shape[2])
    if isinstance(transforms, (list, tuple)):
        return Compose(list(transforms))
    if isinstance(transforms, Transform) or callable(transforms):
        return transforms
    raise TypeError(
        f"`transforms` must be 'standard', None, a list of transforms or a callable t(x, generator), "
        f"got {transforms!r}."
    )


def _score_data(model: nn.Module, objective: Objective, batch: int, data: Any, batch_size: int) -> torch.Tensor:
    """The objective of each of the ``batch`` optimised images, evaluated on every data example: (B, N)."""
    per_image = [objective.for_image(i, 0) for i in range(batch)]
    if any(o is None for o in per_image):
        raise ValueError("The objective has no per-example value (only batch terms); pass reference=None.")
    rows: list[list[torch.Tensor]] = [[] for _ in range(batch)]
    with torch.no_grad(), capture(model, list(objective.layers)) as out:
        for inputs in prepared_batches(data, batch_size, model, argname="reference"):
            out.clear()
            call_model(model, inputs, "reference")
            got = features_first(dict(out), out.layouts)
            for i, o in enumerate(per_image):
                assert o is not None
                rows[i].append(o(got).detach().to("cpu", torch.float64))
    if not rows[0]:
        raise ValueError("`reference` is empty: it yielded no batches.")
    return torch.stack([torch.cat(r) for r in rows])


def maximize_activation(
    model: nn.Module,
    layer: str | None,
    unit: UnitArg,
    input_shape: Sequence[int],
    value_range: Sequence[float] | None = None,
    *,
    steps: int = 256,
    seed: int | None = 0,
    objective: str | Objective = "auto",
    lr: float = 0.1,
    param: str = "fourier",
    range_mode: str = "sigmoid",
    decorrelate: bool = True,
    color_matrix: torch.Tensor | None = None,
    init_std: float = 0.01,
    transforms: Any = "standard",
    l2: float = 0.0,
    tv: float = 0.0,
    diversity: float = 0.0,
    diversity_layer: str | None = None,
    images_per_unit: int = 1,
    reference: Any = None,
    batch_size: int = 256,
    early_exit: bool = True,
    progress: bool | None = None,
    output: OutputArg = None,
    inputs: Any = None,
    wrt: InputKey | None = None,
) -> ActivationMaximization:
    """Find inputs that maximally activate a unit (Erhan et al. 2009; Olah et al. 2017).

    Parameters
    ----------
    model
        Any ``torch.nn.Module``; run in eval mode, left exactly as found.
    layer
        The layer name (see :func:`nbexplain.layers`); ignored when ``objective`` is an
        :class:`Objective`. ``None`` with a named objective maximises the model's own output (the tensor
        ``output=`` selects, for models that return a tuple or dict), e.g. ``objective="logit"``.
    unit
        A unit/channel/class index, a list of them (one optimisation, one image per unit), ``None`` for
        every unit of the layer, or for ``objective="direction"`` a direction tensor ``(F,)`` / ``(n, F)``.
        With ``layer=None`` on a model whose output is a sequence ``(N, T, V)`` (a language-model head, read
        features-last): a ``(position, token)`` pair, e.g. ``(-1, 40)`` (negative positions count from the
        end), or a list of pairs — the logit of that token at that position; a bare index is refused, as
        it does not say which position (``objective="channel"`` averages a token's logit over positions).
    input_shape
        One input's shape without the batch dimension, e.g. ``(1, 28, 28)``.
    value_range
        ``(low, high)`` of the data (e.g. ``(0, 1)``); every input value stays inside. ``None``: unbounded.
    steps
        Gradient-ascent steps (Adam).
    seed
        Seeds initialisation and random transforms (deterministic on CPU); ``None`` for fresh randomness.
    objective
        ``"auto"`` (channel mean for outputs with spatial positions, the unit itself for ``(N, F)``
        outputs), ``"neuron"``, ``"channel"``,
        ``"logit"``, ``"logit_minus_others"``, ``"direction"``, or an :class:`Objective` built from
        :func:`neuron`, :func:`channel`, :func:`class_logit`, :func:`direction`, :func:`diversity`
        (combinable with ``+`` and weights).
    lr
        Adam learning rate.
    param
        ``"fourier"`` (decorrelated, default) or ``"pixel"``.
    range_mode
        ``"sigmoid"`` or ``"clamp"`` — how ``value_range`` is enforced.
    decorrelate, color_matrix
        Colour decorrelation for 3-channel inputs (ImageNet statistics unless a matrix is given).
    init_std
        Standard deviation of the random initial parameters.
    transforms
        ``"standard"`` (pad, jitter, scale, rotate, jitter — sized to the image), ``None``, a list of
        :mod:`nbexplain.core.actmax.transforms` transforms, or any callable ``t(x, generator)``.
    l2, tv
        Weights of the L2 penalty (around the middle of ``value_range``) and of total variation.
    diversity
        Weight of the diversity term (used with ``images_per_unit > 1``): minus the cosine similarity
        of the Gram matrices of ``diversity_layer``'s activations between images of the same unit.
    diversity_layer
        Where diversity is measured; defaults to ``layer`` (a post-ReLU layer often works best).
    images_per_unit
        Images per unit; with ``diversity > 0`` they are pushed apart.
    reference
        Real inputs (tensor or iterable of batches) to compare the final activation with: fills
        ``.percentile`` and ``.reference_values``. For a model with several inputs, every input of the real
        examples: a tuple/dict/``nx.Inputs`` batch or a DataLoader of them (see :func:`nbexplain.activations`).
    batch_size
        Batch size for scoring ``reference``.
    early_exit
        Stop each forward pass once the objective's layers have run (saves the rest of the network).
    progress
        Progress bar: ``True``, ``False``, or ``None`` (appears only if the run takes over 2 s).
    output
        With ``layer=None``: which part of the model's output to maximise (an index, a key or attribute
        name, or a callable), as in every other entry point.
    inputs, wrt
        For a model with several inputs: one input (``wrt``, a position or keyword name; default the first)
        is optimised, the others are held fixed. ``inputs`` holds all of them as a tuple (positional), a dict
        (keyword) or ``nx.Inputs``, with ``None`` (or a placeholder tensor, whose values are not used) at
        ``wrt``: ``inputs=(None, mask), wrt=0`` calls ``model(image, mask)``. A fixed tensor has one row
        (shared by every image) or one row per image (``len(units) · images_per_unit``, grouped by unit).

    Returns
    -------
    ActivationMaximization
        ``.images``, ``.trajectory``, ``.final``, ``.percentile`` and more.

    Raises
    ------
    ValueError
        Unknown layer, unit out of range, an input shape the model rejects, bad settings.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(4 * 6 * 6, 3))
    >>> res = nx.maximize_activation(net, "0", [0, 1], (1, 8, 8), value_range=(0, 1), steps=20,
    ...                              progress=False)
    >>> res.images.shape, res.trajectory.shape
    (torch.Size([2, 1, 8, 8]), torch.Size([20, 2]))
    >>> bool(res.images.min() >= 0 and res.images.max() <= 1)
    True

    A model with a second input held fixed (here a gate, one row shared by every image):

    >>> class Gated(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = torch.nn.Linear(4, 3)
    ...     def forward(self, x, gate):
    ...         return self.fc(x) * gate
    >>> res = nx.maximize_activation(Gated(), None, 1, (4,), (-1, 1), steps=10, objective="logit",
    ...                              inputs=(None, torch.tensor([[1.0, 1.0, 1.0]])), progress=False)
    >>> res.images.shape
    torch.Size([1, 4])
    """
    from tqdm.auto import tqdm

    model = check_runnable(check_model(model, what="nx.maximize_activation"))
    check_output_arg(output)
    if layer is None and not isinstance(objective, Objective):
        model, layer = _SelectedOutput(model, output), _SelectedOutput.LAYER
    elif output is not None:
        raise ValueError(
            "`output=` selects part of the model's output, which is maximised with layer=None; "
            f"with layer={layer!r} leave `output` out."
        )
    input_shape = _check_input_shape(input_shape)
    feed = FixedInputs(inputs, wrt, input_shape, model)
    vr = _check_range(value_range)
    steps = check_positive_int(steps, "steps")
    images_per_unit = check_positive_int(images_per_unit, "images_per_unit")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = _check_number(lr, "lr")
    l2 = _check_number(l2, "l2")
    tv = _check_number(tv, "tv")
    diversity_w = _check_number(diversity, "diversity")
    check_choice(param, "param", PARAMETERIZATIONS)
    check_choice(range_mode, "range_mode", RANGE_MODES)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"`seed` must be an int or None, got {seed!r}.")
    if len(input_shape) != 3 and param == "fourier":
        param = "pixel"  # the Fourier basis is two-dimensional; vectors are optimised directly
    device = model_device(model)
    from .._base.hygiene import model_dtype

    dtype = model_dtype(model)

    with preserved(model):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)

        # ---- the objective -----------------------------------------------------------------------
        units_list: list[Any] | None = None
        if isinstance(objective, Objective):
            obj = objective
            objective_layers = list(obj.layers)
            resolve_modules(model, objective_layers, "objective layers")
            shapes, order = _probe(model, objective_layers, input_shape, device, dtype, feed)
            n_base = 1
            for t in ([t for _, t in obj.terms] if isinstance(obj, _Sum) else [obj]):
                if isinstance(t, _Indexed):
                    n_base = max(n_base, t.units.numel())
                if isinstance(t, _Direction):
                    n_base = max(n_base, t.vectors.shape[0])
            group_layer = objective_layers[0]
            obj_layer = objective_layers[0] if len(objective_layers) == 1 else None
        else:
            check_choice(objective, "objective", OBJECTIVES)
            if layer is None:
                raise ValueError("`layer` is required (or pass an Objective as `objective=`).")
            module = resolve_modules(model, [layer], "layer")[layer]
            layouts: dict[str, str] = {}
            shapes, order = _probe(model, [layer], input_shape, device, dtype, feed, layouts)
            # The model's own output read as a sequence (N, T, V) — 3-D and not channels-first: its units are
            # (position, token) pairs, as `target=` in the attribution methods.
            seq_head = (
                isinstance(model, _SelectedOutput) and len(shapes[layer]) == 3
                and layouts.get(layer) != "channels_first"
            )
            vectors = units = positions = None
            if objective == "direction":
                if not isinstance(unit, torch.Tensor) and not hasattr(unit, "shape"):
                    raise TypeError("With objective='direction', pass the direction tensor as `unit`.")
                vectors = check_tensor(unit, "unit", ndim=(1, 2), dtype_kind="float", finite=True)
                n_base = 1 if vectors.ndim == 1 else vectors.shape[0]
            elif seq_head and objective != "channel":
                positions, units = _sequence_units(unit, shapes[layer])
                n_base = units.numel()
                units_list = list(zip(positions.tolist(), units.tolist(), strict=True))
            else:
                units = _all_units(model, layer, input_shape, device, dtype, feed) if unit is None else _as_units(unit)
                n_base = units.numel()
                units_list = units.tolist()
            if images_per_unit > 1:
                if units is not None:
                    units = units.repeat_interleave(images_per_unit)
                if positions is not None:
                    positions = positions.repeat_interleave(images_per_unit)
                if vectors is not None:
                    vectors = (vectors[None] if vectors.ndim == 1 else vectors).repeat_interleave(images_per_unit, 0)
            if positions is not None:
                obj = _Logit(layer, units, minus_others=objective == "logit_minus_others", position=positions)
            else:
                obj = _named_objective(objective, layer, units, vectors, module, shapes[layer])
            group_layer = layer
            obj_layer = layer
        batch = n_base * images_per_unit
        if diversity_w > 0:
            if diversity_layer is not None:
                resolve_modules(model, [diversity_layer], "diversity_layer")
                group_layer = diversity_layer
                shapes.update(_probe(model, [diversity_layer], input_shape, device, dtype, feed)[0])
                order = _probe(model, sorted({*obj.layers, diversity_layer}), input_shape, device, dtype, feed)[1]
            groups = torch.arange(n_base).repeat_interleave(images_per_unit)
            obj_opt: Objective = obj + diversity_w * _Diversity(group_layer, groups)
        else:
            obj_opt = obj
        # What is reported (trajectory, final, percentile) leaves out batch-only terms such as diversity,
        # so that the final value is comparable with the same objective on real examples.
        if isinstance(obj, _Sum):
            kept = [(w, t) for w, t in obj.terms if not t.batch_only]
            if not kept:
                raise ValueError("The objective has only batch terms (diversity); add a unit objective.")
            obj = obj if len(kept) == len(obj.terms) else _Sum(kept)
        elif obj.batch_only:
            raise ValueError("The objective has only batch terms (diversity); add a unit objective.")
        obj_opt.check(shapes, batch)
        feed.check_batch(batch)

        # ---- parameterisation and transforms -----------------------------------------------------
        gen = torch.Generator()
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
        if len(input_shape) == 3:
            img_shape = input_shape
        else:
            img_shape = (1, 1, int(torch.tensor(input_shape).prod()))
        param_mod: ImageParam = image_param(
            param, img_shape, batch, vr, range_mode=range_mode, decorrelate=decorrelate,
            color_matrix=color_matrix, init_std=init_std, generator=gen,
        ).to(device)
        tfm = _build_transforms(transforms, input_shape)
        centre = 0.0 if vr is None else 0.5 * (vr[0] + vr[1])
        opt = torch.optim.Adam(param_mod.parameters(), lr=lr)
        trajectory = torch.empty(steps, batch, dtype=torch.float32)

        show = progress is None or bool(progress)
        bar = tqdm(total=steps, desc=f"maximize {obj.describe()}"[:60], disable=not show,
                   delay=2.0 if progress is None else 0.0, leave=False)
        with _Runner(model, list(obj_opt.layers), early_exit) as run:
            try:
                for step in range(steps):
                    img = param_mod().to(dtype)
                    x = tfm(img, gen) if tfm is not None else img
                    outputs = run(feed(x.reshape(batch, *input_shape)))
                    if step == 0:
                        run.arm_early_exit([n for n in order if n in obj_opt.layers])
                    value = obj(outputs)
                    total = obj_opt(outputs) if obj_opt is not obj else value  # obj_opt adds batch terms
                    loss = -total.sum()
                    if l2 > 0:
                        loss = loss + l2 * l2_penalty(img, centre).sum()
                    if tv > 0 and len(input_shape) == 3:
                        loss = loss + tv * total_variation(img).sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    param_mod.project_()
                    trajectory[step] = value.detach().to("cpu", torch.float32)
                    bar.update(1)
            finally:
                bar.close()
            with torch.no_grad():
                final_images = param_mod().to(dtype).reshape(batch, *input_shape)
                final = obj(run(feed(final_images))).to("cpu", torch.float32)

        ref_values = None
        percentile = torch.full((batch,), float("nan"))
        if reference is not None:
            ref_values = _score_data(model, obj, batch, reference, batch_size)
            percentile = (ref_values < final.to(torch.float64)[:, None]).to(torch.float64).mean(dim=1) * 100
            percentile = percentile.to(torch.float32)

    image_units = None
    if units_list is not None:
        image_units = [u for u in units_list for _ in range(images_per_unit)]
    settings = dict(
        steps=steps, lr=lr, param=param, range_mode=range_mode, value_range=vr, l2=l2, tv=tv,
        diversity=diversity_w, images_per_unit=images_per_unit, seed=seed,
        transforms=repr(tfm) if tfm is not None else None,
    )
    return ActivationMaximization(
        images=final_images.detach().to("cpu", torch.float32),
        trajectory=trajectory,
        final=final,
        percentile=percentile,
        units=image_units,
        layer=obj_layer,
        objective=obj.describe(),
        reference_values=None if ref_values is None else ref_values.to(torch.float32),
        settings=settings,
    )


# ----------------------------------------------------------------------------------------------------
# top_activating
# ----------------------------------------------------------------------------------------------------
@dataclass
class TopActivating:
    """Result of :func:`top_activating`.

    Attributes
    ----------
    indices
        ``(U, k)`` indices into the dataset of each unit's top examples, strongest first.
    values
        ``(U, k)`` their objective values.
    images
        ``(U, k, *input_shape)`` the examples themselves (for a model with several inputs: the input chosen
        by ``wrt``, by default the first; ``indices`` find the others in the data).
    maps
        ``(U, k, h, w)`` the unit's activation map over each example (the channel's spatial map for conv
        layers); ``None`` for layers without spatial positions.
    units
        The units, in order.
    layer
        The layer.
    """

    indices: torch.Tensor
    values: torch.Tensor
    images: torch.Tensor
    maps: torch.Tensor | None
    units: list[int]
    layer: str

    def __repr__(self) -> str:
        return (
            f"TopActivating(layer={self.layer!r}, units={self.units[:8]}{'…' if len(self.units) > 8 else ''}, "
            f"k={self.indices.shape[1]}, maps={None if self.maps is None else tuple(self.maps.shape[2:])})"
        )


def top_activating(
    model: nn.Module,
    layer: str,
    unit: int | Sequence[int] | None,
    data: Any,
    k: int = 9,
    *,
    objective: str = "auto",
    batch_size: int = 256,
    progress: bool | None = None,
    wrt: InputKey | None = None,
) -> TopActivating:
    """The real examples that drive a unit hardest, with the unit's activation map over each.

    Parameters
    ----------
    model
        Any ``torch.nn.Module`` (run in eval mode; left as found).
    layer
        Layer name.
    unit
        A unit/channel index, a list, or ``None`` for every unit of the layer.
    data
        Inputs: a tensor ``(N, …)``, or an iterable of batches / ``(x, y)`` pairs (the model gets ``x``).
        For a model with several inputs: a tuple ``(x, mask)`` (positional), a dict (keyword) or
        ``nx.Inputs`` is one batch, and a DataLoader yields ``((x, mask), y)`` (see
        :func:`nbexplain.activations`).
    k
        Examples per unit.
    objective
        How an example is scored, as in :func:`maximize_activation`: ``"auto"`` (channel mean for conv
        layers, the unit itself for dense ones), ``"neuron"``, ``"channel"``, ``"logit"``,
        ``"logit_minus_others"``.
    batch_size
        Chunk size when ``data`` is one batch (a tensor, tuple, dict or ``nx.Inputs``).
    progress
        Progress bar (``None``: only if it takes over 2 s).
    wrt
        With several inputs: which one ``.images`` holds (a position or keyword name); default the first
        tensor input (the first positional one, else the first keyword one).

    Returns
    -------
    TopActivating

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> top = nx.top_activating(net, "1", [0, 2], torch.rand(50, 1, 8, 8), k=5)
    >>> top.indices.shape, top.maps.shape
    (torch.Size([2, 5]), torch.Size([2, 5, 6, 6]))
    """
    from tqdm.auto import tqdm

    model = check_runnable(check_model(model, what="nx.top_activating"))
    k = check_positive_int(k, "k")
    batch_size = check_positive_int(batch_size, "batch_size")
    check_choice(objective, "objective", [o for o in OBJECTIVES if o != "direction"])
    module = resolve_modules(model, [layer], "layer")[layer]

    with preserved(model):
        model.eval()
        best_vals: torch.Tensor | None = None  # (U, ≤k) running top-k, strongest first
        best_idx: torch.Tensor | None = None
        best_x: torch.Tensor | None = None  # (U, ≤k, *input)
        best_maps: torch.Tensor | None = None  # (U, ≤k, h, w)
        obj: Objective | None = None
        units: torch.Tensor | None = None
        seen = 0
        with torch.no_grad(), capture(model, [layer]) as out:
            bar = tqdm(desc=f"top examples {layer}", disable=progress is False,
                       delay=2.0 if progress is None else 0.0, leave=False, unit="batch")
            try:
                for batch in prepared_batches(data, batch_size, model, argname="data"):
                    key = resolve_wrt(batch, wrt)
                    x = batch[key]
                    out.clear()
                    try:
                        call_model(model, batch, "data")
                    except Exception as err:
                        what = f"of shape {tuple(x.shape)}" if batch.single else batch.describe()
                        raise ValueError(
                            f"The model rejected a `data` batch {what}: {type(err).__name__}: {err}"
                        ) from err
                    if layer not in out:
                        raise ValueError(f"Layer {layer!r} did not run during the forward pass.")
                    o = features_first({layer: out[layer]}, out.layouts)[layer]
                    n = x.shape[0]
                    if obj is None:
                        n_units = int(o.shape[1]) if o.ndim >= 2 else 1
                        units = torch.arange(n_units) if unit is None else _as_units(unit)
                        proto = _named_objective(objective, layer, units, None, module, (1, *o.shape[1:]))
                        proto.check({layer: (1, *o.shape[1:])}, units.numel())
                        obj = proto
                    assert units is not None
                    per_unit = []
                    for i in range(units.numel()):
                        o_i = obj.for_image(i, n)
                        assert o_i is not None
                        per_unit.append(o_i({layer: o}).to("cpu", torch.float64))
                    vals = torch.stack(per_unit)  # (U, n)
                    idx = torch.arange(seen, seen + n).expand(units.numel(), n)
                    xs = x.to("cpu", torch.float32).unsqueeze(0).expand(units.numel(), *x.shape)
                    mp = None
                    if o.ndim >= 3:
                        mp = o[:, units.to(o.device)].to("cpu", torch.float32).transpose(0, 1)  # (U, n, …)
                    if best_vals is not None:
                        assert best_idx is not None and best_x is not None
                        vals = torch.cat([best_vals, vals], dim=1)
                        idx = torch.cat([best_idx, idx], dim=1)
                        xs = torch.cat([best_x, xs], dim=1)
                        if mp is not None and best_maps is not None:
                            mp = torch.cat([best_maps, mp], dim=1)
                    kk = min(k, vals.shape[1])
                    best_vals, pos = vals.topk(kk, dim=1)
                    ar = torch.arange(units.numel())[:, None]
                    best_idx = idx[ar, pos]
                    best_x = xs[ar, pos]
                    best_maps = None if mp is None else mp[ar, pos]
                    seen += n
                    bar.update(1)
            finally:
                bar.close()
        if obj is None or units is None or best_vals is None:
            raise ValueError("`data` is empty: it yielded no batches.")
    assert best_idx is not None and best_x is not None
    indices, values, images, top_maps = best_idx, best_vals, best_x, best_maps
    return TopActivating(
        indices=indices,
        values=values.to(torch.float32),
        images=images,
        maps=top_maps,
        units=units.tolist(),
        layer=layer,
    )
