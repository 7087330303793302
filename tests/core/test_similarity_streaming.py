"""Streaming similarity statistics equal the in-memory results; merges and torch.distributed all-reduce."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import nbexplain as nx
from nbexplain.core.similarity.streaming import StreamingSimilarity


def data(n=3000, p=24, q=10, seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, p, dtype=torch.float64) + offset
    y = x[:, :q] @ torch.randn(q, q, generator=g, dtype=torch.float64) + torch.randn(n, q, generator=g, dtype=torch.float64)
    y[:, -1] = 5.0  # a constant feature: dropped identically by both paths
    return x, y


def stream(x, y, sizes, **kw):
    acc = StreamingSimilarity(x.shape[1], y.shape[1], **kw)
    start = 0
    for s in sizes:
        acc.update(x[start : start + s], y[start : start + s])
        start += s
    assert start == x.shape[0]
    return acc


@pytest.mark.parametrize("sizes", [[3000], [1000] * 3, [1, 2, 997, 2000], [3] * 100 + [2700]])
def test_streaming_equals_in_memory(sizes):
    x, y = data(offset=100.0)  # a large mean: the float64 merge must not lose precision
    acc = stream(x, y, sizes)
    assert acc.count == 3000
    torch.testing.assert_close(acc.cca().coefficients, nx.cca(x, y).coefficients, atol=1e-10, rtol=0)
    for keep in (0.9, 5):
        torch.testing.assert_close(acc.svcca(keep=keep).coefficients, nx.svcca(x, y, keep=keep).coefficients, atol=1e-10, rtol=0)
    a, b = acc.pwcca(), nx.pwcca(x, y)
    assert a.value == pytest.approx(b.value, abs=1e-10) and a.side == b.side
    torch.testing.assert_close(a.weights, b.weights, atol=1e-10, rtol=0)
    assert acc.cka().value == pytest.approx(nx.cka(x, y).value, abs=1e-12)
    assert acc.cca(epsilon=1e-3).mean == pytest.approx(nx.cca(x, y, epsilon=1e-3).mean, abs=1e-10)


def test_float32_batches_exact_and_fast_modes():
    x, y = data()
    x32, y32 = x.float(), y.float()
    exact = stream(x32, y32, [500] * 6)
    ref = nx.cca(x32, y32)
    torch.testing.assert_close(exact.cca().coefficients, ref.coefficients, atol=1e-10, rtol=0)
    fast = stream(x32, y32, [500] * 6, exact=False)
    torch.testing.assert_close(fast.cca().coefficients, ref.coefficients, atol=1e-4, rtol=0)


def test_merge_equals_single_stream_and_state_roundtrip():
    x, y = data(seed=1)
    a = stream(x[:1200], y[:1200], [400] * 3)
    b = stream(x[1200:], y[1200:], [1800])
    a.merge(b)
    whole = stream(x, y, [3000])
    torch.testing.assert_close(a.cca().coefficients, whole.cca().coefficients, atol=1e-11, rtol=0)
    again = StreamingSimilarity.from_state_dict(a.state_dict())
    assert again.count == 3000
    assert again.svcca().mean == pytest.approx(a.svcca().mean, abs=1e-12)


def test_memory_is_independent_of_sample_count():
    acc = StreamingSimilarity(8, 4)
    x, y = torch.randn(100, 8), torch.randn(100, 4)
    acc.update(x, y)
    before = sum(t.numel() for t in acc.moments.state_dict().values() if isinstance(t, torch.Tensor))
    for _ in range(20):
        acc.update(x, y)
    after = sum(t.numel() for t in acc.moments.state_dict().values() if isinstance(t, torch.Tensor))
    assert before == after == 12 + 144


def test_streaming_errors():
    acc = StreamingSimilarity(3, 2)
    with pytest.raises(ValueError, match="at least 2 samples"):
        acc.cca()
    with pytest.raises(ValueError, match="created for 3"):
        acc.update(torch.randn(5, 4), torch.randn(5, 2))
    with pytest.raises(ValueError, match="5 samples but `y` has 6"):
        acc.update(torch.randn(5, 3), torch.randn(6, 2))
    bad = torch.randn(5, 3)
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        acc.update(bad, torch.randn(5, 2))
    acc.update(torch.randn(50, 3), torch.randn(50, 2))
    with pytest.raises(ValueError, match="in-memory|all samples"):
        acc.cka(kernel="rbf")
    with pytest.raises(ValueError, match="all samples"):
        acc.cka(debiased=True)
    with pytest.raises(ValueError, match=r"Cannot merge"):
        acc.merge(StreamingSimilarity(2, 2))
    with pytest.raises(RuntimeError, match="init_process_group"):
        acc.all_reduce()
    zero = StreamingSimilarity(2, 2).update(torch.randn(10, 2), torch.ones(10, 2))
    with pytest.raises(ValueError, match="zero variance"):
        zero.cca()


WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from nbexplain.core.similarity.streaming import StreamingSimilarity
    rank, world, init, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    data = torch.load(sys.argv[5])
    x, y = data["x"], data["y"]
    # uneven shards: rank r takes every world-th block of 100 samples
    idx = torch.cat([torch.arange(s, min(s + 100, x.shape[0])) for s in range(rank * 100, x.shape[0], world * 100)])
    acc = StreamingSimilarity(x.shape[1], y.shape[1], device="cpu")
    for chunk in idx.split(37):
        acc.update(x[chunk], y[chunk])
    local = acc.count
    acc.all_reduce()
    torch.save({"local": local, "count": acc.count, "cca": acc.cca().coefficients,
                "pwcca": acc.pwcca().value, "cka": acc.cka().value}, out)
    dist.destroy_process_group()
    """
)


@pytest.mark.distributed
def test_two_process_gloo_all_reduce_equals_in_memory(tmp_path):
    x, y = data(n=1050, p=12, q=6, seed=3, offset=-20.0)
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    init = f"file://{tmp_path / 'rendezvous'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), "2", init, str(tmp_path / f"out{r}.pt"), str(tmp_path / "data.pt")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()
    results = [torch.load(tmp_path / f"out{r}.pt") for r in range(2)]
    assert results[0]["local"] != results[1]["local"]  # uneven shards
    assert results[0]["local"] + results[1]["local"] == 1050
    ref = nx.cca(x, y)
    for res in results:
        assert res["count"] == 1050
        torch.testing.assert_close(res["cca"], ref.coefficients, atol=1e-10, rtol=0)
        assert res["pwcca"] == pytest.approx(nx.pwcca(x, y).value, abs=1e-10)
        assert res["cka"] == pytest.approx(nx.cka(x, y).value, abs=1e-12)
