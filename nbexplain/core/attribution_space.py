"""The space an attribution is computed in, and running a model there.

For floating inputs that is the input itself. For integer token ids it is the output of an embedding
layer: the ids still go into the model, and the layer's output is recorded or replaced (a noisy, scaled
or interpolated embedding) by a :class:`~nbexplain.core.model_io.LayerTap`. The gradient family
(:mod:`~nbexplain.core.sensitivity`) and rate–distortion explanations (:mod:`~nbexplain.core.rate_distortion`)
run every model call through :class:`AttributionSpace`, and validate their arguments with
:func:`prepare_attribution` (one early forward pass) before any heavy work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from .hygiene import model_device, model_dtype, preserved
from .model_io import (
    EmbeddingSite,
    LayerTap,
    OutputArg,
    StopForward,
    check_output_arg,
    check_runnable,
    model_input,
    probe_output,
    resolve_embedding,
    select_output,
)
from .targets import Target, as_target
from .validation import check_model, check_tensor

__all__ = ["AttributionSpace", "prepare_attribution", "check_attribution_input", "target_scores"]


def check_attribution_input(x: Any, argname: str = "x") -> torch.Tensor:
    """A batch ``(N, …)`` with N ≥ 1: floating (and finite) values, or integer token ids."""
    x = check_tensor(x, argname, min_ndim=2, finite=True)
    if x.shape[0] == 0:
        raise ValueError(f"`{argname}` is an empty batch (shape {tuple(x.shape)}); pass at least one sample.")
    return x


def target_scores(output: torch.Tensor, target: Any, argname: str = "target") -> torch.Tensor:
    """Each row's explained score, read from a model output by the shared target convention.

    ``target`` is a bound :class:`~nbexplain.core.targets.Target` (one per row), or class indices
    ``(rows,)``. ``(N,)`` outputs accept only class 0; ``(N, C)`` a class; a 3-D output ``(N, T, V)`` a
    ``(position, token)`` target; a ≥ 4-D dense map a class (its map summed over all positions) or a region;
    any output a function of the output (see :mod:`nbexplain.core.targets`).
    """
    if output.ndim == 0:
        raise ValueError("The model returned a scalar; it must return one row per sample, shape (N, C).")
    if not isinstance(target, Target):
        target = as_target(target, int(output.shape[0]), argname)
    return target.scores(output)


class AttributionSpace:
    """Where an attribution is computed, and how the model is run there.

    For floating ``x`` the space is the input itself (points are rows of ``x`` in the model's dtype);
    for token ids it is the output of the embedding layer ``site`` (points ``(n, T, D)``, substituted for
    that layer's output by a :class:`~nbexplain.core.model_io.LayerTap` while the ids still go in). Use
    :meth:`active` around every model call: it sets the attribution mode and registers the tap.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, output: OutputArg, site: EmbeddingSite | None) -> None:
        self.model, self.x, self.output, self.site = model, x, output, site
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

    def forward(self, idx: Any, z: torch.Tensor | None = None, leaf: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The selected model output for the samples ``idx`` at the points ``z`` (``None``: their own
        points), and the point tensor the model saw (a fresh leaf when ``leaf``)."""
        if self.tap is None:
            inp = z if z is not None else self._ids(idx)
            if leaf:
                inp = inp.detach().requires_grad_(True)
            return self._selected(self.model(inp), inp.shape[0]), inp
        self.tap.replace, self.tap.leaf, self.tap.out = z, leaf, None
        try:
            ids = self._ids(idx)
            raw = self.model(ids)
        finally:
            self.tap.replace = None
        if self.tap.out is None:
            raise RuntimeError(f"The embedding layer {self.tap.name!r} did not run in the forward pass.")
        return self._selected(raw, ids.shape[0]), self.tap.out

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
        self.tap.replace, self.tap.leaf, self.tap.out, self.tap.stop = None, False, None, True
        try:
            with torch.no_grad():
                self.model(self._ids(idx))
        except StopForward:
            pass
        finally:
            self.tap.stop = False
        if self.tap.out is None:
            raise RuntimeError(f"The embedding layer {self.tap.name!r} did not run in the forward pass.")
        return self.tap.out.detach()

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The embedding-layer output for other token ids (e.g. a padding baseline), no gradient."""
        saved = self.x
        try:
            self.x = ids
            return self.points(slice(None))
        finally:
            self.x = saved

    def grad(self, idx: Any, t: torch.Tensor, z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the target scores w.r.t. the points, and the points themselves."""
        with torch.enable_grad():
            out, leaf = self.forward(idx, z, leaf=True)
            scores = target_scores(out, t)
            (g,) = torch.autograd.grad(scores.sum(), leaf)
        return g, leaf.detach()

    def scores(self, idx: Any, t: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
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
    model: Any, x: Any, output: Any, embedding: Any, probe: bool = True
) -> tuple[nn.Module, torch.Tensor, AttributionSpace]:
    """Validate the model, ``x``, ``output=`` and ``embedding=`` — before any work.

    ``output=`` is checked by one forward pass on two samples (:func:`probe_output`), or for token ids by the
    pass that finds the embedding. ``probe=False`` skips that pass for floating ``x``, for callers whose
    first chunk is no heavier than the probe (a plain gradient): :meth:`AttributionSpace.forward` makes the
    same checks on every pass.
    """
    model = check_runnable(check_model(model))
    output = check_output_arg(output)
    x = check_attribution_input(x)
    site = resolve_embedding(model, x, embedding, output)
    if site is None:
        if not x.is_floating_point():
            raise TypeError(f"`x` must be a floating-point tensor or integer token ids, got {x.dtype}.")
        if probe:
            probe_output(model, x, output)
    return model, x, AttributionSpace(model, x, output, site)
