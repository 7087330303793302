"""Feeding a model and reading what it returns, the same way in every entry point.

- :func:`select_output`: one ``output=`` selector for models that return a tuple, a dict, a NamedTuple or an
  object with attributes (an index, a key/attribute name, or a callable on the model's output).
- :func:`check_output_arg`: validates the selector itself before any work.
- :func:`check_runnable`: a clear error for a model whose weights live on the ``meta`` device.
- :func:`model_input`: inputs to the model's device; floating inputs to the model's floating dtype; integer
  inputs (token ids) and bool masks keep their dtype.
- :func:`probe_output`: one forward pass on the first samples that checks the selected output has one row
  per sample, run before any heavy work so a wrong ``output=`` fails in a second, not after training.
- :func:`resolve_embedding`: the layer whose output is attributed for token inputs (``embedding=``), found
  automatically for integer inputs to a model with exactly one ``nn.Embedding``, and checked by one forward pass.
- :class:`LayerTap`: a forward hook that records a layer's output, or replaces it by a tensor of the caller's
  (e.g. a noisy or interpolated embedding), optionally as a fresh leaf to take gradients with respect to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from .compiled import require_hooks
from .hygiene import model_device, model_dtype, preserved
from .model_inputs import InputKey, Inputs, as_inputs, call_model, resolve_wrt

__all__ = [
    "OutputArg",
    "describe_output",
    "check_output_arg",
    "select_output",
    "check_runnable",
    "model_input",
    "probe_output",
    "call_with_note",
    "EmbeddingSite",
    "resolve_embedding",
    "reads_other_input",
    "LayerTap",
    "StopForward",
]

#: What ``output=`` accepts: ``None`` (the model returns a tensor), an index, a key/attribute name, or a callable.
OutputArg = Union[None, int, str, Callable[[Any], torch.Tensor]]

_HOW = (
    "pass `output=` to choose the tensor to explain: an index (output=0), a key or attribute name "
    "(output='logits') or a function of the model's output (output=lambda out: out[0])"
)


def _describe_one(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    return type(value).__name__


def describe_output(raw: Any) -> str:
    """A one-line description of what a model returned, e.g. ``tuple of 2: [0] Tensor(8, 10) float32, …``."""
    if isinstance(raw, torch.Tensor):
        return _describe_one(raw)
    fields = getattr(raw, "_fields", None)
    if isinstance(raw, tuple) and fields is not None:  # a NamedTuple
        inner = ", ".join(f"{f}={_describe_one(getattr(raw, f))}" for f in fields)
        return f"{type(raw).__name__}({inner})"
    if isinstance(raw, (tuple, list)):
        inner = ", ".join(f"[{i}] {_describe_one(v)}" for i, v in enumerate(raw))
        return f"{type(raw).__name__} of {len(raw)}: {inner}"
    if isinstance(raw, Mapping):
        inner = ", ".join(f"{k!r}: {_describe_one(v)}" for k, v in raw.items())
        return f"{type(raw).__name__} with {inner}"
    return f"an object of type {type(raw).__name__}"


def check_output_arg(output: Any, argname: str = "output") -> OutputArg:
    """Validate an ``output=`` selector's type (the model is not run)."""
    if output is None or isinstance(output, str) or callable(output):
        return output
    if isinstance(output, bool) or not isinstance(output, int):
        raise TypeError(
            f"`{argname}` must be None, an int index, a str key or attribute name, or a callable on the "
            f"model's output; got {output!r}."
        )
    return output


