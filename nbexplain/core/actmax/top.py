"""Top-activating examples: the real inputs that drive a unit hardest, with its activation map over each.

:func:`top_activating` streams the data once, scores every example with the same objectives
:func:`~nbexplain.maximize_activation` uses, and keeps a running top-k per unit (:class:`_TopK`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._base.capturing import capture, count_batches, features_first, prepared_batches
from .._base.hygiene import preserved
from .._base.layer_select import resolve_modules
from .._base.machinery import check_progress, progress_bar
from .._base.model_inputs import InputKey, call_model, resolve_wrt
from .._base.model_io import check_runnable
from .._base.validation import check_choice, check_model, check_positive_int, renamed_arguments
from .objectives import OBJECTIVES, Objective, named_objective
from .units import as_units, unit_count

__all__ = ["top_activating", "TopActivatingResult"]


@dataclass
class TopActivatingResult:
    """Result of :func:`top_activating`.

    Attributes
    ----------
    indices
        ``(U, k)`` indices into the dataset of each unit's top examples, strongest first.
    values
        ``(U, k)`` their objective values.
    images
        ``(U, k, *input_shape)`` the examples themselves (for a model with several inputs: the input chosen
        by ``wrt``, by default the first; ``indices`` find the others in the data).
    maps
        ``(U, k, h, w)`` the unit's activation map over each example (the channel's spatial map for conv
        layers); ``None`` for layers without spatial positions.
    units
        The units, in order.
    layer
        The layer.
    """

    indices: torch.Tensor
    values: torch.Tensor
    images: torch.Tensor
    maps: torch.Tensor | None
    units: list[int]
    layer: str

    def __repr__(self) -> str:
        return (
            f"TopActivatingResult(layer={self.layer!r}, units={self.units[:8]}{'…' if len(self.units) > 8 else ''}, "
            f"k={self.indices.shape[1]}, maps={None if self.maps is None else tuple(self.maps.shape[2:])})"
        )


class _TopK:
    """A running top-``k`` per unit over streamed batches: values, dataset indices, examples and maps."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.values: torch.Tensor | None = None  # (U, ≤k), strongest first
        self.indices: torch.Tensor | None = None  # (U, ≤k)
        self.examples: torch.Tensor | None = None  # (U, ≤k, *input)
        self.maps: torch.Tensor | None = None  # (U, ≤k, h, w)
        self.seen = 0

    def update(self, vals: torch.Tensor, x: torch.Tensor, maps: torch.Tensor | None) -> None:
        """Merge one batch: ``vals`` ``(U, n)`` scores of its ``n`` examples ``x``, ``maps`` ``(U, n, …)``."""
        n_units, n = vals.shape
        idx = torch.arange(self.seen, self.seen + n).expand(n_units, n)
        xs = x.to("cpu", torch.float32).unsqueeze(0).expand(n_units, *x.shape)
        if self.values is not None:
            assert self.indices is not None and self.examples is not None
            vals = torch.cat([self.values, vals], dim=1)
            idx = torch.cat([self.indices, idx], dim=1)
            xs = torch.cat([self.examples, xs], dim=1)
            if maps is not None and self.maps is not None:
                maps = torch.cat([self.maps, maps], dim=1)
        self.values, pos = vals.topk(min(self.k, vals.shape[1]), dim=1)
        ar = torch.arange(n_units)[:, None]
        self.indices = idx[ar, pos]
        self.examples = xs[ar, pos]
        self.maps = None if maps is None else maps[ar, pos]
        self.seen += n


def _layer_output(model: nn.Module, batch: Any, x: torch.Tensor, out: Any, layer: str) -> torch.Tensor:
    """Run one ``inputs`` batch; the layer's output, features first."""
    out.clear()
    try:
        call_model(model, batch, "inputs")
    except Exception as err:
        what = f"of shape {tuple(x.shape)}" if batch.single else batch.describe()
        raise ValueError(f"The model rejected an `inputs` batch {what}: {type(err).__name__}: {err}") from err
    if layer not in out:
        raise ValueError(f"Layer {layer!r} did not run during the forward pass.")
    return features_first({layer: out[layer]}, out.layouts)[layer]


def _scores(obj: Objective, layer: str, o: torch.Tensor, n_units: int) -> torch.Tensor:
    """``(U, n)``: every unit's objective on each of the ``n`` examples of one batch output ``o``."""
    n = o.shape[0]
    per_unit = []
    for i in range(n_units):
        o_i = obj.for_image(i, n)
        assert o_i is not None
        per_unit.append(o_i({layer: o}).to("cpu", torch.float64))
    return torch.stack(per_unit)


