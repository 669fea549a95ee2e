"""Simulated players: whole sessions through the real HTTP API (SPEC §5.2).

Why: the evaluation, the exports and the closed-loop experiment need players
whose reliability is *known*. Each simulated player authenticates like a real
one (Telegram initData signed with the bot token), sees an image only through
its ground-truth scene (the simulator maps the opaque image id of the URL to
the image's `scene_json`; it never reads the tainted flag or the pools), asks
template questions of several types, judges each answer against the truth with
its own sensitivity and false-alarm rate (random flaggers and spammers ignore
the truth), slows down and tires over a session, and types corrections with
occasional typos. Careful and sloppy players learn (lab/player_learning.py): from
each session's summary they see which questions earned finds and ask more of
those; random flaggers and spammers do not. The population and every decision
come from one seed; the truth (player parameters and, per answer, whether the
served answer really was wrong) is written for scoring.

Long runs are interruptible and resumable: with a state directory every step is
journaled before its request is sent (lab/simulation_state.py), a rerun skips
the finished sessions and continues the interrupted ones, and requests left in
doubt by a crash are settled by resending them with their request ids.
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
from typing import Any, Mapping

import aiohttp

from lab.player_learning import FindBandit, learner_question, object_kind, session_outcomes
from lab.simulation_state import Journal, StateMismatch
from models.scenes import QA, NoQuestion, Scene, answer_vocabulary, answers_match, sample_question

log = logging.getLogger("lab.simulation")

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
    learner: bool = False     # asks more of what earned finds (careful and sloppy players only)

    @property
    def ability(self) -> float:
        """The true reliability for ranking: Youden's J = s − f (0 for random flaggers)."""
        return self.sensitivity - self.false_alarm


def make_population(n: int, seed: int, random_share: float = 0.2, spammer_share: float = 0.05,
                    learner_share: float = 1.0) -> list[SimPlayer]:
    """Careful, sloppy, 20% random flaggers and a few spammers, drawn from `seed`.

    `learner_share` of the careful and sloppy players learn from their summaries;
    who learns is drawn from its own stream, so the rest of the population does not
    depend on it (a run with and without learners has the same players)."""
    rng = random.Random(f"population:{seed}")
    learns = random.Random(f"learners:{seed}")
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
            typo_rate=rng.uniform(0.0, 0.15), family_weights=weights,
            learner=kind in ("careful", "sloppy") and learns.random() < learner_share))
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
    kind: str = "any"     # the kind of object asked about (lab/player_learning.object_kind)


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


def _decide(player: SimPlayer, scene: Scene, qa_truth: str, qtype: str, served: str, position: int,
            rng: random.Random) -> tuple[bool, bool, str | None]:
    """(mistake, flagged, correction): the player's judgement of one served answer."""
    mistake = not answers_match(served, qa_truth)
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
            try:
                other = sample_question(scene, random.Random(rng.random()), qtype).answer
            except NoQuestion:  # e.g. no other pair of objects far enough apart for a relation question
                other = served
            correction = other if not answers_match(other, served) else qa_truth
            if answers_match(correction, served):  # a correction must differ from the answer (SPEC §3.1)
                correction = next((v for v in answer_vocabulary(qtype) if not answers_match(v, served)), "no")
        else:
            correction = qa_truth
        if rng.random() < player.typo_rate:
            correction = with_typo(correction, rng)
    return mistake, flagged, correction


def next_question(player: SimPlayer, scene: Scene, rng: random.Random, bandit: FindBandit | None) -> QA:
    """The player's next question about `scene`: a learner's bandit picks, others keep their taste."""
    if bandit is not None:
        return learner_question(scene, player.family_weights, bandit, rng)
    family = rng.choices(list(player.family_weights), weights=list(player.family_weights.values()))[0]
    try:
        return sample_question(scene, rng, family)
    except ValueError:  # NoQuestion: this scene has no such thing (e.g. no text)
        return sample_question(scene, rng, None)


def player_bandit(player: SimPlayer, journal: Journal, memory: Mapping[int, list[dict]] | None = None
                  ) -> FindBandit | None:
    """A learner's bandit, rebuilt from the outcomes its finished sessions journaled (so a resumed
    run knows what an uninterrupted one would), after what it remembers from earlier games
    (`memory`: the outcomes of an earlier simulation, e.g. the previous model round); None for a
    player who does not learn."""
    if not player.learner:
        return None
    earlier = (memory or {}).get(player.telegram_id, [])
    return FindBandit().fit([*earlier, *journal.player(player.telegram_id).outcomes])


