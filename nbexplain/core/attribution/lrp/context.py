"""LRP rules as a context: ``with nx.lrp_rules(model): ...`` — any gradient-based method then computes with them.

Inside the block the model's backward pass propagates relevance by the composite's rules instead of gradients
(the same :class:`~.session.Session` :func:`nbexplain.lrp` runs on), so ``nx.gradient``, ``nx.smoothgrad``,
``nx.integrated_gradients`` and ``nx.gradient_x_input`` — or a hand-written ``torch.autograd.grad`` — compute
with LRP rules. On exit the model is exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import nn

from ..._base.model_io import check_runnable
from ..._base.validation import check_model
from .composites import Composite, Key, get_composite
from .entry import CanonizersArg, _own_names, _resolve_canonizers
from .rules import Rule
from .session import rules_on

__all__ = ["lrp_rules"]


@contextmanager
def lrp_rules(
    model: nn.Module,
    composite: str | Composite | Rule | Mapping[Key, Rule] = "epsilon_plus_flat",
    *,
    canonizers: CanonizersArg = "auto",
    strict: bool = True,
    **params: Any,
) -> Iterator[Composite]:
    """A context under which the model's backward pass propagates LRP relevance instead of gradients.

    Every forward pass of ``model`` inside the block is hooked as :func:`~nbexplain.lrp` hooks it (the same
    code: one session per block), so the gradient of an output with respect to the input *is* the LRP
    relevance of that output seeded by its gradient. Any gradient-based method then computes with LRP rules:

    - :func:`~nbexplain.gradient` seeds the explained score with its gradient (1 on each explained target, 0
      elsewhere), so inside the block it returns ``nx.lrp(model, inputs, target, composite, init="one")``
      (the relevance of the target scores seeded with 1; ``init="logit"``, lrp's default, seeds the score
      itself).
    - :func:`~nbexplain.smoothgrad` averages that relevance over its noisy copies of the input.
    - :func:`~nbexplain.integrated_gradients` and :func:`~nbexplain.gradient_x_input` apply their own formula to
      it: ``(x − x̄) ⊙`` the path average of the relevance, and ``x ⊙`` the relevance. These products are
      what the methods define, not LRP rules (their sums are not conserved quantities of LRP).

    Parameters
    ----------
    model
        The model to put the rules on (as in :func:`~nbexplain.lrp`; a ``torch.compile``'d model is hooked
        through its eager module, and runs eagerly inside the block).
    composite
        Which rule each layer gets, as in :func:`~nbexplain.lrp`: a registered name (``nx.COMPOSITES``), an
        :class:`~nbexplain.Composite`, a dict ``{layer type or name: rule}`` or one rule (``nx.rules.ZPlus()``).
    canonizers
        ``"auto"``, ``None`` or a list of ``nx.canonizers`` objects, as in :func:`~nbexplain.lrp`. They act
        during each forward pass of the model only; code around the calls is untouched.
    strict
        As in :func:`~nbexplain.lrp`: after each forward pass of the model, operations on its inputs outside
        modules with rules raise an :class:`~nbexplain.UnsupportedModuleError` naming them and their module;
        ``False`` gives them rules consistent with gradient × input.
    **params
        Parameters of a named composite, by the names it registered (``epsilon``; ``epsilon_gamma_box`` also
        ``gamma``, ``low``, ``high``), as :func:`~nbexplain.lrp` takes them. Without ``low``/``high`` the zᴮ
        rule reads the bounds from each forward pass's batch (a chunk of noisy copies or path points here).

    Yields
    ------
    Composite
        The composite whose rules are on the model.

    Notes
    -----
    Inside the block the model is in eval mode, its parameters do not require grad, its own module backward
    hooks are off (they would be handed relevance) and a float16/bfloat16 model computes in float32 copies of
    its parameters. Calling it in training mode raises (batch norm and dropout would compute what the rules
    do not describe). The rules apply to forward passes of ``model`` itself; a submodule called on its own is
    not touched. A model trained inside the block would get relevance instead of gradients — and its
    parameters none — so train it outside. On exit, normally or through an exception, every hook goes and
    every mode, hook, ``requires_grad`` and ``.grad`` is put back: training after the block is exactly
    training without it. The block does not nest: entering a second ``lrp_rules`` on the same model, or
    calling :func:`~nbexplain.lrp` on it inside, raises an error (lrp puts its own rules on).

    Examples
    --------
    >>> import torch
    >>> import nbexplain as nx
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> x = torch.rand(2, 4)
    >>> with nx.lrp_rules(net, "epsilon", epsilon=1e-3):
    ...     inside = nx.gradient(net, x, 1).attribution
    ...     smooth = nx.smoothgrad(net, x, 1, n_samples=8).attribution
    >>> reference = nx.lrp(net, x, 1, "epsilon", epsilon=1e-3, init="one").attribution
    >>> torch.allclose(inside, reference, atol=1e-6)
    True
    """
    model = check_runnable(check_model(model, what="nx.lrp_rules"))
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be True or False, got {strict!r}.")
    comp = get_composite(composite, **params)
    names = [n for n, _ in model.named_modules()]
    comp = _own_names(comp, names)
    comp.check_names(names)
    canons = _resolve_canonizers(canonizers)
    with rules_on(model, comp, canons, strict=strict, pooled=False, what="nx.lrp_rules"):
        yield comp
