"""Class sensitivity over training: when does each layer come to carry each class? (SVCCA paper, §4.3)

Raghu et al. (NeurIPS 2017) ask when a network learns a class ("fire trucks are learned before dog breeds") by
comparing each layer's representation with the representation of one class at the output — the logit of that
class over the inputs — at every checkpoint. The logit is one-dimensional, so SVCCA between it and a layer
has a single canonical correlation: the correlation of the logit with its best linear reconstruction from the
layer's top singular directions. 1 means the layer already determines that class's final score linearly.

By default the class logits come from the *final* checkpoint (``logits="final"``): the curve of a layer then
says how early that layer holds what the trained network finally uses for the class. With ``logits="own"``
each checkpoint is compared with its own logits (the last layer before the output then reads 1 throughout,
since a logit is a linear function of it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._base.capturing import capture, to_features
from .._base.hygiene import preserved
from .._base.machinery import check_progress, progress_bar
from .._base.model_inputs import call_model, iter_inputs
from .._base.model_io import OutputArg, check_output_arg, select_output
from .._base.validation import check_choice, check_model, check_positive_int
from .checkpoints import CheckpointArg, _checkpoint_items, _Materialiser, settled_from
from .metrics import check_keep, svcca

__all__ = ["ClassSensitivityResult", "class_sensitivity"]


@dataclass
class ClassSensitivityResult:
    """Similarity of each layer with each class's logit, per checkpoint (see :func:`class_sensitivity`).

    Attributes
    ----------
    values
        float64 ``(n_checkpoints, n_layers, n_classes)`` — SVCCA correlation in [0, 1] (NaN where the layer or
        the logit has no variance on the inputs).
    checkpoint_labels, layers, classes
        The axes.
    logits
        ``"final"`` or ``"own"``: which checkpoint's logits each checkpoint was compared with.
    settings
        ``conv``, ``keep``, ``n_samples``.
    """

    values: torch.Tensor
    checkpoint_labels: list[str]
    layers: list[str]
    classes: list[int]
    logits: str
    settings: dict[str, Any] = field(default_factory=dict)

    def learned_at(self, threshold: float = 0.9) -> torch.Tensor:
        """``(n_layers, n_classes)`` — the first checkpoint index where the value reaches ``threshold`` and
        stays there to the end, or -1 where it never does."""
        return settled_from(self.values >= threshold)

    def __repr__(self) -> str:
        t, n_l, n_c = self.values.shape
        return f"ClassSensitivityResult(checkpoints={t}, layers={n_l}, classes={n_c}, logits={self.logits!r})"


def _run(
    model: nn.Module, inputs: Any, layers: list[str], output: OutputArg, conv: str, batch_size: int, eval_mode: bool
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One pass: every layer's features (one row per input) and the selected output, float64 on the CPU."""
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    outs: list[torch.Tensor] = []
    with preserved(model), torch.no_grad():
        if eval_mode:
            model.eval()
        with capture(model, layers) as cap:
            for batch in iter_inputs(inputs, batch_size):
                raw = call_model(model, batch)
                out = select_output(raw, output)
                if out.ndim != 2:
                    raise ValueError(
                        f"class_sensitivity needs class scores of shape (N, n_classes), got {tuple(out.shape)}; "
                        "pass `output=` to pick them from a tuple/dict output."
                    )
                outs.append(out.detach().double().cpu())
                for name in layers:
                    f = to_features(cap[name], conv=conv, layout=cap.layouts.get(name))
                    if f.shape[0] != out.shape[0]:
                        raise ValueError(
                            f"conv={conv!r} gives {f.shape[0]} rows for {out.shape[0]} inputs at layer {name!r}: "
                            "class sensitivity needs one row per input, use conv='mean', 'max' or 'flatten'."
                        )
                    feats[name].append(f.detach().double().cpu())
    if not outs:
        raise ValueError("`inputs` is empty.")
    return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(outs)


def _similarity(features: torch.Tensor, logit: torch.Tensor, keep: tuple[float | int, float | int]) -> float:
    if float(features.var(0).max()) <= 0.0 or float(logit.var()) <= 0.0:
        return float("nan")
    return float(svcca(features, logit.reshape(-1, 1), keep=(keep[0], 1)).coefficients[0])


