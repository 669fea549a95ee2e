"""`gap experiment`: the closed loop of SPEC §3.2, end to end, in one resumable run.

Stages (each writes its outputs under OUT and a marker OUT/stages/<name>.done,
so an interrupted run resumes at the first unfinished stage):

1. ``pool``      — a fresh SQLite game database, procedural images with ground truth
                   (the "pool" seed range), the reliable pool measured with the base model;
2. ``simulate``  — the real web app on a local port with the base model; the seeded
                   population plays whole sessions over HTTP, its careful and sloppy players
                   learning from each summary to ask more of what earned finds; the truth is
                   saved (journaled in OUT/simulation as it goes, so an interrupted stage
                   continues its sessions), with how the players' questions shifted;
3. ``evaluate``  — `gap evaluate` (+ player model), scored against the truth: precision of
                   exported finds at θ, ECE of the find posteriors, Spearman of abilities;
4. ``arms``      — the training sets, written by the product's exporter:
                   gap (`gap export --confirmed`: finds at θ with their corrections, plus confirmations —
                   answers trusted players judged correct — with the model's answer),
                   unfiltered (every flag with its correction and every "correct" verdict: no θ, no muting),
                   random (per GAP example, a uniformly drawn question with its true answer on the
                   same image: same count, same images),
                   truth (every asked question with its true answer: the upper bound);
5. ``finetune``  — one LoRA adapter per arm, same hyper-parameters (with replay, and WiSE-FT
                   interpolation toward the base when ``ft_interpolate`` < 1);
6. ``heldout``   — `gap model-eval`'s held-out set (the "heldout" seed range, disjoint from the pool)
                   for the base model and every adapter, per question type, simple vs complex
                   (and the weak slice: the pool's withheld styles);
   ``curve``     — (with ``curve_fractions``) the learning curve: the GAP and random arms also trained
                   on their first k examples, scored on the weak slice;
7. ``round2``    — (with ``round2_sessions``) the next model round (SPEC §3.2, as in Dynabench): the GAP arm's
                   adapter is promoted into the game, the same population plays more sessions against it
                   over HTTP (OUT/simulation-round2, truth-round2.json), the evaluation re-runs over both
                   rounds and `game.rounds` reports each round's validated error rate, beside the true one;
8. ``report``    — REPORT.md with the table, the targets and a plot; every number comes from this run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models.evaluation import mean_standard_error

ARMS = ("gap", "random", "unfiltered", "truth")
# settings that only add a stage after the others: a finished run may be resumed with them changed
ADDITIVE = ("round2_sessions",)


@dataclass(frozen=True)
class ExperimentConfig:
    pool_images: int = 120
    complex_share: float = 0.5
    reliability_questions: int = 10
    reliable_threshold: float = 0.9    # the product's default (`gap images reliable`)
    players: int = 40
    sessions: int = 3
    image_seconds: float = 2.0
    think_speed: float | None = None    # real seconds per simulated second of thinking; None: image_seconds / 120
    theta: float = 0.8
    eval_per_type: int = 40
    ft_epochs: float = 3.0
    ft_max_steps: int = 100
    ft_min_steps: int = 20
    ft_batch: int = 16
    ft_lr: float = 5e-4                 # 2e-3 was measured to hurt held-out accuracy more
    ft_vision: bool = True              # LoRA on the vision tower too: the complex-scene errors are perceptual
    seed: int = 0
    standin: bool = False              # a stand-in model of set accuracy: evaluation stages only
    standin_accuracy: tuple[float, float] = (0.97, 0.6)   # (simple, complex)
    standin_weak: tuple[tuple[str, float], ...] = ()      # (family, accuracy): the stand-in's set weaknesses
    learner_share: float = 1.0          # of careful and sloppy players, the share who learn from summaries
    pool_styles: tuple[tuple[str, float], ...] = ()   # (style, share): simple scenes in withheld styles
    trained_arms: tuple[str, ...] = ARMS  # arms fine-tuned and scored (all are exported); fewer = a shorter run
    replay_images: int = 0              # plain complex training scenes whose true pairs join every trained arm
    replay_simple_images: int = 0       # plain simple training scenes likewise (what the styled finds can unlearn)
    gap_arm: str = "confirmed"          # the GAP arm's export: "confirmed" (`gap export --confirmed`) or "finds"
    train_strata: tuple[str, ...] = ()  # every arm only on pool images of these strata (`gap export --strata`); () all
    curve_fractions: tuple[float, ...] = ()  # learning curve: GAP and random also trained on these shares of their examples
    replay_target: str = "truth"        # the replay pairs' answers: "truth", or "base" (the base model's own answers)
    ft_interpolate: float = 1.0         # WiSE-FT: every adapter saved as base + this × (fine-tuned − base)
    round2_sessions: int = 0            # sessions per player against the promoted GAP adapter (0: no round 2)

    @classmethod
    def small(cls, **kw: Any) -> "ExperimentConfig":
        """A few minutes on 2 CPU cores (CI)."""
        base = dict(pool_images=40, reliability_questions=4, players=10, sessions=2, image_seconds=1.5,
                    eval_per_type=12, ft_epochs=3.0, ft_max_steps=40, ft_min_steps=10, ft_batch=8)
        base.update(kw)
        return cls(**base)


class Stages:
    """Per-stage done markers with their JSON results (resumability)."""

    def __init__(self, out: Path):
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)

    def done(self, name: str) -> dict | None:
        path = self.dir / f"{name}.done"
        return json.loads(path.read_text()) if path.exists() else None

    def mark(self, name: str, result: dict) -> dict:
        tmp = self.dir / f"{name}.tmp"
        tmp.write_text(json.dumps(result, indent=1, default=float))
        tmp.replace(self.dir / f"{name}.done")
        return result


def _bar(desc: str, total: int | None = None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", mininterval=1.0, leave=False)


class ExperimentMismatch(ValueError):
    """The output directory holds a run made with other settings."""


class Experiment:
    def __init__(self, out: Path, base_model: str, cfg: ExperimentConfig, log: Callable[[str], None] = print):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.base = str(Path(base_model).resolve())
        self.cfg = cfg
        self.log = log
        self.stages = Stages(self.out)
        self.db_url = f"sqlite+aiosqlite:///{(self.out / 'gap.sqlite3').resolve()}"
        token_file = self.out / "bot_token"
        if not token_file.exists():
            token_file.write_text(f"{random.Random(cfg.seed).randint(10**8, 10**9)}:{secrets.token_urlsafe(24)}")
        self.token = token_file.read_text().strip()
        config = json.dumps(cfg.__dict__ | {"base_model": self.base}, indent=1, default=list)
        path = self.out / "config.json"
        if path.exists() and path.read_text() != config:
            # resuming would mix stages of two different runs into one report: refuse. A setting added
            # to the experiment after the run began counts as its default (what the run used).
            defaults = json.loads(json.dumps(ExperimentConfig().__dict__, default=list))
            before, now = defaults | json.loads(path.read_text()), json.loads(config)
            diff = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
            if [k for k in diff if k not in ADDITIVE]:
                raise ExperimentMismatch(f"{self.out} holds a run with other settings ({', '.join(diff)}); "
                                         "resume it with the same arguments, or use another --out")
        path.write_text(config)
        played = (self.stages.done("round2") or {}).get("sessions")
        if cfg.round2_sessions and played is not None and played != cfg.round2_sessions:
            raise ExperimentMismatch(f"{self.out} played round 2 with {played} sessions per player, not "
                                     f"{cfg.round2_sessions}; use another --out")

    def settings(self):
        from settings import load_settings

        return load_settings(database_url=self.db_url, bot_token=self.token, model=self.base,
                             image_seconds=self.cfg.image_seconds, theta=self.cfg.theta,
                             player_hash_key=f"experiment-{self.cfg.seed}", bot_enabled=False)

    def stage(self, name: str, fn: Callable[[], dict]) -> dict:
        prev = self.stages.done(name)
        if prev is not None:
            self.log(f"[{name}] done earlier (resuming)")
            return prev
        self.log(f"[{name}] …")
        started = time.perf_counter()
        result = fn()
        result["seconds"] = round(time.perf_counter() - started, 1)
        self.log(f"[{name}] finished in {result['seconds']} s")
        return self.stages.mark(name, result)

    # ------------------------------------------------------------------ stages
    def run(self) -> dict:
        if self.cfg.standin:
            results = {
                "pool": self.stage("pool", lambda: asyncio.run(self._pool())),
                "simulate": self.stage("simulate", lambda: asyncio.run(self._simulate())),
                "evaluate": self.stage("evaluate", lambda: asyncio.run(self._evaluate())),
            }
            results["report"] = str(self._report_evaluation(results))
            return results
        results = {
            "pool": self.stage("pool", lambda: asyncio.run(self._pool())),
            "simulate": self.stage("simulate", lambda: asyncio.run(self._simulate())),
            "evaluate": self.stage("evaluate", lambda: asyncio.run(self._evaluate())),
            "arms": self.stage("arms", lambda: asyncio.run(self._arms())),
        }
        results["finetune"] = self.stage("finetune", self._finetune)
        results["heldout"] = self.stage("heldout", lambda: asyncio.run(self._heldout()))
        if self.cfg.curve_fractions:
            results["curve"] = self.stage("curve", lambda: asyncio.run(self._curve()))
        if self.cfg.round2_sessions or self.stages.done("round2"):
            results["round2"] = self.stage("round2", lambda: asyncio.run(self._round2()))
        report = self._report(results)
        results["report"] = str(report)
        return results

    async def _pool(self) -> dict:
        from sqlalchemy import select

        from game.db import Database
        from game.images import set_reliability
        from game.migrate import upgrade
        from game.tables import images
        from gap.app import load_model
        from gap.commands.images import generate_pool, measure_reliability

        await asyncio.to_thread(upgrade, self.db_url)
        db = Database(self.db_url)
        try:
            created, _ = await generate_pool(db, self.cfg.pool_images, seed=1000 + self.cfg.seed,
                                             complex_share=self.cfg.complex_share, styles=self.cfg.pool_styles)
            if self.cfg.standin:  # the stand-in's accuracy is set, not measured: simple images are its reliable pool
                async with db.read() as conn:
                    rows = (await conn.execute(select(images.c.id, images.c.complexity))).all()
                simple, complex_ = self.cfg.standin_accuracy
                await set_reliability(db, {r.id: simple if r.complexity == "simple" else complex_ for r in rows}, 0.9)
                return {"images": len(rows), "created": created, "reliable": sum(r.complexity == "simple" for r in rows),
                        "reliable_threshold": 0.9, "mean_accuracy": {"simple": simple, "complex": complex_},
                        "model": "stand-in"}
            model = await load_model(self.base)
            try:
                measured = await measure_reliability(db, model, threshold=self.cfg.reliable_threshold,
                                                     questions=self.cfg.reliability_questions, seed=self.cfg.seed)
            finally:
                await model.aclose()
            async with db.read() as conn:
                rows = (await conn.execute(select(images.c.id, images.c.model_accuracy, images.c.complexity,
                                                  images.c.scene_json))).all()
            acc = {r.id: float(r.model_accuracy or 0.0) for r in rows}
            threshold = self.cfg.reliable_threshold
            need = max(10, len(acc) // 5)
            if measured["reliable"] < need:  # a weak base model: the most reliable fifth forms the pool
                threshold = sorted(acc.values(), reverse=True)[need - 1]
                await set_reliability(db, acc, threshold)
            async with db.read() as conn:
                reliable = (await conn.execute(select(images.c.id).where(images.c.reliable.is_(True)))).all()
        finally:
            await db.dispose()
        by_c: dict[str, list[float]] = {}
        for r in rows:
            by_c.setdefault(_slice_of(r.complexity, r.scene_json), []).append(float(r.model_accuracy or 0.0))
        return {"images": len(rows), "created": created, "reliable": len(reliable), "reliable_threshold": threshold,
                "mean_accuracy": {k: float(np.mean(v)) for k, v in by_c.items()}}

    async def _simulate(self) -> dict:
        model, on_question = None, None
        if self.cfg.standin:
            model, on_question = await self._standin()
        result = await self._play(self.cfg.sessions, self.out / "simulation", model=model, on_question=on_question)
        (self.out / "truth.json").write_text(json.dumps(result.truth_json()))
        flags = sum(a.flagged for a in result.answers)
        mistakes = sum(a.mistake for a in result.answers)
        return {"players": len(result.players), "sessions": result.sessions, "answers": len(result.answers),
                "flags": flags, "true_mistakes_served": mistakes, "errors": result.errors[:20],
                "n_errors": len(result.errors), "lost_answers": len(result.lost_answers),
                "resumed_sessions": result.resumed_sessions, "learning": self._learning(result)}

    @property
    def think_speed(self) -> float:
        """Real seconds per simulated second: players think on the game's clock, shrunk like its
        deadline (`image_seconds` of the default 120), so the times the server records mean something."""
        return self.cfg.image_seconds / 120 if self.cfg.think_speed is None else self.cfg.think_speed

    async def _play(self, sessions: int, state_dir: Path, *, model=None, on_question=None,
                    before_play: Callable[[], Any] | None = None, **kw: Any):
        """The seeded population plays `sessions` sessions each on the real server over HTTP, journaled in
        `state_dir` (an interrupted stage resumes). Without `model` the server serves what `gap serve`
        would: the latest promoted round's model, else the base. `before_play` (a coroutine function)
        runs once the server is up, before any player arrives."""
        from lab.local_server import running_server
        from lab.simulation import simulate

        bar = _bar("simulated sessions", self.cfg.players * sessions)
        try:
            async with running_server(self.settings(), model=model) as server:
                if before_play is not None:
                    await before_play()
                return await simulate(server, self.token, self.db_url, self.cfg.players, seed=self.cfg.seed,
                                      learner_share=self.cfg.learner_share, sessions_per_player=sessions,
                                      concurrency=min(32 if self.cfg.standin else 16, self.cfg.players),
                                      progress=lambda d, t: bar.update(d - bar.n), on_question=on_question,
                                      state_dir=state_dir, speed=self.think_speed, **kw)
        finally:
            bar.close()

    def _learning(self, result) -> dict:
        """How the players' questions shifted toward the model's weak families, per group and session."""
        from lab.player_learning import learning_report, player_group, weakest_family

        mistakes = {a.answer_id: a.mistake for a in result.answers}
        weak = [f for f, _ in self.cfg.standin_weak] if self.cfg.standin and self.cfg.standin_weak else \
            [f for f in [weakest_family(result.outcomes, mistakes)] if f]
        groups = {p.telegram_id: player_group(p.kind, p.learner) for p in result.players}
        return learning_report(result.outcomes, groups, mistakes, weak)

    async def _standin(self):
        from sqlalchemy import select

        from game.db import Database
        from game.tables import images
        from lab.standin_model import StandInModel

        simple, complex_ = self.cfg.standin_accuracy
        model = StandInModel({"simple": simple, "complex": complex_}, seed=self.cfg.seed,
                             family_accuracy=dict(self.cfg.standin_weak))
        db = Database(self.db_url)
        try:
            async with db.read() as conn:
                rows = (await conn.execute(select(images.c.opaque_id, images.c.sha256, images.c.complexity))).all()
        finally:
            await db.dispose()
        info = {r.opaque_id: (r.sha256, r.complexity or "complex") for r in rows}

        def on_question(opaque: str, qa) -> None:
            sha, complexity = info[opaque]
            model.register(sha, qa.question, qa.answer, qa.qtype, complexity)

        return model, on_question

    def _report_evaluation(self, r: dict) -> Path:
        ev, sim = r["evaluate"], r["simulate"]
        simple, complex_ = self.cfg.standin_accuracy
        lines = [
            "# GAP evaluation check with a stand-in model", "",
            f"Stand-in model accuracy: simple {simple:.0%}, complex {complex_:.0%} (set, not trained). "
            "Real game server, HTTP API, simulated players and evaluation.", "",
            f"- {sim['players']} players {ev['players_by_kind']}, {sim['sessions']} sessions, {sim['answers']} judged answers, "
            f"{sim['flags']} flags, errors {sim['n_errors']}",
            f"- finds {ev['finds']} (true mistakes among them {ev['base_rate_of_finds']:.3f}), exported at θ="
            f"{self.cfg.theta}: {ev['exported']}",
            f"- precision of exported finds: {ev['precision_at_theta']}",
            f"- ECE over all finds: {ev['ece']}; over the {ev['finds_unmuted']} finds of unmuted players "
            f"(the posteriors that decide exports): {ev['ece_unmuted']} (sampling floor of perfectly calibrated "
            f"posteriors on the same finds: {ev.get('ece_floor')}, {ev.get('ece_unmuted_floor')})",
            f"- Spearman(estimated J, true J): {ev['spearman_ability']}; player model: {ev['spearman_player_model']}",
            f"- recall of true mistakes among finds: {ev['recall_of_true_mistakes_among_finds']}",
            f"- muted by kind: {ev['muted_by_kind']}", f"- π: {ev['pi_global']:.3f}",
            *self._learning_section(sim),
        ]
        path = self.out / "REPORT.md"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _learning_section(self, sim: dict) -> list[str]:
        from lab.player_learning import learning_markdown

        if not sim.get("learning"):
            return []
        weak = ", ".join(f"{f} {a:.0%}" for f, a in self.cfg.standin_weak)
        return ["", "## Players who learn", "",
                f"Careful and sloppy players who learn ({self.cfg.learner_share:.0%} of them) ask more of the question "
                "families and objects that earned finds in their earlier summaries; the others keep their taste. "
                + (f"The stand-in model's set weaknesses: {weak}. " if weak and self.cfg.standin else
                   "The weak family is the one whose served honest answers were most often wrong. ")
                + "Finds: flags on untainted images, as the summary shows them; true finds: those whose "
                "answer really was wrong.", "",
                *learning_markdown(sim["learning"])]

    def _truth(self) -> dict:
        return json.loads((self.out / "truth.json").read_text())

    async def _evaluate(self) -> dict:
        return await self._score_evaluation(self._truth(), self.out / "player_model.png")

    async def _score_evaluation(self, truth: dict, plot_path: Path) -> dict:
        """`gap evaluate` (+ player model) over everything played so far, scored against `truth`."""
        from sqlalchemy import select

        from game.db import Database
        from game.evaluation import EvalConfig, ece_sampling_floor, expected_calibration_error, spearman
        from game.evaluation_store import SETTLE_MS, run_evaluation
        from game.evaluation_tables import answer_posteriors_query, player_estimates
        from game.players import player_key
        from game.tables import answers, players
        from gap.app import player_hash_key

        from game.migrate import upgrade

        mistake = {a["answer_id"]: bool(a["mistake"]) for a in truth["answers"]}
        await asyncio.to_thread(upgrade, self.db_url)  # a resumed run may meet newer migrations
        db = Database(self.db_url)
        try:
            summary = await run_evaluation(db, EvalConfig(theta=self.cfg.theta),
                                           now_ms=int(time.time() * 1000) + SETTLE_MS + 1, player_model=True,
                                           plot_path=plot_path)
            async with db.read() as conn:
                posts = (await conn.execute(answer_posteriors_query())).all()
                est = (await conn.execute(select(player_estimates, players.c.player_key)
                                          .join(players, players.c.id == player_estimates.c.player_id))).all()
                n_untainted_answers = (await conn.execute(select(answers.c.id))).all()
        finally:
            await db.dispose()
        key = player_hash_key(self.settings())
        by_key = {player_key(key, p["telegram_id"]): p for p in truth["players"]}
        p_arr = np.array([float(r.posterior) for r in posts if r.answer_id in mistake])
        y_arr = np.array([mistake[r.answer_id] for r in posts if r.answer_id in mistake], dtype=float)
        exported = np.array([r.status == "ok" and r.posterior >= self.cfg.theta for r in posts if r.answer_id in mistake])
        trusted = np.array([r.status != "muted" for r in posts if r.answer_id in mistake], dtype=bool)
        est_j = np.array([r.s_mean - r.f_mean for r in est if r.player_key in by_key])
        true_j = np.array([by_key[r.player_key]["ability"] for r in est if r.player_key in by_key])
        kinds = [by_key[r.player_key]["kind"] for r in est if r.player_key in by_key]
        muted = {k: int(sum(1 for r, kk in zip([r for r in est if r.player_key in by_key], kinds) if kk == k and r.muted))
                 for k in set(kinds)}
        pm = summary.player_model or {}
        pm_ability = pm.get("abilities", {})
        pm_pairs = [(pm_ability[r.player_id][0], by_key[r.player_key]["ability"]) for r in est
                    if r.player_key in by_key and r.player_id in pm_ability]
        return {
            "finds": int(len(p_arr)), "exported": int(exported.sum()),
            "precision_at_theta": float(y_arr[exported].mean()) if exported.any() else None,
            "base_rate_of_finds": float(y_arr.mean()) if len(y_arr) else None,
            "recall_of_true_mistakes_among_finds": float(exported[y_arr == 1].mean()) if (y_arr == 1).any() else None,
            "ece": expected_calibration_error(p_arr, y_arr) if len(p_arr) else None,
            "ece_unmuted": expected_calibration_error(p_arr[trusted], y_arr[trusted]) if trusted.any() else None,
            "finds_unmuted": int(trusted.sum()),
            # what perfectly calibrated posteriors would measure from sampling alone (same finds)
            "ece_floor": ece_sampling_floor(p_arr) if len(p_arr) else None,
            "ece_unmuted_floor": ece_sampling_floor(p_arr[trusted]) if trusted.any() else None,
            "spearman_ability": spearman(est_j, true_j) if len(est_j) > 2 else None,
            "spearman_player_model": spearman(*map(np.array, zip(*pm_pairs))) if len(pm_pairs) > 2 else None,
            "muted_by_kind": muted, "players_by_kind": {k: kinds.count(k) for k in set(kinds)},
            "pi": summary.pi, "pi_global": summary.pi_global,
            "player_model": {k: v for k, v in pm.items() if k not in ("abilities",)},
            "answers_in_db": len(n_untainted_answers), "summary": summary.lines(),
        }

    async def _arms(self) -> dict:
        from sqlalchemy import select

        from game.db import Database
        from game.exports import ExportRecord, collect_confirmed, collect_finds, write_export
        from game.exports import in_strata as export_strata
        from game.question_types import classify_question
        from game.tables import images
        from models.scenes import Scene

        truth = self._truth()
        strata = self.cfg.train_strata
        db = Database(self.db_url)
        try:
            gap = (await collect_finds(db, self.cfg.theta, strata=strata))[0]
            if self.cfg.gap_arm == "confirmed":
                gap += (await collect_confirmed(db, self.cfg.theta, strata=strata))[0]
            unfiltered = ((await collect_finds(db, self.cfg.theta, unfiltered=True, strata=strata))[0]
                          + (await collect_confirmed(db, self.cfg.theta, unfiltered=True, strata=strata))[0])
            async with db.read() as conn:
                rows = (await conn.execute(select(images.c.opaque_id, images.c.mime, images.c.content,
                                                  images.c.scene_json))).all()
                in_strata = {r.opaque_id for r in (await conn.execute(
                    select(images.c.opaque_id).where(export_strata(strata)))).all()}
        finally:
            await db.dispose()
        # never train on a picture that the held-out evaluation will show: simple scenes are small
        # enough that the pool and the held-out seed range can draw identical images
        held = self._heldout_fingerprints()
        leaked = {r.opaque_id for r in rows if r.scene_json and Scene.from_json(r.scene_json).fingerprint() in held}
        gap = [x for x in gap if x.image_key not in leaked]
        unfiltered = [x for x in unfiltered if x.image_key not in leaked]
        all_images = {r.opaque_id: bytes(r.content) for r in rows}
        mime = {r.opaque_id: r.mime for r in rows}
        scenes = {r.opaque_id: Scene.from_json(r.scene_json) for r in rows if r.scene_json}
        played = sorted({a["image"] for a in truth["answers"]} - leaked)
        random_recs = random_pairs(gap, scenes, random.Random(f"arms:{self.cfg.seed}"))
        truth_recs = [ExportRecord(id=a["answer_id"], image_key=a["image"], image_mime=mime[a["image"]],
                                   question=a["question"], model_answer=a["served"], correct_answer=a["truth"],
                                   posterior=None, question_type=classify_question(a["question"]))
                      for a in truth["answers"] if a["image"] not in leaked and a["image"] in in_strata]
        arms = {"gap": gap, "random": random_recs, "unfiltered": unfiltered, "truth": truth_recs}
        cards = {}
        for name, recs in arms.items():
            cards[name] = write_export(recs, all_images, "vqa", self.out / "arms" / name,
                                       theta=self.cfg.theta if name == "gap" else None,
                                       title=f"experiment arm: {name}")
            cards[name].pop("markdown")
        return {"arms": cards, "played_images": len(played), "pool_images_identical_to_heldout": len(leaked),
                "train_strata": list(strata)}

    def _finetune(self) -> dict:
        arms = self.stages.done("arms")["arms"]
        out = {}
        for name in ARMS:
            adapter = self.out / "adapters" / name
            n = arms[name]["examples"]
            if n == 0 or name not in self.cfg.trained_arms:
                out[name] = {"skipped": "no examples" if n == 0 else "not among the trained arms"}
                continue
            if (adapter / "finetune_log.json").exists():
                out[name] = json.loads((adapter / "finetune_log.json").read_text())
                out[name].pop("loss_history", None)
                continue
            data = self.out / "arms" / name
            if self.cfg.replay_images or self.cfg.replay_simple_images:
                data, n = self._with_replay(name)
            out[name] = self._train(data, adapter, n, f"finetune {name}")
        return out

    def _with_replay(self, name: str, keep: int | None = None, combined: Path | None = None) -> tuple[Path, int]:
        """The arm's examples (its first `keep` when given) plus the same replay pairs for every arm: true
        answers on plain complex (and plain simple) scenes from the training seed range (lab/ceiling.py),
        so fine-tuning on the game's finds does not unlearn what the base knew. Returns the combined
        dataset and its size."""
        import os

        arm = self.out / "arms" / name
        combined = combined or self.out / "arms-replay" / name
        combined.mkdir(parents=True, exist_ok=True)
        lines = []
        for src in (arm, *self._replay_sets()):
            rows = [line for line in (src / "train.jsonl").read_text().splitlines() if line.strip()]
            for line in rows[:keep] if src == arm and keep is not None else rows:
                obj = json.loads(line)
                obj["image"] = os.path.relpath(src / obj["image"], combined)
                lines.append(json.dumps(obj))
        (combined / "train.jsonl").write_text("\n".join(lines) + "\n")
        return combined, len(lines)

    def _train(self, data: Path, adapter: Path, n: int, desc: str) -> dict:
        """One LoRA fine-tune with the experiment's hyper-parameters: ft_epochs over `n` examples, capped."""
        from models.finetune import FinetuneConfig, finetune

        steps = int(min(self.cfg.ft_max_steps,
                        max(self.cfg.ft_min_steps, round(self.cfg.ft_epochs * n / self.cfg.ft_batch))))
        bar = _bar(desc, steps)
        log = finetune(self.base, data, adapter,
                       FinetuneConfig(max_steps=steps, batch_size=self.cfg.ft_batch, lr=self.cfg.ft_lr,
                                      seed=self.cfg.seed, lora_vision=self.cfg.ft_vision,
                                      interpolate=self.cfg.ft_interpolate),
                       progress=lambda s, t, loss: (bar.update(s - bar.n), bar.set_postfix(loss=f"{loss:.3f}")),
                       resume=True)
        bar.close()
        return log

    async def _curve(self) -> dict:
        """The learning curve (SPEC §3.2): the GAP and random arms fine-tuned on their first k examples
        (the same k images in both arms: random pairs are drawn per GAP example) with the same replay,
        each scored on the weak slice, so the report shows gain against the number of examples rather
        than one point per arm."""
        from gap.app import load_model
        from models.evaluation import PERCEPTION_TYPES, evaluate

        arms = self.stages.done("arms")["arms"]
        weak = self.weak_slices()
        points: dict[str, list[dict]] = {}
        for name in ("gap", "random"):
            n = arms[name]["examples"]
            if name not in self.cfg.trained_arms or not n or not weak:
                continue
            for frac in self.cfg.curve_fractions:
                keep = max(1, round(frac * n))
                tag = f"{name}-{keep}"
                adapter = self.out / "adapters" / "curve" / tag
                data, total = await asyncio.to_thread(self._with_replay, name, keep,
                                                      self.out / "arms-replay" / "curve" / tag)
                if not (adapter / "adapter_config.json").exists() or not (adapter / "finetune_log.json").exists():
                    await asyncio.to_thread(self._train, data, adapter, total, f"curve {tag}")
                model = await load_model(str(adapter))
                try:
                    res = await evaluate(model, n=self.cfg.eval_per_type, types=PERCEPTION_TYPES, complexities=weak)
                finally:
                    await model.aclose()
                points.setdefault(name, []).append({"examples": keep, "fraction": frac, "by_type": res})
        return {"points": points}

    def _replay_sets(self) -> list[Path]:
        """The replay datasets, written once: plain complex scenes, then plain simple ones (with the base
        model's answers in place of the truth when `replay_target` is "base")."""
        from lab.ceiling import write_ground_truth

        sets = []
        if self.cfg.replay_images:
            write_ground_truth(self.out / "replay", self.cfg.replay_images, 4, self.cfg.seed)
            sets.append(self.out / "replay")
        if self.cfg.replay_simple_images:
            write_ground_truth(self.out / "replay-simple", self.cfg.replay_simple_images, 4, self.cfg.seed,
                               styles=("plain",))
            sets.append(self.out / "replay-simple")
        if self.cfg.replay_target == "base":
            sets = [self._distilled(src) for src in sets]
        return sets

    def _distilled(self, src: Path) -> Path:
        """`src`'s questions answered by the base model (written once, next to it as "<src>-base").

        Why: on complex scenes the truth is often what the model cannot see (objects of a pixel or
        two); replaying it pulls the model's guesses toward new priors and complex accuracy fell
        about 4.5 points even with no complex finds trained. Replaying the base's own answers keeps
        what it did — learning without forgetting by self-distillation."""
        import os

        dst = src.with_name(src.name + "-base")
        if (dst / "train.jsonl").exists():
            return dst
        rows = [json.loads(line) for line in (src / "train.jsonl").read_text().splitlines() if line.strip()]

        async def answer_all() -> list[str]:
            from gap.app import load_model

            model = await load_model(self.base)
            sem = asyncio.Semaphore(64)
            pngs = {name: (src / name).read_bytes() for name in {r["image"] for r in rows}}

            async def one(r: dict) -> str:
                async with sem:
                    return (await model.answer(pngs[r["image"]], r["question"], taint=False)).honest
            try:
                return await asyncio.gather(*(one(r) for r in rows))
            finally:
                await model.aclose()

        answers = asyncio.run(answer_all())
        dst.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"image": os.path.relpath(src / r["image"], dst), "question": r["question"],
                             "answer": a}) for r, a in zip(rows, answers)]
        info = json.loads((src / "dataset.json").read_text()) | {
            "target": "base", "agrees_with_truth": sum(a == r["answer"] for r, a in zip(rows, answers)) / len(rows)}
        (dst / "dataset.json").write_text(json.dumps(info))
        (dst / "train.jsonl").write_text("\n".join(lines) + "\n")
        return dst

    async def _heldout(self) -> dict:
        from gap.app import load_model
        from models.evaluation import PERCEPTION_TYPES, evaluate, heldout_items
        from models.scenes import EVAL_TYPES

        # never evaluate on training images: count held-out scenes whose picture is in a training set
        train_fps = self._training_fingerprints()
        from models.evaluation import _scene  # the held-out scene of (complexity, index)

        overlap = sum(1 for c in ("simple", "complex") for t in EVAL_TYPES
                      for i, _ in heldout_items(c, t, self.cfg.eval_per_type) if _scene(c, i).fingerprint() in train_fps)
        models = {"base": self.base}
        for name in ARMS:
            if (self.out / "adapters" / name / "adapter_config.json").exists():
                models[name] = str(self.out / "adapters" / name)
        weak = self.weak_slices()
        results = {}
        for name, path in models.items():
            bar = _bar(f"held-out {name}")
            model = await load_model(path)
            try:
                progress = lambda d, t: (setattr(bar, "total", t), bar.update(d - bar.n))  # noqa: E731
                res = await evaluate(model, n=self.cfg.eval_per_type, types=EVAL_TYPES, progress=progress)
                if weak:  # the withheld styles, on the types a style can break (models/evaluation.py)
                    res.update(await evaluate(model, n=self.cfg.eval_per_type, types=PERCEPTION_TYPES,
                                              complexities=weak, progress=progress))
            finally:
                await model.aclose()
                bar.close()
            mean = {c: float(np.mean(list(v.values()))) for c, v in res.items()}
            if weak:
                mean["weak"] = float(np.mean([mean[c] for c in weak]))
            results[name] = {"by_type": res, "mean": mean}
        return {"models": results, "heldout_scenes_in_training": overlap, "per_type": self.cfg.eval_per_type,
                "weak_slices": list(weak)}

    def weak_slices(self) -> tuple[str, ...]:
        """The held-out weak slice: simple scenes in each style the pool holds ("simple:dark", ...)."""
        from models.evaluation import slice_name

        return tuple(slice_name("simple", s) for s, share in self.cfg.pool_styles if share > 0)

    def _heldout_fingerprints(self) -> set[str]:
        from models.evaluation import _scene, heldout_items
        from models.scenes import EVAL_TYPES

        return {_scene(c, i).fingerprint() for c in ("simple", "complex") for t in EVAL_TYPES
                for i, _ in heldout_items(c, t, self.cfg.eval_per_type)}

    def _training_fingerprints(self) -> set[str]:
        """Fingerprints of every image in any arm's training set."""
        import sqlite3

        from models.scenes import Scene

        keys = {p.stem for name in ARMS for p in (self.out / "arms" / name / "images").glob("*")}
        con = sqlite3.connect(self.db_url.split("///", 1)[1])
        try:
            return {Scene.from_json(r[1]).fingerprint() for r in con.execute(
                "SELECT opaque_id, scene_json FROM images WHERE scene_json IS NOT NULL") if r[0] in keys}
        finally:
            con.close()

    # ------------------------------------------------------------------ model rounds
    async def _round2(self) -> dict:
        """Round 2 (SPEC §3.2): promote the GAP arm's adapter, let the same population play again,
        re-evaluate both rounds and read each round's numbers from the game database."""
        from game import rounds
        from game.db import Database
        from game.migrate import upgrade

        adapter = (self.out / "adapters" / "gap").resolve()
        if not (adapter / "adapter_config.json").exists():
            why = (self.stages.done("finetune") or {}).get("gap", {}).get("skipped", "no adapter")
            return {"skipped": f"the GAP arm was not trained ({why}): there is no model to promote",
                    "sessions": self.cfg.round2_sessions}
        await asyncio.to_thread(upgrade, self.db_url)  # a resumed run may meet newer migrations
        db = Database(self.db_url)
        try:
            current = await rounds.latest(db)
            if current is None or current.spec != str(adapter):  # not on resuming an interrupted round 2
                current = await rounds.promote(db, str(adapter), by="experiment", now_ms=int(time.time() * 1000))
        finally:
            await db.dispose()
        first = self._truth()
        memory: dict[int, list[dict]] = {}
        for o in first.get("outcomes", []):   # what the learners saw in round 1 they still know
            memory.setdefault(o["p"], []).append(o)
        served: list[rounds.Round] = []

        async def serving_the_adapter() -> None:
            """The server loaded the promoted round (else it fell back to the base): checked before
            anyone plays, so a failed load costs no simulation and leaves no base answers in round 2."""
            db = Database(self.db_url)
            try:
                now = await rounds.latest(db)
            finally:
                await db.dispose()
            if now is None or now.number != current.number or now.model_id is None:
                raise RuntimeError(f"round 2 does not serve the promoted adapter {adapter}: "
                                   f"{now.error if now else 'no round recorded'}")
            served.append(now)

        result = await self._play(self.cfg.round2_sessions, self.out / "simulation-round2", memory=memory,
                                  stream=":round2", before_play=serving_the_adapter)
        (self.out / "truth-round2.json").write_text(json.dumps(result.truth_json()))
        both = {"players": first["players"], "answers": first["answers"] + result.truth_json()["answers"]}
        evaluation = await self._score_evaluation(both, self.out / "player_model-round2.png")
        return {"sessions": self.cfg.round2_sessions, "adapter": str(adapter), "round": served[0].number,
                "model_id": served[0].model_id, "players": len(result.players), "played_sessions": result.sessions,
                "answers": len(result.answers), "n_errors": len(result.errors), "errors": result.errors[:20],
                "flags": sum(a.flagged for a in result.answers),
                "true_mistakes_served": sum(a.mistake for a in result.answers),
                "evaluate": {k: evaluation[k] for k in ("finds", "exported", "precision_at_theta", "ece",
                                                        "spearman_ability", "pi_global")},
                "rounds": await self._round_rows(both["answers"])}

    async def _round_rows(self, truth_answers: list[dict]) -> list[dict]:
        """Per model that served in the game: `game.rounds.round_report`'s numbers (validated by the
        evaluation), with the TRUE error rate per stratum from the truth files beside them (served
        answers on untainted images that really were wrong, of those judged), and on the images the
        GAP arm trained on apart from the rest (round 2 plays the pool the adapter learned from)."""
        from sqlalchemy import select

        from game import rounds
        from game.db import Database
        from game.tables import answers, images, session_images

        mistake = {a["answer_id"]: bool(a["mistake"]) for a in truth_answers}
        trained = {p.stem for p in (self.out / "arms" / "gap" / "images").glob("*")}
        db = Database(self.db_url)
        try:
            stats = await rounds.round_report(db, self.cfg.theta)
            async with db.read() as conn:
                rows = (await conn.execute(
                    select(answers.c.id, answers.c.model_id, images.c.complexity, images.c.opaque_id)
                    .select_from(answers.join(session_images, answers.c.session_image_id == session_images.c.id)
                                 .join(images, images.c.id == answers.c.image_id))
                    .where(session_images.c.tainted.is_(False)))).all()
        finally:
            await db.dispose()
        true: dict[str, dict[str, list[int]]] = {}
        for r in rows:
            if r.id not in mistake:
                continue  # not judged (lost or timed out): the truth does not know it
            cells = true.setdefault(r.model_id, {})
            for key in ("all", r.complexity or "unknown",
                        "trained images" if r.opaque_id in trained else "other images"):
                n_wrong = cells.setdefault(key, [0, 0])
                n_wrong[0] += 1
                n_wrong[1] += mistake[r.id]
        out = []
        for s in stats:
            out.append({"round": 0 if s.round is None else s.round,   # 0: served before any promotion
                        "model_id": s.model_id, "questions": s.questions,
                        "untainted_questions": s.untainted_questions, "finds": s.finds, "confirmed": s.confirmed,
                        "error_rate": s.error_rate, "player_minutes": s.player_minutes,
                        "finds_per_player_minute": s.finds_per_player_minute,
                        "weaknesses": s.weaknesses(), "weak_strata": s.weak_strata(),
                        "by_type": s.by_type, "by_stratum": s.by_stratum, "true": true.get(s.model_id, {})})
        return json.loads(json.dumps(out))   # as the stage marker stores it (lists, not tuples): same on resume

    def _rounds_section(self, r2: dict | None) -> list[str]:
        """REPORT.md's "Model rounds": per round the validated error rate (`game.rounds`), the true one
        beside it, finds per player-minute, and the weaknesses that remain by question type and stratum."""
        if not r2:
            return []
        head = ["", "## Model rounds", ""]
        if r2.get("skipped"):
            return head + [f"Round 2 was not played: {r2['skipped']}."]
        rows = r2["rounds"]
        speed = self.think_speed

        def true_rate(row: dict, key: str = "all") -> str:
            n, wrong = row["true"].get(key, (0, 0))
            return f"{wrong / n:.1%} ({wrong}/{n})" if n else "–"

        lines = head + [
            f"Round 0 is the base model, round 1 the GAP arm's adapter promoted into the running game "
            f"(`game.rounds.promote`, `{r2['model_id']}`); the same {r2['players']} players "
            f"(learners remembering their round-0 finds) played {r2['sessions']} more session(s) each over HTTP "
            f"({r2['answers']} judged answers, {r2['flags']} flags, errors {r2['n_errors']}), then `gap evaluate` "
            f"re-ran over both rounds ({r2['evaluate']['finds']} finds, {r2['evaluate']['exported']} exported at "
            f"θ={self.cfg.theta}). **Validated error rate** = finds confirmed at θ / questions on untainted "
            "images (`gap model rounds`); **true error rate** = served answers on untainted images that really "
            "were wrong / those judged (from truth.json and truth-round2.json). Player-minutes are on this run's "
            f"clock, where one minute stands for {1 / speed:.0f} game-minutes (the image deadline and the players' "
            "thinking are shrunk alike; the model's own latency is not): in brackets, finds per game-minute.", "",
            "| round | model | questions | untainted | finds | confirmed at θ | validated error rate | "
            "true error rate | finds per player-minute (game) | weakest types | weakest strata |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for row in rows:
            types = ", ".join(f"{t} {v:.0%}" for t, v in row["weaknesses"]) or "none confirmed"
            strata = ", ".join(f"{t} {v:.0%}" for t, v in row["weak_strata"]) or "none confirmed"
            lines.append(f"| {row['round']} | `{row['model_id']}` | {row['questions']} | {row['untainted_questions']} | "
                         f"{row['finds']} | {row['confirmed']} | {row['error_rate']:.1%} | {true_rate(row)} | "
                         f"{row['finds_per_player_minute']:.2f} ({row['finds_per_player_minute'] * speed:.3f}) | "
                         f"{types} | {strata} |")
        strata = sorted({k for row in rows for k in row["by_stratum"]})
        lines += ["", "Per pool stratum, validated (confirmed / untainted questions) and true error rate:", "",
                  "| stratum | " + " | ".join(f"round {row['round']} validated | round {row['round']} true"
                                              for row in rows) + " |",
                  "|---|" + "---:|---:|" * len(rows)]
        for st in strata:
            cells = []
            for row in rows:
                n, conf = row["by_stratum"].get(st, (0, 0))
                cells += [f"{conf / n:.1%} ({conf}/{n})" if n else "–", true_rate(row, st)]
            lines.append(f"| {st} | " + " | ".join(cells) + " |")
        lines += ["", "True error rate on the pool images the GAP arm trained on vs the others (round 1 plays the "
                  "same pool, so its first column includes what the adapter memorised): "
                  + "; ".join(f"round {row['round']}: {true_rate(row, 'trained images')} vs "
                              f"{true_rate(row, 'other images')}" for row in rows), ""]
        if len(rows) > 1 and strata:
            lines += [f"![error rate per stratum]({self._rounds_plot(rows, strata).name})", ""]
        return lines

    def _rounds_plot(self, rows: list[dict], strata: list[str]) -> Path:
        """Validated and true error rate per pool stratum, one bar per round."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
        x = np.arange(len(strata))
        width = 0.8 / len(rows)
        for ax, title in zip(axes, ("validated", "true")):
            for k, row in enumerate(rows):
                cells = row["by_stratum"] if title == "validated" else \
                    {st: tuple(v) for st, v in row["true"].items()}
                ax.bar(x + (k - (len(rows) - 1) / 2) * width,
                       [cells[st][1] / cells[st][0] if cells.get(st, (0, 0))[0] else 0.0 for st in strata], width,
                       label=f"round {row['round']}")
            ax.set_xticks(x, strata, rotation=30, ha="right")
            ax.set_title(f"{title} error rate")
        axes[0].set_ylabel("error rate")
        axes[0].legend()
        return _save_figure(fig, self.out / "rounds.png")

    # ------------------------------------------------------------------ report
    def _report(self, r: dict) -> Path:
        ev, held, arms = r["evaluate"], r["heldout"]["models"], r["arms"]["arms"]
        base = held["base"]["mean"]
        gain = {k: {c: v["mean"][c] - base[c] for c in v["mean"]} for k, v in held.items()}
        per_q = r["heldout"].get("per_type") or self.cfg.eval_per_type
        se = {k: mean_standard_error(v["by_type"].get("complex", {}), per_q) for k, v in held.items()}
        se_gain = {k: (se[k] ** 2 + se["base"] ** 2) ** 0.5 for k in held}
        rows = ["| model | training examples | simple | complex | Δ complex vs base | ± 95 % (sampling) |",
                "|---|---:|---:|---:|---:|---:|"]
        for name in ("base",) + ARMS:
            if name not in held:
                why = "no examples" if not arms.get(name, {}).get("examples") else "not among the trained arms"
                rows.append(f"| {name} | {arms.get(name, {}).get('examples', 0)} | – | – | not trained ({why}) | – |")
                continue
            m = held[name]["mean"]
            n = arms[name]["examples"] if name in arms else 0
            rows.append(f"| {name} | {n} | {m['simple']:.1%} | {m['complex']:.1%} | "
                        f"{(m['complex'] - base['complex']) * 100:+.1f} pts | "
                        f"{'–' if name == 'base' else f'±{1.96 * se_gain[name] * 100:.1f}'} |")
        g_gap = gain.get("gap", {}).get("complex")
        g_rand = gain.get("random", {}).get("complex")

        def check(ok: bool | None) -> str:
            return "n/a" if ok is None else ("met" if ok else "NOT met")

        def check_ratio() -> str:
            """GAP gain ≥ 2 × random gain, judged against sampling noise: 'met' only when the GAP gain is
            positive and exceeds twice the random gain by more than the 95 % interval of that difference."""
            if g_gap is None or g_rand is None:
                return "n/a"
            diff = g_gap - 2 * max(g_rand, 0.0)
            noise = 1.96 * (se_gain["gap"] ** 2 + (4 * se_gain["random"] ** 2 if g_rand > 0 else 0.0)) ** 0.5
            if diff > noise and g_gap > 1.96 * se_gain["gap"]:
                return "met"
            return "NOT met" if diff < -noise else f"not shown (difference {diff * 100:+.1f} ± {noise * 100:.1f} pts)"

        prec, ece, sp = ev.get("precision_at_theta"), ev.get("ece"), ev.get("spearman_ability")
        targets = [
            f"| precision of exported finds at θ={self.cfg.theta} ≥ 0.90 | "
            f"{'n/a' if prec is None else f'{prec:.3f}'} ({ev['exported']} exported of {ev['finds']} finds) | "
            f"{check(None if prec is None else prec >= 0.9)} |",
            f"| ECE of find posteriors ≤ 0.05 | {'n/a' if ece is None else f'{ece:.3f}'} (all finds); "
            f"{'n/a' if ev.get('ece_unmuted') is None else format(ev['ece_unmuted'], '.3f')} (finds of unmuted players) | "
            f"{check(None if ece is None else ece <= 0.05)} |",
            f"| Spearman(estimated, true ability) ≥ 0.8 | {'n/a' if sp is None else f'{sp:.3f}'} | "
            f"{check(None if sp is None else sp >= 0.8)} |",
            f"| complex held-out +10 pts after GAP fine-tuning | "
            f"{'n/a' if g_gap is None else f'{g_gap * 100:+.1f} pts'} | {check(None if g_gap is None else g_gap >= 0.10)} |",
            f"| GAP gain ≥ 2 × random-pairs gain | "
            f"{'n/a' if g_gap is None or g_rand is None else f'{g_gap * 100:+.1f} vs {g_rand * 100:+.1f} pts'} | "
            f"{check_ratio()} |",
        ]
        weak_lines: list[str] = []
        if r["heldout"].get("weak_slices"):
            # the fine-tuning targets move to the weak slice: complex scenes' mistakes are ones data
            # cannot fix (`gap ceiling`), so their two rows would only restate that
            weak_rows, weak_targets = self._weak_section(r)
            targets = targets[:3] + weak_targets
            weak_lines = weak_rows
        plot = self._plot(held)
        types = sorted({t for v in held.values() for t in v["by_type"].get("complex", {})})
        per_type = ["| model | " + " | ".join(types) + " |", "|---|" + "---:|" * len(types)]
        for name, v in held.items():
            per_type.append(f"| {name} | " + " | ".join(f"{v['by_type']['complex'].get(t, float('nan')):.0%}"
                                                       for t in types) + " |")
        sim = r["simulate"]
        pool = r["pool"]
        lines = [
            "# GAP closed-loop experiment", "",
            f"Base model: `{self.base}`. Run directory: `{self.out}`. Every number below comes from this run "
            f"(stage results in `stages/*.done`).", "",
            "## Data collection", "",
            f"- pool: {pool['images']} procedural images ({pool['reliable']} in the reliable pool, threshold "
            f"{pool['reliable_threshold']:.2f}); base accuracy on the pool by complexity: "
            + ", ".join(f"{k} {v:.0%}" for k, v in pool["mean_accuracy"].items()),
            f"- simulation: {sim['players']} simulated players ({ev['players_by_kind']}), {sim['sessions']} sessions "
            f"through the HTTP API, {sim['answers']} judged answers, {sim['flags']} flags, "
            f"{sim['true_mistakes_served']} served answers truly wrong; errors: {sim['n_errors']}",
            f"- evaluation: {ev['finds']} finds, {ev['exported']} exported at θ={self.cfg.theta}; "
            f"muted by kind {ev['muted_by_kind']}; π {ev['pi_global']:.3f}",
            f"- held-out: {r['heldout']['per_type']} questions per type and complexity from the held-out seed range; "
            f"held-out scenes identical to a training image: {r['heldout']['heldout_scenes_in_training']} "
            f"(pool images identical to a held-out scene, excluded from training: "
            f"{r['arms'].get('pool_images_identical_to_heldout', 0)})", "",
            *self._learning_section(sim), "",
            "## Targets", "", "| target | measured | status |", "|---|---|---|", *targets, "",
            "## Held-out accuracy after LoRA fine-tuning", "", *rows, "",
            f"![accuracy]({plot.name})", "", *weak_lines,
            "### Complex scenes per question type", "", *per_type, "",
            *self._gap_arm_note(),
            "**random** = per GAP example, a uniformly drawn question with its true answer on the same image "
            "(same count, same images); "
            "**unfiltered** = every flag with its correction and every \"correct\" verdict with the model's answer, "
            "no θ, no muting; **truth** = every asked question with its true answer (upper bound).",
            "", f"Player model: {ev.get('player_model') or 'not fitted'}",
            f"Spearman(player-model ability, true ability): {ev.get('spearman_player_model')}",
        ]
        lines += self._rounds_section(r.get("round2"))
        path = self.out / "REPORT.md"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _weak_section(self, r: dict) -> tuple[list[str], list[str]]:
        """The withheld styles: per-style rows, per-type table, the weak-slice targets and the gain plot."""
        from models.evaluation import PERCEPTION_TYPES

        held, arms = r["heldout"]["models"], r["arms"]["arms"]
        weak = r["heldout"]["weak_slices"]
        n = r["heldout"].get("per_type") or self.cfg.eval_per_type
        stats = weak_stats(held, weak, n)
        rows = ["## The weak slice: simple scenes in withheld styles", "",
                f"Held-out simple scenes drawn in the styles the pool holds ({', '.join(weak)}; pool shares "
                f"{dict(self.cfg.pool_styles)}), {n} questions per perception type and style; **weak** is their mean, "
                "**overall** the mean of the plain simple and complex slices. Intervals: 95 %, sampling."
                + self._replay_note(), "",
                "| model | training examples | " + " | ".join(weak) + " | weak | Δ weak (95 % interval) | overall | "
                "Δ overall |", "|---|---:|" + "---:|" * (len(weak) + 4)]
        for name, v in held.items():
            m, st = v["mean"], stats[name]
            lo, hi = st["gain_interval"]
            rows.append(f"| {name} | {arms.get(name, {}).get('examples', 0)} | "
                        + " | ".join(f"{m[c]:.1%}" for c in weak) + f" | {m['weak']:.1%} | "
                        + ("–" if name == "base" else f"{st['gain'] * 100:+.1f} ({lo * 100:+.1f} … {hi * 100:+.1f})")
                        + f" | {st['overall']:.1%} | "
                        + ("–" if name == "base" else f"{(st['overall'] - stats['base']['overall']) * 100:+.1f}") + " |")
        rows += ["", "Weak slice per question type (mean over the styles):", "",
                 "| model | " + " | ".join(PERCEPTION_TYPES) + " |", "|---|" + "---:|" * len(PERCEPTION_TYPES)]
        for name, v in held.items():
            rows.append(f"| {name} | " + " | ".join(
                f"{np.mean([v['by_type'][c][t] for c in weak]):.0%}" for t in PERCEPTION_TYPES) + " |")
        curve = curve_stats(r.get("curve"), held, weak, n)
        plot = self._gain_plot(held, arms, stats, curve)
        rows += ["", f"![weak-slice gain vs examples]({plot.name})", ""]
        if curve:
            rows += ["Learning curve: the GAP and random arms also fine-tuned on their first k examples (the same "
                     "images in both arms; same replay), weak-slice gain with its 95 % interval:", "",
                     "| arm | examples | Δ weak (95 % interval) |", "|---|---:|---:|"]
            for name, pts in curve.items():
                for p in [*pts, {"examples": arms[name]["examples"], **stats[name]}]:
                    lo, hi = p["gain_interval"]
                    rows.append(f"| {name} | {p['examples']} | {p['gain'] * 100:+.1f} ({lo * 100:+.1f} … "
                                f"{hi * 100:+.1f}) |")
            rows.append("")
        g, rnd = stats.get("gap"), stats.get("random")

        def status(ok: bool | None) -> str:
            return "n/a" if ok is None else ("met" if ok else "NOT met")

        targets = [
            "| weak slice +10 pts after GAP fine-tuning | " + ("n/a" if g is None else f"{g['gain'] * 100:+.1f} pts") + " | "
            f"{status(None if g is None else g['gain'] >= 0.10)} |",
            f"| weak-slice GAP gain ≥ 2 × random gain, 95 % intervals apart | "
            + ("n/a | n/a |" if g is None or rnd is None else
               f"{g['gain'] * 100:+.1f} ({g['gain_interval'][0] * 100:+.1f} … {g['gain_interval'][1] * 100:+.1f}) vs "
               f"{rnd['gain'] * 100:+.1f} ({rnd['gain_interval'][0] * 100:+.1f} … {rnd['gain_interval'][1] * 100:+.1f}) pts | "
               f"{status(g['gain'] >= 2 * rnd['gain'] and g['gain_interval'][0] > rnd['gain_interval'][1])} |"),
            f"| overall held-out not down by more than 1 pt (GAP) | "
            + ("n/a | n/a |" if g is None else f"{(g['overall'] - stats['base']['overall']) * 100:+.1f} pts | "
               f"{status(g['overall'] - stats['base']['overall'] >= -0.01)} |"),
        ]
        return rows, targets

    def _gap_arm_note(self) -> list[str]:
        finds = ("finds with posterior ≥ θ from unmuted, ungated players with their corrections")
        strata = self.cfg.train_strata
        where = (f" Every arm holds only pool images of the strata {', '.join(strata)} (`--train-strata`, as "
                 f"`gap export --strata {','.join(strata)}`): the other strata's mistakes are ones `gap ceiling` "
                 "shows data cannot fix. " if strata else "")
        if self.cfg.gap_arm == "finds":
            return [f"{where}Arms: **gap** = the product's default export (`gap export`): {finds}; "]
        return [f"{where}Arms: **gap** = the product's export with confirmations (`gap export --confirmed`): "
                f"{finds}, plus answers those players judged correct whose chance of being a missed mistake is "
                "≤ 1 − θ, with the model's answer; "]

    def _replay_note(self) -> str:
        parts = []
        base = self.cfg.replay_target == "base"
        for kind, folder in (("complex", "replay"), ("simple", "replay-simple")):
            info = self.out / (folder + ("-base" if base else "")) / "dataset.json"
            if info.exists():
                data = json.loads(info.read_text())
                parts.append(f"{data['examples']} pairs on {data['images']} plain {kind} training scenes"
                             + (f" with the base model's own answers (the truth in {data['agrees_with_truth']:.0%})"
                                if base else " with true answers"))
        if not parts:
            return ""
        return (f" Replay: every trained arm also saw the same {' and '.join(parts)} (counted in its training "
                "examples' fine-tuning steps, not in the column below).")

    def _gain_plot(self, held: dict, arms: dict, stats: dict, curve: dict[str, list[dict]]) -> Path:
        """Weak-slice gain against the number of training examples: per arm its learning-curve points
        (when the run has them) and the whole arm, each with its 95 % interval."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name in held:
            if name == "base":
                continue
            pts = [*curve.get(name, []), {"examples": arms.get(name, {}).get("examples", 0), **stats[name]}]
            pts.sort(key=lambda p: p["examples"])
            x = [p["examples"] for p in pts]
            y = np.array([p["gain"] * 100 for p in pts])
            lo = np.array([p["gain_interval"][0] * 100 for p in pts])
            hi = np.array([p["gain_interval"][1] * 100 for p in pts])
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o-", capsize=4, label=name)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("training examples")
        ax.set_ylabel("weak-slice gain (points)")
        ax.legend()
        return _save_figure(fig, self.out / "weak_gain.png")

    def _plot(self, held: dict) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(held)
        x = np.arange(len(names))
        fig, ax = plt.subplots(figsize=(7, 3.5))
        slices = ["simple", "complex"] + (["weak"] if "weak" in held[names[0]]["mean"] else [])
        width = 0.8 / len(slices)
        for k, c in enumerate(slices):
            ax.bar(x + (k - (len(slices) - 1) / 2) * width, [held[n]["mean"][c] for n in names], width,
                   label=c if c != "weak" else "weak (withheld styles)")
        ax.set_xticks(x, names)
        ax.set_ylabel("held-out accuracy")
        ax.set_ylim(0, 1)
        ax.legend()
        return _save_figure(fig, self.out / "accuracy.png")


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def weak_stats(held: dict, weak: list[str], per_type: int) -> dict[str, dict]:
    """Per model: overall (mean of plain simple and complex), weak-slice gain over base and its 95 % interval."""
    out = {}
    for name, v in held.items():
        gain, interval = weak_gain(v["by_type"], held["base"]["by_type"], weak, per_type)
        out[name] = {"gain": gain, "gain_interval": (gain, gain) if name == "base" else interval,
                     "overall": (v["mean"]["simple"] + v["mean"]["complex"]) / 2}
    return out


def weak_gain(by_type: dict, base_by_type: dict, weak: list[str], per_type: int) -> tuple[float, tuple[float, float]]:
    """A model's weak-slice gain over base and its 95 % interval (sampling: each per-type accuracy
    binomial over `per_type` questions; model and base independent)."""
    def mean(bt: dict) -> float:
        return float(np.mean([np.mean(list(bt[c].values())) for c in weak]))

    def se(bt: dict) -> float:
        return float(np.sqrt(sum(mean_standard_error(bt[c], per_type) ** 2 for c in weak)) / len(weak))

    gain = mean(by_type) - mean(base_by_type)
    half = 1.96 * float(np.hypot(se(by_type), se(base_by_type)))
    return gain, (gain - half, gain + half)


def curve_stats(curve: dict, held: dict, weak: list[str], per_type: int) -> dict[str, list[dict]]:
    """The learning curve's points as weak-slice gains over base with 95 % intervals (as `weak_stats`)."""
    out: dict[str, list[dict]] = {}
    for name, points in (curve or {}).get("points", {}).items():
        for pt in points:
            gain, interval = weak_gain(pt["by_type"], held["base"]["by_type"], weak, per_type)
            out.setdefault(name, []).append({"examples": pt["examples"], "gain": gain, "gain_interval": interval})
    return out


def _slice_of(complexity: str | None, scene_json: str | None) -> str:
    """An image's slice for the pool's accuracy table: its complexity, with the style when it has one."""
    from models.evaluation import slice_name
    from models.scenes import Scene

    if not complexity or ":" in complexity:  # a styled pool image stores its slice as its complexity
        return complexity or "unknown"
    style = Scene.from_json(scene_json).style if scene_json else "plain"
    return slice_name(complexity, style)


def random_pairs(records: list, scenes: dict, rng: random.Random) -> list:
    """The random arm: for each record of the GAP arm, a uniformly drawn question about the *same* image
    with its true answer — the same number of examples on the same images, so the two arms differ only
    in which questions were asked and how they were labelled (SPEC §3.2)."""
    from game.exports import ExportRecord
    from game.question_types import classify_question
    from models.scenes import sample_question

    out = []
    for i, rec in enumerate(records):
        qa = sample_question(scenes[rec.image_key], rng, None)
        out.append(ExportRecord(id=f"random-{i}", image_key=rec.image_key, image_mime=rec.image_mime,
                                question=qa.question, model_answer="", correct_answer=qa.answer, posterior=None,
                                question_type=classify_question(qa.question)))
    return out


def config_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ExperimentConfig fields `gap experiment`'s options set; a ValueError says which option is wrong
    (raised before any work, so a typo costs nothing)."""
    from game.exports import clean_strata
    from models.scenes import parse_style_shares

    kw: dict[str, Any] = {"seed": args.seed}
    plain = (("players", "players"), ("sessions", "sessions"), ("pool", "pool_images"),
             ("eval_per_type", "eval_per_type"), ("ft_max_steps", "ft_max_steps"),
             ("reliability_questions", "reliability_questions"), ("replay", "replay_images"),
             ("replay_simple", "replay_simple_images"), ("gap_arm", "gap_arm"), ("replay_target", "replay_target"))
    for name, key in plain:
        if getattr(args, name, None):
            kw[key] = getattr(args, name)
    for name, key in (("theta", "theta"), ("learners", "learner_share"), ("complex_share", "complex_share")):
        if getattr(args, name, None) is not None:
            kw[key] = getattr(args, name)
    if args.standin:
        kw["standin"] = True
    if getattr(args, "standin_weak", None):
        kw["standin_weak"] = tuple(args.standin_weak)
    if getattr(args, "arms", None):
        unknown = [a for a in args.arms.split(",") if a not in ARMS]
        if unknown or "gap" not in args.arms.split(","):
            raise ValueError(f"--arms takes gap and any of {', '.join(ARMS[1:])} (unknown: {unknown})")
        kw["trained_arms"] = tuple(a for a in ARMS if a in args.arms.split(","))
    if getattr(args, "curve", None):
        try:
            shares = tuple(sorted({float(x) for x in args.curve.split(",") if x.strip()}))
        except ValueError:
            shares = ()
        if not shares or not all(0 < f < 1 for f in shares):
            raise ValueError(f"--curve takes shares between 0 and 1, e.g. 0.25,0.5 (not {args.curve!r})")
        kw["curve_fractions"] = shares
    if getattr(args, "ft_interpolate", None) is not None:
        if not 0 < args.ft_interpolate <= 1:
            raise ValueError(f"--ft-interpolate takes a share in (0, 1], not {args.ft_interpolate}")
        kw["ft_interpolate"] = args.ft_interpolate
    if getattr(args, "train_strata", None):
        kw["train_strata"] = clean_strata(args.train_strata)
    if getattr(args, "round2_sessions", None):
        if args.standin:
            raise ValueError("--round2-sessions needs a trained adapter; a --standin run trains none")
        kw["round2_sessions"] = args.round2_sessions
    if getattr(args, "pool_styles", None):
        kw["pool_styles"] = parse_style_shares(args.pool_styles)
    return kw


def run_experiment_cli(args: argparse.Namespace, settings) -> int:
    """`gap experiment [--small] [--out DIR]`."""
    try:
        kw = config_options(args)
    except ValueError as exc:
        print(f"gap experiment: {exc}", file=sys.stderr)
        return 2
    cfg = ExperimentConfig.small(**kw) if args.small else ExperimentConfig(**kw)
    try:
        exp = Experiment(Path(args.out), args.base or settings.model, cfg)
    except ExperimentMismatch as exc:
        print(f"gap experiment: {exc}", file=sys.stderr)
        return 2
    results = exp.run()
    print((Path(args.out) / "REPORT.md").read_text())
    return 0 if results else 1
