""""How many units should each layer have?" — a width suggestion from a tracked training run.

The question the feature-space saturation work opens with (Shenk, Richter et al., 2020): a layer whose
features span only ``k(δ)`` of its ``width`` dimensions (explaining δ of their variance) has units it does not
use, and a layer whose features fill nearly all of its width may be short of units. :func:`suggest_widths`
reads a :class:`~.tracking.SaturationTracker`'s history and turns that into one width per layer, with the
reason written out, so the suggestion can be checked by retraining (the saturation lesson does).

The rule (every threshold is an argument):

* ``k`` is the largest ``k(δ)`` of the last ``window`` epochs (the dimension the layer came to use).
* ``k`` still rising over that window (by more than ``rising`` of the width): keep the width — the run has
  not settled; train longer before resizing.
* saturation ``k / width ≥ saturated``: the layer uses (nearly) all its units — suggest ``grow ×`` the width.
* otherwise: ``k × margin`` rounded up to a multiple of ``multiple`` (at least ``multiple``, at most the width).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .._base.validation import check_choice, check_fraction, check_positive_int
from .tracking import SaturationTracker

__all__ = ["WidthSuggestionResult", "suggest_widths"]


@dataclass
class WidthSuggestionResult:
    """Per-layer width suggestions from a tracked run (see :func:`suggest_widths`).

    Attributes
    ----------
    widths
        Layer → suggested width.
    current
        Layer → width during the run.
    intrinsic
        Layer → ``k(δ)`` the suggestion rests on (largest of the last epochs).
    reasons
        Layer → one sentence saying why.
    delta
        The δ of ``k(δ)``.
    """

    widths: dict[str, int]
    current: dict[str, int]
    intrinsic: dict[str, int]
    reasons: dict[str, str]
    delta: float
    settings: dict[str, float | int | str] = field(default_factory=dict)

    def table(self) -> str:
        """A plain-text table: layer, width, k(δ), suggestion, reason."""
        rows = [("layer", "width", f"k({self.delta:g})", "suggested", "why")]
        for name in self.widths:
            rows.append((name, str(self.current[name]), str(self.intrinsic[name]), str(self.widths[name]), self.reasons[name]))
        cols = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(r[i].ljust(cols[i]) for i in range(4)) + "  " + r[4] for r in rows)

    def __repr__(self) -> str:
        return f"WidthSuggestionResult({self.widths})"


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple - 1e-9) * multiple)


def suggest_widths(
    tracker: SaturationTracker,
    *,
    fixed: Sequence[str] | None = None,
    phase: str = "train",
    window: int = 3,
    margin: float = 1.25,
    multiple: int = 8,
    saturated: float = 0.9,
    grow: float = 2.0,
    rising: float = 0.1,
) -> WidthSuggestionResult:
    """Suggest a width for each tracked layer from its intrinsic dimension ``k(δ)`` over training.

    Parameters
    ----------
    tracker
        A :class:`~nbexplain.SaturationTracker` with at least one finished epoch (``end_epoch``).
    fixed
        Layers whose width is set by the task (the output layer): reported, never resized. Default: the last
        tracked layer.
    phase
        ``"train"`` (default) or ``"eval"`` statistics.
    window
        How many of the last epochs ``k`` is read from.
    margin
        Head-room on ``k`` when shrinking (1.25: 25% more units than the dimension used).
    multiple
        Round suggestions up to a multiple of this (hardware-friendly widths).
    saturated
        Saturation at or above which the layer is taken to be short of units.
    grow
        Factor applied to a saturated layer's width.
    rising
        ``k`` growing by more than this fraction of the width across the window counts as still rising.

    Returns
    -------
    WidthSuggestionResult
        ``.widths`` and ``.reasons`` per layer; ``.table()`` prints them.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> net = mlp(16, (64, 32))
    >>> basis = torch.randn(3, 16)                       # the inputs live on a 3-D subspace
    >>> with nx.SaturationTracker(net, delta=0.99) as tracker:
    ...     for epoch in range(3):
    ...         _ = net(torch.randn(256, 3) @ basis)
    ...         _ = tracker.end_epoch()
    >>> s = nx.suggest_widths(tracker)
    >>> s.current["fc1"], s.intrinsic["fc1"], s.widths["fc1"]
    (64, 3, 8)
    """
    if not isinstance(tracker, SaturationTracker):
        raise TypeError(f"`tracker` must be an nx.SaturationTracker, got {type(tracker).__name__}.")
    check_choice(phase, "phase", ("train", "eval"))
    window = check_positive_int(window, "window")
    multiple = check_positive_int(multiple, "multiple")
    saturated = check_fraction(saturated, "saturated")
    for name, value, low in (("margin", margin, 1.0), ("grow", grow, 1.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
            raise ValueError(f"`{name}` must be a number ≥ {low:g}, got {value!r}.")
    if not tracker.history:
        raise ValueError("`tracker` has no finished epoch: call tracker.end_epoch() at the end of each epoch first.")
    fixed_set = set([tracker.layers[-1]] if fixed is None else list(fixed))
    unknown = sorted(fixed_set - set(tracker.layers))
    if unknown:
        raise ValueError(f"`fixed` names layers the tracker does not track: {unknown}; it tracks {list(tracker.layers)}.")
    widths, current, intrinsic, reasons = {}, {}, {}, {}
    for name in tracker.layers:
        recs = [getattr(r, phase)[name] for r in tracker.history if name in getattr(r, phase)]
        if not recs:
            raise ValueError(
                f"Layer {name!r} has no {phase}-mode records: run {phase}-mode forward passes inside the tracker, "
                f"or pass phase={'eval' if phase == 'train' else 'train'!r}."
            )
        last = recs[-window:]
        width = last[-1].width
        k = max(r.intrinsic_dimension for r in last)
        sat = k / width
        current[name], intrinsic[name] = width, k
        if name in fixed_set:
            widths[name] = width
            reasons[name] = "fixed (set by the task)"
        elif len(last) > 1 and last[-1].intrinsic_dimension - last[0].intrinsic_dimension > rising * width:
            widths[name] = width
            reasons[name] = (
                f"k rose from {last[0].intrinsic_dimension} to {last[-1].intrinsic_dimension} over the last "
                f"{len(last)} epochs: not settled, train longer before resizing"
            )
        elif sat >= saturated:
            widths[name] = _round_up(width * grow, multiple)
            reasons[name] = f"saturation {sat:.0%} ≥ {saturated:.0%}: uses nearly every unit, try ×{grow:g}"
        else:
            widths[name] = min(width, max(multiple, _round_up(k * margin, multiple)))
            reasons[name] = f"uses {k} of {width} dimensions (saturation {sat:.0%}): k × {margin:g}, rounded to ×{multiple}"
    return WidthSuggestionResult(
        widths=widths,
        current=current,
        intrinsic=intrinsic,
        reasons=reasons,
        delta=tracker.delta,
        settings={"phase": phase, "window": window, "margin": margin, "multiple": multiple, "saturated": saturated,
                  "grow": grow, "rising": rising},
    )
