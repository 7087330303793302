"""The cells of a similarity grid: layer outputs captured, read as samples × features for each pair's sample
layout, reduced/whitened once per layer (:class:`_Prepared`), and compared pair by pair (:class:`_GridRun`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._base import dense_linalg
from .._base.capturing import InputsArg, run_layers
from .._base.layer_select import resolve_modules
from .._base.validation import check_finite
from .metrics import RANK_RTOL, _center_gram, centre_and_gram, hsic_unbiased_linear, rbf_gram

_CCA_FAMILY = ("svcca", "cca", "pwcca")


def _capture_outputs(
    model: nn.Module, inputs: InputsArg, names: list[str], batch_size: int, device: torch.device,
    conv: str = "channels", overrides: Mapping[str, str] | None = None, layouts: dict[str, str] | None = None,
    *, eval_mode: bool = True,
) -> dict[str, torch.Tensor]:
    """Raw layer outputs over all inputs (eval mode unless ``eval_mode=False``; no grad), float32 on ``device``, features on dim 1.

    Token outputs are moved to ``(N, D, T…)`` so that tokens play the role of positions (``conv="cls"``
    keeps the first token only). Non-finite outputs are an error naming the layer. ``layouts``, when given, is
    filled with each layer's resolved layout.
    """
    modules = resolve_modules(model, names)
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    layouts = {} if layouts is None else layouts
    overrides = {n: v for n, v in (overrides or {}).items() if n in modules}

    def collect(outputs: dict[str, torch.Tensor]) -> None:
        for name, o in outputs.items():
            if o.ndim > 2 and layouts[name] != "channels_first":
                o = o.movedim(0, 1) if layouts[name] == "sequence_first" else o
                o = o.movedim(-1, 1)  # (N, …, D) tokens → features first, tokens as positions
                if conv == "cls":
                    o = o.reshape(o.shape[0], o.shape[1], -1)[:, :, 0]
            elif o.ndim > 2 and conv == "cls":
                raise ValueError(
                    f"Layer {name!r} is channels-first {tuple(o.shape)}; `conv='cls'` takes the first token of "
                    "token outputs (N, T, D). Use conv='channels', 'mean', 'max' or 'flatten' for conv layers."
                )
            try:
                check_finite(o, "inputs")
            except ValueError:
                raise ValueError(
                    f"Layer {name!r} produced non-finite values (NaN or inf) for these inputs; similarity is "
                    "undefined. Check the model for overflow (e.g. half precision) or the inputs."
                ) from None
            chunks[name].append(o.to(device, torch.float32))

    run_layers(model, inputs, modules, collect, batch_size=batch_size, eval_mode=eval_mode, layout=overrides or None,
               layouts=layouts)
    return {n: torch.cat(c, dim=0) for n, c in chunks.items()}


def _spatial(o: torch.Tensor) -> tuple[int, ...]:
    return tuple(o.shape[2:]) if o.ndim > 2 else ()


def _pair_key(a: torch.Tensor, b: torch.Tensor, conv: str) -> tuple[Any, ...]:
    if conv != "channels":
        return (conv,)
    sa, sb = _spatial(a), _spatial(b)
    if not sa or not sb or len(sa) != len(sb):
        return ("pool",)
    return ("res", tuple(min(u, v) for u, v in zip(sa, sb, strict=True)))


def _features(o: torch.Tensor, key: tuple[Any, ...], max_samples: int, seed: int) -> torch.Tensor:
    """Features of one layer output for a sample layout ``key`` (float64)."""
    if o.ndim <= 2:
        return o.reshape(o.shape[0], -1).double()
    o = o.double()
    n, c = o.shape[:2]
    mode = key[0]
    if mode in ("pool", "mean"):
        return o.reshape(n, c, -1).mean(dim=2).double()
    if mode == "max":
        return o.reshape(n, c, -1).amax(dim=2).double()
    if mode == "flatten":
        return o.reshape(n, -1).double()
    target = key[1]
    if tuple(o.shape[2:]) != target:
        pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}.get(len(target))
        if pool is None:
            o = o.reshape(n, c, -1).mean(dim=2, keepdim=True)
        else:
            o = pool(o, target)
    feats = o.movedim(1, -1).reshape(-1, c)
    total = feats.shape[0]
    if total > max_samples:
        gen = torch.Generator(device="cpu").manual_seed(int(seed) * 1_000_003 + total)
        idx = torch.randperm(total, generator=gen)[:max_samples].sort().values.to(feats.device)
        feats = feats.index_select(0, idx)
    return feats.double()


class _Prepared:
    """One layer's features in one sample layout, reduced/whitened once for every pair."""

    def __init__(
        self, x: torch.Tensor, metrics: set[str], keep: float | int, epsilon: float, threshold: float
    ):
        self.n = x.shape[0]
        xc, gram, _ = centre_and_gram(x)
        self.dead = not bool(torch.diagonal(gram).max() > 0)
        if self.dead:
            return
        if metrics & set(_CCA_FAMILY):
            scale = float(torch.diagonal(gram).max())
            s = gram / scale
            vals, vecs = dense_linalg.eigh(s)
            vals, vecs = vals.flip(0).clamp_min(0.0), vecs.flip(1)
            r = int((vals > RANK_RTOL * float(vals[0])).sum())
            # as nx.cca: ε > 0 keeps (and shrinks) every direction, ε = 0 drops the numerically null ones
            self.rank = r if epsilon == 0.0 else vals.numel()
            if isinstance(keep, int):
                self.k = min(keep, r)
            else:
                frac = torch.cumsum(vals[:r], 0) / float(vals[:r].sum())
                self.k = min(int((frac < keep - 1e-12).sum()) + 1, r)
            # SVCCA alone needs only the top-k whitened directions
            cols = self.k if metrics & set(_CCA_FAMILY) == {"svcca"} else self.rank
            w = vecs[:, :cols] * (vals[:cols] + epsilon).rsqrt()
            self.z = dense_linalg.matmul(xc, w / math.sqrt(scale))
            if "pwcca" in metrics:
                self.load = dense_linalg.matmul(s, w)
        if metrics & {"cka", "cka_debiased"}:
            self.xc = xc
            self.gsq = float((gram * gram).sum())
            if "cka_debiased" in metrics:
                self.a = (xc * xc).sum(dim=1)
        if "cka_rbf" in metrics:
            self.kc = _center_gram(rbf_gram(x, threshold))
            self.ksq = float((self.kc * self.kc).sum())


