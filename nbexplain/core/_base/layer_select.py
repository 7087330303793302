"""Finding the analysable layers of a model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Union

import torch
from torch import nn

from .hygiene import preserved
from .machinery import Handles
from .validation import check_model, renamed_arguments, suggest

__all__ = ["list_layers", "LayerList", "LAYER_KINDS", "resolve_modules"]

#: Named groups of module types accepted by ``list_layers(model, kinds=...)``.
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

KindsArg = Union[None, str, type, Iterable[Union[str, type]]]


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


@renamed_arguments(example="inputs")
def list_layers(
    model: nn.Module, inputs: Any = None, *, kinds: KindsArg = None, layout: Any = None
) -> list[str]:
    """Qualified names of a model's analysable layers, in forward order.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``. For a ``torch.compile``'d model the names are those of the eager module
        behind it (``model._orig_mod``), without the ``_orig_mod.`` prefix.
    inputs
        An optional input batch: a tensor, or for a model with several inputs a tuple (positional), a dict
        (keyword) or ``nx.Inputs(x, mask=m)``, called as ``model(*args, **kwargs)``. Without it the order
        is the order in which modules were registered
        (the forward order for ``nn.Sequential`` and most hand-written models); with it the layers are
        ordered by when they first run in a real forward pass, and layers that never run are dropped; the
        returned :class:`LayerList` then also reports each layer's output shape and layout (``.layouts``,
        ``.shapes``, ``.table()``).
    kinds
        Which layers count. ``None`` (default) selects Linear and Conv/ConvTranspose layers; a kind name
        (``"linear"``, ``"conv"``, ``"norm"``, ``"activation"``, ``"pool"``), ``"all"`` (every leaf
        module), a module class, or a list of these.
    layout
        With ``inputs``: layout overrides to show, as accepted by :func:`nbexplain.activations`.

    Returns
    -------
    list of str
        Names usable with :func:`nbexplain.activations` and :func:`nbexplain.capture`.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> nx.list_layers(net)
    ['0', '2']
    >>> nx.list_layers(net, kinds="all")
    ['0', '1', '2']
    >>> nx.list_layers(net, torch.rand(3, 4)).shapes["2"]   # with an input batch: shapes and layouts too
    (3, 2)
    """
    model = check_model(model, what="nx.list_layers")
    if isinstance(inputs, (str, type)) or (
        isinstance(inputs, (list, tuple)) and inputs and all(isinstance(k, (str, type)) for k in inputs)
    ):
        raise TypeError(
            f"list_layers(): the second argument is `inputs` (an example batch); layer kinds are keyword-only: "
            f"nx.list_layers(model, kinds={inputs!r})."
        )
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
    if inputs is None:
        return names
    return _run_example(model, names, inputs, layout)


class LayerList(list):
    """The layers ``nx.list_layers(model, x)`` found, in the order they ran, with what was seen of them.

    Attributes
    ----------
    layouts : dict[str, str]
        How each layer's output is read: ``"channels_first"`` ``(N, C, …)``, ``"features_last"``
        ``(N, …, D)`` or ``"sequence_first"`` ``(T, N, D)`` (see :mod:`nbexplain.core._base.layouts`).
    shapes : dict[str, tuple[int, ...]]
        Each layer's output shape for the ``inputs`` batch.
    reasons : dict[str, str]
        Why each layout was chosen (the module's type, its input, its rank, or ``layout=``).
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        super().__init__(names)
        self.layouts: dict[str, str] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.reasons: dict[str, str] = {}

    def table(self) -> str:
        """One line per layer: name, output shape, layout and why."""
        rows = [(n, str(self.shapes.get(n, "")), self.layouts.get(n, "?"), self.reasons.get(n, "")) for n in self]
        widths = [max([len(r[i]) for r in rows] + [len(h)]) for i, h in enumerate(("layer", "output", "layout", "why"))]
        head = ("layer", "output", "layout", "why")
        lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(line.rstrip() for line in lines)


def _run_example(model: nn.Module, names: list[str], example: Any, layout: Any) -> LayerList:
    """Run the ``inputs`` batch ``example`` once (eval, no grad) and record the order, output shapes and
    layouts of ``names``."""
    from .layouts import LayoutProbe, check_layout_arg
    from .model_inputs import as_inputs, call_model
    from .model_io import check_runnable

    check_runnable(model)
    batch = as_inputs(example, "inputs").to_model(model)
    modules = dict(model.named_modules())
    watched = {n: modules[n] for n in names}
    found = LayerList()
    probe = LayoutProbe(model, watched, check_layout_arg(layout, names))
    with preserved(model), Handles() as handles:
        for n in names:
            def hook(m: nn.Module, inputs: Any, out: Any, n: str = n) -> None:
                t = out[0] if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor) else out
                if n in found or not isinstance(t, torch.Tensor):
                    return
                found.append(n)
                found.shapes[n] = tuple(t.shape)
                probe.layout(n, m, inputs, t)
            handles.add(watched[n].register_forward_hook(hook))
        try:
            probe.start()
            model.eval()
            with torch.no_grad():
                call_model(model, batch, "inputs")
        finally:
            probe.stop()
    found.layouts = {n: probe.layouts[n] for n in found}
    found.reasons = {n: probe.how[n] for n in found}
    return found


def resolve_modules(model: nn.Module, names: str | Sequence[str], argname: str = "layers") -> dict[str, nn.Module]:
    """Map layer names (any submodule name, not only the default kinds) to modules, validating them.

    The keys are the names as given; a compiled model's names may keep or leave out their ``_orig_mod``
    parts (see :func:`~nbexplain.core._base.validation.match_layer_names`).
    """
    from .validation import match_layer_names

    modules = dict(model.named_modules())
    available = [n for n in modules if n != ""]
    matched = match_layer_names(names, available, argname)
    return {n: modules[own] for n, own in matched.items()}
