"""The stock of duels (SPEC §3.4): storing new pairs and their pictures, counting the pairs
still wanted, and finding answer duels in what the game stored. Synchronous `fn(conn, ...)`
transactions for `Database.run_read` / `run_write`, in plain Core (SQLite and PostgreSQL)."""
from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select

from game import storage as q
from game.duel_tables import duel_images, duel_items, duel_pairs, duel_players
from game.tables import answers, images

P, I = duel_pairs, duel_items


@dataclass(frozen=True)
class NewPair:
    """A duel to store: side a and side b as pictures (PNG bytes) or texts."""

    kind: str
    source: str
    gold: bool
    prompt: str
    a_png: bytes | None = None
    b_png: bytes | None = None
    a_scene: str | None = None
    b_scene: str | None = None
    a_text: str | None = None
    b_text: str | None = None
    image_id: int | None = None        # answer duels: the picture of the game's pool
    truth: str | None = None
    answer_id: str | None = None
    a_mime: str = "image/png"
    b_mime: str = "image/png"


def _sha(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def _text_key(image_id: int | None, prompt: str, text: str) -> str:
    """The Bradley–Terry item of an answer: the same words to the same question on the same picture."""
    return "t" + _sha(image_id, prompt.strip().lower(), " ".join(text.lower().split()))[:40]


def _store_duel_image(conn, png: bytes, scene_json: str | None, now: int, opaque: str,
                      mime: str = "image/png") -> tuple[int, str]:
    sha = hashlib.sha256(png).hexdigest()
    row = conn.execute(select(duel_images.c.id, duel_images.c.opaque_id).where(duel_images.c.sha256 == sha)).first()
    if row is not None:
        return row.id, row.opaque_id
    result = conn.execute(insert(duel_images).values(opaque_id=opaque, sha256=sha, mime=mime, content=png,
                                                     scene_json=scene_json, created_at=now))
    return result.inserted_primary_key[0], opaque


def tx_insert_pairs(conn, pairs: Sequence[NewPair], now: int) -> int:
    """Store new pairs (and their pictures); a pair already stored (same content) is skipped.
    Returns how many were new."""
    added = 0
    for pair in pairs:
        values: dict[str, Any] = {"kind": pair.kind, "source": pair.source, "gold": pair.gold, "prompt": pair.prompt,
                                  "image_id": pair.image_id, "truth": pair.truth, "answer_id": pair.answer_id,
                                  "created_at": now}
        if pair.kind == "caption":
            a_id, a_opaque = _store_duel_image(conn, pair.a_png, pair.a_scene, now, q.new_id(),
                                               pair.a_mime)
            b_id, b_opaque = _store_duel_image(conn, pair.b_png, pair.b_scene, now, q.new_id(),
                                               pair.b_mime)
            values.update(a_image_id=a_id, b_image_id=b_id, a_key="i" + a_opaque, b_key="i" + b_opaque)
            key = _sha("caption", pair.prompt, a_opaque, b_opaque, pair.gold)
        else:
            values.update(a_text=pair.a_text, b_text=pair.b_text,
                          a_key=_text_key(pair.image_id, pair.prompt, pair.a_text),
                          b_key=_text_key(pair.image_id, pair.prompt, pair.b_text))
            key = _sha("answer", pair.image_id, pair.prompt, *sorted((values["a_key"], values["b_key"])), pair.gold)
        if conn.execute(select(P.c.id).where(P.c.pair_key == key)).first() is not None:
            continue
        conn.execute(insert(P).values(pair_key=key, **values))
        added += 1
    return added


# ---------------------------------------------------------------------- stock

def judgments():
    """Players given each pair so far, not counting removed players: their labels carry no
    weight, so a pair they judged is shown to others until it has its several players."""
    removed = duel_players.alias("removed")
    return (select(I.c.pair_id, func.count().label("n"))
            .select_from(I.outerjoin(removed, removed.c.player_id == I.c.player_id))
            .where(removed.c.removed_at.is_(None)).group_by(I.c.pair_id).subquery("judged"))


def tx_stock(conn, redundancy: int) -> dict[tuple[str, bool], int]:
    """Pairs still wanted per (kind, gold): gold pairs all count, other pairs while
    fewer than `redundancy` players have been given them."""
    judged = judgments()
    n = func.coalesce(judged.c.n, 0)
    rows = conn.execute(select(P.c.kind, P.c.gold, func.count()).select_from(P.outerjoin(judged, judged.c.pair_id == P.c.id))
                        .where(or_(P.c.gold.is_(True), n < redundancy)).group_by(P.c.kind, P.c.gold)).all()
    return {(r[0], bool(r[1])): int(r[2]) for r in rows}


def tx_scene_images(conn, limit: int, rng_seed: int) -> list[tuple[int, str]]:
    """(id, scene_json) of up to `limit` pictures of the game's pool with a scene graph
    (answer duels are asked about them), a seeded sample; only the sample's graphs are read."""
    ids = [r[0] for r in conn.execute(select(images.c.id).where(images.c.scene_json.is_not(None))
                                      .order_by(images.c.id)).all()]
    chosen = random.Random(rng_seed).sample(ids, min(limit, len(ids)))
    if not chosen:
        return []
    graphs = dict(conn.execute(select(images.c.id, images.c.scene_json).where(images.c.id.in_(chosen))).all())
    return [(i, graphs[i]) for i in chosen]


def tx_answer_candidates(conn, same: Callable[[str, str], bool], limit: int = 200) -> list[NewPair]:
    """Answer duels from what the game stored (SPEC §3.4): honest vs tainted answers, the
    model's answer vs a player's correction, and two model versions' answers to the same
    question on the same picture. Sides that `same` says agree (the model area's answer
    equality, SPEC §1.2) are left out."""
    answers_match = same
    out: list[NewPair] = []
    done = select(P.c.answer_id).where(P.c.answer_id.is_not(None))
    tainted = conn.execute(select(answers.c.id, answers.c.image_id, answers.c.question, answers.c.honest_answer,
                                  answers.c.served_answer)
                           .where(and_(answers.c.tainted.is_(True), answers.c.id.not_in(done)))
                           .order_by(answers.c.asked_at).limit(limit)).all()
    for r in tainted:
        if not answers_match(r.honest_answer, r.served_answer):
            out.append(NewPair("answer", "tainted", False, r.question, a_text=r.honest_answer, b_text=r.served_answer,
                               image_id=r.image_id, answer_id=r.id))
    corrected = conn.execute(select(answers.c.id, answers.c.image_id, answers.c.question, answers.c.served_answer,
                                    answers.c.correction)
                             .where(and_(answers.c.verdict == "wrong", answers.c.correction.is_not(None),
                                         answers.c.tainted.is_(False), answers.c.id.not_in(done)))
                             .order_by(answers.c.judged_at).limit(limit)).all()
    for r in corrected:
        if not answers_match(r.served_answer, r.correction):
            out.append(NewPair("answer", "correction", False, r.question, a_text=r.correction, b_text=r.served_answer,
                               image_id=r.image_id, answer_id=r.id))
    other = answers.alias("other")
    versions = conn.execute(select(answers.c.id, answers.c.image_id, answers.c.question, answers.c.honest_answer,
                                   other.c.honest_answer.label("other_answer"))
                            .join(other, and_(other.c.image_id == answers.c.image_id,
                                              func.lower(other.c.question) == func.lower(answers.c.question),
                                              other.c.model_id > answers.c.model_id))
                            .where(answers.c.id.not_in(done)).limit(limit)).all()
    for r in versions:
        if not answers_match(r.honest_answer, r.other_answer):
            out.append(NewPair("answer", "models", False, r.question, a_text=r.honest_answer, b_text=r.other_answer,
                               image_id=r.image_id, answer_id=r.id))
    return out
