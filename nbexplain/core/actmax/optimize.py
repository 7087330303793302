"""Activation maximization by gradient ascent: what input does a unit respond to most?

Gradient ascent on the input (Erhan, Bengio, Courville & Vincent 2009) for a neuron, a channel, a class
logit or a direction in a layer's feature space, made readable with the recipe of Olah, Mordvintsev &
Schubert (2017, "Feature Visualization"): a decorrelated Fourier parameterisation, transformation
robustness (pad, jitter, scale, rotate), optional L2 / total-variation penalties, and a diversity term
for several images of one unit.

:func:`maximize_activation` runs in phases: the arguments are checked (:func:`_check_settings`), the objective
is resolved against the model (:func:`_plan`), the input is optimised (:func:`_ascend`), and the result is
scored against real examples and assembled.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn

from .._base.capturing import capture, features_first, prepared_batches
from .._base.hygiene import model_device, model_dtype, preserved
from .._base.layer_select import resolve_modules
from .._base.machinery import check_progress, progress_bar
from .._base.model_inputs import InputKey, call_model
from .._base.model_io import OutputArg, check_output_arg, check_runnable
from .._base.validation import check_choice, check_model, check_positive_int, check_tensor, renamed_arguments
from .feed import FixedInputs
from .image_param import PARAMETERIZATIONS, RANGE_MODES, ImageParam, check_range, image_param
from .objectives import (
    OBJECTIVES,
    Objective,
    class_logit,
    image_count,
    named_objective,
    without_batch_terms,
)
from .objectives import diversity as diversity_term
from .runner import Runner, SelectedOutput, probe
from .transforms import Compose, Transform, l2_penalty, standard_transforms, total_variation
from .units import as_units, check_input_shape, sequence_units, unit_count

__all__ = ["maximize_activation", "ActivationMaximizationResult"]

UnitArg = Union[int, Sequence[int], torch.Tensor, None]


@dataclass
class ActivationMaximizationResult:
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
        ``(B,)`` objective of the final images, untransformed (in eval mode unless ``eval_mode=False``).
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
            f"ActivationMaximizationResult({self.objective}, images={tuple(self.images.shape)}, "
            f"steps={self.trajectory.shape[0]}, final={[round(v, 3) for v in self.final.tolist()[:6]]}, "
            f"percentile=[{p}])"
        )


def _check_number(value: Any, argname: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise TypeError(f"`{argname}` must be a finite number, got {value!r}.")
    if float(value) < minimum:
        raise ValueError(f"`{argname}` must be ≥ {minimum}, got {value}.")
    return float(value)


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


# ----------------------------------------------------------------------------------------------------
# The phases of maximize_activation
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Settings:
    """The checked scalar arguments of one :func:`maximize_activation` call."""

    input_shape: tuple[int, ...]
    value_range: tuple[float, float] | None
    steps: int
    images_per_unit: int
    batch_size: int
    lr: float
    l2: float
    tv: float
    diversity: float
    param: str
    range_mode: str
    seed: int | None
    progress: bool | None


def _check_settings(
    input_shape: tuple[int, ...], value_range: Any, *, steps: Any, images_per_unit: Any, batch_size: Any,
    lr: Any, l2: Any, tv: Any, diversity: Any, param: Any, range_mode: Any, seed: Any, progress: Any,
) -> _Settings:
    """Every scalar argument checked before any forward pass; errors name the argument."""
    vr = check_range(value_range)
    steps = check_positive_int(steps, "steps")
    images_per_unit = check_positive_int(images_per_unit, "images_per_unit")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = _check_number(lr, "lr")
    l2 = _check_number(l2, "l2")
    tv = _check_number(tv, "tv")
    diversity = _check_number(diversity, "diversity")
    check_choice(param, "param", PARAMETERIZATIONS)
    check_choice(range_mode, "range_mode", RANGE_MODES)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"`seed` must be an int or None, got {seed!r}.")
    progress = check_progress(progress)
    if len(input_shape) != 3 and param == "fourier":
        param = "pixel"  # the Fourier basis is two-dimensional; vectors are optimised directly
    return _Settings(
        input_shape=input_shape, value_range=vr, steps=steps, images_per_unit=images_per_unit,
        batch_size=batch_size, lr=lr, l2=l2, tv=tv, diversity=diversity, param=param, range_mode=range_mode,
        seed=None if seed is None else int(seed), progress=progress,
    )


@dataclass
class _Plan:
    """What one optimisation maximises, resolved against the model."""

    reported: Objective  # trajectory, final and percentile: without batch-only terms such as diversity
    optimised: Objective  # what the gradient ascent maximises (with the diversity term)
    batch: int  # images optimised together: images named by the objective × images_per_unit
    order: list[str]  # the objective's layers in execution order (for the early exit)
    units: list[Any] | None  # one unit per named image (not repeated), None for directions / custom objectives
    layer: str | None  # the layer reported (None for a custom objective spanning several layers)


def _custom_objective(
    model: nn.Module, objective: Objective, s: _Settings, feed: FixedInputs, device: torch.device,
    dtype: torch.dtype,
) -> tuple[Objective, int, dict[str, tuple[int, ...]], list[str], str, str | None, None]:
    """An :class:`Objective` the user built: its layers checked and probed."""
    layers = list(objective.layers)
    resolve_modules(model, layers, "objective layers")
    shapes, order = probe(model, layers, s.input_shape, device, dtype, feed)
    return objective, image_count(objective), shapes, order, layers[0], layers[0] if len(layers) == 1 else None, None


def _named(
    model: nn.Module, layer: str | None, unit: UnitArg, objective: str, s: _Settings, feed: FixedInputs,
    device: torch.device, dtype: torch.dtype,
) -> tuple[Objective, int, dict[str, tuple[int, ...]], list[str], str, str, list[Any] | None]:
    """``objective="auto"|"neuron"|…`` on ``layer``: the units (or direction) read from ``unit``."""
    check_choice(objective, "objective", OBJECTIVES)
    if layer is None:
        raise ValueError("`layer` is required (or pass an Objective as `objective=`).")
    resolve_modules(model, [layer], "layer")
    layouts: dict[str, str] = {}
    shapes, order = probe(model, [layer], s.input_shape, device, dtype, feed, layouts)
    # The model's own output read as a sequence (N, T, V) — 3-D and not channels-first: its units are
    # (position, token) pairs, as `target=` in the attribution methods.
    seq_head = (
        isinstance(model, SelectedOutput) and len(shapes[layer]) == 3 and layouts.get(layer) != "channels_first"
    )
    units_list: list[Any] | None = None
    vectors = units = positions = None
    if objective == "direction":
        if not isinstance(unit, torch.Tensor) and not hasattr(unit, "shape"):
            raise TypeError("With objective='direction', pass the direction tensor as `unit`.")
        vectors = check_tensor(unit, "unit", ndim=(1, 2), dtype_kind="float", finite=True)
        n_base = 1 if vectors.ndim == 1 else vectors.shape[0]
    elif seq_head and objective != "channel":
        positions, units = sequence_units(unit, shapes[layer])
        n_base = units.numel()
        units_list = list(zip(positions.tolist(), units.tolist(), strict=True))
    else:
        units = torch.arange(unit_count(shapes[layer])) if unit is None else as_units(unit)
        n_base = units.numel()
        units_list = units.tolist()
    k = s.images_per_unit
    if k > 1:
        units = None if units is None else units.repeat_interleave(k)
        positions = None if positions is None else positions.repeat_interleave(k)
        vectors = None if vectors is None else (vectors[None] if vectors.ndim == 1 else vectors).repeat_interleave(k, 0)
    if positions is not None:
        obj = class_logit(layer, units, minus_others=objective == "logit_minus_others", position=positions)
    else:
        obj = named_objective(objective, layer, units, vectors, shapes[layer])
    return obj, n_base, shapes, order, layer, layer, units_list


def _plan(
    model: nn.Module, layer: str | None, unit: UnitArg, objective: str | Objective, s: _Settings,
    feed: FixedInputs, device: torch.device, dtype: torch.dtype, diversity_layer: str | None,
) -> _Plan:
    """The objective resolved against the model, with the diversity term, checked against the layers' shapes."""
    if isinstance(objective, Objective):
        found = _custom_objective(model, objective, s, feed, device, dtype)
    else:
        found = _named(model, layer, unit, objective, s, feed, device, dtype)
    obj, n_base, shapes, order, group_layer, obj_layer, units_list = found
    batch = n_base * s.images_per_unit
    optimised = obj
    if s.diversity > 0:
        if diversity_layer is not None:
            resolve_modules(model, [diversity_layer], "diversity_layer")
            group_layer = diversity_layer
            shapes.update(probe(model, [diversity_layer], s.input_shape, device, dtype, feed)[0])
            order = probe(model, sorted({*obj.layers, diversity_layer}), s.input_shape, device, dtype, feed)[1]
        groups = torch.arange(n_base).repeat_interleave(s.images_per_unit)
        optimised = obj + s.diversity * diversity_term(group_layer, groups=groups)
    # What is reported (trajectory, final, percentile) leaves out batch-only terms such as diversity,
    # so that the final value is comparable with the same objective on real examples.
    reported = without_batch_terms(obj)
    optimised.check(shapes, batch)
    feed.check_batch(batch)
    return _Plan(reported, optimised, batch, [n for n in order if n in optimised.layers], units_list, obj_layer)


