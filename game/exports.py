"""Training-data exports (SPEC §3.1): the finds whose posterior passes θ (and, on
request, the confirmations), read from the database in chunks and written in the
formats fine-tuning tools read as-is — the shapes are in game/export_formats.py,
the incremental writer and the dataset card in game/export_writer.py and
game/export_card.py.

Why chunks: an export may hold millions of rows; each chunk of rows (and the bytes
of its images) is read in its own short read transaction and written before the
next is read, so memory stays flat in the number of rows (keyset pagination on
(judged_at, id), the export's order).
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable

from sqlalchemy import and_, func, or_, select, true

from game import tables as T
from game.db import Database
from game.evaluation_tables import answer_posteriors_query
from game.export_formats import FORMATS, ExportRecord, image_path, to_json
from game.export_writer import DATA_FILE, LICENSE, LLAVA_FILE, ExportWriter, data_file, write_export

__all__ = ["FORMATS", "ExportRecord", "image_path", "to_json", "DATA_FILE", "LLAVA_FILE", "ExportWriter", "data_file",
           "write_export", "read_records", "question_answer", "iter_finds", "iter_confirmed", "collect_finds",
           "collect_confirmed", "export_finds", "missed_mistake_probability", "in_strata", "clean_strata"]

CHUNK = 500
Chunk = tuple[list[ExportRecord], dict[str, bytes], int]   # records, their images' bytes, database rows read


def read_records(path: Path) -> list[dict]:
    """The JSON objects of an export's data file (or of a .jsonl / .json path)."""
    path = Path(path)
    if path.is_dir():
        path = path / (LLAVA_FILE if (path / LLAVA_FILE).exists() else DATA_FILE)
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def question_answer(obj: dict) -> tuple[str, str, str]:
    """(image path, question, target answer) of an export object of any JSON format."""
    if "conversations" in obj:
        q = obj["conversations"][0]["value"].removeprefix("<image>").removeprefix("\n")
        return (obj.get("images") or [obj.get("image")])[0], q, obj["conversations"][1]["value"]
    if "messages" in obj:
        user = next(c["text"] for c in obj["messages"][0]["content"] if c["type"] == "text")
        ans = next(c["text"] for c in obj["messages"][1]["content"] if c["type"] == "text")
        return obj["images"][0], user, ans
    if "chosen" in obj:
        user = next(c["text"] for c in obj["prompt"][0]["content"] if c["type"] == "text")
        return obj["images"][0], user, obj["chosen"][0]["content"][0]["text"]
    return obj["image"], obj["question"], obj["correct_answer"]


def _after(cols, last: tuple[int, str] | None):
    """Keyset condition: rows after `last` in (judged_at, id) order."""
    if last is None:
        return true()
    judged, ident = cols
    return or_(judged > last[0], and_(judged == last[0], ident > last[1]))


async def _pages(db: Database, query, cols, chunk: int) -> AsyncIterator[list]:
    """The rows of `query` (ordered by `cols` = (judged_at, id)), `chunk` at a time, each page its own read."""
    last = None
    while True:
        async with db.read() as conn:
            rows = (await conn.execute(query.where(_after(cols, last)).limit(chunk))).all()
        if not rows:
            return
        yield rows
        last = (rows[-1].judged_at, rows[-1].id)
        if len(rows) < chunk:
            return


Strata = tuple[str, ...]


def in_strata(strata: Strata):
    """Images of the given pool strata; a stratum also takes its styled sub-strata ("simple" takes
    "simple:dark"). Why an export filters by stratum: `gap ceiling` measures per stratum whether
    perfect labels can teach the model at all; corrections where they cannot (objects below the
    model's resolution) only teach it to guess, so an ML engineer exports the strata worth fixing."""
    if not strata:
        return true()
    col = T.images.c.complexity
    return or_(*(or_(col == s, col.startswith(f"{s}:", autoescape=True)) for s in strata))


def clean_strata(values: Iterable[str]) -> Strata:
    """Stratum names as a user types them ("simple, simple:dark"); each is letters, digits, _ - and :."""
    out = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            if len(part) > 64 or not all(ch.isalnum() or ch in "_-:" for ch in part):
                raise ValueError(f"not a stratum name: {part[:64]!r} (e.g. simple, complex, simple:dark)")
            out.append(part)
    return tuple(dict.fromkeys(out))


