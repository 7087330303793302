"""Which axis of a layer's output holds its features: the layout of every analysed layer.

A layer's output is read in one of three layouts:

- ``"channels_first"``: ``(N, C, *spatial)`` — convolutions, pooling, batch/instance/group norm, upsampling;
- ``"features_last"``: ``(N, …, D)`` — linear layers, LayerNorm, embeddings, attention, transformer layers and
  batch-first recurrent layers (a token output ``(N, T, D)`` is ``N·T`` samples of ``D`` features);
- ``"sequence_first"``: ``(T, N, D)`` — transformer and recurrent modules built with ``batch_first=False``
  (PyTorch's default for ``nn.TransformerEncoderLayer`` and ``nn.LSTM``).

The layout follows what the module *is*. A module whose type does not fix it (an activation, dropout, a
custom block, a container) is resolved while the model runs, by :class:`LayoutProbe`, in this order:

1. the user's ``layout=`` for that layer;
2. the module's type (the lists above);
   A Linear or LayerNorm is features-last, and sequence-first when its input is (it keeps the batch axis);
3. the tensor it returns, when an inner module produced it (a ResNet block returns its last ReLU's output);
4. its first input, when that tensor's layout is known and the output has the same rank (a ReLU after a
   conv; ``x + conv(x)``);
5. the output of the most recent module whose layout is known, when the shapes are equal;
6. the rank: 4 or more dimensions are channels-first, 3 are tokens ``(N, T, D)``.

The resolved layouts are reported by ``nx.list_layers(model, x).layouts`` and in results' reprs.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from .machinery import Handles
from .validation import check_choice, suggest

__all__ = ["LAYOUTS", "LayoutArg", "LayoutProbe", "known_layout", "rank_layout", "check_layout_arg"]

#: The layouts a layer output can be read in.
LAYOUTS = ("channels_first", "features_last", "sequence_first")

#: ``layout=``: one layout for every layer, or a mapping from layer name to layout.
LayoutArg = Union[None, str, Mapping[str, str]]

_CHANNELS_FIRST: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LocalResponseNorm,
    nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
    nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
)
_FEATURES_LAST: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, nn.LazyLinear, nn.LayerNorm, nn.Embedding, nn.EmbeddingBag,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
# Features-last modules that keep their input's batch axis: inside a sequence-first model (batch_first=False)
# a Linear or LayerNorm maps (T, N, D) to (T, N, D'), so their batch axis is resolved from their input.
_KEEPS_BATCH_AXIS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Bilinear, nn.LayerNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)
# Modules that are features-last when batch_first, sequence-first otherwise.
_SEQUENCE: tuple[type[nn.Module], ...] = (
    nn.MultiheadAttention, nn.RNNBase, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
    nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer,
)


def _batch_first(module: nn.Module) -> bool:
    """``batch_first`` of a sequence module (for containers: of the first inner module that has it)."""
    if hasattr(module, "batch_first"):
        return bool(module.batch_first)
    for inner in module.modules():
        if hasattr(inner, "batch_first"):
            return bool(inner.batch_first)
    return True


def known_layout(module: nn.Module) -> str | None:
    """The layout the module's type fixes, or ``None`` for layout-agnostic modules (activations, blocks…)."""
    if isinstance(module, _CHANNELS_FIRST):
        return "channels_first"
    if isinstance(module, _FEATURES_LAST):
        return "features_last"
    if isinstance(module, _SEQUENCE):
        return "features_last" if _batch_first(module) else "sequence_first"
    return None


def rank_layout(ndim: int) -> str:
    """The last resort: rank ≥ 4 is channels-first (images, volumes), rank ≤ 3 is features-last (tokens)."""
    return "channels_first" if ndim >= 4 else "features_last"


def check_layout_arg(layout: Any, names: list[str], argname: str = "layout") -> dict[str, str]:
    """Validate ``layout=`` and return the per-layer overrides it sets."""
    if layout is None:
        return {}
    if isinstance(layout, str):
        check_choice(layout, argname, LAYOUTS)
        return {n: layout for n in names}
    if not isinstance(layout, Mapping):
        raise TypeError(
            f"`{argname}` must be None, one of {list(LAYOUTS)}, or a dict from layer name to layout; "
            f"got {type(layout).__name__}."
        )
    out: dict[str, str] = {}
    for name, value in layout.items():
        if name not in names:
            raise ValueError(
                f"`{argname}` names layer {name!r}, which is not among the analysed layers {names}."
                f"{suggest(str(name), names)}"
            )
        out[name] = check_choice(value, f"{argname}[{name!r}]", LAYOUTS)
    return out


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


