"""Relevance flow: LRP as a layer-by-layer decomposition, from the output back to the input.

LRP hands the explained score backwards one layer at a time (Montavon, Samek et al., "Layer-wise relevance
propagation: an overview", 2019; deep Taylor decomposition, 2017): at every layer the relevance is a map over
that layer's units whose sum would equal the score if nothing were lost. Biases, ε stabilisers and αβ's
negative share absorb or add some of it at each layer. :func:`relevance_flow` returns every step of that
hand-over — the map at each layer's output and the running sum — so the conservation figure can be read layer
by layer (and the :class:`~nbexplain.widgets.RelevanceFlow` view steps through it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..._base.model_inputs import InputKey
from ..._base.model_io import OutputArg
from ..._base.targets import TargetArg
from ..space import AttributionInputs
from .composites import Composite, Key
from .entry import lrp
from .rules import Rule

__all__ = ["RelevanceFlowResult", "relevance_flow"]


@dataclass
class RelevanceFlowResult:
    """Relevance at every layer of one LRP pass, output first (see :func:`relevance_flow`).

    Attributes
    ----------
    steps
        Names of the steps, output first: ``"output"``, each layer (its *output* relevance) from the last layer
        to the first, then ``"input"``.
    relevance
        Step → relevance map ``(N, …)`` (the layer's output shape; the input's shape for ``"input"``; for
        ``"output"`` the relevance put on the model output).
    totals
        float64 ``(N, n_steps)`` — Σ relevance per sample at each step.
    score
        float64 ``(N,)`` — the explained score (the target's logit).
    rules
        Layer → the rule that took relevance from its output to its input.
    absorbed
        float64 ``(N, n_steps − 1)`` — ``totals[:, i] − totals[:, i + 1]``: what the step from ``steps[i]`` to
        ``steps[i + 1]`` absorbed (biases, ε; negative where relevance was added, e.g. αβ's β share).
    """

    steps: list[str]
    relevance: dict[str, torch.Tensor]
    totals: torch.Tensor
    score: torch.Tensor
    rules: dict[str, Rule] = field(default_factory=dict)
    target: Any = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def absorbed(self) -> torch.Tensor:
        """What each step absorbed (see the class docstring)."""
        return self.totals[:, :-1] - self.totals[:, 1:]

    @property
    def conservation(self) -> torch.Tensor:
        """``(N, n_steps)`` — each step's total ÷ the relevance put on the output (1 = nothing lost so far)."""
        return self.totals / self.totals[:, :1]

    def __repr__(self) -> str:
        c = self.conservation[:, -1]
        return (
            f"RelevanceFlowResult(steps={len(self.steps)}, n={self.totals.shape[0]}, "
            f"input/output={float(c.median()):.4f} median)"
        )


def relevance_flow(
    model: torch.nn.Module,
    inputs: AttributionInputs,
    target: TargetArg | None = None,
    composite: str | Composite | Rule | Mapping[Key, Rule] = "epsilon_plus_flat",
    *,
    wrt: InputKey | None = None,
    output: OutputArg = None,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
    **options: Any,
) -> RelevanceFlowResult:
    """LRP's relevance at every layer, from the output back to the input, with its running sum.

    Parameters
    ----------
    model, inputs, target, composite, wrt, output, batch_size, eval_mode, progress
        As in :func:`nbexplain.lrp` (``target=None``: the predicted class).
    **options
        Further :func:`nbexplain.lrp` options (``canonizers``, ``strict``, ``init``, a named composite's
        parameters such as ``epsilon``, ``low``/``high``).

    Returns
    -------
    RelevanceFlowResult
        ``.steps`` (output first), ``.relevance[step]``, ``.totals`` and ``.absorbed`` per step.

    Notes
    -----
    Two LRP passes: one to learn which layers carry rules (and their order), one that keeps every layer's
    relevance. Meant for a handful of inputs (a teaching view), not for data sets. In a chain of layers every
    step's total is the relevance that crossed that cut of the network; where the network branches (residual
    blocks), a layer inside a branch holds that branch's share only.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    >>> flow = nx.relevance_flow(net, torch.rand(2, 4), composite="epsilon")
    >>> flow.steps
    ['output', '2', '1', '0', 'input']
    >>> flow.relevance["2"].shape, flow.totals.shape
    (torch.Size([2, 3]), torch.Size([2, 5]))
    """
    if "layers" in options:
        raise TypeError("relevance_flow() keeps every layer with a rule; it takes no `layers=` (use nx.lrp for some).")
    common = dict(wrt=wrt, output=output, batch_size=batch_size, eval_mode=eval_mode, progress=progress, **options)
    first = lrp(model, inputs, target, composite, **common)
    modules = dict(model.named_modules())
    names = [n for n in first.rules if n in modules]  # not the canonizers' pseudo-layers (<residual sum>)
    res = lrp(model, inputs, first.target if target is None else target, composite, layers=names, **common)
    steps = ["output", *[n for n in reversed(names) if n in res.layers], "input"]
    relevance: dict[str, torch.Tensor] = {"output": res.output_relevance.detach()}
    for n in steps[1:-1]:
        relevance[n] = res.layers[n]
    relevance["input"] = res.attribution
    totals = torch.stack(
        [relevance[s].detach().double().reshape(relevance[s].shape[0], -1).sum(1) for s in steps], dim=1
    )
    return RelevanceFlowResult(
        steps=steps,
        relevance=relevance,
        totals=totals,
        score=res.score,
        rules={n: res.rules[n] for n in steps[1:-1] if n in res.rules},
        target=res.target,
        settings=dict(res.settings),
    )
