"""``TokenHeatmap``: text tokens coloured by their relevance, one row per method or target."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import traitlets

from ..core.attribution.result import AttributionResult
from .base import NbxWidget
from .tensor import DEFAULT_MAX_BYTES, TensorTrait, to_numpy

__all__ = ["TokenHeatmap"]

_NONE = (-1, -1)


def _is_token_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value)


def _read_tokens(tokens: Any) -> tuple[list[list[str]], bool]:
    """``tokens`` as a list of sequences, and whether it was given as several sequences."""
    if isinstance(tokens, str):
        raise TypeError(
            "`tokens` must be a list of strings (one sequence) or a list of lists of strings (several), got one "
            "string; split it into tokens first (e.g. tokenizer.convert_ids_to_tokens(ids) or text.split())."
        )
    if not isinstance(tokens, (list, tuple)) or len(tokens) == 0:
        raise TypeError(
            f"`tokens` must be a non-empty list of strings or a list of lists of strings, got {type(tokens).__name__}"
            + (" of length 0" if isinstance(tokens, (list, tuple)) else "") + "."
        )
    if _is_token_list(tokens):
        return [list(tokens)], False
    seqs = []
    for s, seq in enumerate(tokens):
        if not _is_token_list(seq):
            bad = type(seq).__name__ if not isinstance(seq, (list, tuple)) else next(
                type(t).__name__ for t in seq if not isinstance(t, str))
            raise TypeError(
                f"`tokens[{s}]` must be a list of strings (tokens may not mix strings and lists), found a {bad}; "
                "convert token ids to text first (e.g. tokenizer.convert_ids_to_tokens(ids))."
            )
        if len(seq) == 0:
            raise ValueError(f"`tokens[{s}]` is empty; every sequence needs at least one token.")
        seqs.append(list(seq))
    return seqs, True


def _auto_label(res: AttributionResult) -> str:
    composite = res.settings.get("composite") if isinstance(res.settings, dict) else None
    if res.method == "lrp" and isinstance(composite, str):
        return f"LRP {composite}"
    return res.method


def _row_array(value: Any, where: str) -> np.ndarray | list[np.ndarray]:
    """Values as a float64 array (an AttributionResult gives its ``.attribution``); a ragged list of maps
    (sequences of different lengths) as a list of arrays."""
    if isinstance(value, AttributionResult):
        value = value.attribution
    if isinstance(value, (torch.Tensor, np.ndarray)):
        arr = to_numpy(value)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError):
            if isinstance(value, (list, tuple)) and value:
                return [_row_array(v, f"{where}[{i}]") for i, v in enumerate(value)]  # type: ignore[misc]
            raise TypeError(f"`{where}` must hold numbers (a tensor, array or AttributionResult), "
                            f"got {type(value).__name__}.") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"`{where}` must hold numbers (a tensor, array or AttributionResult), got {arr.dtype}.")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"`{where}` contains NaN or infinite values; clean them first (e.g. torch.nan_to_num).")
    return arr


def _per_sequence(arr: Any, lengths: list[int], where: str, several: bool) -> list[np.ndarray]:
    """Split one row's values into one 1-D map per sequence, checking each length against its tokens."""
    n = len(lengths)
    hint = ("pass one map per token" if not several else
            "pass one map per sequence, (S, T) with every sequence T tokens long, or a list of S 1-D maps")
    if isinstance(arr, list):  # ragged: one map per sequence
        parts = [a.reshape(-1) if a.ndim == 2 and a.shape[0] == 1 else a for a in arr]
        if len(parts) != n or any(p.ndim != 1 for p in parts):
            raise ValueError(f"`{where}` gives {len(parts)} maps for {n} sequence(s) of `tokens`; {hint}.")
    else:
        if arr.ndim == 1 and n == 1:
            parts = [arr]
        elif arr.ndim == 2 and arr.shape[0] == n:
            parts = list(arr)
        else:
            raise ValueError(
                f"`{where}` has shape {arr.shape}, but `tokens` holds {n} sequence(s) of lengths {lengths}; {hint}."
                + (" An AttributionResult of a batch explains one sequence per sample: pass its sequences' "
                   "tokens as a list of lists." if arr.ndim == 2 and n == 1 else "")
                + (" Per-feature values (e.g. at the embedding): sum the last dimension first (.sum(-1))."
                   if arr.ndim == 3 else "")
            )
    for s, (p, t) in enumerate(zip(parts, lengths, strict=True)):
        if p.shape[0] != t:
            seq = f"sequence {s} of `tokens`" if several else "`tokens`"
            raise ValueError(
                f"`{where}` has {p.shape[0]} values for {seq} with {t} tokens; give exactly one value per token "
                "(tokens and attribution must come from the same token ids, padding included)."
            )
    return parts


