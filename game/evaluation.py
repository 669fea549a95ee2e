"""Which flags become training data (SPEC §2): per-player reliability, the model's
error rate and the posterior of every find — pure, vectorised numpy.

Notation: D ∈ {T, U} image tainted/untainted; M = 1 model answer correct;
H = 1 player says Correct (H = 0 is a *flag*: a Wrong verdict with a correction).

Everything here works on **sufficient statistics**: the likelihood of the
model depends on an answer only through (player, kind, flagged) and, on
untainted images, the π-stratum of the answer. So 1,000,000 answers reduce to
a few count arrays (one `np.bincount` each), the EM runs on those arrays, and
`gap evaluate` can be incremental by adding the counts of new answers.

Kinds of judged answers:
- ``TAINTED``: a tainted answer (on a tainted image) — M = 0 is known → sensitivity s.
- ``HONEST_TAINTED``: an honest answer on a tainted image (reliable pool, M ≈ 1) → false alarms f.
- ``UNTAINTED``: an answer on an untainted image — M is latent; a flag is a *find*.

First pass — EM (Dawid–Skene with gold) with Beta priors: the gold answers feed the
Beta posteriors of s and f (with ``use_untainted`` also the expected counts of the
untainted answers), the latent M of untainted answers is weighted by its posterior, and
the expected mistakes give the stratum error rates π_g (shrunk towards their parent's and
the global π by a couple of pseudo-answers). It decides who is muted.

Posterior of a find: P(M=0 | H=0, D=U) = s·π / (s·π + f·(1−π)), integrated over the
player's posterior of (s, f) — not the formula at plug-in means.

Calibration (why a *joint, nonparametric* prior over (s, f)): a player judges only ≈1
honest answer on a tainted image per session, so f is barely identified by gold alone and
its per-player posterior is mostly prior. The population is a mixture (careful players
with f ≈ 0.03, sloppy ones with f ≈ 0.1, random flaggers with s = f), which one Beta
prior cannot represent: careful players got the pooled f (≈ 0.06–0.09), their finds'
posteriors far too low, sloppy players' too high (measured ECE 0.05–0.14 on experiment
runs). So after the first pass decides who is muted, the second pass fits, by empirical
Bayes over the unmuted players, a discrete prior on a grid of (s, f) atoms (the
nonparametric maximum-likelihood prior of Kiefer–Wolfowitz, fitted by EM together with π;
a little mass is kept on every atom), and each player's posterior over the atoms uses all
their answers: tainted ones (s), honest ones on tainted images (a mixture with the
reliable pool's error rate) and untainted ones (flag probability s·π_g + f·(1−π_g)).
The find posterior is the exact posterior expectation over that grid, averaged over
refits of the population parameters (prior and π) on bootstrap resamples of the players
(`_bootstrap_posteriors`: the point estimates hide a real uncertainty — careful players'
f and the π of a rarely wrong stratum trade off). The stored
(s_alpha, s_beta, f_alpha, f_beta) are the moment-matched Beta approximations of the
marginal posteriors (for the 95% bounds, ranking and peer validation). With
``prior="uniform"`` or ``joint_prior=False`` the literal SPEC form is used: independent
Beta posteriors and the formula at their means (then exact as a posterior predictive,
because the joint is multilinear in independent s, f, π).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special, stats

TAINTED = 0
HONEST_TAINTED = 1
UNTAINTED = 2

STATUS_EXPORT = "export"        # posterior ≥ θ, player trusted: training data
STATUS_BELOW = "below_theta"    # posterior < θ
STATUS_MUTED = "muted"          # player muted (anti-gaming); flag kept, never exported
STATUS_HELD = "held"            # gold gating: new player without enough tainted observations


@dataclass(frozen=True)
class EvalConfig:
    """Knobs of the evaluation; defaults are the product's (θ comes from settings.theta)."""

    theta: float = 0.8
    prior: str = "eb"                 # "eb" (empirical Bayes across players) or "uniform" (Beta(1,1), SPEC literally)
    use_untainted: bool = False        # Beta-prior EM: also let untainted answers inform s and f (biased π down
    #                                    with one Beta prior for f; the joint fit below always uses them)
    pi_strength: float = 2.0           # pseudo-answers shrinking each stratum's π towards its parent's
    # (20 pulled a 37-answer stratum with π ≈ 0.9 — text on simple images — down to 0.4)
    joint_prior: bool = True           # second pass: nonparametric joint (s, f) prior, every answer informs s, f
    grid: int = 30                     # atoms per axis of the (s, f) grid
    grid_floor: float = 0.01           # prior mass spread evenly over all atoms (no atom is impossible)
    joint_min_players: int = 5         # fewer unmuted players: Beta priors only
    joint_tol: float = 1e-4            # convergence of the joint fit (π and posterior means)
    joint_max_players: int = 300       # the joint prior is fitted on at most this many trusted players
    bootstrap: int = 16                # refits on resampled players averaged into the posteriors (0: point estimates)
    bootstrap_max_players: int = 500   # more unmuted players than this: the population is known well enough
    bootstrap_seed: int = 0
    mute_min_obs: int = 10             # tainted answers judged before the s rule, untainted ones before the flag-rate rule
    mute_s_lower: float = 0.4          # mute when the lower 95% bound of s is below this …
    mute_min_f_obs: int = 3            # (honest answers on tainted images are scarce: ≈1 per session)
    mute_f_lower: float = 0.2          # … or the lower 95% bound of f is above this
    mute_overflag_z: float = 3.5       # mute when untainted flags exceed what s, f, π predict by this many SDs
    gold_min: int = 8                  # tainted answers judged before a new player's finds count
    f_prior_by_s: bool = True          # fit f's prior separately for players above/below the median s
    gold_min_accuracy: float = 0.95    # gold only from tainted images measured at least this accurate
    crowd_threshold: float = 0.9       # an unmeasured image joins the reliable pool when the crowd's lower
    crowd_quantile: float = 0.05       # credible bound (this quantile) of the model's accuracy passes this
    max_iter: int = 200
    tol: float = 1e-9