@renamed_arguments(data="inputs", eval="eval_mode")
def top_activating(
    model: nn.Module,
    inputs: Any,
    layer: str,
    unit: int | Sequence[int] | None = None,
    *,
    k: int = 9,
    objective: str = "auto",
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
    wrt: InputKey | None = None,
) -> TopActivatingResult:
    """The real examples that drive a unit hardest, with the unit's activation map over each.

    Parameters
    ----------
    model
        Any ``torch.nn.Module`` (left as found).
    inputs
        The examples: a tensor ``(N, …)``, or an iterable of batches / ``(x, y)`` pairs (the model gets ``x``).
        For a model with several inputs: a tuple ``(x, mask)`` (positional), a dict (keyword) or
        ``nx.Inputs`` is one batch, and a DataLoader yields ``((x, mask), y)`` (see
        :func:`nbexplain.activations`).
    layer
        Layer name.
    unit
        A unit/channel index, a list, or ``None`` (default) for every unit of the layer.
    k
        Examples per unit.
    objective
        How an example is scored, as in :func:`maximize_activation`: ``"auto"`` (channel mean for conv
        layers, the unit itself for dense ones), ``"neuron"``, ``"channel"``, ``"logit"``,
        ``"logit_minus_others"``.
    batch_size
        Inputs per forward pass when ``inputs`` is one batch (a tensor, tuple, dict or ``nx.Inputs``).
    eval_mode
        Run the model in eval mode (default; dropout off, batch-norm running statistics). Its modes and
        buffers are restored afterwards either way.
    progress
        ``None`` (default): a progress bar appears once the work has run for more than 2 s; ``True``: at
        once; ``False``: never.
    wrt
        With several inputs: which one ``.images`` holds (a position or keyword name); default the first
        tensor input (the first positional one, else the first keyword one).

    Returns
    -------
    TopActivatingResult

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> top = nx.top_activating(net, torch.rand(50, 1, 8, 8), "1", [0, 2], k=5)
    >>> top.indices.shape, top.maps.shape
    (torch.Size([2, 5]), torch.Size([2, 5, 6, 6]))
    """
    model = check_runnable(check_model(model, what="nx.top_activating"))
    if isinstance(inputs, str):
        raise TypeError(
            f"top_activating(): the second argument is `inputs` (the examples), got the string {inputs!r}; "
            "the order is top_activating(model, inputs, layer, unit=None, *, k=9, ...)."
        )
    if not isinstance(layer, str):
        raise TypeError(f"`layer` must be a layer name (str), got {type(layer).__name__}.")
    k = check_positive_int(k, "k")
    batch_size = check_positive_int(batch_size, "batch_size")
    check_choice(objective, "objective", [o for o in OBJECTIVES if o != "direction"])
    progress = check_progress(progress)
    resolve_modules(model, [layer], "layer")

    # Outside eval mode a forward pass updates batch-norm running statistics: put their values back too.
    with preserved(model, values=not eval_mode):
        if eval_mode:
            model.eval()
        top = _TopK(k)
        obj: Objective | None = None
        units: torch.Tensor | None = None
        with torch.no_grad(), capture(model, [layer]) as out, \
                progress_bar(total=count_batches(inputs, batch_size), desc=f"top examples {layer}",
                             progress=progress, unit="batch") as bar:
            for batch in prepared_batches(inputs, batch_size, model, argname="inputs"):
                x = batch[resolve_wrt(batch, wrt)]
                o = _layer_output(model, batch, x, out, layer)
                if obj is None:
                    units = torch.arange(unit_count(o.shape)) if unit is None else as_units(unit)
                    obj = named_objective(objective, layer, units, None, (1, *o.shape[1:]))
                    obj.check({layer: (1, *o.shape[1:])}, units.numel())
                assert units is not None
                maps = None
                if o.ndim >= 3:
                    maps = o[:, units.to(o.device)].to("cpu", torch.float32).transpose(0, 1)  # (U, n, …)
                top.update(_scores(obj, layer, o, units.numel()), x, maps)
                bar.update(1)
        if obj is None or units is None or top.values is None:
            raise ValueError("`inputs` is empty: it yielded no batches.")
    assert top.indices is not None and top.examples is not None
    return TopActivatingResult(
        indices=top.indices,
        values=top.values.to(torch.float32),
        images=top.examples,
        maps=top.maps,
        units=units.tolist(),
        layer=layer,
    )
