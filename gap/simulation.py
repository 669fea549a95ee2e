"""Simulated players: whole sessions through the real HTTP API (SPEC §5.2).

Why: the evaluation, the exports and the closed-loop experiment need players
whose reliability is *known*. Each simulated player authenticates like a real
one (Telegram initData signed with the bot token), sees an image only through
its ground-truth scene (the simulator maps the opaque image id of the URL to
the image's `scene_json`; it never reads the tainted flag or the pools), asks
template questions of several types, judges each answer against the truth with
its own sensitivity and false-alarm rate (random flaggers and spammers ignore
the truth), slows down and tires over a session, and types corrections with
occasional typos. The population and every decision come from one seed; the
truth (player parameters and, per answer, whether the served answer really was
wrong) is written for scoring.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import string
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from models.scenes import Scene, answers_match, sample_question

log = logging.getLogger("gap.simulation")

FAMILY_WEIGHTS = {"count": 0.35, "color": 0.2, "shape": 0.1, "exists": 0.15, "position": 0.12, "text": 0.08}


@dataclass
class SimPlayer:
    """One simulated player's true parameters (saved for scoring)."""

    telegram_id: int
    kind: str                 # careful | sloppy | random | spammer
    sensitivity: float        # P(flag | the answer is wrong) when fresh
    false_alarm: float        # P(flag | the answer is right)
    fatigue: float            # relative loss of sensitivity from the first to the last image
    think_seconds: float      # time per question (simulated)
    questions_per_image: int  # how many questions before giving up on an image
    typo_rate: float
    family_weights: dict[str, float] = field(default_factory=dict)

    @property
    def ability(self) -> float:
        """The true reliability for ranking: Youden's J = s − f (0 for random flaggers)."""
        return self.sensitivity - self.false_alarm


def make_population(n: int, seed: int, random_share: float = 0.2, spammer_share: float = 0.05) -> list[SimPlayer]:
    """Careful, sloppy, 20% random flaggers and a few spammers, drawn from `seed`."""
    rng = random.Random(f"population:{seed}")
    n_random = round(n * random_share)
    n_spam = max(1 if n >= 10 else 0, round(n * spammer_share))
    n_sloppy = round((n - n_random - n_spam) * 0.35)
    kinds = ["random"] * n_random + ["spammer"] * n_spam + ["sloppy"] * n_sloppy
    kinds += ["careful"] * (n - len(kinds))
    rng.shuffle(kinds)
    players = []
    for i, kind in enumerate(kinds):
        if kind == "careful":
            s, f = rng.betavariate(18, 2), rng.betavariate(1, 30)
        elif kind == "sloppy":
            s, f = rng.betavariate(7, 3), rng.betavariate(2, 14)
        elif kind == "random":
            s = f = rng.uniform(0.1, 0.6)
        else:
            s = f = 1.0
        weights = {k: w * rng.uniform(0.5, 1.5) for k, w in FAMILY_WEIGHTS.items()}
        players.append(SimPlayer(
            telegram_id=7_000_000 + seed * 100_000 + i, kind=kind, sensitivity=s, false_alarm=f,
            fatigue=rng.uniform(0.0, 0.3) if kind in ("careful", "sloppy") else 0.0,
            think_seconds=rng.uniform(4, 20), questions_per_image=rng.randint(2, 5),
            typo_rate=rng.uniform(0.0, 0.15), family_weights=weights))
    return players


def with_typo(text: str, rng: random.Random) -> str:
    """One keyboard slip (swap, drop or double a character) — corrections are typed by people."""
    if len(text) < 2:
        return text
    i = rng.randrange(len(text) - 1)
    op = rng.choice(("swap", "drop", "double"))
    if op == "swap":
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if op == "drop":
        return text[:i] + text[i + 1:]
    return text[:i] + text[i] + text[i:]