@dataclass
class Counts:
    """Sufficient statistics. ``gold[p, kind, flagged]`` for kind ∈ {TAINTED, HONEST_TAINTED};
    ``untainted[p, g, flagged]`` for answers on untainted images in π-stratum g."""

    gold: np.ndarray
    untainted: np.ndarray

    @classmethod
    def zeros(cls, n_players: int, n_groups: int) -> "Counts":
        return cls(np.zeros((n_players, 2, 2)), np.zeros((n_players, n_groups, 2)))

    @classmethod
    def from_answers(
        cls,
        player: np.ndarray,
        kind: np.ndarray,
        flagged: np.ndarray,
        group: np.ndarray | None = None,
        n_players: int | None = None,
        n_groups: int | None = None,
    ) -> "Counts":
        """Counts from per-answer arrays (player index, kind, flagged, π-stratum index)."""
        player = np.asarray(player, dtype=np.int64)
        kind = np.asarray(kind, dtype=np.int64)
        flagged = np.asarray(flagged, dtype=np.int64)
        group = np.zeros_like(player) if group is None else np.asarray(group, dtype=np.int64)
        n_players = int(n_players if n_players is not None else (player.max() + 1 if player.size else 0))
        n_groups = int(n_groups if n_groups is not None else (group.max() + 1 if group.size else 1))
        gold_mask = kind != UNTAINTED
        g_idx = (player[gold_mask] * 2 + kind[gold_mask]) * 2 + flagged[gold_mask]
        gold = np.bincount(g_idx, minlength=n_players * 4).astype(float).reshape(n_players, 2, 2)
        um = ~gold_mask
        u_idx = (player[um] * n_groups + group[um]) * 2 + flagged[um]
        unt = np.bincount(u_idx, minlength=n_players * n_groups * 2).astype(float).reshape(n_players, n_groups, 2)
        return cls(gold, unt)

    @property
    def n_players(self) -> int:
        return self.gold.shape[0]

    @property
    def n_groups(self) -> int:
        return self.untainted.shape[1]

    def resized(self, n_players: int, n_groups: int) -> "Counts":
        """A copy padded with zeros to at least the given shape (new players / strata)."""
        P, G = max(n_players, self.n_players), max(n_groups, self.n_groups)
        gold = np.zeros((P, 2, 2))
        gold[: self.n_players] = self.gold
        unt = np.zeros((P, G, 2))
        unt[: self.n_players, : self.n_groups] = self.untainted
        return Counts(gold, unt)

    def __add__(self, other: "Counts") -> "Counts":
        P, G = max(self.n_players, other.n_players), max(self.n_groups, other.n_groups)
        a, b = self.resized(P, G), other.resized(P, G)
        return Counts(a.gold + b.gold, a.untainted + b.untainted)


