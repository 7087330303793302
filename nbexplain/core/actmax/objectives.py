"""Objectives of activation maximization: what an optimised image (or a real example) is scored by.

Each objective maps the captured, features-first layer outputs of a batch ``{layer: output}`` to one value per
image. They add and scale (``channel("conv2", 3) + 0.5 * neuron("fc1", 7)``), and a batch can optimise a
different unit per image, so several units are visualised by one optimisation.

- :class:`Objective` and its algebra; the constructors :func:`neuron`, :func:`channel`, :func:`class_logit`,
  :func:`direction` and :func:`diversity`.
- :func:`named_objective`: the objective a name (``objective="auto"``, ``"channel"``, …) stands for.
- :func:`image_count`, :func:`without_batch_terms`: how many images an objective names, and the part of it that
  is reported (batch terms such as diversity left out).
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from .._base.validation import check_tensor
from .units import as_units

__all__ = [
    "OBJECTIVES",
    "Objective",
    "neuron",
    "channel",
    "class_logit",
    "direction",
    "diversity",
    "named_objective",
    "image_count",
    "without_batch_terms",
]

#: Names accepted by ``maximize_activation(objective=...)``.
OBJECTIVES = ("auto", "neuron", "channel", "logit", "logit_minus_others", "direction")


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
        self.units = as_units(unit)

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
        self.positions = None if position is None else as_units(position, "position")

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


def neuron(layer: str, unit: int | Sequence[int], *, position: Sequence[int] | None = None) -> Objective:
    """One unit of a layer; for conv layers one position of a channel (the centre by default).

    ``unit`` may be a sequence with one index per image of the batch.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.objectives import neuron
    >>> neuron("fc", 2)({"fc": torch.arange(8.0).reshape(2, 4)})
    tensor([2., 6.])
    """
    return _Neuron(layer, unit, position)


def channel(layer: str, unit: int | Sequence[int]) -> Objective:
    """The mean of one channel of a conv layer over all positions (a neuron for dense layers).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.objectives import channel
    >>> channel("conv", [0, 1])({"conv": torch.arange(16.0).reshape(2, 2, 2, 2)})
    tensor([ 1.5000, 13.5000])
    """
    return _Channel(layer, unit)


def class_logit(
    layer: str, unit: int | Sequence[int], *, minus_others: bool = False,
    position: int | Sequence[int] | None = None,
) -> Objective:
    """A class logit (pre-softmax score, Simonyan et al. 2014); with ``minus_others`` minus the mean of
    the other logits, so the image must favour this class rather than raise every score.

    For a sequence output ``(N, T, V)`` (a language-model head) ``position`` names where: the logit of token
    ``unit`` at that position (negative positions count from the end; one per image allowed), and
    ``minus_others`` subtracts the mean of the other tokens at the same position.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.objectives import class_logit
    >>> class_logit("out", 0, minus_others=True)({"out": torch.tensor([[3.0, 1.0, 2.0]])})
    tensor([1.5000])
    >>> seq = torch.arange(6.0).reshape(1, 3, 2)              # (B, V=3, T=2), features first
    >>> class_logit("out", 2, position=-1)({"out": seq})
    tensor([5.])
    """
    return _Logit(layer, unit, minus_others, position)


def direction(layer: str, vector: torch.Tensor, *, cosine: bool = False) -> Objective:
    """Projection of a layer's features onto a direction (averaged over positions for conv layers).

    ``vector`` is ``(F,)`` or one direction per image ``(B, F)``; it is normalised to unit length. With
    ``cosine=True`` the cosine similarity is used instead of the dot product.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.actmax.objectives import direction
    >>> direction("fc", torch.tensor([1.0, 1.0]))({"fc": torch.tensor([[1.0, 1.0]])})
    tensor([1.4142])
    """
    return _Direction(layer, vector, cosine)


def diversity(layer: str, *, groups: Sequence[int] | None = None) -> Objective:
    """Olah et al.'s diversity term: minus the mean cosine similarity between the Gram matrices of a
    layer's activations of an image and of the other images of its group (the same unit).

    Add it with a weight: ``channel("conv2", 3) + 0.1 * diversity("conv1")``.

    Examples
    --------
    >>> import nbexplain as nx
    >>> objective = nx.objectives.channel("conv2", 3) + 0.1 * nx.objectives.diversity("conv1")
    >>> sorted(objective.layers)
    ['conv1', 'conv2']
    """
    return _Diversity(layer, groups)


def named_objective(
    kind: str, layer: str, units: torch.Tensor | None, vectors: torch.Tensor | None,
    shape: tuple[int, ...] | None = None,
) -> Objective:
    """The objective ``maximize_activation(objective=kind)`` / ``top_activating`` build for ``layer``: a
    direction from ``vectors``, else one of ``units`` (``"auto"``: the channel mean for outputs with positions,
    the unit itself for ``(N, F)`` outputs; ``shape`` is the layer's features-first output shape)."""
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


def image_count(objective: Objective) -> int:
    """How many images ``objective`` names: its largest number of units or directions (1 at least)."""
    n = 1
    for t in ([t for _, t in objective.terms] if isinstance(objective, _Sum) else [objective]):
        if isinstance(t, _Indexed):
            n = max(n, t.units.numel())
        if isinstance(t, _Direction):
            n = max(n, t.vectors.shape[0])
    return n


def without_batch_terms(objective: Objective) -> Objective:
    """``objective`` without its batch-only terms (diversity): what is reported and compared with real examples.

    Raises ``ValueError`` when nothing else is left.
    """
    if isinstance(objective, _Sum):
        kept = [(w, t) for w, t in objective.terms if not t.batch_only]
        if kept:
            return objective if len(kept) == len(objective.terms) else _Sum(kept)
    elif not objective.batch_only:
        return objective
    raise ValueError("The objective has only batch terms (diversity); add a unit objective.")
