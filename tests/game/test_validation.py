"""Peer validation of finds (SPEC §3.3) against a real migrated database (SQLite, PostgreSQL) and the real
GameService: who is shown which find, idempotent votes, the confirmation and rejection
rules, muted validators, the +20 bonus in the ledger, the summary and leaderboards, the
posterior update with validators' s and f, the export of muted finders, the migration."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, insert, inspect, select, text

from game import rules
from game.admin_queries import set_muted
from game.errors import Conflict, Invalid, NotFound
from game.evaluation_store import run_evaluation
from game.evaluation_tables import answer_posteriors_query, find_answers, find_cells, player_estimates
from game.exports import collect_finds
from game.migrate import current_revision, downgrade, upgrade
from game.tables import answers, points_ledger, requests, session_images, validation_posteriors, validations
from game.validation import Vote, posterior_with_votes, votes_by_find

pytestmark = pytest.mark.both_backends

PREVIOUS_HEAD = "e7_0001"


async def play_all_wrong(service, clock, user: int, name: str | None = None) -> tuple[int, str]:
    """A player plays a whole session flagging every first answer Wrong with a
    correction: 5 finds (the untainted images), 5 flags on tainted images."""
    pid = await service.upsert_player(user, name or f"u{user}")
    state = await service.start_or_resume(pid)
    sid = state["session_id"]
    while state["status"] == "playing":
        index = state["image"]["index"]
        got = await service.ask(pid, sid, f"a{user}-{index}", f"How many circles in picture {index}?")
        clock.advance(3)
        state = await service.verdict(pid, got["answer_id"], f"v{user}-{index}", "wrong", f"{index} circles")
    return pid, sid


async def finds_of(db, session_id: str) -> list[str]:
    async with db.read() as conn:
        rows = (await conn.execute(
            select(answers.c.id).join(session_images, session_images.c.id == answers.c.session_image_id)
            .where(answers.c.session_id == session_id, answers.c.verdict == "wrong",
                   session_images.c.tainted.is_(False)).order_by(answers.c.judged_at))).all()
    return [r.id for r in rows]


async def scalar(db, query):
    async with db.read() as conn:
        return (await conn.execute(query)).scalar_one()


async def bonus_rows(db, answer_id: str | None = None) -> list[tuple]:
    query = select(points_ledger.c.player_id, points_ledger.c.answer_id, points_ledger.c.points).where(
        points_ledger.c.reason == "find_bonus")
    if answer_id is not None:
        query = query.where(points_ledger.c.answer_id == answer_id)
    async with db.read() as conn:
        return [tuple(r) for r in (await conn.execute(query)).all()]


async def vote(service, pid: int, find_id: str, agrees: bool, rid: str | None = None) -> dict:
    return await service.validate_find(pid, find_id, rid or f"val-{pid}-{find_id}", agrees)


async def drain(service, pid: int, agrees: bool) -> list[str]:
    """Vote on every find the queue offers `pid` until none is left; the ids offered."""
    offered: list[str] = []
    while True:
        try:
            item = await service.next_find(pid)
        except NotFound:
            return offered
        assert item["find_id"] not in offered, "a find was offered twice"
        offered.append(item["find_id"])
        await vote(service, pid, item["find_id"], agrees)


# ---------------------------------------------------------------------- the rule (pure)

@pytest.mark.parametrize(("agree", "disagree", "status"), [
    (0, 0, "pending"), (1, 0, "pending"), (2, 0, "confirmed"), (2, 1, "confirmed"), (3, 1, "confirmed"),
    (2, 2, "pending"), (3, 2, "pending"), (1, 1, "pending"), (0, 1, "pending"), (0, 2, "rejected"),
    (1, 2, "pending"), (1, 3, "rejected"), (4, 2, "confirmed"), (4, 3, "pending"),
])
def test_validation_status_rule(agree, disagree, status):
    assert rules.validation_status(agree, disagree) == status


# ---------------------------------------------------------------------- who sees what

async def test_own_find_is_never_offered_and_others_get_the_payload(service, db, clock):
    alice, sid = await play_all_wrong(service, clock, 1)
    finds = await finds_of(db, sid)
    assert len(finds) == 5
    with pytest.raises(NotFound):
        await service.next_find(alice)
    with pytest.raises(NotFound):                      # voting on one's own find: "not found", no leak
        await vote(service, alice, finds[0], True)
    bob = await service.upsert_player(2, "Bob")
    offered = await service.next_find(bob)
    assert set(offered) == {"find_id", "image", "question", "answer", "correction"}
    assert set(offered["image"]) == {"image_id"} and offered["image"]["image_id"]
    assert offered["find_id"] == finds[0]              # the oldest of the unvoted finds
    async with db.read() as conn:
        row = (await conn.execute(select(answers).where(answers.c.id == finds[0]))).one()
    assert (offered["question"], offered["answer"], offered["correction"]) == (
        row.question, row.served_answer, row.correction)
    assert await scalar(db, select(func.count()).select_from(validations)) == 0


async def test_finds_of_a_session_still_playing_are_not_shown(service, db, clock):
    alice = await service.upsert_player(11)
    state = await service.start_or_resume(alice)
    sid = state["session_id"]
    find_id = None
    while find_id is None:                     # flag until one flag lands on an untainted image
        got = await service.ask(alice, sid, f"a{state['image']['index']}", "What colour?")
        state = await service.verdict(alice, got["answer_id"], f"v{state['image']['index']}", "wrong", "crimson")
        found = await finds_of(db, sid)
        find_id = found[0] if found else None
    assert state["status"] == "playing"
    bob = await service.upsert_player(12)
    with pytest.raises(NotFound):
        await service.next_find(bob)
    with pytest.raises(NotFound):
        await vote(service, bob, find_id, True)


async def test_queue_fewest_votes_first_and_never_twice(service, db, clock):
    _, sid = await play_all_wrong(service, clock, 1)
    finds = await finds_of(db, sid)
    bob, carol = await service.upsert_player(2), await service.upsert_player(3)
    first = await service.next_find(bob)
    await vote(service, bob, first["find_id"], True)
    assert (await service.next_find(bob))["find_id"] == finds[1]      # not the one already voted
    assert (await service.next_find(carol))["find_id"] == finds[1]    # fewest votes first
    assert sorted(await drain(service, bob, False)) == sorted(finds[1:])   # each of the others once, then none


async def test_non_finds_and_unknown_ids_are_not_found(service, db, clock):
    _, sid = await play_all_wrong(service, clock, 1)
    bob = await service.upsert_player(2)
    async with db.read() as conn:
        tainted_flag = (await conn.execute(
            select(answers.c.id).join(session_images, session_images.c.id == answers.c.session_image_id)
            .where(answers.c.session_id == sid, session_images.c.tainted.is_(True)).limit(1))).scalar_one()
    for bad in (tainted_flag, "0" * 32, "no-such-find", "x" * 65, "", 12, None):
        with pytest.raises(NotFound):
            await service.validate_find(bob, bad, "r1", True)
    assert await scalar(db, select(func.count()).select_from(validations)) == 0


async def test_bad_inputs_store_nothing(service, db, clock):
    _, sid = await play_all_wrong(service, clock, 1)
    find = (await finds_of(db, sid))[0]
    bob = await service.upsert_player(2)
    before = await scalar(db, select(func.count()).select_from(requests))
    for agrees in ("yes", 1, 0, None, "true", [True]):
        with pytest.raises(Invalid):
            await service.validate_find(bob, find, "r1", agrees)
    for rid in ("", None, 5, "x" * 129):
        with pytest.raises(Invalid):
            await service.validate_find(bob, find, rid, True)
    assert await scalar(db, select(func.count()).select_from(validations)) == 0
    assert await scalar(db, select(func.count()).select_from(requests)) == before


# ---------------------------------------------------------------------- idempotency

async def test_double_vote_is_idempotent(service, db, clock):
    _, sid = await play_all_wrong(service, clock, 1)
    find = (await finds_of(db, sid))[0]
    bob = await service.upsert_player(2)
    first = await vote(service, bob, find, True, rid="same")
    assert first == {"status": "recorded", "find_id": find, "agrees": True}
    assert await vote(service, bob, find, True, rid="same") == first       # a retry replays
    with pytest.raises(Conflict):                                          # a second vote, new id
        await vote(service, bob, find, False, rid="other")
    state = await service.start_or_resume(bob)
    await service.ask(bob, state["session_id"], "bob-ask", "What shape?")
    with pytest.raises(Conflict):                                          # an id used by a question
        await vote(service, bob, (await finds_of(db, sid))[1], True, rid="bob-ask")
    async with db.read() as conn:
        rows = (await conn.execute(select(validations.c.agrees, validations.c.request_id)
                                   .where(validations.c.answer_id == find))).all()
    assert [tuple(r) for r in rows] == [(True, "same")]


# ---------------------------------------------------------------------- confirmation and rejection

async def test_confirmation_pays_the_bonus_once_and_shows_everywhere(service, db, clock):
    alice, sid = await play_all_wrong(service, clock, 1, "Alice")
    finds = await finds_of(db, sid)
    before = await service.summary(alice, sid)
    board_before = await service.leaderboard("all", alice)
    before_points = board_before["me"]["points"] if board_before["me"] else 0
    bob, carol, dave = [await service.upsert_player(u) for u in (2, 3, 4)]
    await vote(service, bob, finds[0], True)
    assert await bonus_rows(db) == []                                   # one vote is not enough
    await vote(service, carol, finds[0], True)
    assert await bonus_rows(db) == [(alice, finds[0], 20)]
    assert sorted(await drain(service, dave, False)) == sorted(finds[1:])   # decided: no longer offered
    await vote(service, dave, finds[0], True)                            # a late vote still counts as stored…
    assert await bonus_rows(db, finds[0]) == [(alice, finds[0], 20)]     # …but never pays twice
    summary = await service.summary(alice, sid)
    checked = {a["answer_id"]: a for img in summary["images"] for a in img["answers"]}
    assert checked[finds[0]]["validation"] == "confirmed" and checked[finds[0]]["bonus"] == 20
    assert summary["total_points"] == before["total_points"] + 20
    assert summary["total_points"] == sum(img["points"] for img in summary["images"])
    for board in ("all", "week"):
        me = (await service.leaderboard(board, alice))["me"]
        assert me["points"] == before_points + 20
    tainted = [a for img in summary["images"] if img["tainted"] for a in img["answers"]]
    assert all(a["validation"] is None and a["bonus"] == 0 for a in tainted)


async def test_rejection_and_two_of_three(service, db, clock):
    alice, sid = await play_all_wrong(service, clock, 1)
    finds = await finds_of(db, sid)
    voters = [await service.upsert_player(u) for u in (2, 3, 4, 5)]
    await vote(service, voters[0], finds[0], False)
    await vote(service, voters[1], finds[0], False)                     # 0 of 2 agree: rejected
    await vote(service, voters[0], finds[1], True)
    await vote(service, voters[1], finds[1], False)
    await vote(service, voters[2], finds[1], True)                      # 2 of 3 agree: confirmed
    await vote(service, voters[0], finds[2], True)
    await vote(service, voters[1], finds[2], False)
    await vote(service, voters[2], finds[2], False)                     # 1 of 3 agree: still pending
    assert await bonus_rows(db) == [(alice, finds[1], 20)]
    summary = await service.summary(alice, sid)
    status = {a["answer_id"]: a["validation"] for img in summary["images"] for a in img["answers"]}
    assert [status[f] for f in finds] == ["rejected", "confirmed", "pending", "pending", "pending"]
    assert sorted(await drain(service, voters[3], True)) == sorted(finds[2:])


async def test_muted_validators_are_stored_but_do_not_count(service, db, clock):
    alice, sid = await play_all_wrong(service, clock, 1)
    find = (await finds_of(db, sid))[0]
    bob, carol, dave, erin = (await service.upsert_player(2), await service.upsert_player(3),
                              await service.upsert_player(4), await service.upsert_player(5))
    assert await set_muted(db, bob, True)                               # the bot's /mute
    async with db.write() as conn:                                      # the evaluation's anti-gaming mute
        await conn.execute(insert(player_estimates).values(
            player_id=dave, n_tainted=20, n_honest_tainted=5, n_untainted=20, n_finds=20, s_alpha=1, s_beta=1,
            f_alpha=1, f_beta=1, s_mean=0.5, s_lower=0.1, f_mean=0.9, f_upper=0.99, muted=True, gated=False,
            updated_at=clock.now))
    for voter in (bob, dave, carol):
        await vote(service, voter, find, True)
    assert await scalar(db, select(func.count()).select_from(validations)) == 3
    assert await bonus_rows(db) == []                                    # 1 counting vote only
    summary = await service.summary(alice, sid)
    assert {a["answer_id"]: a["validation"] for i in summary["images"] for a in i["answers"]}[find] == "pending"
    await vote(service, erin, find, True)
    assert await bonus_rows(db) == [(alice, find, 20)]


async def test_muted_finders_finds_are_not_offered(service, db, clock):
    alice, _ = await play_all_wrong(service, clock, 1)
    bob = await service.upsert_player(2)
    await set_muted(db, alice, True)
    with pytest.raises(NotFound):
        await service.next_find(bob)
    await set_muted(db, alice, False)
    assert (await service.next_find(bob))["find_id"]


# ---------------------------------------------------------------------- evaluation feed

def test_posterior_with_votes_matches_bayes():
    prior, votes = 0.3, [Vote(True, 0.9, 0.1), Vote(False, 0.8, 0.3), Vote(True, 0.6, 0.2)]
    wrong = prior * 0.9 * (1 - 0.8) * 0.6          # P(votes, M=0)
    right = (1 - prior) * 0.1 * (1 - 0.3) * 0.2     # P(votes, M=1)
    assert posterior_with_votes(prior, votes) == pytest.approx(wrong / (wrong + right), rel=1e-12)
    assert posterior_with_votes(prior, list(reversed(votes))) == pytest.approx(wrong / (wrong + right), rel=1e-12)
    assert posterior_with_votes(0.5, [(True, 0.9, 0.1)]) == pytest.approx(0.9)
    assert posterior_with_votes(0.5, [(True, 0.9, 0.1)] * 2) == pytest.approx(81 / 82)
    assert posterior_with_votes(0.5, [(False, 0.9, 0.1)]) == pytest.approx(0.1)
    assert posterior_with_votes(0.42, [(True, 0.5, 0.5), (False, 0.7, 0.7)]) == pytest.approx(0.42)  # s = f: no news
    assert posterior_with_votes(0.42, []) == pytest.approx(0.42)
    assert posterior_with_votes(0.0, [(True, 0.9, 0.1)]) == 0.0 and posterior_with_votes(1.0, [(False, 0.9, 0.1)]) == 1.0
    extreme = posterior_with_votes(0.5, [(True, 1.0, 0.0)])            # clipped: finite, not exactly 1
    assert 0.999 < extreme < 1.0
    assert posterior_with_votes(0.5, [(True, 0.99, 0.01)] * 400) == pytest.approx(1.0)  # no overflow
    assert posterior_with_votes(0.5, [(False, 0.99, 0.01)] * 400) >= 0.0
    with pytest.raises(ValueError):
        posterior_with_votes(1.5, [])
    with pytest.raises(ValueError):
        posterior_with_votes(math.nan, [])


async def test_gap_evaluate_stores_vote_updated_posteriors(service, db, clock):
    """End to end: three players play, two vote on one find, `gap evaluate` runs; the
    find's exported posterior is its cell posterior updated by the two votes with the
    validators' stored s and f; finds without votes keep the cell posterior."""
    alice, sid = await play_all_wrong(service, clock, 1)
    bob, _ = await play_all_wrong(service, clock, 2)
    carol, _ = await play_all_wrong(service, clock, 3)
    finds = await finds_of(db, sid)
    await vote(service, bob, finds[0], True)
    await vote(service, carol, finds[0], False)
    clock.advance(10)
    await run_evaluation(db, now_ms=clock.now)
    async with db.read() as conn:
        est = {r.player_id: (r.s_mean, r.f_mean) for r in (await conn.execute(select(player_estimates))).all()}
        cell = {r.answer_id: r.posterior for r in (await conn.execute(
            select(find_answers.c.answer_id, find_cells.c.posterior).select_from(find_answers.join(
                find_cells, (find_cells.c.player_id == find_answers.c.player_id)
                & (find_cells.c.grp == find_answers.c.grp))))).all()}
        exported = {r.answer_id: r.posterior for r in (await conn.execute(answer_posteriors_query())).all()}
        stored = (await conn.execute(select(validation_posteriors))).all()
        votes = await conn.run_sync(votes_by_find)
    expected = posterior_with_votes(cell[finds[0]], [(True, *est[bob]), (False, *est[carol])])
    assert [(r.answer_id, r.votes) for r in stored] == [(finds[0], 2)]
    assert stored[0].prior == pytest.approx(cell[finds[0]])
    assert exported[finds[0]] == pytest.approx(expected)
    assert exported[finds[0]] != pytest.approx(cell[finds[0]])     # the votes moved it (s ≠ f here)
    assert all(exported[f] == pytest.approx(cell[f]) for f in finds[1:])
    assert [v.agrees for v in votes[finds[0]]] == [True, False]


