"""Attention rollout (Abnar & Zuidema 2020, *Quantifying Attention Flow in Transformers*, ACL).

How much each input token flows into a token's representation at the top of a transformer, read from the
attention weights alone. Per layer ``l`` the attention ``A_l`` ``(N, heads, T, T)`` is fused over the heads
(the paper averages them; the maximum or minimum over heads is the common variant), the residual
connection is accounted for by mixing in the identity, ``Â_l = (1 − r)·A_l + r·I`` with ``r = 0.5`` in the
paper, the rows are renormalised to sum to 1, and the layers are composed,

    rollout = Â_L · Â_{L−1} ⋯ Â_1        (row i: how much of token i at the top comes from each input token).

The explanation of a classifier that reads its class token is that token's row (``token=0``); a model without
one is explained by the mean over the rows (``token=None``).

Rollout is **not** an attribution of the model's decision: it ignores the values, the MLPs and the head — it
has no target class, and the same map is returned whichever class is asked about. Shown beside a relevance
method (AttnLRP, gradient × input) it shows how far attention alone is from an explanation.

The weights are recorded during the call only (:class:`~nbexplain.core.attribution.attention_capture.AttentionRecorder`):
``nn.MultiheadAttention`` (also inside ``nn.TransformerEncoderLayer``), ``F.scaled_dot_product_attention``
and hand-written ``softmax(q kᵀ) v``. The model is left exactly as it was found.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._base.hygiene import preserved
from .._base.machinery import batch_slices, check_progress, progress_bar
from .._base.model_inputs import call_model
from .._base.model_io import OutputArg, check_output_arg, check_runnable, select_output
from .._base.validation import check_choice, check_model, check_positive_int
from .attention_capture import AttentionRecorder
from .patches import MAX_EXTRA_TOKENS, patch_grid, upsample_patch_map
from .result import AttributionResult
from .space import attribution_inputs

__all__ = ["attention_rollout", "AttentionRolloutResult", "HEAD_FUSIONS", "rollout_matrices"]

#: How the heads of one layer are fused: the paper's mean, or the max / min over heads.
HEAD_FUSIONS = ("mean", "max", "min")


@dataclass(repr=False, kw_only=True)
class AttentionRolloutResult(AttributionResult):
    """What :func:`attention_rollout` returns: an :class:`AttributionResult` plus the rollout itself.

    Rollout has no target: ``.target`` and ``.score`` are ``None`` (the same map explains every class) and
    ``.conservation`` raises — each rollout row sums to 1 by construction, which says nothing about the
    model's score. ``.attribution`` is the map the views show: for images ``(N, C, H, W)`` the patch tokens'
    scores on the patch grid, repeated over each patch's pixels, ``(N, H, W)``; for token ids and other inputs
    the per-token scores, ``(N, T)`` (= ``.tokens``).

    Attributes
    ----------
    tokens
        ``(N, T)`` float64 — the rollout row of ``token`` (or the mean row): each input token's share.
    rollout
        ``(N, T, T)`` float64 — ``Â_L ⋯ Â_1``; row ``i`` is how much each input token flows into token ``i``.
    attention
        ``{layer name: (N, heads, T, T)}`` — the recorded attention weights, in the order the model ran them
        (a module that ran attention twice appears as ``name`` and ``name#1``).
    extra_tokens
        Tokens in front of the patch tokens (class/register tokens) for image inputs, else ``None``.
    grid
        The patch grid ``(rows, columns)`` for image inputs, else ``None``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.architectures import vit
    >>> res = nx.attention_rollout(vit(), torch.rand(2, 1, 16, 16))
    >>> res.attribution.shape, res.tokens.shape, res.grid, list(res.attention)
    (torch.Size([2, 16, 16]), torch.Size([2, 17]), (4, 4), ['encoder.layers.0.self_attn', 'encoder.layers.1.self_attn'])
    >>> bool(torch.allclose(res.tokens.sum(1), torch.ones(2, dtype=torch.float64)))   # a distribution per sample
    True
    """

    tokens: torch.Tensor
    rollout: torch.Tensor
    attention: dict[str, torch.Tensor] = field(default_factory=dict)
    extra_tokens: int | None = None
    grid: tuple[int, int] | None = None

    @property
    def conservation(self) -> torch.Tensor:
        """Not defined for rollout (it explains no score); raises a ``TypeError`` saying so."""
        raise TypeError(
            "attention rollout explains no target score (its rows sum to 1 by construction), so it has no "
            "conservation; compare it with a relevance method such as nx.lrp or nx.gradient_x_input."
        )

    def __repr__(self) -> str:
        shape = "×".join(str(s) for s in self.attribution.shape)
        return f"AttentionRolloutResult(attribution={shape}, layers={len(self.attention)})"


def rollout_matrices(
    attention: Sequence[torch.Tensor], *, head_fusion: str = "mean", residual: float = 0.5
) -> torch.Tensor:
    """``Â_L ⋯ Â_1`` in float64 from per-layer attention ``(N, heads, T, T)``, first layer first.

    Examples
    --------
    >>> a = torch.softmax(torch.randn(1, 2, 3, 3), -1)
    >>> r = rollout_matrices([a], residual=0.0)
    >>> bool(torch.allclose(r, a.double().mean(1)))
    True
    """
    out: torch.Tensor | None = None
    for a in attention:
        # heads fused in the weights' own dtype (max/min exactly; a mean of float32 weights to float32 rounding),
        # everything after in float64
        fused = a.mean(1) if head_fusion == "mean" else a.amax(1) if head_fusion == "max" else a.amin(1)
        mixed = fused.to(torch.float64).mul_(1.0 - residual)  # a fresh tensor: edited in place
        mixed.diagonal(dim1=-2, dim2=-1).add_(residual)
        mixed.div_(mixed.sum(-1, keepdim=True))
        out = mixed if out is None else torch.bmm(mixed, out)
    assert out is not None
    return out


def _check_residual(residual: Any) -> float:
    if isinstance(residual, bool) or not isinstance(residual, numbers.Real) or not 0.0 <= float(residual) < 1.0:
        raise ValueError(
            f"`residual` must be a number in [0, 1): the identity's share in Â = (1 − residual)·A + residual·I "
            f"(0.5 in the paper; 0: attention only), got {residual!r}."
        )
    return float(residual)


def _check_layers(layers: Any) -> list[str] | None:
    if layers is None:
        return None
    names = [layers] if isinstance(layers, str) else list(layers) if isinstance(layers, Sequence) else None
    if not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"`layers` must be an attention layer's name or a list of them, got {layers!r}.")
    return names


def _record_pass(
    model: nn.Module, batch: Any, n: int, batch_size: int, output: OutputArg, progress: bool | None
) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor, tuple[int, int] | None]:
    """Run every chunk with the recorder: the attention records (chunks joined), the selected outputs and the
    grid of the patch embedding (the last convolution before the first attention), if any."""
    names: list[str] | None = None
    parts: list[list[torch.Tensor]] = []
    outs = []
    slices = list(batch_slices(n, batch_size))
    with torch.no_grad(), AttentionRecorder(model) as rec, progress_bar(
        total=len(slices), desc="attention rollout", progress=progress
    ) as bar:
        for sl in slices:
            rows = batch.rows(sl).to_model(model)
            rec.start(sl.stop - sl.start)
            raw = call_model(model, rows)
            outs.append(select_output(raw, output).detach())
            got = [name for name, _ in rec.records]
            if names is None:
                names, parts = got, [[] for _ in got]
            elif got != names:
                raise RuntimeError(f"The model ran different attention layers on different batches ({names} vs {got}).")
            for i, (_, w) in enumerate(rec.records):
                parts[i].append(w)
            bar.update(1)
    assert names is not None
    joined = [(name, torch.cat(p) if len(p) > 1 else p[0]) for name, p in zip(names, parts, strict=True)]
    return joined, (torch.cat(outs) if len(outs) > 1 else outs[0]), rec.conv_grid


def _no_attention_error(model: nn.Module) -> ValueError:
    return ValueError(
        f"`model` ({type(model).__name__}) ran no attention that attention rollout can read: it looks for "
        "nn.MultiheadAttention modules, calls of F.scaled_dot_product_attention, and softmax(q @ kᵀ) over the last "
        "axis of (…, T, T) scores whose result is multiplied into the values (attn @ v) — none ran in the forward "
        "pass."
    )


def attention_rollout(
    model: nn.Module,
    inputs: Any,
    *,
    token: int | None = 0,
    head_fusion: str = "mean",
    residual: float = 0.5,
    layers: str | Sequence[str] | None = None,
    grid: Sequence[int] | None = None,
    output: OutputArg = None,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
) -> AttentionRolloutResult:
    """Attention rollout (Abnar & Zuidema 2020): how much each input token flows into ``token`` at the top.

    Parameters
    ----------
    model
        A transformer: ``nn.MultiheadAttention`` / ``nn.TransformerEncoder`` layers, blocks calling
        ``F.scaled_dot_product_attention``, or hand-written ``softmax(q @ k.T) @ v``. Every attention layer must
        be self-attention over the same ``T`` tokens (choose them with ``layers=`` otherwise).
    inputs
        What is fed to the model: images ``(N, C, H, W)``, token ids ``(N, T)``, or several inputs as a tuple,
        dict or ``nx.Inputs`` (the first one decides the map's layout).
    token
        The query token whose rollout row explains the output: ``0`` (the class token) by default, any index
        (negative counts from the end, e.g. ``-1`` for the last token of a causal model), or ``None`` for the
        mean over all rows (a model without a class token, e.g. one that mean-pools its tokens).
    head_fusion
        ``"mean"`` (the paper), ``"max"`` or ``"min"`` over the heads of each layer.
    residual
        The identity's share in ``Â = (1 − residual)·A + residual·I`` (0.5 in the paper; 0: attention only),
        in ``[0, 1)``.
    layers
        Names of the attention layers to compose (as in ``.attention``), in the order they ran; default all.
    grid
        For image inputs: the patch grid ``(rows, columns)``; the patch tokens are the last ``rows·columns``
        tokens, row by row. By default it is the output grid of the last ``nn.Conv2d`` that ran before the
        first attention (a patch embedding) when that leaves 0–8 extra tokens in front, else inferred from
        the token count: the grid of square patches that uses the most tokens, with 0–8 extra
        (class/register) tokens in front. Pass it for other patchifications (e.g. rectangular patches cut
        with ``unfold``).
    output
        Which output of a model that returns a tuple/dict is kept as ``.output`` (index, key or callable).
    batch_size
        Samples per forward pass.
    eval_mode
        Run the model in eval mode (its modes are restored after).
    progress
        ``None``: a progress bar once the call has run 2 s; ``True``: always; ``False``: never.

    Returns
    -------
    AttentionRolloutResult
        ``.attribution`` (image inputs: ``(N, H, W)``, else ``(N, T)``), ``.tokens``, ``.rollout``,
        ``.attention``; ``.target`` and ``.score`` are ``None``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.architectures import vit
    >>> res = nx.attention_rollout(vit(), torch.rand(3, 1, 16, 16))
    >>> res.attribution.shape                       # the 4×4 patch grid, shown at image size
    torch.Size([3, 16, 16])
    >>> res.tokens[:, 1:].reshape(3, 4, 4).shape     # the class token's row over the 16 patch tokens
    torch.Size([3, 4, 4])
    """
    model = check_runnable(check_model(model, what="nx.attention_rollout"))
    if token is not None and (isinstance(token, bool) or not isinstance(token, numbers.Integral)):
        raise TypeError(f"`token` must be a token index (0: the class token) or None (the mean over rows), got {token!r}.")
    head_fusion = check_choice(head_fusion, "head_fusion", HEAD_FUSIONS)
    residual = _check_residual(residual)
    wanted = _check_layers(layers)
    batch_size = check_positive_int(batch_size, "batch_size")
    output = check_output_arg(output)
    progress = check_progress(progress)
    if not isinstance(eval_mode, bool):
        raise TypeError(f"`eval_mode` must be True or False, got {eval_mode!r}.")
    batch, key, _name = attribution_inputs(inputs)
    x = batch[key]
    n = int(x.shape[0])
    with preserved(model):
        if eval_mode:
            model.eval()
        records, out, conv_grid = _record_pass(model, batch, n, batch_size, output, progress)
    if not records:
        raise _no_attention_error(model)
    if wanted is not None:
        known = [name for name, _ in records]
        missing = [w for w in wanted if w not in known]
        if missing:
            raise ValueError(f"`layers` names {missing}, which ran no attention; the attention layers are {known}.")
        records = [(name, w) for name, w in records if name in wanted]
    attention = dict(records)
    T = _check_square(attention)
    roll = rollout_matrices(list(attention.values()), head_fusion=head_fusion, residual=residual)
    if token is None:
        tokens = roll.mean(1)
    else:
        if not -T <= int(token) < T:
            raise ValueError(f"`token`={token} is out of range for {T} tokens; pass an index in [{-T}, {T - 1}] or None.")
        tokens = roll[:, int(token)]
    attribution, extra, g = tokens, None, None
    if batch.single and x.is_floating_point() and x.ndim == 4:
        if grid is None and conv_grid is not None and 0 <= T - conv_grid[0] * conv_grid[1] <= MAX_EXTRA_TOKENS:
            grid = conv_grid  # the patch embedding's own grid
        extra, g = patch_grid(T, int(x.shape[2]), int(x.shape[3]), grid)
        patches = tokens[:, extra:].reshape(n, *g)
        attribution = upsample_patch_map(patches, int(x.shape[2]), int(x.shape[3]))
    elif grid is not None:
        raise ValueError(f"`grid` is for image inputs (N, C, H, W); `inputs` has shape {tuple(x.shape)}.")
    settings = {"token": token, "head_fusion": head_fusion, "residual": residual, "layers": list(attention)}
    return AttentionRolloutResult(
        attribution=attribution, target=None, output=out, score=None, method="attention_rollout",  # type: ignore[arg-type]
        settings=settings, tokens=tokens, rollout=roll, attention=attention, extra_tokens=extra, grid=g,
    )


def _check_square(attention: dict[str, torch.Tensor]) -> int:
    """The common token count ``T`` of every layer (self-attention ``T × T``); a clear error otherwise."""
    sizes = {name: (int(w.shape[-2]), int(w.shape[-1])) for name, w in attention.items()}
    cross = {k: v for k, v in sizes.items() if v[0] != v[1]}
    if cross:
        raise ValueError(
            f"Attention rollout composes self-attention maps T×T, but {cross} (queries × keys) are not square "
            f"(cross-attention or cached keys). Choose the self-attention layers with `layers=` (all: {list(sizes)})."
        )
    counts = {v[0] for v in sizes.values()}
    if len(counts) > 1:
        raise ValueError(
            f"Attention rollout composes layers over the same tokens, but their token counts differ: {sizes}. "
            "Choose layers with one token count with `layers=`."
        )
    return counts.pop()
