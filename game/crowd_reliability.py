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
from sqlalchemy import and_, bindparam, case, or_, select, update

from game import tables as T
from game.db import fetch_tuples, insert_tuples
from game.evaluation_tables import crowd_counts

# 200 midpoints: the lower bound is read to ±0.0025 (a grid of 1,000 cost 5× the time per
# `gap evaluate` in `gap bench eval` when the fit took a logarithm per pair and grid point)
GRID = np.linspace(0.0025, 0.9975, 200)


class CrowdPosterior:
    """Per-image posterior of the model's accuracy from judges' verdicts weighted by their (s, f).

    fit() sets `mean_`, `lower_` (the `quantile` lower credible bound) and `verdicts_` per image.
    s and f are given per pair, or per judge with `judge` (each pair's index into them).

    Why factorised by judge: a pair's log-likelihood is n_correct·log(1 − P(Wrong | a)) +
    n_wrong·log P(Wrong | a), and P(Wrong | a) depends on the pair only through its judge's (s, f).
    So the two log curves are computed once per distinct judge on the grid, and each image's log
    posterior is a sparse (images × judges) count matrix times them — the same sum as per pair
    (up to floating-point summation order), without a logarithm per pair and grid point."""

    def __init__(self, quantile: float = 0.05, clip: float = 0.01) -> None:
        self.quantile = quantile
        self.clip = clip

    def fit(self, *, image: np.ndarray, s: np.ndarray, f: np.ndarray, n_correct: np.ndarray,
            n_wrong: np.ndarray, n_images: int, judge: np.ndarray | None = None) -> "CrowdPosterior":
        s = np.clip(np.asarray(s, float), self.clip, 1 - self.clip)
        f = np.clip(np.asarray(f, float), self.clip, 1 - self.clip)
        rows = np.asarray(image, np.int64)
        n_correct, n_wrong = np.asarray(n_correct, float), np.asarray(n_wrong, float)
        if judge is None:  # (s, f) per pair: the distinct ones are the judges
            judges, judge = np.unique(np.stack([s, f], axis=1), axis=0, return_inverse=True)
        else:
            judges = np.stack([s, f], axis=1)
        judge = np.asarray(judge, np.int64).reshape(-1)
        p_wrong = GRID[None, :] * judges[:, 1:2] + (1 - GRID[None, :]) * judges[:, 0:1]   # judges × grid
        shape = (n_images, len(judges))
        log_post = (sparse.csr_matrix((n_correct, (rows, judge)), shape=shape) @ np.log1p(-p_wrong)
                    + sparse.csr_matrix((n_wrong, (rows, judge)), shape=shape) @ np.log(p_wrong))
        log_post = np.asarray(log_post).reshape(n_images, GRID.size)
        post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        cdf = np.cumsum(post, axis=1)
        self.mean_ = post @ GRID
        self.lower_ = GRID[np.minimum((cdf < self.quantile).sum(axis=1), GRID.size - 1)]
        self.verdicts_ = np.bincount(rows, weights=n_correct + n_wrong, minlength=n_images)
        return self


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


@dataclass
class CrowdPairs:
    """(image, judge) evidence as parallel arrays, one entry per pair, sorted by (image, player):
    the crowd_counts table in numpy, kept between adding a run's verdicts and the refit."""

    image: np.ndarray
    player: np.ndarray
    n_correct: np.ndarray
    n_wrong: np.ndarray

    @classmethod
    def from_verdicts(cls, image, player, correct, wrong) -> "CrowdPairs":
        """Sum per-answer verdicts (1/0 arrays, one entry per answer) per (image, player) pair."""
        image, player = np.asarray(image, np.int64), np.asarray(player, np.int64)
        keys, pair = np.unique(_key(image, player), return_inverse=True)
        pair = pair.reshape(-1)

        def total(v) -> np.ndarray:
            return np.bincount(pair, weights=np.asarray(v, float), minlength=keys.size).astype(np.int64)

        return cls(keys >> 32, keys & 0xFFFFFFFF, total(correct), total(wrong))

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> "CrowdPairs":
        """Rows of (image_id, player_id, n_correct, n_wrong) in any order."""
        a = np.array(rows, dtype=np.int64).reshape(-1, 4)
        a = a[np.argsort(_key(a[:, 0], a[:, 1]), kind="stable")]
        return cls(a[:, 0], a[:, 1], a[:, 2], a[:, 3])

    def __len__(self) -> int:
        return int(self.image.size)

    def keys(self) -> np.ndarray:
        return _key(self.image, self.player)

    def take(self, which) -> "CrowdPairs":
        return CrowdPairs(self.image[which], self.player[which], self.n_correct[which], self.n_wrong[which])

    def rows(self) -> list[tuple[int, int, int, int]]:
        return list(zip(self.image.tolist(), self.player.tolist(), self.n_correct.tolist(), self.n_wrong.tolist()))


def _key(image: np.ndarray, player: np.ndarray) -> np.ndarray:
    """One sortable int64 per (image, player): ids are 32-bit."""
    return (np.asarray(image, np.int64) << 32) | np.asarray(player, np.int64)