@dataclass
class EvalResult:
    """Estimates per player (arrays of length P), per stratum (length G) and per (player, stratum) cell."""

    s_alpha: np.ndarray
    s_beta: np.ndarray
    f_alpha: np.ndarray
    f_beta: np.ndarray
    pi: np.ndarray                      # (G,) posterior mean of P(M=0 | D=U) per stratum
    pi_global: float
    find_posterior: np.ndarray          # (P, G) P(M=0 | H=0, D=U)
    pass_posterior: np.ndarray          # (P, G) P(M=0 | H=1, D=U): a Correct verdict that is still a mistake
    muted: np.ndarray                   # (P,) bool
    gated: np.ndarray                   # (P,) bool: finds held (gold gating)
    n_tainted: np.ndarray               # (P,) tainted answers judged
    n_honest_tainted: np.ndarray        # (P,) honest answers on tainted images judged
    prior_s: tuple[float, float]
    prior_f: tuple[float, float]
    iterations: int
    config: EvalConfig = field(default_factory=EvalConfig)
    joint_prior: bool = False           # unmuted players' posteriors come from the joint (s, f) grid prior

    @property
    def s_mean(self) -> np.ndarray:
        return self.s_alpha / (self.s_alpha + self.s_beta)

    @property
    def f_mean(self) -> np.ndarray:
        return self.f_alpha / (self.f_alpha + self.f_beta)

    @property
    def s_lower(self) -> np.ndarray:
        """Lower 95% (one-sided 2.5%) bound of s."""
        return stats.beta.ppf(0.025, self.s_alpha, self.s_beta)

    @property
    def f_upper(self) -> np.ndarray:
        return stats.beta.ppf(0.975, self.f_alpha, self.f_beta)

    @property
    def ability(self) -> np.ndarray:
        """A single reliability score for ranking players: Youden's J = s − f (0 for a random flagger)."""
        return self.s_mean - self.f_mean

    def status(self, player: np.ndarray, group: np.ndarray, theta: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior and export status of finds given by (player index, stratum index) arrays."""
        theta = self.config.theta if theta is None else theta
        player = np.asarray(player, dtype=np.int64)
        group = np.asarray(group, dtype=np.int64)
        post = self.find_posterior[player, group]
        status = np.where(post >= theta, STATUS_EXPORT, STATUS_BELOW).astype(object)
        status[self.gated[player]] = STATUS_HELD
        status[self.muted[player]] = STATUS_MUTED
        return post, status


def fit_beta_prior(k: np.ndarray, n: np.ndarray, min_players: int = 3) -> tuple[float, float]:
    """Empirical-Bayes Beta(α, β) prior: maximise the beta-binomial marginal likelihood of
    every player's (k flags of n) (with a weak hyperprior on α+β); falls back to Beta(1, 1)
    with too few players.
    Counts may be fractional (the gammaln form does not need integers)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    use = n > 0
    if use.sum() < min_players:
        return 1.0, 1.0
    k, n = k[use], n[use]

    def nll(x: np.ndarray) -> float:
        a, b = np.exp(x)
        # a weak hyperprior on the concentration log(α+β) ~ N(log 2, 1.5²) keeps the prior from
        # swinging wildly when only a handful of players have a few observations each
        hyper = 0.5 * ((np.log(a + b) - np.log(2.0)) / 1.5) ** 2
        return -float(np.sum(special.betaln(k + a, n - k + b) - special.betaln(a, b))) + hyper

    p = np.clip(k.sum() / n.sum(), 0.02, 0.98)
    x0 = np.log([2 * p + 0.5, 2 * (1 - p) + 0.5])
    res = optimize.minimize(nll, x0, method="L-BFGS-B", bounds=[(np.log(0.2), np.log(500.0))] * 2)
    a, b = np.exp(res.x)
    return float(a), float(b)


@dataclass
class _Fit:
    s_a: np.ndarray
    s_b: np.ndarray
    f_a: np.ndarray
    f_b: np.ndarray
    pi: np.ndarray
    pi_global: float
    prior_s: tuple[float, float]
    prior_f: tuple[float, float]
    iterations: int


def _f_prior(k: np.ndarray, n: np.ndarray, trusted: np.ndarray, f_group: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Per-player Beta prior of f: fitted within each `f_group` of trusted players (falling back
    to all trusted players for a group with too few), plus the pooled prior for reporting."""
    pooled = fit_beta_prior(k[trusted], n[trusted])
    a = np.full(k.shape, pooled[0])
    b = np.full(k.shape, pooled[1])
    if f_group is not None:
        for g in np.unique(f_group):
            members = f_group == g
            sel = members & trusted & (n > 0)
            if sel.sum() >= 5:
                ga, gb = fit_beta_prior(k[sel], n[sel])
                a[members], b[members] = ga, gb
    return a, b, pooled


def _em(counts: Counts, config: EvalConfig, pr: float, trusted: np.ndarray, parent: np.ndarray,
        f_group: np.ndarray | None = None) -> _Fit:
    """One EM fit. Priors (empirical Bayes) and π are estimated from the `trusted` players only;
    every player's s and f are then estimated under those. With `f_group`, f's prior is fitted
    per group (players who catch more tainted answers also raise fewer false alarms)."""
    gold, unt = counts.gold, counts.untainted
    P, G = counts.n_players, counts.n_groups
    ks, ns = gold[:, TAINTED, 1], gold[:, TAINTED].sum(axis=1)
    kf, nf = gold[:, HONEST_TAINTED, 1], gold[:, HONEST_TAINTED].sum(axis=1)
    if config.prior == "eb":
        prior_s = fit_beta_prior(ks[trusted], ns[trusted])
        fa0, fb0, prior_f = _f_prior(kf, nf, trusted, f_group)
    elif config.prior == "uniform":
        prior_s = prior_f = (1.0, 1.0)
        fa0, fb0 = np.ones(P), np.ones(P)
    else:
        raise ValueError(f"unknown prior {config.prior!r}")
    u_flag = unt[:, :, 1]          # (P, G)
    u_pass = unt[:, :, 0]
    tw = trusted.astype(float)[:, None]
    n_g = (unt.sum(axis=2) * tw).sum(axis=0)     # (G,) trusted answers per stratum
    s = np.full(P, prior_s[0] / sum(prior_s))
    f = fa0 / (fa0 + fb0)
    # π starts from the method of moments: flag rate = f + π (s − f)
    rate = (u_flag * tw).sum() / max((unt.sum(axis=2) * tw).sum(), 1.0)
    s_mean, f_mean = (float(s.mean()), float(f.mean())) if P else (prior_s[0] / sum(prior_s), 0.0)
    pi_global = float(np.clip((rate - f_mean) / max(s_mean - f_mean, 1e-3), 0.01, 0.99))
    pi = np.full(G, pi_global)
    it = 0
    for it in range(1, config.max_iter + 1):
        # E-step: posterior P(M=0) of the untainted cells, per (player, stratum, flagged)
        sp, fp = s[:, None] * pi[None, :], f[:, None] * (1 - pi[None, :])
        w_flag = sp / np.maximum(sp + fp, 1e-300)
        sp0, fp0 = (1 - s[:, None]) * pi[None, :], (1 - f[:, None]) * (1 - pi[None, :])
        w_pass = sp0 / np.maximum(sp0 + fp0, 1e-300)
        # honest answers on tainted images: wrong with the reliable pool's error rate
        r1 = s * pr / np.maximum(s * pr + f * (1 - pr), 1e-300)
        r0 = (1 - s) * pr / np.maximum((1 - s) * pr + (1 - f) * (1 - pr), 1e-300)
        if config.prior == "eb" and pr > 0 and it <= 50 and it % 5 == 1:
            # the raw honest-on-tainted counts include true mistakes: refit f's prior on the expected
            # false alarms instead (a few times; it settles with the EM)
            fa0, fb0, prior_f = _f_prior((1 - r1) * kf, (1 - r1) * kf + (1 - r0) * (nf - kf), trusted, f_group)
        # M-step (posterior means of the Beta posteriors)
        s_a = prior_s[0] + ks + r1 * kf
        s_b = prior_s[1] + ns - ks + r0 * (nf - kf)
        f_a = fa0 + (1 - r1) * kf
        f_b = fb0 + (1 - r0) * (nf - kf)
        if config.use_untainted:
            s_a = s_a + (w_flag * u_flag).sum(axis=1)
            s_b = s_b + (w_pass * u_pass).sum(axis=1)
            f_a = f_a + ((1 - w_flag) * u_flag).sum(axis=1)
            f_b = f_b + ((1 - w_pass) * u_pass).sum(axis=1)
        m0 = ((w_flag * u_flag + w_pass * u_pass) * tw).sum(axis=0)  # expected mistakes per stratum
        new_pi, new_global = _shrink_pi(m0, n_g, parent, config.pi_strength)
        new_s, new_f = s_a / (s_a + s_b), f_a / (f_a + f_b)
        delta = max(np.max(np.abs(new_pi - pi), initial=0.0), np.max(np.abs(new_s - s), initial=0.0),
                    np.max(np.abs(new_f - f), initial=0.0))
        s, f, pi, pi_global = new_s, new_f, new_pi, new_global
        if delta < config.tol:
            break
    return _Fit(s_a, s_b, f_a, f_b, pi, pi_global, prior_s, prior_f, it)


def _shrink_pi(m0: np.ndarray, n_g: np.ndarray, parent: np.ndarray, strength: float) -> tuple[np.ndarray, float]:
    """π per stratum from expected mistakes `m0` of `n_g` answers, with two-level shrinkage:
    stratum → its parent (e.g. the image complexity) → global."""
    glob = float((m0.sum() + 1.0) / (n_g.sum() + 2.0))
    n_parent = np.bincount(parent, weights=n_g)
    m_parent = np.bincount(parent, weights=m0)
    pi_parent = (m_parent + strength * glob) / (n_parent + strength)
    pi = (m0 + strength * pi_parent[parent]) / (n_g + strength)
    return np.clip(pi, 1e-6, 1 - 1e-6), glob


@dataclass
class _JointFit:
    s_mean: np.ndarray
    s_var: np.ndarray
    f_mean: np.ndarray
    f_var: np.ndarray
    pi: np.ndarray
    pi_global: float
    find_post: np.ndarray
    pass_post: np.ndarray
    prior_s: tuple[float, float]
    prior_f: tuple[float, float]
    iterations: int
    weights: np.ndarray                 # (A,) the fitted prior over the grid's atoms


def _beta_moments(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Beta(α, β) with this mean and variance (the variance capped below mean·(1 − mean))."""
    mean = np.clip(mean, 1e-6, 1 - 1e-6)
    conc = np.maximum(mean * (1 - mean) / np.maximum(var, 1e-12) - 1.0, 1e-3)
    return mean * conc, (1 - mean) * conc


class _Grid:
    """The (s, f) atoms and every player's log-likelihood at each atom (float32: P × A arrays are
    the cost of the joint fit)."""

    def __init__(self, counts: Counts, n: int, pr: float):
        x = (np.arange(n) + 0.5) / n
        self.s, self.f = (a.ravel() for a in np.meshgrid(x, x, indexing="ij"))      # (A,) atoms
        gold = counts.gold
        ks, ns = gold[:, TAINTED, 1], gold[:, TAINTED].sum(axis=1)
        kf, nf = gold[:, HONEST_TAINTED, 1], gold[:, HONEST_TAINTED].sum(axis=1)
        p_honest = pr * self.s + (1 - pr) * self.f     # an honest answer on a tainted image is wrong with rate pr
        self.ll_gold = (np.outer(ks, np.log(self.s)) + np.outer(ns - ks, np.log1p(-self.s))
                        + np.outer(kf, np.log(p_honest)) + np.outer(nf - kf, np.log1p(-p_honest))).astype(np.float32)
        self.u_flag = counts.untainted[:, :, 1].astype(np.float32)
        self.u_pass = counts.untainted[:, :, 0].astype(np.float32)

    def take(self, rows: np.ndarray) -> "_Grid":
        """The same grid for a resample of the players (rows may repeat)."""
        out = object.__new__(_Grid)
        out.s, out.f = self.s, self.f
        out.ll_gold, out.u_flag, out.u_pass = self.ll_gold[rows], self.u_flag[rows], self.u_pass[rows]
        return out

    def joint(self, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(G, A) tables P(M=0, H=0 | z), P(M=1, H=0 | z), P(M=0, H=1 | z), P(M=1, H=1 | z)."""
        return (np.outer(pi, self.s), np.outer(1 - pi, self.f), np.outer(pi, 1 - self.s), np.outer(1 - pi, 1 - self.f))

    def posterior(self, rows: np.ndarray | slice, weights: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """E-step: the players' posteriors over the atoms, from all their answers."""
        sp, fp, sp0, fp0 = self.joint(pi)
        ll = (self.ll_gold[rows] + self.u_flag[rows] @ np.log(sp + fp).astype(np.float32)
              + self.u_pass[rows] @ np.log(sp0 + fp0).astype(np.float32))
        ll -= ll.max(axis=1, keepdims=True)
        np.exp(ll, out=ll)
        ll *= weights.astype(np.float32)
        ll /= ll.sum(axis=1, keepdims=True)
        return ll

    def mistakes(self, q: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P, G) posteriors P(M=0 | flag) and P(M=0 | pass) of untainted answers given all the data."""
        sp, fp, sp0, fp0 = self.joint(pi)
        return (q @ (sp / (sp + fp)).T.astype(np.float32)).astype(float), (q @ (sp0 / (sp0 + fp0)).T.astype(np.float32)).astype(float)


def _joint_fit(counts: Counts, config: EvalConfig, pr: float, trusted: np.ndarray, parent: np.ndarray,
               pi0: np.ndarray, weights0: np.ndarray | None = None, grid: "_Grid | None" = None) -> _JointFit:
    """EM for the nonparametric joint prior of (s, f) on a grid and π (see the module docstring).

    Latent per player: the atom z = (s, f); per untainted answer: M. The E-step gives each
    player's posterior over atoms from all their answers; the M-step sets the prior weights to
    the trusted players' average posterior (NPMLE, plus an even floor) and π to the expected
    mistakes of the trusted players' untainted answers (shrunk as in `_em`).

    With very many players the prior is a population quantity that a few thousand of them
    pin down: the EM runs on an evenly spaced subset of at most `joint_max_players` trusted
    players, then one more step over everyone refits π from all answers, and every player's
    posterior comes from that."""
    grid = _Grid(counts, config.grid, pr) if grid is None else grid
    n_atoms = grid.s.size
    trusted_idx = np.flatnonzero(trusted)
    if trusted_idx.size > config.joint_max_players:
        trusted_idx = trusted_idx[np.linspace(0, trusted_idx.size - 1, config.joint_max_players).astype(np.int64)]
    unt = counts.untainted

    def update_pi(rows: np.ndarray, q: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, float]:
        w_flag, w_pass = grid.mistakes(q, pi)
        m0 = (w_flag * unt[rows, :, 1] + w_pass * unt[rows, :, 0]).sum(axis=0)
        return _shrink_pi(m0, unt[rows].sum(axis=2).sum(axis=0), parent, config.pi_strength)

    def em_step(weights: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = grid.posterior(trusted_idx, weights, pi)
        new_w = (1 - config.grid_floor) * q.mean(axis=0, dtype=float) + config.grid_floor / n_atoms
        new_pi, _ = update_pi(trusted_idx, q, pi)
        return new_w, new_pi, np.stack([q @ s32, q @ f32])

    def project(weights: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = np.maximum(weights, config.grid_floor / n_atoms)
        return weights / weights.sum(), np.clip(pi, 1e-6, 1 - 1e-6)

    s32, f32 = grid.s.astype(np.float32), grid.f.astype(np.float32)
    weights = np.full(n_atoms, 1.0 / n_atoms) if weights0 is None else np.asarray(weights0, float)
    pi = np.clip(np.asarray(pi0, float), 1e-6, 1 - 1e-6)
    means = np.zeros((2, trusted_idx.size))
    it = 0
    # EM accelerated by SQUAREM (Varadhan & Roland 2008): two EM steps give a direction and a step
    # length; the extrapolated point (kept a distribution, π in (0, 1)) is then stabilised by an
    # EM step. The NPMLE weights alone would need hundreds of plain EM steps.
    while it < config.max_iter:
        w1, pi1, m1 = em_step(weights, pi)
        w2, pi2, m2 = em_step(w1, pi1)
        it += 2
        delta = max(np.max(np.abs(pi1 - pi), initial=0.0), np.max(np.abs(m1 - means), initial=0.0),
                    np.max(np.abs(m2 - m1), initial=0.0), np.max(np.abs(pi2 - pi1), initial=0.0))
        if delta < config.joint_tol:
            weights, pi, means = w2, pi2, m2
            break
        r = np.concatenate([w1 - weights, pi1 - pi])
        v = np.concatenate([w2 - w1, pi2 - pi1]) - r
        alpha = min(-1.0, -np.sqrt((r @ r) / max(v @ v, 1e-300)))
        ext_w, ext_pi = project(weights - 2 * alpha * (w1 - weights) + alpha ** 2 * (w2 - 2 * w1 + weights),
                                pi - 2 * alpha * (pi1 - pi) + alpha ** 2 * (pi2 - 2 * pi1 + pi))
        weights, pi, means = em_step(ext_w, ext_pi)
        it += 1
    everyone = np.arange(counts.n_players)
    all_trusted = np.flatnonzero(trusted)   # π from every trusted player's answers (a subset fitted the prior)
    pi, pi_global = update_pi(all_trusted, grid.posterior(all_trusted, weights, pi), pi)
    q = grid.posterior(everyone, weights, pi)
    s_mean, f_mean = (q @ grid.s.astype(np.float32)).astype(float), (q @ grid.f.astype(np.float32)).astype(float)
    s_var = np.maximum((q @ (grid.s ** 2).astype(np.float32)).astype(float) - s_mean ** 2, 0.0)
    f_var = np.maximum((q @ (grid.f ** 2).astype(np.float32)).astype(float) - f_mean ** 2, 0.0)
    find_post, pass_post = grid.mistakes(q, pi)
    prior_s = _beta_moments(np.array(weights @ grid.s), np.array(weights @ grid.s ** 2 - (weights @ grid.s) ** 2))
    prior_f = _beta_moments(np.array(weights @ grid.f), np.array(weights @ grid.f ** 2 - (weights @ grid.f) ** 2))
    return _JointFit(s_mean=s_mean, s_var=s_var, f_mean=f_mean, f_var=f_var, pi=pi, pi_global=pi_global,
                     find_post=find_post, pass_post=pass_post,
                     prior_s=(float(prior_s[0]), float(prior_s[1])), prior_f=(float(prior_f[0]), float(prior_f[1])),
                     iterations=it, weights=weights)


def _bootstrap_posteriors(counts: Counts, config: EvalConfig, pr: float, trusted: np.ndarray, parent: np.ndarray,
                          joint: _JointFit) -> tuple[np.ndarray, np.ndarray]:
    """Find and pass posteriors averaged over refits of the population parameters (the joint
    prior and π) on bootstrap resamples of the trusted players.

    The EM point estimates ignore how uncertain the population parameters are, and with ≈ 1
    honest answer on a tainted image per session that uncertainty is not small: careful
    players' false-alarm rate and the π of a rarely wrong stratum trade off (a flag on a
    simple image is a false alarm or a rare mistake), so a chance excess of gold false
    alarms drove that π to ≈ 0 and those finds' posteriors to ≈ 0.02 where 0.3 were true
    mistakes. Averaging over resamples integrates over that uncertainty (bagging as an
    approximation of the posterior over the population parameters). With many players the
    uncertainty vanishes and this is skipped (`bootstrap_max_players`)."""
    rng = np.random.default_rng(config.bootstrap_seed)
    grid = _Grid(counts, config.grid, pr)
    idx = np.flatnonzero(trusted)
    everyone = np.arange(counts.n_players)
    find_sum = np.zeros((counts.n_players, counts.n_groups))
    pass_sum = np.zeros_like(find_sum)
    for _ in range(config.bootstrap):
        rows = rng.choice(idx, size=idx.size, replace=True)
        sub = Counts(counts.gold[rows], counts.untainted[rows])
        fit = _joint_fit(sub, config, pr, np.ones(rows.size, dtype=bool), parent, joint.pi, joint.weights,
                         grid=grid.take(rows))
        q = grid.posterior(everyone, fit.weights, fit.pi)
        f_post, p_post = grid.mistakes(q, fit.pi)
        find_sum += f_post
        pass_sum += p_post
    return find_sum / config.bootstrap, pass_sum / config.bootstrap


def _mute(counts: Counts, fit: _Fit, config: EvalConfig) -> np.ndarray:
    """Anti-gaming (SPEC §2): enough observations and (lower 95% bound of s low, or lower 95% bound
    of f high, or far more flags on untainted images than s, f, π predict)."""
    gold, unt = counts.gold, counts.untainted
    ns = gold[:, TAINTED].sum(axis=1)
    nf = gold[:, HONEST_TAINTED].sum(axis=1)
    s = fit.s_a / (fit.s_a + fit.s_b)
    f = fit.f_a / (fit.f_a + fit.f_b)
    s_lo = stats.beta.ppf(0.025, fit.s_a, fit.s_b)
    f_lo = stats.beta.ppf(0.025, fit.f_a, fit.f_b)
    # Spammers flag (nearly) everything; honest answers on tainted images are rare (≈1 per
    # session), so their flag rate on untainted images is checked against the prediction too.
    p_flag = s[:, None] * fit.pi[None, :] + f[:, None] * (1 - fit.pi[None, :])
    n_u = unt.sum(axis=2)
    expected = (n_u * p_flag).sum(axis=1)
    sd = np.sqrt((n_u * p_flag * (1 - p_flag)).sum(axis=1)) + 1e-9
    overflag_z = (unt[:, :, 1].sum(axis=1) - expected) / sd
    return (((ns >= config.mute_min_obs) & (s_lo < config.mute_s_lower))
            | ((nf >= config.mute_min_f_obs) & (f_lo > config.mute_f_lower))
            | ((n_u.sum(axis=1) >= config.mute_min_obs) & (overflag_z > config.mute_overflag_z)))


def evaluate(counts: Counts, config: EvalConfig = EvalConfig(), pi_reliable: float = 0.0,
             group_parent: np.ndarray | None = None) -> EvalResult:
    """Fit s, f (Beta posteriors) and π (per stratum) by EM; return posteriors, muting and gating.

    Two passes: the first fit (everyone) decides who is muted; the second refits the
    empirical-Bayes priors and π on the players that are not muted — the population
    whose finds are exported — so random flaggers and spammers neither drag careful
    players' false-alarm estimates up nor distort π. Then (``joint_prior``, the default
    with ``prior="eb"``) the joint (s, f) grid prior is fitted on those players together
    with π, and their s, f and find posteriors come from it (module docstring: why).
    Muted players keep their first-pass estimates (with the final π).

    `pi_reliable` is the model's measured error rate on the reliable pool (1 − its mean
    accuracy there). Honest answers on tainted images are then not taken as certainly
    right: a flag on one is a false alarm only with posterior probability, so a model
    that is not perfect on its reliable pool does not make careful players look like
    false-alarm raisers. 0 reproduces SPEC §2 literally (M ≈ 1 there).

    `group_parent[g]` names the parent of stratum g (e.g. strata "complex:count" and
    "complex:color" share the parent "complex"): a small stratum's π is shrunk towards
    its parent's, not towards an error rate that mixes easy and hard images."""
    P = counts.n_players
    parent = (np.zeros(counts.n_groups, dtype=np.int64) if group_parent is None
              else np.asarray(group_parent, dtype=np.int64))
    pr = float(np.clip(pi_reliable, 0.0, 0.5))
    everyone = np.ones(P, dtype=bool)
    fit = _em(counts, config, pr, everyone, parent)
    muted = _mute(counts, fit, config)
    s1 = fit.s_a / (fit.s_a + fit.s_b)
    keep = ~muted
    f_group = None
    if config.f_prior_by_s and keep.sum() >= 10:
        f_group = (s1 >= np.median(s1[keep])).astype(np.int64)
    if (muted.any() and keep.sum() >= 3) or f_group is not None:
        second = _em(counts, config, pr, keep, parent, f_group)
        for name in ("s_a", "s_b", "f_a", "f_b"):
            getattr(fit, name)[keep] = getattr(second, name)[keep]
        fit.pi, fit.pi_global, fit.prior_s, fit.prior_f = second.pi, second.pi_global, second.prior_s, second.prior_f
        fit.iterations += second.iterations
    joint = None
    if config.joint_prior and config.prior == "eb" and keep.sum() >= config.joint_min_players:
        joint = _joint_fit(counts, config, pr, keep, parent, fit.pi)
        # muted players keep their first-pass (Beta) estimates
        fit.s_a[keep], fit.s_b[keep] = (v[keep] for v in _beta_moments(joint.s_mean, joint.s_var))
        fit.f_a[keep], fit.f_b[keep] = (v[keep] for v in _beta_moments(joint.f_mean, joint.f_var))
        fit.pi, fit.pi_global, fit.prior_s, fit.prior_f = joint.pi, joint.pi_global, joint.prior_s, joint.prior_f
        fit.iterations += joint.iterations
    s = fit.s_a / (fit.s_a + fit.s_b)
    f = fit.f_a / (fit.f_a + fit.f_b)
    pi = fit.pi
    sp, fp = s[:, None] * pi[None, :], f[:, None] * (1 - pi[None, :])
    find_post = sp / np.maximum(sp + fp, 1e-300)
    sp0, fp0 = (1 - s[:, None]) * pi[None, :], (1 - f[:, None]) * (1 - pi[None, :])
    pass_post = sp0 / np.maximum(sp0 + fp0, 1e-300)
    if joint is not None:  # unmuted players: the posterior integrated over their (s, f) grid posterior
        j_find, j_pass = joint.find_post, joint.pass_post
        if config.bootstrap > 0 and keep.sum() <= config.bootstrap_max_players:
            j_find, j_pass = _bootstrap_posteriors(counts, config, pr, keep, parent, joint)
        find_post[keep], pass_post[keep] = j_find[keep], j_pass[keep]
    ns = counts.gold[:, TAINTED].sum(axis=1)
    return EvalResult(
        s_alpha=fit.s_a, s_beta=fit.s_b, f_alpha=fit.f_a, f_beta=fit.f_b, pi=pi, pi_global=fit.pi_global,
        find_posterior=find_post, pass_posterior=pass_post, muted=muted, gated=ns < config.gold_min,
        n_tainted=ns, n_honest_tainted=counts.gold[:, HONEST_TAINTED].sum(axis=1), prior_s=fit.prior_s,
        prior_f=fit.prior_f, iterations=fit.iterations, config=config, joint_prior=joint is not None,
    )


