"""nx.Inputs and the several-inputs conventions (nbexplain.core._base.model_inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nbexplain.core._base.model_inputs import Inputs, as_inputs, call_note, iter_inputs, resolve_wrt


def test_inputs_rows_expand_and_replace_keep_every_input_aligned() -> None:
    x = torch.arange(12.0).reshape(4, 3)
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=torch.bool)
    batch = Inputs(x, mask=mask, scale=2.0)
    assert batch.n == 4 and batch.keys == [0, "mask"]
    rows = batch.rows(torch.tensor([3, 1]))
    assert torch.equal(rows[0], x[[3, 1]]) and torch.equal(rows["mask"], mask[[3, 1]])
    assert rows["scale"] == 2.0
    rep = batch.repeat_interleave(3)
    assert rep.n == 12
    assert torch.equal(rep["mask"][3:6], mask[1].expand(3, 3))
    assert torch.equal(rep[0][9:12], x[3].expand(3, 3))
    swapped = batch.replace(0, torch.zeros(4, 3))
    assert float(swapped[0].abs().sum()) == 0.0 and swapped["mask"] is mask


def test_call_passes_positional_keyword_and_constant_values() -> None:
    seen = {}

    def model(a: torch.Tensor, b: torch.Tensor, *, flag: bool = False, mask: torch.Tensor | None = None):
        seen.update(a=a, b=b, flag=flag, mask=mask)
        return a + b

    a, b, m = torch.ones(2, 2), torch.full((2, 2), 2.0), torch.zeros(2, 2)
    out = Inputs(a, b, flag=True, mask=m).call(model)
    assert torch.equal(out, torch.full((2, 2), 3.0))
    assert seen["flag"] is True and seen["mask"] is m


def test_batch_sizes_must_agree_and_errors_say_how() -> None:
    with pytest.raises(ValueError, match=r"share their first-axis size.*\[0\]: 4, \[1\]: 3.*wrapper module"):
        Inputs(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="holds no tensor"):
        Inputs(1.0, flag=True)
    with pytest.raises(ValueError, match="scalar tensor"):
        Inputs(torch.zeros(4, 2), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"^`x`: The inputs of one batch"):
        as_inputs((torch.zeros(4, 2), torch.zeros(5)), "x")
    with pytest.raises(TypeError, match=r"`x` must be a tensor, a tuple .* got list"):
        as_inputs([torch.zeros(2)], "x")


def test_top_level_tuple_and_dict_are_one_batch_lists_are_batches() -> None:
    x, mask = torch.randn(10, 3), torch.ones(10, 3)
    chunks = list(iter_inputs((x, mask), batch_size=4))
    assert [c.n for c in chunks] == [4, 4, 2]
    assert all(len(c.args) == 2 for c in chunks)
    assert torch.equal(torch.cat([c[1] for c in chunks]), mask)
    kw = list(iter_inputs({"x": x, "mask": mask}, batch_size=16))
    assert len(kw) == 1 and kw[0].keys == ["x", "mask"]
    # a list is an iterable of batches; (inputs, label) items give only the inputs to the model
    y = torch.arange(10)
    items = list(iter_inputs([(x[:5], y[:5]), ((x[5:], mask[5:]), y[5:]), {"x": x[:2]}], batch_size=2))
    assert [len(i.args) + len(i.kwargs) for i in items] == [1, 2, 1]
    assert items[0].n == 5  # batches from an iterable are not re-split
    assert torch.equal(items[1][1], mask[5:])
    np_chunks = list(iter_inputs(np.zeros((3, 2), dtype=np.float32), batch_size=2))
    assert [c.n for c in np_chunks] == [2, 1]
    with pytest.raises(TypeError, match="`inputs` must be"):
        list(iter_inputs("abc", 2))


def test_resolve_wrt() -> None:
    batch = Inputs(torch.zeros(2, 3), torch.zeros(2, 1), mask=torch.zeros(2, 3), k=3)
    assert resolve_wrt(batch, None) == 0
    assert resolve_wrt(batch, -1) == 1
    assert resolve_wrt(batch, "mask") == "mask"
    with pytest.raises(ValueError, match=r"`wrt`='lengths' names no input.*\[0, 1, 'mask'\]"):
        resolve_wrt(batch, "lengths")
    with pytest.raises(ValueError, match="not a tensor"):
        resolve_wrt(batch, "k")
    with pytest.raises(TypeError, match="position"):
        resolve_wrt(batch, 1.0)


def test_call_note_explains_the_reading() -> None:
    assert "several inputs" in call_note(Inputs(torch.zeros(2, 3)))
    note = call_note(Inputs(torch.zeros(2, 3), torch.zeros(2)))
    assert "model(Tensor(2, 3) float32, Tensor(2,) float32)" in note and "(inputs, labels)" in note