async def add_crowd_counts(conn, new: CrowdPairs) -> CrowdPairs:
    """Add a run's (image, judge) verdict counts on untainted answers — every answer served honestly,
    on an untainted image or as the honest answer of a tainted one — to crowd_counts; returns the
    whole table after the addition, so the refit does not read it again."""
    c = crowd_counts.c
    old = CrowdPairs.from_rows(await fetch_tuples(conn, select(c.image_id, c.player_id, c.n_correct, c.n_wrong)))
    if not len(new):
        return old
    old_keys, new_keys = old.keys(), new.keys()
    pos = np.searchsorted(old_keys, new_keys)
    found = pos < old_keys.size
    found[found] = old_keys[pos[found]] == new_keys[found]
    at = pos[found]
    old.n_correct[at] += new.n_correct[found]
    old.n_wrong[at] += new.n_wrong[found]
    fresh = new.take(~found)
    # one executemany each: a million answers give ~10⁵ pairs, a later run's few thousand mostly updates
    await insert_tuples(conn, crowd_counts, ["image_id", "player_id", "n_correct", "n_wrong"], fresh.rows())
    if at.size:
        await conn.execute(update(crowd_counts).where(and_(
            crowd_counts.c.image_id == bindparam("iid"), crowd_counts.c.player_id == bindparam("pid")))
            .values(n_correct=bindparam("c"), n_wrong=bindparam("w")),
            [{"iid": i, "pid": p, "c": n_c, "w": n_w} for i, p, n_c, n_w in old.take(at).rows()])
    merged = CrowdPairs(*(np.concatenate([a, b]) for a, b in
                          zip((old.image, old.player, old.n_correct, old.n_wrong),
                              (fresh.image, fresh.player, fresh.n_correct, fresh.n_wrong))))
    return merged.take(np.argsort(merged.keys(), kind="stable"))


async def refit_crowd(conn, pairs: CrowdPairs, judges: dict[int, tuple[float, float]], *, threshold: float,
                      quantile: float) -> CrowdSummary:
    """Recompute the crowd posterior of every image the crowd decides on — no ground-truth measurement
    (model_accuracy NULL) and not declared — from all (image, judge) `pairs` with the judges' current
    (s, f) (players missing from `judges`, i.e. muted ones, do not count), and update that part of the
    reliable pool. Only images whose stored estimate or pool place changed are written."""
    I = T.images
    crowd_decides = and_(I.c.model_accuracy.is_(None), I.c.declared_reliable.is_(False))
    # only images the crowd decides on get a posterior: one with ground truth or declared by the operator
    # is in or out of the pool for that reason (and a pool of measured scenes would cost a grid per verdict)
    stored = {r[0]: r[1:] for r in await fetch_tuples(conn, select(
        I.c.id, case((crowd_decides, 1), else_=0), I.c.reliable, I.c.crowd_verdicts, I.c.crowd_accuracy,
        I.c.crowd_lower).where(or_(crowd_decides, I.c.crowd_verdicts.is_not(None))))}
    decided = np.array(sorted(i for i, r in stored.items() if r[0]), dtype=np.int64)
    judge_ids = np.array(sorted(judges), dtype=np.int64)
    counting = pairs.take(np.isin(pairs.player, judge_ids) & np.isin(pairs.image, decided))
    image_ids = np.unique(counting.image)
    left = await _forget_lost_evidence(conn, stored, set(image_ids.tolist()))
    if not len(counting):
        return CrowdSummary(0, 0, 0, 0, left)
    sf = np.array([judges[p] for p in judge_ids.tolist()], dtype=float).reshape(-1, 2)
    judge = np.searchsorted(judge_ids, counting.player)
    post = CrowdPosterior(quantile).fit(
        image=np.searchsorted(image_ids, counting.image), judge=judge, s=sf[:, 0], f=sf[:, 1],
        n_correct=counting.n_correct, n_wrong=counting.n_wrong, n_images=image_ids.size)
    now = post.lower_ >= threshold
    was = np.array([bool(stored[i][1]) for i in image_ids.tolist()])
    changed = [{"iid": i, "cv": cv, "ca": ca, "cl": cl, "rel": rel} for i, cv, ca, cl, rel in zip(
        image_ids.tolist(), post.verdicts_.astype(np.int64).tolist(), post.mean_.tolist(), post.lower_.tolist(),
        now.tolist()) if (bool(stored[i][1]), stored[i][2], stored[i][3], stored[i][4]) != (rel, cv, ca, cl)]
    if changed:
        await conn.execute(update(I).where(I.c.id == bindparam("iid")).values(
            crowd_verdicts=bindparam("cv"), crowd_accuracy=bindparam("ca"), crowd_lower=bindparam("cl"),
            reliable=bindparam("rel")), changed)
    joined = int((now & ~was).sum())
    left += int((was & ~now).sum())
    return CrowdSummary(image_ids.size, int(post.verdicts_.sum()), int(now.sum()), joined, left)


async def _forget_lost_evidence(conn, stored: dict[int, tuple], kept: set[int]) -> int:
    """Images whose every counting verdict is gone (their judges were muted since, or the image was
    measured or declared since) lose their crowd estimate, and an image the crowd decides on its
    crowd-given place in the reliable pool; returns how many left the pool."""
    I = T.images
    stale = [(i, bool(r[0]), bool(r[1])) for i, r in stored.items() if r[2] is not None and i not in kept]
    forget = {"crowd_verdicts": None, "crowd_accuracy": None, "crowd_lower": None}
    undecide = [{"iid": i} for i, decides, _ in stale if decides]
    keep = [{"iid": i} for i, decides, _ in stale if not decides]
    if undecide:
        await conn.execute(update(I).where(I.c.id == bindparam("iid")).values(**forget, reliable=False), undecide)
    if keep:
        await conn.execute(update(I).where(I.c.id == bindparam("iid")).values(**forget), keep)
    return sum(rel for _, decides, rel in stale if decides)
