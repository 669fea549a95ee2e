"""How many verdicts does a crowd need to make a fresh photo pool playable? (SPEC §1.2)

A deployer brings photographs without ground truth. The bootstrap the README
describes: the operator declares a few curated photos reliable (`gap images
import --reliable`), so the first sessions can be planned; their tainted answers
measure the players (s, f — SPEC §2); the players' verdicts on honest answers
then measure the model on every other photo (game/crowd_reliability.py), and
photos whose lower credible bound passes the threshold join the reliable pool.

This tool plays that through the real game core (GameService on a real SQLite
file, `run_evaluation` with its crowd step) with lab/simulation.py's player
population (careful, sloppy, random flaggers, spammers). The model's true
accuracy per photo is drawn here (most photos answered well, some badly) and
decides, per honest answer, whether it was really wrong; the players judge it
with their own sensitivity and false-alarm rate. It reports, as sessions go,
the verdicts given and how many photos the crowd made reliable — and how many
of those the model in truth answers below the threshold (the cost of a wrong
admission: gold that is not gold).

    python -m lab.crowd_bootstrap --out benchmarks/crowd_bootstrap
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select, update

from game import tables as T
from game.db import Database
from game.evaluation import EvalConfig
from game.evaluation_store import run_evaluation
from game.images import prepare_image, store_image
from game.migrate import upgrade
from game.service import GameConfig, GameService
from lab.simulation import SimPlayer, make_population
from models.fake import FixedLatencyModel


@dataclass(frozen=True)
class BootstrapConfig:
    photos: int = 40
    declared: int = 5             # the operator's curated set on day one
    good_share: float = 0.7       # photos the model answers well (true accuracy ≈ 0.97)
    players: int = 30
    max_sessions: int = 400
    evaluate_every: int = 10      # sessions between `gap evaluate` runs
    target: int = 10              # crowd-measured reliable photos at which the run stops
    crowd_threshold: float = 0.9
    seed: int = 0


class StepClock:
    """Epoch milliseconds that move only when the simulation says so."""

    def __init__(self, start_ms: int = 1_790_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now


def photo_bytes(rng: random.Random, index: int) -> bytes:
    """A distinct photo-sized JPEG (the simulation never looks at pixels; only its truth matters)."""
    w, h = rng.choice([(640, 480), (480, 640), (600, 400), (512, 512)])
    img = Image.effect_noise((w, h), 40 + index % 50).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


async def make_pool(db: Database, cfg: BootstrapConfig, rng: random.Random) -> dict[int, float]:
    """The fresh photo pool: returns each photo's true model accuracy; the first good ones are declared."""
    truth: dict[int, float] = {}
    declared = []
    for i in range(cfg.photos):
        image_id, _ = await store_image(db, prepare_image(photo_bytes(rng, i)), pool="imported:photos",
                                        source_name=f"photo-{i}.jpg")
        good = rng.random() < cfg.good_share
        truth[image_id] = rng.betavariate(30, 1) if good else rng.uniform(0.3, 0.85)
        if good and len(declared) < cfg.declared:
            declared.append(image_id)
    async with db.write() as conn:
        await conn.execute(update(T.images).where(T.images.c.id.in_(declared))
                           .values(declared_reliable=True, reliable=True))
    return truth


async def play_one(service: GameService, clock: StepClock, player: SimPlayer, pid: int,
                   truth: dict[int, float], rng: random.Random) -> int:
    """One session; returns the verdicts given."""
    state = await service.start_or_resume(pid)
    sid = state["session_id"]
    verdicts = 0
    while state["status"] == "playing":
        for _ in range(player.questions_per_image):
            ans = await service.ask(pid, sid, f"q{rng.getrandbits(64)}", "Is there a dog in the picture?")
            async with service.db.read() as conn:
                row = (await conn.execute(select(T.answers.c.tainted, T.answers.c.image_id)
                                          .where(T.answers.c.id == ans["answer_id"]))).one()
            mistake = row.tainted or rng.random() > truth[row.image_id]
            p_flag = player.sensitivity if player.kind in ("random", "spammer") or mistake else player.false_alarm
            flag = rng.random() < p_flag
            clock.now += int(1000 * player.think_seconds)
            state = await service.verdict(pid, ans["answer_id"], f"v{rng.getrandbits(64)}",
                                          "wrong" if flag else "correct",
                                          f"a correction {rng.getrandbits(16)}" if flag else None)
            verdicts += 1
            if flag or state["status"] != "playing":
                break
        else:  # judged every answer Correct: the image times out
            clock.now += 121_000
            state = await service.start_or_resume(pid)
    return verdicts


