"""The shared argument checks: each error names the argument and says what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nbexplain.core._base import validation as v


def test_check_tensor_accepts_numpy_and_checks_rank_dtype_finiteness() -> None:
    assert isinstance(v.check_tensor(np.zeros((2, 3)), "x", ndim=2), torch.Tensor)
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor"):
        v.check_tensor([1, 2], "x")
    with pytest.raises(ValueError, match="`x` must have 2 dimensions"):
        v.check_tensor(torch.zeros(3), "x", ndim=2)
    with pytest.raises(ValueError, match="at least 2"):
        v.check_tensor(torch.zeros(3), "x", min_ndim=2)
    with pytest.raises(TypeError, match="floating-point"):
        v.check_tensor(torch.zeros(3, dtype=torch.long), "x", dtype_kind="float")
    with pytest.raises(ValueError, match="1 non-finite"):
        v.check_tensor(torch.tensor([0.0, float("nan")]), "x", finite=True)


def test_check_fraction_and_ints() -> None:
    assert v.check_fraction(1, "delta") == 1.0
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"`delta` must lie in \(0, 1\]"):
            v.check_fraction(bad, "delta")
    with pytest.raises(TypeError, match="delta"):
        v.check_fraction("0.9", "delta")
    with pytest.raises(TypeError, match="delta"):
        v.check_fraction(float("nan"), "delta")
    assert v.check_positive_int(0, "n", allow_zero=True) == 0
    with pytest.raises(ValueError, match="`n` must be ≥ 1"):
        v.check_positive_int(0, "n")
    with pytest.raises(TypeError, match="`n` must be an integer"):
        v.check_positive_int(True, "n")


def test_check_choice_suggests() -> None:
    with pytest.raises(ValueError, match="Did you mean 'linear'"):
        v.check_choice("lnear", "kernel", ["linear", "rbf"])


def test_check_target() -> None:
    assert v.check_target(3, 4).tolist() == [3, 3, 3, 3]
    assert v.check_target(torch.tensor([1, 2]), 2).tolist() == [1, 2]
    assert v.check_target([5], 3).tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="3 entries but the input batch has 2"):
        v.check_target(torch.tensor([1, 2, 3]), 2)
    with pytest.raises(ValueError, match=r"outside \[0, 9\]"):
        v.check_target(10, 2, n_classes=10)
    with pytest.raises(TypeError, match="bool"):
        v.check_target(True, 2)
    with pytest.raises(TypeError, match="integer"):
        v.check_target(torch.tensor([0.5]), 1)


def test_check_layer_names_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"Unknown layer name\(s\) in `layers`: \['fc3'\]\. Did you mean 'fc1'"):
        v.check_layer_names(["fc1", "fc3"], ["fc1", "out"])
    with pytest.raises(TypeError, match="layer names"):
        v.check_layer_names([1], ["fc1"])


def test_check_same_samples() -> None:
    with pytest.raises(ValueError, match="`x` has 2 samples but `y` has 3"):
        v.check_same_samples(torch.zeros(2, 1), torch.zeros(3, 1))
