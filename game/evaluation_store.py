"""`gap evaluate` against the database: read the answers judged since the stored
watermark, add their sufficient statistics, refit (game.evaluation) and store the
estimates — all in one write transaction, so a crash or a second run never
double-counts (restartable), and a run only reads new answers (incremental)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, bindparam, case, func, select, text, update

from game import tables as T
from game.crowd_reliability import CrowdPairs, CrowdSummary, add_crowd_counts, refit_crowd
from game.db import Database, fetch_tuples, insert_many, insert_tuples
from game.evaluation import (
    HONEST_TAINTED,
    TAINTED,
    UNTAINTED,
    Counts,
    EvalConfig,
    EvalResult,
    evaluate,
)
from game.evaluation_tables import eval_counts, eval_state, find_answers, find_cells, player_estimates
from game.question_types import classify_question

# Answers judged in the last few seconds may still be committing in another worker
# with an earlier judged_at; they wait for the next run instead of being skipped.
SETTLE_MS = 2000
OK, MUTED, HELD = "ok", "muted", "held"


def stratum(complexity: str | None, question_type: str) -> str:
    """The π-stratum of an untainted answer: the model's error rate differs by image complexity and question type."""
    return f"{complexity or 'unknown'}:{question_type}"


def answer_kind(image_tainted: bool, answer_tainted: bool) -> int:
    if image_tainted:
        return TAINTED if answer_tainted else HONEST_TAINTED
    return UNTAINTED


def is_flag(verdict: str | None, correction: str | None) -> bool:
    """A Wrong verdict counts as a flag only with a correction (SPEC §1.1)."""
    return verdict == "wrong" and bool((correction or "").strip())


@dataclass
class EvaluationSummary:
    new_answers: int
    total_answers: int
    players: int
    muted: int
    gated: int
    finds: int
    exportable: int
    theta: float
    pi: dict[str, float]
    pi_global: float
    pi_reliable: float
    iterations: int
    prior_s: tuple[float, float]
    prior_f: tuple[float, float]
    watermark_ms: int
    player_model: dict[str, Any] | None = None
    joint_prior: bool = False
    top_players: list[dict[str, Any]] = field(default_factory=list)
    crowd: CrowdSummary | None = None

    def lines(self) -> list[str]:
        out = [
            f"answers: {self.new_answers} new, {self.total_answers} evaluated in total; players: {self.players} "
            f"({self.muted} muted, {self.gated} gated)",
            f"finds: {self.finds}; exportable at θ={self.theta}: {self.exportable}",
            f"π (model error rate on untainted images): global {self.pi_global:.3f} (reliable pool "
            f"{self.pi_reliable:.3f}); "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(self.pi.items())),
            f"priors{' (joint (s, f) grid prior, moment-matched)' if self.joint_prior else ''}: "
            f"s ~ Beta({self.prior_s[0]:.2f}, {self.prior_s[1]:.2f}), "
            f"f ~ Beta({self.prior_f[0]:.2f}, {self.prior_f[1]:.2f}); EM iterations {self.iterations}",
        ]
        if self.crowd is not None:
            out.append(self.crowd.line())
        if self.player_model:
            pm = self.player_model
            out.append(f"player model: γ = {pm['gamma']:.4f} ± {pm['gamma_se']:.4f} per s, "
                       f"φ = {pm['phi']:.4f} ± {pm['phi_se']:.4f} per position, {pm['n_obs']} tainted images"
                       + (f"; plot {pm['plot']}" if pm.get("plot") else ""))
        return out


