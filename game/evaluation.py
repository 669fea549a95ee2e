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

EM (Dawid–Skene with gold): the latent M of untainted answers is weighted by
its posterior, and the expected counts feed the Beta posteriors of s and f
(flags on untainted answers that are probably correct are false alarms too,
so f is estimated from far more than the few honest answers on tainted
images) and the stratum error rates π_g (shrunk towards the global π).

Posterior of a find: P(M=0 | H=0, D=U) = s·π / (s·π + f·(1−π)). Because s, f
and π are a-posteriori independent and the joint P(M=0, H=0) = E[s]E[π] and
P(H=0) = E[s]E[π] + E[f]E[1−π] are multilinear in them, plugging in the
**posterior means** is the exact posterior predictive (the integral), not a
point estimate — which is what makes the θ filter calibrated.
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
    prior: str = "eb"                 # "eb" (empirical Bayes Beta prior across players) or "uniform" (Beta(1,1))
    use_untainted: bool = False        # EM: also let untainted answers inform s and f (biases π down: off)
    pi_strength: float = 20.0          # pseudo-answers shrinking each stratum's π towards the global π
    mute_min_obs: int = 10             # tainted answers judged before the s rule, untainted ones before the flag-rate rule
    mute_s_lower: float = 0.4          # mute when the lower 95% bound of s is below this …
    mute_min_f_obs: int = 3            # (honest answers on tainted images are scarce: ≈1 per session)
    mute_f_lower: float = 0.2          # … or the lower 95% bound of f is above this
    mute_overflag_z: float = 3.5       # mute when untainted flags exceed what s, f, π predict by this many SDs
    gold_min: int = 8                  # tainted answers judged before a new player's finds count
    f_prior_by_s: bool = True
    gold_min_accuracy: float = 0.95    # gold only from tainted images measured at least this accurate          # fit f's prior separately for players above/below the median s
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
        new_global = float((m0.sum() + 1.0) / (n_g.sum() + 2.0))
        # two-level shrinkage: stratum → its parent (e.g. the image complexity) → global
        n_parent = np.bincount(parent, weights=n_g)
        m_parent = np.bincount(parent, weights=m0)
        pi_parent = (m_parent + config.pi_strength * new_global) / (n_parent + config.pi_strength)
        new_pi = (m0 + config.pi_strength * pi_parent[parent]) / (n_g + config.pi_strength)
        new_s, new_f = s_a / (s_a + s_b), f_a / (f_a + f_b)
        delta = max(np.max(np.abs(new_pi - pi), initial=0.0), np.max(np.abs(new_s - s), initial=0.0),
                    np.max(np.abs(new_f - f), initial=0.0))
        s, f, pi, pi_global = new_s, new_f, new_pi, new_global
        if delta < config.tol:
            break
    return _Fit(s_a, s_b, f_a, f_b, pi, pi_global, prior_s, prior_f, it)


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
    players' false-alarm estimates up nor distort π. Muted players keep their
    first-pass estimates.

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
    s = fit.s_a / (fit.s_a + fit.s_b)
    f = fit.f_a / (fit.f_a + fit.f_b)
    pi = fit.pi
    sp, fp = s[:, None] * pi[None, :], f[:, None] * (1 - pi[None, :])
    find_post = sp / np.maximum(sp + fp, 1e-300)
    sp0, fp0 = (1 - s[:, None]) * pi[None, :], (1 - f[:, None]) * (1 - pi[None, :])
    pass_post = sp0 / np.maximum(sp0 + fp0, 1e-300)
    ns = counts.gold[:, TAINTED].sum(axis=1)
    return EvalResult(
        s_alpha=fit.s_a, s_beta=fit.s_b, f_alpha=fit.f_a, f_beta=fit.f_b, pi=pi, pi_global=fit.pi_global,
        find_posterior=find_post, pass_posterior=pass_post, muted=muted, gated=ns < config.gold_min,
        n_tainted=ns, n_honest_tainted=counts.gold[:, HONEST_TAINTED].sum(axis=1), prior_s=fit.prior_s,
        prior_f=fit.prior_f, iterations=fit.iterations, config=config,
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


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties averaged)."""
    return float(stats.spearmanr(a, b).statistic)
