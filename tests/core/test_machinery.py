"""The shared batching, progress and hook-handle machinery (nbexplain.core._base.machinery)."""

from __future__ import annotations

import pytest
import torch

from nbexplain.core._base.machinery import PROGRESS_DELAY, Handles, batch_slices, check_progress, progress_bar


def test_batch_slices_cover_every_row_once() -> None:
    rows = [r for sl in batch_slices(10, 4) for r in range(10)[sl]]
    assert rows == list(range(10))
    assert [(s.start, s.stop) for s in batch_slices(7, 3, start=2)] == [(2, 5), (5, 7)]
    assert list(batch_slices(0, 3)) == []
    with pytest.raises(ValueError, match="batch_size"):
        list(batch_slices(3, 0))


def test_progress_policy() -> None:
    auto = progress_bar(total=2, desc="x")
    on = progress_bar(total=2, desc="x", progress=True)
    off = progress_bar(total=2, desc="x", progress=False)
    try:
        assert auto.delay == PROGRESS_DELAY and not auto.disable
        assert on.delay == 0 and not on.disable
        assert off.disable
    finally:
        for b in (auto, on, off):
            b.close()
    with pytest.raises(TypeError, match="`progress` must be None"):
        check_progress("yes")


def test_handles_remove_all_even_when_one_fails() -> None:
    lin = torch.nn.Linear(2, 2)
    removed: list[str] = []

    class Bad:
        def remove(self) -> None:
            removed.append("bad")
            raise RuntimeError("boom")

    h = Handles()
    h.add(lin.register_forward_hook(lambda *a: None))
    h.add(Bad())
    h.add(lambda: removed.append("callable"))
    with pytest.raises(RuntimeError, match="boom"):
        h.remove()
    assert removed == ["callable", "bad"] and len(lin._forward_hooks) == 0 and len(h) == 0
    with pytest.raises(TypeError, match="remove"):
        h.add(3)