def find_posterior(s: np.ndarray | float, f: np.ndarray | float, pi: np.ndarray | float) -> np.ndarray:
    """P(M=0 | H=0, D=U) = s·π / (s·π + f·(1−π)) (SPEC §2), elementwise."""
    s, f, pi = np.asarray(s, float), np.asarray(f, float), np.asarray(pi, float)
    num = s * pi
    return num / np.maximum(num + f * (1 - pi), 1e-300)


def expected_calibration_error(prob: np.ndarray, outcome: np.ndarray, bins: int = 10) -> float:
    """ECE: the mean |confidence − accuracy| over equal-width probability bins, weighted by bin size."""
    prob = np.asarray(prob, float)
    outcome = np.asarray(outcome, float)
    if prob.size == 0:
        return float("nan")
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    n = np.bincount(idx, minlength=bins)
    conf = np.bincount(idx, weights=prob, minlength=bins)
    acc = np.bincount(idx, weights=outcome, minlength=bins)
    nz = n > 0
    return float(np.sum(np.abs(conf[nz] - acc[nz])) / prob.size)


def ece_sampling_floor(prob: np.ndarray, bins: int = 10, draws: int = 200, seed: int = 0) -> float:
    """The ECE that perfectly calibrated posteriors `prob` would still measure, from sampling alone:
    the mean ECE of `prob` against outcomes drawn as Bernoulli(prob). With a few hundred finds it
    is ≈ 0.03–0.05, so one run's ECE is only comparable with a 0.05 target next to this floor."""
    prob = np.asarray(prob, float)
    if prob.size == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error(prob, rng.random(prob.size) < prob, bins) for _ in range(draws)]))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties averaged)."""
    return float(stats.spearmanr(a, b).statistic)
