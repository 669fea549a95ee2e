"""The resumable state of `gap simulate`: a write-ahead journal of what the players did.

Why: a simulation runs for hours against a server that keeps every answer it
judged. If the truth (the population and, per judged answer, whether the served
answer really was wrong) lived only in memory until the end, a Ctrl-C or a crash
would lose it, and a rerun would replay sessions against a server that already
holds the first run's answers — truth and database would disagree.

So the simulator appends one JSON line per step to `journal.jsonl` in a state
directory, flushed, and writes its knowledge *before* each mutating request:

    start    a server session began as the player's session number `s`
    ask      a question is about to be asked (request id, image, its true answer)
    verdict  a verdict is about to be sent (request id, the whole AnswerTruth)
    judged   the server confirmed that verdict
    unjudged the server refused it (the image was over): the answer has no verdict
    lost     the server holds a verdict for it that no confirmation explains (reported, not counted)
    end      the player's session `s` is over (with the error, if one ended it, or else with the
             outcomes its summary revealed — what a learning player learns from)

The game API is idempotent by request id (the first response is stored and
replayed), so after a crash the one request per player whose fate is unknown is
sent again with the same id and the server says whether it took effect. An answer
counts in the truth only once a `judged` line confirms it, so nothing is counted
twice; a verdict whose fate stays unknown is reported as `lost_answers`, never
counted silently. A learning player's knowledge is a function of the outcomes of
its ended sessions, so replaying the journal rebuilds it exactly: a resumed player
knows what the uninterrupted one would have known (lab/player_learning.py).
`population.json` pins the seed, the player and session counts and the population
itself: a rerun with other arguments is refused.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

POPULATION_FILE = "population.json"
JOURNAL_FILE = "journal.jsonl"
FORMAT = 1


class StateMismatch(RuntimeError):
    """The state directory belongs to another simulation (or is damaged); resuming would mix truths."""


@dataclass
class PlayerLog:
    """What the journal says about one player (derived by replaying its lines)."""

    finished: int = 0                          # sessions over (0..sessions_per_player)
    open_session: tuple[int, str] | None = None  # (session number, server session id) started, not ended
    last_session_id: str | None = None         # the newest server session of this player
    last_ended: str | None = None              # the server session of its last finished session
    pending_ask: dict | None = None            # an ask intent no verdict followed yet
    pending_verdict: dict | None = None        # a verdict intent the server has not confirmed or refused
    outcomes: list[dict] = field(default_factory=list)  # revealed by its sessions' summaries, each with "s"
    lines: int = 0


@dataclass
class Journal:
    """Append-only journal (in memory only when `directory` is None: the run is then not resumable)."""

    directory: Path | None = None
    players: dict[int, PlayerLog] = field(default_factory=dict)
    verdicts: dict[str, dict] = field(default_factory=dict)   # answer id → verdict intent
    judged: dict[str, dict] = field(default_factory=dict)     # answer id → AnswerTruth dict, in order
    errors: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    sessions: int = 0
    resumed_sessions: int = 0
    _fh: Any = None
    _lock: Any = None

    @classmethod
    def open(cls, directory: Path | str | None, meta: dict, population: list[dict]) -> "Journal":
        """Create the state in `directory`, or load it and check it belongs to this simulation."""
        if directory is None:
            return cls()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        journal = cls(directory=directory)
        journal._lock = open(directory / ".lock", "w")
        try:  # two runs appending to one journal would interleave two simulations
            fcntl.flock(journal._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            journal._lock.close()
            raise StateMismatch(f"another `gap simulate` is using {directory}") from exc
        try:
            journal._load(meta, population)
        except BaseException:
            journal.close()
            raise
        return journal

    def _load(self, meta: dict, population: list[dict]) -> None:
        directory = self.directory
        pinned = {"format": FORMAT, **meta, "population": population}
        pop_path = directory / POPULATION_FILE
        if pop_path.exists():
            stored = json.loads(pop_path.read_text())
            for key in ("format", *meta):
                if stored.get(key) != pinned[key]:
                    raise StateMismatch(
                        f"{directory} holds a simulation with {key}={stored.get(key)!r}, not {pinned[key]!r}: "
                        f"rerun with the stored arguments to resume it, or choose another state directory "
                        f"(and a fresh server database) to start afresh")
            if stored.get("population") != json.loads(json.dumps(population)):
                raise StateMismatch(f"{directory}: the stored population differs from the one this seed draws now "
                                    f"(the player generator changed?); resuming would mix two populations")
        elif (directory / JOURNAL_FILE).exists():
            raise StateMismatch(f"{directory} has a journal but no {POPULATION_FILE}; refusing to guess its population")
        else:
            tmp = pop_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(pinned, indent=1))
            tmp.replace(pop_path)
        for record in self._read_existing():
            try:
                self._apply(record)
            except (KeyError, TypeError, ValueError) as exc:
                raise StateMismatch(f"{directory / JOURNAL_FILE}: inconsistent record {record!r}") from exc
        self.resumed_sessions = self.sessions
        self._fh = open(directory / JOURNAL_FILE, "a", encoding="utf-8")

    def _read_existing(self) -> Iterator[dict]:
        path = self.directory / JOURNAL_FILE
        if not path.exists():
            return
        raw = path.read_bytes()
        complete = raw[:raw.rfind(b"\n") + 1]
        if len(complete) != len(raw):
            # a line cut short by a kill. Dropping it is safe: an intent line is written before its request is
            # sent, and a confirmation (judged, end, start) is re-learnt from the server on resume
            with open(path, "r+b") as fh:
                fh.truncate(len(complete))
        for number, line in enumerate(complete.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise StateMismatch(f"{path}:{number}: unreadable journal line ({exc})") from exc

    @property
    def resumable(self) -> bool:
        return self.directory is not None

    def player(self, telegram_id: int) -> PlayerLog:
        return self.players.setdefault(telegram_id, PlayerLog())

    def write(self, record: dict) -> None:
        """Append one line and flush it to the OS before the caller goes on (a crash keeps it)."""
        self._apply(record)
        if self._fh is not None:
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._fh.flush()

    def sync(self) -> None:
        """fsync the journal (at session ends: a machine crash then loses at most the sessions in flight)."""
        if self._fh is not None:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _apply(self, r: dict) -> None:
        log = self.player(int(r["p"]))
        log.lines += 1
        kind = r["k"]
        if kind == "start":
            log.open_session = (int(r["s"]), r["sid"])
            log.last_session_id = r["sid"]
        elif kind == "ask":
            log.pending_ask = r
        elif kind == "verdict":
            log.pending_ask = None
            log.pending_verdict = r
            self.verdicts[r["answer"]["answer_id"]] = r
        elif kind in ("judged", "unjudged", "lost"):
            aid = r["aid"]
            if kind == "judged" and aid not in self.judged:  # never twice
                self.judged[aid] = self.verdicts[aid]["answer"]
            elif kind == "lost":
                self.lost.append(aid)
            if log.pending_verdict is not None and log.pending_verdict["answer"]["answer_id"] == aid:
                log.pending_verdict = None
        elif kind == "end":
            log.finished = int(r["s"]) + 1
            log.open_session = None
            log.last_ended = r.get("sid") or log.last_ended
            log.outcomes.extend({**o, "s": int(r["s"])} for o in r.get("outcomes") or ())
            self.sessions += 1
            if r.get("error"):
                self.errors.append(f"player {r['p']}: {r['error']}")
        else:
            raise StateMismatch(f"unknown journal record kind {kind!r}")

    def lost_answers(self) -> list[str]:
        """Verdicts sent whose fate the server never told us: maybe judged there, not in the truth."""
        return self.lost + [log.pending_verdict["answer"]["answer_id"] for log in self.players.values()
                            if log.pending_verdict is not None]

    def finished_sessions(self) -> list[tuple[int, int, str | None]]:
        """(player, session number, server session id) of every ended session — for checks and tests."""
        out = []
        if self.directory is None:
            return out
        for r in self.records():
            if r["k"] == "end":
                out.append((int(r["p"]), int(r["s"]), r.get("sid")))
        return out

    def records(self) -> Iterator[dict]:
        """Every journal line, from the file (only for a journal kept on disk)."""
        if self.directory is None:
            return
        if self._fh is not None:
            self._fh.flush()
        path = self.directory / JOURNAL_FILE
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    yield json.loads(line)
