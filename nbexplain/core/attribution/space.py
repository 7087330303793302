"""The space an attribution is computed in, and running a model there.

For floating inputs that is the input itself. For integer token ids it is the output of an embedding
layer: the ids still go into the model, and the layer's output is recorded or replaced (a noisy, scaled
or interpolated embedding) by a :class:`~nbexplain.core._base.model_io.LayerTap`. The gradient family
(:mod:`~nbexplain.core.attribution.gradients`) and rate–distortion explanations (:mod:`~nbexplain.core.attribution.rate_distortion`)
run every model call through :class:`AttributionSpace`, and validate their arguments with
:func:`prepare_attribution` (one early forward pass) before any heavy work.

Several inputs
--------------
``inputs`` may be one batch of several model inputs — a tuple (positional), a dict (keyword) or an
:class:`~nbexplain.core._base.model_inputs.Inputs` — of which one, ``wrt``, is explained. The space holds the whole
batch; every model call takes the rows ``idx`` of *every* input and puts the point ``z`` in place of the
``wrt`` input, ``model(*inputs.rows(idx).replace(wrt, z))``. The methods that expand the batch (SmoothGrad's
noisy copies, integrated gradients' path points, RDE's noise draws) call with repeated row indices, so the
other inputs are repeated row by row with the explained one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any, Union

import torch
from torch import nn

from .._base.hygiene import model_device, model_dtype, preserved
from .._base.model_inputs import InputKey, Inputs, as_inputs, resolve_wrt
from .._base.model_io import (
    EmbeddingSite,
    LayerTap,
    OutputArg,
    StopForward,
    call_with_note,
    check_output_arg,
    check_runnable,
    model_input,
    probe_output,
    resolve_embedding,
    select_output,
)
from .._base.targets import Target, as_target, describe_axes
from .._base.validation import check_model, check_tensor

__all__ = [
    "AttributionSpace",
    "AttributionInputs",
    "attribution_inputs",
    "prepare_attribution",
    "check_attribution_input",
    "target_scores",
    "predicted_classes",
    "bind_target",
]

#: What ``inputs=`` of an attribution accepts: one tensor (or numpy array), a tuple (positional inputs) or dict
#: (keyword inputs) of tensors batched together, or :class:`~nbexplain.core._base.model_inputs.Inputs`.
AttributionInputs = Union[torch.Tensor, tuple, Mapping[str, Any], Inputs]


def check_attribution_input(x: Any, argname: str = "inputs", min_ndim: int = 2) -> torch.Tensor:
    """A batch ``(N, …)`` with N ≥ 1: floating (and finite) values, or integer token ids."""
    x = check_tensor(x, argname, min_ndim=min_ndim, finite=True)
    if x.shape[0] == 0:
        raise ValueError(f"`{argname}` is an empty batch (shape {tuple(x.shape)}); pass at least one sample.")
    return x


def attribution_inputs(x: Any, wrt: Any = None, argname: str = "inputs") -> tuple[Inputs, InputKey, str]:
    """``inputs=`` of an attribution as one :class:`Inputs` batch, the key of the explained input, and its name for
    messages (``inputs``, or ``inputs[1]`` / ``inputs['mask']`` for one of several inputs).

    The explained input is checked as by :func:`check_attribution_input` (for one of several inputs a 1-D
    ``(N,)`` input is allowed: the batch size is known from the others); floating inputs that are held fixed
    may hold ±inf (additive attention masks) but not NaN.
    """
    if not isinstance(x, (torch.Tensor, tuple, Mapping, Inputs)) and not (
        type(x).__module__.startswith("numpy") and hasattr(x, "shape")
    ):
        hint = (
            " A list is not read as several inputs: pass them as a tuple, e.g. inputs=(x, mask)."
            if isinstance(x, list) and x and all(isinstance(v, torch.Tensor) for v in x) else ""
        )
        raise TypeError(
            f"`{argname}` must be a torch.Tensor (or numpy array), a tuple or dict of tensors (several inputs of one "
            f"batch) or nx.Inputs(...), got {type(x).__name__}. Convert it with torch.as_tensor(...).{hint}"
        )
    batch = as_inputs(x, argname)
    key = resolve_wrt(batch, wrt)
    name = argname if batch.single else f"{argname}[{key!r}]"
    chosen = check_attribution_input(batch[key], name, min_ndim=2 if batch.single else 1)
    if not batch.single:
        if chosen.dtype == torch.bool or chosen.is_complex():
            raise TypeError(
                f"`{name}` (the explained input, `wrt`={key!r}) has dtype {chosen.dtype}: an attribution needs "
                f"floating values or integer token ids. To explain a mask, pass it as floats (mask.float()) if the "
                f"model accepts that; to explain another input choose it with `wrt=` (one of {batch.keys})."
            )
        for k in batch.keys:
            t = batch[k]
            if k != key and t.is_floating_point() and t.numel() and bool(torch.isnan(t).any()):
                raise ValueError(
                    f"`{argname}[{k!r}]` holds NaN values; every input must be a number (±inf is allowed)."
                )
    return batch.replace(key, chosen), key, name


def target_scores(output: torch.Tensor, target: Any, argname: str = "target") -> torch.Tensor:
    """Each row's explained score, read from a model output by the shared target convention.

    ``target`` is a bound :class:`~nbexplain.core._base.targets.Target` (one per row), or class indices
    ``(rows,)``. ``(N,)`` outputs accept only class 0; ``(N, C)`` a class; a 3-D output ``(N, T, V)`` a
    ``(position, token)`` target; a ≥ 4-D dense map a class (its map summed over all positions) or a region;
    any output a function of the output (see :mod:`nbexplain.core._base.targets`).
    """
    if output.ndim == 0:
        raise ValueError("The model returned a scalar; it must return one row per sample, shape (N, C).")
    if not isinstance(target, Target):
        target = as_target(target, int(output.shape[0]), argname)
    return target.scores(output)


def predicted_classes(output: torch.Tensor, method: str) -> torch.Tensor:
    """``target=None``: the predicted class of each row, LongTensor ``(rows,)`` on the CPU.

    ``(N, C)`` scores: the argmax over the classes; ``(N,)`` outputs: class 0 (the one output). Other outputs
    (sequences, dense maps) have no single predicted class: a clear error asks for a target.
    """
    if output.ndim == 1:
        return torch.zeros(output.shape[0], dtype=torch.long)
    if output.ndim == 2:
        return output.detach().argmax(dim=1).cpu()
    raise ValueError(
        f"{method}(target=None) explains the predicted class of (N, C) scores, but the selected output is "
        f"{describe_axes(tuple(output.shape))}: pass `target=` — (position, token) for a sequence, a class or "
        "nx.Target.region(class, mask) for a dense map, or a function of the output (nx.Target.score(fn))."
    )


def bind_target(target: Any, n: int, argname: str = "target") -> Target:
    """``target=`` for ``n`` rows: a :class:`Target` already bound to ``n`` rows (e.g. repeated per noisy copy by
    :func:`~nbexplain.core.attribution.noise.noise_tunnel`) is used as it is; anything else is read by
    :func:`~nbexplain.core._base.targets.as_target`."""
    if isinstance(target, Target) and target.rows is not None and len(target) == n:
        return target
    return as_target(target, n, argname)


class AttributionSpace:
    """Where an attribution is computed, and how the model is run there.

    For floating ``x`` the space is the input itself (points are rows of ``x`` in the model's dtype);
    for token ids it is the output of the embedding layer ``site`` (points ``(n, T, D)``, substituted for
    that layer's output by a :class:`~nbexplain.core._base.model_io.LayerTap` while the ids still go in). Use
    :meth:`active` around every model call: it sets the attribution mode and registers the tap.

    ``x`` may also be an :class:`~nbexplain.core._base.model_inputs.Inputs` batch of several inputs: :attr:`x` is
    then its input ``wrt`` (the one explained), and every model call passes the same rows of the others.
    """

    def __init__(
        self, model: nn.Module, x: torch.Tensor | Inputs, output: OutputArg, site: EmbeddingSite | None,
        wrt: InputKey | None = None,
    ) -> None:
        self.inputs = x if isinstance(x, Inputs) else Inputs(x)
        self.wrt = resolve_wrt(self.inputs, wrt)
        self.model, self.x, self.output, self.site = model, self.inputs[self.wrt], output, site
        self.device = model_device(model)
        self.dtype = model_dtype(model)
        self.tap = LayerTap(site.module, site.name) if site is not None else None

    @property
    def tokens(self) -> bool:
        """True when ``x`` holds token ids and points live in embedding space."""
        return self.site is not None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def result_dtype(self) -> torch.dtype:
        """``x``'s dtype for floating inputs; float32 (float64 for a float64 model) for token ids."""
        return torch.promote_types(self.dtype, torch.float32) if self.tokens else self.x.dtype

    @property
    def point_shape(self) -> tuple[int, ...]:
        """Shape of one sample's point: ``x.shape[1:]``, or ``(*x.shape[1:], D)`` for token ids."""
        extra = (self.site.features,) if self.site is not None else ()
        return tuple(self.x.shape[1:]) + extra

    @contextmanager
    def active(self, eval: bool) -> Iterator[None]:
        """Eval mode (optional), no parameter gradients and the embedding tap — all undone on exit.

        In train mode a forward pass updates buffers (batch-norm running statistics), so their values
        are snapshotted and written back too. cuDNN's RNN kernels refuse a backward pass in eval mode,
        so on CUDA they are switched off for models with recurrent layers.
        """
        with preserved(self.model, values=not eval), ExitStack() as stack:
            if eval:
                self.model.eval()
            for p in self.model.parameters():
                p.requires_grad_(False)
            if self.device.type == "cuda" and any(isinstance(m, nn.RNNBase) for m in self.model.modules()):
                cudnn = torch.backends.cudnn
                stack.enter_context(cudnn.flags(enabled=False, benchmark=cudnn.benchmark,
                                                deterministic=cudnn.deterministic, allow_tf32=cudnn.allow_tf32))
            if self.tap is not None:
                stack.enter_context(self.tap)
            yield

    def _ids(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, torch.Tensor):
            idx = idx.to(self.x.device)
        return model_input(self.x[idx], self.model)

    def batch(self, idx: Any, value: torch.Tensor | None = None) -> Inputs:
        """The model's inputs for the samples ``idx`` (repeated indices repeat rows), on the model's device and
        dtype, with ``value`` in place of the explained input (``None``: its own rows)."""

        def one(key: InputKey, t: torch.Tensor) -> torch.Tensor:
            if key == self.wrt:
                return value if value is not None else self._ids(idx)
            return model_input(t[idx.to(t.device)] if isinstance(idx, torch.Tensor) else t[idx], self.model)

        return self.inputs.map(one)

    def _run(self, batch: Inputs) -> Any:
        return call_with_note(self.model, batch)

    def forward(self, idx: Any, z: torch.Tensor | None = None, leaf: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The selected model output for the samples ``idx`` at the points ``z`` (``None``: their own
        points), and the point tensor the model saw (a fresh leaf when ``leaf``). The other inputs (several
        inputs) are their rows ``idx``."""
        if self.tap is None:
            inp = z if z is not None else self._ids(idx)
            if leaf:
                inp = inp.detach().requires_grad_(True)
            return self._selected(self._run(self.batch(idx, inp)), inp.shape[0]), inp
        self.tap.replace, self.tap.leaf, self.tap.out = z, leaf, None
        try:
            batch = self.batch(idx)
            raw = self._run(batch)
        finally:
            self.tap.replace = None
        if self.tap.out is None:
            raise RuntimeError(f"The embedding layer {self.tap.name!r} did not run in the forward pass.")
        return self._selected(raw, batch.n), self.tap.out

    def _selected(self, raw: Any, rows: int) -> torch.Tensor:
        """``output=``'s tensor, with one row per input row (the check :func:`probe_output` makes)."""
        out = select_output(raw, self.output)
        if out.ndim == 0 or out.shape[0] != rows:
            raise ValueError(
                f"The selected model output has shape {tuple(out.shape)} for a batch of {rows} samples; it must "
                "have one row per sample (batch first). Choose another tensor with `output`."
            )
        return out

    def points(self, idx: Any) -> torch.Tensor:
        """The samples' own points (no gradient): ``x[idx]`` cast for the model, or their embeddings
        (the forward pass stops at the embedding layer)."""
        if self.tap is None:
            return self._ids(idx)
        return self._embed(self.batch(idx))

    def _embed(self, batch: Inputs) -> torch.Tensor:
        """The embedding-layer output for ``batch`` (no gradient; the forward pass stops there)."""
        assert self.tap is not None
        self.tap.replace, self.tap.leaf, self.tap.out, self.tap.stop = None, False, None, True
        try:
            with torch.no_grad():
                self._run(batch)
        except StopForward:
            pass
        finally:
            self.tap.stop = False
        if self.tap.out is None:
            raise RuntimeError(f"The embedding layer {self.tap.name!r} did not run in the forward pass.")
        return self.tap.out.detach()

    def embed_ids(self, ids: torch.Tensor, idx: Any = None, argname: str = "baseline") -> torch.Tensor:
        """The embedding-layer output for other token ids (e.g. a padding baseline), no gradient.

        ``idx``: the samples the ids stand in for (their other inputs go into the model with them). Without
        it (ids of unrelated samples, e.g. a reference batch), a one-input model is run on the ids alone; with
        several inputs the ``nn.Embedding`` is called on them directly (other layers are refused, naming
        ``argname``).
        """
        if idx is not None:
            return self._embed(self.batch(idx, model_input(ids, self.model)))
        if self.inputs.single:
            return self._embed(Inputs(model_input(ids, self.model)))
        assert self.site is not None
        if not isinstance(self.site.module, nn.Embedding):
            raise ValueError(
                f"`{argname}` holds token ids of other samples, and the model takes several inputs: their "
                f"embeddings are computed by calling the embedding layer on them alone, which needs an "
                f"nn.Embedding, but {self.site.name!r} is a {type(self.site.module).__name__}. Pass `{argname}` as "
                f"a whole batch of the model's inputs (a tuple or dict like `inputs`) instead."
            )
        with torch.no_grad():
            return self.site.module(model_input(ids, self.model)).detach()

    def embed_inputs(self, batch: Inputs) -> torch.Tensor:
        """The embedding-layer output of another batch of the model's inputs (same structure as ``x``)."""
        return self._embed(batch.to_model(self.model))

    def grad(
        self, idx: Any, t: Target | torch.Tensor | None, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the target scores w.r.t. the points, and the points themselves."""
        g, leaf, _, _, _ = self.grad_output(idx, t, z)
        return g, leaf

    def grad_output(
        self, idx: Any, t: Any, z: torch.Tensor | None = None, method: str = "gradient"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Target, torch.Tensor]:
        """Gradient of the target scores w.r.t. the points, the points, the selected output, the rows' target and
        their scores (both detached), from one forward and one backward pass. ``t=None``: each row's predicted class (read from
        this pass's output)."""
        with torch.enable_grad():
            out, leaf = self.forward(idx, z, leaf=True)
            if t is None:
                t = as_target(predicted_classes(out, method), int(out.shape[0]))
            scores = target_scores(out, t)
            (g,) = torch.autograd.grad(scores.sum(), leaf)
        return g, leaf.detach(), out.detach(), t, scores.detach()

    def scores(self, idx: Any, t: Target | torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            return target_scores(self.forward(idx, z)[0], t)

    def reduce(self, values: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding-space values to one per token, in :attr:`result_dtype` on ``x``'s device.

        With ``times`` (the embedding): the signed sum of ``values ⊙ times`` over the features (a sum of
        contributions). Without: the L2 norm of ``values`` over the features (a gradient's magnitude).
        """
        v = values.to(self.x.device, self.result_dtype)
        if times is None:
            return torch.linalg.vector_norm(v, dim=-1)
        return (v * times.to(self.x.device, self.result_dtype)).sum(dim=-1)


def prepare_attribution(
    model: Any, x: Any, output: Any, embedding: Any, probe: bool = True, wrt: Any = None
) -> tuple[nn.Module, torch.Tensor, AttributionSpace]:
    """Validate the model, ``x`` (and ``wrt=``), ``output=`` and ``embedding=`` — before any work.

    ``output=`` is checked by one forward pass on two samples (:func:`probe_output`), or for token ids by the
    pass that finds the embedding. ``probe=False`` skips that pass for floating ``x``, for callers whose
    first chunk is no heavier than the probe (a plain gradient): :meth:`AttributionSpace.forward` makes the
    same checks on every pass. Returns the model, the explained input (``x`` itself, or the ``wrt`` input of
    several) and the space.
    """
    model = check_runnable(check_model(model, hooks=False))
    output = check_output_arg(output)
    batch, key, name = attribution_inputs(x, wrt)
    x = batch[key]
    site = resolve_embedding(model, batch, embedding, output, wrt=key)
    if site is None:
        if not x.is_floating_point():
            raise TypeError(f"`{name}` must be a floating-point tensor or integer token ids, got {x.dtype}.")
        if probe:
            probe_output(model, batch, output)
    return model, x, AttributionSpace(model, batch, output, site, key)
