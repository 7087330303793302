"""Capturing layer outputs: a context manager and a batched feature extractor."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Union

import torch
from torch import nn

from .hygiene import model_device, preserved
from .layer_select import layout_resolver, resolve_modules
from .validation import check_choice, check_model, check_positive_int

__all__ = ["capture", "Captured", "activations", "run_layers", "to_features", "iter_batches", "CONV_MODES"]

#: How a channel-first output ``(N, C, *spatial)`` becomes ``(n_samples, n_features)``.
CONV_MODES = ("channels", "mean", "max", "flatten")

InputsArg = Union[torch.Tensor, Iterable[Any]]


class Captured(dict):
    """Layer name → output of the latest call, filled while inside :func:`capture`.

    ``.calls[name]`` holds every output when a module runs several times in one forward pass.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, list[torch.Tensor]] = {}

    def clear(self) -> None:  # noqa: D102 - dict semantics
        super().clear()
        self.calls.clear()


@contextmanager
def capture(
    model: nn.Module, layers: str | Sequence[str], detach: bool = True
) -> Iterator[Captured]:
    """Collect the outputs of named layers while the block runs.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.
    layers
        A layer name or a list of names (see :func:`nbexplain.layers`).
    detach
        Store detached outputs (default). Set to ``False`` to keep the autograd graph.

    Yields
    ------
    Captured
        A dict from layer name to its latest output; ``.calls[name]`` lists all outputs.

    Notes
    -----
    Every hook is removed and the model's state restored on exit, also when the block raises.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> with nx.capture(net, ["0", "2"]) as out:
    ...     _ = net(torch.randn(5, 4))
    >>> out["0"].shape, out["2"].shape
    (torch.Size([5, 8]), torch.Size([5, 2]))
    """
    check_model(model)
    modules = resolve_modules(model, layers)
    captured = Captured()
    with preserved(model):
        handles = []
        try:
            for name, mod in modules.items():
                def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
                    if isinstance(out, (tuple, list)):
                        out = out[0]
                    if not isinstance(out, torch.Tensor):
                        raise TypeError(
                            f"Layer {name!r} returned {type(out).__name__}, not a tensor; "
                            "choose a layer whose output is a tensor."
                        )
                    t = out.detach() if detach else out
                    captured[name] = t
                    captured.calls.setdefault(name, []).append(t)
                handles.append(mod.register_forward_hook(hook))
            yield captured
        finally:
            for h in handles:
                h.remove()


def to_features(output: torch.Tensor, conv: str = "channels", channel_first: bool = True) -> torch.Tensor:
    """Reshape a layer output to ``(n_samples, n_features)``.

    Parameters
    ----------
    output
        ``(N, F)``; a channel-first map ``(N, C, *spatial)``; or a token sequence ``(N, …, F)``.
    conv
        For channel-first maps: ``"channels"`` reads every spatial position as a sample of ``C``
        features (``N·H·W × C``); ``"mean"``/``"max"`` pool over positions (``N × C``);
        ``"flatten"`` keeps everything (``N × C·H·W``).
    channel_first
        Whether features sit on dimension 1 (conv-like) rather than on the last dimension.
    """
    check_choice(conv, "conv", CONV_MODES)
    if output.ndim == 1:
        return output.reshape(-1, 1)
    if output.ndim == 2:
        return output
    if not channel_first:
        return output.reshape(-1, output.shape[-1])
    n, c = output.shape[:2]
    if conv == "channels":
        return output.movedim(1, -1).reshape(-1, c)
    if conv == "mean":
        return output.reshape(n, c, -1).mean(dim=2)
    if conv == "max":
        return output.reshape(n, c, -1).amax(dim=2)
    return output.reshape(n, -1)


