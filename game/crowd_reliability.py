"""The crowd measures the model per image (SPEC §1.2, the second way into the reliable pool).

Why: a deployer's photographs carry no scene graph, and annotating thousands
by hand is what the game is meant to save. Every Correct/Wrong verdict on an
*untainted* answer is evidence about whether the model answered that image
right — as good as the judge: a player who catches deliberate mistakes (high
sensitivity s) and rarely cries wolf (low false-alarm rate f, SPEC §2) is
informative, one with s ≈ f is noise. Marginalising the unknown correctness
M of each answer, with a the model's accuracy on the image:

    P(Wrong | a)   = a·f + (1 − a)·s
    P(Correct | a) = a·(1 − f) + (1 − a)·(1 − s)

so each verdict weighs by its judge's (s, f) without any ad-hoc weight. The
posterior of a on a grid (Beta(1, 1) prior) gives a mean and a lower credible
bound; an image that has no ground-truth measurement and was not declared
joins the reliable pool when the bound passes the threshold, and leaves it
when later evidence pulls the bound below (recomputed on every `gap evaluate`).

>>> import numpy as np
>>> post = CrowdPosterior().fit(image=np.zeros(1, int), s=np.array([0.9]), f=np.array([0.05]),
...                             n_correct=np.array([40]), n_wrong=np.array([0]), n_images=1)
>>> bool(post.lower_[0] > 0.9), int(post.verdicts_[0])
(True, 40)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sqlalchemy import and_, bindparam, case, func, select, update

from game import tables as T
from game.db import fetch_tuples, insert_many
from game.evaluation_tables import crowd_counts

# 200 midpoints: the lower bound is read to ±0.0025, and a pool of 10⁵ (image, judge) pairs fits in
# about a second (a grid of 1,000 cost 5× that per `gap evaluate` in `gap bench eval`)
GRID = np.linspace(0.0025, 0.9975, 200)
CHUNK = 4096          # rows of (image, player) evidence per vectorised block (memory ≈ CHUNK × grid)


class CrowdPosterior:
    """Per-image posterior of the model's accuracy from judges' verdicts weighted by their (s, f).

    fit() sets `mean_`, `lower_` (the `quantile` lower credible bound) and `verdicts_` per image."""

    def __init__(self, quantile: float = 0.05, clip: float = 0.01) -> None:
        self.quantile = quantile
        self.clip = clip

    def fit(self, *, image: np.ndarray, s: np.ndarray, f: np.ndarray, n_correct: np.ndarray,
            n_wrong: np.ndarray, n_images: int) -> "CrowdPosterior":
        s = np.clip(np.asarray(s, float), self.clip, 1 - self.clip)
        f = np.clip(np.asarray(f, float), self.clip, 1 - self.clip)
        log_post = np.zeros((n_images, GRID.size))
        for lo in range(0, len(image), CHUNK):
            sl = slice(lo, lo + CHUNK)
            a = GRID[None, :]
            p_wrong = a * f[sl, None] + (1 - a) * s[sl, None]
            ll = np.asarray(n_correct[sl], float)[:, None] * np.log1p(-p_wrong)
            wrong = np.asarray(n_wrong[sl], float)
            if (hit := wrong > 0).any():  # most verdicts say Correct: log(p) only where a Wrong was said
                ll[hit] += wrong[hit, None] * np.log(p_wrong[hit])
            rows = np.asarray(image[sl], int)
            # sum each image's rows: a sparse indicator product (np.add.at on 2-D blocks was the slow part)
            log_post += sparse.csr_matrix((np.ones(rows.size), (rows, np.arange(rows.size))),
                                          shape=(n_images, rows.size)) @ ll
        post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        cdf = np.cumsum(post, axis=1)
        self.mean_ = post @ GRID
        self.lower_ = GRID[np.minimum((cdf < self.quantile).sum(axis=1), GRID.size - 1)]
        self.verdicts_ = np.bincount(np.asarray(image, int), weights=np.asarray(n_correct) + np.asarray(n_wrong),
                                     minlength=n_images)
        return self


async def _forget_lost_evidence(conn, kept: set[int], decided: dict[int, bool]) -> int:
    """Images whose every counting verdict is gone (their judges were muted since) lose their crowd
    estimate, and with it a crowd-given place in the reliable pool; returns how many left it."""
    I = T.images
    stale = [r.id for r in (await conn.execute(select(I.c.id).where(I.c.crowd_verdicts.is_not(None)))).all()
             if r.id not in kept]
    forget = {"crowd_verdicts": None, "crowd_accuracy": None, "crowd_lower": None}
    undecide = [{"iid": i} for i in stale if i in decided]
    keep = [{"iid": i} for i in stale if i not in decided]
    if undecide:
        await conn.execute(update(I).where(I.c.id == bindparam("iid")).values(**forget, reliable=False), undecide)
    if keep:
        await conn.execute(update(I).where(I.c.id == bindparam("iid")).values(**forget), keep)
    left = sum(decided[i] for i in stale if i in decided)
    return left


@dataclass(frozen=True)
class CrowdSummary:
    """What one run found: images with crowd evidence, the crowd-measured reliable pool, and its change."""

    images: int
    verdicts: int
    reliable: int
    joined: int
    left: int

    def line(self) -> str:
        return (f"crowd: {self.verdicts} verdicts on {self.images} images; reliable by the crowd {self.reliable} "
                f"(joined {self.joined}, left {self.left})")


async def add_crowd_counts(conn, window) -> None:
    """Add the verdicts on untainted answers in `window` (a WHERE clause over answers) to crowd_counts:
    every answer served honestly, on an untainted image or as the honest answer of a tainted one."""
    A = T.answers
    wrong = case((and_(A.c.verdict == "wrong", A.c.correction.is_not(None),
                       func.length(func.trim(A.c.correction)) > 0), 1), else_=0)
    right = case((A.c.verdict == "correct", 1), else_=0)
    new = await fetch_tuples(conn, select(A.c.image_id, A.c.player_id, func.sum(right), func.sum(wrong))
                             .where(and_(window, A.c.tainted.is_(False)))
                             .group_by(A.c.image_id, A.c.player_id))
    if not new:
        return
    c = crowd_counts.c
    have = {(i, p): (n_c, n_w) for i, p, n_c, n_w in
            await fetch_tuples(conn, select(c.image_id, c.player_id, c.n_correct, c.n_wrong))}
    ins, upd = [], []
    for image_id, player_id, n_right, n_wrong in new:
        old = have.get((image_id, player_id))
        if old is None:
            ins.append({"image_id": image_id, "player_id": player_id, "n_correct": int(n_right),
                        "n_wrong": int(n_wrong)})
        else:
            upd.append({"iid": image_id, "pid": player_id, "c": old[0] + int(n_right), "w": old[1] + int(n_wrong)})
    await insert_many(conn, crowd_counts, ins)  # one executemany each: a million answers give ~10⁵ pairs
    if upd:
        await conn.execute(update(crowd_counts).where(and_(
            crowd_counts.c.image_id == bindparam("iid"), crowd_counts.c.player_id == bindparam("pid")))
            .values(n_correct=bindparam("c"), n_wrong=bindparam("w")), upd)


async def refit_crowd(conn, judges: dict[int, tuple[float, float]], *, threshold: float,
                      quantile: float) -> CrowdSummary:
    """Recompute the crowd posterior of every image the crowd decides on — no ground-truth measurement
    (model_accuracy NULL) and not declared — with the judges' current (s, f) (players missing from
    `judges`, i.e. muted ones, do not count), and update that part of the reliable pool."""
    I = T.images
    decided = {r.id: bool(r.reliable) for r in (await conn.execute(
        select(I.c.id, I.c.reliable).where(and_(I.c.model_accuracy.is_(None), I.c.declared_reliable.is_(False))))).all()}
    # only images the crowd decides on get a posterior: one with ground truth or declared by the operator
    # is in or out of the pool for that reason (and a pool of measured scenes would cost a grid per verdict)
    c = crowd_counts.c
    rows = [r for r in await fetch_tuples(conn, select(c.image_id, c.player_id, c.n_correct, c.n_wrong))
            if r[1] in judges and r[0] in decided]
    image_ids = sorted({r[0] for r in rows})
    left = await _forget_lost_evidence(conn, set(image_ids), decided)
    if not rows:
        return CrowdSummary(0, 0, 0, 0, left)
    index = {i: k for k, i in enumerate(image_ids)}
    post = CrowdPosterior(quantile).fit(
        image=np.array([index[r[0]] for r in rows]), s=np.array([judges[r[1]][0] for r in rows]),
        f=np.array([judges[r[1]][1] for r in rows]), n_correct=np.array([r[2] for r in rows]),
        n_wrong=np.array([r[3] for r in rows]), n_images=len(image_ids))
    joined = reliable = 0
    measured, decisions = [], []
    for k, image_id in enumerate(image_ids):
        values = {"iid": image_id, "cv": int(post.verdicts_[k]), "ca": float(post.mean_[k]),
                  "cl": float(post.lower_[k])}
        if image_id in decided:
            now = bool(post.lower_[k] >= threshold)
            joined += now and not decided[image_id]
            left += decided[image_id] and not now
            reliable += now
            decisions.append({**values, "rel": now})
        else:
            measured.append(values)
    stmt = update(I).where(I.c.id == bindparam("iid")).values(
        crowd_verdicts=bindparam("cv"), crowd_accuracy=bindparam("ca"), crowd_lower=bindparam("cl"))
    if measured:
        await conn.execute(stmt, measured)
    if decisions:
        await conn.execute(stmt.values(reliable=bindparam("rel")), decisions)
    return CrowdSummary(len(image_ids), int(post.verdicts_.sum()), reliable, joined, left)