class LayoutProbe:
    """Resolves the layouts of ``names`` while the model runs (see the module docstring for the rules).

    While started, a forward hook on every module records the layout of each tensor a module returns, so a
    later layer can look up where its input came from. Once every watched layer is resolved the hooks do
    nothing; :meth:`stop` removes them. Use as a context manager, or :meth:`start`/:meth:`stop`.

    Parameters
    ----------
    model
        The model that will run.
    modules
        The watched layers, name → module.
    overrides
        Per-layer layouts set by the user (from :func:`check_layout_arg`).
    batch_axis
        Whether the caller needs the batch axis of token outputs (``"sequence_first"`` vs ``"features_last"``).
        Without it, Linear/LayerNorm layers are features-last by their type and need no watching (a δ
        projection acts on the feature axis only).
    """

    def __init__(
        self, model: nn.Module, modules: Mapping[str, nn.Module], overrides: Mapping[str, str] | None = None,
        batch_axis: bool = True,
    ) -> None:
        self.model = model
        self.modules = dict(modules)
        self.overrides = dict(overrides or {})
        self.layouts: dict[str, str] = {}
        self.how: dict[str, str] = {}
        self._by_module = {id(m): n for n, m in self.modules.items()}
        self._tensors: dict[int, tuple[weakref.ref, str]] = {}
        self._last: tuple[tuple[int, ...], str] | None = None
        self._module_layout: dict[int, str] = {}
        self._handles = Handles()
        self.batch_axis = batch_axis
        self.done = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LayoutProbe:
        """Attach the recording hooks (none when every layer's layout is fixed by override or type)."""
        for name, module in self.modules.items():
            fixed = self.overrides.get(name)
            if fixed is None and not (self.batch_axis and isinstance(module, _KEEPS_BATCH_AXIS)):
                fixed = known_layout(module)
            if fixed is not None:
                self.layouts[name] = fixed
                self.how[name] = "set by layout=" if name in self.overrides else f"{type(module).__name__} layer"
        self.done = len(self.layouts) == len(self.modules)
        if not self.done:
            seen: set[int] = set()
            for module in self.model.modules():
                if id(module) not in seen:
                    seen.add(id(module))
                    self._handles.add(module.register_forward_hook(self._record))
        return self

    def stop(self) -> None:
        """Remove the hooks and forget the recorded tensors."""
        self._handles.remove()
        self._tensors.clear()

    def __enter__(self) -> LayoutProbe:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ resolution
    def layout(self, name: str, module: nn.Module, inputs: Any, output: torch.Tensor) -> str:
        """The layout of ``name``'s output; resolved on its first call, then cached."""
        found = self.layouts.get(name)
        if found is None:
            found, how = self._infer(module, inputs, output)
            self.layouts[name] = found
            self.how[name] = how
            self.done = len(self.layouts) == len(self.modules)
        return found

    def _lookup(self, t: torch.Tensor) -> str | None:
        entry = self._tensors.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return None

    def _infer(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> tuple[str, str]:
        fixed = known_layout(module)
        first = _first_tensor(inputs)
        if self.batch_axis and isinstance(module, _KEEPS_BATCH_AXIS) and output.ndim >= 3 and first is not None:
            source = self._lookup(first)
            if source is None and self._last is not None and self._last[0] == tuple(first.shape):
                source = self._last[1]  # its input came from a functional op: the previous output of that shape
            if first.ndim == output.ndim and source == "sequence_first":
                return "sequence_first", f"{type(module).__name__} layer on a sequence-first input"
        if fixed is not None:
            return fixed, f"{type(module).__name__} layer"
        produced = self._lookup(output)
        if produced is not None:
            return produced, "the inner layer that produced its output"
        if first is not None:
            from_input = self._lookup(first)
            if from_input is not None and first.ndim == output.ndim:
                return from_input, "its input"
        if self._last is not None and self._last[0] == tuple(output.shape):
            return self._last[1], "the previous layer of the same shape"
        return rank_layout(output.ndim), f"its rank ({output.ndim} dimensions)"

    def _record(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self.done:
            return
        out = _first_tensor(output)
        if out is None:
            return
        name = self._by_module.get(id(module))
        if name is not None:
            layout = self.layout(name, module, inputs, out)
            how = self.how[name]
        else:
            layout, how = self._infer(module, inputs, out)
        self._tensors[id(out)] = (weakref.ref(out), layout)
        if not how.startswith("its rank"):
            self._last = (tuple(out.shape), layout)
