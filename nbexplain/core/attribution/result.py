"""The one result type every attribution method returns.

``gradient``, ``gradient_x_input``, ``smoothgrad``, ``integrated_gradients``, ``lrp`` and ``rde`` all return an
:class:`AttributionResult` (or a subclass with method-specific extras): the map is always ``.attribution``,
with the shape of the explained input; ``.output`` is the model output it explains, ``.target`` the explained
target per sample and ``.score`` that target's score. Code that consumes explanations (``continuity``,
ExplanationExplorer, the lessons) reads these fields and needs no adapter per method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["AttributionResult"]


@dataclass
class AttributionResult:
    """An attribution and what it explains.

    Attributes
    ----------
    attribution
        The map, with the shape of the explained input (for token ids: one value per token).
    target
        The explained target per sample, as resolved (e.g. a LongTensor ``(N,)`` of class indices).
    output
        The selected model output at the input, ``(N, …)``, detached.
    score
        ``(N,)`` — the explained score per sample (the target's entry of ``output``, or the score function's
        value), float64.
    method
        The method's name, e.g. ``"gradient"``, ``"integrated_gradients"``, ``"lrp"``.
    settings
        The options the method ran with (for display and reproducibility).
    """

    attribution: torch.Tensor
    target: Any
    output: torch.Tensor
    score: torch.Tensor
    method: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> torch.Tensor:
        """``(N,)`` — the sum of the attribution per sample, float64."""
        return self.attribution.detach().double().reshape(self.attribution.shape[0], -1).sum(1)

    @property
    def conservation(self) -> torch.Tensor:
        """``(N,)`` — :attr:`total` ÷ :attr:`score`: 1 where the method is complete (gradient×input on a
        bias-free ReLU net, integrated gradients, LRP-ε→0); meaningless for plain gradients and masks."""
        return self.total / self.score.double()

    def __repr__(self) -> str:
        shape = "×".join(str(s) for s in self.attribution.shape)
        return f"{type(self).__name__}(method={self.method!r}, attribution={shape})"