def _cross_products(
    a: _Prepared,
    bs: list[_Prepared],
    metrics: list[str],
    concat_cache: dict[Any, torch.Tensor],
    cache_key: Any,
) -> list[torch.Tensor | None]:
    """Whitened cross-products of one row layer with several reference layers.

    With a ``cache_key`` the reference layers' whitened features are concatenated once (kept in
    ``concat_cache`` for every row) and multiplied as one matrix product; without, one product per layer.
    """
    fam = [m for m in metrics if m in _CCA_FAMILY]
    if not fam or a.dead:
        return [None] * len(bs)
    alive = [b for b in bs if not b.dead]
    if not alive:
        return [None] * len(bs)
    svcca_only = fam == ["svcca"]
    widths = [b.k if svcca_only else b.z.shape[1] for b in alive]
    left = a.z[:, : a.k] if svcca_only else a.z
    if cache_key is None:  # a one-off set of columns: one product per layer, no concatenated copy
        parts = iter([dense_linalg.cross(left, b.z[:, :w]) for b, w in zip(alive, widths, strict=True)])
    else:
        if cache_key not in concat_cache:
            concat_cache[cache_key] = torch.cat([b.z[:, :w] for b, w in zip(alive, widths, strict=True)], dim=1)
        parts = iter(dense_linalg.cross(left, concat_cache[cache_key]).split(widths, dim=1))
    return [None if b.dead else next(parts) for b in bs]


def _self_values(a: _Prepared, metrics: list[str]) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """A live layer against itself (ε = 0): every canonical correlation and every CKA is exactly 1."""
    vals = {m: 1.0 for m in metrics}
    specs = {
        m: torch.ones(a.k if m == "svcca" else a.rank, dtype=torch.float64)
        for m in metrics
        if m in _CCA_FAMILY
    }
    if "cka_debiased" in metrics:  # defined only when the unbiased HSIC of the layer with itself is positive
        sa = float(a.a.sum())
        if not hsic_unbiased_linear(a.gsq, float(a.a @ a.a), sa, sa, a.n) > 0:
            vals["cka_debiased"] = math.nan
    return vals, specs