@dataclass
class AnswerTruth:
    answer_id: str
    telegram_id: int
    image: str            # opaque id
    question: str
    family: str
    served: str
    truth: str
    mistake: bool         # the served answer is wrong (ground truth)
    flagged: bool
    correction: str | None
    position: int


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Client:
    """A player's authenticated HTTP client of the game API."""

    def __init__(self, http: aiohttp.ClientSession, server: str, bot_token: str, player: SimPlayer):
        from webapp.auth import sign_init_data

        self.http = http
        self.server = server.rstrip("/")
        self.auth = "tma " + sign_init_data(bot_token, {"id": player.telegram_id, "first_name": f"sim{player.kind}",
                                                        "username": f"sim{player.telegram_id}"})

    async def call(self, method: str, path: str, body: dict | None = None) -> Any:
        for attempt in range(20):
            async with self.http.request(method, self.server + path, json=body,
                                         headers={"Authorization": self.auth}) as resp:
                data = await resp.json(content_type=None)
                if resp.status == 503 and attempt < 19:  # model queue full: back off as a client should
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "0.5")))
                    continue
                if resp.status >= 400:
                    raise ApiError(resp.status, data)
                return data
        raise ApiError(503, "gave up")


async def play_session(client: Client, player: SimPlayer, scenes: dict[str, Scene], rng: random.Random,
                       speed: float, truths: list[AnswerTruth], on_question=None) -> dict:
    """Play one whole session; returns its summary."""
    state = await client.call("POST", "/api/sessions")
    session_id = state["session_id"]
    while state.get("status") == "playing" and state.get("image"):
        image = state["image"]
        opaque = image["url"].rstrip("/").rsplit("/", 1)[-1]
        scene = scenes.get(opaque)
        position = int(image["index"])
        moved_on = False
        for q_no in range(player.questions_per_image if scene is not None else 0):
            family = rng.choices(list(player.family_weights), weights=list(player.family_weights.values()))[0]
            try:
                qa = sample_question(scene, rng, family)
            except ValueError:  # NoQuestion: this scene has no such thing (e.g. no text)
                qa = sample_question(scene, rng, None)
            if speed:
                await asyncio.sleep(player.think_seconds * speed * rng.uniform(0.5, 1.5))
            if on_question is not None:
                on_question(opaque, qa)
            try:
                ans = await client.call("POST", f"/api/sessions/{session_id}/questions",
                                        {"request_id": uuid.uuid4().hex, "text": qa.question})
            except ApiError as exc:
                if exc.status == 409:  # the image ended (deadline): the server moved on
                    moved_on = True
                    break
                raise
            mistake = not answers_match(ans["answer"], qa.answer)
            fresh = 1.0 - player.fatigue * position / 9.0
            if player.kind in ("random", "spammer"):
                p_flag = player.sensitivity
            else:
                p_flag = player.sensitivity * fresh if mistake else player.false_alarm
            flagged = rng.random() < p_flag
            correction = None
            if flagged:
                if player.kind == "spammer":
                    correction = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 6)))
                elif player.kind == "random" or not mistake:
                    # flags without looking: a plausible-looking but arbitrary answer
                    other = sample_question(scene, random.Random(rng.random()), qa.qtype).answer
                    correction = other if not answers_match(other, ans["answer"]) else qa.answer
                else:
                    correction = qa.answer
                if rng.random() < player.typo_rate:
                    correction = with_typo(correction, rng)
            try:
                state = await client.call("POST", f"/api/answers/{ans['answer_id']}/verdict",
                                          {"request_id": uuid.uuid4().hex, "verdict": "wrong" if flagged else "correct",
                                           "correction": correction})
            except ApiError as exc:
                if exc.status == 409:
                    moved_on = True
                    break
                raise
            truths.append(AnswerTruth(answer_id=ans["answer_id"], telegram_id=player.telegram_id, image=opaque,
                                      question=qa.question, family=qa.family, served=ans["answer"], truth=qa.answer,
                                      mistake=mistake, flagged=flagged, correction=correction, position=position))
            if flagged:
                moved_on = True
                break
        if not moved_on:
            # out of questions: wait for the image's server-side deadline, then resume (the server moves on)
            await asyncio.sleep(max(0.0, float(image.get("seconds_left") or 0.0)) + 0.05)
            state = await client.call("POST", "/api/sessions")
            if state.get("image") and state["image"]["index"] == position and state["session_id"] == session_id:
                await asyncio.sleep(0.2)
                state = await client.call("POST", "/api/sessions")
        elif state.get("session_id") == session_id and state.get("image") and state["image"]["index"] == position:
            state = await client.call("POST", "/api/sessions")
        if state.get("session_id") != session_id:
            break
    return await client.call("GET", f"/api/sessions/{session_id}/summary")