def _ascend(
    model: nn.Module, plan: _Plan, s: _Settings, feed: FixedInputs, param_mod: ImageParam,
    tfm: Callable[..., torch.Tensor] | None, gen: torch.Generator, dtype: torch.dtype, early_exit: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradient ascent (Adam on the parameterisation): the trajectory, the final images and their value."""
    obj, obj_opt, batch, shape = plan.reported, plan.optimised, plan.batch, s.input_shape
    centre = 0.0 if s.value_range is None else 0.5 * (s.value_range[0] + s.value_range[1])
    opt = torch.optim.Adam(param_mod.parameters(), lr=s.lr)
    trajectory = torch.empty(s.steps, batch, dtype=torch.float32)
    with Runner(model, list(obj_opt.layers), early_exit) as run:
        with progress_bar(total=s.steps, desc=f"maximize {obj.describe()}", progress=s.progress) as bar:
            for step in range(s.steps):
                img = param_mod().to(dtype)
                x = tfm(img, gen) if tfm is not None else img
                outputs = run(feed(x.reshape(batch, *shape)))
                if step == 0:
                    run.arm_early_exit(plan.order)
                value = obj(outputs)
                total = obj_opt(outputs) if obj_opt is not obj else value  # obj_opt adds batch terms
                loss = -total.sum()
                if s.l2 > 0:
                    loss = loss + s.l2 * l2_penalty(img, centre).sum()
                if s.tv > 0 and len(shape) == 3:
                    loss = loss + s.tv * total_variation(img).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                param_mod.project_()
                trajectory[step] = value.detach().to("cpu", torch.float32)
                bar.update(1)
        with torch.no_grad():
            final_images = param_mod().to(dtype).reshape(batch, *shape)
            final = obj(run(feed(final_images))).to("cpu", torch.float32)
    return trajectory, final_images, final


@renamed_arguments(eval="eval_mode")
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
    eval_mode: bool = True,
    progress: bool | None = None,
    output: OutputArg = None,
    inputs: Any = None,
    wrt: InputKey | None = None,
) -> ActivationMaximizationResult:
    """Find inputs that maximally activate a unit (Erhan et al. 2009; Olah et al. 2017).

    Parameters
    ----------
    model
        Any ``torch.nn.Module``; left exactly as found.
    layer
        The layer name (see :func:`nbexplain.list_layers`); ignored when ``objective`` is an
        ``nx.objectives.Objective``. ``None`` with a named objective maximises the model's own output (the tensor
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
        ``"logit"``, ``"logit_minus_others"``, ``"direction"``, or an ``nx.objectives.Objective`` built
        from ``nx.objectives.neuron``, ``channel``, ``class_logit``, ``direction``, ``diversity``
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
        Inputs per forward pass when scoring ``reference``.
    early_exit
        Stop each forward pass once the objective's layers have run (saves the rest of the network).
    eval_mode
        Run the model in eval mode (default; dropout off, batch-norm running statistics). With ``False`` it
        runs in its own modes; its modes and buffers are restored afterwards either way.
    progress
        ``None`` (default): a progress bar appears once the work has run for more than 2 s; ``True``: at
        once; ``False``: never.
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
    ActivationMaximizationResult
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
    model = check_runnable(check_model(model, what="nx.maximize_activation"))
    check_output_arg(output)
    if layer is None and not isinstance(objective, Objective):
        model, layer = SelectedOutput(model, output), SelectedOutput.LAYER
    elif output is not None:
        raise ValueError(
            "`output=` selects part of the model's output, which is maximised with layer=None; "
            f"with layer={layer!r} leave `output` out."
        )
    shape = check_input_shape(input_shape)
    feed = FixedInputs(inputs, wrt, shape, model)
    s = _check_settings(
        shape, value_range, steps=steps, images_per_unit=images_per_unit, batch_size=batch_size, lr=lr, l2=l2,
        tv=tv, diversity=diversity, param=param, range_mode=range_mode, seed=seed, progress=progress,
    )
    device, dtype = model_device(model), model_dtype(model)

    # Outside eval mode a forward pass updates batch-norm running statistics: put their values back too.
    with preserved(model, values=not eval_mode):
        if eval_mode:
            model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        plan = _plan(model, layer, unit, objective, s, feed, device, dtype, diversity_layer)
        gen = torch.Generator()
        if s.seed is None:
            gen.seed()
        else:
            gen.manual_seed(s.seed)
        img_shape = shape if len(shape) == 3 else (1, 1, int(torch.tensor(shape).prod()))
        param_mod: ImageParam = image_param(
            s.param, img_shape, plan.batch, s.value_range, range_mode=s.range_mode, decorrelate=decorrelate,
            color_matrix=color_matrix, init_std=init_std, generator=gen,
        ).to(device)
        tfm = _build_transforms(transforms, shape)
        trajectory, final_images, final = _ascend(model, plan, s, feed, param_mod, tfm, gen, dtype, early_exit)
        ref_values = None
        percentile = torch.full((plan.batch,), float("nan"))
        if reference is not None:
            ref_values = _score_data(model, plan.reported, plan.batch, reference, s.batch_size)
            percentile = (ref_values < final.to(torch.float64)[:, None]).to(torch.float64).mean(dim=1) * 100
            percentile = percentile.to(torch.float32)

    image_units = None
    if plan.units is not None:
        image_units = [u for u in plan.units for _ in range(s.images_per_unit)]
    settings = dict(
        steps=s.steps, lr=s.lr, param=s.param, range_mode=s.range_mode, value_range=s.value_range, l2=s.l2,
        tv=s.tv, diversity=s.diversity, images_per_unit=s.images_per_unit, seed=seed,
        transforms=repr(tfm) if tfm is not None else None,
    )
    return ActivationMaximizationResult(
        images=final_images.detach().to("cpu", torch.float32),
        trajectory=trajectory,
        final=final,
        percentile=percentile,
        units=image_units,
        layer=plan.layer,
        objective=plan.reported.describe(),
        reference_values=None if ref_values is None else ref_values.to(torch.float32),
        settings=settings,
    )
