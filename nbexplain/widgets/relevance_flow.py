"""``RelevanceFlow``: step through LRP from the output back to the input, one layer at a time.

The view shows the relevance at the current step (a heatmap of conv maps summed over channels, a bar chart of a
dense layer's units, the input map over the input image), the rule that hands it on, and a conservation chart of
Σ relevance per step against the explained score. It only shows a :class:`~nbexplain.RelevanceFlowResult`;
:meth:`RelevanceFlow.from_model` calls :func:`nbexplain.relevance_flow` to make one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import traitlets

from ..core.attribution.lrp.flow import RelevanceFlowResult, relevance_flow
from .base import NbxWidget
from .tensor import DEFAULT_MAX_BYTES, TensorTrait, downsample_images, downsample_maps, to_uint8_images

__all__ = ["RelevanceFlow"]


def _step_view(rel: torch.Tensor) -> tuple[str, np.ndarray, int]:
    """What the view draws for one step's relevance ``(N, …)``: ``("map", (N, H, W), channels)`` for
    ``(N, C, H, W)`` (summed over channels), else ``("bars", (N, K), channels)`` — ``(N,)`` is one bar, ``(N, K)``
    K units, ``(N, C, L)`` L positions summed over channels, higher ranks flattened after the channel sum."""
    r = rel.detach().to("cpu", torch.float64)
    if r.ndim == 4:
        return "map", r.sum(1).numpy(), int(r.shape[1])
    if r.ndim == 1:
        return "bars", r[:, None].numpy(), 1
    if r.ndim == 2:
        return "bars", r.numpy(), 1
    return "bars", r.sum(1).reshape(r.shape[0], -1).numpy(), int(r.shape[1])


class RelevanceFlow(NbxWidget):
    """Step through an LRP pass from the output to the input: each layer's relevance, its rule, and the sum.

    Parameters
    ----------
    result
        A :class:`~nbexplain.RelevanceFlowResult` from :func:`nbexplain.relevance_flow` (or use
        :meth:`from_model`).
    inputs
        Optional images the relevance explains, ``(N, 1|3, H, W)`` (or ``(N, H, W)``), drawn under the input step.
    sample
        The sample shown first (a selector appears when there are several).
    step
        The step shown first (0 = the output).
    classes
        Optional class names, used to name the explained class and the output layer's units.
    top_k
        A dense layer with more units shows its ``top_k`` units by ``|R|`` and sums up the rest.
    opacity
        At the input step the map is drawn over the input image with this opacity (0–1). The default 1 shows the
        map's true colours, with the input beside it.
    max_bytes
        Larger maps are average-pooled in Python so the view receives at most about this many bytes.

    Attributes
    ----------
    step, sample : int
        The step and sample shown; synced both ways (set them from Python, or observe the view's choice).
    result : RelevanceFlowResult
        The result shown (full resolution).

    Notes
    -----
    Colours: relevance is signed, so maps and unit bars use a diverging blue–white–red map (ColorBrewer RdBu,
    readable with the common colour-vision deficiencies) centred on 0 (white, distinct from the dark theme's
    background), symmetric up to a round value at or above the step's largest ``|R|``; the colour bar gives
    both ends. Keyboard: the view takes ← / → / Home / End when focused; the step slider, the buttons and the
    sample menu are reachable by Tab. ``scale`` (e.g. 1.5 on a projector) enlarges text, map and charts.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.widgets import RelevanceFlow
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    >>> w = RelevanceFlow.from_model(net, torch.rand(2, 4), composite="epsilon")
    >>> w
    RelevanceFlow(n=2, steps=5, step=0 (output), sample=0)
    >>> w.step = 4; w.step_name
    'input'
    """

    _bundle = "relevance_flow"

    #: Every step's drawn values, concatenated (see ``step_info`` for each step's offset and shape).
    values = TensorTrait("float32", ndim=1)
    #: Per step: ``{"name", "kind": "map"|"bars", "shape": [N, H, W] | [N, K], "offset", "source_shape",
    #: "channels", "rule", "units"}``.
    step_info = traitlets.List(traitlets.Dict()).tag(sync=True)
    totals = TensorTrait("float32", ndim=2)
    absorbed = TensorTrait("float32", ndim=2)
    score = TensorTrait("float32", ndim=1)
    images = TensorTrait("uint8", ndim=4)
    titles = traitlets.List(traitlets.Unicode()).tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)
    sample = traitlets.Int(0).tag(sync=True)
    top_k = traitlets.Int(16, min=1, max=512).tag(sync=True)
    opacity = traitlets.Float(1.0, min=0.0, max=1.0).tag(sync=True)

    def __init__(
        self,
        result: RelevanceFlowResult,
        inputs: Any = None,
        *,
        sample: int = 0,
        step: int = 0,
        classes: Sequence[str] | None = None,
        top_k: int = 16,
        opacity: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        **kwargs: Any,
    ) -> None:
        if not isinstance(result, RelevanceFlowResult):
            raise TypeError(
                f"`result` must be a RelevanceFlowResult (from nx.relevance_flow), got {type(result).__name__}; "
                "or build the view with RelevanceFlow.from_model(model, inputs, target)."
            )
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
            raise ValueError(f"`max_bytes` must be an int ≥ 1024, got {max_bytes!r}.")
        super().__init__(top_k=top_k, opacity=opacity, **kwargs)
        self.result = result
        n, n_steps = result.totals.shape
        self.classes = None if classes is None else [str(c) for c in classes]
        steps = list(result.steps)
        if n_steps != len(steps) or n_steps < 2:
            raise ValueError(f"`result` has {len(steps)} steps but totals for {n_steps}; pass an unmodified result.")
        targets = self._targets(n)
        img = self._images(inputs, n)

        views = [_step_view(result.relevance[s]) for s in steps]
        n_maps = sum(kind == "map" for kind, _, _ in views) + (img is not None)
        budget = max(1024, max_bytes // max(1, n_maps))
        chunks, layout, offset = [], [], 0
        self._shown: dict[str, np.ndarray] = {}
        for i, (name, (kind, arr, channels)) in enumerate(zip(steps, views, strict=True)):
            self._shown[name] = arr
            src = list(arr.shape[1:])
            sent = arr.astype(np.float32)
            if kind == "map":
                sent, _ = downsample_maps(sent, budget)
            chunks.append(sent.reshape(-1))
            rule = result.rules.get(name)
            layout.append({
                "name": name,
                "kind": kind,
                "shape": [int(d) for d in sent.shape],
                "offset": offset,
                "source_shape": [int(d) for d in src],
                "channels": channels,
                "rule": "" if rule is None else repr(rule),
                "units": self._unit_names(i, arr.shape[1]),
            })
            offset += sent.size
        totals = result.totals.detach().to("cpu", torch.float64)
        with self.hold_sync():
            self.values = np.concatenate(chunks).astype(np.float32)
            self.step_info = layout
            self.totals = totals.numpy().astype(np.float32)
            self.absorbed = (totals[:, :-1] - totals[:, 1:]).numpy().astype(np.float32)
            self.score = result.score.detach().to("cpu", torch.float64).numpy().astype(np.float32)
            self.images = img if img is not None else np.zeros((0,), np.uint8)
            self.titles = [self._title(i, targets) for i in range(n)]
            self.sample = sample
            self.step = step

    # ----------------------------------------------------------------------------------------- helpers
    def _targets(self, n: int) -> list[int | None]:
        t = self.result.target
        if isinstance(t, torch.Tensor) and t.ndim <= 1 and not t.is_floating_point():
            flat = t.reshape(-1).tolist()
            return [int(flat[0])] * n if len(flat) == 1 else [int(v) for v in flat][:n]
        if isinstance(t, int) and not isinstance(t, bool):
            return [t] * n
        return [None] * n

    def _class_name(self, k: int) -> str:
        if self.classes is not None and 0 <= k < len(self.classes) and self.classes[k] != str(k):
            return f"class {k} ({self.classes[k]})"
        return f"class {k}"

    def _title(self, i: int, targets: list[int | None]) -> str:
        k = targets[i] if i < len(targets) else None
        what = f"explains {self._class_name(k)}" if k is not None else "explains the selected output"
        return f"sample {i} · {what}"

    def _unit_names(self, i: int, k: int) -> list[str]:
        """Class names for the last layer's units (step 1) when ``classes`` has one name per unit."""
        if i == 1 and self.classes is not None and k == len(self.classes):
            return list(self.classes)
        return []

    def _images(self, inputs: Any, n: int) -> np.ndarray | None:
        if inputs is None:
            return None
        if isinstance(inputs, Mapping | tuple | list):
            raise TypeError("`inputs` must be one image tensor (N, 1|3, H, W) to draw under the input step; "
                            "for several inputs leave it out.")
        try:
            img = to_uint8_images(inputs)
        except ValueError as err:
            raise ValueError(f"`inputs` cannot be drawn as images: {err} Leave `inputs` out for non-image "
                             "models.") from None
        if img.shape[0] != n:
            raise ValueError(f"`inputs` has {img.shape[0]} images for {n} explained samples; pass the inputs "
                             "the result explains.")
        return downsample_images(img, DEFAULT_MAX_BYTES // 4)

    @traitlets.validate("step")
    def _check_step(self, proposal: Any) -> int:
        v, n = int(proposal["value"]), len(self.result.steps)
        if not 0 <= v < n:
            raise traitlets.TraitError(f"`step` must be in 0…{n - 1} (the steps {self.result.steps}), got {v}.")
        return v

    @traitlets.validate("sample")
    def _check_sample(self, proposal: Any) -> int:
        v, n = int(proposal["value"]), int(self.result.totals.shape[0])
        if not 0 <= v < n:
            raise traitlets.TraitError(f"`sample` must be in 0…{n - 1} (the result explains {n}), got {v}.")
        return v

    # ------------------------------------------------------------------------------------------ public
    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        inputs: Any,
        target: Any = None,
        composite: Any = "epsilon_plus_flat",
        *,
        classes: Sequence[str] | None = None,
        sample: int = 0,
        step: int = 0,
        top_k: int = 16,
        opacity: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        **options: Any,
    ) -> RelevanceFlow:
        """Run :func:`nbexplain.relevance_flow` and show it (``**options`` go to it, e.g. ``epsilon=``).

        The inputs are drawn under the input step when they are one image tensor ``(N, 1|3, H, W)``.

        Examples
        --------
        >>> import torch
        >>> from nbexplain.widgets import RelevanceFlow
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        ...                           torch.nn.Linear(8, 3))
        >>> RelevanceFlow.from_model(net, torch.rand(1, 1, 4, 4), composite="epsilon").step_info[-1]["kind"]
        'map'
        """
        result = relevance_flow(model, inputs, target, composite, **options)
        images = inputs if isinstance(inputs, torch.Tensor | np.ndarray) and np.ndim(inputs) == 4 \
            and np.shape(inputs)[1] in (1, 3) else None
        return cls(result, images, classes=classes, sample=sample, step=step, top_k=top_k, opacity=opacity,
                   max_bytes=max_bytes)

    @property
    def step_name(self) -> str:
        """Name of the step shown (``"output"``, a layer name, or ``"input"``)."""
        return self.result.steps[self.step]

    def shown(self, step: int | str | None = None, sample: int | None = None) -> np.ndarray:
        """The values the view draws for a step and sample, at full resolution (float64): conv maps summed over
        channels ``(H, W)``, a dense layer's units ``(K,)``. Defaults: the current step and sample."""
        name = self.step_name if step is None else (step if isinstance(step, str) else self.result.steps[step])
        if name not in self._shown:
            raise KeyError(f"`step` {step!r} is not one of {self.result.steps}.")
        return self._shown[name][self.sample if sample is None else sample]

    def _repr_fields(self) -> dict[str, Any]:
        return {"n": int(self.result.totals.shape[0]), "steps": len(self.result.steps),
                "step": f"{self.step} ({self.step_name})", "sample": self.sample}