async def send_verdict(client: Client, journal: Journal, intent: dict) -> dict | None:
    """Send (or resend, with the same request id) a journaled verdict; record the server's answer.

    Returns the new state, or None when the server refused it (the image was over:
    the answer stays without a verdict and out of the truth). A network failure
    leaves the intent pending, to be resent before the player's next session."""
    answer = intent["answer"]
    aid = answer["answer_id"]
    try:
        state = await client.call("POST", f"/api/answers/{aid}/verdict",
                                  {"request_id": intent["rid"], "verdict": "wrong" if answer["flagged"] else "correct",
                                   "correction": answer["correction"]})
    except ApiError as exc:
        if exc.status == 409 and "already been judged" in str(exc.body):
            # judged by a request the server kept no record of: which verdict is unknown, so say it is lost
            journal.write({"k": "lost", "p": intent["p"], "aid": aid})
            return None
        if exc.status in (404, 409) or (exc.status == 400 and "correction_same_as_answer" in str(exc.body)):
            journal.write({"k": "unjudged", "p": intent["p"], "aid": aid, "why": exc.status})
            return None
        raise
    journal.write({"k": "judged", "p": intent["p"], "aid": aid})
    return state


async def settle_pending_verdict(client: Client, journal: Journal, telegram_id: int) -> None:
    """After a crash or a failed request: learn whether the player's last verdict took effect."""
    intent = journal.player(telegram_id).pending_verdict
    if intent is not None:
        await send_verdict(client, journal, intent)


async def _current(client: Client) -> dict | None:
    """The player's active session state (expired images advanced), or None when it has none."""
    try:
        return await client.call("GET", "/api/sessions/current")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


async def _open_session(client: Client, journal: Journal, telegram_id: int, index: int) -> dict | None:
    """The server state of the player's session `index`: resumed if the journal shows it started,
    else started now. None when the started session turns out to be over already."""
    log = journal.player(telegram_id)
    if log.open_session is not None and log.open_session[0] == index:
        sid = log.open_session[1]
        state = await _current(client)
        if state is None or state.get("session_id") != sid:
            return None  # it ended (its last image timed out or was flagged) while we were away
        return state
    state = await client.call("POST", "/api/sessions")  # resumes the server's active session, if any
    journal.write({"k": "start", "p": telegram_id, "s": index, "sid": state["session_id"]})
    return state


async def play_session(client: Client, player: SimPlayer, scenes: dict[str, Scene], rng: random.Random,
                       speed: float, journal: Journal, index: int, on_question=None,
                       bandit: FindBandit | None = None) -> dict:
    """Play (or, after an interruption, continue) the player's session `index`; returns its summary.

    Every ask and verdict is journaled before it is sent (see lab/simulation_state.py); the
    session's end record carries what its summary revealed (the outcomes a learner learns from)."""
    tid = player.telegram_id
    state = await _open_session(client, journal, tid, index)
    session_id = journal.player(tid).open_session[1]
    while state is not None and state.get("status") == "playing" and state.get("image"):
        image = state["image"]
        opaque = image["image_id"]
        scene = scenes.get(opaque)
        position = int(image["index"])
        earlier = image.get("answers") or []   # non-empty only when resuming this image
        waiting = [a for a in earlier if a.get("verdict") is None]
        carried = None
        intent = journal.player(tid).pending_ask
        if waiting and intent and (intent["sid"], intent["position"], intent["image"], intent["question"]) == (
                session_id, position, opaque, waiting[0]["question"]):
            carried = (intent, waiting[0])  # asked before the interruption, answered, not judged yet
        budget = player.questions_per_image - (len(earlier) - len(waiting))
        if scene is None or (waiting and carried is None):
            budget = 0  # an answer we cannot judge blocks new questions: let the image time out
        moved_on = False
        for _ in range(max(1 if carried else 0, budget)):
            if carried is not None:
                ask, ans = carried
                carried = None
                ans = {"answer_id": ans["answer_id"], "answer": ans["answer"]}
            else:
                qa = next_question(player, scene, rng, bandit)
                if speed:
                    await asyncio.sleep(player.think_seconds * speed * rng.uniform(0.5, 1.5))
                if on_question is not None:
                    on_question(opaque, qa)
                ask = {"k": "ask", "p": tid, "s": index, "sid": session_id, "rid": uuid.uuid4().hex, "image": opaque,
                       "position": position, "question": qa.question, "truth": qa.answer, "family": qa.family,
                       "qtype": qa.qtype}
                journal.write(ask)
                try:
                    ans = await client.call("POST", f"/api/sessions/{session_id}/questions",
                                            {"request_id": ask["rid"], "text": qa.question})
                except ApiError as exc:
                    if exc.status == 409:  # the image ended (deadline): the server moved on
                        moved_on = True
                        break
                    raise
            mistake, flagged, correction = _decide(player, scene, ask["truth"], ask["qtype"], ans["answer"],
                                                   position, rng)
            truth = AnswerTruth(answer_id=ans["answer_id"], telegram_id=tid, image=opaque, question=ask["question"],
                                family=ask["family"], served=ans["answer"], truth=ask["truth"], mistake=mistake,
                                flagged=flagged, correction=correction, position=position,
                                kind=object_kind(ask["question"]))
            verdict = {"k": "verdict", "p": tid, "s": index, "sid": session_id, "rid": uuid.uuid4().hex,
                       "answer": asdict(truth)}
            journal.write(verdict)
            new_state = await send_verdict(client, journal, verdict)
            if new_state is None:
                moved_on = True
                break
            state = new_state
            if flagged:
                moved_on = True
                break
        if not moved_on:
            # out of questions: wait for the image's server-side deadline, then look again (the server moves on)
            await asyncio.sleep(max(0.0, float(image.get("seconds_left") or 0.0)) + 0.05)
            state = await _current(client)
            if state and state.get("image") and state["image"]["index"] == position \
                    and state["session_id"] == session_id:
                await asyncio.sleep(0.2)
                state = await _current(client)
        elif state.get("session_id") == session_id and state.get("image") and state["image"]["index"] == position:
            state = await _current(client)
        if state is None or state.get("session_id") != session_id:
            break  # the session is over (GET, unlike POST, never starts the next one)
    summary = await client.call("GET", f"/api/sessions/{session_id}/summary")
    outcomes = session_outcomes(summary, lambda aid: (journal.verdicts.get(aid) or {}).get("answer", {}).get("family"))
    journal.write({"k": "end", "p": tid, "s": index, "sid": session_id, "outcomes": outcomes})
    journal.sync()
    return summary


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
    lost_answers: list[str] = field(default_factory=list)  # verdicts sent whose fate is unknown: not in `answers`
    resumed_sessions: int = 0                              # sessions an earlier, interrupted run had finished
    outcomes: list[dict] = field(default_factory=list)    # what each summary revealed: {p, s, aid, family, kind, outcome}

    def truth_json(self) -> dict:
        return {"players": [asdict(p) | {"ability": p.ability} for p in self.players],
                "answers": [asdict(a) for a in self.answers], "sessions": self.sessions, "errors": self.errors,
                "lost_answers": self.lost_answers, "outcomes": self.outcomes}


