"""Shapley values of cooperative games with few players (exact) or many (permutation sampling).

A *game* is a function ``v`` from coalitions (sets of player indices ``0 … n-1``) to a number or to a
vector of numbers. The Shapley value of player ``i`` is its average marginal contribution over every
order in which the players can join (Shapley 1953)::

    φ_i = Σ_{S ⊆ N \\ {i}}  |S|! (n − |S| − 1)! / n!  · ( v(S ∪ {i}) − v(S) )

Properties used by the tests and relied on by callers:

* **efficiency** — ``Σ_i φ_i = v(N) − v(∅)`` (exact for both estimators below: every permutation's
  marginal contributions telescope to that total);
* **symmetry** — players whose marginal contributions are equal in every coalition get equal values
  (exact for the exact method, in expectation for sampling);
* **dummy** — a player that never changes ``v`` gets 0; **linearity** — vector-valued games are
  computed component-wise in one pass.

``method="exact"`` enumerates all ``2**n`` coalitions (each evaluated once and cached) and costs
``2**n`` evaluations of ``v``. ``method="permutation"`` is the Monte-Carlo estimator of Castro, Gómez
& Tejada (2009): draw random orders of the players, add the players one at a time and record each
marginal contribution; the estimate of ``φ_i`` is the mean over orders. Each order is paired with its
reverse (antithetic sampling), which lowers the variance and never increases it for monotone games.
Values of ``v`` are cached by coalition, so the cost is at most ``n_permutations · n + 1`` evaluations
and usually fewer. The standard error of each estimate is reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Union

import torch

from .._base.machinery import check_progress, progress_bar
from .._base.validation import check_choice, check_positive_int

__all__ = ["shapley_values", "ShapleyResult", "Coalition"]

Coalition = frozenset
GameValue = Union[float, int, torch.Tensor, Any]

#: Above this many players ``method="auto"`` switches from exact enumeration to sampling.
EXACT_LIMIT = 10


@dataclass
class ShapleyResult:
    """Shapley values of a game, with what it took to compute them.

    Attributes
    ----------
    values
        ``(n_players,)`` float64, or ``(n_players, k)`` for a game whose value is a length-``k`` vector.
    stderr
        Standard error of each value (zeros for the exact method).
    method
        ``"exact"`` or ``"permutation"``.
    n_evaluations
        How many distinct coalitions were evaluated.
    empty, full
        ``v(∅)`` and ``v(N)``; by efficiency ``values.sum(0) == full - empty``.
    n_permutations
        Orders sampled (0 for the exact method).
    """

    values: torch.Tensor
    stderr: torch.Tensor
    method: str
    n_evaluations: int
    empty: torch.Tensor
    full: torch.Tensor
    n_permutations: int = 0

    @property
    def total(self) -> torch.Tensor:
        """``v(N) − v(∅)``, the amount the players share."""
        return self.full - self.empty

    def __repr__(self) -> str:
        vals = ", ".join(f"{float(v):.4g}" for v in self.values.reshape(self.values.shape[0], -1)[:, 0])
        return (
            f"ShapleyResult(method={self.method!r}, values=[{vals}], "
            f"n_evaluations={self.n_evaluations})"
        )


def _as_vector(value: GameValue, shape_seen: list) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu", torch.float64)
    else:
        t = torch.as_tensor(value, dtype=torch.float64)
    if t.ndim > 1:
        raise ValueError(
            f"The game returned a value of shape {tuple(t.shape)}; return a number or a 1-D vector."
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError("The game returned a non-finite value (NaN or inf); check the value function.")
    if not shape_seen:
        shape_seen.append(tuple(t.shape))
    elif tuple(t.shape) != shape_seen[0]:
        raise ValueError(
            "The game returned values of different shapes for different coalitions "
            f"({shape_seen[0]} and {tuple(t.shape)})."
        )
    return t.reshape(-1)


def shapley_values(
    game: Callable[[frozenset], GameValue],
    n_players: int,
    *,
    method: str = "auto",
    n_permutations: int = 200,
    seed: int = 0,
    progress: bool | None = None,
) -> ShapleyResult:
    """Shapley values of a cooperative game.

    Parameters
    ----------
    game
        ``game(coalition)`` with ``coalition`` a ``frozenset`` of player indices in ``range(n_players)``;
        returns a number or a 1-D tensor/array (a vector-valued game, solved component-wise). Called
        at most once per distinct coalition.
    n_players
        Number of players (≥ 1).
    method
        ``"exact"`` (all ``2**n`` coalitions), ``"permutation"`` (antithetic permutation sampling, see
        the module notes) or ``"auto"`` (exact up to 10 players).
    n_permutations
        Orders sampled by ``"permutation"`` (rounded up to an even number: each order and its reverse).
    seed
        Seeds the sampled orders (a private generator; the global RNG is not touched).
    progress
        A progress bar over coalitions / orders: ``None`` (default) once the work has run 2 s; ``True``:
        always; ``False``: never.

    Returns
    -------
    ShapleyResult
        ``.values`` of shape ``(n_players,)`` (or ``(n_players, k)``), ``.stderr``, ``.total`` …

    Examples
    --------
    A glove game: player 0 owns a left glove, players 1 and 2 a right glove each; a pair is worth 1.

    >>> from nbexplain.core.complexity.shapley import shapley_values
    >>> v = lambda s: float(0 in s and (1 in s or 2 in s))
    >>> shapley_values(v, 3).values.tolist()  # doctest: +ELLIPSIS
    [0.666..., 0.166..., 0.166...]
    """
    n = check_positive_int(n_players, "n_players")
    check_choice(method, "method", ("auto", "exact", "permutation"))
    n_permutations = check_positive_int(n_permutations, "n_permutations")
    progress = check_progress(progress)
    if not callable(game):
        raise TypeError(f"`game` must be callable as game(frozenset_of_players), got {type(game).__name__}.")
    if method == "auto":
        method = "exact" if n <= EXACT_LIMIT else "permutation"
    if method == "exact" and n > 20:
        raise ValueError(
            f"method='exact' with {n} players needs 2**{n} game evaluations; use method='permutation'."
        )

    cache: dict[frozenset, torch.Tensor] = {}
    shape_seen: list = []

    def v(coalition: Iterable[int]) -> torch.Tensor:
        key = frozenset(coalition)
        if key not in cache:
            cache[key] = _as_vector(game(key), shape_seen)
        return cache[key]

    if method == "exact":
        fact = [math.factorial(k) for k in range(n + 1)]
        weights = [fact[s] * fact[n - s - 1] / fact[n] for s in range(n)]
        bar = progress_bar(total=2**n, desc="Shapley (exact)", progress=progress)
        for size in range(n + 1):
            for coal in combinations(range(n), size):
                v(coal)
                bar.update(1)
        bar.close()
        empty = v(())
        phi = torch.zeros(n, empty.numel(), dtype=torch.float64)
        for coal_set, val in cache.items():
            for i in range(n):
                if i in coal_set:
                    phi[i] += weights[len(coal_set) - 1] * (val - cache[coal_set - {i}])
        stderr = torch.zeros_like(phi)
        n_perm = 0
    else:
        gen = torch.Generator().manual_seed(int(seed))
        n_perm = n_permutations + (n_permutations % 2)
        empty = v(())
        sums = torch.zeros(n, empty.numel(), dtype=torch.float64)
        sq = torch.zeros_like(sums)
        bar = progress_bar(total=n_perm, desc="Shapley (sampled)", progress=progress)
        for _ in range(n_perm // 2):
            order = torch.randperm(n, generator=gen).tolist()
            pair = torch.zeros_like(sums)
            for perm in (order, order[::-1]):
                prev, members = empty, []
                for i in perm:
                    members.append(i)
                    cur = v(members)
                    pair[i] += cur - prev
                    prev = cur
                bar.update(1)
            # the antithetic pair is one sample of (marginal(order) + marginal(reverse)) / 2
            sums += pair / 2
            sq += (pair / 2) ** 2
        bar.close()
        m = n_perm // 2
        phi = sums / m
        var = (sq / m - phi**2).clamp_min(0.0) * (m / max(m - 1, 1))
        stderr = (var / m).sqrt()
    full = v(range(n))
    if shape_seen[0] == ():
        phi, stderr, empty_out, full_out = phi[:, 0], stderr[:, 0], empty[0], full[0]
    else:
        empty_out, full_out = empty, full
    return ShapleyResult(
        values=phi,
        stderr=stderr,
        method=method,
        n_evaluations=len(cache),
        empty=empty_out,
        full=full_out,
        n_permutations=n_perm,
    )
