"""Preference data out of duels (SPEC §3.1, §3.4).

- `pairs`: one JSON line per choice, Pick-a-Pic style — the caption (or the question and
  its picture), both sides (`image_0`/`image_1` or `answer_0`/`answer_1`), the choice as
  `label_0`/`label_1`, and the labeller's accuracy on hidden gold with the weight their
  label gets (`labeller_weight`, game/duel_rules.label_weight), so a consumer can weight
  or filter labellers.
- `dpo` from answer duels: per duel, the accuracy-weighted winner as `chosen` and the
  other answer as `rejected` (TRL's conversational DPO format, written by game/exports.py),
  with the posterior that the winner is right under the one-coin labeller model.
- `rank_items`: Bradley–Terry scores of the duel sides with bootstrap 95 % intervals.

`weighted_labels` and `majority_labels` aggregate the choices per duel; the simulation
compares them with the truth of procedural duels.
"""
from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from game import duel_rules as R
from game.bradley_terry import BradleyTerry
from game.db import Database
from game.duel_tables import duel_images, duel_items, duel_pairs
from game.exports import DATA_FILE, ExportRecord, write_export
from game.tables import images, players

P, I = duel_pairs, duel_items
A_IMG, B_IMG = duel_images.alias("a_img"), duel_images.alias("b_img")
FORMATS = ("pairs", "dpo")


@dataclass(frozen=True)
class Choice:
    """One stored choice with everything an export needs."""

    item_id: str
    pair_id: int
    kind: str
    source: str
    gold: bool
    prompt: str
    image: str | None          # answer duels: opaque id of the picture
    image_mime: str | None
    a_key: str
    b_key: str
    a_text: str | None
    b_text: str | None
    a_image: str | None        # caption duels: opaque ids of the two pictures
    b_image: str | None
    truth: str | None
    choice: str                # "a" | "b"
    player_id: int
    labeller: str
    elapsed_ms: int
    chosen_at: int


def _load(conn) -> list[Choice]:
    rows = conn.execute(
        select(I.c.id, I.c.pair_id, I.c.choice, I.c.player_id, I.c.elapsed_ms, I.c.chosen_at, P.c.kind, P.c.source,
               P.c.gold, P.c.prompt, P.c.a_key, P.c.b_key, P.c.a_text, P.c.b_text, P.c.truth,
               images.c.opaque_id.label("image"), images.c.mime.label("image_mime"),
               A_IMG.c.opaque_id.label("a_image"), B_IMG.c.opaque_id.label("b_image"), players.c.player_key)
        .select_from(I.join(P, P.c.id == I.c.pair_id).join(players, players.c.id == I.c.player_id)
                     .outerjoin(images, images.c.id == P.c.image_id)
                     .outerjoin(A_IMG, A_IMG.c.id == P.c.a_image_id).outerjoin(B_IMG, B_IMG.c.id == P.c.b_image_id))
        .where(I.c.choice.is_not(None)).order_by(I.c.chosen_at, I.c.id)).all()
    return [Choice(r.id, r.pair_id, r.kind, r.source, bool(r.gold), r.prompt, r.image, r.image_mime, r.a_key, r.b_key,
                   r.a_text, r.b_text, r.a_image, r.b_image, r.truth, r.choice, r.player_id, r.player_key[:16],
                   int(r.elapsed_ms), int(r.chosen_at)) for r in rows]


def records_of(choices: list[Choice]) -> dict[int, R.GoldRecord]:
    """Each labeller's gold record, from the same choices."""
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for c in choices:
        if c.gold:
            counts[c.player_id][0 if c.choice == "a" else 1] += 1
    return defaultdict(R.GoldRecord, {p: R.GoldRecord(*v) for p, v in counts.items()})


async def load_choices(db: Database) -> tuple[list[Choice], dict[int, R.GoldRecord]]:
    choices = await db.run_read(_load)
    return choices, records_of(choices)


