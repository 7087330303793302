"""The :func:`lrp` entry point: validation, batching, and one forward + one backward pass per batch, with the
rules on the model by :func:`~.session.rules_on` (the code path :func:`~.context.lrp_rules` uses too)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from ..._base.compiled import strip_compiled
from ..._base.hygiene import model_device, model_dtype
from ..._base.machinery import batch_slices, check_progress, progress_bar
from ..._base.model_inputs import InputKey, Inputs
from ..._base.model_io import (
    OutputArg,
    call_with_note,
    check_output_arg,
    check_runnable,
    describe_output,
    model_input,
    select_output,
)
from ..._base.targets import Target, TargetArg, as_target
from ..._base.validation import (
    check_finite,
    check_model,
    check_positive_int,
    match_layer_names,
    renamed_arguments,
)
from ..result import resolved_target
from ..space import AttributionInputs, attribution_inputs, bind_target, predicted_classes
from .canonizers import Canonizer, MergeBatchNorm, default_canonizers
from .composites import Composite, Key, get_composite
from .engine import LRPResult
from .inputs import EmbeddingTap, resolve_embedding
from .rules import Rule
from .session import Session, rules_on

__all__ = ["lrp"]

#: Input values per pass when ``batch_size=None``.
_AUTO_BATCH_VALUES = 2**21

CanonizersArg = Union[str, None, Iterable[Canonizer]]


def _check_finite(x: torch.Tensor) -> None:
    """One reduction instead of a full mask; the detailed count only when something is wrong."""
    if not bool(torch.isfinite(x.sum())):
        check_finite(x, "inputs")
        raise ValueError("`inputs` sums to a non-finite value (overflow); rescale the input.")


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
            raise TypeError(f"`canonizers` must contain nx.canonizers.MergeBatchNorm() / nx.canonizers.ExplicitResidual() objects, got {c!r}.")
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
    wrt: InputKey = 0


def _scores(raw: Any, plan: _Plan, n: int) -> torch.Tensor:
    out = select_output(raw, plan.output)
    if out.ndim == 0 or out.shape[0] != n:
        picked = "the model returned" if plan.output is None else "`output` selected"
        raise ValueError(
            f"lrp explains a model output with one row per sample (N={n}), but {picked} {describe_output(out)}"
            + ("" if isinstance(raw, torch.Tensor) else f" (the model returned {describe_output(raw)}; choose with `output=`)")
            + "."
        )
    return out


def _explain_batch(
    model: nn.Module, inp: Inputs, tb: Target | None, plan: _Plan, session: Session
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Target, torch.Tensor]:
    """One forward pass with the session's rules on the model (its forward hook checks the graph) and one
    backward pass seeded by ``plan.init``: relevance, output, the relevance put on the output, the target
    (``None``: the predicted classes of this pass) and the explained score (float64)."""
    xb = inp[plan.wrt]
    several = None if inp.single else inp
    tap = EmbeddingTap(model, plan.embedding, xb, several, plan.wrt) if plan.embedding is not None else None
    try:
        try:
            with torch.enable_grad():
                raw = call_with_note(model, inp)
        finally:
            if tap is not None:
                tap.close()
        out = _scores(raw, plan, xb.shape[0])
        if tb is None:
            tb = as_target(predicted_classes(out, "lrp"), xb.shape[0])
        # Where the explained score reads the output (a one-hot for a class or a token, a region's mask,
        # ∂s/∂out for a function): checked against the output's shape before any backward pass.
        weights = tb.seed(out.detach())
        leaf = xb if tap is None else tap.leaf(model)[1]
        if not out.requires_grad:
            raise ValueError("The model output does not depend on `inputs` (no gradient path); nothing to explain.")
        # init="logit": the relevance put on the output is the explained part of it, weights ⊙ out (for a class,
        # a token or a region: the selected scores themselves); init="one": the weights.
        if plan.init == "logit":  # zero weights stay exact zeros next to non-finite outputs the score never reads
            seed = torch.where(weights != 0, weights * out.detach(), torch.zeros_like(weights))
        else:
            seed = weights
        explained = seed.reshape(seed.shape[0], -1).sum(dim=1)
        picked = explained
        with torch.enable_grad():
            (rel,) = torch.autograd.grad(out, leaf, seed)
    finally:
        if session.workspace is not None:
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
    score = tb.scores(out.detach()).to(torch.float64)
    return rel.detach(), out.detach(), explained, tb, score


@renamed_arguments(x="inputs", eval="eval_mode")
def lrp(
    model: nn.Module,
    inputs: AttributionInputs,
    target: TargetArg | None = None,
    composite: str | Composite | Rule | Mapping[Key, Rule] = "epsilon_plus_flat",
    *,
    wrt: InputKey | None = None,
    output: OutputArg = None,
    embedding: str | None = None,
    epsilon: float | None = None,
    gamma: float | None = None,
    low: float | torch.Tensor | None = None,
    high: float | torch.Tensor | None = None,
    canonizers: CanonizersArg = "auto",
    layers: str | Sequence[str] | None = None,
    init: str = "logit",
    batch_size: int | None = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
    strict: bool = True,
) -> LRPResult:
    """Layer-wise relevance propagation: how much each input feature contributes to a class score.

    The score ``f_t(x)`` of the target class is handed backwards layer by layer; each layer splits the
    relevance of its outputs over its inputs by a rule (see :mod:`nbexplain.core.attribution.lrp.rules`). One
    forward and one backward pass (the layers whose rule modifies weights recompute their output with the
    modified weights during the backward pass). Batch norms that follow a Linear/Conv are folded into it,
    residual sums split the relevance in proportion to each branch. The model is explained in eval mode and
    left exactly as found — parameters, buffers, modes, hooks, ``requires_grad`` — also when it raises.

    Parameters
    ----------
    model
        A classifier returning ``(N, n_classes)`` scores (logits; remove a final softmax), a sequence
        ``(N, T, V)`` or dense map ``(N, C, H, W)``, or a tuple/dict of outputs with ``output=`` choosing one.
        A ``torch.compile``'d model is explained through its eager module (``model._orig_mod``); a
        TorchScript model is refused (LRP needs hooks on its layers).
    inputs
        Inputs ``(N, …)``; floats are converted to the model's dtype and device. Integer token ids
        ``(N, T)`` are attributed through an embedding layer (see ``embedding``). Several inputs as one batch
        (a tuple, a dict or ``nx.Inputs``), as in :func:`~nbexplain.gradient`.
    target
        What to explain, as in :func:`nbexplain.gradient`: ``None`` (default) the predicted class of each
        sample (the argmax of ``(N, C)`` scores, read from the explained forward pass itself); a class, an int
        for all samples or a LongTensor
        ``(N,)`` (one class per sample, so several classes can be explained in one batch); ``(position,
        token)`` for a sequence output ``(N, T, V)``; a class (its map summed over all positions) or
        ``nx.Target.region(class, mask)`` for a dense map; or a function of the output returning one score per
        sample. The relevance put on the output is ``∂s/∂out ⊙ out`` (``init="logit"``): the selected scores
        for a class, token or region — and for a function ``s`` that is homogeneous of degree 1 (picks, sums
        and weighted sums of outputs) it adds up to ``s``.
    wrt
        With several inputs, the one explained (a position or keyword name; ``None``: the first), as in
        :func:`~nbexplain.gradient`: relevance flows back to it alone. The others are held fixed (each batch
        of ``batch_size`` samples gets their own rows) and are no path for relevance: what the model computes
        from them alone is a constant of the explained input, and where it combines them with the explained
        input (a mask multiplying hidden states) it needs a rule like any operation on that input
        (``strict=False`` gives one).
    composite
        Which rule each layer gets: a name — ``"epsilon"``, ``"epsilon_plus"``, ``"epsilon_plus_flat"``
        (default: flat on the first layer, z⁺ on convolutions, ε on dense layers),
        ``"epsilon_gamma_box"``, ``"epsilon_alpha2_beta1"``, ``"epsilon_alpha2_beta1_flat"`` — an
        :class:`~nbexplain.core.attribution.lrp.Composite`, a dict ``{layer type or layer name: rule}``, or one
        rule for every Linear and Conv layer (``nx.rules.ZPlus()``; transposed convolutions are convolutions here: every
        composite gives ``ConvTranspose1d/2d/3d`` the rules of convolutions). Modules LRP has no rule for (LSTM, GRU,
        ``nn.MultiheadAttention``, custom blocks) can be mapped to ``nx.rules.Gradient()`` (gradient × input
        through them, also when they return tuples).
    output
        Which model output holds the class scores when the model returns a tuple, dict or object: an
        index, a key / attribute name, or a callable on the output. ``None``: the model returns a tensor.
    embedding
        Name of the layer (usually an ``nn.Embedding``) whose output is attributed: the relevance is read
        there and summed over its last (feature) dimension, so ``result.attribution`` has the shape of the
        token ids ``(N, T)``. ``None``: for integer ids the model's ``nn.Embedding`` (the only one, or the
        one called with them), for floating inputs the input itself.
    epsilon, gamma, low, high
        Parameters of a named composite, passed to it only when given (``None``: the composite's own default);
        a composite that does not take one refuses it (``composite="epsilon", gamma=0.5`` raises a
        ``TypeError`` naming the composite's parameters). Every named composite takes ``epsilon``, the ε of
        every ε rule it assigns itself: its dense layers (and its convolutions in ``"epsilon"``), batch norms that
        cannot be merged into a preceding layer (pre-activation blocks), layer scales; average pooling and residual
        sums split in proportion with ``min(1e-9, ε)``. So ``composite="epsilon", epsilon=1e-9`` is ε = 1e-9
        everywhere (gradient × input on a ReLU network). Default 1e-6, or the ε of a single ε rule given as
        ``composite``; a :class:`Composite` object keeps the ε it was made with (``nx.Composite(..., epsilon=…)``)
        and, like a rule or a dict, takes no other parameter. ``epsilon_gamma_box`` also takes ``gamma`` (γ of
        its convolutions' γ rule, default 0.25) and ``low``, ``high`` (input bounds of its first layer's zᴮ
        rule: numbers or tensors shaped like one sample; default: the batch's smallest and largest value).
        Your own composites (:func:`~nbexplain.register_composite`) take the parameters they declare. The
        stabilisers of z⁺, γ, αβ and zᴮ are those rules' own (see :mod:`nbexplain.core.attribution.lrp.composites`);
        ``result.rules`` lists every layer's rule.
    canonizers
        ``"auto"`` (merge batch norms into the preceding Linear/Conv, make residual sums explicit, and read
        products with a constant factor — layer scales ``x * self.gamma`` — as diagonal linear layers, ``nx.canonizers.Scale``),
        ``None``, or a list of canonizer objects. Always undone on return.
    layers
        Layer name(s) whose output relevance to return in ``result.layers``.
    init
        ``"logit"``: start from the target score (Σ relevance ≈ f_t(x)); ``"one"``: start from 1 — the
        gradient's seed, so ``init="one"`` is what :func:`~nbexplain.gradient` returns inside
        :func:`~nbexplain.lrp_rules` (the same rules on the model for any gradient-based method).
    batch_size
        Explain at most this many samples per pass (bounds memory; 256 as in every method). ``None``: as many as
        fit in about 2²¹ input values per pass (2,674 MNIST digits, 170 images of 3×64×64, 13 of 3×224×224) —
        the safer choice for large images and deep models.
    eval_mode
        Explain the model in eval mode (default; batch norms use their running statistics and are merged into
        the preceding layer). ``False`` explains it in the modes it is in; a batch norm in training mode then
        normalises with the batch's statistics, which cannot be folded into the preceding layer, so
        ``eval_mode=False`` with such a batch norm needs ``canonizers`` without ``MergeBatchNorm`` (the batch
        norm then gets the rule of an unmerged batch norm, the affine map of the batch's statistics). Modes,
        parameters and buffers (running statistics) are restored afterwards.
    progress
        Show a progress bar over batches (``None``: once the work has run for more than 2 s).
    strict
        Reject models that compute on the input outside modules with rules (``F.linear``, ``a * b`` of two activations,
        ``.mean()``, ``+ self.pos``, …), naming the operations and the module whose forward computes them.
        ``False``: every such operation gets a rule consistent with gradient × input (see
        :mod:`nbexplain.core.attribution.lrp.functional`) — reshapes, permutations, indexing, ``cat``, ``F.relu``,
        max pooling pass relevance on unchanged; sums, means, differences and scalings split it in proportion
        to their terms (LRP-0); every other operation (``gelu``, ``softmax``, ``layer_norm``, products of two
        activations, ``F.linear``) gets gradient × input through it, which is not an LRP rule and is listed,
        with its module, in a :class:`~nbexplain.core.attribution.lrp.functional.FunctionalOpsWarning`. With
        ε → 0 rules and ``nx.rules.Gradient()`` on the other modules, the map is then exactly gradient × input.

    Returns
    -------
    LRPResult
        ``.attribution`` (the relevance, shape of the input; ``(N, T)`` for token ids), ``.conservation`` (Σ R ÷
        the relevance put on the output, per sample), ``.layers``, ``.output``, ``.score`` (the explained score,
        float64), ``.output_relevance``, ``.target``, ``.rules``, ``.report()``.
        A float16/bfloat16 model is explained in float32 (its parameters are read into float32 copies for
        the call; the model itself is not changed): the relevance and outputs are then float32 — half
        precision underflows LRP's stabilisers. Other dtypes are kept.

    Notes
    -----
    Modified weights (W⁺, W⁻, γ-boosted) of a model's parameters are kept between calls (at most 128 MiB
    over all models, ``nbexplain.core.attribution.lrp.ops.CACHE_BYTES``) and used again while the parameter is
    unchanged: every in-place update (an optimiser step, ``load_state_dict``) is seen through the parameter's
    version counter, a write through ``param.data`` through a sample of its values. The cache holds the
    parameters weakly (a model is never kept alive by it); after editing a few elements through ``.data``,
    call ``nbexplain.core.attribution.lrp.ops.clear_weight_cache()``. For αβ rules on inputs after a ReLU, a layer's
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
    >>> result.attribution.shape
    torch.Size([4, 1, 28, 28])
    >>> res = nx.lrp(model, x, torch.tensor([0, 1, 2, 3]), composite="epsilon", layers=["conv2"])
    >>> res.layers["conv2"].shape
    torch.Size([4, 32, 14, 14])
    """
    model = check_runnable(check_model(model, what="nx.lrp"))
    params = {k: v for k, v in dict(epsilon=epsilon, gamma=gamma, low=low, high=high).items() if v is not None}
    batch, plan, requested = _make_plan(
        model, inputs, wrt, output, embedding, composite, params, canonizers, layers, init, strict
    )
    per_sample = sum(t[0].numel() for t in batch.tensors)
    bs = max(1, _AUTO_BATCH_VALUES // max(1, per_sample)) if batch_size is None else check_positive_int(batch_size, "batch_size")
    check_progress(progress)
    eval_mode = _check_eval_mode(model, eval_mode, plan)
    if isinstance(target, torch.Tensor):
        target = target.to("cpu")
    tgt = None if target is None else bind_target(target, batch[plan.wrt].shape[0])
    # the rules go on the model the way nx.lrp_rules puts them there (one code path): the model's backward pass
    # then propagates relevance; the graph check reads the explained output only
    with rules_on(
        model, plan.composite, plan.canonizers, plan.capture, strict=plan.strict,
        select=lambda raw: [select_output(raw, plan.output)], what="nx.lrp", eval_mode=eval_mode,
    ) as session:
        result = _run(model, batch, tgt, plan, bs, progress, session)
    result.settings = dict(
        composite=plan.composite.name, **params, wrt=plan.wrt, output=output, embedding=plan.embedding,
        canonizers=[type(c).__name__ for c in plan.canonizers], layers=list(requested) or None, init=init,
        batch_size=bs, eval_mode=eval_mode, strict=strict,
    )
    if any(given != own for given, own in requested.items()):
        result.layers = {_given_name(k, requested): v for k, v in result.layers.items()}
    return result


def _check_eval_mode(model: nn.Module, eval_mode: Any, plan: _Plan) -> bool:
    """``eval_mode=False`` keeps the model's modes; a training-mode batch norm cannot then be merged."""
    if not isinstance(eval_mode, bool):
        raise TypeError(f"`eval_mode` must be True or False, got {eval_mode!r}.")
    if eval_mode or not any(isinstance(c, MergeBatchNorm) for c in plan.canonizers):
        return eval_mode
    training = [n or type(m).__name__ for n, m in model.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if training:
        raise ValueError(
            f"lrp(eval_mode=False): the batch norm(s) {training[:4]} are in training mode, where they normalise "
            "with each batch's own statistics; the MergeBatchNorm canonizer folds running statistics into the "
            "preceding layer and cannot merge them. Use eval_mode=True (the default: running statistics, merged), "
            "call model.eval() first, or pass canonizers without MergeBatchNorm (e.g. canonizers=None or "
            "[nx.canonizers.ExplicitResidual()]) to explain each such batch norm as the affine map of its batch's "
            "statistics."
        )
    return eval_mode


def _make_plan(
    model: nn.Module, x: AttributionInputs, wrt: InputKey | None, output: OutputArg, embedding: str | None,
    composite: Any, params: dict[str, Any], canonizers: CanonizersArg, layers: str | Sequence[str] | None,
    init: str, strict: bool,
) -> tuple[Inputs, _Plan, dict[str, str]]:
    """Check every argument (nothing runs the model) and fix what each batch needs: the inputs, the plan, and
    the requested layer names (as given → the model's own spelling)."""
    plan_output = check_output_arg(output)
    batch, key, name = attribution_inputs(x, wrt)
    explained = batch[key]
    emb = resolve_embedding(model, explained, embedding, f"`{name}`")
    if emb is None and not explained.is_floating_point():
        raise TypeError(f"`{name}` must hold floating-point values, got {explained.dtype}; use {name}.float().")
    if explained.is_floating_point():
        _check_finite(explained)
    if init not in ("logit", "one"):
        raise ValueError(f"`init` must be 'logit' or 'one', got {init!r}.")
    comp = get_composite(composite, **params)
    names = [n for n, _ in model.named_modules()]
    comp = _own_names(comp, names)
    comp.check_names(names)
    requested = {} if layers is None else match_layer_names(layers, [n for n in names if n], "layers")
    capture = list(dict.fromkeys(requested.values()))
    plan = _Plan(comp, _resolve_canonizers(canonizers), capture, plan_output, emb, init, strict, key)
    return batch, plan, requested


def _given_name(key: str, requested: dict[str, str]) -> str:
    """A ``result.layers`` key (``name``, or ``name#2`` for a layer's second call) spelled as the user gave it."""
    back = {own: given for given, own in requested.items()}
    if key in back:
        return back[key]
    base, _, call = key.rpartition("#")
    return f"{back[base]}#{call}" if base in back and call.isdigit() else key


def _own_names(comp: Composite, names: list[str]) -> Composite:
    """The composite with layer names that leave out (or add) a compiled model's '_orig_mod' parts put in the
    model's own spelling; the user's composite is not changed."""
    renamed = {}
    for key in comp.names:
        if key not in names:
            alias = [n for n in names if n and strip_compiled(n) == strip_compiled(key)]
            if len(alias) == 1:
                renamed[key] = alias[0]
    if not renamed:
        return comp
    copied = copy.copy(comp)
    copied.names = {renamed.get(k, k): v for k, v in comp.names.items()}
    return copied


def _run(
    model: nn.Module, batch: Inputs, tgt: Target | None, plan: _Plan, bs: int, progress: bool | None,
    session: Session,
) -> LRPResult:
    """The batch loop (with the rules on the model); the other inputs of ``batch`` go with each slice.
    ``tgt=None``: each batch explains its predicted classes, read from its own forward pass."""
    x = batch[plan.wrt]
    device, dtype = model_device(model), model_dtype(model)
    rel_parts, out_parts, expl_parts, score_parts, tgt_parts = [], [], [], [], []
    layer_parts: dict[str, list[torch.Tensor]] = {}
    rules: dict[str, Rule] = {}
    slices = list(batch_slices(x.shape[0], bs))
    with progress_bar(slices, desc="LRP", unit="batch", progress=progress) as bar:
        for sl in bar:
            xb = x[sl]
            if xb.is_floating_point():
                xb = xb.to(device=device, dtype=dtype).detach()
                xb.requires_grad_(plan.embedding is None)
            else:
                xb = xb.to(device=device)
            inp = batch.rows(sl).map(
                lambda k, t, xb=xb: xb if k == plan.wrt else model_input(t, model).detach()
            )
            rel, out, explained, tb, score = _explain_batch(model, inp, None if tgt is None else tgt[sl], plan, session)
            rel_parts.append(rel)
            out_parts.append(out)
            expl_parts.append(explained)
            score_parts.append(score)
            tgt_parts.append(tb)
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
    if tgt is None:
        tgt = as_target(cat([t.classes for t in tgt_parts]), x.shape[0])
    rel = cat(rel_parts)
    return LRPResult(
        attribution=rel,
        target=resolved_target(tgt),
        output=cat(out_parts),
        score=cat(score_parts).to(rel.device),
        method="lrp",
        output_relevance=cat(expl_parts),
        layers={k: cat(v) for k, v in layer_parts.items()},
        composite=plan.composite,
        rules=rules,
    )