async def _one_run_at_a_time(conn) -> None:
    """Concurrent runs (two cron jobs, two workers) take turns: the second waits and then reads the
    watermark the first stored. SQLite's write transaction already holds the database's write lock
    (BEGIN IMMEDIATE); on PostgreSQL the run locks `eval_state` against other runs (plain reads of
    the estimates go on) until it commits, and reads after the lock see the earlier run's commit."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"LOCK TABLE {eval_state.name} IN SHARE ROW EXCLUSIVE MODE"))


async def get_state(conn, key: str, default: Any) -> Any:
    """A value the evaluation stored in `eval_state` (watermark, π by stratum, player model), or `default`."""
    row = (await conn.execute(select(eval_state.c.value).where(eval_state.c.key == key))).first()
    return json.loads(row[0]) if row else default


async def _set_state(conn, key: str, value: Any) -> None:
    text = json.dumps(value)
    res = await conn.execute(update(eval_state).where(eval_state.c.key == key).values(value=text))
    if res.rowcount == 0:
        await conn.execute(eval_state.insert().values(key=key, value=text))


@dataclass
class _Window:
    """The answers this run reads: judged after the stored watermark and before the settle cutoff."""
    watermark: int
    cutoff: int
    total_before: int


@dataclass
class _NewAnswers:
    """The new answers' sufficient statistics, keyed (player_id, stratum, kind, flagged) → n,
    the finds (flags on untainted images) as (answer_id, player_id, stratum, question type) rows,
    and the crowd's (image, judge) verdict counts on the answers served honestly (SPEC §1.2)."""
    n_read: int
    delta: dict[tuple[int, str, int, bool], int]
    finds: list[tuple[str, int, str, str]]
    crowd: CrowdPairs


@dataclass
class _Fit:
    """All statistics so far, their refit (game.evaluation.evaluate) and the indexes that map them back to rows."""
    counts: Counts
    result: EvalResult
    player_ids: list[int]
    groups: list[str]
    admin_muted: set[int]
    pi_reliable: float

    def status(self, i: int) -> str:
        p = self.player_ids[i]
        return MUTED if (self.result.muted[i] or p in self.admin_muted) else HELD if self.result.gated[i] else OK


_A, _SI, _I = T.answers, T.session_images, T.images
_FLAG = case((and_(_A.c.verdict == "wrong", _A.c.correction.is_not(None),
                   func.length(func.trim(_A.c.correction)) > 0), 1), else_=0)
_CORRECT = case((_A.c.verdict == "correct", 1), else_=0)


def _in_window(window: _Window):
    return and_(_A.c.verdict.is_not(None), _A.c.judged_at > window.watermark, _A.c.judged_at <= window.cutoff)


