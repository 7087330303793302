"""Composites: which LRP rule each layer of a model gets.

A :class:`Composite` maps layer *names* (as in ``model.named_modules()``) and layer *types* to
rules, plus an optional rule for the first layer (the first Linear/Conv the input reaches). Names win
over types; types are matched with ``isinstance`` in the order given, after the base map of every
composite:

- element-wise activations (ReLU family, tanh, sigmoid, …) → :class:`~.rules.Pass`,
- average pooling (also adaptive) → :class:`~.rules.Norm` (proportional),
- batch norm that was not merged into a preceding Linear/Conv → :class:`~.rules.Epsilon` (the composite's ε),
- element-wise products with a factor that does not depend on the input (layer scale ``x * self.gamma``, made
  explicit by a canonizer as type :class:`~.ops.Scale`) → :class:`~.rules.Epsilon` (the composite's ε),
- residual sums made explicit by the canonizer (type :class:`Sum`) → :class:`~.rules.Norm`.

The ε of these rules is the composite's ``epsilon`` (the call's ``epsilon=`` for a named composite); the
proportional splits (:class:`~.rules.Norm`) keep their 1e-9 unless ``epsilon`` is smaller, so that ε → 0 makes
every rule of the composite exact, and a large ε that absorbs relevance in dense layers does not in averages.

Max pooling, Flatten/Unflatten, Dropout (eval mode) and Identity need no rule: relevance follows their
gradient, which for max pooling sends it to the maximum (winner takes all).

Named composites (Kohlbrenner et al. 2020, "Towards best practice in explaining neural network
decisions with LRP"; the names of zennit):

================================  =========================  ==========================  ============
name                              first layer                other convolutions          dense layers
================================  =========================  ==========================  ============
``epsilon``                       ε                          ε                           ε
``epsilon_plus``                  z⁺ (conv) / ε (dense)      z⁺                          ε
``epsilon_plus_flat``             flat                       z⁺                          ε
``epsilon_gamma_box``             zᴮ (``low``/``high``)      γ (0.25)                    ε
``epsilon_alpha2_beta1``          α2β1 (conv) / ε (dense)    α2β1                        ε
``epsilon_alpha2_beta1_flat``     flat                       α2β1                        ε
================================  =========================  ==========================  ============

"Convolutions" are ``Conv1d/2d/3d`` and the transposed ``ConvTranspose1d/2d/3d`` (a linear map like a
convolution: every rule applies with the transposed operator). ε is the call's ``epsilon=``, γ its ``gamma=``,
the zᴮ bounds its ``low=``/``high=``; the stabilisers of z⁺ and αβ (1e-9) and of γ and zᴮ (1e-6) are those
rules' defaults (denominators of one sign, kept away from 0 only) — choose them with your own
:class:`Composite`. ``result.rules`` lists the rule every layer got.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from ..._base.validation import suggest
from .ops import POOLS, TRANSPOSED, Scale
from .rules import AlphaBeta, Epsilon, Flat, Gamma, Norm, Pass, Rule, ZBox, ZPlus, _number

__all__ = [
    "Composite", "Sum", "Scale", "COMPOSITES", "ACTIVATIONS", "TRANSPARENT", "CONVS", "DENSE", "get_composite",
]

#: Convolutions, transposed ones included: the named composites give them the same rules.
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d) + TRANSPOSED
DENSE = (nn.Linear,)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class Sum(nn.Module):
    """``a + b`` of two activations as a module, so that a residual addition has a rule of its own.

    Created by the :class:`~.canonizers.ExplicitResidual` canonizer; never added to the user's model.
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return a + b


#: Element-wise activations whose relevance passes through unchanged.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softsign,
    nn.Threshold,
)

#: Modules that need no rule: relevance follows their gradient (reshapes, eval-mode dropout, max pooling).
TRANSPARENT: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)

Key = Union[str, type, tuple]


#: The default ε of a composite's own ε rules (unmerged batch norms, layer scales) and of :func:`nbexplain.lrp`.
DEFAULT_EPSILON = 1e-6
#: The stabiliser of the proportional splits (average pooling, residual sums) unless ε is smaller.
_NORM_EPSILON = 1e-9


def _base_map(epsilon: float) -> list[tuple[tuple[type, ...], Rule]]:
    norm = Norm(min(_NORM_EPSILON, epsilon))
    return [
        (ACTIVATIONS, Pass()),
        (POOLS, norm),
        (BATCHNORMS, Epsilon(epsilon)),
        ((Scale,), Epsilon(epsilon)),
        ((Sum,), norm),
    ]


