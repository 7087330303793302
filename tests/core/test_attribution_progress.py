"""The attribution entry points follow the one progress policy (core/_base/machinery.py): ``None`` shows a bar
only once the work passes 2 s, ``True`` at once, ``False`` never; anything else is refused by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core._base import machinery


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


CALLS: dict[str, Callable[..., Any]] = {
    "LRP": lambda m, x, p: nx.lrp(m, x, 1, batch_size=2, progress=p),
    "rde": lambda m, x, p: nx.rde(m, x, 1, steps=60, n_noise=2, fractions=3, n_eval=2, n_random=1, progress=p),
    "gradient": lambda m, x, p: nx.gradient(m, x, 1, batch_size=1, progress=p),
    "smoothgrad": lambda m, x, p: nx.smoothgrad(m, x, 1, n_samples=4, batch_size=2, progress=p),
    "integrated gradients": lambda m, x, p: nx.integrated_gradients(m, x, 1, steps=8, batch_size=2, progress=p),
    "noise_tunnel(integrated_gradients)": lambda m, x, p: nx.noise_tunnel(
        nx.integrated_gradients, m, x, 1, n_samples=4, steps=4, batch_size=2, progress=p),
}


@pytest.mark.parametrize("desc", list(CALLS))
def test_none_waits_for_the_delay_and_true_shows_the_bar(
    desc: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``None`` is the delayed bar: silent while the call is shorter than the delay (set far out here, so that
    no clock is involved), shown by a call longer than it (a delay of 0)."""
    model, x = _net(), torch.rand(5, 6)
    monkeypatch.setattr(machinery, "PROGRESS_DELAY", 1e6)
    quiet = CALLS[desc](model, x, None)  # several batches (or steps): the old policies showed a bar here
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(machinery, "PROGRESS_DELAY", 0.0)
    CALLS[desc](model, x, None)
    assert desc in capsys.readouterr().err
    shown = CALLS[desc](model, x, True)
    assert desc in capsys.readouterr().err
    assert torch.equal(quiet.attribution, shown.attribution)  # the bar changes nothing
    CALLS[desc](model, x, False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("desc", list(CALLS))
def test_progress_must_be_none_or_a_bool(desc: str) -> None:
    with pytest.raises(TypeError, match=r"`progress` must be None"):
        CALLS[desc](_net(), torch.rand(2, 6), "yes")
