"""Shapley values: exact enumeration against the permutation definition, known values, axioms, sampling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from nbexplain.core.complexity.shapley import shapley_values


def reference_shapley(v, n):
    """Float64 reference straight from the definition: mean marginal contribution over all n! orders."""
    phi = [0.0] * n
    count = 0
    for perm in itertools.permutations(range(n)):
        members: set[int] = set()
        prev = v(frozenset())
        for i in perm:
            members.add(i)
            cur = v(frozenset(members))
            phi[i] += cur - prev
            prev = cur
        count += 1
    return torch.tensor(phi, dtype=torch.float64) / count


def random_game(n, seed):
    g = torch.Generator().manual_seed(seed)
    table = {frozenset(s): float(torch.randn((), generator=g, dtype=torch.float64))
             for k in range(n + 1) for s in itertools.combinations(range(n), k)}
    return lambda s: table[frozenset(s)]


def test_glove_game_known_values():
    v = lambda s: float(0 in s and (1 in s or 2 in s))  # noqa: E731
    res = shapley_values(v, 3)
    assert torch.allclose(res.values, torch.tensor([2 / 3, 1 / 6, 1 / 6], dtype=torch.float64), atol=1e-12)
    assert res.method == "exact" and res.n_evaluations == 8


def test_weighted_majority_game_matches_definition():
    # weighted voting game [4; 3, 2, 1, 1]: the big player is pivotal in 12 of 24 orders, each small one
    # in 4 (Shapley–Shubik index 1/2, 1/6, 1/6, 1/6, counted by hand)
    w = [3, 2, 1, 1]
    v = lambda s: float(sum(w[i] for i in s) >= 4)  # noqa: E731
    res = shapley_values(v, 4)
    ref = reference_shapley(v, 4)
    assert torch.allclose(res.values, ref, atol=1e-12)
    assert torch.allclose(res.values, torch.tensor([1 / 2, 1 / 6, 1 / 6, 1 / 6], dtype=torch.float64))


@pytest.mark.parametrize("n,seed", [(1, 0), (2, 1), (4, 2), (6, 3)])
def test_exact_matches_permutation_definition_on_random_games(n, seed):
    v = random_game(n, seed)
    res = shapley_values(v, n, method="exact")
    assert torch.allclose(res.values, reference_shapley(v, n), atol=1e-10)


@pytest.mark.parametrize("method", ["exact", "permutation"])
def test_efficiency(method):
    n = 7
    v = random_game(n, 11)
    res = shapley_values(v, n, method=method, n_permutations=20)
    total = v(frozenset(range(n))) - v(frozenset())
    assert math.isclose(float(res.values.sum()), total, abs_tol=1e-10)
    assert math.isclose(float(res.total), total, abs_tol=1e-12)


def test_symmetry_and_dummy():
    # players 0 and 1 are interchangeable, player 3 never matters
    def v(s):
        a = (0 in s) + (1 in s)
        return 2.0 * a + 3.0 * (a == 2) + 1.5 * (2 in s) * a
    res = shapley_values(v, 4)
    assert math.isclose(float(res.values[0]), float(res.values[1]), abs_tol=1e-12)
    assert abs(float(res.values[3])) < 1e-12
    assert not math.isclose(float(res.values[0]), float(res.values[2]))


def test_additive_game_gives_weights_for_both_methods():
    w = torch.tensor([0.5, -1.0, 2.0, 0.25, 3.0], dtype=torch.float64)
    v = lambda s: float(sum(w[i] for i in s))  # noqa: E731
    for method in ("exact", "permutation"):
        res = shapley_values(v, 5, method=method, n_permutations=6)
        assert torch.allclose(res.values, w, atol=1e-12)
        assert float(res.stderr.max()) < 1e-12


def test_permutation_estimate_is_close_and_seeded():
    n = 8
    v = random_game(n, 5)
    exact = shapley_values(v, n, method="exact").values
    est = shapley_values(v, n, method="permutation", n_permutations=400, seed=3)
    assert est.method == "permutation" and est.n_permutations == 400
    # within 5 standard errors (plus a tiny slack) of the exact values
    assert bool(((est.values - exact).abs() <= 5 * est.stderr + 1e-9).all())
    again = shapley_values(v, n, method="permutation", n_permutations=400, seed=3)
    assert torch.equal(est.values, again.values)
    other = shapley_values(v, n, method="permutation", n_permutations=400, seed=4)
    assert not torch.equal(est.values, other.values)


def test_auto_switches_to_sampling_for_many_players():
    n = 12
    v = lambda s: float(len(s) ** 2)  # symmetric: every player gets v(N)/n  # noqa: E731
    res = shapley_values(v, n, n_permutations=4)
    assert res.method == "permutation"
    assert torch.allclose(res.values, torch.full((n,), 144.0 / n, dtype=torch.float64))


def test_vector_valued_game_is_componentwise():
    v = lambda s: torch.tensor([float(len(s)), 2.0 * (0 in s)])  # noqa: E731
    res = shapley_values(v, 3)
    assert res.values.shape == (3, 2)
    assert torch.allclose(res.values[:, 0], torch.ones(3, dtype=torch.float64))
    assert torch.allclose(res.values[:, 1], torch.tensor([2.0, 0, 0], dtype=torch.float64))


def test_each_coalition_is_evaluated_once():
    calls = []
    def v(s):
        calls.append(s)
        return float(len(s))
    shapley_values(v, 5)
    assert len(calls) == len(set(calls)) == 32


def test_bad_inputs():
    v = lambda s: 1.0  # noqa: E731
    with pytest.raises(ValueError, match="n_players"):
        shapley_values(v, 0)
    with pytest.raises(ValueError, match="method"):
        shapley_values(v, 2, method="exakt")
    with pytest.raises(TypeError, match="callable"):
        shapley_values(3.0, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-finite"):
        shapley_values(lambda s: float("nan"), 2)
    with pytest.raises(ValueError, match="different shapes"):
        shapley_values(lambda s: torch.zeros(len(s) % 2 + 1), 2)
    with pytest.raises(ValueError, match="permutation"):
        shapley_values(v, 21, method="exact")


def test_progress_follows_the_policy(capsys):
    v = random_game(4, 7)
    quiet = shapley_values(v, 4, progress=False)
    assert capsys.readouterr().err == ""
    for method in ("exact", "permutation"):
        shown = shapley_values(v, 4, method=method, n_permutations=4, progress=True)
        assert "Shapley" in capsys.readouterr().err
        auto = shapley_values(v, 4, method=method, n_permutations=4, progress=None)  # quick: no bar
        assert "Shapley" not in capsys.readouterr().err
        assert torch.equal(shown.values, auto.values)
    assert torch.allclose(quiet.values, reference_shapley(v, 4), atol=1e-12)
    with pytest.raises(TypeError, match="`progress` must be None"):
        shapley_values(v, 4, progress="yes")
