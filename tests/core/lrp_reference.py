"""A float64 matrix-form LRP, written straight from the rule definitions (Montavon et al. 2019).

Independent of nbexplain's hook/modified-gradient engine: every linear layer (Linear, Conv, average
pooling, batch norm) is turned into an explicit dense matrix ``M`` (outputs × inputs) by applying it
to the standard basis, and each rule builds the explicit per-sample message matrix
``Z[i, j]`` (contribution of input i to output j) and redistributes ``R_i = Σ_j Z_ij / z_j · R_j``.

A network is described by a *plan*: a list of steps

- ``("linear", module, rule)`` — Linear / Conv / AvgPool / BatchNorm (any linear map + bias),
- ``("merged", conv, bn, rule)`` — a Linear/Conv followed by a batch norm, merged in float64,
- ``("relu",)``, ``("tanh",)`` — relevance passes through,
- ``("maxpool", module)`` — relevance goes to the maximum of each window,
- ``("copy", module)`` — a module that only copies inputs (reflect / circular padding): the relevance of
  every copy goes back to the pixel it copies,
- ``("flatten",)`` — reshape,
- ``("residual", main_plan, shortcut_plan, eps)`` — ``main(x) + shortcut(x)`` (shortcut ``[]`` is the
  identity), relevance split in proportion to the two summands.
- ``("concat", main_plan, skip_plan)`` — ``cat([main(x), skip(x)], dim=1)`` (skip ``[]`` is the identity: a
  U-Net skip connection); each part's channels take their own relevance back.

Rules are tuples: ``("zero", bias)``, ``("eps", eps, bias)``, ``("gamma", g, bias)``,
``("alphabeta", a, b, bias)``, ``("zplus", bias)``, ``("zbox", low, high)``, ``("flat",)``, ``("w2",)``.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def _sign(z: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1, in z's dtype."""
    return torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))


def layer_matrix(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, b): the module's linear part as an (out × in) matrix and its bias as a vector (float64)."""
    n_in = math.prod(in_shape)
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    with torch.no_grad():
        zero = torch.zeros(1, *in_shape, dtype=torch.float64)
        b = module(zero).reshape(-1)
        m = (module(basis).reshape(n_in, -1) - b).T.contiguous()
    return m, b


