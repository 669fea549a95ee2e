"""Preference duels, the GameLabel mode (SPEC §3.4): where the rules of
game/duel_rules.py meet storage (game/duel_store.py).

A player plays batches of five pairwise choices ("which picture fits the
caption?", "which answer is right?"), one tap each, no ties. Each batch mixes
hidden comparison gold (drawn at the player's `gold_rate`) with duels that
several players judge. Choices faster than the minimum time are refused and
counted; the last choice of a batch pays points by accuracy and may remove the
player for good. Every choice is idempotent on a client request id.

The pairs themselves come from a `PairMaker` injected by the composition root
(procedural scenes and near misses, models/scene_pairs.py) and from the game's
own stored answers (honest vs tainted, model vs correction, two model versions);
the service keeps a stock of them topped up, outside any transaction.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError

from game import duel_rules as R
from game import duel_stock as K
from game import duel_store as S
from game.db import Database
from game.errors import Unavailable
from game.locks import KeyedLocks
from game.service import Clock, clean_request_id, new_id, wall_clock_ms


class PairMaker(Protocol):
    """Makes duels with a known right side (models/scene_pairs.ScenePairMaker)."""

    def caption_duel(self, rng: random.Random, gold: bool) -> Any: ...       # .caption, .right_png, .wrong_png, ...
    def answer_duel(self, scene_json: str, rng: random.Random, gold: bool) -> Any: ...  # .question, .right, .wrong
    def same_answer(self, a: str, b: str) -> bool: ...


@dataclass(frozen=True)
class DuelConfig:
    """Settings of the mode (SPEC §5.1: GAP_DUEL_MIN_SECONDS, GAP_DUEL_REDUNDANCY)."""

    min_seconds: float = R.MIN_ITEM_SECONDS
    redundancy: int = 5          # players per non-gold duel
    stock: int = 20              # pairs kept ready per (kind, gold)
    answer_share: float = 0.5    # share of answer duels when the pool has pictures with scene graphs


class DuelService:
    """Batches, choices, results and the pair stock over a `Database`."""

    def __init__(self, db: Database, maker: PairMaker, *, config: DuelConfig | None = None,
                 clock: Clock = wall_clock_ms, rng: random.Random | None = None) -> None:
        self.db = db
        self.maker = maker
        self.config = config or DuelConfig()
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self._locks = KeyedLocks()
        self._stock_lock = asyncio.Lock()

    # ------------------------------------------------------------------ reads

    async def state(self, player_id: int, batch_id: str | None = None) -> dict[str, Any]:
        """The open batch's current duel, a finished batch's result, or "idle"/"removed"."""
        return await self.db.run_read(S.batch_state, player_id, batch_id, self.clock(), self.config.min_seconds)

    async def player_stats(self) -> list[dict[str, Any]]:
        return await self.db.run_read(S.tx_player_stats)

    async def image(self, opaque_id: str) -> tuple[str, bytes] | None:
        if not isinstance(opaque_id, str) or not opaque_id.isalnum() or len(opaque_id) > 64:
            return None
        return await self.db.run_read(S.tx_image, opaque_id)

    # ------------------------------------------------------------------ writes

    async def start(self, player_id: int) -> dict[str, Any]:
        """The player's open batch, or a new one (SPEC §3.4: batches of five); a removed
        player gets the removal message as an error."""
        async with self._locks.hold(player_id):
            state = await self.state(player_id)
            if state["status"] == "removed":
                raise S.Removed(R.REMOVAL_MESSAGE)
            if state["status"] == "playing":
                return state
            record = await self.db.run_read(S.gold_record, player_id)
            rng = random.Random(self.rng.getrandbits(64))
            golds = R.gold_count(rng, record)
            flags = [True] * golds + [False] * (R.BATCH_SIZE - golds)
            await self.refill(rng)
            stock = await self._stock()
            kinds = [self._kind(stock, gold, rng) for gold in flags]
            ids = [new_id() for _ in flags]
            batch_id = None
            for attempt in range(3):
                try:
                    batch_id = await self.db.run_write(S.tx_start_batch, player_id, self.clock(), new_id(), ids,
                                                       kinds, flags, self.config.redundancy, rng)
                except IntegrityError:  # another worker opened the player's batch: read it
                    batch_id = None
                    state = await self.state(player_id)
                    if state["status"] == "playing":
                        return state
                if batch_id is not None:
                    break
                await self.refill(rng, force=True)
                ids = [new_id() for _ in flags]
            if batch_id is None:
                raise Unavailable("no duels are ready right now; try again in a moment")
            return await self.state(player_id)

    def _kind(self, stock: dict[tuple[str, bool], int], gold: bool, rng: random.Random) -> str:
        """A slot's duel kind: answer duels at `answer_share` when there are some of this
        (gold or not) kind in stock, else caption duels (always makeable)."""
        if stock.get(("answer", gold), 0) > 0 and rng.random() < self.config.answer_share:
            return "answer"
        return "caption"

    async def choose(self, player_id: int, item_id: object, request_id: object, choice: object) -> dict[str, Any]:
        """One choice on the current duel; returns the new state (next duel, or the batch's
        result). Refused: a duel not in the player's open batch (404 for unknown or
        forged ids, 409 otherwise), a second choice, a choice after removal, a choice
        under the minimum time (counted). Nothing is stored by a refused choice."""
        request_id = clean_request_id(request_id)
        choice = R.clean_choice(choice)
        item_id = S.clean_item_id(item_id)
        async with self._locks.hold(player_id):
            try:
                result = await self.db.run_write(S.tx_choose, player_id, item_id, request_id, choice, self.clock(),
                                                 self.config.min_seconds)
            except IntegrityError:  # a concurrent retry stored it first
                result = await self.db.run_write(S.tx_choose, player_id, item_id, request_id, choice, self.clock(),
                                                 self.config.min_seconds)
            if "_too_fast" in result:
                wait = max(1, int(result["_too_fast"]))
                raise S.TooFast(f"too fast: look at both sides for at least {self.config.min_seconds:g} s "
                                f"(wait {wait / 1000:.1f} s more)")
            return await self.state(player_id, result["batch_id"])

    async def tutorial_done(self, player_id: int) -> dict[str, Any]:
        """The first-use tutorial was played (shown once per player)."""
        await self.db.run_write(S.tx_mark_tutorial, player_id, self.clock())
        return {"tutorial_done": True}

    # ------------------------------------------------------------------ the stock

    async def _stock(self) -> dict[tuple[str, bool], int]:
        return await self.db.run_read(K.tx_stock, self.config.redundancy)

    async def refill(self, rng: random.Random | None = None, force: bool = False) -> int:
        """Top the stock of pairs up to `config.stock` per (kind, gold): the game's stored
        answers first, then procedural duels. Pictures render in a thread, outside any
        transaction. Returns the number of pairs added."""
        rng = rng or random.Random(self.rng.getrandbits(64))
        async with self._stock_lock:
            stock = await self._stock()

            def target(key: tuple[str, bool]) -> int:
                # forced (a player has seen every pair in stock): a stock's worth more, whatever is stocked
                return stock.get(key, 0) + self.config.stock if force else self.config.stock

            new: list[K.NewPair] = []
            if stock.get(("answer", False), 0) < target(("answer", False)):
                new += await self.db.run_read(K.tx_answer_candidates, self.maker.same_answer)
            scenes = await self.db.run_read(K.tx_scene_images, self.config.stock * (2 if force else 1),
                                            rng.getrandbits(32))
            for gold in (True, False):
                missing = target(("caption", gold)) - stock.get(("caption", gold), 0)
                new += await asyncio.to_thread(self._caption_pairs, max(0, missing), gold, rng.getrandbits(64))
                if scenes:
                    missing = target(("answer", gold)) - stock.get(("answer", gold), 0) - sum(
                        1 for p in new if p.kind == "answer" and p.gold == gold)
                    new += self._answer_pairs(scenes, max(0, missing), gold, rng)
            if not new:
                return 0
            return await self.db.run_write(K.tx_insert_pairs, new, self.clock())

    def _caption_pairs(self, count: int, gold: bool, seed: int) -> list[K.NewPair]:
        rng = random.Random(seed)
        out = []
        for _ in range(count):
            made = self.maker.caption_duel(rng, gold)
            out.append(K.NewPair("caption", "gold" if gold else "near_miss", gold, made.caption,
                                 a_png=made.right_png, b_png=made.wrong_png, a_scene=made.right_scene,
                                 b_scene=made.wrong_scene, truth="a"))
        return out

    def _answer_pairs(self, scenes: list[tuple[int, str]], count: int, gold: bool,
                      rng: random.Random) -> list[K.NewPair]:
        out = []
        for i in range(count):
            image_id, scene_json = scenes[i % len(scenes)]
            made = self.maker.answer_duel(scene_json, rng, gold)
            out.append(K.NewPair("answer", "gold" if gold else "scene", gold, made.question, a_text=made.right,
                                 b_text=made.wrong, image_id=image_id, truth="a"))
        return out