class Composite:
    """A mapping from layers to LRP rules.

    Parameters
    ----------
    rules
        ``{key: rule}`` where a key is a layer name from ``model.named_modules()`` (``"features.0"``),
        a module type (``torch.nn.Conv2d``) or a tuple of types. Names take precedence over types; types
        are tried in the order given (put subclasses first).
    first
        Rule for the first Linear/Conv layer the input reaches (in call order), e.g. ``Flat()`` or
        ``ZBox(0, 1)``; ``None`` gives it its type's rule.
    name
        A label for reprs and reports.
    epsilon
        ε of the rules the composite assigns itself: the ε rule of batch norms that cannot be merged into a
        preceding layer and of layer scales (:class:`~.ops.Scale`); average pooling and residual sums split
        in proportion with ``min(1e-9, epsilon)``. Rules you map (also to these types) are used as given.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.attribution.lrp import Composite, Epsilon, Flat, Gamma
    >>> comp = Composite({torch.nn.Conv2d: Gamma(0.5), torch.nn.Linear: Epsilon(0.1)}, first=Flat())
    >>> comp.rule_for("conv2", torch.nn.Conv2d(3, 4, 3))
    Gamma(gamma=0.5, epsilon=1e-06, bias=True)
    >>> comp.rule_for("conv1", torch.nn.Conv2d(3, 4, 3), first=True)
    Flat()
    """

    def __init__(
        self,
        rules: Mapping[Key, Rule] | None = None,
        first: Rule | None = None,
        name: str = "custom",
        epsilon: float = DEFAULT_EPSILON,
    ) -> None:
        rules = dict(rules or {})
        self.names: dict[str, Rule] = {}
        self.types: list[tuple[tuple[type, ...], Rule]] = []
        for key, rule in rules.items():
            if not isinstance(rule, Rule):
                raise TypeError(
                    f"Composite rules must be Rule instances (e.g. nx.Epsilon()), got {rule!r} for key {key!r}."
                )
            if isinstance(key, str):
                self.names[key] = rule
            elif isinstance(key, type) and issubclass(key, nn.Module):
                self.types.append(((key,), rule))
            elif isinstance(key, tuple) and key and all(isinstance(k, type) and issubclass(k, nn.Module) for k in key):
                self.types.append((tuple(key), rule))
            else:
                raise TypeError(
                    f"Composite keys must be layer names (str) or torch.nn.Module types, got {key!r}."
                )
        if first is not None and not isinstance(first, Rule):
            raise TypeError(f"`first` must be a Rule instance or None, got {first!r}.")
        self.first = first
        self.name = name
        self.epsilon = _number(epsilon, "epsilon")
        self._base = _base_map(self.epsilon)

    def rule_for(self, name: str, module: nn.Module, first: bool = False) -> Rule | None:
        """The rule for the module called ``name`` (``None``: no rule, relevance follows the gradient)."""
        if name in self.names:
            return self.names[name]
        if first and self.first is not None:
            return self.first
        for types, rule in self.types:
            if isinstance(module, types):
                return rule
        for types, rule in self._base:
            if isinstance(module, types):
                return rule
        return None

    def check_names(self, available: list[str]) -> None:
        """Raise a ``ValueError`` for layer names that are not in the model."""
        unknown = [n for n in self.names if n not in available]
        if unknown:
            raise ValueError(
                f"The composite names layer(s) {unknown} that the model does not have."
                f"{suggest(unknown[0], available)} Layer names: {available[:30]}."
            )

    def __repr__(self) -> str:
        parts = [f"{k!r}: {v!r}" for k, v in self.names.items()]
        parts += [f"{'|'.join(t.__name__ for t in ts)}: {r!r}" for ts, r in self.types]
        first = f", first={self.first!r}" if self.first is not None else ""
        return f"Composite({self.name!r}, {{{', '.join(parts)}}}{first})"


def _named(name: str, epsilon: float, gamma: float, low: Any, high: Any) -> Composite:
    eps = Epsilon(epsilon)
    convs, first = {  # built for the name asked only (γ and the zᴮ bounds are checked when used)
        "epsilon": lambda: (eps, None),
        "epsilon_plus": lambda: (ZPlus(), None),
        "epsilon_plus_flat": lambda: (ZPlus(), Flat()),
        "epsilon_gamma_box": lambda: (Gamma(gamma), ZBox(low, high)),
        "epsilon_alpha2_beta1": lambda: (AlphaBeta(2.0, 1.0), None),
        "epsilon_alpha2_beta1_flat": lambda: (AlphaBeta(2.0, 1.0), Flat()),
    }[name]()
    return Composite({CONVS: convs, DENSE: eps}, first=first, name=name, epsilon=epsilon)


#: The named composites accepted by ``nx.lrp(..., composite=name)``.
COMPOSITES = (
    "epsilon",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
)


def get_composite(
    composite: str | Composite | Rule | Mapping[Key, Rule],
    epsilon: float | None = None,
    gamma: float = 0.25,
    low: Any = None,
    high: Any = None,
) -> Composite:
    """Resolve a composite name, a :class:`Composite`, a plain ``{key: rule}`` mapping, or a single rule
    (applied to every Linear and Conv layer, transposed convolutions included).

    ``epsilon`` is the ε of every ε rule the composite assigns itself (see :class:`Composite`; for a name also
    that of its dense layers). ``None``: 1e-6, or the ε of an ε rule given as ``composite`` (so that
    ``nx.Epsilon(1e-9)`` means ε = 1e-9 everywhere). A :class:`Composite` keeps its own.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import get_composite
    >>> get_composite("epsilon_plus_flat").first
    Flat()
    """
    if isinstance(composite, Composite):
        if epsilon is not None and float(epsilon) != composite.epsilon:
            raise ValueError(
                f"`epsilon`={epsilon} cannot change the composite {composite.name!r}: a Composite object keeps the ε "
                f"it was made with ({composite.epsilon}). Make it with nx.Composite(..., epsilon={epsilon}), or "
                "leave `epsilon` out."
            )
        return composite
    if epsilon is None:
        epsilon = composite.epsilon if isinstance(composite, Epsilon) else DEFAULT_EPSILON
    if isinstance(composite, Rule):
        return Composite({DENSE + CONVS: composite}, name=repr(composite), epsilon=epsilon)
    if isinstance(composite, str):
        if composite not in COMPOSITES:
            raise ValueError(
                f"Unknown composite {composite!r}.{suggest(composite, COMPOSITES)} "
                f"Named composites: {list(COMPOSITES)}; or pass nx.Composite({{layer type or name: rule}})."
            )
        return _named(composite, epsilon, gamma, low, high)
    if isinstance(composite, Mapping):
        return Composite(composite, epsilon=epsilon)
    raise TypeError(
        f"`composite` must be a name {list(COMPOSITES)}, an nx.Composite, a rule or a dict "
        f"{{layer type or name: rule}}, got {type(composite).__name__}."
    )
