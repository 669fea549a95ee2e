"""The evaluation maths of SPEC §2 on synthetic verdicts with known truth."""
from __future__ import annotations

import numpy as np
import pytest

from game.evaluation import (
    HONEST_TAINTED,
    TAINTED,
    UNTAINTED,
    Counts,
    EvalConfig,
    evaluate,
    expected_calibration_error,
    find_posterior,
    fit_beta_prior,
    spearman,
)
from lab.synthetic_verdicts import synthetic_verdicts


@pytest.fixture(scope="module")
def synth():
    v = synthetic_verdicts(200_000, 800, seed=3)
    counts = Counts.from_answers(v.player, v.kind, v.flagged, v.group, n_players=800, n_groups=2)
    return v, counts, evaluate(counts)


def test_recovers_sensitivity_false_alarms_and_pi(synth):
    v, _, r = synth
    assert np.mean(np.abs(r.s_mean - v.true_s)) < 0.06
    assert np.mean(np.abs(r.f_mean - v.true_f)) < 0.06
    assert r.pi == pytest.approx(v.true_pi, abs=0.02)
    assert spearman(r.s_mean, v.true_s) > 0.9
    assert spearman(r.ability, v.true_s - v.true_f) > 0.9


def test_exported_finds_are_precise_and_calibrated(synth):
    v, _, r = synth
    finds = (v.kind == UNTAINTED) & v.flagged
    post, status = r.status(v.player[finds], v.group[finds], theta=0.8)
    exported = status == "export"
    assert exported.sum() > 1000
    assert v.mistake[finds][exported].mean() >= 0.9
    assert expected_calibration_error(post, v.mistake[finds]) <= 0.05


def test_random_flaggers_and_spammers_are_muted_careful_players_are_not(synth):
    v, _, r = synth
    assert r.muted[v.player_type == "random"].mean() > 0.9
    assert r.muted[v.player_type == "spammer"].all()
    assert r.muted[v.player_type == "careful"].mean() < 0.05


def test_posterior_formula_by_hand():
    assert find_posterior(0.9, 0.1, 0.3) == pytest.approx(0.27 / (0.27 + 0.07))
    # a random flagger (s = f) tells us nothing: the posterior is the prior π
    assert find_posterior(0.4, 0.4, 0.2) == pytest.approx(0.2)
    # one player, known counts: the stored posterior is s̄π̄ / (s̄π̄ + f̄(1 − π̄)) with Beta posterior means
    counts = Counts.zeros(1, 1)
    counts.gold[0, TAINTED] = [2, 18]          # 18 of 20 tainted answers flagged
    counts.gold[0, HONEST_TAINTED] = [9, 1]    # 1 of 10 honest answers flagged
    counts.untainted[0, 0] = [70, 30]
    r = evaluate(counts, EvalConfig(prior="uniform"))
    s, f = 19 / 22, 2 / 12
    assert r.s_mean[0] == pytest.approx(s)
    assert r.f_mean[0] == pytest.approx(f)
    pi = r.pi[0]
    assert r.find_posterior[0, 0] == pytest.approx(s * pi / (s * pi + f * (1 - pi)))
    # π solves the EM fixed point: expected mistakes / answers (shrunk: stratum → parent → global)
    w1, w0 = s * pi / (s * pi + f * (1 - pi)), (1 - s) * pi / ((1 - s) * pi + (1 - f) * (1 - pi))
    m0 = 30 * w1 + 70 * w0
    k = EvalConfig().pi_strength
    glob = (m0 + 1) / (100 + 2)
    parent = (m0 + k * glob) / (100 + k)
    assert pi == pytest.approx((m0 + k * parent) / (100 + k), abs=1e-6)


def test_gold_gating_holds_new_players():
    counts = Counts.zeros(2, 1)
    counts.gold[0, TAINTED] = [1, 19]
    counts.gold[1, TAINTED] = [0, 3]           # only 3 tainted observations
    counts.untainted[:, 0] = [[50, 10], [50, 10]]
    r = evaluate(counts, EvalConfig(gold_min=8))
    assert not r.gated[0] and r.gated[1]
    _, status = r.status(np.array([0, 1]), np.array([0, 0]), theta=0.0)
    assert list(status) == ["export", "held"]


def test_counts_are_additive_so_evaluation_can_be_incremental():
    v = synthetic_verdicts(20_000, 50, seed=5)
    whole = Counts.from_answers(v.player, v.kind, v.flagged, v.group, n_players=50, n_groups=2)
    half = 10_000  # the first part may know fewer players or strata: Counts pad with zeros
    a = Counts.from_answers(v.player[:half], v.kind[:half], v.flagged[:half], v.group[:half])
    b = Counts.from_answers(v.player[half:], v.kind[half:], v.flagged[half:], v.group[half:], n_players=50, n_groups=2)
    both = a + b
    assert np.array_equal(both.gold, whole.gold) and np.array_equal(both.untainted, whole.untainted)


def test_empirical_bayes_prior_matches_population():
    rng = np.random.default_rng(0)
    p = rng.beta(8, 2, 500)
    n = rng.integers(5, 30, 500)
    k = rng.binomial(n, p)
    a, b = fit_beta_prior(k, n)
    assert a / (a + b) == pytest.approx(0.8, abs=0.03)
    assert fit_beta_prior(np.array([1]), np.array([2])) == (1.0, 1.0)


def test_expected_calibration_error():
    prob = np.array([0.9] * 10 + [0.1] * 10)
    assert expected_calibration_error(prob, np.array([1] * 9 + [0] + [0] * 9 + [1])) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([0.9] * 10), np.zeros(10)) == pytest.approx(0.9)


def test_imperfect_reliable_pool_does_not_inflate_false_alarms():
    """When the model errs on 20% of reliable-pool images, careful players' flags there are
    mostly true catches; with the measured error rate the false-alarm estimate stays low."""
    rng = np.random.default_rng(11)
    P, n = 200, 40
    s_true, f_true, pr = 0.9, 0.05, 0.2
    counts = Counts.zeros(P, 1)
    counts.gold[:, TAINTED, 1] = rng.binomial(n, s_true, P)
    counts.gold[:, TAINTED, 0] = n - counts.gold[:, TAINTED, 1]
    wrong = rng.binomial(n, pr, P)
    flags = rng.binomial(wrong, s_true) + rng.binomial(n - wrong, f_true)
    counts.gold[:, HONEST_TAINTED, 1] = flags
    counts.gold[:, HONEST_TAINTED, 0] = n - flags
    counts.untainted[:, 0] = [[30, 10]] * P
    naive = evaluate(counts)
    aware = evaluate(counts, pi_reliable=pr)
    assert naive.f_mean.mean() > 0.18
    assert abs(aware.f_mean.mean() - f_true) < 0.03
    assert aware.muted.mean() < naive.muted.mean() or not aware.muted.any()


def test_spammers_are_muted_by_their_untainted_flag_rate():
    """A spammer with few honest-on-tainted observations is caught by flagging every untainted answer."""
    counts = Counts.zeros(30, 1)
    counts.gold[:, TAINTED] = [1, 9]
    counts.gold[:, HONEST_TAINTED] = [2, 0]
    counts.untainted[:, 0] = [28, 12]          # careful players flag about π·s of untainted answers
    counts.gold[0, HONEST_TAINTED] = [0, 2]
    counts.gold[0, TAINTED] = [0, 10]
    counts.untainted[0, 0] = [0, 40]           # the spammer flags everything
    r = evaluate(counts)
    assert r.muted[0]
    assert not r.muted[1:].any()