def select_output(raw: Any, output: OutputArg = None, argname: str = "output") -> torch.Tensor:
    """Pick the tensor to explain from whatever the model returned.

    Parameters
    ----------
    raw
        The model's return value.
    output
        ``None`` (``raw`` must be a tensor), an index into a tuple/list, a key of a dict or the name of
        an attribute (NamedTuple fields, output objects with attributes), or a callable ``raw -> Tensor``.

    Raises
    ------
    ValueError
        Naming what the model returned and how to choose, when the selector does not fit.
    """
    if output is None:
        if isinstance(raw, torch.Tensor):
            return raw
        raise ValueError(f"The model returned {describe_output(raw)}; {_HOW}.")
    if callable(output) and not isinstance(output, str):
        picked = output(raw)
        where = f"`{argname}` (a callable)"
    elif isinstance(output, str):
        if isinstance(raw, Mapping):
            if output not in raw:
                raise ValueError(
                    f"`{argname}`={output!r} is not a key of what the model returned "
                    f"({describe_output(raw)}); use one of {list(raw.keys())}."
                )
            picked = raw[output]
        elif hasattr(raw, output) and not isinstance(raw, torch.Tensor):
            picked = getattr(raw, output)
        else:
            raise ValueError(
                f"`{argname}`={output!r} names no key or attribute of what the model returned "
                f"({describe_output(raw)}); {_HOW}."
            )
        where = f"`{argname}`={output!r}"
    else:
        if not isinstance(raw, (tuple, list)):
            raise ValueError(
                f"`{argname}`={output!r} is an index, but the model returned {describe_output(raw)}, "
                f"which cannot be indexed; {_HOW}."
            )
        if not -len(raw) <= output < len(raw):
            raise ValueError(
                f"`{argname}`={output!r} is out of range: the model returned {describe_output(raw)}."
            )
        picked = raw[output]
        where = f"`{argname}`={output!r}"
    if not isinstance(picked, torch.Tensor):
        raise ValueError(
            f"{where} selected {describe_output(picked)}, not a tensor; the model returned "
            f"{describe_output(raw)}."
        )
    return picked


def check_runnable(model: nn.Module, argname: str = "model") -> nn.Module:
    """Refuse a model whose parameters or buffers live on the ``meta`` device (they hold no values)."""
    for t in (*model.parameters(), *model.buffers()):
        if t.device.type == "meta":
            raise ValueError(
                f"`{argname}` has parameters on the 'meta' device, which hold no values, so it cannot run. "
                "Materialise it first, e.g. model.to_empty(device='cpu') followed by "
                "model.load_state_dict(...), or build it outside torch.device('meta')."
            )
    return model


