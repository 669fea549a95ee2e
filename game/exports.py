"""Training-data exports (SPEC §3.1): the finds whose posterior passes θ, as JSON
Lines in the formats fine-tuning tools read, with the images copied next to them
and a dataset card. Formats:

- ``sharegpt``: ``{id, image, conversations: [{from: human, value: "<image>\\nQ"}, {from: gpt, value: A}]}``
- ``trl-sft``: ``{id, messages: [user (image + text), assistant (text)], images: [path]}`` (TRL's vision SFT)
- ``dpo``: ``{id, prompt, chosen, rejected, images}`` in TRL's conversational form;
  chosen = the player's correction, rejected = the model's wrong answer
- ``vqa``: ``{id, image, question, model_answer, correct_answer, posterior, question_type}``

The writer is independent of the database (``write_export`` takes records), so
the experiment's baselines (random pairs, unfiltered, ground truth) are written
by the same code as the product's export.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from sqlalchemy import and_, select

from game import tables as T
from game.db import Database
from game.evaluation_tables import answer_posteriors_query

FORMATS = ("sharegpt", "trl-sft", "dpo", "vqa")
DATA_FILE = "train.jsonl"
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


@dataclass(frozen=True)
class ExportRecord:
    id: str
    image_key: str            # opaque id: the file name stem, never a pool or source name
    image_mime: str
    question: str
    model_answer: str
    correct_answer: str
    posterior: float | None
    question_type: str
    model_id: str | None = None
    judged_at: int | None = None


def image_path(rec: ExportRecord) -> str:
    return f"images/{rec.image_key}.{_EXT.get(rec.image_mime, 'bin')}"


def to_json(rec: ExportRecord, fmt: str) -> dict:
    """One JSON Lines object of format `fmt` for a record."""
    img = image_path(rec)
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": rec.question}]}
    if fmt == "sharegpt":
        return {"id": rec.id, "image": img, "conversations": [
            {"from": "human", "value": "<image>\n" + rec.question},
            {"from": "gpt", "value": rec.correct_answer}]}
    if fmt == "trl-sft":
        return {"id": rec.id, "messages": [
            user, {"role": "assistant", "content": [{"type": "text", "text": rec.correct_answer}]}], "images": [img]}
    if fmt == "dpo":
        return {"id": rec.id, "prompt": [user],
                "chosen": [{"role": "assistant", "content": [{"type": "text", "text": rec.correct_answer}]}],
                "rejected": [{"role": "assistant", "content": [{"type": "text", "text": rec.model_answer}]}],
                "images": [img]}
    if fmt == "vqa":
        return {"id": rec.id, "image": img, "question": rec.question, "model_answer": rec.model_answer,
                "correct_answer": rec.correct_answer, "posterior": rec.posterior, "question_type": rec.question_type}
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def read_records(path: Path) -> list[dict]:
    """The JSON objects of an export's data file (or of a .jsonl path)."""
    path = Path(path)
    if path.is_dir():
        path = path / DATA_FILE
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def question_answer(obj: dict) -> tuple[str, str, str]:
    """(image path, question, target answer) of an export object of any format."""
    if "conversations" in obj:
        q = obj["conversations"][0]["value"].removeprefix("<image>\n")
        return obj["image"], q, obj["conversations"][1]["value"]
    if "messages" in obj:
        user = next(c["text"] for c in obj["messages"][0]["content"] if c["type"] == "text")
        ans = next(c["text"] for c in obj["messages"][1]["content"] if c["type"] == "text")
        return obj["images"][0], user, ans
    if "chosen" in obj:
        user = next(c["text"] for c in obj["prompt"][0]["content"] if c["type"] == "text")
        return obj["images"][0], user, obj["chosen"][0]["content"][0]["text"]
    return obj["image"], obj["question"], obj["correct_answer"]