def class_sensitivity(
    checkpoints: CheckpointArg | Sequence[CheckpointArg] | Mapping[str, CheckpointArg],
    inputs: Any,
    layers: str | Sequence[str],
    *,
    model: nn.Module | None = None,
    classes: Sequence[int] | None = None,
    logits: str = "final",
    output: OutputArg = None,
    conv: str = "mean",
    keep: float | int = 0.99,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
) -> ClassSensitivityResult:
    """SVCCA similarity of each layer with each class's output logit, at every checkpoint of a training run.

    Parameters
    ----------
    checkpoints
        Models, state dicts or files saved during training, oldest first (a dict names them), as in
        :func:`nbexplain.similarity_grid`.
    inputs
        The inputs every checkpoint sees (a tensor, tuple, dict or iterable of batches). Use many more inputs
        than a layer keeps directions: SVCCA of a 1-D logit with ``k`` directions is inflated by about
        ``k / n_inputs`` by chance.
    layers
        One or more layer names.
    model
        A model of the checkpoints' architecture, needed when they are state dicts or files.
    classes
        Which classes (logit indices) to follow; default: all.
    logits
        ``"final"`` (default): compare with the last checkpoint's logits; ``"own"``: with each checkpoint's.
    output
        Which model output holds the class scores when the model returns a tuple/dict/object.
    conv
        How a conv or token layer becomes one row per input: ``"mean"`` (default), ``"max"`` or ``"flatten"``.
    keep
        SVCCA's variance fraction (or number of directions) kept of each layer.
    batch_size
        Inputs per forward pass.
    eval_mode
        Run every checkpoint in eval mode (default); its modes are restored afterwards.
    progress
        None: a bar once the work has run 2 s; True: always; False: never.

    Returns
    -------
    ClassSensitivityResult
        ``.values`` ``(n_checkpoints, n_layers, n_classes)``; ``.learned_at(threshold)``.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> def mlp(seed):
    ...     torch.manual_seed(seed)
    ...     return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> run = {"start": mlp(0), "end": mlp(1)}       # two checkpoints of one architecture
    >>> res = nx.class_sensitivity(run, torch.randn(500, 6), ["0", "1"], keep=1.0)
    >>> res.values.shape                             # checkpoints × layers × classes
    torch.Size([2, 2, 3])
    >>> [round(float(v), 3) for v in res.values[-1, 1]]   # the final hidden layer determines the final logits
    [1.0, 1.0, 1.0]
    >>> bool((res.values[0, 1] < 0.99).all())         # the start's only partly
    True
    """
    check_choice(logits, "logits", ("final", "own"))
    check_choice(conv, "conv", ("mean", "max", "flatten"))
    output = check_output_arg(output)
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_progress(progress)
    kp = check_keep(keep)
    layer_list = [layers] if isinstance(layers, str) else list(layers)
    if not layer_list:
        raise ValueError("`layers` is empty: name at least one layer (see nx.list_layers(model)).")
    if isinstance(inputs, Iterator):
        inputs = list(inputs)  # every checkpoint needs the same batches
    if model is not None:
        model = check_model(model, "model", what="nx.class_sensitivity")
    items, labels = _checkpoint_items(checkpoints, None)
    template = model if model is not None else next((c for c in items if isinstance(c, nn.Module)), None)
    load = _Materialiser(template)
    final_feats, final_logits = _run(load(items[-1], f"checkpoint {len(items) - 1}"), inputs, layer_list, output, conv, batch_size, eval_mode)
    n_classes = final_logits.shape[1]
    cls = list(range(n_classes)) if classes is None else [int(c) for c in classes]
    bad = [c for c in cls if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"`classes` has {bad}, but the model outputs {n_classes} class scores (0…{n_classes - 1}).")
    values = torch.full((len(items), len(layer_list), len(cls)), float("nan"), dtype=torch.float64)
    with progress_bar(total=len(items), desc="class sensitivity", unit="checkpoint", progress=progress) as bar:
        for t, item in enumerate(items):
            if t == len(items) - 1:
                feats, own = final_feats, final_logits
            else:
                feats, own = _run(load(item, f"checkpoint {t} ({labels[t]!r})"), inputs, layer_list, output, conv, batch_size, eval_mode)
            ref = final_logits if logits == "final" else own
            for i, name in enumerate(layer_list):
                for j, c in enumerate(cls):
                    values[t, i, j] = _similarity(feats[name], ref[:, c], kp)
            bar.update(1)
    return ClassSensitivityResult(
        values=values,
        checkpoint_labels=labels,
        layers=layer_list,
        classes=cls,
        logits=logits,
        settings={"conv": conv, "keep": keep, "n_samples": int(final_logits.shape[0])},
    )