def model_input(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``x`` on the model's device; floating ``x`` in the model's floating dtype.

    Integer inputs (token ids for an ``nn.Embedding``) and bool masks keep their dtype.
    """
    device = model_device(model)
    if x.is_floating_point():
        return x.to(device=device, dtype=model_dtype(model))
    return x.to(device=device)


def probe_output(
    model: nn.Module, x: Any, output: OutputArg = None, argname: str = "output", samples: int = 2
) -> torch.Tensor:
    """Run the model once on the first ``samples`` rows of ``x`` and return the selected output.

    ``x`` is one batch of inputs: a tensor, or several inputs as a tuple, dict or
    :class:`~nbexplain.core._base.model_inputs.Inputs` (sliced together). Checks that the selection is a tensor
    with one row per sample, so a wrong ``output=`` (or a model that reduces over the batch) is reported
    before any heavy work. The model's state is left as found.
    """
    xs = as_inputs(x, "x").rows(slice(0, samples)).to_model(model)
    with preserved(model), torch.no_grad():
        model.eval()
        raw = call_model(model, xs, "x")
        try:
            picked = select_output(raw, output, argname)
        except ValueError as err:  # the shapes it shows are of the probe batch: say so
            raise ValueError(f"{err} (Checked by one forward pass on the first {xs.n} samples.)") from None
    if picked.ndim == 0 or picked.shape[0] != xs.n:
        raise ValueError(
            f"The selected model output has shape {tuple(picked.shape)} for a batch of {xs.n} samples; "
            f"it must have one row per sample (batch first). Choose another tensor with `{argname}`."
        )
    return picked


def call_with_note(model: Any, batch: Inputs) -> Any:
    """``model(*batch.args, **batch.kwargs)`` with :func:`~nbexplain.core._base.model_inputs.call_model`'s note on
    errors the way of calling may explain."""
    return call_model(model, batch, "x")


# ----------------------------------------------------------------------------------------------------
# token inputs: attribution at an embedding layer's output
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingSite:
    """The layer whose output an attribution for token inputs is computed at.

    Attributes
    ----------
    name
        The layer's name in ``model.named_modules()``.
    module
        The layer itself.
    features
        Size of its output's last dimension (the embedding width ``D``); the output is ``(*x.shape, D)``.
    """

    name: str
    module: nn.Module
    features: int


_ASK = (
    "pass `embedding=` the name of the layer whose output is attributed (e.g. embedding='emb'); the "
    "attribution is summed over that layer's features and has the shape of the token ids"
)


def _embedding_candidate(model: nn.Module, x: torch.Tensor, argname: str, what: str = "`x`") -> tuple[str, nn.Module]:
    """The model's only ``nn.Embedding``, or a clear error asking for ``embedding=``."""
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{what} has dtype {x.dtype}; pass floating inputs, or integer token ids with `{argname}=`.")
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TypeError(
            f"{what} is an integer tensor ({x.dtype}) but the model has no nn.Embedding to read it as token ids. "
            f"If it holds pixel or feature values, pass a floating-point tensor ({what.strip('`')}.float()); if it "
            f"holds token ids, {_ASK}."
        )
    names = ", ".join(repr(n) for n, _ in found)
    raise ValueError(
        f"{what} holds integer token ids and the model has {len(found)} nn.Embedding layers ({names}), so which "
        f"one reads the ids is ambiguous; {_ASK}."
    )


def _same_tensor(a: Any, b: torch.Tensor) -> bool:
    return a is b or (
        isinstance(a, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
        and bool(torch.equal(a, b))
    )


def reads_other_input(value: Any, batch: Inputs, wrt: InputKey) -> InputKey | None:
    """The key of the input of ``batch`` other than ``wrt`` that ``value`` (what a layer was called with) is,
    when it is exactly another input and not the ``wrt`` input; ``None`` otherwise."""
    if not isinstance(value, torch.Tensor) or _same_tensor(value, batch[wrt]):
        return None
    return next((k for k in batch.keys if k != wrt and _same_tensor(value, batch[k])), None)


def resolve_embedding(
    model: nn.Module,
    x: torch.Tensor | Inputs,
    embedding: str | None = None,
    output: OutputArg = None,
    argname: str = "embedding",
    wrt: InputKey | None = None,
) -> EmbeddingSite | None:
    """Resolve ``embedding=``: ``None`` for floating ``x`` without it, else the checked layer.

    With ``embedding=None`` and integer ``x`` (token ids) the model's single ``nn.Embedding`` is used; a model
    with none or several is refused with an error asking for ``embedding=``. One forward pass on the first
    two samples (eval mode, no gradients, model restored) checks that the layer runs exactly once and
    returns a floating ``(*x.shape, D)`` tensor — i.e. it consumes the token ids — and validates ``output=``
    the way :func:`probe_output` does.

    ``x`` may be an :class:`~nbexplain.core._base.model_inputs.Inputs` batch of several inputs; the token ids are
    then its input ``wrt`` (a position or keyword; ``None``: the first), the others go into the model
    unchanged, and a layer that reads another input instead of ``wrt`` (e.g. an integer attention mask of the
    ids' shape) is refused.
    """
    batch = x if isinstance(x, Inputs) else None
    key: InputKey = 0
    if batch is not None:
        key = resolve_wrt(batch, wrt)
        x = batch[key]
    what = "`x`" if batch is None or batch.single else f"`x[{key!r}]`"
    auto = embedding is None
    if auto and x.is_floating_point():
        return None
    require_hooks(model, "model", "attribution for token inputs (read at the embedding layer's output)")
    if auto:
        name, module = _embedding_candidate(model, x, argname, what)
    else:
        if not isinstance(embedding, str):
            raise TypeError(f"`{argname}` must be a layer name (str) or None, got {embedding!r}.")
        from .layer_select import resolve_modules

        name = embedding
        module = resolve_modules(model, [embedding], argname)[embedding]
    seen: list[Any] = []
    read: list[Any] = []

    def hook(_m: nn.Module, args: tuple, out: Any) -> None:
        seen.append(out)
        read.append(args[0] if args else None)

    handle = module.register_forward_hook(hook)
    try:
        if batch is None:
            probe_output(model, x, output)
        else:
            rows = batch.rows(slice(0, 2)).to_model(model)
            probe_output(model, rows, output)
    finally:
        handle.remove()
    xs_shape = tuple(x[:2].shape)
    layer = f"the model's only nn.Embedding {name!r}" if auto else f"`{argname}`={name!r}"
    if len(seen) != 1:
        raise ValueError(
            f"{layer} ran {len(seen)} times in one forward pass; attribution at a layer's output needs a layer "
            f"that runs exactly once. {_ASK[0].upper() + _ASK[1:]}."
        )
    if batch is not None and not batch.single:
        other = reads_other_input(read[0], rows, key)
        if other is not None:
            raise ValueError(
                f"{layer} reads the input {other!r}, not the explained input wrt={key!r}: its output would be "
                f"attributed to the wrong input. Choose the input it reads with `wrt={other!r}`, or name the layer "
                f"that reads {key!r} with `{argname}=`."
            )
    out = seen[0]
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise ValueError(f"{layer} returned {describe_output(out)}; it must return a floating tensor (*x.shape, D).")
    if out.ndim != len(xs_shape) + 1 or tuple(out.shape[:-1]) != xs_shape:
        raise ValueError(
            f"{layer} returned shape {tuple(out.shape)} for token ids {what} of shape {xs_shape}: it does not "
            f"consume the ids (its output must be (*x.shape, D), one feature vector per token). "
            f"{_ASK[0].upper() + _ASK[1:]}."
        )
    return EmbeddingSite(name, module, int(out.shape[-1]))


class StopForward(BaseException):
    """Raised by a :class:`LayerTap` with ``stop=True`` once it has the layer's output: the rest of the
    forward pass is skipped. A ``BaseException`` so that a model's own ``except Exception`` does not
    swallow it."""


class LayerTap:
    """A forward hook on one layer that records its output or replaces it.

    Set :attr:`replace` to a tensor of the layer output's shape to substitute it (gradients flow into that
    tensor when it requires them); set :attr:`leaf` to make what the layer passes on a fresh leaf tensor
    that requires a gradient (read it back from :attr:`out` after the forward pass). With :attr:`stop`
    the hook raises :class:`StopForward` after recording, so only the layers up to this one run (no
    batch-norm statistics move, and a one-sample batch is fine in train mode). Use as a context manager
    inside :func:`~nbexplain.core._base.hygiene.preserved`; the hook is removed on exit, also on exceptions.
    """

    def __init__(self, module: nn.Module, name: str = "layer") -> None:
        self.module = module
        self.name = name
        self.replace: torch.Tensor | None = None
        self.leaf = False
        self.stop = False
        self.out: torch.Tensor | None = None
        self._handle: Any = None

    def _hook(self, _m: nn.Module, _i: Any, out: Any) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"Layer {self.name!r} returned {describe_output(out)}, not a tensor.")
        value = out
        if self.replace is not None:
            if tuple(self.replace.shape) != tuple(out.shape):
                raise ValueError(
                    f"Layer {self.name!r} produced shape {tuple(out.shape)}, but the substitute has shape "
                    f"{tuple(self.replace.shape)}."
                )
            value = self.replace.to(out.dtype)
        if self.leaf:
            value = value.detach().requires_grad_(True)
        self.out = value
        if self.stop:
            raise StopForward
        # A copy goes on: the model may write into it in place (`h += pos`), which autograd refuses on a
        # leaf and which must not change what was recorded.
        return value.clone() if (self.leaf or self.replace is not None) else value

    def __enter__(self) -> LayerTap:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