def _connectivity(module: nn.Module, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Which input each output is wired to (a conv / linear with all weights 1, no bias)."""
    clone = copy.deepcopy(module)
    with torch.no_grad():
        clone.weight.fill_(1.0)
    clone.bias = None
    m, _ = layer_matrix(clone, in_shape)
    return m


def _rule_messages(rule: tuple, a: torch.Tensor, m: torch.Tensor, b: torch.Tensor, conn: torch.Tensor | None):
    """Per-sample message matrices Z (N, in, out) and denominators z (N, out) of a rule."""
    name = rule[0]
    contrib = a[:, :, None] * m.T[None]  # Z_ij = a_i M_ji
    if name in ("zero", "eps"):
        eps = 0.0 if name == "zero" else rule[1]
        use_bias = rule[-1]
        z = contrib.sum(1) + (b if use_bias else 0)
        if eps == 0:
            den = torch.where(z == 0, torch.full_like(z, math.inf), z)
        else:
            den = z + eps * _sign(z)
        return contrib, den
    if name == "gamma":
        g, use_bias = rule[1], rule[2]
        mg = m + g * m.clamp(min=0)
        zc = a[:, :, None] * mg.T[None]
        z = zc.sum(1) + ((b + g * b.clamp(min=0)) if use_bias else 0)
        den = z + 1e-6 * _sign(z)
        return zc, den
    if name == "zplus":
        use_bias = rule[1]
        zc = contrib.clamp(min=0)
        z = zc.sum(1) + (b.clamp(min=0) if use_bias else 0)
        return zc, z + 1e-9
    if name == "zbox":
        low, high = rule[1], rule[2]
        lo = torch.full_like(a, low)
        hi = torch.full_like(a, high)
        zc = contrib - lo[:, :, None] * m.clamp(min=0).T[None] - hi[:, :, None] * m.clamp(max=0).T[None]
        z = zc.sum(1)
        return zc, z + 1e-6 * _sign(z)
    if name in ("flat", "w2"):
        w = conn if name == "flat" else m * m
        zc = w.T[None].expand(a.shape[0], -1, -1)
        z = zc.sum(1)
        return zc, z + 1e-12
    raise ValueError(name)


def _redistribute(rule: tuple, a: torch.Tensor, m: torch.Tensor, b: torch.Tensor, conn, r_out: torch.Tensor):
    if rule[0] == "alphabeta":
        alpha, beta, use_bias = rule[1], rule[2], rule[3]
        contrib = a[:, :, None] * m.T[None]
        zp, zn = contrib.clamp(min=0), contrib.clamp(max=0)
        dp = zp.sum(1) + (b.clamp(min=0) if use_bias else 0) + 1e-9
        dn = zn.sum(1) + (b.clamp(max=0) if use_bias else 0) - 1e-9
        return alpha * (zp * (r_out / dp)[:, None, :]).sum(2) - beta * (zn * (r_out / dn)[:, None, :]).sum(2)
    zc, den = _rule_messages(rule, a, m, b, conn)
    return (zc * (r_out / den)[:, None, :]).sum(2)


def run(plan: list, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(input relevance shaped like x, model output) for the plan, starting from the target logit."""
    out, tape = _forward(plan, x.double())
    rows = torch.arange(out.shape[0])
    r = torch.zeros_like(out)
    r[rows, target] = out[rows, target]
    return _backward(tape, r).reshape(x.shape), out


def _forward(plan: list, x: torch.Tensor):
    tape = []
    h = x
    for step in plan:
        kind = step[0]
        shape = tuple(h.shape[1:])
        if kind == "linear":
            module, rule = step[1], step[2]
            m, b = layer_matrix(module, shape)
            conn = _connectivity(module, shape) if rule[0] == "flat" else None
            a = h.reshape(h.shape[0], -1)
            new = a @ m.T + b
            tape.append(("linear", a, m, b, conn, rule, shape))
            h = new.reshape(h.shape[0], *_out_shape(module, shape))
        elif kind == "merged":
            lin, bn, rule = step[1], step[2], step[3]
            m, b = layer_matrix(lin, shape)
            out_shape = _out_shape(lin, shape)
            scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).double()
            shift = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).double()
            per = math.prod(out_shape[1:]) if len(out_shape) > 1 else 1
            s = scale.repeat_interleave(per)
            m2, b2 = s[:, None] * m, s * b + shift.repeat_interleave(per)
            conn = _connectivity(lin, shape) if rule[0] == "flat" else None
            a = h.reshape(h.shape[0], -1)
            tape.append(("linear", a, m2, b2, conn, rule, shape))
            h = (a @ m2.T + b2).reshape(h.shape[0], *out_shape)
        elif kind in ("relu", "tanh"):
            h = torch.relu(h) if kind == "relu" else torch.tanh(h)
            tape.append(("pass", shape))
        elif kind == "maxpool":
            module = step[1]
            pooled, idx = F.max_pool2d(h, module.kernel_size, module.stride, module.padding, return_indices=True)
            n_in = math.prod(shape)
            sel = torch.zeros(h.shape[0], pooled[0].numel(), n_in, dtype=torch.float64)
            flat_idx = idx.reshape(h.shape[0], shape[0], -1) + (torch.arange(shape[0]) * shape[1] * shape[2])[None, :, None]
            sel.scatter_(2, flat_idx.reshape(h.shape[0], -1, 1), 1.0)
            tape.append(("select", sel, shape))
            h = pooled
        elif kind == "copy":
            module = step[1]
            sel, _ = layer_matrix(module, shape)  # a 0/1 matrix: output j copies input i
            assert set(sel.unique().tolist()) <= {0.0, 1.0}
            tape.append(("select", sel[None].expand(h.shape[0], -1, -1), shape))
            h = module(h)
        elif kind == "flatten":
            tape.append(("reshape", shape))
            h = h.reshape(h.shape[0], -1)
        elif kind == "residual":
            main, short, eps = step[1], step[2], step[3]
            hm, tm = _forward(main, h)
            hs, ts = _forward(short, h) if short else (h, [])
            tape.append(("residual", tm, ts, hm.reshape(h.shape[0], -1), hs.reshape(h.shape[0], -1), eps, shape))
            h = hm + hs
        elif kind == "concat":
            main, skip = step[1], step[2]
            hm, tm = _forward(main, h)
            hs, ts = _forward(skip, h) if skip else (h, [])
            tape.append(("concat", tm, ts, hm[0].numel(), shape))
            h = torch.cat([hm, hs], 1)
        else:
            raise ValueError(kind)
    return h, tape


def _out_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(module(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])


def _backward(tape: list, r: torch.Tensor) -> torch.Tensor:
    r = r.reshape(r.shape[0], -1)
    for entry in reversed(tape):
        kind = entry[0]
        if kind == "linear":
            _, a, m, b, conn, rule, shape = entry
            r = _redistribute(rule, a, m, b, conn, r)
        elif kind == "select":
            sel = entry[1]
            r = (sel * r[:, :, None]).sum(1)
        elif kind == "residual":
            _, tm, ts, hm, hs, eps, shape = entry
            z = hm + hs
            den = z + eps * _sign(z)
            rm, rs = hm / den * r, hs / den * r
            r = _backward(tm, rm).reshape(r.shape[0], -1) + (_backward(ts, rs).reshape(r.shape[0], -1) if ts else rs)
        elif kind == "concat":
            _, tm, ts, n_main, shape = entry
            rm, rs = r[:, :n_main], r[:, n_main:]  # channel-first: the main part's channels come first
            r = _backward(tm, rm).reshape(r.shape[0], -1) + (_backward(ts, rs).reshape(r.shape[0], -1) if ts else rs)
        # pass / reshape: nothing to do on flattened relevance
    return r
