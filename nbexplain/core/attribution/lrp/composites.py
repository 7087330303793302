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
``attn_lrp``                      ε (γ with ``gamma=``)      ε (γ with ``gamma=``)       ε (γ)
``cp_lrp``                        ε (γ with ``gamma=``)      ε (γ with ``gamma=``)       ε (γ)
================================  =========================  ==========================  ============

``attn_lrp`` and ``cp_lrp`` are for transformers (Achtibat et al. 2024, "AttnLRP"; Ali et al. 2022, "XAI for
Transformers: better explanations through conservative propagation"): a composite with ``attention=`` set also
gives normalisation layers :class:`~.rules.NormIdentity` and explains the functional operations of attention
(softmax, the bilinear products, ``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``, GELU, position
embeddings added in ``forward``) by the rules of :mod:`.attention`. Any :class:`Composite` takes
``attention="attn_lrp"`` / ``"cp_lrp"``, so a hybrid CNN + transformer keeps its convolution rules.

"Convolutions" are ``Conv1d/2d/3d`` and the transposed ``ConvTranspose1d/2d/3d`` (a linear map like a
convolution: every rule applies with the transposed operator). ε is the call's ``epsilon=``, γ its ``gamma=``,
the zᴮ bounds its ``low=``/``high=``; the stabilisers of z⁺ and αβ (1e-9) and of γ and zᴮ (1e-6) are those
rules' defaults (denominators of one sign, kept away from 0 only) — choose them with your own
:class:`Composite`. ``result.rules`` lists the rule every layer got.

Each named composite is a registered builder that declares its own parameters (``epsilon_gamma_box``:
``epsilon``, ``gamma``, ``low``, ``high``; the others: ``epsilon``); :func:`get_composite` passes it only those,
and refuses one it does not take. :func:`register_composite` adds your own names; ``COMPOSITES`` lists them all.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from ..._base.validation import suggest
from .functional import FunctionalRules
from .ops import POOLS, TRANSPOSED, Scale
from .rules import AlphaBeta, Epsilon, Flat, Gamma, Norm, NormIdentity, Pass, Rule, ZBox, ZPlus, _number

__all__ = [
    "Composite", "Sum", "Scale", "COMPOSITES", "ATTENTION_VARIANTS", "NORMS", "ACTIVATIONS", "TRANSPARENT", "CONVS", "DENSE", "get_composite",
    "register_composite", "unregister_composite",
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

#: The attention treatments a :class:`Composite` takes as ``attention=`` (:mod:`.attention`).
ATTENTION_VARIANTS = ("attn_lrp", "cp_lrp")

#: Normalisation layers the attention composites give :class:`~.rules.NormIdentity`.
NORMS: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


#: The default ε of a composite's own ε rules (unmerged batch norms, layer scales) and of :func:`nbexplain.lrp`.
DEFAULT_EPSILON = 1e-6
#: The stabiliser of the proportional splits (average pooling, residual sums) unless ε is smaller.
_NORM_EPSILON = 1e-9


def _base_map(epsilon: float, attention: str | None = None) -> list[tuple[tuple[type, ...], Rule]]:
    norm = Norm(epsilon=min(_NORM_EPSILON, epsilon))
    base: list[tuple[tuple[type, ...], Rule]] = [
        (ACTIVATIONS, Pass()),
        (POOLS, norm),
        (BATCHNORMS, Epsilon(epsilon)),
        ((Scale,), Epsilon(epsilon)),
        ((Sum,), norm),
    ]
    if attention is not None:
        base.append((NORMS, NormIdentity(epsilon)))
    return base


def rms_like(module: nn.Module) -> bool:
    """A hand-written RMS norm (LLaMA's ``LlamaRMSNorm``, T5's ``T5LayerNorm``): a leaf whose class name says so,
    with a ``weight`` and an ``eps`` / ``variance_epsilon``. :func:`.attention.norm_node` checks that it computes
    ``weight · x / rms(x)`` before explaining it so."""
    kind = type(module).__name__
    return (
        ("RMSNorm" in kind or kind == "T5LayerNorm")
        and next(iter(module.children()), None) is None
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and isinstance(getattr(module, "eps", getattr(module, "variance_epsilon", None)), float)
    )


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
        With ``attention``, also the ε of the attention rules and of :class:`~.rules.NormIdentity`.
    attention
        ``None`` (default), ``"attn_lrp"`` or ``"cp_lrp"``: explain attention and the other functional operations
        of transformers by AttnLRP's rules (or CP-LRP's: no relevance through queries and keys), see
        :mod:`.attention`; normalisation layers then get :class:`~.rules.NormIdentity` unless you map them.

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
        *,
        first: Rule | None = None,
        name: str = "custom",
        epsilon: float = DEFAULT_EPSILON,
        attention: str | None = None,
    ) -> None:
        rules = dict(rules or {})
        self.names: dict[str, Rule] = {}
        self.types: list[tuple[tuple[type, ...], Rule]] = []
        for key, rule in rules.items():
            if not isinstance(rule, Rule):
                raise TypeError(
                    f"Composite rules must be Rule instances (e.g. nx.rules.Epsilon()), got {rule!r} for key {key!r}."
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
        if attention is not None and attention not in ATTENTION_VARIANTS:
            raise ValueError(
                f"`attention` must be None or one of {list(ATTENTION_VARIANTS)} (AttnLRP, CP-LRP), got {attention!r}."
            )
        self.attention = attention
        self._base = _base_map(self.epsilon, attention)

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
        if self.attention is not None and rms_like(module):
            return NormIdentity(self.epsilon)
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
        attention = f", attention={self.attention!r}" if self.attention is not None else ""
        return f"Composite({self.name!r}, {{{', '.join(parts)}}}{first}{attention})"

    def functional_rules(self, model: nn.Module, strict: bool) -> Any:
        """The torch-function mode that explains functional operations during a pass (``None``: none, for a
        composite without ``attention`` under ``strict``)."""
        if self.attention is not None:
            from .attention import AttentionRules  # noqa: PLC0415 (attention imports the engine, which imports this)

            return AttentionRules(model, epsilon=self.epsilon, variant=self.attention, strict=strict)
        return None if strict else FunctionalRules(model)


# ----------------------------------------------------------------------------------------------------
# the registry of named composites
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """A named composite: its builder and the parameters the builder declares (name → default, or
    ``_REQUIRED``)."""

    builder: Callable[..., Composite]
    params: dict[str, Any]
    builtin: bool


_REQUIRED = inspect.Parameter.empty
_REGISTRY: dict[str, _Entry] = {}


def _declared(name: str, builder: Callable[..., Composite]) -> dict[str, Any]:
    """The parameters ``builder`` takes by keyword, with their defaults; ``*args``/``**kwargs`` are refused
    (every parameter of a composite is declared by name, so that a misspelt one is caught)."""
    if not callable(builder):
        raise TypeError(f"`builder` of composite {name!r} must be a function returning an nx.Composite, got {builder!r}.")
    try:
        sig = inspect.signature(builder)
    except (TypeError, ValueError):
        raise TypeError(f"The builder of composite {name!r} has no readable signature; pass a Python function.") from None
    params: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.kind is p.POSITIONAL_ONLY:
            raise TypeError(
                f"The builder of composite {name!r} must declare its parameters by name "
                f"(`def build(epsilon=1e-6, …)`), not as {p}."
            )
        params[p.name] = p.default
    return params


def register_composite(name: str, builder: Callable[..., Composite]) -> None:
    """Register a named composite: ``nx.lrp(..., composite=name)`` then calls ``builder``.

    ``builder`` returns an :class:`Composite` and declares the parameters it takes as keyword parameters with
    defaults; :func:`nbexplain.lrp` passes it those of its ``epsilon``/``gamma``/``low``/``high`` that the call
    gives, and refuses (naming the composite and its parameters) one the builder does not declare. A builder
    that takes ``epsilon`` should pass it on as ``Composite(..., epsilon=epsilon)``, so that it reaches the
    composite's own ε rules (unmerged batch norms, layer scales). The name joins ``nx.COMPOSITES``.
    Registering a name again replaces your earlier builder (a notebook cell can run twice); the built-in
    names cannot be replaced.

    Parameters
    ----------
    name
        The composite's name, a non-empty string.
    builder
        A function of keyword parameters returning an :class:`Composite`.

    Examples
    --------
    >>> import torch
    >>> import nbexplain as nx
    >>> def gamma_everywhere(gamma=0.25, epsilon=1e-6):
    ...     return nx.Composite({(torch.nn.Linear, torch.nn.Conv2d): nx.rules.Gamma(gamma)}, name="gamma_everywhere",
    ...                         epsilon=epsilon)
    >>> nx.register_composite("gamma_everywhere", gamma_everywhere)
    >>> "gamma_everywhere" in nx.COMPOSITES
    True
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> res = nx.lrp(net, torch.rand(3, 4), 0, composite="gamma_everywhere", gamma=0.5)
    >>> res.rules["0"]
    Gamma(gamma=0.5, epsilon=1e-06, bias=True)
    >>> nx.unregister_composite("gamma_everywhere")
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string, got {name!r}.")
    old = _REGISTRY.get(name)
    if old is not None and old.builtin:
        raise ValueError(
            f"{name!r} is a built-in composite and cannot be replaced; register yours under another name."
        )
    _REGISTRY[name] = _Entry(builder, _declared(name, builder), builtin=False)


def unregister_composite(name: str) -> None:
    """Remove a composite added with :func:`register_composite` (the built-in ones stay).

    Examples
    --------
    >>> import nbexplain as nx
    >>> nx.register_composite("mine", lambda epsilon=1e-6: nx.Composite({}, name="mine", epsilon=epsilon))
    >>> nx.unregister_composite("mine")
    >>> "mine" in nx.COMPOSITES
    False
    """
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"No composite {name!r} is registered.{suggest(str(name), list(COMPOSITES))} "
                         f"Named composites: {list(COMPOSITES)}.")
    if entry.builtin:
        raise ValueError(f"{name!r} is a built-in composite and cannot be removed.")
    del _REGISTRY[name]


def _builtin(name: str) -> Callable[[Callable[..., Composite]], Callable[..., Composite]]:
    def add(builder: Callable[..., Composite]) -> Callable[..., Composite]:
        _REGISTRY[name] = _Entry(builder, _declared(name, builder), builtin=True)
        return builder

    return add


def _standard(name: str, convs: Rule, first: Rule | None, epsilon: float) -> Composite:
    """ε on dense layers, ``convs`` on convolutions, ``first`` on the first layer."""
    return Composite({CONVS: convs, DENSE: Epsilon(epsilon)}, first=first, name=name, epsilon=epsilon)


@_builtin("epsilon")
def _epsilon(epsilon: float = DEFAULT_EPSILON) -> Composite:
    eps = Epsilon(epsilon)
    return Composite({CONVS: eps, DENSE: eps}, name="epsilon", epsilon=epsilon)


@_builtin("epsilon_plus")
def _epsilon_plus(epsilon: float = DEFAULT_EPSILON) -> Composite:
    return _standard("epsilon_plus", ZPlus(), None, epsilon)


@_builtin("epsilon_plus_flat")
def _epsilon_plus_flat(epsilon: float = DEFAULT_EPSILON) -> Composite:
    return _standard("epsilon_plus_flat", ZPlus(), Flat(), epsilon)


@_builtin("epsilon_gamma_box")
def _epsilon_gamma_box(
    epsilon: float = DEFAULT_EPSILON, gamma: float = 0.25, low: Any = None, high: Any = None
) -> Composite:
    # γ and the zᴮ bounds are checked by their rules (the bounds when used: None is the batch's range)
    return _standard("epsilon_gamma_box", Gamma(gamma), ZBox(low, high), epsilon)


@_builtin("epsilon_alpha2_beta1")
def _epsilon_alpha2_beta1(epsilon: float = DEFAULT_EPSILON) -> Composite:
    return _standard("epsilon_alpha2_beta1", AlphaBeta(2.0, 1.0), None, epsilon)


@_builtin("epsilon_alpha2_beta1_flat")
def _epsilon_alpha2_beta1_flat(epsilon: float = DEFAULT_EPSILON) -> Composite:
    return _standard("epsilon_alpha2_beta1_flat", AlphaBeta(2.0, 1.0), Flat(), epsilon)


def _attention(name: str, epsilon: float, gamma: float | None) -> Composite:
    layer = Epsilon(epsilon) if gamma is None else Gamma(gamma)
    return Composite({CONVS: layer, DENSE: layer}, name=name, epsilon=epsilon, attention=name)


@_builtin("attn_lrp")
def _attn_lrp(epsilon: float = DEFAULT_EPSILON, gamma: float | None = None) -> Composite:
    return _attention("attn_lrp", epsilon, gamma)


@_builtin("cp_lrp")
def _cp_lrp(epsilon: float = DEFAULT_EPSILON, gamma: float | None = None) -> Composite:
    return _attention("cp_lrp", epsilon, gamma)


class _Names(Sequence[str]):
    """The registered composite names, in registration order (built-ins first); a live, read-only view."""

    def __getitem__(self, i: Any) -> Any:
        return tuple(_REGISTRY)[i]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in _REGISTRY

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (tuple, list, _Names)) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


#: The named composites accepted by ``nx.lrp(..., composite=name)``: the built-ins, then those added with
#: :func:`register_composite` (a live view of the registry).
COMPOSITES: Sequence[str] = _Names()


def _params_text(params: Mapping[str, Any]) -> str:
    if not params:
        return "it takes no parameters"
    shown = [p if d is _REQUIRED else f"{p}={d!r}" for p, d in params.items()]
    return f"its parameters: {', '.join(shown)}"


def _build_named(name: str, params: dict[str, Any]) -> Composite:
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown composite {name!r}.{suggest(name, list(COMPOSITES))} Named composites: {list(COMPOSITES)}; "
            "or pass nx.Composite({layer type or name: rule}), or add one with nx.register_composite."
        )
    entry = _REGISTRY[name]
    extra = [p for p in params if p not in entry.params]
    if extra:
        raise TypeError(
            f"The composite {name!r} does not take `{extra[0]}` ({_params_text(entry.params)}); leave "
            f"`{extra[0]}` out, or choose a composite that uses it"
            + (" (`gamma`, `low` and `high` are those of 'epsilon_gamma_box')." if extra[0] in ("gamma", "low", "high") else ".")
        )
    missing = [p for p, d in entry.params.items() if d is _REQUIRED and p not in params]
    if missing:
        raise TypeError(f"The composite {name!r} needs `{missing[0]}` ({_params_text(entry.params)}).")
    comp = entry.builder(**params)
    if not isinstance(comp, Composite):
        raise TypeError(f"The builder of composite {name!r} returned {type(comp).__name__}, not an nx.Composite.")
    return comp


def get_composite(composite: str | Composite | Rule | Mapping[Key, Rule], **params: Any) -> Composite:
    """Resolve a composite name, a :class:`Composite`, a plain ``{key: rule}`` mapping, or a single rule
    (applied to every Linear and Conv layer, transposed convolutions included).

    ``params`` (``None`` values count as left out) go to a named composite's builder, which must declare each one (``epsilon_gamma_box`` takes
    ``epsilon``, ``gamma``, ``low`` and ``high``; the others ``epsilon``; see :func:`register_composite`); one it
    does not declare raises a ``TypeError`` naming the composite and its parameters. A :class:`Composite`,
    a mapping or a rule take ``epsilon`` only: the ε of every ε rule the composite assigns itself (see
    :class:`Composite`). Left out: 1e-6, or the ε of an ε rule given as ``composite`` (so that
    ``nx.rules.Epsilon(1e-9)`` means ε = 1e-9 everywhere). A :class:`Composite` keeps its own.

    Examples
    --------
    >>> from nbexplain.core.attribution.lrp import get_composite
    >>> get_composite("epsilon_plus_flat").first
    Flat()
    >>> get_composite("epsilon_gamma_box", gamma=0.5).rule_for("c", torch.nn.Conv2d(1, 1, 1))
    Gamma(gamma=0.5, epsilon=1e-06, bias=True)
    """
    params = {k: v for k, v in params.items() if v is not None}  # None: left out (the builder's default)
    if isinstance(composite, str):
        return _build_named(composite, params)
    if not isinstance(composite, (Composite, Rule, Mapping)):
        raise TypeError(
            f"`composite` must be a name {list(COMPOSITES)}, an nx.Composite, a rule or a dict "
            f"{{layer type or name: rule}}, got {type(composite).__name__}."
        )
    extra = [p for p in params if p != "epsilon"]
    if extra:
        what = composite.name if isinstance(composite, Composite) else repr(composite)
        raise TypeError(
            f"`{extra[0]}` applies to named composites only (`gamma`, `low`, `high`: 'epsilon_gamma_box'); the "
            f"composite {what} has its rules already; set it in the rule (e.g. nx.rules.Gamma(gamma=…), nx.rules.ZBox(low, high)) "
            f"and leave `{extra[0]}` out."
        )
    epsilon = params.get("epsilon")
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
    return Composite(composite, epsilon=epsilon)
