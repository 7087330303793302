"""The one result type every attribution method returns.

``gradient``, ``gradient_x_input``, ``smoothgrad``, ``noise_tunnel``, ``integrated_gradients``, ``lrp`` and
``rde`` all return an :class:`AttributionResult` (or a subclass with method-specific extras:
:class:`IntegratedGradientsResult`, :class:`~nbexplain.core.attribution.lrp.LRPResult`,
:class:`~nbexplain.core.attribution.rate_distortion.RDEResult`): the map is always ``.attribution``,
with the shape of the explained input; ``.output`` is the model output it explains, ``.target`` the explained
target per sample and ``.score`` that target's score. Code that consumes explanations (``continuity``,
ExplanationExplorer, the lessons) reads these fields and needs no adapter per method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .._base.targets import Target

__all__ = ["AttributionResult", "IntegratedGradientsResult", "resolved_target"]


@dataclass
class AttributionResult:
    """An attribution and what it explains.

    Attributes
    ----------
    attribution
        The map, with the shape of the explained input (for token ids: one value per token).
    target
        The explained target, as resolved: a LongTensor ``(N,)`` of class indices (also for ``target=None``,
        the predicted classes); for a ``(position, token)``, region or function target the bound
        :class:`~nbexplain.core._base.targets.Target`.
    output
        The selected model output at the input, ``(N, …)``, detached.
    score
        ``(N,)`` — the explained score per sample (the target's entry of ``output``, or the score function's
        value), float64.
    method
        The method's name, e.g. ``"gradient"``, ``"integrated_gradients"``, ``"lrp"``.
    settings
        The options the method ran with (for display and reproducibility).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Linear(3, 2, bias=False)
    >>> res = nx.gradient_x_input(net, torch.rand(4, 3))    # target=None: the predicted class
    >>> res.attribution.shape, res.target.shape, res.score.dtype
    (torch.Size([4, 3]), torch.Size([4]), torch.float64)
    >>> bool(torch.allclose(res.conservation, torch.ones(4, dtype=torch.float64)))   # a linear map: complete
    True
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


@dataclass(repr=False, kw_only=True)
class IntegratedGradientsResult(AttributionResult):
    """What :func:`~nbexplain.integrated_gradients` returns: an :class:`AttributionResult` plus completeness.

    Attributes
    ----------
    error
        ``(N,)`` float64 — the completeness error ``total − (score − baseline_score)``: the quadrature error of
        the path integral (raise ``steps`` until it is small).
    baseline_score
        ``(N,)`` float64 — the explained score at the baseline, ``f(x̄)``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> res = nx.integrated_gradients(net, torch.rand(4, 3), 1, steps=32)
    >>> bool(res.error.abs().max() < 1e-4)
    True
    """

    error: torch.Tensor
    baseline_score: torch.Tensor

    @property
    def conservation(self) -> torch.Tensor:
        """``(N,)`` — :attr:`total` ÷ ``(score − baseline_score)``, what integrated gradients distribute: 1 up to
        the quadrature error (completeness)."""
        return self.total / (self.score.double() - self.baseline_score.double())

    def __repr__(self) -> str:
        shape = "×".join(str(s) for s in self.attribution.shape)
        return (f"IntegratedGradientsResult(attribution={shape}, "
                f"max |error|={float(self.error.abs().max()) if self.error.numel() else 0.0:.3g})")


def resolved_target(t: Target) -> Any:
    """What ``.target`` holds: the class per row (LongTensor) for class targets, else the bound target."""
    return t.classes if t.kind == "index" else t