def weighted_labels(choices: list[Choice], records: dict[int, R.GoldRecord], iterations: int = 10
                    ) -> dict[int, tuple[str, float]]:
    """Per non-gold duel: (winning side, P(it is right)) from accuracy-weighted choices.

    A labeller's weight is the log-odds of their accuracy (the one-coin model's optimal
    vote weight, 0 at or below chance). Accuracy starts from hidden gold alone, but gold
    is easier than a near miss, so gold overstates it where it matters; a few EM rounds
    (one-coin Dawid–Skene anchored by gold) then add each labeller's expected agreement
    with the current consensus on the other duels. Duels whose weights cancel are left out."""
    votes = [c for c in choices if not c.gold]
    weights = {p: R.label_weight(r) for p, r in records.items()}
    posterior: dict[int, float] = {}
    for _ in range(iterations + 1):
        margin: dict[int, float] = defaultdict(float)
        for c in votes:
            margin[c.pair_id] += weights.get(c.player_id, 0.0) * (1 if c.choice == "a" else -1)
        posterior = {pid: 1 / (1 + math.exp(-max(-50.0, min(50.0, m)))) for pid, m in margin.items()}
        right: dict[int, float] = defaultdict(float)
        seen: dict[int, int] = defaultdict(int)
        for c in votes:
            q = posterior[c.pair_id]
            right[c.player_id] += q if c.choice == "a" else 1 - q
            seen[c.player_id] += 1
        for p, rec in records.items():
            acc = (1 + rec.correct + right[p]) / (2 + rec.total + seen[p])
            weights[p] = max(0.0, math.log(acc / (1 - acc)))
    # weights that cancel up to rounding (sums in another order) decide nothing either
    return {pid: ("a" if q > 0.5 else "b", max(q, 1 - q)) for pid, q in posterior.items() if abs(q - 0.5) > 1e-9}


def majority_labels(choices: list[Choice]) -> dict[int, str]:
    """Per non-gold duel: the side most labellers chose (ties left out)."""
    votes: dict[int, int] = defaultdict(int)
    for c in choices:
        if not c.gold:
            votes[c.pair_id] += 1 if c.choice == "a" else -1
    return {pid: ("a" if v > 0 else "b") for pid, v in votes.items() if v != 0}


def _pair_line(c: Choice, rec: R.GoldRecord) -> dict[str, Any]:
    line: dict[str, Any] = {"id": c.item_id, "pair_id": c.pair_id, "kind": c.kind, "source": c.source}
    if c.kind == "caption":
        line.update(caption=c.prompt, image_0=f"images/{c.a_image}.png", image_1=f"images/{c.b_image}.png")
    else:
        line.update(question=c.prompt, image=f"images/{c.image}.{_ext(c.image_mime)}", answer_0=c.a_text,
                    answer_1=c.b_text)
    line.update(label_0=1.0 if c.choice == "a" else 0.0, label_1=1.0 if c.choice == "b" else 0.0,
                labeller=c.labeller, labeller_accuracy=round(R.mean_accuracy(rec), 4),
                labeller_weight=round(R.label_weight(rec), 4), check=c.gold, elapsed_ms=c.elapsed_ms)
    return line


def _ext(mime: str | None) -> str:
    return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(mime or "", "bin")


