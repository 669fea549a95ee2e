"""The paper's player model (SPEC §2): P(success) = σ(μ + a_player − b_image − γ·t − φ·k).

t is the time used on the image (seconds), k the image's position in the session
(fatigue). Fitted by maximum likelihood with an L2 (Gaussian) prior on the
abilities a and difficulties b (and a very weak one on γ, φ) — the prior makes the model identifiable and keeps
players with few images near the mean. The design is a sparse matrix (one
column per player, one per image), so thousands of players fit in a second;
standard errors come from the inverse Hessian of the penalised log-likelihood.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, sparse
from scipy.sparse import linalg as splinalg
from scipy.special import expit


@dataclass
class PlayerModelFit:
    """μ and per-player abilities (μ + a), per-image difficulties b, γ, φ — each with a standard error."""

    intercept: float
    ability: np.ndarray          # (P,) μ + a_p
    ability_se: np.ndarray
    difficulty: np.ndarray       # (I,) b_i
    difficulty_se: np.ndarray
    gamma: float                 # per second
    gamma_se: float
    phi: float                   # per position
    phi_se: float
    log_likelihood: float
    n_obs: int
    converged: bool
    se_exact: bool               # False when the Hessian was too large to invert and diag(H)^-1/2 was used


def _design(player: np.ndarray, image: np.ndarray, t: np.ndarray, k: np.ndarray, P: int, I: int) -> sparse.csr_matrix:
    n = player.size
    rows = np.repeat(np.arange(n), 5)
    cols = np.stack([np.zeros(n, int), 1 + player, 1 + P + image, np.full(n, 1 + P + I), np.full(n, 2 + P + I)], 1).ravel()
    vals = np.stack([np.ones(n), np.ones(n), -np.ones(n), -t, -k], 1).ravel()
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n, P + I + 3))


def fit_player_model(
    player: np.ndarray,
    image: np.ndarray,
    t: np.ndarray,
    k: np.ndarray,
    success: np.ndarray,
    n_players: int | None = None,
    n_images: int | None = None,
    l2: float = 1.0,
    l2_effects: float = 0.01,
    max_dense_params: int = 4000,
) -> PlayerModelFit:
    """Maximum a-posteriori fit with L-BFGS-B on the exact gradient; SEs from the Hessian."""
    player = np.asarray(player, int)
    image = np.asarray(image, int)
    y = np.asarray(success, float)
    P = int(n_players if n_players is not None else player.max() + 1)
    I = int(n_images if n_images is not None else image.max() + 1)
    t = np.asarray(t, float)
    k = np.asarray(k, float)
    t_scale = float(t.std()) or 1.0
    k_scale = float(k.std()) or 1.0
    X = _design(player, image, t / t_scale, k / k_scale, P, I)
    penalty = np.zeros(P + I + 3)
    penalty[1: 1 + P + I] = l2
    # a weak prior on the standardised γ and φ keeps them finite when the data separate
    # (e.g. a flag ends the image at once, so a short time always goes with success)
    penalty[-2:] = l2_effects

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = X @ theta
        ll = np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * np.sum(penalty * theta**2)
        grad = X.T @ (expit(eta) - y) + penalty * theta
        return float(ll), grad

    res = optimize.minimize(nll, np.zeros(P + I + 3), jac=True, method="L-BFGS-B",
                            options={"maxiter": 2000, "gtol": 1e-6})
    theta = res.x
    p = expit(X @ theta)
    W = sparse.diags(p * (1 - p))
    H = (X.T @ W @ X + sparse.diags(penalty)).tocsc()
    n_par = P + I + 3
    if n_par <= max_dense_params:
        cov = np.linalg.pinv(H.toarray())
        cov_diag = np.diag(cov)
        exact = True
        # Var(μ + a_p) needs the covariance of μ and a_p too
        ab_var = cov[0, 0] + np.diag(cov)[1: 1 + P] + 2 * cov[0, 1: 1 + P]
    else:
        lu = splinalg.splu(H)
        cov_diag = 1.0 / H.diagonal()
        for j in (0, n_par - 2, n_par - 1):  # exact for μ, γ, φ
            e = np.zeros(n_par)
            e[j] = 1.0
            cov_diag[j] = lu.solve(e)[j]
        ab_var = cov_diag[0] + cov_diag[1: 1 + P]
        exact = False
    se = np.sqrt(np.maximum(cov_diag, 0.0))
    return PlayerModelFit(
        intercept=float(theta[0]),
        ability=theta[0] + theta[1: 1 + P],
        ability_se=np.sqrt(np.maximum(ab_var, 0.0)),
        difficulty=theta[1 + P: 1 + P + I],
        difficulty_se=se[1 + P: 1 + P + I],
        gamma=float(theta[-2] / t_scale),
        gamma_se=float(se[-2] / t_scale),
        phi=float(theta[-1] / k_scale),
        phi_se=float(se[-1] / k_scale),
        log_likelihood=float(-np.sum(np.logaddexp(0.0, X @ theta) - y * (X @ theta))),
        n_obs=int(y.size),
        converged=bool(res.success),
        se_exact=exact,
    )


def plot_player_model(fit: PlayerModelFit, path: Path, labels: list[str] | None = None) -> Path:
    """Abilities with ±1.96 SE bars (sorted) and the difficulty histogram, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(fit.ability)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.errorbar(np.arange(order.size), fit.ability[order], yerr=1.96 * fit.ability_se[order], fmt="o", ms=3,
                 elinewidth=0.6)
    ax1.set_xlabel("player (sorted)")
    ax1.set_ylabel("ability μ + a (logit)")
    ax1.set_title(f"abilities; γ={fit.gamma:.3f}±{fit.gamma_se:.3f}/s, φ={fit.phi:.3f}±{fit.phi_se:.3f}")
    ax2.hist(fit.difficulty, bins=30)
    ax2.set_xlabel("image difficulty b (logit)")
    ax2.set_ylabel("images")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
