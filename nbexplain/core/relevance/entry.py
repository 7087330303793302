"""The :func:`lrp` entry point: validation, batching, and one forward + one backward pass per batch."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from ..hygiene import model_device, model_dtype, preserved
from ..model_io import OutputArg, check_output_arg, check_runnable, describe_output, select_output
from ..validation import (
    check_finite,
    check_layer_names,
    check_model,
    check_positive_int,
    check_target,
    check_tensor,
)
from .canonizers import Canonizer, MergeBatchNorm, default_canonizers
from .composites import Composite, Key, get_composite
from .engine import LRPResult, _bad_nodes, _graph_error, _OpOwners, _Session
from .functional import FunctionalOpsWarning, FunctionalRules
from .inputs import EmbeddingTap, computed_in_float32, resolve_embedding, suspended_backward_hooks
from .rules import Rule

__all__ = ["lrp"]

#: Input values per pass when ``batch_size=None``.
_AUTO_BATCH_VALUES = 2**21

CanonizersArg = Union[str, None, Iterable[Canonizer]]


def _check_finite(x: torch.Tensor) -> None:
    """One reduction instead of a full mask; the detailed count only when something is wrong."""
    if not bool(torch.isfinite(x.sum())):
        check_finite(x, "x")
        raise ValueError("`x` sums to a non-finite value (overflow); rescale the input.")


def _resolve_canonizers(canonizers: CanonizersArg) -> list[Canonizer]:
    if canonizers is None or canonizers is False:
        return []
    if isinstance(canonizers, str):
        if canonizers != "auto":
            raise ValueError(f"`canonizers` must be 'auto', None or a list of canonizers, got {canonizers!r}.")
        return default_canonizers()
    if isinstance(canonizers, Canonizer):
        return [canonizers]
    out = list(canonizers)
    for c in out:
        if not isinstance(c, Canonizer):
            raise TypeError(f"`canonizers` must contain nx.MergeBatchNorm() / nx.ExplicitResidual() objects, got {c!r}.")
    return out


@dataclass
class _Plan:
    """Everything one batch needs, fixed before the first pass."""

    composite: Composite
    canonizers: list[Canonizer]
    capture: list[str]
    output: OutputArg
    embedding: str | None
    init: str
    strict: bool


def _forward(model: nn.Module, xb: torch.Tensor, plan: _Plan, owners: _OpOwners | None = None) -> tuple[Any, _Session, EmbeddingTap | None]:
    """One forward pass with the rules hooked in (canonizers active only during it)."""
    tap = EmbeddingTap(model, plan.embedding, xb) if plan.embedding is not None else None
    session: _Session | None = None
    functional = None if plan.strict or owners is not None else FunctionalRules(model)
    try:
        with ExitStack() as stack:
            if owners is not None:
                stack.enter_context(owners)
            if functional is not None:  # below the canonizers' modes: residual sums still become Sum modules
                stack.enter_context(functional)
            for c in plan.canonizers:
                if not isinstance(c, MergeBatchNorm):  # merged during the forward pass (_Session)
                    stack.enter_context(c.apply(model, xb.detach()))
            session = _Session(model, plan.composite, plan.canonizers, plan.capture)
            if functional is not None:
                functional.inside = lambda: session.depth > 0
            with torch.enable_grad():
                raw = model(xb)
    except BaseException:
        if session is not None:
            session.close()
            session.workspace.close()
        raise
    finally:
        if tap is not None:
            tap.close()
        if owners is not None:
            owners.close()
        if functional is not None:
            functional.close()
    session.close()
    if functional is not None:
        functional.report()
    return raw, session, tap


def _scores(raw: Any, plan: _Plan, n: int) -> torch.Tensor:
    out = select_output(raw, plan.output)
    if out.ndim != 2 or out.shape[0] != n:
        picked = "the model returned" if plan.output is None else "`output` selected"
        raise ValueError(
            f"lrp explains class scores (N, n_classes) with N={n}, but {picked} {describe_output(out)}"
            + ("" if isinstance(raw, torch.Tensor) else f" (the model returned {describe_output(raw)}; choose with `output=`)")
            + "."
        )
    return out


def _explain_batch(model: nn.Module, xb: torch.Tensor, tb: torch.Tensor, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, _Session]:
    raw, session, tap = _forward(model, xb, plan)
    try:
        out = _scores(raw, plan, xb.shape[0])
        tb = tb.to(out.device)
        if int(tb.min()) < 0 or int(tb.max()) >= out.shape[1]:
            raise ValueError(
                f"`target` contains class indices outside [0, {out.shape[1] - 1}] (got min "
                f"{int(tb.min())}, max {int(tb.max())}); the model has {out.shape[1]} outputs."
            )
        leaf = xb if tap is None else tap.leaf(model)[1]
        if not out.requires_grad:
            raise ValueError("The model output does not depend on `x` (no gradient path); nothing to explain.")
        bad = _bad_nodes(out)
        if bad and plan.strict:
            raise _locate_bad_ops(model, xb, plan)
        if bad:  # strict=False and still uncovered (a custom autograd.Function outside modules, …): say so
            warnings.warn(
                f"lrp(strict=False): the model computes {sorted({type(b).__name__ for b in bad})} on the "
                "explained input outside any module with an LRP rule, where no functional rule could be "
                "applied; relevance followed their gradient there, which is not a relevance rule. Move them "
                "into a module and map nx.Gradient() (or another rule) to it.",
                FunctionalOpsWarning,
                stacklevel=4,
            )
        rows = torch.arange(out.shape[0], device=out.device)
        picked = out.detach()[rows, tb]
        explained = picked if plan.init == "logit" else torch.ones_like(picked)
        seed = torch.zeros_like(out)
        seed[rows, tb] = explained
        with torch.enable_grad():
            (rel,) = torch.autograd.grad(out, leaf, seed)
    finally:
        session.workspace.close()
    if tap is not None:
        rel = rel.sum(-1)  # one value per token: summed over the embedding features
    if not bool(torch.isfinite(rel).all()):
        bad_rows = torch.nonzero(~torch.isfinite(rel.flatten(1)).all(1)).flatten().tolist()
        raise FloatingPointError(
            f"LRP produced non-finite relevance for sample(s) {bad_rows[:10]} (output "
            f"{picked[bad_rows[:3]].tolist()}): a layer overflowed its dtype or a rule divided by zero. "
            "Explain the model in float32/float64, or use rules with a stabiliser (epsilon > 0)."
        )
    return rel.detach(), out.detach(), explained, session


def _locate_bad_ops(model: nn.Module, xb: torch.Tensor, plan: _Plan) -> Exception:
    """The graph check failed: run the forward pass again, recording which module created each operation,
    and return the error naming them."""
    owners = _OpOwners(model)
    raw, session, _ = _forward(model, xb, plan, owners)
    session.workspace.close()
    out = select_output(raw, plan.output)
    return _graph_error(_bad_nodes(out), owners.owners)


def lrp(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    composite: str | Composite | Rule | Mapping[Key, Rule] = "epsilon_plus_flat",
    *,
    output: OutputArg = None,
    embedding: str | None = None,
    epsilon: float | None = None,
    gamma: float = 0.25,
    low: float | torch.Tensor | None = None,
    high: float | torch.Tensor | None = None,
    canonizers: CanonizersArg = "auto",
    layers: str | Sequence[str] | None = None,
    init: str = "logit",
    batch_size: int | None = None,
    progress: bool | None = None,
    strict: bool = True,
) -> LRPResult:
    """Layer-wise relevance propagation: how much each input feature contributes to a class score.

    The score ``f_t(x)`` of the target class is handed backwards layer by layer; each layer splits the
    relevance of its outputs over its inputs by a rule (see :mod:`nbexplain.core.relevance.rules`). One
    forward and one backward pass (the layers whose rule modifies weights recompute their output with the
    modified weights during the backward pass). Batch norms that follow a Linear/Conv are folded into it,
    residual sums split the relevance in proportion to each branch. The model is explained in eval mode and
    left exactly as found — parameters, buffers, modes, hooks, ``requires_grad`` — also when it raises.

    Parameters
    ----------
    model
        A classifier returning ``(N, n_classes)`` scores (logits; remove a final softmax), or a tuple/dict
        of outputs with ``output=`` choosing the scores.
    x
        Inputs ``(N, …)``; floats are converted to the model's dtype and device. Integer token ids
        ``(N, T)`` are attributed through an embedding layer (see ``embedding``).
    target
        The class to explain: an int for all samples, or a LongTensor ``(N,)`` (one class per sample,
        so several classes can be explained in one batch).
    composite
        Which rule each layer gets: a name — ``"epsilon"``, ``"epsilon_plus"``, ``"epsilon_plus_flat"``
        (default: flat on the first layer, z⁺ on convolutions, ε on dense layers),
        ``"epsilon_gamma_box"``, ``"epsilon_alpha2_beta1"``, ``"epsilon_alpha2_beta1_flat"`` — an
        :class:`~nbexplain.core.relevance.Composite`, a dict ``{layer type or layer name: rule}``, or one
        rule for every Linear and Conv layer (``nx.ZPlus()``; transposed convolutions are convolutions here: every
        composite gives ``ConvTranspose1d/2d/3d`` the rules of convolutions). Modules LRP has no rule for (LSTM, GRU,
        ``nn.MultiheadAttention``, custom blocks) can be mapped to ``nx.Gradient()`` (gradient × input
        through them, also when they return tuples).
    output
        Which model output holds the class scores when the model returns a tuple, dict or object: an
        index, a key / attribute name, or a callable on the output. ``None``: the model returns a tensor.
    embedding
        Name of the layer (usually an ``nn.Embedding``) whose output is attributed: the relevance is read
        there and summed over its last (feature) dimension, so ``result.relevance`` has the shape of the
        token ids ``(N, T)``. ``None``: for integer ``x`` the model's ``nn.Embedding`` (the only one, or the
        one called with ``x``), for float ``x`` the input itself.
    epsilon
        ε of every ε rule the composite assigns itself: the dense layers of a named composite (and its
        convolutions in ``"epsilon"``), batch norms that cannot be merged into a preceding layer (pre-activation
        blocks), layer scales; average pooling and residual sums split in proportion with ``min(1e-9, ε)``. So
        ``composite="epsilon", epsilon=1e-9`` is ε = 1e-9 everywhere (gradient × input on a ReLU network).
        ``None``: 1e-6, or the ε of a single ε rule given as ``composite``. A :class:`Composite` object keeps the
        ε it was made with (``nx.Composite(..., epsilon=…)``). The stabilisers of z⁺, γ, αβ and zᴮ are those
        rules' own (see :mod:`nbexplain.core.relevance.composites`); ``result.rules`` lists every layer's rule.
    gamma
        γ of the convolutions' γ rule in ``epsilon_gamma_box``.
    low, high
        Input bounds of the zᴮ rule of ``epsilon_gamma_box`` (numbers or tensors shaped like one sample;
        default: the batch's smallest and largest value).
    canonizers
        ``"auto"`` (merge batch norms into the preceding Linear/Conv, make residual sums explicit, and read
        products with a constant factor — layer scales ``x * self.gamma`` — as diagonal linear layers, ``nx.Scale``),
        ``None``, or a list of canonizer objects. Always undone on return.
    layers
        Layer name(s) whose output relevance to return in ``result.layers``.
    init
        ``"logit"``: start from the target score (Σ relevance ≈ f_t(x)); ``"one"``: start from 1.
    batch_size
        Explain at most this many samples per pass (bounds memory). ``None``: as many as fit in about
        2²¹ input values per pass (2,674 MNIST digits, 170 images of 3×64×64, 13 of 3×224×224).
    progress
        Show a progress bar over batches (default: when there is more than one batch).
    strict
        Reject models that compute on the input outside modules with rules (``F.linear``, ``a * b`` of two activations,
        ``.mean()``, ``+ self.pos``, …), naming the operations and the module whose forward computes them.
        ``False``: every such operation gets a rule consistent with gradient × input (see
        :mod:`nbexplain.core.relevance.functional`) — reshapes, permutations, indexing, ``cat``, ``F.relu``,
        max pooling pass relevance on unchanged; sums, means, differences and scalings split it in proportion
        to their terms (LRP-0); every other operation (``gelu``, ``softmax``, ``layer_norm``, products of two
        activations, ``F.linear``) gets gradient × input through it, which is not an LRP rule and is listed,
        with its module, in a :class:`~nbexplain.core.relevance.functional.FunctionalOpsWarning`. With
        ε → 0 rules and ``nx.Gradient()`` on the other modules, the map is then exactly gradient × input.

    Returns
    -------
    LRPResult
        ``.relevance`` (shape of ``x``; ``(N, T)`` for token ids), ``.conservation`` (Σ R ÷ explained output
        per sample), ``.layers``, ``.output``, ``.explained``, ``.target``, ``.rules``, ``.report()``.
        A float16/bfloat16 model is explained in float32 (its parameters are read into float32 copies for
        the call; the model itself is not changed): the relevance and outputs are then float32 — half
        precision underflows LRP's stabilisers. Other dtypes are kept.

    Notes
    -----
    Modified weights (W⁺, W⁻, γ-boosted) of a model's parameters are kept between calls (at most 128 MiB
    over all models, ``nbexplain.core.relevance.ops.CACHE_BYTES``) and used again while the parameter is
    unchanged: every in-place update (an optimiser step, ``load_state_dict``) is seen through the parameter's
    version counter, a write through ``param.data`` through a sample of its values. The cache holds the
    parameters weakly (a model is never kept alive by it); after editing a few elements through ``.data``,
    call ``nbexplain.core.relevance.ops.clear_weight_cache()``. For αβ rules on inputs after a ReLU, a layer's
    output is computed as ``z⁺ + z⁻ + b`` (the two products the rule needs), equal to the layer's own output
    to float rounding.

    Raises
    ------
    UnsupportedModuleError
        When the input reaches a module without a rule (the message names the module, its type, and how to
        map a rule), or an operation outside any module with a rule (named with the module computing it).
    FloatingPointError
        Instead of returning non-finite relevance.

    Examples
    --------
    >>> import torch
    >>> import nbexplain as nx
    >>> from nbexplain.zoo import cnn
    >>> model = cnn()
    >>> x = torch.rand(4, 1, 28, 28)
    >>> result = nx.lrp(model, x, target=3)
    >>> result.relevance.shape
    torch.Size([4, 1, 28, 28])
    >>> res = nx.lrp(model, x, torch.tensor([0, 1, 2, 3]), composite="epsilon", layers=["conv2"])
    >>> res.layers["conv2"].shape
    torch.Size([4, 32, 14, 14])
    """
    check_model(model)
    check_runnable(model)
    plan_output = check_output_arg(output)
    x = check_tensor(x, "x", min_ndim=2)
    emb = resolve_embedding(model, x, embedding)
    if emb is None and not x.is_floating_point():
        raise TypeError(f"`x` must hold floating-point values, got {x.dtype}; use x.float().")
    if x.is_floating_point():
        _check_finite(x)
    if init not in ("logit", "one"):
        raise ValueError(f"`init` must be 'logit' or 'one', got {init!r}.")
    comp = get_composite(composite, epsilon=epsilon, gamma=gamma, low=low, high=high)
    names = [n for n, _ in model.named_modules()]
    comp.check_names(names)
    capture = [] if layers is None else check_layer_names(layers, [n for n in names if n], "layers")
    plan = _Plan(comp, _resolve_canonizers(canonizers), capture, plan_output, emb, init, strict)
    n = x.shape[0]
    if n == 0:
        raise ValueError("`x` is empty; pass at least one sample.")
    bs = max(1, _AUTO_BATCH_VALUES // max(1, x[0].numel())) if batch_size is None else check_positive_int(batch_size, "batch_size")
    if isinstance(target, torch.Tensor):
        target = target.to("cpu")
    tgt = check_target(target, n)
    values = any(c.changes_values(model) for c in plan.canonizers)
    with preserved(model, values=values), suspended_backward_hooks(model), computed_in_float32(model):
        return _run(model, x, tgt, plan, bs, progress)


def _run(model: nn.Module, x: torch.Tensor, tgt: torch.Tensor, plan: _Plan, bs: int, progress: bool | None) -> LRPResult:
    """The batch loop (inside the hygiene contexts)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    device, dtype = model_device(model), model_dtype(model)
    starts = list(range(0, x.shape[0], bs))
    iterator: Iterable[int] = starts
    if progress if progress is not None else len(starts) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(starts, desc="LRP", unit="batch")
    rel_parts, out_parts, expl_parts = [], [], []
    layer_parts: dict[str, list[torch.Tensor]] = {}
    rules: dict[str, Rule] = {}
    for s in iterator:
        xb = x[s : s + bs]
        if xb.is_floating_point():
            xb = xb.to(device=device, dtype=dtype).detach()
            xb.requires_grad_(plan.embedding is None)
        else:
            xb = xb.to(device=device)
        rel, out, explained, session = _explain_batch(model, xb, tgt[s : s + bs], plan)
        rel_parts.append(rel)
        out_parts.append(out)
        expl_parts.append(explained)
        missing = [n for n in plan.capture if n not in session.captured]
        if missing:
            raise ValueError(
                f"Layer(s) {missing} in `layers` were not called on the explained input during the forward "
                "pass (or sit inside a module mapped as one unit), so they have no relevance; pick layers "
                f"the input passes through, e.g. {list(session.rules)[:6]}."
            )
        for name, slots in session.captured.items():
            for i, t in enumerate(slots):
                layer_parts.setdefault(name if i == 0 else f"{name}#{i + 1}", []).append(t)
        for k, v in session.rules.items():
            rules.setdefault(k, v)
    cat = (lambda parts: parts[0]) if len(rel_parts) == 1 else (lambda parts: torch.cat(parts))
    return LRPResult(
        relevance=cat(rel_parts),
        target=tgt,
        output=cat(out_parts),
        explained=cat(expl_parts),
        layers={k: cat(v) for k, v in layer_parts.items()},
        composite=plan.composite,
        rules=rules,
    )
