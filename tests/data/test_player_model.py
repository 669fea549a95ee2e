"""The paper's logistic player model recovers known parameters, with honest standard errors."""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from game.player_model import fit_player_model, plot_player_model


def test_recovers_abilities_gamma_phi(tmp_path):
    rng = np.random.default_rng(0)
    P, I, N = 150, 300, 15_000
    a = rng.normal(0, 1, P)
    b = rng.normal(0, 0.7, I)
    p = rng.integers(0, P, N)
    i = rng.integers(0, I, N)
    t = rng.uniform(5, 120, N)
    k = rng.integers(0, 10, N)
    y = rng.random(N) < 1 / (1 + np.exp(-(0.5 + a[p] - b[i] - 0.01 * t - 0.08 * k)))
    fit = fit_player_model(p, i, t, k, y)
    assert fit.converged and fit.se_exact
    assert abs(fit.gamma - 0.01) < 4 * fit.gamma_se
    assert abs(fit.phi - 0.08) < 4 * fit.phi_se
    assert spearmanr(fit.ability, a).statistic > 0.85
    assert (fit.ability_se > 0).all() and (fit.difficulty_se > 0).all()
    png = plot_player_model(fit, tmp_path / "pm.png")
    assert png.stat().st_size > 1000