async def run_evaluation(db: Database, config: EvalConfig = EvalConfig(), *, now_ms: int | None = None,
                         player_model: bool = False, plot_path: Path | None = None) -> EvaluationSummary:
    """One incremental evaluation pass (SPEC §2); returns the summary that `gap evaluate` prints.

    Named steps, all in one write transaction: read the window → count the new answers →
    store their finds → add the counts → refit over everything → store the estimates →
    measure unmeasured images by the crowd (game/crowd_reliability.py)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    async with db.write() as conn:
        await _one_run_at_a_time(conn)
        window = await _read_window(conn, now_ms)
        new = await _count_new_answers(conn, window, config)
        await _store_finds(conn, new.finds, now_ms)
        totals = await _add_counts(conn, new.delta)
        fit = await _refit(conn, totals, config)
        total = window.total_before + new.n_read
        pi = await _store_estimates(conn, fit, window, total, now_ms)
        crowd = await _measure_images_by_crowd(conn, new.crowd, fit, config)
    pm_summary = await fit_and_store_player_model(db, plot_path=plot_path, now_ms=now_ms) if player_model else None
    return _summary(fit, config, new_answers=new.n_read, total=total, pi=pi,
                    watermark_ms=max(window.watermark, window.cutoff), player_model=pm_summary, crowd=crowd)


async def _read_window(conn, now_ms: int) -> _Window:
    return _Window(watermark=int(await get_state(conn, "watermark_ms", -1)), cutoff=now_ms - SETTLE_MS,
                   total_before=int(await get_state(conn, "answers_evaluated", 0)))


async def _count_new_answers(conn, window: _Window, config: EvalConfig) -> _NewAnswers:
    """Read the new answers' few columns and aggregate here: a SQL GROUP BY over a million
    rows (with the question text) sorts on disk and is several times slower than one scan.
    The same scan gives the finds' rows and the crowd's per-image evidence (each further scan of
    the window cost more than the crowd's whole refit)."""
    scan = (select(_A.c.player_id, _SI.c.tainted, _A.c.tainted, _FLAG, _A.c.question, _A.c.image_id, _CORRECT,
                   _A.c.id)
            .select_from(_A.join(_SI, _A.c.session_image_id == _SI.c.id)).where(_in_window(window)))
    rows = await fetch_tuples(conn, scan)
    n_read = len(rows)
    if not rows:
        return _NewAnswers(0, {}, [], CrowdPairs.from_rows([]))
    player_col, img_t, ans_t, flag, question, image_col, correct, answer_id = zip(*rows)
    del rows
    player, image = np.asarray(player_col, dtype=np.int64), np.asarray(image_col, dtype=np.int64)
    img_t, ans_t = np.asarray(img_t, dtype=bool), np.asarray(ans_t, dtype=bool)
    flag_all = np.asarray(flag, dtype=np.int64)
    crowd = CrowdPairs.from_verdicts(image[~ans_t], player[~ans_t], np.asarray(correct, dtype=np.int64)[~ans_t],
                                     flag_all[~ans_t])
    complexity, accuracy = await _image_columns(conn, image)
    # Gold (answers on tainted images) only from images whose measured accuracy is very
    # high: an image that barely passed the reliable-pool threshold is often not reliable
    # (measured on few questions), and its "tainted" answers may be right, its honest ones
    # wrong — which would make careful players look insensitive and alarmist.
    keep = ~img_t | np.isnan(accuracy) | (accuracy >= config.gold_min_accuracy)
    if not keep.any():
        return _NewAnswers(n_read, {}, [], crowd)
    kind_all = np.where(img_t, np.where(ans_t, TAINTED, HONEST_TAINTED), UNTAINTED)
    kind, flagged = kind_all[keep], flag_all[keep]
    q_list, q_all = _codes(question)
    c_list, c_all = complexity
    q_idx, c_idx = q_all[keep], c_all[keep]
    qtypes = {q: classify_question(q) for q in q_list}  # each distinct text once
    t_names = sorted(set(qtypes.values()))
    q_type_idx = np.array([t_names.index(qtypes[q]) for q in q_list], dtype=np.int64)
    grp_names = [stratum(c, tn) for c in c_list for tn in t_names]
    group = np.where(kind == UNTAINTED, c_idx * len(t_names) + q_type_idx[q_idx], 0)
    player_ids, p_idx = np.unique(player[keep], return_inverse=True)
    counts = Counts.from_answers(p_idx, kind, flagged, group, n_players=len(player_ids), n_groups=len(grp_names))
    delta: dict[tuple[int, str, int, bool], int] = {}
    for p, kd, f in zip(*np.nonzero(counts.gold)):
        delta[(int(player_ids[p]), "", int(kd), bool(f))] = int(counts.gold[p, kd, f])
    for p, g, f in zip(*np.nonzero(counts.untainted)):
        delta[(int(player_ids[p]), grp_names[g], UNTAINTED, bool(f))] = int(counts.untainted[p, g, f])
    found = np.flatnonzero((kind_all == UNTAINTED) & (flag_all == 1))
    q_types = [qtypes[q] for q in q_list]
    finds = [(answer_id[i], p, stratum(c_list[c], q_types[q]), q_types[q]) for i, p, c, q in
             zip(found.tolist(), player[found].tolist(), c_all[found].tolist(), q_all[found].tolist())]
    return _NewAnswers(n_read, delta, finds, crowd)


async def _image_columns(conn, image: np.ndarray) -> tuple[tuple[list, np.ndarray], np.ndarray]:
    """Each answer's image complexity (distinct values and each answer's index into them) and the
    image's measured accuracy (nan when NULL), read once per distinct image instead of joined per
    answer in the scan (a million joined rows cost more than the crowd's whole refit)."""
    ids = np.unique(image)
    info: dict[int, tuple] = {}
    for lo in range(0, ids.size, 10_000):
        chunk = ids[lo:lo + 10_000].tolist()
        info.update((r[0], r[1:]) for r in await fetch_tuples(
            conn, select(_I.c.id, _I.c.complexity, _I.c.model_accuracy).where(_I.c.id.in_(chunk))))
    c_list, c_of_image = _codes([info[i][0] for i in ids.tolist()])
    acc = np.array([info[i][1] for i in ids.tolist()], dtype=float)  # NULL → nan
    at = np.searchsorted(ids, image)
    return (c_list, c_of_image[at]), acc[at]


def _codes(values) -> tuple[list, np.ndarray]:
    """Distinct values in first-seen order and each value's index into them."""
    codes: dict[Any, int] = {}
    idx = np.fromiter((codes.setdefault(v, len(codes)) for v in values), dtype=np.int64, count=len(values))
    return list(codes), idx


async def _store_finds(conn, finds: list[tuple[str, int, str, str]], now_ms: int) -> None:
    """Per-find rows, from the window's one scan (an INSERT … SELECT through a temporary
    question → type table scanned the window a second time)."""
    await insert_tuples(conn, find_answers, ["answer_id", "player_id", "grp", "question_type", "created_at"],
                        [(*f, now_ms) for f in finds])


async def _add_counts(conn, delta: dict[tuple[int, str, int, bool], int]) -> dict[tuple[int, str, int, bool], int]:
    """Add the new counts to the stored ones; returns the totals."""
    totals = {(r.player_id, r.grp, r.kind, bool(r.flagged)): r.n
              for r in (await conn.execute(select(eval_counts))).all()}
    upd = [{"p": k[0], "g": k[1], "k": k[2], "f": k[3], "n": totals[k] + n} for k, n in delta.items() if k in totals]
    ins = [{"player_id": k[0], "grp": k[1], "kind": k[2], "flagged": k[3], "n": n}
           for k, n in delta.items() if k not in totals]
    if upd:
        c = eval_counts.c
        await conn.execute(
            update(eval_counts).where(and_(c.player_id == bindparam("p"), c.grp == bindparam("g"),
                                           c.kind == bindparam("k"), c.flagged == bindparam("f")))
            .values(n=bindparam("n")), upd)
    await insert_many(conn, eval_counts, ins)
    for k, n in delta.items():
        totals[k] = totals.get(k, 0) + n
    return totals


async def _refit(conn, totals: dict[tuple[int, str, int, bool], int], config: EvalConfig) -> _Fit:
    """Refit s, f and π over all statistics (game.evaluation), with the reliable pool's measured
    error rate as π's anchor and strata pooled by image complexity."""
    player_ids = sorted({k[0] for k in totals})
    groups = sorted({k[1] for k in totals if k[2] == UNTAINTED}) or ["unknown:other"]
    p_index = {p: i for i, p in enumerate(player_ids)}
    g_index = {g: i for i, g in enumerate(groups)}
    counts = Counts.zeros(len(player_ids), len(groups))
    for (p, g, kind, flagged), n in totals.items():
        if kind == UNTAINTED:
            counts.untainted[p_index[p], g_index[g], int(flagged)] += n
        else:
            counts.gold[p_index[p], kind, int(flagged)] += n
    acc = (await conn.execute(select(func.avg(_I.c.model_accuracy))
                               .where(and_(_I.c.reliable.is_(True), _I.c.model_accuracy.is_not(None),
                                           _I.c.model_accuracy >= config.gold_min_accuracy)))).scalar()
    pi_reliable = 0.0 if acc is None else float(min(0.5, max(0.0, 1.0 - acc)))
    parents = sorted({g.split(":", 1)[0] for g in groups})
    group_parent = np.array([parents.index(g.split(":", 1)[0]) for g in groups], dtype=np.int64)
    result = evaluate(counts, config, pi_reliable=pi_reliable, group_parent=group_parent)
    admin_muted = {r.id for r in (await conn.execute(select(T.players.c.id).where(T.players.c.muted.is_(True)))).all()}
    return _Fit(counts, result, player_ids, groups, admin_muted, pi_reliable)


async def _store_estimates(conn, fit: _Fit, window: _Window, total: int, now_ms: int) -> dict[str, float]:
    """Players' estimates, find cells, peer-validation posteriors and the run's state; returns π by stratum."""
    counts, result = fit.counts, fit.result
    await _store_player_estimates(conn, result, counts, fit.player_ids, fit.admin_muted, now_ms)
    cells = [{"player_id": p, "grp": g, "posterior": float(result.find_posterior[i, j]),
              "status": fit.status(i), "updated_at": now_ms}
             for i, p in enumerate(fit.player_ids) for j, g in enumerate(fit.groups)
             if counts.untainted[i, j, 1] > 0]
    await conn.execute(find_cells.delete())
    await insert_many(conn, find_cells, cells)
    # Peer validation (SPEC §3.3) feeds the posterior: each voted find's cell posterior,
    # updated by its validators' votes with their s and f, is stored per find
    # (validation_posteriors; answer_posteriors_query prefers it).
    from game.validation import store_vote_posteriors

    await conn.run_sync(store_vote_posteriors, now_ms)
    await _set_state(conn, "watermark_ms", max(window.watermark, window.cutoff))
    await _set_state(conn, "answers_evaluated", total)
    pi = {g: float(result.pi[j]) for j, g in enumerate(fit.groups)}
    await _set_state(conn, "pi", {"global": result.pi_global, "strata": pi, "reliable_pool": fit.pi_reliable})
    return pi


async def _measure_images_by_crowd(conn, new: CrowdPairs, fit: _Fit, config: EvalConfig) -> CrowdSummary:
    """SPEC §1.2, measured by the crowd: add the window's verdicts on untainted answers per image,
    then refit every image's posterior of the model's accuracy with the judges' fresh (s, f);
    muted players' verdicts do not count."""
    pairs = await add_crowd_counts(conn, new)
    judges = {p: (float(fit.result.s_mean[i]), float(fit.result.f_mean[i]))
              for i, p in enumerate(fit.player_ids) if fit.status(i) != MUTED}
    return await refit_crowd(conn, pairs, judges, threshold=config.crowd_threshold,
                             quantile=config.crowd_quantile)


def _summary(fit: _Fit, config: EvalConfig, *, new_answers: int, total: int, pi: dict[str, float],
             watermark_ms: int, player_model: dict[str, Any] | None,
             crowd: CrowdSummary | None = None) -> EvaluationSummary:
    counts, result = fit.counts, fit.result
    exportable = sum(int(counts.untainted[i, :, 1][result.find_posterior[i] >= config.theta].sum())
                     for i in range(len(fit.player_ids)) if fit.status(i) == OK)
    order = np.argsort(-result.ability)[:5]
    top = [{"player_id": fit.player_ids[i], "s": round(float(result.s_mean[i]), 3),
            "f": round(float(result.f_mean[i]), 3)} for i in order]
    return EvaluationSummary(
        new_answers=new_answers, total_answers=total, players=len(fit.player_ids), muted=int(result.muted.sum()),
        gated=int(result.gated.sum()), finds=int(counts.untainted[:, :, 1].sum()), exportable=exportable,
        theta=config.theta, pi=pi, pi_global=result.pi_global, pi_reliable=fit.pi_reliable,
        iterations=result.iterations, prior_s=result.prior_s, prior_f=result.prior_f, watermark_ms=watermark_ms,
        player_model=player_model, top_players=top, joint_prior=result.joint_prior, crowd=crowd,
    )


async def _store_player_estimates(conn, result: EvalResult, counts: Counts, player_ids: list[int],
                                  admin_muted: set[int], now_ms: int) -> None:
    have = {r.player_id for r in (await conn.execute(select(player_estimates.c.player_id))).all()}
    s_lo, f_hi = result.s_lower, result.f_upper
    rows = []
    for i, p in enumerate(player_ids):
        rows.append({
            "player_id": p, "n_tainted": int(counts.gold[i, TAINTED].sum()),
            "n_honest_tainted": int(counts.gold[i, HONEST_TAINTED].sum()),
            "n_untainted": int(counts.untainted[i].sum()), "n_finds": int(counts.untainted[i, :, 1].sum()),
            "s_alpha": float(result.s_alpha[i]), "s_beta": float(result.s_beta[i]),
            "f_alpha": float(result.f_alpha[i]), "f_beta": float(result.f_beta[i]),
            "s_mean": float(result.s_mean[i]), "s_lower": float(s_lo[i]),
            "f_mean": float(result.f_mean[i]), "f_upper": float(f_hi[i]),
            "muted": bool(result.muted[i]), "gated": bool(result.gated[i]), "updated_at": now_ms,
        })
    old = [dict(r, pid=r["player_id"]) for r in rows if r["player_id"] in have]
    new = [r for r in rows if r["player_id"] not in have]
    if old:
        cols = {k: bindparam("b_" + k) for k in rows[0] if k != "player_id"}
        await conn.execute(update(player_estimates).where(player_estimates.c.player_id == bindparam("pid")).values(**cols),
                           [{("b_" + k if k != "pid" else k): v for k, v in r.items() if k != "player_id"} for r in old])
    await insert_many(conn, player_estimates, new)


async def player_model_data(db: Database) -> dict[str, np.ndarray]:
    """One observation per finished tainted session image on which a tainted answer was served:
    success = the player flagged it; t = seconds from the image being shown to the first verdict on a
    tainted answer (the whole image time if none was judged); k = position in the session.

    Why not the image's whole time: a flag ends the image, a pass lets the player ask on, so the
    whole time is shorter *because* of success — γ then measured that, not how time pressure
    affects judging (fitted that way, γ came out ≈ 6.6 per second on sub-second simulated times)."""
    q = (
        select(T.session_images.c.id, T.sessions.c.player_id, T.session_images.c.image_id,
               T.session_images.c.position, T.session_images.c.served_at, T.session_images.c.ended_at,
               T.answers.c.tainted, T.answers.c.verdict, T.answers.c.correction, T.answers.c.judged_at)
        .select_from(T.session_images.join(T.sessions, T.session_images.c.session_id == T.sessions.c.id)
                     .join(T.answers, T.answers.c.session_image_id == T.session_images.c.id))
        .where(and_(T.session_images.c.tainted.is_(True), T.session_images.c.ended_at.is_not(None)))
    )
    async with db.read() as conn:
        rows = (await conn.execute(q)).all()
    obs: dict[int, dict[str, Any]] = {}
    for r in rows:
        o = obs.setdefault(r.id, {"player": r.player_id, "image": r.image_id, "k": r.position,
                                  "t": max(0.0, ((r.ended_at or 0) - (r.served_at or 0)) / 1000.0),
                                  "served_tainted": False, "success": False})
        if r.tainted:
            if r.judged_at is not None and r.served_at is not None:
                to_verdict = max(0.0, (r.judged_at - r.served_at) / 1000.0)
                o["t"] = min(o["t"], to_verdict) if o["served_tainted"] else to_verdict
            o["served_tainted"] = True
            if is_flag(r.verdict, r.correction):
                o["success"] = True
    kept = [o for o in obs.values() if o["served_tainted"]]
    return {
        "player": np.array([o["player"] for o in kept], dtype=np.int64),
        "image": np.array([o["image"] for o in kept], dtype=np.int64),
        "t": np.array([o["t"] for o in kept], dtype=float),
        "k": np.array([o["k"] for o in kept], dtype=float),
        "success": np.array([o["success"] for o in kept], dtype=bool),
    }


async def fit_and_store_player_model(db: Database, *, plot_path: Path | None = None,
                                     now_ms: int | None = None) -> dict[str, Any] | None:
    """Fit the logistic player model on all tainted images and store abilities, γ, φ (and a plot)."""
    from game.player_model import fit_player_model, plot_player_model

    data = await player_model_data(db)
    if data["player"].size < 10:
        return None
    players, p_idx = np.unique(data["player"], return_inverse=True)
    images, i_idx = np.unique(data["image"], return_inverse=True)
    fit = fit_player_model(p_idx, i_idx, data["t"], data["k"], data["success"], len(players), len(images))
    summary = {"gamma": fit.gamma, "gamma_se": fit.gamma_se, "phi": fit.phi, "phi_se": fit.phi_se,
               "intercept": fit.intercept, "n_obs": fit.n_obs, "converged": fit.converged, "se_exact": fit.se_exact,
               "difficulty": {int(images[i]): [float(fit.difficulty[i]), float(fit.difficulty_se[i])]
                              for i in range(len(images))}}
    if plot_path is not None:
        summary["plot"] = str(plot_player_model(fit, plot_path))
    async with db.write() as conn:
        await conn.execute(
            update(player_estimates).where(player_estimates.c.player_id == bindparam("pid"))
            .values(ability=bindparam("a"), ability_se=bindparam("se")),
            [{"pid": int(p), "a": float(fit.ability[i]), "se": float(fit.ability_se[i])} for i, p in enumerate(players)])
        await _set_state(conn, "player_model", summary)
    summary = dict(summary)
    summary.pop("difficulty")
    summary["abilities"] = {int(p): (float(fit.ability[i]), float(fit.ability_se[i])) for i, p in enumerate(players)}
    return summary
