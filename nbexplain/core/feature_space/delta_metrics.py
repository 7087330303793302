"""What :func:`~nbexplain.core.feature_space.delta_projection.delta_curve` scores under projection, for every kind of output.

The curve needs to know what the output *is*; nbexplain does not guess it from shapes (a 3-class segmentation
of RGB images has the shape of its input, and comparing its logits with the image would be meaningless):

- ``"accuracy"`` (with ``labels=``): labels have the output's shape without its class axis — ``(N,)``
  for class scores ``(N, C)``, ``(N, T)`` for a sequence ``(N, T, V)`` (one label per position), ``(N, H, W)``
  for a dense map ``(N, C, H, W)`` (one per pixel) — and the accuracy is taken over every labelled entry;
  ``ignore_index`` marks entries without a label (padding, void pixels);
- ``"reconstruction"``: the mean squared error against the input (an autoencoder; the output must have the
  input's shape);
- ``"output_mse"``: the mean squared error against the unprojected output (any output);
- ``"agreement"``: the fraction of argmax predictions (along the class axis) equal to the unprojected ones — a
  label-free accuracy for classifiers, language models and segmentation nets;
- a function ``metric(projected, unprojected) -> float`` of the two outputs (on the CPU).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, Union

import torch

from .._base.targets import class_axis, describe_axes
from .._base.validation import check_choice, check_same_samples, check_tensor

__all__ = ["DELTA_METRICS", "MetricArg", "check_metric", "scorer"]

#: The named metrics of ``delta_curve(metric=...)``.
DELTA_METRICS = ("accuracy", "reconstruction", "output_mse", "agreement")

MetricArg = Union[None, str, Callable[[torch.Tensor, torch.Tensor], Any]]

_CHOOSE = (
    "pass labels= (accuracy), metric='reconstruction' for an autoencoder (MSE against the input), "
    "metric='output_mse' (MSE against the unprojected output), metric='agreement' (argmax predictions equal to "
    "the unprojected ones), or a function metric(projected, unprojected) -> float"
)


def check_metric(metric: Any, labels_arg: Any, x: torch.Tensor, ignore_index: Any) -> tuple[str | Callable[..., Any], torch.Tensor | None]:
    """Resolve ``metric=`` with ``labels=`` before any model call: the metric (name or function) and the labels."""
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral)):
        raise TypeError(f"`ignore_index` must be None or an int (e.g. -100), got {ignore_index!r}.")
    if metric is None:
        if labels_arg is None:
            raise ValueError(f"delta_curve needs to know what to score under projection: {_CHOOSE}.")
        metric = "accuracy"
    if not callable(metric):
        if not isinstance(metric, str):
            raise TypeError(f"`metric` must be None, one of {list(DELTA_METRICS)} or a function, got {metric!r}.")
        check_choice(metric, "metric", DELTA_METRICS)
    if metric == "accuracy":
        if labels_arg is None:
            raise ValueError("metric='accuracy' needs `labels=`, the true labels.")
        labels = check_tensor(labels_arg, "labels", min_ndim=1, dtype_kind="int").detach().cpu().long()
        check_same_samples(x, labels, ("inputs", "labels"))
        return metric, labels
    if labels_arg is not None:
        raise ValueError(
            f"`labels` are read only by metric='accuracy', not by metric={getattr(metric, '__name__', metric)!r}; "
            "leave one of them out."
        )
    if ignore_index is not None:
        raise ValueError("`ignore_index` marks unlabelled entries of `labels`; it applies only to metric='accuracy'.")
    return metric, None


def _check_labels(labels: torch.Tensor, plain: torch.Tensor, ignore_index: int | None) -> tuple[int, torch.Tensor]:
    """The output's class axis, and where the labels count; errors name the axes the labels must match."""
    shape = describe_axes(tuple(plain.shape))
    if plain.ndim < 2:
        raise ValueError(f"metric='accuracy' needs class scores, but the output is {shape}; use metric='output_mse'.")
    axis = class_axis(plain.ndim)
    want = tuple(plain.shape[:axis]) + tuple(plain.shape[axis + 1 :])
    if tuple(labels.shape) != want:
        per = {2: "one label per sample", 3: "one label per position", }.get(plain.ndim, "one label per position (pixel)")
        hint = ""
        if plain.ndim == 3:
            hint = (" (ignore_index= marks positions without one), or explain one position with `output=`, e.g. "
                    "output=lambda out: out[:, -1] for the last")
        elif plain.ndim >= 4:
            hint = " (ignore_index= marks pixels without one)"
        raise ValueError(
            f"`labels` has shape {tuple(labels.shape)}, but the output is {shape} with its classes on axis {axis}: "
            f"accuracy needs {per}, shape {want}{hint}."
        )
    n_classes = int(plain.shape[axis])
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != int(ignore_index)
    used = labels[valid]
    if used.numel() == 0:
        raise ValueError(f"Every entry of `labels` equals ignore_index={ignore_index}; nothing is labelled.")
    if int(used.min()) < 0 or int(used.max()) >= n_classes:
        raise ValueError(
            f"`labels` contains labels outside [0, {n_classes - 1}] (got min {int(used.min())}, max {int(used.max())}) "
            f"for an output {shape}"
            + ("; mark unlabelled entries with ignore_index=, e.g. ignore_index=-100." if ignore_index is None else ".")
        )
    return axis, valid


def scorer(
    metric: str | Callable[..., Any], x: torch.Tensor, plain: torch.Tensor, labels: torch.Tensor | None,
    ignore_index: int | None,
) -> Callable[[torch.Tensor], float]:
    """The score of one (projected) output, checked against the unprojected output ``plain`` (on the CPU)."""
    if callable(metric):
        def custom(out: torch.Tensor) -> float:
            value = metric(out, plain)
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise ValueError(f"`metric` returned a tensor of shape {tuple(value.shape)}; it must return one number.")
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"`metric` must return a number, got {type(value).__name__}.")
            return float(value)

        custom(plain)  # checked once, before the projections
        return custom
    if metric == "accuracy":
        assert labels is not None
        axis, valid = _check_labels(labels, plain, ignore_index)
        return lambda out: float((out.argmax(dim=axis) == labels)[valid].double().mean())
    if metric == "agreement":
        if plain.ndim < 2:
            raise ValueError(
                f"metric='agreement' compares argmax predictions, but the output is {describe_axes(tuple(plain.shape))}; "
                "use metric='output_mse'."
            )
        axis = class_axis(plain.ndim)
        ref = plain.argmax(dim=axis)
        return lambda out: float((out.argmax(dim=axis) == ref).double().mean())
    if metric == "reconstruction":
        if tuple(plain.shape) != tuple(x.shape):
            raise ValueError(
                f"metric='reconstruction' compares the output with the input, but the output has shape "
                f"{tuple(plain.shape)} and the input {tuple(x.shape)}; for a model that is not an autoencoder "
                "use labels= (accuracy), metric='output_mse' or metric='agreement'."
            )
        ref = x.detach().cpu().double()
        return lambda out: float((out.double() - ref).pow(2).mean())
    ref = plain.double()
    return lambda out: float((out.double() - ref).pow(2).mean())