def _finds_query(theta: float, unfiltered: bool, strata: Strata = ()):
    ap = answer_posteriors_query().subquery("ap")
    cond = [T.answers.c.correction.is_not(None), in_strata(strata)]
    if not unfiltered:
        # players.muted is checked here too: an admin /mute takes effect at once, not only
        # after the next `gap evaluate` rewrites the cells' status.
        cond += [ap.c.status == "ok", ap.c.posterior >= theta, T.players.c.muted.is_(False)]
    joins = (ap.join(T.answers, ap.c.answer_id == T.answers.c.id)
             .join(T.images, T.answers.c.image_id == T.images.c.id)
             .join(T.players, T.answers.c.player_id == T.players.c.id))
    return (select(T.answers.c.id, T.answers.c.question, T.answers.c.served_answer, T.answers.c.correction,
                   T.answers.c.model_id, T.answers.c.judged_at, ap.c.posterior, ap.c.question_type,
                   T.images.c.opaque_id, T.images.c.mime, T.images.c.id.label("image_id"))
            .select_from(joins).where(and_(*cond)).order_by(T.answers.c.judged_at, T.answers.c.id))


async def iter_finds(db: Database, theta: float, *, unfiltered: bool = False, chunk: int = CHUNK,
                     strata: Strata = ()) -> AsyncIterator[Chunk]:
    """Finds evaluated by `gap evaluate` with posterior ≥ θ from trusted players (all finds when
    `unfiltered`), on images of `strata` (all when empty), `chunk` at a time with their images' bytes."""
    async for rows in _pages(db, _finds_query(theta, unfiltered, strata), (T.answers.c.judged_at, T.answers.c.id),
                             chunk):
        records = [ExportRecord(id=r.id, image_key=r.opaque_id, image_mime=r.mime, question=r.question,
                                model_answer=r.served_answer, correct_answer=r.correction.strip(),
                                posterior=float(r.posterior), question_type=r.question_type, model_id=r.model_id,
                                judged_at=r.judged_at, flagged=True) for r in rows]
        yield records, await _image_bytes(db, {r.image_id for r in rows}), len(rows)


async def _count(db: Database, query) -> int:
    """How many rows `query` reads (a progress bar's total)."""
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(query.order_by(None).subquery())))
                   .scalar_one())


async def _collect(chunks: AsyncIterator[Chunk]) -> tuple[list[ExportRecord], dict[str, bytes]]:
    records: list[ExportRecord] = []
    images: dict[str, bytes] = {}
    async for recs, imgs, _ in chunks:
        records += recs
        images |= imgs
    return records, images


async def collect_finds(db: Database, theta: float, *, unfiltered: bool = False, strata: Strata = ()
                        ) -> tuple[list[ExportRecord], dict[str, bytes]]:
    """All of :func:`iter_finds` in memory (the experiment's arms, small by design)."""
    return await _collect(iter_finds(db, theta, unfiltered=unfiltered, strata=strata))


def missed_mistake_probability(pi: float, s: float, f: float) -> float:
    """P(model mistake | a player with sensitivity s and false-alarm rate f passed the answer), SPEC §2."""
    miss, keep = pi * (1.0 - s), (1.0 - pi) * (1.0 - f)
    return miss / (miss + keep) if miss + keep > 0 else 1.0


def _confirmed_query(unfiltered: bool, strata: Strata = ()):
    from game.evaluation_tables import player_estimates as PE

    A, SI = T.answers, T.session_images
    return (
        select(A.c.id, A.c.question, A.c.served_answer, A.c.model_id, A.c.judged_at, T.images.c.opaque_id,
               T.images.c.mime, T.images.c.complexity, T.images.c.id.label("image_id"), PE.c.s_mean, PE.c.f_mean)
        .select_from(A.join(SI, A.c.session_image_id == SI.c.id)
                     .join(T.images, A.c.image_id == T.images.c.id)
                     .join(T.players, A.c.player_id == T.players.c.id)
                     .outerjoin(PE, PE.c.player_id == A.c.player_id))
        .where(and_(A.c.verdict == "correct", SI.c.tainted.is_(False), A.c.tainted.is_(False), in_strata(strata),
                    *([] if unfiltered else [PE.c.muted.is_(False), PE.c.gated.is_(False),
                                             T.players.c.muted.is_(False)])))
        .order_by(A.c.judged_at, A.c.id)
    )


