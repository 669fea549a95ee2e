"""Calibration of the find posteriors (SPEC §2; target ECE ≤ 0.05) on game-shaped verdicts
with known truth: few honest answers on tainted images per player (f is scarce), a mixed
population (careful, sloppy, random flaggers, spammers), fatigue, and π strata that differ
wildly (text questions the model cannot read)."""
from __future__ import annotations

import numpy as np
import pytest

from game.evaluation import (
    HONEST_TAINTED,
    UNTAINTED,
    Counts,
    EvalConfig,
    EvalResult,
    ece_sampling_floor,
    evaluate,
    expected_calibration_error,
    spearman,
)
from lab.synthetic_verdicts import GameShapedVerdicts, game_shaped_verdicts

PLAYERS = 300
PI_RELIABLE = 0.015
# the evaluation before the joint prior: independent Beta priors, π strata shrunk by 20 pseudo-answers
BETA_ONLY = EvalConfig(joint_prior=False, pi_strength=20.0)


def _fit(v: GameShapedVerdicts, config: EvalConfig = EvalConfig()) -> EvalResult:
    counts = Counts.from_answers(v.player, v.kind, v.flagged, v.group, n_players=PLAYERS, n_groups=len(v.true_pi))
    return evaluate(counts, config, pi_reliable=PI_RELIABLE, group_parent=v.group_parent)


def _scores(v: GameShapedVerdicts, r: EvalResult) -> dict[str, float]:
    finds = (v.kind == UNTAINTED) & v.flagged
    post, status = r.status(v.player[finds], v.group[finds], theta=0.8)
    truth = v.mistake[finds]
    unmuted = ~r.muted[v.player[finds]]
    exported = status == "export"
    return {"ece": expected_calibration_error(post, truth),
            "ece_unmuted": expected_calibration_error(post[unmuted], truth[unmuted]),
            "precision": float(truth[exported].mean()), "exported": int(exported.sum()),
            "spearman": spearman(r.ability, v.true_s - v.true_f)}


@pytest.fixture(scope="module", params=[0, 1])
def game(request):
    v = game_shaped_verdicts(PLAYERS, sessions=4, seed=request.param, pi_reliable=PI_RELIABLE)
    return v, _fit(v), _fit(v, BETA_ONLY)


def test_find_posteriors_are_calibrated(game):
    v, r, _ = game
    sc = _scores(v, r)
    # ≈ 3,000 finds: a perfectly calibrated posterior would measure ECE ≈ 0.015 from sampling alone
    assert sc["ece"] <= 0.04
    assert sc["ece_unmuted"] <= 0.04
    assert sc["precision"] >= 0.9 and sc["exported"] > 500
    assert sc["spearman"] >= 0.85


def test_joint_prior_beats_independent_beta_priors(game):
    """Why the joint prior: with ≈ 1 honest answer on a tainted image per session, one Beta prior
    for f gives careful players a sloppy player's false-alarm rate, so the posteriors of the
    players whose finds are exported are the miscalibrated ones."""
    v, r, old = game
    new_sc, old_sc = _scores(v, r), _scores(v, old)
    assert new_sc["ece_unmuted"] < old_sc["ece_unmuted"]
    assert new_sc["spearman"] > old_sc["spearman"]


def test_bootstrap_integrates_over_the_population_parameters():
    """Careful players' false-alarm rate and the π of a rarely wrong stratum trade off (a flag on
    a simple image is a false alarm or a rare mistake). A run whose few gold false alarms come
    out high by chance (here: 4% of careful players' honest answers on tainted images flagged
    on top) drives those π, and those finds' posteriors, towards 0 although ≈ 0.3 of the finds
    are mistakes. Averaging refits on resampled players integrates over that uncertainty and
    moves them back towards the truth; muting and π are the point fit's."""
    v = game_shaped_verdicts(PLAYERS, sessions=4, seed=2, pi_reliable=0.03, stratum_pi=(0.4,) * 7 + (0.035,) * 7)
    excess = ((v.kind == HONEST_TAINTED) & (v.player_type[v.player] == "careful") & ~v.flagged
              & (np.random.default_rng(2).random(v.player.size) < 0.04))
    v.flagged = v.flagged | excess
    counts = Counts.from_answers(v.player, v.kind, v.flagged, v.group, n_players=PLAYERS, n_groups=len(v.true_pi))
    point = evaluate(counts, EvalConfig(bootstrap=0), pi_reliable=0.03, group_parent=v.group_parent)
    bagged = evaluate(counts, EvalConfig(), pi_reliable=0.03, group_parent=v.group_parent)
    assert np.array_equal(point.muted, bagged.muted) and np.array_equal(point.pi, bagged.pi)
    rare = (v.kind == UNTAINTED) & v.flagged & ~point.muted[v.player] & (v.true_pi[v.group] < 0.1)
    truth = v.mistake[rare].mean()
    p_point = point.find_posterior[v.player[rare], v.group[rare]].mean()
    p_bagged = bagged.find_posterior[v.player[rare], v.group[rare]].mean()
    assert truth > 0.2 and p_point < 0.1          # the trap
    assert p_point + 0.015 < p_bagged < truth      # towards the truth


def test_small_outlier_strata_keep_their_error_rate(game):
    """Text questions (π ≈ 0.9) are a few dozen answers per run; shrinking them hard towards the
    error rate of their image complexity (≈ 0.25 or ≈ 0.02) made their finds look doubtful."""
    v, r, old = game
    text = [6, 13]
    assert np.abs(r.pi[text] - v.true_pi[text]).max() < 0.15
    assert np.abs(old.pi[text] - v.true_pi[text]).max() > 0.15


def test_posteriors_stay_probabilities_and_bounds_ordered(game):
    v, r, _ = game
    assert np.all((r.find_posterior >= 0) & (r.find_posterior <= 1))
    assert np.all(r.pass_posterior >= 0)
    # a Correct verdict is weaker evidence of a mistake than a Wrong one from a player who discriminates
    discriminating = ~r.muted & (r.s_mean - r.f_mean > 0.2)
    assert np.all(r.pass_posterior[discriminating] < r.find_posterior[discriminating])
    assert np.all(r.s_lower <= r.s_mean) and np.all(r.f_upper >= r.f_mean)
    assert np.all(r.s_alpha > 0) and np.all(r.f_beta > 0)


def test_prior_fitted_on_a_subset_of_many_players_agrees():
    """With very many players the joint prior is fitted on an evenly spaced subset (speed at a
    million answers); every player's posterior still uses all their answers."""
    v = game_shaped_verdicts(PLAYERS, sessions=4, seed=7, pi_reliable=PI_RELIABLE)
    full = _fit(v, EvalConfig(bootstrap=0))
    sub = _fit(v, EvalConfig(bootstrap=0, joint_max_players=150))   # of ≈ 210 unmuted players
    keep = ~full.muted
    assert np.abs(sub.find_posterior[keep] - full.find_posterior[keep]).mean() < 0.04
    assert np.abs(sub.pi - full.pi).max() < 0.05
    assert _scores(v, sub)["ece_unmuted"] <= 0.05


def test_ece_sampling_floor():
    """Certain posteriors have no sampling error; uncertain ones measure an ECE > 0 even when
    perfectly calibrated, shrinking like 1/√n."""
    assert ece_sampling_floor(np.array([0.0] * 50 + [1.0] * 50)) == 0.0
    p = np.random.default_rng(0).uniform(0, 1, 4000)
    small, large = ece_sampling_floor(p[:300]), ece_sampling_floor(p)
    assert 0.03 < small < 0.07
    assert large < small / 2