async def crowd_state(db: Database, truth: dict[int, float], threshold: float) -> dict[str, int]:
    async with db.read() as conn:
        rows = (await conn.execute(select(T.images.c.id, T.images.c.reliable, T.images.c.declared_reliable))).all()
    crowd = [r.id for r in rows if r.reliable and not r.declared_reliable]
    return {"reliable": sum(r.reliable for r in rows), "crowd_reliable": len(crowd),
            "crowd_wrongly_reliable": sum(truth[i] < threshold for i in crowd)}


async def run(cfg: BootstrapConfig, database_url: str, progress=None) -> dict[str, Any]:
    """Play until the crowd has made `target` photos reliable (or `max_sessions`); the timeline of verdicts."""
    await asyncio.to_thread(upgrade, database_url)
    db = Database(database_url)
    rng = random.Random(f"crowd-bootstrap:{cfg.seed}")
    try:
        truth = await make_pool(db, cfg, rng)
        clock = StepClock()
        service = GameService(db, FixedLatencyModel(0), hash_key=b"crowd-bootstrap", clock=clock,
                              rng=random.Random(cfg.seed), config=GameConfig(pool_cache_seconds=0))
        players = make_population(cfg.players, cfg.seed)
        pids = [await service.upsert_player(p.telegram_id, p.kind) for p in players]
        config = EvalConfig(crowd_threshold=cfg.crowd_threshold)
        timeline: list[dict[str, Any]] = []
        verdicts = 0
        reached: dict[str, Any] = {}
        for session in range(1, cfg.max_sessions + 1):
            k = (session - 1) % len(players)
            verdicts += await play_one(service, clock, players[k], pids[k], truth, rng)
            if progress is not None:
                progress()
            if session % cfg.evaluate_every:
                continue
            clock.now += 60_000
            await run_evaluation(db, config, now_ms=clock.now)
            point = {"sessions": session, "verdicts": verdicts, **await crowd_state(db, truth, cfg.crowd_threshold)}
            timeline.append(point)
            for goal in (cfg.declared, cfg.target):
                if point["crowd_reliable"] >= goal and f"crowd_reliable>={goal}" not in reached:
                    reached[f"crowd_reliable>={goal}"] = point
            if point["crowd_reliable"] >= cfg.target:
                break
    finally:
        await db.dispose()
    good = sum(a >= cfg.crowd_threshold for a in truth.values())
    return {"config": asdict(cfg), "photos_truly_above_threshold": good, "reached": reached, "timeline": timeline}


def report_md(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = ["# Crowd bootstrap of a fresh photo pool (lab/crowd_bootstrap.py)", "",
             f"{cfg['photos']} photos, {cfg['declared']} declared on day one, {result['photos_truly_above_threshold']} "
             f"truly answered ≥ {cfg['crowd_threshold']:.0%} by the model; {cfg['players']} simulated players "
             "(lab/simulation.py population); `gap evaluate` every "
             f"{cfg['evaluate_every']} sessions. Seed {cfg['seed']}.", "",
             "| sessions | verdicts | reliable (all) | crowd-measured reliable | of which truly below threshold |",
             "|---:|---:|---:|---:|---:|"]
    for p in result["timeline"]:
        lines.append(f"| {p['sessions']} | {p['verdicts']} | {p['reliable']} | {p['crowd_reliable']} | "
                     f"{p['crowd_wrongly_reliable']} |")
    lines.append("")
    for goal, p in result["reached"].items():
        lines.append(f"- {goal.replace('>=', ' ≥ ')}: after {p['sessions']} sessions, {p['verdicts']} verdicts")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for crowd_bootstrap.json and REPORT.md")
    for name, value in asdict(BootstrapConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    cfg = BootstrapConfig(**{k: getattr(args, k) for k in asdict(BootstrapConfig())})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, tqdm(total=cfg.max_sessions, desc="sessions", file=sys.stderr) as bar:
        result = asyncio.run(run(cfg, f"sqlite+aiosqlite:///{Path(tmp) / 'bootstrap.sqlite3'}", bar.update))
    (out / "crowd_bootstrap.json").write_text(json.dumps(result, indent=1))
    (out / "REPORT.md").write_text(report_md(result))
    print(report_md(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
