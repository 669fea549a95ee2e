"""Bradley–Terry scores (game/bradley_terry.py) against crowd-kit's Bradley–Terry on the same
comparisons, and its bootstrap intervals."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import BradleyTerry as CrowdKitBT
from scipy.stats import spearmanr

from game.bradley_terry import BradleyTerry


def comparisons(seed: int, items: int = 20, n: int = 1500):
    rng = random.Random(seed)
    truth = {f"item{i}": rng.gauss(0, 1.2) for i in range(items)}
    names = list(truth)
    rows = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        p = 1 / (1 + np.exp(-(truth[a] - truth[b])))
        rows.append((a, b, a if rng.random() < p else b))
    return truth, rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_crowd_kit_and_the_truth(seed):
    truth, rows = comparisons(seed)
    winners = [w for a, b, w in rows]
    losers = [b if w == a else a for a, b, w in rows]
    ours = BradleyTerry().fit(winners, losers)
    theirs = CrowdKitBT(n_iter=200).fit(pd.DataFrame(rows, columns=["left", "right", "label"])).scores_
    names = ours.items_
    rho_ck = spearmanr([ours.scores_[ours.index_[x]] for x in names], [theirs[x] for x in names]).statistic
    rho_truth = spearmanr([ours.scores_[ours.index_[x]] for x in names], [truth[x] for x in names]).statistic
    assert rho_ck >= 0.95
    assert rho_truth >= 0.9
    assert abs(ours.scores_.mean()) < 1e-9


def test_weights_count_and_an_unbeaten_item_stays_finite():
    bt = BradleyTerry().fit(["a", "b"], ["b", "a"], weights=[3.0, 1.0])
    assert bt.scores_[bt.index_["a"]] > bt.scores_[bt.index_["b"]]
    never_loses = BradleyTerry().fit(["a"] * 10, ["b"] * 10)
    assert np.isfinite(never_loses.scores_).all() and never_loses.scores_[0] > 0
    with pytest.raises(ValueError):
        BradleyTerry().fit(["a"], [])
    assert BradleyTerry().fit([], []).items_ == []


def test_bootstrap_intervals_cover_the_estimate_and_shrink_with_data():
    truth, rows = comparisons(5, items=6, n=200)
    w = [x[2] for x in rows]
    l_ = [x[1] if x[2] == x[0] else x[0] for x in rows]
    small = BradleyTerry().fit(w, l_).bootstrap(n_boot=25, seed=1)
    assert np.all(small.ci_low_ <= small.scores_ + 1e-9) and np.all(small.scores_ <= small.ci_high_ + 1e-9)
    truth, rows = comparisons(5, items=6, n=2000)
    w = [x[2] for x in rows]
    l_ = [x[1] if x[2] == x[0] else x[0] for x in rows]
    big = BradleyTerry().fit(w, l_).bootstrap(n_boot=25, seed=1)
    assert np.mean(big.ci_high_ - big.ci_low_) < np.mean(small.ci_high_ - small.ci_low_)
