"""The duel service on a real migrated database (SPEC §3.4): batches, hidden gold, minimum
time, points, permanent removal, bad input, pairs from the game's stored answers."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from game import duel_rules as R
from game.duel_store import Removed, TooFast
from game.duel_tables import duel_items, duel_pairs
from game.errors import Conflict, Invalid, NotFound
from game.tables import points_ledger
from tests.game.duel_support import duel_service, item_truth, other, seed_scene_images

pytestmark = pytest.mark.both_backends


async def ledger_total(db, player_id: int) -> int:
    return await db.run_read(lambda c: int(c.execute(select(func.coalesce(func.sum(points_ledger.c.points), 0))
                                                     .where(points_ledger.c.player_id == player_id)).scalar_one()))


async def play_batch(duels, db, clock, player_id: int, pick) -> dict:
    """Play one batch; `pick(truth) -> side`. Returns the final state."""
    state = await duels.start(player_id)
    n = 0
    while state["status"] == "playing":
        item = state["item"]
        clock.advance(2)
        truth = await item_truth(db, item["item_id"])
        state = await duels.choose(player_id, item["item_id"], f"r-{player_id}-{item['item_id']}", pick(truth))
        n += 1
    assert n == R.BATCH_SIZE
    return state


async def test_a_batch_of_five_with_hidden_gold_and_points(db, clock, service):
    await seed_scene_images(db)
    duels = duel_service(db, clock)
    player = await service.upsert_player(1, "Ann")
    state = await duels.start(player)
    assert state["status"] == "playing" and state["item"]["index"] == 0 and state["item"]["total"] == 5
    assert state["tutorial_done"] is False
    assert await duels.start(player) == state          # resumes, same duel
    keys = set(state["item"])
    kinds, golds = set(), 0
    while state["status"] == "playing":
        item = state["item"]
        assert set(item) == keys                        # gold looks exactly like any other duel
        assert item["kind"] in ("caption", "answer")
        if item["kind"] == "caption":
            assert item["left"]["duel_image"] != item["right"]["duel_image"] and item["image"] is None
        else:
            assert item["image"] and item["left"]["text"] != item["right"]["text"]
        kinds.add(item["kind"])
        truth = await item_truth(db, item["item_id"])
        golds += truth["gold"]
        clock.advance(R.MIN_ITEM_SECONDS)
        state = await duels.choose(player, item["item_id"], f"r{item['index']}", truth["right"])
    assert golds >= 1
    result = state["result"]
    assert state["status"] == "finished" and result["duels"] == 5 and result["checks"] == golds
    assert result["checks_right"] == golds and result["points"] > 0
    assert await ledger_total(db, player) == result["points"]     # on the leaderboards
    board = await service.leaderboard("all", player_id=player)
    assert board["me"]["points"] == result["points"]
    stats = await duels.player_stats()
    assert stats[0]["chosen"] == 5 and stats[0]["median_ms"] == 1500 and stats[0]["too_fast"] == 0
    nxt = await duels.start(player)                     # a new batch, new duels
    assert nxt["status"] == "playing" and nxt["batch_id"] != state["batch_id"]


async def test_too_fast_is_refused_counted_and_stores_nothing(db, clock, service):
    duels = duel_service(db, clock, min_seconds=3)
    player = await service.upsert_player(2)
    state = await duels.start(player)
    item = state["item"]
    assert item["wait_ms"] == 3000
    clock.advance(2.9)
    for attempt in range(2):
        with pytest.raises(TooFast, match="too fast"):
            await duels.choose(player, item["item_id"], f"fast-{attempt}", "left")
    after = await duels.state(player)
    assert after["item"]["item_id"] == item["item_id"] and after["item"]["wait_ms"] == 100
    stats = await duels.player_stats()
    assert stats[0]["too_fast"] == 2 and stats[0]["chosen"] == 0
    clock.advance(0.1)
    ok = await duels.choose(player, item["item_id"], "fast-0", "left")   # the refused request id was not kept
    assert ok["item"]["index"] == 1
    assert (await duels.player_stats())[0]["median_ms"] == 3000


async def test_bad_choices_are_refused_and_store_nothing(db, clock, service):
    duels = duel_service(db, clock)
    ann, bob = await service.upsert_player(3), await service.upsert_player(4)
    a_state, b_state = await duels.start(ann), await duels.start(bob)
    first = a_state["item"]["item_id"]
    clock.advance(2)
    for bad in ("tie", None, "", "both"):
        with pytest.raises(Invalid):
            await duels.choose(ann, first, "x1", bad)
    for forged in ("0" * 32, "../etc", "", "x" * 65, 5, None):
        with pytest.raises(NotFound):
            await duels.choose(ann, forged, "x2", "left")
    with pytest.raises(NotFound):                       # another player's duel is not in Ann's batch
        await duels.choose(ann, b_state["item"]["item_id"], "x3", "left")
    with pytest.raises(Invalid):
        await duels.choose(ann, first, "", "left")      # request ids are required
    done = await duels.choose(ann, first, "req-1", "left")
    assert await duels.choose(ann, first, "req-1", "left") == done   # a retry replays, stores nothing new
    with pytest.raises(Conflict, match="already chosen"):
        await duels.choose(ann, first, "req-2", "right")
    with pytest.raises(Conflict, match="already used"):
        await service.validate_find(ann, "abc", "req-1", True)
    # a later duel of the batch is not the current one
    def later(conn):
        return conn.execute(select(duel_items.c.id).where(duel_items.c.batch_id == a_state["batch_id"],
                                                          duel_items.c.position == 3)).scalar_one()
    with pytest.raises(Conflict, match="not the current"):
        await duels.choose(ann, await db.run_read(later), "req-3", "left")
    chosen = await db.run_read(lambda c: c.execute(select(func.count()).where(
        duel_items.c.player_id == ann, duel_items.c.choice.is_not(None))).scalar_one())
    assert chosen == 1
    assert await ledger_total(db, ann) == 0


async def test_poor_players_are_removed_for_good_with_a_clear_message(db, clock, service):
    duels = duel_service(db, clock)
    player = await service.upsert_player(5)
    removed_after = None
    for batch in range(6):
        state = await play_batch(duels, db, clock, player, lambda t: other(t["right"]))
        if state["status"] == "removed":
            removed_after = batch
            break
    assert removed_after is not None
    assert "closed" in state["message"] and state["result"]["points"] == 0
    points = await ledger_total(db, player)
    with pytest.raises(Removed, match="closed"):
        await duels.start(player)
    assert (await duels.state(player))["status"] == "removed"
    assert await ledger_total(db, player) == points == 0
    stats = await duels.player_stats()
    assert stats[0]["removed"] is True and stats[0]["correct"] == 0


async def test_a_choice_after_removal_is_refused(db, clock, service):
    duels = duel_service(db, clock)
    player = await service.upsert_player(6)
    state = await duels.start(player)
    from game.duel_store import _remove

    await db.run_write(_remove, player, clock())        # e.g. removed by another worker's batch end
    clock.advance(2)
    with pytest.raises(Removed):
        await duels.choose(player, state["item"]["item_id"], "late", "left")
    assert (await duels.player_stats())[0]["chosen"] == 0


async def test_accurate_players_see_less_gold_and_each_duel_reaches_several_players(db, clock, service):
    duels = duel_service(db, clock, redundancy=3)
    players = [await service.upsert_player(100 + i) for i in range(3)]
    for p in players:
        await play_batch(duels, db, clock, p, lambda t: t["right"])
    counts = await db.run_read(lambda c: [r[0] for r in c.execute(
        select(func.count()).select_from(duel_items.join(duel_pairs, duel_pairs.c.id == duel_items.c.pair_id))
        .where(duel_pairs.c.gold.is_(False)).group_by(duel_items.c.pair_id)).all()])
    assert max(counts) >= 2                              # the same duel went to several players
    assert R.gold_rate(R.GoldRecord(40, 1)) < R.gold_rate(R.GoldRecord(0, 0))


async def test_answer_duels_from_the_games_stored_answers(db, clock, service):
    # play a GAP session: tainted answers and a correction on an untainted picture
    state = await service.start_or_resume(await service.upsert_player(7))
    player = await service.upsert_player(7)
    while state["status"] == "playing":
        asked = await service.ask(player, state["session_id"], f"q{state['image']['index']}", "How many circles?")
        state = await service.verdict(player, asked["answer_id"], f"v{state['image']['index']}", "wrong",
                                      "seventy")
    duels = duel_service(db, clock)
    await duels.refill()
    sources = await db.run_read(lambda c: {r[0]: r[1] for r in c.execute(
        select(duel_pairs.c.source, func.count()).group_by(duel_pairs.c.source)).all()})
    assert sources.get("tainted", 0) >= 1 and sources.get("correction", 0) >= 1
    again = await duels.refill()
    assert again == 0                                    # nothing imported twice
