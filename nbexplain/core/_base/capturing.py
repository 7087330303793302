"""Capturing layer outputs: a context manager and a batched feature extractor.

What is kept for a layer is the value it produced, even when later code writes into that tensor in place
(torchvision's ResNet blocks run ``ReLU(inplace=True)`` and ``out += identity`` on outputs a hook has seen).
A hook's ``out.detach()`` shares storage with the output, so :class:`_InPlaceGuard` clones a layer's output on
its first call and learns from the tensor's version counter, at the end of that forward pass, whether anything
wrote into it; only layers that are written into keep being cloned. An unexpected later write (one that only
some inputs trigger) is never returned silently: reading that entry raises, and :func:`run_layers` repeats the
batch with that layer cloned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Union

import torch
from torch import nn

from .hygiene import preserved
from .layer_select import resolve_modules
from .layouts import LAYOUTS, LayoutArg, LayoutProbe, check_layout_arg
from .machinery import Handles, check_progress, progress_bar
from .model_inputs import InputKey, Inputs, as_inputs, call_model, iter_inputs
from .model_io import check_runnable
from .validation import check_choice, check_finite, check_model, check_positive_int, renamed_arguments

__all__ = [
    "capture", "Captured", "StaleCaptureError", "activations", "run_layers", "to_features", "features_first", "iter_batches",
    "count_batches", "prepared_batches", "CONV_MODES",
]

#: How a layer output becomes ``(n_samples, n_features)``: every position/token a sample (``"channels"``),
#: pooled over positions/tokens (``"mean"``, ``"max"``), everything one vector (``"flatten"``), or the
#: first token of a token output (``"cls"``).
CONV_MODES = ("channels", "mean", "max", "flatten", "cls")

#: What ``inputs=`` / ``data=`` accept: a tensor, a tuple or dict of tensors, ``nx.Inputs`` (one batch), or an
#: iterable of batches (see :mod:`nbexplain.core._base.model_inputs`).
InputsArg = Union[torch.Tensor, tuple, Mapping[str, Any], Inputs, Iterable[Any]]


class StaleCaptureError(RuntimeError):
    """A captured output was written in place after the hook saw it; run the forward pass again."""


def _version(t: torch.Tensor) -> int | None:
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors have no version counter
        return None


class _InPlaceGuard:
    """Decides per layer whether its captured outputs must be cloned (see the module docstring)."""

    def __init__(self) -> None:
        self.clone_always: set[str] = set()
        self.trusted: set[str] = set()
        self.learning: list[tuple[str, torch.Tensor, int]] = []

    def keep(self, name: str, t: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, int] | None]:
        """What to store for ``t``, and the ``(tensor, version)`` to verify later (None if stored as a copy)."""
        if name in self.clone_always:
            return t.clone(), None
        version = _version(t)
        if version is None:
            self.clone_always.add(name)
            return t.clone(), None
        if name not in self.trusted:
            if len(self.learning) > 4096:  # a submodule called on its own, never ending a root forward
                self.settle()
            self.learning.append((name, t, version))
            return t.clone(), None
        return t, (t, version)

    def settle(self) -> None:
        """After a forward pass: layers whose first output was written since are cloned from now on."""
        for name, t, version in self.learning:
            if t._version != version:
                self.clone_always.add(name)
                self.trusted.discard(name)
            elif name not in self.clone_always:
                self.trusted.add(name)
        self.learning.clear()


class _Calls(dict):
    """``Captured.calls``: layer name → every output of the call, guarded like :class:`Captured`."""

    def __init__(self, owner: Captured) -> None:
        super().__init__()
        self._owner = owner

    def __getitem__(self, name: str) -> list[torch.Tensor]:
        self._owner.check(name, every_call=True)
        return super().__getitem__(name)


class Captured(dict):
    """Layer name → output of the latest call, filled while inside :func:`capture`.

    ``.calls[name]`` holds every output when a module runs several times in one forward pass;
    ``.layouts[name]`` the layout each layer's output was read in (``"channels_first"``,
    ``"features_last"`` or ``"sequence_first"``; see :mod:`nbexplain.core._base.layouts`). Reading an output
    that was written in place after it was captured raises :class:`StaleCaptureError`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, list[torch.Tensor]] = _Calls(self)
        self.layouts: dict[str, str] = {}
        # per call: (tensor, version) for outputs stored without a copy, None for copies
        self._watch: dict[str, list[tuple[torch.Tensor, int] | None]] = {}

    def clear(self) -> None:  # noqa: D102 - dict semantics
        super().clear()
        dict.clear(self.calls)
        self._watch.clear()

    def _store(self, name: str, kept: torch.Tensor, watch: tuple[torch.Tensor, int] | None) -> None:
        dict.__setitem__(self, name, kept)
        dict.setdefault(self.calls, name, []).append(kept)
        self._watch.setdefault(name, []).append(watch)

    @staticmethod
    def _written(entries: Iterable[tuple[torch.Tensor, int] | None]) -> bool:
        return any(e is not None and e[0]._version != e[1] for e in entries)

    def verify(self) -> set[str]:
        """Names with a stored output that was written in place since it was captured."""
        return {name for name, entries in self._watch.items() if self._written(entries)}

    def check(self, name: str, every_call: bool = False) -> None:
        """Raise :class:`StaleCaptureError` if ``name``'s stored output (or any call's) was overwritten."""
        entries = self._watch.get(name, [])
        if self._written(entries if every_call else entries[-1:]):
            raise StaleCaptureError(
                f"The output captured for layer {name!r} was written in place after the layer produced it "
                "(an in-place operation later in the forward pass, taken only for some inputs). Run the "
                "forward pass again inside the same capture: the layer's outputs are now copied."
            )

    def __getitem__(self, name: str) -> torch.Tensor:
        self.check(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:  # noqa: D102 - dict semantics
        return self[name] if name in self else default


@contextmanager
def capture(
    model: nn.Module,
    layers: str | Sequence[str],
    *,
    detach: bool = True,
    layout: LayoutArg = None,
) -> Iterator[Captured]:
    """Collect the outputs of named layers while the block runs.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``. A ``torch.compile``'d model runs its eager module (``model._orig_mod``) when
        called inside the block, so the layers are seen; it runs compiled again after the block.
    layers
        A layer name or a list of names (see :func:`nbexplain.list_layers`).
    detach
        Store detached outputs (default). Set to ``False`` to keep the autograd graph.
    layout
        Override the layout of every layer (a string) or of some (a dict); by default it is resolved from
        the module's type and the forward pass (see :mod:`nbexplain.core._base.layouts`). Resolved layouts are
        in ``.layouts``.

    Yields
    ------
    Captured
        A dict from layer name to its latest output; ``.calls[name]`` lists all outputs.

    Notes
    -----
    The stored value is what the layer produced, also when later code writes into it in place (the
    output is copied for layers where that happens). Every hook is removed and the model's state
    restored on exit, also when the block raises.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> with nx.capture(net, ["0", "2"]) as out:
    ...     _ = net(torch.randn(5, 4))
    >>> out["0"].shape, out["2"].shape
    (torch.Size([5, 8]), torch.Size([5, 2]))
    """
    net = check_runnable(check_model(model, what="nx.capture"))
    modules = resolve_modules(net, layers)
    overrides = check_layout_arg(layout, list(modules))
    captured = Captured()
    guard = _InPlaceGuard()
    probe = LayoutProbe(net, modules, overrides)
    captured.layouts = probe.layouts
    # `model`, not `net`: a torch.compile'd model the block calls runs its eager module (and so the hooks).
    with preserved(model), Handles() as handles:
        try:
            probe.start()
            for name, mod in modules.items():
                def hook(m: nn.Module, inputs: Any, out: Any, name: str = name) -> None:
                    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
                        out = out[0]
                    if not isinstance(out, torch.Tensor):
                        raise TypeError(
                            f"Layer {name!r} returned {type(out).__name__}, not a tensor; "
                            "choose a layer whose output is a tensor."
                        )
                    probe.layout(name, m, inputs, out)
                    if probe.done:
                        probe.stop()  # every layer resolved: no recording hooks on later passes
                    kept, watch = guard.keep(name, out.detach() if detach else out)
                    captured._store(name, kept, watch)
                handles.add(mod.register_forward_hook(hook))

            def settle(_m: nn.Module, _i: Any, _o: Any) -> None:
                guard.settle()
                for name in captured.verify():
                    guard.clone_always.add(name)
                    guard.trusted.discard(name)

            handles.add(net.register_forward_hook(settle))
            yield captured
        finally:
            probe.stop()


def to_features(
    output: torch.Tensor, *, conv: str = "channels", channel_first: bool = True, layout: str | None = None
) -> torch.Tensor:
    """Reshape a layer output to ``(n_samples, n_features)``.

    Parameters
    ----------
    output
        ``(N, F)``; a channel-first map ``(N, C, *spatial)``; or a token sequence ``(N, …, F)``.
    conv
        ``"channels"`` reads every position (channel-first maps) or token (token outputs) as a sample
        (``N·H·W × C``, ``N·T × D``); ``"mean"``/``"max"`` pool over positions or tokens (``N × C``);
        ``"flatten"`` keeps everything (``N × C·H·W``); ``"cls"`` takes the first token of a token output
        (``N × D``, the class token of a ViT or BERT).
    channel_first
        Whether features sit on dimension 1 (conv-like) rather than on the last dimension.
    layout
        ``"channels_first"``, ``"features_last"`` or ``"sequence_first"`` (``(T, N, D)``); overrides
        ``channel_first`` when given.

    Examples
    --------
    >>> import torch
    >>> import nbexplain as nx
    >>> maps = torch.rand(2, 8, 4, 4)
    >>> nx.to_features(maps).shape, nx.to_features(maps, conv="mean").shape
    (torch.Size([32, 8]), torch.Size([2, 8]))
    >>> nx.to_features(torch.rand(2, 5, 16), layout="features_last").shape   # tokens (N, T, D)
    torch.Size([10, 16])
    """
    check_choice(conv, "conv", CONV_MODES)
    if layout is None:
        layout = "channels_first" if channel_first else "features_last"
    else:
        check_choice(layout, "layout", LAYOUTS)
    if output.ndim == 1:
        return output.reshape(-1, 1)
    if output.ndim == 2:
        return output
    if layout == "sequence_first":
        output, layout = output.movedim(0, 1), "features_last"
    if layout == "features_last":
        output = output.movedim(-1, 1)  # (N, D, T, …): tokens play the role of positions
    elif conv == "cls":
        raise ValueError(
            f"`conv='cls'` takes the first token of a token output (N, T, D), but this output "
            f"{tuple(output.shape)} is channels-first (N, C, …); use 'channels', 'mean', 'max' or 'flatten'."
        )
    n, c = output.shape[:2]
    if conv == "channels":
        return output.movedim(1, -1).reshape(-1, c)
    if conv == "mean":
        return output.reshape(n, c, -1).mean(dim=2)
    if conv == "max":
        return output.reshape(n, c, -1).amax(dim=2)
    if conv == "cls":
        return output.reshape(n, c, -1)[:, :, 0]
    if layout == "features_last":
        output = output.movedim(1, -1)  # flatten in the model's own order (token-major)
    return output.reshape(n, -1)


def features_first(outputs: dict[str, torch.Tensor], layouts: dict[str, str]) -> dict[str, torch.Tensor]:
    """Layer outputs with their features on dimension 1: ``(N, D, T…)`` for token outputs, unchanged for
    channel-first maps and ``(N, F)`` — so code written for conv maps reads tokens as positions."""
    moved: dict[str, torch.Tensor] = {}
    for name, o in outputs.items():
        layout = layouts.get(name, "channels_first")
        if o.ndim > 2 and layout != "channels_first":
            o = (o.movedim(0, 1) if layout == "sequence_first" else o).movedim(-1, 1)
        moved[name] = o
    return moved


def count_batches(inputs: Any, batch_size: int) -> int | None:
    """How many batches :func:`iter_batches` will yield (for a progress bar's total), or None if unknown."""
    if isinstance(inputs, (torch.Tensor, tuple, Mapping, Inputs)) or (
        type(inputs).__module__.startswith("numpy") and hasattr(inputs, "shape")
    ):  # one batch, split (the same test as iter_inputs)
        try:
            n = as_inputs(inputs).n
        except (TypeError, ValueError):
            return None  # iter_batches raises the clear error
        return -(-n // batch_size) if batch_size > 0 else None
    try:
        return len(inputs)  # a list or DataLoader of batches
    except TypeError:
        return None


def iter_batches(inputs: InputsArg, batch_size: int, argname: str = "inputs") -> Iterator[Inputs]:
    """Yield batches of model inputs (:class:`~nbexplain.core._base.model_inputs.Inputs`), by the conventions of
    :mod:`nbexplain.core._base.model_inputs`.

    A tensor, a tuple (positional inputs), a dict (keyword inputs) or an ``nx.Inputs`` is *one* batch, split
    into chunks of ``batch_size`` samples; a list, ``DataLoader`` or other iterable yields its own batches,
    whose items are the model's inputs or ``(inputs, label, …)`` with the inputs first.
    """
    if isinstance(inputs, torch.Tensor) and inputs.ndim == 0:
        raise ValueError(f"`{argname}` must have a batch dimension, got a scalar tensor.")
    yield from iter_inputs(inputs, batch_size, argname)


def _input_label(batch: Inputs, key: InputKey, argname: str) -> str:
    if batch.single:
        return argname
    return f"{argname}[{key}]" if isinstance(key, int) else f"{argname}[{key!r}]"


def prepared_batches(
    inputs: InputsArg,
    batch_size: int,
    model: nn.Module,
    device: torch.device | None = None,
    argname: str = "inputs",
) -> Iterator[Inputs]:
    """The batches of :func:`iter_batches`, every tensor on the model's device (or ``device``), floating
    tensors in the model's dtype (integer ids and bool masks keep theirs), and every floating tensor checked
    for NaN/inf (the error names the input: ``inputs['mask']``)."""
    for batch in iter_batches(inputs, batch_size, argname):
        batch = batch.to_model(model)
        if device is not None:
            batch = batch.to(device)
        for key, t in zip(batch.keys, batch.tensors, strict=True):
            check_finite(t, _input_label(batch, key, argname))
        yield batch


def run_layers(
    model: nn.Module,
    inputs: InputsArg,
    modules: dict[str, nn.Module],
    consume: Callable[[dict[str, torch.Tensor]], None],
    *,
    batch_size: int,
    eval_mode: bool = True,
    device: torch.device | None = None,
    layout: LayoutArg = None,
    layouts: dict[str, str] | None = None,
    progress: bool | None = False,
    desc: str = "activations",
) -> None:
    """Run ``model`` batch by batch without grad and hand each batch's layer outputs to ``consume``.

    The shared driver of :func:`activations` and the similarity grids: outputs of every layer in
    ``modules`` (as returned by :func:`~nbexplain.core._base.layer_select.resolve_modules`) arrive as
    ``{name: output}`` per batch — the values the layers produced, also where later code writes into them
    in place. ``inputs`` follows :mod:`nbexplain.core._base.model_inputs` (a tuple or dict is one batch of several
    inputs, a list or DataLoader yields batches); each batch is called as ``model(*args, **kwargs)``.
    Floating inputs are cast to the model's dtype and moved to its device (or ``device``); integer inputs
    (token ids) and bool masks keep their dtype. ``layouts``, when given, is filled with each layer's
    resolved layout (see :mod:`nbexplain.core._base.layouts`). The model's state is restored afterwards, also
    when ``consume`` raises. A layer that does not run, non-finite inputs, and inputs with no batches are
    clear errors. ``progress`` follows :func:`~nbexplain.core._base.machinery.progress_bar` (one step per
    batch).
    """
    check_runnable(model)
    # In train mode a forward pass updates batch-norm running statistics: put their values back too.
    with preserved(model, values=not eval_mode):
        if eval_mode:
            model.eval()
        with torch.no_grad(), capture(model, list(modules), layout=layout) as out, \
                progress_bar(total=count_batches(inputs, batch_size), desc=desc, progress=progress,
                             unit="batch") as bar:
            seen = False
            for batch in prepared_batches(inputs, batch_size, model, device):
                seen = True
                for _attempt in range(2):
                    out.clear()
                    call_model(model, batch)
                    if not out.verify():
                        break
                if layouts is not None:
                    layouts.update(out.layouts)
                for name in modules:
                    if name not in out:
                        raise RuntimeError(
                            f"Layer {name!r} did not run during the forward pass; "
                            "choose a layer that is used by model.forward."
                        )
                consume({name: out[name] for name in modules})
                bar.update(1)
            if not seen:
                raise ValueError("`inputs` is empty: it yielded no batches.")


@renamed_arguments(eval="eval_mode")
def activations(
    model: nn.Module,
    inputs: InputsArg,
    layers: str | Sequence[str],
    *,
    conv: str = "channels",
    batch_size: int = 256,
    eval_mode: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    layout: LayoutArg = None,
    progress: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Run the model over ``inputs`` and return each layer's features as ``(n_samples, n_features)``.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.
    inputs
        A batch-first tensor (split into ``batch_size`` chunks) or an iterable of batches such as a
        ``DataLoader`` yielding tensors or ``(x, y)`` pairs (the model gets ``x``). For a model with several
        inputs: a tuple ``(x, mask)`` (positional, ``model(x, mask)``), a dict (keyword) or
        ``nx.Inputs(x, mask=m)`` is one batch, split together; a DataLoader then yields ``((x, mask), y)``.
        Floating inputs are cast to the model's dtype; integer token ids and bool masks are passed as they
        are.
    layers
        A layer name or list of names (see :func:`nbexplain.list_layers`).
    conv
        How multi-dimensional outputs become features: ``"channels"`` (default; each spatial position of a
        conv map, or each token of a token output, is a sample), ``"mean"``, ``"max"``, ``"flatten"``, or
        ``"cls"`` (the first token). See :func:`to_features`.
    batch_size
        Inputs per forward pass when ``inputs`` is one batch (a tensor, tuple, dict or ``nx.Inputs``).
    eval_mode
        Run in eval mode (default; dropout off, batch-norm running statistics). The model's own mode is
        restored afterwards either way.
    device
        Where to run; defaults to the model's device. Results are returned on the CPU.
    dtype
        dtype of the returned features.
    layout
        Which axis holds the features, per layer or for all (``"channels_first"``, ``"features_last"``,
        ``"sequence_first"``); by default resolved from each module's type and the forward pass (see
        :mod:`nbexplain.core._base.layouts`; ``nx.list_layers(model, x).layouts`` shows the result).
    progress
        ``None`` (default): a progress bar once the work has run 2 s; ``True``: always; ``False``: never.

    Returns
    -------
    dict[str, Tensor]
        One ``(n_samples, n_features)`` CPU tensor per layer, in the order of ``layers``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(3 * 6 * 6, 10))
    >>> feats = nx.activations(net, torch.rand(4, 1, 8, 8), ["0", "3"])
    >>> feats["0"].shape, feats["3"].shape  # conv: 4 images x 6x6 positions, 3 channels
    (torch.Size([144, 3]), torch.Size([4, 10]))

    A model with two inputs gets both, batched together:

    >>> class Gated(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = torch.nn.Linear(3, 2)
    ...     def forward(self, x, gate):
    ...         return self.fc(x) * gate
    >>> nx.activations(Gated(), (torch.randn(5, 3), torch.zeros(5, 1)), "fc")["fc"].shape
    torch.Size([5, 2])
    """
    model = check_model(model, what="nx.activations")
    check_choice(conv, "conv", CONV_MODES)
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_progress(progress)
    modules = resolve_modules(model, layers)
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    layouts: dict[str, str] = {}

    def collect(outputs: dict[str, torch.Tensor]) -> None:
        for name, o in outputs.items():
            try:
                feats = to_features(o, conv=conv, layout=layouts[name])
            except ValueError as exc:
                raise ValueError(f"Layer {name!r}: {exc}") from None
            chunks[name].append(feats.to("cpu", dtype))

    run_layers(model, inputs, modules, collect, batch_size=batch_size, eval_mode=eval_mode,
               device=torch.device(device) if device is not None else None, layout=layout, layouts=layouts,
               progress=progress)
    return {n: torch.cat(c, dim=0) for n, c in chunks.items()}