async def iter_confirmed(db: Database, theta: float, *, unfiltered: bool = False, chunk: int = CHUNK,
                         strata: Strata = ()) -> AsyncIterator[Chunk]:
    """Answers that trusted players judged correct on untainted images, kept when the chance that the
    player missed a mistake, P(M=1 | pass) under the stored s, f and π, is at most 1 − θ.

    Why: corrections alone are a biased sample of what the model is asked — on the questions it gets
    wrong the answer is usually the one it cannot see ("yes, there is a purple one"), so training on
    them alone teaches that answer everywhere (measured: 500 corrections cost 4 points of complex
    held-out accuracy; with confirmations mixed in the same corrections helped). The model's own
    answer is the target of a confirmation. `unfiltered`: every correct verdict on an untainted image,
    whoever gave it (the experiment's no-θ baseline)."""
    from game.evaluation_store import get_state, stratum
    from game.question_types import classify_question

    async with db.read() as conn:
        pis = await get_state(conn, "pi", {})
    pi_strata, pi_global = pis.get("strata", {}), float(pis.get("global", 0.5))
    async for rows in _pages(db, _confirmed_query(unfiltered, strata), (T.answers.c.judged_at, T.answers.c.id),
                             chunk):
        records, image_ids = [], set()
        for r in rows:
            qtype = classify_question(r.question)
            p_miss = (missed_mistake_probability(pi_strata.get(stratum(r.complexity, qtype), pi_global), r.s_mean,
                                                 r.f_mean) if r.s_mean is not None else 1.0)
            if p_miss > 1.0 - theta and not unfiltered:
                continue
            image_ids.add(r.image_id)
            records.append(ExportRecord(id=r.id, image_key=r.opaque_id, image_mime=r.mime, question=r.question,
                                        model_answer=r.served_answer, correct_answer=r.served_answer,
                                        posterior=round(1.0 - p_miss, 6), question_type=qtype, model_id=r.model_id,
                                        judged_at=r.judged_at))
        yield records, await _image_bytes(db, image_ids), len(rows)


async def collect_confirmed(db: Database, theta: float, *, unfiltered: bool = False, strata: Strata = ()
                            ) -> tuple[list[ExportRecord], dict[str, bytes]]:
    """All of :func:`iter_confirmed` in memory (the experiment's arms, small by design)."""
    return await _collect(iter_confirmed(db, theta, unfiltered=unfiltered, strata=strata))


async def _image_bytes(db: Database, image_ids: Iterable[int]) -> dict[str, bytes]:
    ids = sorted(image_ids)
    images: dict[str, bytes] = {}
    async with db.read() as conn:
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            for r in (await conn.execute(select(T.images.c.opaque_id, T.images.c.content)
                                         .where(T.images.c.id.in_(part)))).all():
                images[r.opaque_id] = bytes(r.content)
    return images


Progress = Callable[[int, int], None]


async def export_finds(db: Database, fmt: str, theta: float, out: Path, *, unfiltered: bool = False,
                       confirmed: bool = False, progress: Progress | None = None, chunk: int = CHUNK,
                       license: str = LICENSE, strata: Strata = ()) -> dict:
    """`gap export`: stream the finds at θ (and, with `confirmed`, the confirmations) into `out` in `fmt`;
    returns the card's numbers. `progress(rows_done, rows_total)` after each chunk (a progress bar).
    `strata`: only images of these pool strata (and their styled sub-strata); empty: all."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    notes, sources = [], [iter_finds(db, theta, unfiltered=unfiltered, chunk=chunk, strata=strata)]
    total = await _count(db, _finds_query(theta, unfiltered, strata))
    if confirmed and fmt == "dpo":
        notes.append("confirmations are not exported in `dpo`: a pair needs a rejected answer.")
    elif confirmed:
        sources.append(iter_confirmed(db, theta, chunk=chunk, strata=strata))
        total += await _count(db, _confirmed_query(False, strata))
    filtering = ("every find with a correction (no θ, no muting)" if unfiltered else
                 f"finds with posterior P(model mistake | flag) ≥ {theta} from players neither muted nor gated "
                 "(SPEC §2)")
    if len(sources) > 1:
        filtering += "; plus confirmations with P(missed mistake) ≤ 1 − θ"
    if strata:
        filtering += f"; images of the strata {', '.join(strata)} only"
    read, per_source = 0, []
    writer = ExportWriter(out, fmt, theta=None if unfiltered else theta, notes=notes, filtering=filtering,
                          title="GAP export: model mistakes found by players", license=license)
    with writer:
        for source in sources:
            before = writer.counts.examples
            async for records, images, n_read in source:
                await asyncio.to_thread(writer.add, records, images)
                read += n_read
                if progress is not None:
                    progress(read, max(total, read))
            per_source.append(writer.counts.examples - before)
        if len(per_source) > 1:
            writer.notes.append(f"{per_source[1]} confirmations: answers trusted players judged correct, "
                                f"P(missed mistake) ≤ {1 - theta:.2f}; their target is the model's own answer.")
    card = writer.card
    card["confirmations"] = per_source[1] if len(per_source) > 1 else 0
    return card
