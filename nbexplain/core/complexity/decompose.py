"""Complexity decomposition of a layer's feature (Ren, Li, Liu, Zhang, ICML 2021).

The feature ``f(x)`` of a chosen layer is explained as a sum of *components of increasing complexity*.
Disentangler networks ``g_l`` with ``l`` non-linear layers (:mod:`nbexplain.core.complexity.disentanglers`) are
trained one after the other, each warm-started from the previous order, to reproduce ``f`` from the
model's input by distillation (MSE). The component of order ``l`` is what the extra depth adds::

    c_l(x) = g_l(x) − g_{l'}(x)        (l' = the previous order in ``orders``; g before the first = 0)

so the components of all orders sum to the deepest fit ``g_L(x)``; ``f − g_L`` is the residual.

Distillation loss: the paper's MSE ``E‖f − g_l(x)‖²`` divided by one constant, the feature's mean
per-element variance over the training samples, so the loss reads ``1 − R²`` whatever the feature's
scale. Units that never vary (dead ReLU units) weigh nothing in it; the disentanglers reproduce them by
their per-element mean (see :func:`nbexplain.core.complexity.disentanglers.feature_stats`), and the result counts
them in ``constant_units``. (Standardising every unit by its own std, as earlier versions did,
let units with a std near 0 dominate: losses of 1e10–1e13 on a trained MLP.)

Features: image inputs with a spatial feature ``(C, H, W)`` get convolutional disentanglers; any other
feature — vectors, token outputs ``(T, D)`` of a transformer layer — dense ones over all its elements
(each token position a set of units, as a conv feature's positions are), with the same metrics.

Metrics, one value per order (all float64):

``energy``
    ``Var(c_l) / Var(f)`` with ``Var(z) = E‖z − E z‖²`` over the training samples used for metrics
    (the paper's energy ratio ρ_l).
``fit_quality`` / ``fit_quality_train``
    ``1 − E‖f − g_l‖² / Var(f)`` (R²) of each cumulative fit on the test / training samples.
``reliability``
    Linear knowledge consistency (Liang et al. 2020, the idea the paper builds on) with a second
    network trained for the same task — the ``reference_model`` (by default the same architecture,
    re-initialised with another seed and trained on the same training set). Exact procedure: take the
    reference network's feature at ``reference_layer`` (default: the same name), average-pooled to the
    analysed feature's spatial size; fit one affine map (ridge 1e-6 · mean eigenvalue, float64 least
    squares, per spatial position for conv features: the ``"channels"`` layout) from it to each
    component ``c_l`` on the training samples; evaluate on the test samples. ``reliability_l = R²``
    of that prediction, clipped to [0, 1]: the fraction of the component's variance that the other
    network also carries, linearly. ``reliability_feature`` is the same for ``f`` itself.
``effectiveness``
    Shapley value of component ``l`` in the game "the network's head (the layers after ``layer``) sees
    a partial sum of components": coalition ``S`` feeds ``h_S = E_train[f] + Σ_{l∈S} (c_l − E_train[c_l])``
    (an absent component is replaced by its mean) and the game's value is the *decrease of the
    training task loss*, ``L_train(∅) − L_train(S)``. By efficiency the values sum to
    ``L_train(∅) − L_train(all)``.
``overfitting``
    Shapley value in the same game for the *test-minus-train loss gap*, ``L_test(S) − L_train(S)``;
    they sum to ``gap(all) − gap(∅)``. Positive: the component widens the generalisation gap.

Shapley values are exact over up to 10 orders (``2**L`` coalitions) and a documented antithetic
permutation-sampling estimate above that (:func:`nbexplain.core.complexity.shapley.shapley_values`).

The task loss is cross-entropy for integer labels and MSE for float targets, or any
``loss(output, y) -> scalar`` (mean over the batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import nn

from .._base.hygiene import model_device, preserved
from .._base.model_inputs import InputKey
from .._base.model_io import OutputArg
from .._base.validation import check_model, renamed_arguments
from .checks import _Call, _check_call
from .disentanglers import auto_family
from .metrics import _components, _fit_metrics, _metric_indices, _reliability, _shapley_metrics
from .result import ComplexityResult
from .task import LossFn, _layer_outputs
from .training import _fresh_reference, _train_orders, _train_reference

__all__ = ["decompose_complexity", "ComplexityResult", "DEFAULT_ORDERS"]

#: Default orders: the paper's doubling schedule, shortened for CPU budgets (the paper uses 1 … 32).
DEFAULT_ORDERS = (1, 2, 4, 8)


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------


@renamed_arguments(batch_size="train_batch_size")
def decompose_complexity(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    layer: str,
    *,
    orders: Union[int, Sequence[int]] = DEFAULT_ORDERS,
    epochs: Union[int, Sequence[int]] = 10,
    seed: int = 0,
    family: Union[str, Callable[[int, nn.Module | None], nn.Module]] = "auto",
    width: int | None = None,
    kernel_size: int = 3,
    lr: tuple[float, float] = (1e-3, 1e-5),
    train_batch_size: int = 64,
    reference_model: Union[None, bool, nn.Module] = None,
    reference_layer: str | None = None,
    reference_epochs: int = 2,
    loss: Union[str, LossFn] = "auto",
    metric_samples: int = 1000,
    shapley: str = "auto",
    shapley_permutations: int = 200,
    resume: ComplexityResult | None = None,
    progress: bool | None = None,
    output: OutputArg = None,
    wrt: InputKey | None = None,
) -> ComplexityResult:
    """Decompose a layer's feature into components of increasing complexity (Ren et al., ICML 2021).

    Parameters
    ----------
    model
        The trained network (any ``nn.Module``); it is left exactly as found.
    train, test
        ``(x, y)`` pairs: inputs and task targets (class indices, or float targets for regression). The
        disentanglers are trained on ``train[0]``; ``test`` is used for test curves, fit quality,
        reliability and the overfitting metric. For a model with several inputs ``x`` is a tuple
        (positional, ``model(x, mask)``), a dict (keyword) or ``nx.Inputs``: ``train=((x, mask), y)``; the
        model gets all of them, the disentanglers read one (``wrt``).
    layer
        Name of the layer whose output is decomposed (see :func:`nbexplain.list_layers`); it must run once
        per forward pass.
    orders
        Increasing numbers of non-linear layers of the disentanglers (0 = affine), e.g. ``(1, 2, 4, 8)``;
        an int ``n`` means ``1 … n``.
    epochs
        Training epochs per order (an int, or one per order).
    seed
        Seeds initialisation, mini-batch order, the default reference network and Shapley sampling (the
        global RNG is left alone).
    family
        ``"auto"`` (conv disentanglers for image inputs with a spatial feature, dense otherwise, e.g. for a
        transformer layer's ``(T, D)`` tokens),
        ``"dense"``, ``"conv"``, or a callable ``factory(order, previous)`` returning an ``nn.Module``
        that maps inputs to features (``previous`` is the trained module of the previous order or
        ``None``; warm-start from it yourself).
    width
        Hidden width (default: max(32, feature channels) for conv, 256 for dense).
    kernel_size
        Kernel of the conv blocks.
    lr
        ``(start, end)``: Adam's learning rate decays log-linearly over each order's epochs (the paper's
        1e-3 → 1e-5).
    train_batch_size
        Mini-batch size for distillation (a training minibatch; the model's own forward passes run 256
        inputs at a time).
    reference_model
        A second network trained for the same task, used for reliability. ``None`` (default): a copy of
        ``model`` re-initialised with ``seed + 1`` and trained for ``reference_epochs`` epochs (Adam,
        lr 1e-3, batch 64) on ``train``. ``False``: skip reliability (NaN).
    reference_layer
        The reference network's layer to compare with (default: ``layer``).
    reference_epochs
        Epochs for the default reference network.
    loss
        Task loss for effectiveness and overfitting: ``"auto"`` (cross-entropy for integer targets, MSE
        for float), ``"cross_entropy"``, ``"mse"`` or ``loss(output, y) -> scalar``. Cross-entropy reads the
        classes where the attribution targets do: axis 1 of ``(N, C)`` and of dense maps ``(N, C, H, W)``
        (labels ``(N, H, W)``), the last axis of a sequence ``(N, T, V)`` (labels ``(N, T)``).
    metric_samples
        How many training and test samples the metrics use: the first ones, or for class labels the
        first of every class in the training split's class proportions (same class mix on both sides).
    shapley
        ``"auto"`` (exact up to 10 orders), ``"exact"`` or ``"permutation"``.
    shapley_permutations
        Orders sampled by the permutation estimate.
    resume
        A previous result for the same model and layer: its trained disentanglers are reused for the
        orders they cover (and as the warm start of new, deeper ones), as is its reference network.
    progress
        Progress bars over orders and epochs: ``None`` (default) once the work has run 2 s; ``True``:
        always; ``False``: never.
    output
        For models that return a tuple, dict or output object: which tensor the task loss reads (an index,
        a key or attribute name, or a callable on the model's output; see
        :func:`nbexplain.core._base.model_io.select_output`). Checked with one forward pass before any training.
    wrt
        For a model with several inputs: the input the disentanglers read (a position or keyword name;
        default the first), a floating tensor. The components are functions of that input alone; what the
        feature owes to the other inputs stays in the residual ``f − g_L`` (see ``fit_quality``).

    Returns
    -------
    ComplexityResult
        With ``.components(x)``, ``.energy``, ``.reliability``, ``.effectiveness``, ``.overfitting``,
        ``.fit_quality``, ``.history`` … (see the module notes for the exact definitions).

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(256, 4), torch.randint(0, 3, (256,))
    >>> res = nx.decompose_complexity(net, (x[:200], y[:200]), (x[200:], y[200:]), "1",
    ...                               orders=(0, 1, 2), epochs=2, width=16, progress=False,
    ...                               reference_model=False)
    >>> res.components(x[:5]).shape, res.energy.shape
    (torch.Size([3, 5, 8]), torch.Size([3]))
    """
    call = _check_call(
        model, layer, train, test, orders, epochs, seed=seed, family=family, width=width,
        kernel_size=kernel_size, lr=lr, batch_size=train_batch_size, reference_model=reference_model,
        reference_layer=reference_layer, reference_epochs=reference_epochs, loss=loss,
        metric_samples=metric_samples, shapley=shapley, shapley_permutations=shapley_permutations,
        resume=resume, progress=progress, output=output, wrt=wrt,
    )
    dev = model_device(call.model)
    # the disentanglers are float32 networks on the model's device, whatever the model's dtype
    xd_tr, xd_te = call.x_tr[call.key].float(), call.x_te[call.key].float()
    with preserved(call.model):
        call.model.eval()
        f_tr = _layer_outputs(call.model, call.module, call.x_tr, 256, call.layer)
        f_te = _layer_outputs(call.model, call.module, call.x_te, 256, call.layer)
        fam, width = _family_and_width(call, tuple(xd_tr.shape[1:]), tuple(f_tr.shape[1:]))
        f_scale, constant_units = _distillation_scale(f_tr, call.layer)
        trained, history = _train_orders(call, fam, width, xd_tr, xd_te, f_tr, f_te, f_scale, dev)
        result = ComplexityResult(
            model=call.model, layer=call.layer, orders=call.orders, disentanglers=trained, family=fam,
            feature_shape=tuple(f_tr.shape[1:]), input_shape=tuple(xd_tr.shape[1:]),
            energy=torch.empty(0), reliability=torch.empty(0), effectiveness=torch.empty(0),
            overfitting=torch.empty(0), fit_quality=torch.empty(0), fit_quality_train=torch.empty(0),
            reliability_feature=float("nan"), history=history, losses={}, shapley=None,
            settings=_settings(call, width), constant_units=constant_units, input_key=call.key,
        )
        _metrics(result, call, f_tr, f_te, dev)
    return result


# --------------------------------------------------------------------------------------------------
# phases
# --------------------------------------------------------------------------------------------------


def _settings(call: _Call, width: int) -> dict[str, Any]:
    """The settings recorded in the result."""
    return {
        "family": call.family if not call.custom else "custom", "width": width, "kernel_size": call.kernel_size,
        "lr": call.lr, "train_batch_size": call.batch_size, "seed": call.seed,
        "epochs": dict(zip(call.orders, call.epochs, strict=True)), "metric_samples": call.metric_samples,
        "loss": call.loss if isinstance(call.loss, str) else "custom",
    }


def _family_and_width(
    call: _Call, input_shape: tuple[int, ...], feature_shape: tuple[int, ...]
) -> tuple[str, int]:
    """The disentangler family and width for these shapes (checked against ``resume``)."""
    if call.custom:
        fam = "custom"
    else:
        fam = auto_family(input_shape, feature_shape) if call.family == "auto" else call.family
        if fam == "conv" and (len(input_shape) != 3 or len(feature_shape) != 3):
            raise ValueError(
                f"family='conv' needs image inputs (C, H, W) and a spatial layer output (C, H, W); got "
                f"input {input_shape} and feature {feature_shape}. Use family='dense' or 'auto'."
            )
    width = call.width
    if width is None:
        width = max(32, feature_shape[0]) if fam == "conv" else 256
    resume = call.resume
    if resume is not None:
        if resume.layer != call.layer or tuple(resume.feature_shape) != feature_shape:
            raise ValueError(
                f"`resume` decomposed layer {resume.layer!r} with feature shape {resume.feature_shape}; "
                f"this call asks for {call.layer!r} with {feature_shape}. Resume only the same layer."
            )
        if resume.input_key != call.key:
            raise ValueError(
                f"`resume` distilled from input {resume.input_key!r}, this call from {call.key!r} (`wrt`)."
            )
        if resume.family != fam:
            raise ValueError(f"`resume` used family {resume.family!r}, this call {fam!r}.")
        if fam != "custom" and resume.settings.get("width") != width:
            raise ValueError(f"`resume` used width {resume.settings.get('width')}, this call {width}.")
    return fam, width


def _distillation_scale(f_tr: torch.Tensor, layer: str) -> tuple[torch.Tensor, int]:
    """One scale for the whole distillation loss — the paper's MSE divided by the feature's mean per-element
    variance, so the loss reads 1 − R² and units that never vary weigh nothing — and how many units never vary."""
    elem_var = f_tr.double().var(dim=0, unbiased=False)
    mean_var = float(elem_var.mean())
    if not mean_var > 0:
        raise ValueError(
            f"The output of {layer!r} is constant on the training samples; nothing to decompose. "
            "Choose another layer or more varied inputs."
        )
    f_scale = torch.tensor(math.sqrt(mean_var), dtype=torch.float32)
    return f_scale, int((elem_var <= (1e-6) ** 2 * mean_var).sum())


def _reference(call: _Call, ref_layer: str, dev: torch.device) -> nn.Module:
    """The reference network for reliability: the user's, the resumed one, or a fresh copy trained here."""
    if call.reference_model is not None:
        return check_model(call.reference_model, "reference_model")
    resume = call.resume
    if resume is not None and resume.reference_model is not None and resume.reference_layer == ref_layer:
        return resume.reference_model
    ref = _fresh_reference(call.model, call.seed + 1).to(dev)
    _train_reference(
        ref, call.x_tr, call.y_tr, call.loss_fn, call.reference_epochs, call.seed + 1, 64, call.progress, call.output
    )
    return ref


def _metrics(
    result: ComplexityResult, call: _Call, f_tr: torch.Tensor, f_te: torch.Tensor, dev: torch.device
) -> None:
    """Every per-order metric of ``result``, on the metric samples of both splits."""
    i_tr, i_te = _metric_indices(call.y_tr, call.y_te, call.metric_samples)
    xm_tr, ym_tr, fm_tr = call.x_tr.rows(i_tr), call.y_tr[i_tr], f_tr[i_tr]
    xm_te, ym_te, fm_te = call.x_te.rows(i_te), call.y_te[i_te], f_te[i_te]
    g_tr = result.reconstructions(xm_tr[call.key])
    g_te = result.reconstructions(xm_te[call.key])
    c_tr, c_te = _components(g_tr), _components(g_te)
    _fit_metrics(result, call.layer, fm_tr, fm_te, g_tr, g_te, c_tr)
    ref_layer = call.reference_layer if call.reference_layer is not None else call.layer
    if call.reference_model is False:
        result.reliability = torch.full((len(call.orders),), float("nan"), dtype=torch.float64)
    else:
        ref = _reference(call, ref_layer, dev)
        _reliability(result, ref, ref_layer, xm_tr, xm_te, c_tr, c_te, fm_tr, fm_te)
    _shapley_metrics(result, call, xm_tr, ym_tr, fm_tr, c_tr, xm_te, ym_te, fm_te, c_te)