def _read_maps(maps: Any, row_labels: Any, lengths: list[int], several: bool) -> tuple[list[str], list[list[np.ndarray]]]:
    """Rows (labels and, per row, one map per sequence) from every accepted form of ``maps``."""
    entries: list[tuple[str | None, Any, str]] = []
    if isinstance(maps, Mapping):
        if not maps:
            raise ValueError("`maps` is an empty dict; give at least one {row label: map} entry.")
        entries = [(str(k), v, f"maps[{k!r}]") for k, v in maps.items()]
    elif isinstance(maps, AttributionResult):
        entries = [(_auto_label(maps), maps, "maps")]
    elif isinstance(maps, (list, tuple)) and maps and all(isinstance(m, AttributionResult) for m in maps):
        entries = [(_auto_label(m), m, f"maps[{i}]") for i, m in enumerate(maps)]
    else:
        arr = _row_array(maps, "maps")
        if isinstance(arr, list):  # ragged: one row, one map per sequence
            entries = [(None, arr, "maps")]
        elif arr.ndim == (3 if several else 2):
            entries = [(None, arr[r], f"maps[{r}]") for r in range(arr.shape[0])]
        elif arr.ndim == (2 if several else 1):
            entries = [(None, arr, "maps")]
        else:
            want = "(T,) or (rows, T)" if not several else "(S, T) or (rows, S, T)"
            raise ValueError(f"`maps` must be {want} for the given `tokens`, got shape {arr.shape}.")
    rows = [_per_sequence(_row_array(v, where), lengths, where, several) for _, v, where in entries]
    auto = [lab if lab is not None else (f"row {i}" if len(entries) > 1 else "relevance")
            for i, (lab, _, _) in enumerate(entries)]
    if row_labels is None:
        seen: dict[str, int] = {}
        out = []
        for lab in auto:
            seen[lab] = seen.get(lab, 0) + 1
            out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
        return out, rows
    if isinstance(row_labels, str) or not isinstance(row_labels, Sequence):
        raise TypeError(f"`row_labels` must be a list of strings, one per row, got {type(row_labels).__name__}.")
    names = [str(x) for x in row_labels]
    if len(names) != len(rows):
        raise ValueError(f"`row_labels` has {len(names)} entries for {len(rows)} rows of `maps`; give one label per row.")
    return names, rows


