"""The playground's networks: input features as in TensorFlow Playground, then a small MLP.

``playground_network`` builds ``nn.Sequential(features, fc1, act1, …, out)`` with named layers, so
``nx.list_layers`` and :func:`hidden_layers` give stable names (``act1``, ``act2``, …, ``out``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._base.model_io import OutputArg, check_output_arg, select_output
from .._base.validation import check_choice, check_model, check_positive_int
from .datasets import check_seed

__all__ = ["FEATURES", "ACTIVATIONS", "FeatureMap", "playground_network", "hidden_layers", "is_playground_network",
           "SelectedOutput"]

#: Input features a :class:`FeatureMap` can compute from a point ``(x, y)``.
FEATURES = ("x", "y", "x^2", "y^2", "xy", "sin x", "sin y")
#: Activation names :func:`playground_network` takes.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
_ACT_MODULES: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
#: Module types :func:`hidden_layers` reads as activations in a user's model.
_ACTIVATION_TYPES = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.SiLU,
                     nn.Softplus, nn.Mish, nn.Hardtanh, nn.ReLU6, nn.PReLU)

#: For each feature, the raw inputs (0 = x, 1 = y) it is made of and the share of its relevance each gets.
FEATURE_SOURCES: dict[str, tuple[tuple[int, float], ...]] = {
    "x": ((0, 1.0),), "y": ((1, 1.0),), "x^2": ((0, 1.0),), "y^2": ((1, 1.0),),
    "xy": ((0, 0.5), (1, 0.5)), "sin x": ((0, 1.0),), "sin y": ((1, 1.0),),
}


def _check_features(features: Any) -> tuple[str, ...]:
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise TypeError(f"`features` must be a sequence of names from {list(FEATURES)}, e.g. ('x', 'y'); "
                        f"got {features!r}.")
    feats = tuple(features)
    if not feats:
        raise ValueError(f"`features` is empty; pick at least one of {list(FEATURES)}.")
    for f in feats:
        check_choice(f, "features", FEATURES)
    if len(set(feats)) != len(feats):
        raise ValueError(f"`features` names a feature twice: {list(feats)}; give each once.")
    return feats


class FeatureMap(nn.Module):
    """Map points ``(N, 2)`` to input features ``(N, F)``, as TensorFlow Playground's input column.

    Parameters
    ----------
    features
        Names from :data:`FEATURES`: ``"x"``, ``"y"``, ``"x^2"``, ``"y^2"``, ``"xy"``, ``"sin x"``,
        ``"sin y"``, in the order the columns come out.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.playground import FeatureMap
    >>> FeatureMap(("x", "xy", "sin y"))(torch.tensor([[2.0, 3.0]]))
    tensor([[2.0000, 6.0000, 0.1411]])
    """

    def __init__(self, features: Sequence[str] = ("x", "y")) -> None:
        super().__init__()
        self.features = _check_features(features)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"FeatureMap takes points of shape (N, 2), got {tuple(points.shape)}.")
        x, y = points[:, 0], points[:, 1]
        table = {"x": lambda: x, "y": lambda: y, "x^2": lambda: x * x, "y^2": lambda: y * y,
                 "xy": lambda: x * y, "sin x": lambda: torch.sin(x), "sin y": lambda: torch.sin(y)}
        return torch.stack([table[f]() for f in self.features], 1)

    def extra_repr(self) -> str:
        return ", ".join(self.features)


def playground_network(
    features: Sequence[str] = ("x", "y"),
    hidden: Sequence[int] = (8, 8),
    classes: int = 2,
    *,
    activation: str = "tanh",
    seed: int = 0,
) -> nn.Sequential:
    """A playground MLP: input features, hidden layers with one activation, a linear output of class logits.

    Parameters
    ----------
    features
        Input features (:data:`FEATURES`), as TensorFlow Playground's input column.
    hidden
        Width of each hidden layer (1–64 each); ``()`` is a linear model (features → logits).
    classes
        Number of output logits (≥ 2).
    activation
        ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"gelu"``.
    seed
        Seed of the initial weights (PyTorch's default initialisation, drawn without touching the global RNG).

    Returns
    -------
    nn.Sequential
        Layers named ``features``, ``fc1``, ``act1``, …, ``fcL``, ``actL``, ``out``.

    Examples
    --------
    >>> import nbexplain as nx
    >>> net = nx.playground_network(("x", "y", "xy"), hidden=(4, 3), classes=3, seed=1)
    >>> [name for name, _ in net.named_children()]
    ['features', 'fc1', 'act1', 'fc2', 'act2', 'out']
    >>> nx.hidden_layers(net)
    ['act1', 'act2', 'out']
    """
    feats = _check_features(features)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise TypeError(f"`hidden` must be a sequence of layer widths such as (8, 8) (or () for a linear model), "
                        f"got {hidden!r}.")
    widths = [check_positive_int(h, "hidden") for h in hidden]
    if any(w > 64 for w in widths):
        raise ValueError(f"`hidden` widths must be ≤ 64 in the playground, got {list(widths)}.")
    classes = check_positive_int(classes, "classes")
    if classes < 2:
        raise ValueError(f"`classes` must be ≥ 2 (one logit per class), got {classes}.")
    check_choice(activation, "activation", ACTIVATIONS)
    seed = check_seed(seed)
    layers: OrderedDict[str, nn.Module] = OrderedDict(features=FeatureMap(feats))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        width_in = len(feats)
        for i, w in enumerate(widths, start=1):
            layers[f"fc{i}"] = nn.Linear(width_in, w)
            layers[f"act{i}"] = _ACT_MODULES[activation]()
            width_in = w
        layers["out"] = nn.Linear(width_in, classes)
    return nn.Sequential(layers)


def is_playground_network(model: nn.Module) -> bool:
    """Whether ``model`` has the structure :func:`playground_network` builds (a fast path may then be used)."""
    if type(model) is not nn.Sequential:
        return False
    mods = list(model.children())
    if len(mods) < 2 or type(mods[0]) is not FeatureMap or type(mods[-1]) is not nn.Linear:
        return False
    body = mods[1:-1]
    if len(body) % 2:
        return False
    for lin, act in zip(body[::2], body[1::2], strict=True):
        if type(lin) is not nn.Linear or type(act) not in _ACT_MODULES.values():
            return False
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return False  # someone's hooks must see the forward pass: go through the module calls
    return True


def hidden_layers(model: nn.Module) -> list[str]:
    """Names of the modules whose outputs the playground draws as neurons.

    For a :func:`playground_network`: each hidden activation, then the output layer (``['act1', 'act2',
    'out']``). For your own model: its activation modules (ReLU, tanh, sigmoid, GELU, …) in registration order,
    then its last Linear layer (the output); a model with no activation modules gives its Linear layers.

    Examples
    --------
    >>> import nbexplain as nx
    >>> nx.hidden_layers(nx.playground_network(hidden=(5,)))
    ['act1', 'out']
    """
    net = check_model(model, what="nx.hidden_layers")
    named = [n for n, _ in net.named_modules() if n]
    acts = [n for n, m in net.named_modules() if n and isinstance(m, _ACTIVATION_TYPES)]
    linears = [n for n, m in net.named_modules() if n and isinstance(m, nn.Linear)]
    if not acts:
        if not linears:
            raise ValueError("`model` has neither activation modules nor Linear layers to draw as neurons; the "
                             "playground needs an MLP-like nn.Module (2 inputs → class logits).")
        return linears
    # the output layer: the last Linear, when it comes after the last activation
    tail = [linears[-1]] if linears and named.index(linears[-1]) > named.index(acts[-1]) else []
    return acts + tail


class SelectedOutput(nn.Module):
    """``model`` whose forward returns the one tensor ``output=`` selects from what ``model`` returns.

    For a model that returns a tuple, a dict or an output object (e.g. ``(logits, hidden)``): the playground's
    functions take class logits ``(N, C)``, and ``output=`` chooses them with the same vocabulary as
    :func:`nbexplain.lrp` and the other explainers — an index (``output=0``), a key or attribute name
    (``output="logits"``) or a function of the model's output. ``model`` is a submodule (its layers are named
    ``model.…``), trained and hooked as it is: nothing is copied.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from nbexplain.core.playground import SelectedOutput
    >>> class TwoHeads(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(2, 2)
    ...     def forward(self, x):
    ...         return self.fc(x), x
    >>> SelectedOutput(TwoHeads(), 0)(torch.zeros(3, 2)).shape
    torch.Size([3, 2])
    """

    def __init__(self, model: nn.Module, output: OutputArg) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        if output is None:
            raise ValueError("`output` must choose the logits (an index, a key or attribute name, or a function of "
                             "the model's output); with output=None use the model itself.")
        self.model = model
        self.output: OutputArg = check_output_arg(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_output(self.model(x), self.output)

    def extra_repr(self) -> str:
        return f"output={self.output!r}"
