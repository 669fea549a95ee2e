"""The crowd measures the model per image (SPEC §1.2): verdicts on untainted answers,
weighted by each judge's (s, f), give a posterior of the model's accuracy; an unmeasured
image joins the reliable pool when its lower credible bound passes the threshold and
leaves it when the evidence turns."""
from __future__ import annotations

import random

import numpy as np
import pytest
from sqlalchemy import and_, select, update

from game import tables as T
from game.crowd_reliability import GRID, CrowdPairs, CrowdPosterior
from game.evaluation import EvalConfig
from game.evaluation_tables import crowd_counts
from game.evaluation_store import run_evaluation
from game.images import prepare_image, store_image
from game.service import GameConfig, GameService
from tests.conftest import TEST_HASH_KEY, seed_images, solid_png

pytestmark = pytest.mark.both_backends


def test_posterior_weighs_each_verdict_by_its_judge():
    one = np.zeros(1, int)

    def lower(s, f, right, wrong):
        return CrowdPosterior().fit(image=one, s=np.array([s]), f=np.array([f]), n_correct=np.array([right]),
                                    n_wrong=np.array([wrong]), n_images=1).lower_[0]

    assert lower(0.95, 0.05, 40, 0) > 0.9                 # a careful judge's Correct verdicts are evidence
    assert lower(0.5, 0.5, 400, 0) < 0.1                  # a coin-flipper's are none: the prior's bound stays
    assert lower(0.95, 0.05, 40, 10) < lower(0.95, 0.05, 40, 0) < 1
    assert lower(0.95, 0.05, 10, 0) < 0.9                 # too few verdicts: not yet
    # Two judges on two images: the verdicts land on their own image only.
    post = CrowdPosterior().fit(image=np.array([0, 1]), s=np.array([0.9, 0.9]), f=np.array([0.05, 0.05]),
                                n_correct=np.array([50, 0]), n_wrong=np.array([0, 20]), n_images=2)
    assert post.lower_[0] > 0.85 and post.mean_[1] < 0.3 and list(post.verdicts_) == [50, 20]


def test_posterior_factorised_by_judge_equals_the_sum_over_pairs():
    """The fit computes the log curves once per judge and sums counts × curves per image; the
    definition sums one log-likelihood per (image, judge) pair. Same numbers up to summation
    order: means within 1e-12 relative, identical lower bounds and verdict counts."""
    rng = np.random.default_rng(7)
    n, n_images, n_judges = 600, 9, 40                     # image 8 gets no pair: the prior's posterior
    image, judge = rng.integers(0, n_images - 1, n), rng.integers(0, n_judges, n)
    s_j, f_j = rng.uniform(0, 1, n_judges), rng.uniform(0, 1, n_judges)   # some beyond the clip
    right, wrong = rng.integers(0, 12, n), rng.integers(0, 4, n)
    post = CrowdPosterior().fit(image=image, s=s_j[judge], f=f_j[judge], n_correct=right, n_wrong=wrong,
                                n_images=n_images)
    log_post = np.zeros((n_images, GRID.size))
    for k in range(n):
        s, f = np.clip([s_j[judge[k]], f_j[judge[k]]], 0.01, 0.99)
        p_wrong = GRID * f + (1 - GRID) * s
        log_post[image[k]] += right[k] * np.log(1 - p_wrong) + wrong[k] * np.log(p_wrong)
    ref = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    lower = GRID[np.minimum((np.cumsum(ref, axis=1) < 0.05).sum(axis=1), GRID.size - 1)]
    by_judge = CrowdPosterior().fit(image=image, judge=judge, s=s_j, f=f_j, n_correct=right, n_wrong=wrong,
                                    n_images=n_images)
    for fitted in (post, by_judge):
        np.testing.assert_allclose(fitted.mean_, ref @ GRID, rtol=1e-12)
        assert list(fitted.lower_) == list(lower) and len(set(lower)) > 3
        assert list(fitted.verdicts_) == [int((right + wrong)[image == i].sum()) for i in range(n_images)]


def test_pairs_sum_each_answers_verdicts_per_image_and_judge():
    pairs = CrowdPairs.from_verdicts(image=[7, 3, 7, 7, 3], player=[2, 2, 2, 1, 2],
                                     correct=[1, 0, 0, 1, 1], wrong=[0, 1, 1, 0, 0])
    assert pairs.rows() == [(3, 2, 1, 1), (7, 1, 1, 0), (7, 2, 1, 1)]
    assert CrowdPairs.from_rows(list(reversed(pairs.rows()))).rows() == pairs.rows()