class TokenHeatmap(NbxWidget):
    """Text tokens coloured by relevance: one row per method or target, hover to read, click to select.

    Each token is drawn as a chip whose colour is its value on a diverging blue–white–red map (ColorBrewer RdBu,
    a colour-blind-safe map: it differs in lightness as well as hue, so it stays readable with red–green
    deficiency) centred on zero, with black or white text, whichever contrasts more. Long texts wrap;
    spaces, tabs and newlines are drawn as ``·``, ``→`` and ``⏎`` so that whitespace tokens stay visible.
    Hovering (or focusing) a token shows its row, text and value; clicking it (or Enter / Space) selects it.

    Parameters
    ----------
    tokens
        One sequence (a list of strings) or several (a list of lists of strings); with several, the
        ``sequence`` selector picks the one shown and every sequence is sent once (switching is local).
        Tokens are drawn as given: a tokenizer's own pieces (``"▁the"``, ``"Ġthe"``) stay as they are; decode
        each id on its own (``[tokenizer.decode([i]) for i in ids]``) to see the real spaces as ``·``.
    maps
        The values, one map per row: an ``AttributionResult`` (its ``.attribution``; token-id results are
        ``(N, T)``: with several sequences, one sample per sequence), a list of them (one row each, labelled
        by method), a dict ``{row label: map or AttributionResult}``, or a tensor/array ``(T,)`` / ``(rows, T)``
        for one sequence and ``(S, T)`` / ``(rows, S, T)`` for several. Sequences of different lengths: give a
        row's maps as a list of 1-D maps. Every map has exactly one value per token.
    row_labels
        Row labels (text); default: the dict keys, the methods (``"LRP attn_lrp"``), or ``"row 0"``, ….
    sequence
        Which sequence is shown (with several).
    shared_scale
        ``True`` (default): one colour scale for all rows, so rows can be compared by colour; ``False``: each row
        spans its own ``±max|value|`` and shows its own colour bar.
    vmax
        Fixed colour limit ``±vmax``; default: the largest ``|value|`` shown, rounded up to a nice number.
    value_label
        What the values are, in the readout and on the colour bar (``"relevance -0.123"``).
    scale
        Presentation scale of text and chips (1 = the notebook's font size; 1.5 for a projector).
    max_bytes
        Refuse inputs whose values would exceed this many bytes on the wire.

    Attributes
    ----------
    selected : tuple[int, int]
        ``(row, token)`` of the clicked token in the shown sequence; ``(-1, -1)`` for none. Changing the
        sequence clears it. Observable: ``w.observe(fn, "selected")``. Also a keyword argument.
    values : list[numpy.ndarray]
        Per sequence, the ``(rows, T)`` values as given (float64); the view receives them as float32.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.widgets import TokenHeatmap
    >>> tokens = ["the", " film", " was", " not", " good", "\\n"]
    >>> w = TokenHeatmap(tokens, {"LRP": torch.tensor([0.0, 0.1, 0.0, -0.8, 0.5, 0.0]),
    ...                           "gradient × input": torch.tensor([0.1, 0.2, 0.0, -0.3, 0.6, 0.0])})
    >>> w
    TokenHeatmap(rows=2, sequences=1, tokens=6, scale=shared)
    >>> w.selected = (0, 3); w.selected_value
    -0.800000011920929
    """

    _bundle = "token_heatmap"

    tokens = traitlets.List(traitlets.List(traitlets.Unicode())).tag(sync=True)
    #: (rows, Σ tokens): each row's values with every sequence's tokens concatenated (offsets in `offsets`).
    relevance = TensorTrait("float32", ndim=2)
    offsets = traitlets.List(traitlets.Int()).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    sequence = traitlets.Int(0, min=0).tag(sync=True)
    selected = traitlets.Tuple(traitlets.Int(), traitlets.Int(), default_value=_NONE).tag(sync=True)
    shared_scale = traitlets.Bool(True).tag(sync=True)
    #: Fixed colour limit; 0 = automatic.
    vmax = traitlets.Float(0.0, min=0.0).tag(sync=True)
    value_label = traitlets.Unicode("relevance").tag(sync=True)

    def __init__(
        self,
        tokens: Any,
        maps: Any,
        *,
        row_labels: Sequence[str] | None = None,
        sequence: int = 0,
        shared_scale: bool = True,
        vmax: float | None = None,
        value_label: str = "relevance",
        scale: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        **kwargs: Any,
    ) -> None:
        for name in ("relevance", "offsets"):
            if name in kwargs:
                raise TypeError(f"TokenHeatmap() takes the values as `maps` (with `tokens`), not `{name}=`.")
        selected = kwargs.pop("selected", None)
        super().__init__(shared_scale=bool(shared_scale), value_label=str(value_label), scale=scale, **kwargs)
        self._max_bytes = int(max_bytes)
        self.vmax = self._check_vmax(vmax)
        self.set_data(tokens, maps, row_labels=row_labels)
        self.sequence = sequence
        if selected is not None:
            self.selected = selected

    @staticmethod
    def _check_vmax(vmax: Any) -> float:
        if vmax is None:
            return 0.0
        v = float(vmax)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"`vmax` must be a positive finite number (the colour limit ±vmax) or None, got {vmax!r}.")
        return v

    def set_data(self, tokens: Any, maps: Any, *, row_labels: Sequence[str] | None = None) -> None:
        """Replace tokens, maps and labels in one update of the view (arguments as in the constructor)."""
        seqs, several = _read_tokens(tokens)
        lengths = [len(s) for s in seqs]
        names, rows = _read_maps(maps, row_labels, lengths, several)
        flat = np.stack([np.concatenate(parts) for parts in rows]).astype(np.float32)
        if flat.nbytes > self._max_bytes:
            raise ValueError(
                f"`maps` would send {flat.nbytes:,} bytes ({len(rows)} rows × {flat.shape[1]:,} tokens), over "
                f"`max_bytes`={self._max_bytes:,}; show fewer sequences or rows, or raise `max_bytes`."
            )
        self.values = [np.stack([parts[s] for parts in rows]) for s in range(len(seqs))]  # float64, per sequence
        with self.hold_sync():
            self.selected = _NONE
            self.tokens = seqs
            self.offsets = [int(x) for x in np.concatenate([[0], np.cumsum(lengths)])]
            self.labels = names
            self.relevance = flat
            if self.sequence >= len(seqs):
                self.sequence = 0

    @traitlets.validate("sequence")
    def _valid_sequence(self, proposal: dict[str, Any]) -> int:
        s = int(proposal["value"])
        n = len(self.tokens)
        if n and not 0 <= s < n:
            raise traitlets.TraitError(f"`sequence` must be in 0…{n - 1} (there are {n} sequences), got {s}.")
        return s

    @traitlets.observe("sequence")
    def _sequence_changed(self, change: dict[str, Any]) -> None:
        if change["old"] != change["new"]:
            self.selected = _NONE

    @traitlets.validate("selected")
    def _valid_selected(self, proposal: dict[str, Any]) -> tuple[int, int]:
        row, tok = (int(v) for v in proposal["value"])
        if (row, tok) == _NONE:
            return _NONE
        n_rows = len(self.labels)
        n_tok = len(self.tokens[self.sequence]) if self.tokens else 0
        if not (0 <= row < n_rows and 0 <= tok < n_tok):
            raise traitlets.TraitError(
                f"`selected` must be (row, token) with row in 0…{n_rows - 1} and token in 0…{n_tok - 1} "
                f"(sequence {self.sequence}), or (-1, -1) for none; got {(row, tok)}."
            )
        return row, tok

    @traitlets.validate("vmax")
    def _valid_vmax(self, proposal: dict[str, Any]) -> float:
        v = float(proposal["value"])
        if not math.isfinite(v):
            raise traitlets.TraitError(f"`vmax` must be finite (0 = automatic), got {v}.")
        return v

    def sequence_maps(self, sequence: int | None = None) -> np.ndarray:
        """``(rows, T)`` float64 values of one sequence (default: the shown one), as given."""
        s = self.sequence if sequence is None else int(sequence)
        if not 0 <= s < len(self.values):
            raise IndexError(f"`sequence` must be in 0…{len(self.values) - 1}, got {s}.")
        return self.values[s]

    @property
    def selected_token(self) -> str | None:
        """The text of the selected token, or ``None``."""
        row, tok = self.selected
        return None if row < 0 else self.tokens[self.sequence][tok]

    @property
    def selected_value(self) -> float | None:
        """The value of the selected token as the view shows it (float32), or ``None``."""
        row, tok = self.selected
        if row < 0:
            return None
        return float(self.relevance[row, self.offsets[self.sequence] + tok])

    def _repr_fields(self) -> dict[str, Any]:
        return {"rows": len(self.labels), "sequences": len(self.tokens),
                "tokens": len(self.tokens[self.sequence]) if self.tokens else 0,
                "scale": "shared" if self.shared_scale else "per row"}
