"""What an attribution explains: one score per sample, read from the model's (selected) output.

Every attribution entry point — the gradient family, :func:`~nbexplain.core.attribution.rate_distortion.rde` and
:func:`~nbexplain.core.attribution.lrp.lrp` — reads ``target=`` through :func:`as_target`, so one convention holds
everywhere. It depends on the shape of the output being explained (after ``output=``):

==========================  ===========================================================================
output                      ``target=``
==========================  ===========================================================================
``(N,)``                    ``0`` (the only output)
``(N, C)``                  a class: an int, a list or ``(N,)`` tensor of ints (one per sample)
``(N, T, V)`` (3-D)         a **sequence** (positions × vocabulary): ``(position, token)``, each an int or
                            one per sample; negative positions count from the end (``-1``: the last, the
                            usual language-model case). A bare int is refused: it does not say which
                            position.
``(N, C, H, W)`` (≥ 4-D)    a **dense map**, channels first (segmentation): a class, whose map is summed
                            over all positions; :meth:`Target.region` sums it over a region instead
any                         a function ``out -> (N,)`` of the output (:meth:`Target.score`)
==========================  ===========================================================================

How a 3-D output is read is stated by the target: a ``(position, token)`` tuple reads it as ``(N, T, V)``,
:meth:`Target.region` as channels-first ``(N, C, L)``; a bare class index, which could mean either, is refused
with an error naming the axes.

A function target receives the selected output of whatever rows the method runs (the samples, or their
noisy or interpolated copies) and must reduce each row on its own, to one score per row.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, Union

import torch

from .validation import check_target, check_tensor

__all__ = ["Target", "TargetArg", "as_target", "describe_axes", "class_axis"]

#: What ``target=`` accepts in the attribution entry points.
TargetArg = Union[int, "list[int]", torch.Tensor, "tuple[Any, Any]", Callable[[torch.Tensor], torch.Tensor], "Target"]

_KINDS = ("index", "token", "region", "score")


def describe_axes(shape: tuple[int, ...], dense: bool = False) -> str:
    """The output's shape with its axes named by the target convention, e.g. ``(N, T=12, V=50)``.

    ``dense``: name a 3-D output's axes as a channels-first map ``(N, C, L)`` instead of a sequence.
    """
    rest = tuple(int(s) for s in shape[1:])
    if len(rest) == 0:
        return "(N,)"
    if len(rest) == 1:
        return f"(N, C={rest[0]})"
    if len(rest) == 2:
        return f"(N, C={rest[0]}, L={rest[1]})" if dense else f"(N, T={rest[0]}, V={rest[1]})"
    names = ("H", "W") if len(rest) == 3 else ("D", "H", "W") if len(rest) == 4 else tuple(f"S{i}" for i in range(len(rest) - 1))
    return "(N, C=" + str(rest[0]) + "".join(f", {a}={s}" for a, s in zip(names, rest[1:], strict=False)) + ")"


def class_axis(ndim: int) -> int:
    """The axis holding classes in an output of rank ``ndim`` by the convention: 1 for ``(N, C)`` and
    channels-first dense maps ``(N, C, H, W)``, the last for a 3-D sequence ``(N, T, V)``."""
    if ndim < 2:
        raise ValueError(f"An output of rank {ndim} has no class axis; class scores are (N, C).")
    return 2 if ndim == 3 else 1


def _sequence_help(argname: str) -> str:
    return (
        f"pass {argname}=(position, token), e.g. {argname}=(-1, 40) for token 40 at the last position (each may "
        f"be an int or one per sample), or a function of the output, e.g. {argname}=lambda out: out[:, -1, 40]"
    )


def _per_sample(value: Any, n: int, what: str, argname: str) -> torch.Tensor:
    """An int or one int per sample, as a LongTensor ``(n,)``."""
    if isinstance(value, bool):
        raise TypeError(f"`{argname}`: the {what} must be an int or one int per sample, got a bool.")
    if isinstance(value, numbers.Integral):
        return torch.full((n,), int(value), dtype=torch.long)
    if isinstance(value, (list, tuple)):
        value = torch.as_tensor(value)
    if not isinstance(value, torch.Tensor) and not (type(value).__module__.startswith("numpy") and hasattr(value, "shape")):
        raise TypeError(f"`{argname}`: the {what} must be an int or one int per sample, got {type(value).__name__}.")
    t = check_tensor(value, f"{argname} ({what})", ndim=(0, 1), dtype_kind="int").long().reshape(-1).cpu()
    if t.numel() == 1:
        return t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(
            f"`{argname}`: the {what} has {t.numel()} entries but the input batch has {n} samples; "
            "pass one per sample or a single int."
        )
    return t


class Target:
    """What an attribution explains in a model output: one score per sample.

    Plain values are shorthands (see the module notes): an int or ``(N,)`` ints is a class, a
    ``(position, token)`` tuple a token of a sequence output, a function of the output a score. The
    constructors say the same explicitly.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> out = torch.arange(24.0).reshape(2, 3, 4)           # (N=2, T=3, V=4): a sequence output
    >>> nx.Target.token(-1, 1).bind(2).scores(out)          # token 1 at the last position
    tensor([ 9., 21.])
    >>> seg = torch.ones(2, 5, 4, 4)                         # (N, C=5, H=4, W=4): a dense map
    >>> mask = torch.zeros(4, 4, dtype=torch.bool); mask[:2, :2] = True
    >>> nx.Target.region(3, mask).bind(2).scores(seg)       # class 3 summed over a 2×2 region
    tensor([4., 4.])
    """

    def __init__(self, kind: str, *, index: Any = None, position: Any = None, mask: Any = None,
                 fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if kind not in _KINDS:
            raise ValueError(f"Unknown target kind {kind!r}; use Target.token, Target.region or Target.score.")
        self.kind = kind
        self.index, self.position, self.mask, self.fn = index, position, mask, fn
        self.rows: torch.Tensor | None = None  # set by bind: which samples each row belongs to
        self.n = 0  # set by bind: the batch's number of samples
        self.argname = "target"

    # ---- constructors ------------------------------------------------------------------------------
    @classmethod
    def token(cls, position: int | torch.Tensor, token: int | torch.Tensor) -> Target:
        """Token ``token`` at ``position`` of a sequence output ``(N, T, V)``: the score ``out[:, position, token]``.

        Each may be an int or one per sample; negative positions count from the end (``-1``: the last).
        The same as ``target=(position, token)``.
        """
        return cls("token", index=token, position=position)

    @classmethod
    def region(cls, class_: int | torch.Tensor, mask: Any = None) -> Target:
        """Class ``class_`` of a channels-first dense output ``(N, C, *spatial)``, summed over a region.

        ``mask`` (bool or float weights) has the spatial shape ``(H, W)`` (one region for every sample) or
        ``(N, H, W)`` (one per sample); the score is ``Σ mask ⊙ out[:, class_]``. ``None``: every position
        (the same as a plain class index on a ≥ 4-D output). Also reads a 3-D output as ``(N, C, L)``.
        """
        if mask is not None:
            mask = check_tensor(mask, "mask", min_ndim=1, finite=True).detach()
            if mask.is_complex():
                raise TypeError("`mask` must hold bool or real weights, got a complex tensor.")
            mask = mask.to("cpu", torch.float64 if mask.dtype == torch.float64 else torch.float32)
            if not bool(mask.abs().sum() > 0):
                raise ValueError("`mask` is all zero: the region is empty, so there is nothing to explain.")
        return cls("region", index=class_, mask=mask)

    @classmethod
    def score(cls, fn: Callable[[torch.Tensor], torch.Tensor]) -> Target:
        """Any score: ``fn(out)`` must return one value per row of the output, shape ``(rows,)``.

        The same as ``target=fn``. ``fn`` gets the selected output of whatever rows the method runs (noisy or
        interpolated copies included) and must treat each row on its own, e.g. ``lambda out: out[:, -1, 40]``
        or ``lambda out: out[:, 3, 10:20, 10:20].sum((1, 2))``.
        """
        if not callable(fn):
            raise TypeError(f"Target.score needs a function of the output, got {type(fn).__name__}.")
        return cls("score", fn=fn)

    # ---- binding to a batch ------------------------------------------------------------------------
    def bind(self, n: int, argname: str = "target") -> Target:
        """A copy for a batch of ``n`` samples: per-sample values checked and expanded to ``(n,)``."""
        b = Target.__new__(Target)
        b.kind, b.fn, b.mask, b.argname = self.kind, self.fn, self.mask, argname
        b.index = b.position = None
        if self.kind == "index":
            b.index = check_target(self.index, n, argname=argname).cpu()
        elif self.kind == "token":
            b.position = _per_sample(self.position, n, "position", argname)
            b.index = _per_sample(self.index, n, "token", argname)
        elif self.kind == "region":
            b.index = _per_sample(self.index, n, "class", argname)
        b.rows, b.n = torch.arange(n), int(n)
        return b

    def _copy(self, rows: torch.Tensor) -> Target:
        c = Target.__new__(Target)
        c.__dict__.update(self.__dict__)
        c.rows = rows
        return c

    def _require_bound(self) -> torch.Tensor:
        if self.rows is None:
            raise RuntimeError("This Target is not bound to a batch; call target.bind(n) first.")
        return self.rows

    def __len__(self) -> int:
        return int(self._require_bound().numel())

    def __getitem__(self, idx: Any) -> Target:
        """The rows ``idx`` (a slice or an index tensor) of a bound target."""
        rows = self._require_bound()
        if isinstance(idx, torch.Tensor):
            idx = idx.cpu()
        return self._copy(rows[idx].reshape(-1))

    def repeat_interleave(self, k: int) -> Target:
        """Every row repeated ``k`` times in place (noisy copies of each sample)."""
        return self._copy(self._require_bound().repeat_interleave(int(k)))

    def to(self, *args: Any, **kwargs: Any) -> Target:
        """Targets are moved to the output's device when they are read; this returns ``self``."""
        return self

    @property
    def classes(self) -> torch.Tensor | None:
        """The class (or token) of every row, LongTensor, or ``None`` for a score function."""
        return None if self.index is None else self.index[self._require_bound()]

    # ---- reading the output -------------------------------------------------------------------------
    def class_axis(self, out: torch.Tensor) -> int:
        """The axis holding classes (tokens) for this target: the last for a sequence, else 1."""
        return out.ndim - 1 if self.kind == "token" else 1

    def _check_rows(self, out: torch.Tensor) -> torch.Tensor:
        rows = self._require_bound()
        if out.ndim == 0 or out.shape[0] != rows.numel():
            raise ValueError(
                f"The selected output has shape {tuple(out.shape)} for {rows.numel()} rows; it must have one "
                "row per sample (batch first). Choose another tensor with `output=`."
            )
        return rows

    def _class_range(self, idx: torch.Tensor, size: int, out: torch.Tensor, where: str) -> None:
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= size):
            raise ValueError(
                f"`{self.argname}` contains class indices outside [0, {size - 1}] (got min {int(idx.min())}, max "
                f"{int(idx.max())}); {where} (output {describe_axes(tuple(out.shape), dense=out.ndim == 3)})."
            )

    def _mask_for(self, out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The region weights, broadcastable to ``out[:, c]`` — ``(rows, *spatial)`` or ``(1, *spatial)``."""
        spatial = tuple(out.shape[2:])
        if self.mask is None:
            return torch.ones((1,) + spatial, dtype=out.dtype, device=out.device)
        m = self.mask
        if tuple(m.shape) == spatial:
            m = m.unsqueeze(0)
        elif m.ndim == len(spatial) + 1 and tuple(m.shape[1:]) == spatial and m.shape[0] in (1, self.n):
            if m.shape[0] != 1:
                m = m[rows]
        else:
            raise ValueError(
                f"`{self.argname}`: the region mask has shape {tuple(m.shape)}, but the output's class maps are "
                f"{spatial} per sample (output {describe_axes(tuple(out.shape), dense=True)}); pass a mask of shape "
                f"{spatial} (one region for every sample) or ({self.n}, {', '.join(map(str, spatial))}) (one per sample)."
            )
        return m.to(out.device, out.dtype)

    def _resolve(self, out: torch.Tensor) -> tuple[str, torch.Tensor | None, torch.Tensor | None]:
        """Check the target against ``out``; ``(how, index, position)`` on ``out``'s device.

        ``how``: ``"single"`` ((N,) output), ``"class"`` ((N, C)), ``"map"`` (class axis 1, summed over the
        mask), ``"token"`` or ``"score"``.
        """
        rows = self._check_rows(out)
        shape = describe_axes(tuple(out.shape), dense=self.kind == "region")
        if self.kind == "score":
            return "score", None, None
        idx = self.index[rows].to(out.device)
        if self.kind == "index":
            if out.ndim == 1:
                self._class_range(idx, 1, out, "the model has 1 output per sample")
                return "single", idx, None
            if out.ndim == 2:
                self._class_range(idx, out.shape[1], out, f"the model has {out.shape[1]} outputs")
                return "class", idx, None
            if out.ndim == 3:
                raise ValueError(
                    f"`{self.argname}` is a class index, but the output is 3-D, {shape}: nbexplain reads a 3-D "
                    f"output as a sequence ({out.shape[1]} positions × {out.shape[2]} tokens) and a bare index "
                    f"does not say which position. {_sequence_help(self.argname)[0].upper()}"
                    f"{_sequence_help(self.argname)[1:]}. For a channels-first map (N, C, L), "
                    "use nx.Target.region(class)."
                )
            self._class_range(idx, out.shape[1], out, f"the output has {out.shape[1]} class maps (axis 1)")
            return "map", idx, None
        if self.kind == "token":
            if out.ndim != 3:
                raise ValueError(
                    f"`{self.argname}`=(position, token) names a position and a token of a sequence output "
                    f"(N, T, V), but the output is {shape}. "
                    + ("Pass one class per sample as a list or a tensor, e.g. [3, 1], not a tuple."
                       if out.ndim <= 2 else "Pass a class (its map summed over all positions), "
                       "nx.Target.region(class, mask), or a function of the output.")
                )
            t_len, vocab = int(out.shape[1]), int(out.shape[2])
            pos = self.position[rows].to(out.device)
            if pos.numel() and (int(pos.min()) < -t_len or int(pos.max()) >= t_len):
                bad = int(pos.max()) if int(pos.max()) >= t_len else int(pos.min())
                raise ValueError(
                    f"`{self.argname}` position {bad} is outside the position axis (axis 1, T={t_len}) of the "
                    f"output {shape}: positions are 0 … {t_len - 1}, or -{t_len} … -1 counted from the end."
                )
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
                bad = int(idx.max()) if int(idx.max()) >= vocab else int(idx.min())
                raise ValueError(
                    f"`{self.argname}` token {bad} is outside the vocabulary axis (axis 2, V={vocab}) of the "
                    f"output {shape}: tokens are 0 … {vocab - 1}."
                )
            return "token", idx, pos % t_len
        # region
        if out.ndim < 3:
            raise ValueError(
                f"`{self.argname}` is a region of a dense output (N, C, *spatial), but the output is {shape}, "
                "which has no spatial axes; pass a class index."
            )
        self._class_range(idx, out.shape[1], out, f"the output has {out.shape[1]} class maps (axis 1)")
        return "map", idx, None

    def _call(self, out: torch.Tensor) -> torch.Tensor:
        assert self.fn is not None
        s = self.fn(out)
        n = out.shape[0]
        where = f"`{self.argname}` (a function of the output)"
        if not isinstance(s, torch.Tensor):
            raise TypeError(
                f"{where} returned {type(s).__name__}; it must return a tensor of one score per sample, shape ({n},)."
            )
        if tuple(s.shape) != (n,):
            raise ValueError(
                f"{where} returned shape {tuple(s.shape)} for an output of shape {tuple(out.shape)}; it must return "
                f"one score per sample, shape ({n},): reduce every other axis, e.g. lambda out: out[:, -1, 40] or "
                "lambda out: out[:, 3].sum((1, 2))."
            )
        if not s.is_floating_point():
            raise TypeError(f"{where} returned a {s.dtype} tensor; it must return floating scores.")
        if out.requires_grad and not s.requires_grad:
            raise ValueError(
                f"{where} returned scores that do not depend on the output (no gradient): compute them from "
                "`out` with torch operations, without .detach(), .item() or .argmax()."
            )
        return s

    def scores(self, out: torch.Tensor, average: bool = False) -> torch.Tensor:
        """One score per row of ``out``, shape ``(rows,)``.

        ``average``: a class map is averaged over its region (weighted by the mask) instead of summed.
        """
        how, idx, pos = self._resolve(out)
        if how == "score":
            return self._call(out)
        ar = torch.arange(out.shape[0], device=out.device)
        if how == "single":
            return out
        if how == "class":
            return out.gather(1, idx.view(-1, 1)).squeeze(1)
        if how == "token":
            return out[ar, pos, idx]
        maps = out[ar, idx]
        m = self._mask_for(out, self._require_bound())
        total = (maps * m).reshape(out.shape[0], -1).sum(dim=1)
        if not average:
            return total
        weight = torch.broadcast_to(m, maps.shape).reshape(out.shape[0], -1).sum(dim=1)
        if bool((weight == 0).any()):
            raise ValueError(f"`{self.argname}`: a sample's region mask is all zero, so its mean is undefined.")
        return total / weight

    def seed(self, out: torch.Tensor) -> torch.Tensor:
        """``∂ score / ∂ out`` (out's shape): where, and with which weight, the explained score reads ``out``."""
        how, idx, pos = self._resolve(out)
        if how == "score":
            with torch.enable_grad():
                leaf = out.detach().requires_grad_(True)
                s = self._call(leaf)
                (w,) = torch.autograd.grad(s.sum(), leaf, allow_unused=True)
            return torch.zeros_like(out) if w is None else w.detach()
        w = torch.zeros_like(out)
        ar = torch.arange(out.shape[0], device=out.device)
        if how == "single":
            w.fill_(1.0)
        elif how == "class":
            w[ar, idx] = 1.0
        elif how == "token":
            w[ar, pos, idx] = 1.0
        else:
            w[ar, idx] = torch.broadcast_to(self._mask_for(out, self._require_bound()), w[ar, idx].shape)
        return w

    def __repr__(self) -> str:
        def short(v: Any) -> str:
            if isinstance(v, torch.Tensor):
                vals = v[self.rows] if self.rows is not None and v.ndim == 1 and v.numel() > 1 else v
                vals = vals.unique() if vals.numel() > 1 else vals
                return str(int(vals)) if vals.numel() == 1 else f"{vals.numel()} values"
            return repr(v)

        if self.kind == "score":
            return f"Target.score({getattr(self.fn, '__name__', 'fn')})"
        if self.kind == "token":
            return f"Target.token(position={short(self.position)}, token={short(self.index)})"
        if self.kind == "region":
            m = "None" if self.mask is None else f"mask{tuple(self.mask.shape)}"
            return f"Target.region({short(self.index)}, {m})"
        return f"Target({short(self.index)})"


def as_target(target: Any, n: int, argname: str = "target") -> Target:
    """Read ``target=`` (see the module notes) for a batch of ``n`` samples, checked before any model call.

    What it means for the output — and whether it fits its shape — is checked when the output is read, with
    an error that names the output's axes.
    """
    if isinstance(target, Target):
        return target.bind(n, argname)
    if target is None:
        raise TypeError(
            f"`{argname}` is required: a class index (or one per sample), (position, token) for a sequence "
            "output, or a function of the output."
        )
    if isinstance(target, tuple):
        if len(target) != 2:
            raise ValueError(
                f"`{argname}` is a tuple of {len(target)}; a tuple names (position, token) of a sequence output "
                "(N, T, V). For one class per sample pass a list or a tensor."
            )
        return Target.token(target[0], target[1]).bind(n, argname)
    if callable(target) and not isinstance(target, (torch.Tensor, type)):
        return Target.score(target).bind(n, argname)
    return Target("index", index=target).bind(n, argname)