@dataclass
class _Cells:
    """The grid being filled: values per metric ``(T, L, L_ref)`` and spectra per CCA-family metric."""

    grids: dict[str, torch.Tensor]
    spectra: dict[str, dict[tuple[int, int, int], torch.Tensor]]

    def store(self, t: int, i: int, j: int, vals: dict[str, float], specs: dict[str, torch.Tensor]) -> None:
        for m, v in vals.items():
            self.grids[m][t, i, j] = v
        for m, c in specs.items():
            self.spectra[m][(t, i, j)] = c.to("cpu", torch.float32)

    def mirror(self, t: int, i: int, j: int) -> None:
        """Cell ``(t, i, j)`` := cell ``(t, j, i)`` (a symmetric pair of the reference with itself)."""
        for g in self.grids.values():
            g[t, i, j] = g[t, j, i]
        for d in self.spectra.values():
            if (t, j, i) in d:
                d[(t, i, j)] = d[(t, j, i)]


def _fill_group(
    cells: _Cells,
    t: int,
    i: int,
    a: _Prepared,
    js: list[int],
    refs: list[_Prepared],
    metrics: list[str],
    *,
    symmetric: bool,
    self_is_one: bool,
    concat_cache: dict[Any, torch.Tensor],
    key: Any,
) -> None:
    """Cells ``(t, i, j)`` for the reference layers ``js`` (prepared as ``refs``) that share one sample layout.

    ``symmetric``: row ``i`` is reference layer ``i`` of the same model and the metrics are symmetric, so the
    cells left of the diagonal are mirrored from rows already filled. ``self_is_one``: a live layer against
    itself is exactly 1 (ε = 0).
    """
    todo: list[tuple[int, _Prepared]] = []
    for j, b in zip(js, refs, strict=True):
        if symmetric and j < i:
            cells.mirror(t, i, j)
        elif self_is_one and a is b and not a.dead:
            cells.store(t, i, j, *_self_values(a, metrics))
        else:
            todo.append((j, b))
    bs = [b for _, b in todo]
    cache_key = (key, tuple(j for j, _ in todo)) if len(todo) == len(js) else None
    for (j, b), m in zip(todo, _cross_products(a, bs, metrics, concat_cache, cache_key), strict=True):
        cells.store(t, i, j, *_pair_values(a, b, metrics, m))


