"""Finding the analysable layers of a model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union

import torch
from torch import nn

from .hygiene import model_device, preserved
from .validation import check_model, suggest

__all__ = ["layers", "LAYER_KINDS", "resolve_modules", "is_channel_first", "layout_resolver"]

#: Named groups of module types accepted by ``layers(model, kinds=...)``.
LAYER_KINDS: dict[str, tuple[type[nn.Module], ...]] = {
    "linear": (nn.Linear, nn.Bilinear),
    "conv": (
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.ConvTranspose1d,
        nn.ConvTranspose2d,
        nn.ConvTranspose3d,
    ),
    "norm": (
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.InstanceNorm3d,
    ),
    "activation": (
        nn.ReLU,
        nn.LeakyReLU,
        nn.ELU,
        nn.GELU,
        nn.SiLU,
        nn.Tanh,
        nn.Sigmoid,
        nn.Softplus,
        nn.ReLU6,
        nn.Mish,
        nn.Hardtanh,
        nn.PReLU,
    ),
    "pool": (
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.MaxPool3d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AvgPool3d,
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveAvgPool3d,
        nn.AdaptiveMaxPool1d,
        nn.AdaptiveMaxPool2d,
        nn.AdaptiveMaxPool3d,
    ),
}

# Module types whose outputs are channel-first (N, C, *spatial).
_CHANNEL_FIRST = LAYER_KINDS["conv"] + LAYER_KINDS["pool"] + (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
    nn.Dropout2d,
    nn.Dropout3d,
)

KindsArg = Union[None, str, type, Iterable[Union[str, type]]]


# Module types whose outputs put features on the last dimension (N, …, F).
_CHANNEL_LAST = LAYER_KINDS["linear"] + (nn.LayerNorm, nn.Embedding, nn.MultiheadAttention)


def _known_layout(module: nn.Module) -> bool | None:
    """True/False for modules whose type fixes the layout; None for layout-agnostic ones (ReLU, Dropout…)."""
    if isinstance(module, _CHANNEL_FIRST):
        return True
    if isinstance(module, _CHANNEL_LAST):
        return False
    return None


def is_channel_first(
    module: nn.Module, model: nn.Module | None = None, name: str | None = None, ndim: int | None = None
) -> bool:
    """Whether a module's output is laid out channels-first ``(N, C, …)`` (conv-like).

    Conv, pooling and 2-D/3-D norm layers are channels-first; Linear, LayerNorm and embeddings put
    features last. A layout-agnostic module (an activation, dropout, identity, a custom block) takes the
    layout of the nearest layer with a known layout registered before it in ``model`` (so ``relu1``
    after ``conv1`` is channels-first, and a GELU after a Linear is channels-last); without such a layer
    an output of rank ≥ 4 is read as channels-first and rank 3 as ``(N, T, F)`` tokens.

    Parameters
    ----------
    module
        The layer.
    model, name
        The model and the layer's qualified name, to look at the layers before it.
    ndim
        Rank of the layer's output, for the fallback rule.
    """
    known = _known_layout(module)
    if known is not None:
        return known
    if model is not None and name is not None:
        previous = _previous_layout(model, name)
        if previous is not None:
            return previous
    return ndim is not None and ndim >= 4


def _previous_layout(model: nn.Module, name: str) -> bool | None:
    """Layout of the nearest leaf registered before ``name`` whose type fixes it (None if there is none)."""
    previous: bool | None = None
    for other_name, other in model.named_modules():
        if other_name == name:
            break
        if len(list(other.children())) == 0:
            layout = _known_layout(other)
            if layout is not None:
                previous = layout
    return previous


def layout_resolver(model: nn.Module, modules: dict[str, nn.Module]) -> Callable[[str, int], bool]:
    """:func:`is_channel_first` for several layers of one model, each layer's lookup done once.

    Returns ``channel_first(name, ndim)``; use it on hot paths (every batch) instead of calling
    :func:`is_channel_first` with the model, which walks the model's modules on each call.
    """
    known: dict[str, bool | None] = {}
    for name, module in modules.items():
        layout = _known_layout(module)
        known[name] = layout if layout is not None else _previous_layout(model, name)

    def channel_first(name: str, ndim: int) -> bool:
        layout = known[name]
        return layout if layout is not None else ndim >= 4

    return channel_first


def _resolve_kinds(kinds: KindsArg) -> tuple[type[nn.Module], ...] | None:
    """Turn the ``kinds`` argument into a tuple of module types (``None`` = every leaf module)."""
    if kinds is None:
        return LAYER_KINDS["linear"] + LAYER_KINDS["conv"]
    items: list[Any] = [kinds] if isinstance(kinds, (str, type)) else list(kinds)
    types: list[type[nn.Module]] = []
    for item in items:
        if isinstance(item, str):
            if item == "all":
                return None
            if item not in LAYER_KINDS:
                options = sorted(LAYER_KINDS) + ["all"]
                raise ValueError(
                    f"`kinds` entry {item!r} is not a known layer kind; use one of {options} "
                    f"or module classes such as torch.nn.Conv2d.{suggest(item, options)}"
                )
            types.extend(LAYER_KINDS[item])
        elif isinstance(item, type) and issubclass(item, nn.Module):
            types.append(item)
        else:
            raise TypeError(
                f"`kinds` must contain layer-kind names or nn.Module subclasses, got {item!r}."
            )
    return tuple(types)


def layers(model: nn.Module, kinds: KindsArg = None, example: torch.Tensor | None = None) -> list[str]:
    """Qualified names of a model's analysable layers, in forward order.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.
    kinds
        Which layers count. ``None`` (default) selects Linear and Conv/ConvTranspose layers; a kind name
        (``"linear"``, ``"conv"``, ``"norm"``, ``"activation"``, ``"pool"``), ``"all"`` (every leaf
        module), a module class, or a list of these.
    example
        An optional input batch. Without it the order is the order in which modules were registered
        (the forward order for ``nn.Sequential`` and most hand-written models); with it the layers are
        ordered by when they first run in a real forward pass, and layers that never run are dropped.

    Returns
    -------
    list of str
        Names usable with :func:`nbexplain.activations` and :func:`nbexplain.capture`.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> nx.layers(net)
    ['0', '2']
    >>> nx.layers(net, kinds="all")
    ['0', '1', '2']
    """
    check_model(model)
    types = _resolve_kinds(kinds)
    names = []
    for name, mod in model.named_modules():
        if name == "":
            continue
        if types is None:
            if len(list(mod.children())) == 0:
                names.append(name)
        elif isinstance(mod, types):
            names.append(name)
    if example is None:
        return names
    order: list[str] = []
    modules = dict(model.named_modules())
    with preserved(model):
        handles = []
        for n in names:
            def hook(_m: nn.Module, _i: Any, _o: Any, n: str = n) -> None:
                if n not in order:
                    order.append(n)
            handles.append(modules[n].register_forward_hook(hook))
        try:
            model.eval()
            with torch.no_grad():
                model(example.to(model_device(model)))
        finally:
            for h in handles:
                h.remove()
    return order


def resolve_modules(model: nn.Module, names: str | Sequence[str], argname: str = "layers") -> dict[str, nn.Module]:
    """Map layer names (any submodule name, not only the default kinds) to modules, validating them."""
    from .validation import check_layer_names

    modules = dict(model.named_modules())
    available = [n for n in modules if n != ""]
    resolved = check_layer_names(names, available, argname)
    return {n: modules[n] for n in resolved}
