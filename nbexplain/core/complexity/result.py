"""The result of :func:`~nbexplain.core.complexity.decompose.decompose_complexity`: the trained
disentanglers, the per-order metrics, and evaluation on new inputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn

from .._base.layer_select import resolve_modules
from .._base.machinery import batch_slices
from .._base.model_inputs import InputKey, Inputs, as_inputs
from .._base.validation import check_positive_int
from .checks import _check_inputs, _model_inputs
from .metrics import _consistency_inputs, _from_rows
from .shapley import ShapleyResult
from .task import _layer_outputs

__all__ = ["ComplexityResult"]


@dataclass
class ComplexityResult:
    """The result of :func:`decompose_complexity`.

    Attributes
    ----------
    model
        The analysed model (a reference, not a copy).
    layer
        The analysed layer's name.
    orders
        The orders, increasing; every per-order metric is indexed like this tuple.
    disentanglers
        ``{order: Disentangler}``, in eval mode, on the model's device.
    family
        ``"dense"``, ``"conv"`` or ``"custom"``.
    feature_shape, input_shape
        Shape of one sample's feature and of its input the disentanglers read.
    energy, reliability, effectiveness, overfitting
        float64 tensors of shape ``(len(orders),)`` (see the module notes for the exact definitions).
    fit_quality, fit_quality_train
        R² of each cumulative fit ``g_l`` on the test / training samples used for metrics.
    reliability_feature
        Linear consistency (R²) of the whole feature with the reference network's feature.
    history
        ``{order: {"loss": [...], "test_loss": [...], "lr": [...], "seconds": float, "epoch_seconds": [...],
        "epoch_cpu_seconds": [...]}}`` — the training curves and timings. The loss is the MSE divided by
        the feature's mean per-element variance over the training samples, so it reads ``1 − R²``.
    losses
        Task losses: ``"model_train"``/``"model_test"`` (the unmodified network),
        ``"empty_train"``/``"empty_test"`` (head sees the mean feature), ``"full_train"``/``"full_test"``
        (head sees the deepest fit).
    shapley
        The :class:`~nbexplain.core.complexity.shapley.ShapleyResult` of the game ``S ↦ (L_train(S), L_test(S))``.
    reference_model, reference_layer
        The network used for reliability (``None`` when reliability was switched off).
    consistency_maps
        ``{order: (weight, bias)}`` float64 affine maps from the reference feature to each component.
    constant_units
        How many feature elements (one per channel and position for spatial features) do not vary over
        the training samples (variance ≤ 1e-12 × the mean element variance; e.g. dead ReLU units). They
        weigh nothing in the distillation loss and are reproduced by the disentanglers' per-element mean.
    input_key
        For a model with several inputs: the input the disentanglers read (``wrt``; a position or keyword
        name). ``0`` for a model with one input.
    """

    model: nn.Module
    layer: str
    orders: tuple[int, ...]
    disentanglers: dict[int, nn.Module]
    family: str
    feature_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    energy: torch.Tensor
    reliability: torch.Tensor
    effectiveness: torch.Tensor
    overfitting: torch.Tensor
    fit_quality: torch.Tensor
    fit_quality_train: torch.Tensor
    reliability_feature: float
    history: dict[int, dict[str, Any]]
    losses: dict[str, float]
    shapley: ShapleyResult | None
    reference_model: nn.Module | None = None
    reference_layer: str | None = None
    consistency_maps: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    constant_units: int = 0
    input_key: InputKey = 0

    # -- evaluation on new inputs ----------------------------------------------------------------

    def _device(self) -> torch.device:
        for d in self.disentanglers.values():
            for p in d.parameters():
                return p.device
        return torch.device("cpu")

    def _explained(self, x: Any) -> torch.Tensor:
        """The input the disentanglers read: ``x`` itself, or ``x[input_key]`` of several inputs."""
        if isinstance(x, (tuple, list, Mapping, Inputs)):
            batch = as_inputs(tuple(x) if isinstance(x, list) else x, "x")
            if self.input_key not in batch:
                raise ValueError(
                    f"`x` is {batch.describe()}, without the input {self.input_key!r} the disentanglers read."
                )
            label = "x" if batch.single else f"x[{self.input_key!r}]"
            return _check_inputs(batch[self.input_key], label, self.input_shape)
        return _check_inputs(x, "x", self.input_shape)

    @torch.no_grad()
    def reconstructions(self, x: Any, batch_size: int = 256) -> torch.Tensor:
        """The cumulative fits ``g_l(x)`` for every order: ``(len(orders), N, *feature_shape)`` on the CPU.

        ``x`` is the input the disentanglers read; for a model with several inputs, that input alone or all
        of them (a tuple, dict or ``nx.Inputs``, of which ``input_key`` is used).

        Examples
        --------
        >>> res.reconstructions(x_test[:4]).shape  # doctest: +SKIP
        torch.Size([4, 4, 32, 14, 14])
        """
        x = self._explained(x)
        batch_size = check_positive_int(batch_size, "batch_size")
        dev = self._device()
        out = torch.empty(len(self.orders), x.shape[0], *self.feature_shape)
        for sl in batch_slices(x.shape[0], batch_size):
            xb = x[sl].to(device=dev, dtype=torch.float32)
            for i, o in enumerate(self.orders):
                d = self.disentanglers[o]
                was = d.training
                d.eval()
                out[i, sl] = d(xb).float().cpu()
                d.train(was)
        return out

    def components(self, x: Any, batch_size: int = 256) -> torch.Tensor:
        """The components ``c_l(x)`` of every order: ``(len(orders), N, *feature_shape)`` on the CPU.

        They sum (over the first axis) to the deepest fit ``g_L(x)``.

        Examples
        --------
        >>> c = res.components(x_test[:4])          # doctest: +SKIP
        >>> torch.allclose(c.sum(0), res.reconstructions(x_test[:4])[-1], atol=1e-5)  # doctest: +SKIP
        True
        """
        g = self.reconstructions(x, batch_size)
        c = g.clone()
        c[1:] -= g[:-1]
        return c

    @torch.no_grad()
    def features(self, x: Any, batch_size: int = 256) -> torch.Tensor:
        """The analysed layer's actual feature ``f(x)`` (model in eval mode, left as found); for a model with
        several inputs ``x`` holds all of them (a tuple, dict or ``nx.Inputs``)."""
        x, _ = _model_inputs(x, "x", self.input_key, self.input_shape)
        module = resolve_modules(self.model, self.layer, "layer")[self.layer]
        return _layer_outputs(self.model, module, x, batch_size, self.layer)

    @torch.no_grad()
    def reliable_components(self, x: Any, batch_size: int = 256) -> torch.Tensor:
        """The part of each component predicted from the reference network (``(L, N, *feature_shape)``);
        for a model with several inputs ``x`` holds all of them.

        Raises ``RuntimeError`` when the decomposition was run with ``reference_model=False``.
        """
        if self.reference_model is None or not self.consistency_maps:
            raise RuntimeError("This decomposition has no reference network (reference_model=False).")
        x, _ = _model_inputs(x, "x", self.input_key, self.input_shape)
        ref_mod = resolve_modules(self.reference_model, self.reference_layer, "reference_layer")
        fb = _layer_outputs(self.reference_model, ref_mod[self.reference_layer], x, batch_size, self.reference_layer)
        xb = _consistency_inputs(fb, self.feature_shape)
        out = []
        for o in self.orders:
            w, b = self.consistency_maps[o]
            pred = xb @ w + b
            out.append(_from_rows(pred.float(), x.n, self.feature_shape))
        return torch.stack(out)

    def to(self, device: Union[str, torch.device]) -> ComplexityResult:
        """Move the disentanglers to ``device`` (in place; returns self)."""
        for d in self.disentanglers.values():
            d.to(device)
        return self

    # -- presentation ------------------------------------------------------------------------------

    def table(self) -> list[dict[str, float]]:
        """One dict per order with every metric (handy for ``pandas.DataFrame(res.table())``)."""
        rows = []
        for i, o in enumerate(self.orders):
            rows.append(
                {
                    "order": o,
                    "energy": float(self.energy[i]),
                    "fit_quality": float(self.fit_quality[i]),
                    "reliability": float(self.reliability[i]),
                    "effectiveness": float(self.effectiveness[i]),
                    "overfitting": float(self.overfitting[i]),
                }
            )
        return rows

    def summary(self) -> str:
        """A plain-text table of the per-order metrics."""
        head = f"{'order':>5} {'energy':>8} {'fit R²':>8} {'reliab.':>8} {'effect.':>9} {'overfit.':>9}"
        lines = [f"complexity decomposition of {self.layer!r} ({self.family} disentanglers)", head]
        for r in self.table():
            lines.append(
                f"{r['order']:>5} {r['energy']:>8.3f} {r['fit_quality']:>8.3f} {r['reliability']:>8.3f} "
                f"{r['effectiveness']:>9.4f} {r['overfitting']:>9.4f}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        e = ", ".join(f"{float(v):.3f}" for v in self.energy)
        return (
            f"ComplexityResult(layer={self.layer!r}, orders={self.orders}, family={self.family!r}, "
            f"energy=[{e}], fit_quality={float(self.fit_quality[-1]):.3f})"
        )