async def _check_server_knows(http: aiohttp.ClientSession, server: str, bot_token: str, journal: Journal,
                              players: list[SimPlayer]) -> None:
    """Resuming against another database would mix truths: the server must know finished sessions."""
    by_id = {p.telegram_id: p for p in players}
    checked = 0
    for tid, plog in journal.players.items():
        if plog.last_ended is None or tid not in by_id or checked >= 3:
            continue
        checked += 1
        try:
            await Client(http, server, bot_token, by_id[tid]).call("GET", f"/api/sessions/{plog.last_ended}/summary")
        except ApiError as exc:  # 409 (an errored session still open) proves the server knows it
            if exc.status == 404:
                raise StateMismatch(f"the server at {server} does not know session {plog.last_ended}, which "
                                    f"{journal.directory} records as finished: a different database? Resume against "
                                    f"the original server, or start afresh with another state directory") from exc


async def simulate(server: str, bot_token: str, database_url: str, n_players: int, *, seed: int = 0,
                   sessions_per_player: int = 3, concurrency: int = 8, speed: float = 0.0,
                   players: list[SimPlayer] | None = None, progress=None, on_question=None,
                   state_dir: Path | str | None = None, learner_share: float = 1.0,
                   memory: Mapping[int, list[dict]] | None = None, stream: str = "") -> SimulationResult:
    """Run the population through `sessions_per_player` sessions each against `server`.

    With `state_dir` the run is resumable: everything is journaled there as it
    happens (lab/simulation_state.py), and a later call with the same arguments
    skips the finished sessions, continues the interrupted ones and returns the
    truth of the whole simulation. Cancelling (Ctrl-C) leaves the state consistent.

    A later game of the same population (a new model round, SPEC §3.2) passes `memory` — per
    telegram id, the outcomes its learners saw before — and its own `stream`, so the players
    draw fresh decisions instead of replaying the first game's."""
    started = time.perf_counter()
    scenes = await load_scenes(database_url)
    if not scenes:
        raise RuntimeError("no images with ground-truth scenes in the database (run `gap images generate N`)")
    players = players or make_population(n_players, seed, learner_share=learner_share)
    journal = Journal.open(state_dir, {"seed": seed, "players": len(players), "sessions": sessions_per_player},
                           [asdict(p) for p in players])
    total = len(players) * sessions_per_player
    sem = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    try:
        async with aiohttp.ClientSession(timeout=timeout,
                                         connector=aiohttp.TCPConnector(limit=concurrency * 2)) as http:
            if journal.sessions:
                await _check_server_knows(http, server, bot_token, journal, players)
                if progress:
                    progress(journal.sessions, total)

            async def run_player(p: SimPlayer) -> None:
                plog = journal.player(p.telegram_id)
                # a resumed player draws fresh decisions, not a replay of the stream it already used
                rng = random.Random(f"player:{seed}:{p.telegram_id}{stream}" + (f":{plog.lines}" if plog.lines else ""))
                client = Client(http, server, bot_token, p)
                while plog.finished < sessions_per_player:
                    index = plog.finished
                    async with sem:
                        try:
                            await settle_pending_verdict(client, journal, p.telegram_id)
                            await play_session(client, p, scenes, rng, speed, journal, index, on_question,
                                               bandit=player_bandit(p, journal, memory))
                        except (ApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                            log.warning("simulated player %s: %s", p.telegram_id, exc)
                            journal.write({"k": "end", "p": p.telegram_id, "s": index,
                                           "sid": plog.open_session[1] if plog.open_session else None,
                                           "error": str(exc) or type(exc).__name__})
                    if progress:
                        progress(journal.sessions, total)
                try:  # a verdict left in doubt by a failed request: ask the server once more
                    await settle_pending_verdict(client, journal, p.telegram_id)
                except (ApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    log.warning("simulated player %s: %s", p.telegram_id, exc)

            await asyncio.gather(*(run_player(p) for p in players))
    finally:
        journal.close()
    answers = [AnswerTruth(**a) for a in journal.judged.values()]
    return SimulationResult(players=players, answers=answers, sessions=journal.sessions, errors=journal.errors,
                            seconds=time.perf_counter() - started, lost_answers=journal.lost_answers(),
                            resumed_sessions=journal.resumed_sessions,
                            outcomes=[{"p": tid, **o} for tid, plog in journal.players.items() for o in plog.outcomes])


def default_state_dir(truth_out: str | None) -> Path | None:
    """Where `gap simulate` keeps its journal unless --state says: next to the truth file."""
    return Path(str(truth_out) + ".state") if truth_out else None


def run_simulation_cli(args: argparse.Namespace, settings) -> int:
    """`gap simulate`: prints a one-line report; --truth-out writes the truth JSON.

    Resumable when it has a state directory (--state, or `<truth-out>.state`): rerun
    the same command after Ctrl-C or a crash and it continues where it stopped."""
    import sys

    from tqdm import tqdm

    token = args.bot_token or (settings.bot_token.get_secret_value() if settings.bot_token else None)
    if not token:
        print("gap simulate: a bot token is needed to sign initData (--bot-token or GAP_BOT_TOKEN)")
        return 2
    url = args.database or settings.database_url
    state = Path(args.state) if getattr(args, "state", None) else default_state_dir(args.truth_out)
    if state is None:
        print("note: without --state or --truth-out this run cannot be resumed", file=sys.stderr)
    elif (state / "journal.jsonl").exists():
        print(f"resuming from {state}", file=sys.stderr)
    bar = tqdm(total=args.players * args.sessions, desc="sessions", unit="session")

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        result = asyncio.run(simulate(args.server, token, url, args.players, seed=args.seed,
                                      sessions_per_player=args.sessions, concurrency=args.concurrency,
                                      speed=args.speed, progress=progress, state_dir=state,
                                      learner_share=args.learners))
    except StateMismatch as exc:
        bar.close()
        print(f"gap simulate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.close()
        if state is None:
            print("\ninterrupted; no state was kept (give --state DIR or --truth-out to make runs resumable)",
                  file=sys.stderr)
        else:
            # (not echoing argv: it may hold --bot-token)
            print(f"\ninterrupted after {bar.n} of {bar.total} sessions; the state in {state} is consistent "
                  f"(at most the sessions in flight are incomplete). Resume by rerunning the same command "
                  f"(same --seed, --players, --sessions and --state/--truth-out).", file=sys.stderr)
        return 130
    bar.close()
    flags = sum(a.flagged for a in result.answers)
    print(f"simulated {len(result.players)} players, {result.sessions} sessions "
          f"({result.resumed_sessions} from an earlier run), {len(result.answers)} judged answers "
          f"({flags} flags) in {result.seconds:.1f} s; errors: {len(result.errors)}; "
          f"lost answers: {len(result.lost_answers)}")
    if args.truth_out:
        Path(args.truth_out).write_text(json.dumps(result.truth_json()))
        print(f"truth written to {args.truth_out}")
    return 0 if not result.errors and not result.lost_answers else 1