def _image_bytes(conn, pool_ids: set[str], duel_ids: set[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if pool_ids:
        out |= {r.opaque_id: bytes(r.content) for r in conn.execute(
            select(images.c.opaque_id, images.c.content).where(images.c.opaque_id.in_(sorted(pool_ids)))).all()}
    if duel_ids:
        out |= {r.opaque_id: bytes(r.content) for r in conn.execute(
            select(duel_images.c.opaque_id, duel_images.c.content)
            .where(duel_images.c.opaque_id.in_(sorted(duel_ids)))).all()}
    return out


async def export_pairs(db: Database, out: Path) -> dict[str, Any]:
    """Write DIR/train.jsonl (one line per choice), DIR/images/ and a dataset card."""
    choices, records = await load_choices(db)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    pool = {c.image for c in choices if c.image}
    duel = {x for c in choices for x in (c.a_image, c.b_image) if x}
    blobs = await db.run_read(_image_bytes, pool, duel)
    mimes = {c.image: c.image_mime for c in choices if c.image}
    for key, content in blobs.items():
        name = f"{key}.{_ext(mimes[key])}" if key in mimes else f"{key}.png"
        target = out / "images" / name
        if not target.exists():
            target.write_bytes(content)
    tmp = out / (DATA_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for c in choices:
            fh.write(json.dumps(_pair_line(c, records[c.player_id]), ensure_ascii=False) + "\n")
    tmp.replace(out / DATA_FILE)
    kinds = defaultdict(int)
    for c in choices:
        kinds[c.kind] += 1
    card = {"examples": len(choices), "images": len(blobs), "kinds": dict(kinds),
            "labellers": len(records), "checks": sum(c.gold for c in choices)}
    (out / "README.md").write_text(
        "# GAP duels: pairwise preferences\n\n"
        f"- format: `pairs` (JSON Lines in `{DATA_FILE}`, one line per choice; images in `images/`)\n"
        f"- choices: {card['examples']} ({', '.join(f'{k}: {n}' for k, n in kinds.items()) or 'none'}); "
        f"labellers: {card['labellers']}; images: {card['images']}\n"
        f"- `check: true` marks hidden comparison gold (one side made for another caption or question)\n"
        "- `labeller_accuracy`: posterior mean of the labeller's accuracy on gold, Beta(1 + right, 1 + wrong); "
        "`labeller_weight`: its log-odds, 0 at or below chance — weight labels by it (SPEC §3.4)\n",
        encoding="utf-8")
    return card


async def export_dpo(db: Database, out: Path, min_confidence: float = 0.5) -> dict[str, Any]:
    """DPO pairs from answer duels: the weighted winner is `chosen` (SPEC §3.1's `dpo` format)."""
    choices, records = await load_choices(db)
    labels = weighted_labels(choices, records)
    first = {}
    for c in choices:
        if c.kind == "answer" and not c.gold and c.pair_id in labels:
            first.setdefault(c.pair_id, c)
    recs = []
    for pid, c in first.items():
        side, conf = labels[pid]
        if conf <= min_confidence:
            continue
        chosen, rejected = (c.a_text, c.b_text) if side == "a" else (c.b_text, c.a_text)
        recs.append(ExportRecord(id=f"duel{pid}", image_key=c.image, image_mime=c.image_mime or "image/png",
                                 question=c.prompt, model_answer=rejected, correct_answer=chosen,
                                 posterior=round(conf, 6), question_type=c.source, judged_at=c.chosen_at, flagged=True))
    blobs = await db.run_read(_image_bytes, {r.image_key for r in recs}, set())
    return write_export(recs, blobs, "dpo", out, theta=min_confidence, title="GAP duels: answer preferences (DPO)",
                        notes=["chosen = the accuracy-weighted winner of an answer duel; posterior = P(chosen is "
                               "right) under the one-coin labeller model; question type column = the duel's source "
                               "(tainted, correction, models, scene)."])


async def rank_items(db: Database, n_boot: int = 200, seed: int = 0,
                     progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Bradley–Terry scores of duel sides over the non-gold choices, weighted by labeller
    accuracy, with bootstrap 95 % intervals; best first."""
    choices, records = await load_choices(db)
    winners, losers, weights, about = [], [], [], {}
    for c in choices:
        if c.gold:
            continue
        w = R.label_weight(records[c.player_id])
        if w <= 0:
            continue
        win, lose = (c.a_key, c.b_key) if c.choice == "a" else (c.b_key, c.a_key)
        winners.append(win)
        losers.append(lose)
        weights.append(w)
        for key, text, img in ((c.a_key, c.a_text, c.a_image), (c.b_key, c.b_text, c.b_image)):
            about.setdefault(key, {"kind": c.kind, "prompt": c.prompt,
                                   "side": text if c.kind == "answer" else f"/duel-img/{img}"})
    if not winners:
        return []
    bt = BradleyTerry().fit(winners, losers, weights)
    await asyncio.to_thread(bt.bootstrap, n_boot=n_boot, seed=seed, progress=progress)
    wins = defaultdict(int)
    seen = defaultdict(int)
    for w_, l_ in zip(winners, losers):
        wins[w_] += 1
        seen[w_] += 1
        seen[l_] += 1
    rows = [dict(about[key], item=key, score=round(float(bt.scores_[i]), 4), ci_low=round(float(bt.ci_low_[i]), 4),
                 ci_high=round(float(bt.ci_high_[i]), 4), wins=wins[key], comparisons=seen[key])
            for i, key in enumerate(bt.items_)]
    return sorted(rows, key=lambda r: -r["score"])