def write_export(records: list[ExportRecord], images: dict[str, bytes], fmt: str, out: Path, *,
                 theta: float | None, title: str = "GAP export", notes: Iterable[str] = ()) -> dict:
    """Write DIR/train.jsonl, DIR/images/* and DIR/README.md (the dataset card); returns the card's numbers."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    tmp = out / (DATA_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(to_json(rec, fmt), ensure_ascii=False) + "\n")
    written = set()
    for rec in records:
        if rec.image_key in written:
            continue
        target = out / image_path(rec)
        if not target.exists():
            target.write_bytes(images[rec.image_key])
        written.add(rec.image_key)
    tmp.replace(out / DATA_FILE)
    card = dataset_card(records, fmt, theta, title=title, n_images=len(written), notes=notes)
    (out / "README.md").write_text(card["markdown"], encoding="utf-8")
    return card


def dataset_card(records: list[ExportRecord], fmt: str, theta: float | None, *, title: str, n_images: int,
                 notes: Iterable[str] = ()) -> dict:
    """Counts by question type, θ, date range and model ids, as Markdown and numbers."""
    types = Counter(r.question_type for r in records)
    models = Counter(r.model_id for r in records if r.model_id)
    times = [r.judged_at for r in records if r.judged_at]
    fmt_t = (lambda ms: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    date_range = f"{fmt_t(min(times))} – {fmt_t(max(times))}" if times else "n/a"
    posts = [r.posterior for r in records if r.posterior is not None]
    lines = [
        f"# {title}", "",
        f"- format: `{fmt}` (JSON Lines in `{DATA_FILE}`, images in `images/`)",
        f"- examples: {len(records)}; images: {n_images}",
        f"- θ (posterior threshold): {theta if theta is not None else 'none (unfiltered)'}",
        f"- mean posterior: {sum(posts) / len(posts):.3f}" if posts else "- mean posterior: n/a",
        f"- date range: {date_range}",
        f"- model ids: {', '.join(f'{m} ({n})' for m, n in models.most_common()) or 'n/a'}",
        "", "| question type | examples | share |", "|---|---:|---:|",
    ]
    for t, n in types.most_common():
        lines.append(f"| {t} | {n} | {n / max(len(records), 1):.1%} |")
    lines += ["", "Each example is a question a player asked about the image, the model's answer the player "
              "flagged as wrong, and the player's correction (the training target). Only flags whose posterior "
              "P(model mistake | flag) passed θ, from players neither muted nor gated, are included (SPEC §2)."]
    lines += [""] + [f"- {n}" for n in notes]
    return {"examples": len(records), "images": n_images, "theta": theta, "question_types": dict(types),
            "date_range": date_range, "model_ids": dict(models), "markdown": "\n".join(lines) + "\n"}


async def collect_finds(db: Database, theta: float, *, unfiltered: bool = False) -> tuple[list[ExportRecord], dict[str, bytes]]:
    """Finds evaluated by `gap evaluate` with posterior ≥ θ from trusted players (all finds when `unfiltered`)."""
    ap = answer_posteriors_query().subquery("ap")
    cond = [T.answers.c.correction.is_not(None)]
    if not unfiltered:
        # players.muted is checked here too: an admin /mute takes effect at once, not only
        # after the next `gap evaluate` rewrites the cells' status.
        cond += [ap.c.status == "ok", ap.c.posterior >= theta, T.players.c.muted.is_(False)]
    q = (
        select(T.answers.c.id, T.answers.c.question, T.answers.c.served_answer, T.answers.c.correction,
               T.answers.c.model_id, T.answers.c.judged_at, ap.c.posterior, ap.c.question_type,
               T.images.c.opaque_id, T.images.c.mime, T.images.c.id.label("image_id"))
        .select_from(ap.join(T.answers, ap.c.answer_id == T.answers.c.id)
                     .join(T.images, T.answers.c.image_id == T.images.c.id)
                     .join(T.players, T.answers.c.player_id == T.players.c.id))
        .where(and_(*cond))
        .order_by(T.answers.c.judged_at, T.answers.c.id)
    )
    async with db.read() as conn:
        rows = (await conn.execute(q)).all()
    images = await _image_bytes(db, {r.image_id for r in rows})
    records = [ExportRecord(id=r.id, image_key=r.opaque_id, image_mime=r.mime, question=r.question,
                            model_answer=r.served_answer, correct_answer=r.correction.strip(),
                            posterior=float(r.posterior), question_type=r.question_type, model_id=r.model_id,
                            judged_at=r.judged_at) for r in rows]
    return records, images


def missed_mistake_probability(pi: float, s: float, f: float) -> float:
    """P(model mistake | a player with sensitivity s and false-alarm rate f passed the answer), SPEC §2."""
    miss, keep = pi * (1.0 - s), (1.0 - pi) * (1.0 - f)
    return miss / (miss + keep) if miss + keep > 0 else 1.0


async def collect_confirmed(db: Database, theta: float, *, unfiltered: bool = False
                            ) -> tuple[list[ExportRecord], dict[str, bytes]]:
    """Answers that trusted players judged correct on untainted images, kept when the chance that the
    player missed a mistake, P(M=1 | pass) under the stored s, f and π, is at most 1 − θ.

    Why: corrections alone are a biased sample of what the model is asked — on the questions it gets
    wrong the answer is usually the one it cannot see ("yes, there is a purple one"), so training on
    them alone teaches that answer everywhere (measured: 500 corrections cost 4 points of complex
    held-out accuracy; with confirmations mixed in the same corrections helped). The model's own
    answer is the target of a confirmation. `unfiltered`: every correct verdict on an untainted image,
    whoever gave it (the experiment's no-θ baseline)."""
    from game.evaluation_store import get_state, stratum
    from game.evaluation_tables import player_estimates as PE
    from game.question_types import classify_question

    A, SI = T.answers, T.session_images
    q = (
        select(A.c.id, A.c.question, A.c.served_answer, A.c.model_id, A.c.judged_at, T.images.c.opaque_id,
               T.images.c.mime, T.images.c.complexity, T.images.c.id.label("image_id"), PE.c.s_mean, PE.c.f_mean)
        .select_from(A.join(SI, A.c.session_image_id == SI.c.id)
                     .join(T.images, A.c.image_id == T.images.c.id)
                     .join(T.players, A.c.player_id == T.players.c.id)
                     .outerjoin(PE, PE.c.player_id == A.c.player_id))
        .where(and_(A.c.verdict == "correct", SI.c.tainted.is_(False), A.c.tainted.is_(False),
                    *([] if unfiltered else [PE.c.muted.is_(False), PE.c.gated.is_(False),
                                             T.players.c.muted.is_(False)])))
        .order_by(A.c.judged_at, A.c.id)
    )
    async with db.read() as conn:
        pis = await get_state(conn, "pi", {})
        rows = (await conn.execute(q)).all()
    strata, pi_global = pis.get("strata", {}), float(pis.get("global", 0.5))
    records, image_ids = [], set()
    for r in rows:
        qtype = classify_question(r.question)
        p_miss = (missed_mistake_probability(strata.get(stratum(r.complexity, qtype), pi_global), r.s_mean, r.f_mean)
                  if r.s_mean is not None else 1.0)
        if p_miss > 1.0 - theta and not unfiltered:
            continue
        image_ids.add(r.image_id)
        records.append(ExportRecord(id=r.id, image_key=r.opaque_id, image_mime=r.mime, question=r.question,
                                    model_answer=r.served_answer, correct_answer=r.served_answer,
                                    posterior=round(1.0 - p_miss, 6), question_type=qtype, model_id=r.model_id,
                                    judged_at=r.judged_at))
    return records, await _image_bytes(db, image_ids)


async def _image_bytes(db: Database, image_ids: Iterable[int]) -> dict[str, bytes]:
    ids = sorted(image_ids)
    images: dict[str, bytes] = {}
    async with db.read() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for r in (await conn.execute(select(T.images.c.opaque_id, T.images.c.content)
                                         .where(T.images.c.id.in_(chunk)))).all():
                images[r.opaque_id] = bytes(r.content)
    return images


async def export_finds(db: Database, fmt: str, theta: float, out: Path, *, unfiltered: bool = False,
                       confirmed: bool = False) -> dict:
    """`gap export`: collect the finds at θ (and, with `confirmed`, the confirmations) and write them in `fmt`."""
    records, images = await collect_finds(db, theta, unfiltered=unfiltered)
    notes = []
    if confirmed and fmt == "dpo":
        notes.append("confirmations are not exported in `dpo`: a pair needs a rejected answer.")
    elif confirmed:
        conf, conf_images = await collect_confirmed(db, theta)
        records, images = records + conf, images | conf_images
        notes.append(f"{len(conf)} confirmations: answers trusted players judged correct, P(missed mistake) ≤ "
                     f"{1 - theta:.2f}; their target is the model's own answer.")
    return write_export(records, images, fmt, out, theta=None if unfiltered else theta,
                        title="GAP export: model mistakes found by players", notes=notes)