async def play(service: GameService, clock, rng: random.Random, players: range, truth: dict[int, float],
               sessions: int = 2, questions: int = 5) -> None:
    """Careful players (s = 0.95, f = 0.05) judge every answer; a photo's answers are right with
    its `truth` probability (gold and seeded images always). The test reads the stored tainted
    flag to play the judge — the evaluation is under test, not a simulated player."""
    for p in players:
        pid = await service.upsert_player(5000 + p, f"p{p}")
        for _ in range(sessions):
            state = await service.start_or_resume(pid)
            sid = state["session_id"]
            while state["status"] == "playing":
                for q in range(questions):
                    ans = await service.ask(pid, sid, f"q{rng.random()}", f"Is there a dog? ({q})")
                    async with service.db.read() as conn:
                        row = (await conn.execute(select(T.answers.c.tainted, T.answers.c.image_id)
                                                  .where(T.answers.c.id == ans["answer_id"]))).one()
                    mistake = row.tainted or rng.random() > truth.get(row.image_id, 1.0)
                    flag = rng.random() < (0.95 if mistake else 0.05)
                    clock.advance(2)
                    state = await service.verdict(pid, ans["answer_id"], f"v{rng.random()}",
                                                  "wrong" if flag else "correct", "a correction" if flag else None)
                    if flag:
                        break
                else:  # judged every answer Correct: let the image time out
                    clock.advance(121)
                    state = await service.start_or_resume(pid)


async def test_unmeasured_photos_join_and_leave_the_reliable_pool(db, clock, model):
    await seed_images(db, total=10, reliable=10)
    photos = []
    for i in range(4):
        image_id, _ = await store_image(db, prepare_image(solid_png(100 + i)), pool="test",
                                        source_name=f"photo-{i}.jpg")
        photos.append(image_id)
    good, bad = photos[:2], photos[2:]
    truth = {good[0]: 1.0, good[1]: 1.0, bad[0]: 0.3, bad[1]: 0.3}
    service = GameService(db, model, hash_key=TEST_HASH_KEY, clock=clock, rng=random.Random(3),
                          config=GameConfig(image_seconds=120, taint_prob=0.8, false_alarm_penalty=10,
                                            pool_cache_seconds=0))
    rng = random.Random(5)
    config = EvalConfig(prior="uniform", gold_min=2, mute_min_obs=4, crowd_threshold=0.8)
    await play(service, clock, rng, range(8), truth)
    first = await run_evaluation(db, config, now_ms=clock.now + 10_000)
    assert first.crowd is not None and first.crowd.images >= 4

    async def state() -> dict[int, tuple]:
        async with db.read() as conn:
            return {r.id: r for r in (await conn.execute(select(
                T.images.c.id, T.images.c.reliable, T.images.c.crowd_lower, T.images.c.crowd_accuracy,
                T.images.c.crowd_verdicts))).all()}

    rows = await state()
    assert all(rows[i].reliable and rows[i].crowd_lower >= 0.8 for i in good), [rows[i] for i in good]
    assert not any(rows[i].reliable for i in bad) and all(rows[i].crowd_lower < 0.5 for i in bad), [rows[i] for i in bad]
    assert first.crowd.reliable == 2 and first.crowd.joined == 2 and first.crowd.left == 0
    assert all(rows[i].reliable for i in rows if i not in photos)   # measured images keep their measurement
    assert "crowd:" in "\n".join(first.lines())

    # The evidence turns: later verdicts say the model gets good[0] wrong (say, after a model
    # update). Written straight into the evidence table — playing until the random plans serve
    # good[0] often enough would take minutes — and picked up by the next run's refit.
    async with db.write() as conn:
        judge = (await conn.execute(select(crowd_counts.c.player_id).where(crowd_counts.c.image_id == good[0])
                                    .order_by(crowd_counts.c.player_id))).scalars().first()
        await conn.execute(update(crowd_counts).where(and_(crowd_counts.c.image_id == good[0],
                                                            crowd_counts.c.player_id == judge))
                           .values(n_wrong=crowd_counts.c.n_wrong + 15))
    second = await run_evaluation(db, config, now_ms=clock.now + 20_000)
    rows = await state()
    assert second.new_answers == 0
    assert not rows[good[0]].reliable and rows[good[0]].crowd_lower < 0.8 and rows[good[0]].crowd_verdicts > 15
    assert rows[good[1]].reliable and second.crowd.left == 1 and second.crowd.joined == 0

    # Every judge muted by the operator: their verdicts stop counting, so the crowd's estimate —
    # and the place in the reliable pool it gave — goes; measured images are untouched.
    async with db.write() as conn:
        await conn.execute(update(T.players).values(muted=True))
    third = await run_evaluation(db, config, now_ms=clock.now + 30_000)
    rows = await state()
    assert not rows[good[1]].reliable and rows[good[1]].crowd_verdicts is None and third.crowd.left == 1
    assert all(rows[i].reliable for i in rows if i not in photos)