def iter_batches(inputs: InputsArg, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield input batches from a tensor (split along dim 0) or an iterable of batches.

    Items of an iterable may be tensors or ``(x, y, …)`` tuples/lists, of which ``x`` is used.
    """
    if isinstance(inputs, torch.Tensor):
        if inputs.ndim == 0:
            raise ValueError("`inputs` must have a batch dimension, got a scalar tensor.")
        for start in range(0, inputs.shape[0], batch_size):
            yield inputs[start : start + batch_size]
        return
    if type(inputs).__module__.startswith("numpy"):
        yield from iter_batches(torch.as_tensor(inputs), batch_size)
        return
    if not isinstance(inputs, Iterable):
        raise TypeError(
            f"`inputs` must be a tensor or an iterable of batches (e.g. a DataLoader), "
            f"got {type(inputs).__name__}."
        )
    for item in inputs:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if isinstance(x, dict):
            raise TypeError("`inputs` yielded a dict; pass the input tensors (or (x, y) pairs).")
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        yield x


def run_layers(
    model: nn.Module,
    inputs: InputsArg,
    modules: dict[str, nn.Module],
    consume: Callable[[dict[str, torch.Tensor]], None],
    *,
    batch_size: int,
    eval: bool = True,
    device: torch.device | None = None,
) -> None:
    """Run ``model`` batch by batch without grad and hand each batch's layer outputs to ``consume``.

    The shared driver of :func:`activations` and the similarity grids: outputs of every layer in
    ``modules`` (as returned by :func:`~nbexplain.core.layer_select.resolve_modules`) arrive as
    ``{name: output}`` per batch. The model's state is restored afterwards, also when ``consume``
    raises. A layer that does not run, and inputs with no batches, are clear errors.
    """
    dev = device if device is not None else model_device(model)
    with preserved(model):
        if eval:
            model.eval()
        with torch.no_grad(), capture(model, list(modules)) as out:
            seen = False
            for x in iter_batches(inputs, batch_size):
                seen = True
                out.clear()
                model(x.to(dev))
                for name in modules:
                    if name not in out:
                        raise RuntimeError(
                            f"Layer {name!r} did not run during the forward pass; "
                            "choose a layer that is used by model.forward."
                        )
                consume({name: out[name] for name in modules})
            if not seen:
                raise ValueError("`inputs` is empty: it yielded no batches.")


def activations(
    model: nn.Module,
    inputs: InputsArg,
    layers: str | Sequence[str],
    conv: str = "channels",
    batch_size: int = 256,
    eval: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Run the model over ``inputs`` and return each layer's features as ``(n_samples, n_features)``.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.
    inputs
        A batch-first tensor (split into ``batch_size`` chunks) or an iterable of batches such as a
        ``DataLoader`` yielding tensors or ``(x, y)`` pairs.
    layers
        A layer name or list of names (see :func:`nbexplain.layers`).
    conv
        How channel-first outputs become features: ``"channels"`` (default; each spatial position is a
        sample of C features), ``"mean"``, ``"max"`` or ``"flatten"``. See :func:`to_features`.
    batch_size
        Chunk size when ``inputs`` is a tensor.
    eval
        Run in eval mode (default; dropout off, batch-norm running statistics). The model's own mode is
        restored afterwards either way.
    device
        Where to run; defaults to the model's device. Results are returned on the CPU.
    dtype
        dtype of the returned features.

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
    """
    check_model(model)
    check_choice(conv, "conv", CONV_MODES)
    batch_size = check_positive_int(batch_size, "batch_size")
    modules = resolve_modules(model, layers)
    dev = torch.device(device) if device is not None else model_device(model)
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    channel_first = layout_resolver(model, modules)

    def collect(outputs: dict[str, torch.Tensor]) -> None:
        for name, o in outputs.items():
            feats = to_features(o, conv, channel_first(name, o.ndim))
            chunks[name].append(feats.to("cpu", dtype))

    run_layers(model, inputs, modules, collect, batch_size=batch_size, eval=eval, device=dev)
    return {n: torch.cat(c, dim=0) for n, c in chunks.items()}