def _pair_values(
    a: _Prepared, b: _Prepared, metrics: list[str], m: torch.Tensor | None = None
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    vals: dict[str, float] = {}
    specs: dict[str, torch.Tensor] = {}
    if a.dead or b.dead:
        return {m: math.nan for m in metrics}, {}
    fam = [m for m in metrics if m in _CCA_FAMILY]
    if fam:
        if m is None:
            m = (
                dense_linalg.cross(a.z[:, : a.k], b.z[:, : b.k])
                if fam == ["svcca"]
                else dense_linalg.cross(a.z, b.z)
            )
        if "svcca" in fam:
            c = dense_linalg.svdvals(m[: a.k, : b.k]).clamp(0.0, 1.0)
            vals["svcca"] = float(c.mean())
            specs["svcca"] = c
        if "pwcca" in fam:
            u, c, vh = dense_linalg.svd(m)
            c = c.clamp(0.0, 1.0)
            load = (a.load @ u) if a.rank <= b.rank else (b.load @ vh.T)
            wts = load.abs().sum(dim=0)
            wts = wts / wts.sum()
            vals["pwcca"] = float((wts * c).sum())
            specs["pwcca"] = c
            if "cca" in fam:
                vals["cca"] = float(c.mean())
                specs["cca"] = c
        elif "cca" in fam:
            c = dense_linalg.svdvals(m).clamp(0.0, 1.0)
            vals["cca"] = float(c.mean())
            specs["cca"] = c
    if "cka" in metrics or "cka_debiased" in metrics:
        cross = dense_linalg.cross(a.xc, b.xc)
        csq = float((cross * cross).sum())
        if "cka" in metrics:
            vals["cka"] = min(max(csq / math.sqrt(a.gsq * b.gsq), 0.0), 1.0)
        if "cka_debiased" in metrics:
            n = a.n
            sa, sb = float(a.a.sum()), float(b.a.sum())
            hxy = hsic_unbiased_linear(csq, float(a.a @ b.a), sa, sb, n)
            hxx = hsic_unbiased_linear(a.gsq, float(a.a @ a.a), sa, sa, n)
            hyy = hsic_unbiased_linear(b.gsq, float(b.a @ b.a), sb, sb, n)
            vals["cka_debiased"] = (
                min(max(hxy / math.sqrt(hxx * hyy), -1.0), 1.0) if hxx > 0 and hyy > 0 else math.nan
            )
    if "cka_rbf" in metrics:
        vals["cka_rbf"] = min(max(float((a.kc * b.kc).sum()) / math.sqrt(a.ksq * b.ksq), 0.0), 1.0)
    return vals, specs


class _GridRun:
    """The grid being filled, checkpoint by checkpoint, and the work shared between checkpoints: the
    reference layers' outputs and prepared (reduced/whitened) features, and concatenated reference blocks."""

    def __init__(
        self, metrics: list[str], opts: dict[str, Any], row_names: list[str], ref_names: list[str],
        t_count: int, dev: torch.device,
    ) -> None:
        self.metrics = metrics
        self.opts, self.row_names, self.ref_names, self.dev = opts, row_names, ref_names, dev
        shape = (t_count, len(row_names), len(ref_names))
        self.cells = _Cells(
            grids={m: torch.full(shape, math.nan, dtype=torch.float64) for m in self.metrics},
            spectra={m: {} for m in self.metrics if m in _CCA_FAMILY},
        )
        self.shape = shape
        self.n_samples = torch.zeros(len(row_names), len(ref_names), dtype=torch.int64)
        self.undefined: set[str] = set()
        self.layouts: dict[str, str] = {}
        self.ref_out: dict[str, torch.Tensor] = {}
        self.ref_cache: dict[tuple[str, tuple[Any, ...]], _Prepared] = {}
        self.concat_cache: dict[Any, torch.Tensor] = {}

    def _prepare(self, name: str, src: dict[str, torch.Tensor], cache: dict, key: tuple[Any, ...]) -> None:
        if (name, key) not in cache:
            o = self.opts
            feats = _features(src[name], key, o["max_samples"], o["seed"])
            cache[(name, key)] = _Prepared(feats, set(self.metrics), o["keep"], o["epsilon"], o["threshold"])

    def compare(self, t: int, outs: dict[str, torch.Tensor], same_as_ref: bool, label: str) -> None:
        """Row ``t``: every layer of one checkpoint (its outputs ``outs``) against every reference layer."""
        n_ref = next(iter(self.ref_out.values())).shape[0]
        for name, o in outs.items():
            if o.shape[0] != n_ref:
                raise RuntimeError(
                    f"Layer {name!r} produced a different number of samples than the reference."
                )
        row_cache: dict[tuple[str, tuple[Any, ...]], _Prepared] = self.ref_cache if same_as_ref else {}
        mirror = "pwcca" not in self.metrics  # PWCCA weights one side: not symmetric
        with dense_linalg.blas_phase(self.dev):
            for i, rn in enumerate(self.row_names):
                groups: dict[tuple[Any, ...], list[int]] = {}
                for j, cn in enumerate(self.ref_names):
                    key = _pair_key(outs[rn], self.ref_out[cn], self.opts["conv"])
                    groups.setdefault(key, []).append(j)
                    self._prepare(rn, outs, row_cache, key)
                    self._prepare(cn, self.ref_out, self.ref_cache, key)
                for key, js in groups.items():
                    a = row_cache[(rn, key)]
                    refs = [self.ref_cache[(self.ref_names[j], key)] for j in js]
                    self.n_samples[i, js] = a.n
                    if a.dead:
                        self.undefined.add(f"{rn} at {label}")
                    dead = [self.ref_names[j] for j, b in zip(js, refs, strict=True) if b.dead]
                    self.undefined.update(f"{name} of the reference" for name in dead)
                    _fill_group(
                        self.cells, t, i, a, js, refs, self.metrics, symmetric=same_as_ref and mirror,
                        self_is_one=self.opts["epsilon"] == 0.0, concat_cache=self.concat_cache, key=key,
                    )

    def spectra(self) -> dict[str, torch.Tensor]:
        """The CCA spectra as float32 ``(T, L, L_ref, K)`` tensors, NaN-padded to the longest."""
        out: dict[str, torch.Tensor] = {}
        for m, d in self.cells.spectra.items():
            kmax = max((c.numel() for c in d.values()), default=0)
            arr = torch.full((*self.shape, max(kmax, 1)), math.nan, dtype=torch.float32)
            for (t, i, j), c in d.items():
                arr[t, i, j, : c.numel()] = c
            out[m] = arr
        return out
