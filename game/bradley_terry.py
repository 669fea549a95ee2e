"""Bradley–Terry scores of duel items with bootstrap intervals (SPEC §3.4: "rank items with a
Bradley–Terry model").

P(i beats j) = σ(θ_i − θ_j). The scores θ maximise the (optionally weighted) log-likelihood
of the observed choices with an L2 penalty (a N(0, 5) prior on each score), which keeps
them finite when an item never loses, fixes the scale's origin and — duel items are often
compared only a few times — makes the optimiser converge in a few dozen steps; they are reported centred on 0. Weights let
an accurate labeller's choice count more (game/duel_rules.label_weight). Bootstrap 95 %
intervals resample the choices with replacement and refit.

    >>> bt = BradleyTerry().fit(["a", "a", "b", "a"], ["b", "c", "c", "c"])
    >>> bt.items_[int(bt.scores_.argmax())]
    'a'
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import minimize


class BradleyTerry:
    """sklearn-style: `fit(winners, losers, weights)` sets `items_`, `scores_` (centred log-strengths)
    and `index_` ({item: position}); `bootstrap(...)` adds `ci_low_` and `ci_high_`."""

    def __init__(self, l2: float = 0.1) -> None:
        self.l2 = l2

    def _solve(self, w_idx: np.ndarray, l_idx: np.ndarray, weights: np.ndarray, n: int,
               start: np.ndarray | None = None) -> np.ndarray:
        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            d = theta[w_idx] - theta[l_idx]
            loss = float(np.sum(weights * np.logaddexp(0.0, -d)) + self.l2 * theta @ theta)
            g = -weights / (1.0 + np.exp(d))          # d loss / d d
            grad = np.bincount(w_idx, g, minlength=n) - np.bincount(l_idx, g, minlength=n)
            return loss, grad + 2 * self.l2 * theta

        result = minimize(objective, np.zeros(n) if start is None else start, jac=True, method="L-BFGS-B")
        return result.x - result.x.mean()

    def fit(self, winners: Sequence[str], losers: Sequence[str], weights: Sequence[float] | None = None
            ) -> "BradleyTerry":
        if len(winners) != len(losers):
            raise ValueError("winners and losers must have the same length")
        self.items_ = sorted(set(winners) | set(losers))
        self.index_ = {item: i for i, item in enumerate(self.items_)}
        self._w = np.array([self.index_[x] for x in winners], dtype=int)
        self._l = np.array([self.index_[x] for x in losers], dtype=int)
        self._weights = np.ones(len(self._w)) if weights is None else np.asarray(weights, dtype=float)
        self.scores_ = (self._solve(self._w, self._l, self._weights, len(self.items_))
                        if self.items_ else np.zeros(0))
        return self

    def bootstrap(self, n_boot: int = 200, seed: int = 0, level: float = 0.95,
                  progress: Callable[[int], None] | None = None) -> "BradleyTerry":
        """Percentile intervals of every item's score over `n_boot` resamples of the choices
        (`progress(done)` after each, for a progress bar)."""
        rng = np.random.default_rng(seed)
        m, n = len(self._w), len(self.items_)
        draws = np.empty((n_boot, n))
        for b in range(n_boot):
            pick = rng.integers(0, m, m)
            draws[b] = self._solve(self._w[pick], self._l[pick], self._weights[pick], n)
            if progress is not None:
                progress(b + 1)
        tail = (1 - level) / 2 * 100
        self.ci_low_, self.ci_high_ = np.percentile(draws, [tail, 100 - tail], axis=0)
        return self