async def test_admin_muted_finders_are_not_exported(service, db, clock):
    """A /mute takes effect on the export at once, before the next `gap evaluate`."""
    alice, sid = await play_all_wrong(service, clock, 1)
    finds = await finds_of(db, sid)
    async with db.write() as conn:
        await conn.execute(insert(find_answers), [{"answer_id": f, "player_id": alice, "grp": "unknown:count",
                                                   "question_type": "count", "created_at": clock.now} for f in finds])
        await conn.execute(insert(find_cells).values(player_id=alice, grp="unknown:count", posterior=0.95,
                                                     status="ok", updated_at=clock.now))
    records, _ = await collect_finds(db, 0.8)
    assert sorted(r.id for r in records) == sorted(finds)
    await set_muted(db, alice, True)
    records, _ = await collect_finds(db, 0.8)
    assert records == []
    everything, _ = await collect_finds(db, 0.8, unfiltered=True)    # kept, only not exported
    assert len(everything) == 5


# ---------------------------------------------------------------------- migration

def test_migration_upgrades_a_database_from_the_previous_head(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, PREVIOUS_HEAD)
    engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO players (player_key, muted, created_at) VALUES ('k', 0, 1)"))
        assert "validations" not in inspect(engine).get_table_names()
        upgrade(url, "pv_0001")  # this migration, whatever later ones add
        assert current_revision(url) == "pv_0001"
        inspector = inspect(engine)
        assert {c["name"] for c in inspector.get_columns("validations")} == set(validations.columns.keys())
        assert {c["name"] for c in inspector.get_columns("validation_posteriors")} == set(
            validation_posteriors.columns.keys())
        uniques = [tuple(u["column_names"]) for u in inspector.get_unique_constraints("validations")]
        assert ("answer_id", "validator_player_id") in uniques
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM players")).scalar_one() == 1   # data kept
        downgrade(url, PREVIOUS_HEAD)
        assert "validations" not in inspect(engine).get_table_names()
        upgrade(url)
        assert "validations" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
