"""Training of the disentanglers (distillation, order by order) and of the default reference network."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from .._base.hygiene import model_device
from .._base.machinery import batch_slices, progress_bar
from .._base.model_inputs import Inputs, as_inputs, call_model
from .._base.model_io import OutputArg, select_output
from .disentanglers import Disentangler, ElementwiseFit, make_disentangler
from .task import LossFn


def _fresh_reference(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every hook removed and every parameter re-initialised under ``seed``."""
    ref = copy.deepcopy(model)
    for mod in ref.modules():
        for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                  "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            if hasattr(mod, d):
                getattr(mod, d).clear()
    for p in ref.parameters():
        p.grad = None
        p.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        n_reset = 0
        for mod in ref.modules():
            if hasattr(mod, "reset_parameters") and callable(mod.reset_parameters):
                mod.reset_parameters()
                n_reset += 1
    if n_reset == 0:
        raise ValueError(
            "Cannot re-initialise a copy of `model` for the reliability reference (none of its modules has "
            "reset_parameters()); pass reference_model=<a second trained network> or reference_model=False."
        )
    return ref


def _train_reference(
    ref: nn.Module, x: Inputs | torch.Tensor, y: torch.Tensor, loss_fn: LossFn, epochs: int, seed: int,
    batch_size: int, progress: bool | None, output: OutputArg = None,
) -> list[float]:
    x = as_inputs(x, "x")
    dev = model_device(ref)
    opt = torch.optim.Adam([p for p in ref.parameters() if p.requires_grad], lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    ref.train()
    bar = progress_bar(range(epochs), desc="reference network", progress=progress)
    for _ in bar:
        order = torch.randperm(x.n, generator=gen)
        total = 0.0
        for sl in batch_slices(x.n, batch_size):
            idx = order[sl]
            if idx.numel() < 2 and x.n > 1:
                continue
            loss = loss_fn(select_output(call_model(ref, x.rows(idx).to_model(ref)), output), y[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        losses.append(total / x.n)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=progress is True)
    ref.eval()
    for p in ref.parameters():
        p.grad = None
    return losses


def _train_disentangler(
    d: nn.Module, x: torch.Tensor, f: torch.Tensor, xt: torch.Tensor, ft: torch.Tensor, f_scale: torch.Tensor,
    epochs: int, lr: tuple[float, float], batch_size: int, seed: int, bar_desc: str, progress: bool | None,
) -> dict[str, Any]:
    """Distil ``f`` into ``d`` by MSE (divided by ``f_scale``²), log-spaced learning rate.

    After every epoch a :class:`Disentangler`'s per-element gain and offset are set by least squares on that
    epoch's mini-batches (:meth:`~nbexplain.core.complexity.disentanglers.Disentangler.refit_affine`).
    """
    dev = next(d.parameters()).device
    scale = f_scale.to(dev)
    refit = isinstance(d, Disentangler)
    opt = torch.optim.Adam(d.parameters(), lr=lr[0])
    gen = torch.Generator().manual_seed(seed)
    hist: dict[str, Any] = {
        "loss": [], "test_loss": [], "lr": [], "seconds": 0.0, "epoch_seconds": [], "epoch_cpu_seconds": [],
    }
    t0 = time.perf_counter()
    bar = progress_bar(range(epochs), desc=bar_desc, progress=progress)
    for e in bar:
        rate = lr[0] * (lr[1] / lr[0]) ** (e / (epochs - 1)) if epochs > 1 else lr[0]
        for g in opt.param_groups:
            g["lr"] = rate
        te, ce = time.perf_counter(), time.process_time()
        d.train()
        order = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        fit = ElementwiseFit() if refit else None
        for sl in batch_slices(x.shape[0], batch_size):
            idx = order[sl]
            xb, fb = x[idx].to(dev), f[idx].to(dev)
            if fit is not None:
                u = d.raw(xb)
                fit.add(u, d.standardise(fb))
                pred = d.finish(u)
            else:
                pred = d(xb)
            loss = (((pred - fb) / scale) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        if fit is not None and fit.n >= 2:
            d.refit_affine(fit)
        hist["epoch_seconds"].append(time.perf_counter() - te)
        hist["epoch_cpu_seconds"].append(time.process_time() - ce)
        hist["loss"].append(total / x.shape[0])
        hist["lr"].append(rate)
        d.eval()
        with torch.no_grad():
            tl = 0.0
            for sl in batch_slices(xt.shape[0], 512):
                xb, fb = xt[sl].to(dev), ft[sl].to(dev)
                tl += float((((d(xb) - fb) / scale) ** 2).mean()) * xb.shape[0]
            hist["test_loss"].append(tl / xt.shape[0])
        # refresh=True would show an automatic (progress=None) bar before its delay
        bar.set_postfix(
            loss=f"{hist['loss'][-1]:.4f}", test=f"{hist['test_loss'][-1]:.4f}", refresh=progress is True
        )
    for p in d.parameters():
        p.grad = None
    d.eval()
    hist["seconds"] = time.perf_counter() - t0
    return hist




def _new_disentangler(
    call: Any, o: int, prev: nn.Module | None, fam: str, xd_tr: torch.Tensor, f_tr: torch.Tensor,
    stat_idx: torch.Tensor, width: int, dev: torch.device,
) -> nn.Module:
    """The untrained order-``o`` disentangler: from the user's factory, grown from the previous one, or new."""
    init_seed = call.seed * 7919 + o
    if call.custom:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            d = call.family(o, prev)
        if not isinstance(d, nn.Module):
            raise TypeError(f"`family({o}, previous)` must return an nn.Module, got {type(d).__name__}.")
        return d.to(dev)
    if prev is not None and isinstance(prev, Disentangler):
        return prev.grow(o, generator_seed=init_seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        d = make_disentangler(fam, o, xd_tr[stat_idx], f_tr[stat_idx], width, call.kernel_size)
    return d.to(dev)


def _train_orders(
    call: Any, fam: str, width: int, xd_tr: torch.Tensor, xd_te: torch.Tensor, f_tr: torch.Tensor,
    f_te: torch.Tensor, f_scale: torch.Tensor, dev: torch.device,
) -> tuple[dict[int, nn.Module], dict[int, dict[str, Any]]]:
    """Train the disentanglers order by order, each warm-started from the deepest one below it (trained
    here or taken from ``resume``); orders ``resume`` covers are reused as they are."""
    resume = call.resume
    feature_shape = tuple(f_tr.shape[1:])
    trained: dict[int, nn.Module] = {}
    history: dict[int, dict[str, Any]] = {}
    previous_pool: dict[int, nn.Module] = dict(resume.disentanglers) if resume is not None else {}
    stat_idx = torch.randperm(call.x_tr.n, generator=torch.Generator().manual_seed(call.seed))[:4096]
    outer = progress_bar(call.orders, desc=f"complexity of {call.layer}", progress=call.progress, leave=True)
    for i, o in enumerate(outer):
        outer.set_postfix(order=o, refresh=call.progress is True)
        if o in previous_pool:
            trained[o] = previous_pool[o].to(dev)
            history[o] = resume.history.get(o, {}) if resume is not None else {}
            continue
        below = [k for k in list(trained) + list(previous_pool) if k < o]
        prev = None
        if below:
            k_prev = max(below)
            prev = trained[k_prev] if k_prev in trained else previous_pool[k_prev]
        d = _new_disentangler(call, o, prev, fam, xd_tr, f_tr, stat_idx, width, dev)
        with torch.no_grad():
            probe = d(xd_tr[:2].to(dev))
        if tuple(probe.shape[1:]) != feature_shape:
            raise ValueError(
                f"The order-{o} disentangler outputs samples of shape {tuple(probe.shape[1:])}, "
                f"but {call.layer!r} outputs {feature_shape}."
            )
        history[o] = _train_disentangler(
            d, xd_tr, f_tr, xd_te, f_te, f_scale, call.epochs[i], call.lr, call.batch_size,
            call.seed * 7919 + 104729 + o, f"order {o}", call.progress,
        )
        trained[o] = d
    outer.close()
    return trained, history
