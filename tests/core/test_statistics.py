"""Streaming float64 moments against a float64 reference computed on all samples at once."""

from __future__ import annotations

import pytest
import torch

from nbexplain.core._base.moments import (
    RunningMoments,
    channels_to_features,
    subsample_positions,
)


def reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population covariance from the definitions, float64, all samples at once."""
    x = x.double()
    mu = x.sum(0) / x.shape[0]
    xc = x - mu
    return mu, xc.T @ xc / x.shape[0]


@pytest.mark.parametrize("sizes", [[1000], [1, 2, 997], [128] * 7 + [104], [3, 500, 3, 494]])
def test_matches_reference_any_batch_sizes(sizes):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sum(sizes), 6, generator=g, dtype=torch.float64) @ torch.randn(
        6, 6, generator=g, dtype=torch.float64
    )
    m = RunningMoments(6)
    for chunk in x.split(sizes):
        m.update(chunk)
    mu, cov = reference(x)
    assert m.count == x.shape[0]
    torch.testing.assert_close(m.mean, mu, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.covariance, cov, rtol=1e-12, atol=1e-12)


def test_float32_input_with_large_offset_is_accurate():
    # The naive float32 Σxxᵀ/n − μμᵀ loses every digit here (mean 1e4, std 1); centring per batch does not.
    g = torch.Generator().manual_seed(1)
    x64 = 1e4 + torch.randn(20000, 4, generator=g, dtype=torch.float64)
    x32 = x64.float()
    m = RunningMoments(4)
    for chunk in x32.split(1000):
        m.update(chunk)
    _, cov = reference(x32)
    torch.testing.assert_close(m.covariance, cov, rtol=1e-4, atol=1e-4)
    naive = (x32.T @ x32) / x32.shape[0] - torch.outer(x32.mean(0), x32.mean(0))
    assert (naive.double() - cov).abs().max() > 1.0  # the reason for the design


def test_update_channels_equals_flattened_update():
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(5, 3, 7, 6, generator=g, dtype=torch.float64) + 2.0
    a = RunningMoments(3).update_channels(maps).update_channels(maps[:1] * 3)
    b = RunningMoments(3).update(channels_to_features(maps)).update(channels_to_features(maps[:1] * 3))
    torch.testing.assert_close(a.covariance, b.covariance, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.mean, b.mean)
    mu, cov = reference(torch.cat([channels_to_features(maps), channels_to_features(maps[:1] * 3)]))
    torch.testing.assert_close(a.covariance, cov, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [130, 300])
def test_wide_layers_row_buffer_and_block_triangular_products_match_reference(d):
    """Wide features go through the row buffer (small batches), the direct path (a large batch) and the
    block-triangular products (2 blocks for d=130, 4 for d=300); float64 input must match the float64
    reference to round-off, float32 input to float32 accuracy; the co-moment is exactly symmetric."""
    g = torch.Generator().manual_seed(d)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    x = 3.0 + torch.randn(5000, d, generator=g, dtype=torch.float64) @ mix
    sizes = [64] * 20 + [1, 63] + [2000] + [64] * 8 + [5000 - 64 * 28 - 64 - 2000]
    mu, cov = reference(x)
    for dtype, tol in ((torch.float64, 1e-11), (torch.float32, 2e-5)):
        m = RunningMoments(d)
        for chunk in x.to(dtype).split(sizes):
            m.update(chunk)
        assert m.count == 5000
        scale = float(cov.abs().max())
        assert float((m.covariance - cov).abs().max()) <= tol * scale, dtype
        torch.testing.assert_close(m.mean, mu, rtol=0, atol=tol * 10)
        assert torch.equal(m.comoment, m.comoment.T)
        vals = m.eigenvalues
        torch.testing.assert_close(vals, torch.linalg.eigvalsh(cov).flip(0), rtol=0, atol=tol * scale * 10)


def test_wide_channel_maps_use_the_block_products_too():
    g = torch.Generator().manual_seed(5)
    maps = torch.randn(4, 200, 6, 5, generator=g, dtype=torch.float64) + 1.0
    a = RunningMoments(200).update_channels(maps)
    _, cov = reference(channels_to_features(maps))
    torch.testing.assert_close(a.covariance, cov, rtol=1e-12, atol=1e-12)


def test_overflowing_squares_and_nan_in_a_buffered_batch_are_errors():
    for bad in (3e19, float("nan")):  # 3e19² overflows float32 although the value itself is finite
        m = RunningMoments(4, name="fc9")
        x = torch.randn(64, 4)
        m.update(x)  # first block: merged at once
        y = torch.randn(64, 4)
        y[5, 2] = bad
        with pytest.raises(ValueError, match="fc9"):
            m.update(y)  # buffered until its block is merged …
            _ = m.covariance  # … which happens at the latest when a result is read
        assert m.count == 64  # the bad block is discarded, the good one kept


def test_merge_equals_single_stream_and_copy_is_independent():
    x = torch.randn(300, 5, dtype=torch.float64)
    a = RunningMoments(5).update(x[:100])
    b = RunningMoments(5).update(x[100:250]).update(x[250:])
    c = a.copy().merge(b)
    whole = RunningMoments(5).update(x)
    torch.testing.assert_close(c.covariance, whole.covariance, rtol=1e-12, atol=1e-12)
    assert a.count == 100 and c.count == 300
    c.merge(RunningMoments(5))  # empty merge is a no-op
    assert c.count == 300


def test_eigh_descending_and_reconstructs():
    x = torch.randn(400, 4, dtype=torch.float64) * torch.tensor([5.0, 1.0, 3.0, 0.1], dtype=torch.float64)
    m = RunningMoments(4).update(x)
    vals, vecs = m.eigh()
    assert torch.all(vals[:-1] >= vals[1:])
    torch.testing.assert_close(vecs @ torch.diag(vals) @ vecs.T, m.covariance, rtol=1e-10, atol=1e-10)
    ref = torch.linalg.eigvalsh(reference(x)[1]).flip(0)
    torch.testing.assert_close(vals, ref, rtol=1e-10, atol=1e-12)


def test_state_dict_roundtrip_and_reset():
    x = torch.randn(50, 3)
    m = RunningMoments(3, name="fc1").update(x)
    m2 = RunningMoments.from_state_dict(m.state_dict())
    torch.testing.assert_close(m2.covariance, m.covariance)
    assert m2.count == 50 and m2.name == "fc1"
    m.reset()
    assert m.count == 0
    with pytest.raises(ValueError, match="No samples"):
        _ = m.mean
    empty = RunningMoments.from_state_dict(RunningMoments(3).state_dict())
    assert empty.count == 0


def test_bad_inputs_name_the_layer():
    m = RunningMoments(3, name="conv1")
    with pytest.raises(ValueError, match="conv1"):
        m.update(torch.tensor([[1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="3"):
        m.update(torch.randn(4, 5))
    with pytest.raises(ValueError, match="dimensions"):
        m.update(torch.randn(4))
    with pytest.raises(TypeError, match="floating"):
        m.update(torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="≥ 1"):
        RunningMoments(0)
    with pytest.raises(RuntimeError, match="process group"):
        RunningMoments(3).all_reduce()


def test_subsample_positions_deterministic_and_unbiased():
    x = torch.arange(2 * 1 * 100, dtype=torch.float32).reshape(2, 1, 10, 10)
    a = subsample_positions(x, 10, seed=3, step=5)
    b = subsample_positions(x, 10, seed=3, step=5)
    c = subsample_positions(x, 10, seed=3, step=6)
    assert a.shape == (2, 1, 10) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[1] - a[0], torch.full_like(a[0], 100.0))  # same positions for every image
    assert subsample_positions(x, 1000).shape == (2, 1, 100)
    # Over many steps every position is visited about equally often.
    counts = torch.zeros(100)
    for s in range(400):
        counts[subsample_positions(x[:1], 10, step=s)[0, 0].long()] += 1
    assert counts.min() > 15 and counts.max() < 70


# The 2-process gloo test of all_reduce (raw moments and through a tracker) lives in test_saturation.py
# so that one process spawn serves both.


def test_add_rows_equals_update_and_varying_batch_sizes_keep_few_buffer_views():
    g = torch.Generator().manual_seed(7)
    sizes = [int(v) for v in torch.randint(1, 64, (300,), generator=g)]
    x = torch.randn(sum(sizes), 40, generator=g) * 2.0 + 1.0
    a, b = RunningMoments(40), RunningMoments(40)
    for chunk in x.split(sizes):
        a.update(chunk)
        b.add_rows(chunk)
    torch.testing.assert_close(a.covariance, b.covariance, rtol=0, atol=0)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
    _, cov = reference(x)
    torch.testing.assert_close(a.covariance, cov, rtol=1e-5, atol=1e-5)
    assert len(a._slots) <= 256  # views of the row buffer are cached, but not without bound