async def load_scenes(database_url: str) -> dict[str, Scene]:
    """opaque image id → ground-truth scene. Reads only `opaque_id` and `scene_json`."""
    from sqlalchemy import select

    from game.db import Database
    from game.tables import images

    db = Database(database_url)
    try:
        async with db.read() as conn:
            rows = (await conn.execute(select(images.c.opaque_id, images.c.scene_json)
                                       .where(images.c.scene_json.is_not(None)))).all()
    finally:
        await db.dispose()
    return {r.opaque_id: Scene.from_json(r.scene_json) for r in rows}


@dataclass
class SimulationResult:
    players: list[SimPlayer]
    answers: list[AnswerTruth]
    sessions: int
    errors: list[str]
    seconds: float

    def truth_json(self) -> dict:
        return {"players": [asdict(p) | {"ability": p.ability} for p in self.players],
                "answers": [asdict(a) for a in self.answers], "sessions": self.sessions, "errors": self.errors}


async def simulate(server: str, bot_token: str, database_url: str, n_players: int, *, seed: int = 0,
                   sessions_per_player: int = 3, concurrency: int = 8, speed: float = 0.0,
                   players: list[SimPlayer] | None = None, progress=None, on_question=None) -> SimulationResult:
    """Run the population through `sessions_per_player` sessions each against `server`."""
    started = time.perf_counter()
    scenes = await load_scenes(database_url)
    if not scenes:
        raise RuntimeError("no images with ground-truth scenes in the database (run `gap images generate N`)")
    players = players or make_population(n_players, seed)
    truths: list[AnswerTruth] = []
    errors: list[str] = []
    done = 0
    sem = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency * 2)) as http:
        async def run_player(p: SimPlayer) -> None:
            nonlocal done
            rng = random.Random(f"player:{seed}:{p.telegram_id}")
            client = Client(http, server, bot_token, p)
            for _ in range(sessions_per_player):
                async with sem:
                    try:
                        await play_session(client, p, scenes, rng, speed, truths, on_question)
                    except (ApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                        errors.append(f"player {p.telegram_id}: {exc}")
                        log.warning("simulated player %s: %s", p.telegram_id, exc)
                done += 1
                if progress:
                    progress(done, len(players) * sessions_per_player)

        await asyncio.gather(*(run_player(p) for p in players))
    return SimulationResult(players=players, answers=truths, sessions=done, errors=errors,
                            seconds=time.perf_counter() - started)


def run_simulation_cli(args: argparse.Namespace, settings) -> int:
    """`gap simulate`: prints a one-line report; --truth-out writes the truth JSON."""
    from tqdm import tqdm

    token = args.bot_token or (settings.bot_token.get_secret_value() if settings.bot_token else None)
    if not token:
        print("gap simulate: a bot token is needed to sign initData (--bot-token or GAP_BOT_TOKEN)")
        return 2
    url = args.database or settings.database_url
    bar = tqdm(total=args.players * args.sessions, desc="sessions", unit="session")

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    result = asyncio.run(simulate(args.server, token, url, args.players, seed=args.seed,
                                  sessions_per_player=args.sessions, concurrency=args.concurrency,
                                  speed=args.speed, progress=progress))
    bar.close()
    flags = sum(a.flagged for a in result.answers)
    print(f"simulated {len(result.players)} players, {result.sessions} sessions, {len(result.answers)} judged answers "
          f"({flags} flags) in {result.seconds:.1f} s; errors: {len(result.errors)}")
    if args.truth_out:
        Path(args.truth_out).write_text(json.dumps(result.truth_json()))
        print(f"truth written to {args.truth_out}")
    return 0 if not result.errors else 1
