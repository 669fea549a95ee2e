"""Simulated players who learn where the model is wrong (SPEC §3.2).

Why: the closed loop only beats random question–answer pairs if the crowd's
questions concentrate where the model errs — people who play a few sessions
ask more of what earned finds and less of what the model always got right.
A simulated player that keeps a fixed question mix would hide that effect (or
fake it, if the mix were set by hand).

What a player learns from: the session summary (SPEC §1.3) reveals, per image,
whether it was tainted, and per answer whether it was the lure. Together with
the player's own verdict that gives each question an outcome:

    find         "wrong" on an untainted image — the kind of question that pays
    correct      "correct" on an honest answer — the model got it right
    false_alarm  "wrong" on an honest answer of a tainted image — it did not pay
    catch        "wrong" on the lure, and
    missed_lure  "correct" on the lure — the lure says nothing about the model

The first three are evidence (reward 1 for a find, else 0); lures are not.

How it learns: Thompson sampling over arms (question family × the kind of
object asked about) with Beta–Bernoulli posteriors. An arm with little evidence
borrows the mean of its family (empirical-Bayes shrinkage), so a family that
pays is tried on every kind of object. A learner asks about a scene by drawing
a few candidate questions per family it can ask about (about whichever objects
the picture offers) and picking one with probability ∝ taste(family) × θ^greed,
θ the candidate's arm's Thompson draw: before any evidence that is the player's
own taste, the mix a non-learner keeps forever.

Everything here is a pure function of its inputs and an injected
`random.Random`; a player's bandit is rebuilt from the outcomes journaled at
each session's end (lab/simulation_state.py), so after an interruption a player
knows exactly what its finished sessions taught it — nothing lost, nothing twice.
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from models.scenes import COLORS, SHAPE_PLURALS, SHAPES, QA, NoQuestion, Scene, sample_question

ANY_KIND = "any"
EVIDENCE = {"find": 1, "correct": 0, "false_alarm": 0}   # outcome → reward; lures carry no evidence

_PLURAL_TO_SHAPE = {plural: shape for shape, plural in SHAPE_PLURALS.items()}
_WORD = re.compile(r"[a-z]+")


def object_kind(question: str) -> str:
    """The kind of thing a question is about, as its asker remembers it.

    The first shape it names (singular or plural), else the first colour, else
    "any" ("How many objects?"):

    >>> object_kind("Is the red star on the left?"), object_kind("How many blue things?")
    ('star', 'blue')
    """
    words = _WORD.findall(question.lower())
    for w in words:
        if w in SHAPES:
            return w
        if w in _PLURAL_TO_SHAPE:
            return _PLURAL_TO_SHAPE[w]
    return next((w for w in words if w in COLORS), ANY_KIND)


def reveal_outcome(image_tainted: bool, answer_tainted: bool, verdict: str | None) -> str | None:
    """What the summary tells the player about one judged answer (None: not judged)."""
    if verdict not in ("wrong", "correct"):
        return None
    if answer_tainted:
        return "catch" if verdict == "wrong" else "missed_lure"
    if verdict == "correct":
        return "correct"
    return "false_alarm" if image_tainted else "find"


def session_outcomes(summary: dict, family_of: Callable[[str], str | None]) -> list[dict]:
    """The outcomes of one session from its summary: [{"aid", "family", "kind", "outcome"}].

    `family_of` gives the family of the question the player asked for an answer
    id (the player remembers what they asked; the summary shows only text).
    Answers without a verdict, or that the player has no memory of, are left out."""
    out = []
    for image in summary.get("images") or []:
        for a in image.get("answers") or []:
            outcome = reveal_outcome(bool(image.get("tainted")), bool(a.get("tainted")), a.get("verdict"))
            family = family_of(a.get("answer_id"))
            if outcome is None or family is None:
                continue
            out.append({"aid": a["answer_id"], "family": family, "kind": object_kind(a.get("question") or ""),
                        "outcome": outcome})
    return out


@dataclass
class FindBandit:
    """Thompson sampling over (family, kind) arms; reward = the question earned a find.

    >>> rng = random.Random(0)
    >>> b = FindBandit().fit([{"family": "color", "kind": "star", "outcome": "find"}] * 8
    ...                      + [{"family": "count", "kind": "any", "outcome": "correct"}] * 8)
    >>> b.sample("color", "circle", rng) > b.sample("count", "any", rng)
    True
    """

    prior_finds: float = 1.0    # Beta prior of a family: one find in five questions before any evidence
    prior_misses: float = 4.0
    shrink: float = 4.0         # pseudo-observations an arm borrows from its family's mean
    greed: float = 2.0          # exponent on the draw: how hard a player leans on what paid

    def fit(self, outcomes: Iterable[Mapping]) -> "FindBandit":
        """Count finds and questions per arm and per family (only outcomes that are evidence)."""
        arms: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        families: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for o in outcomes:
            reward = EVIDENCE.get(o["outcome"])
            if reward is None:
                continue
            for counts in (arms[(o["family"], o["kind"])], families[o["family"]]):
                counts[0] += reward
                counts[1] += 1
        self.arms_ = dict(arms)
        self.families_ = dict(families)
        return self

    def family_mean(self, family: str) -> float:
        finds, n = self.families_.get(family, (0, 0))
        return (self.prior_finds + finds) / (self.prior_finds + self.prior_misses + n)

    def sample(self, family: str, kind: str, rng: random.Random) -> float:
        """A Thompson draw of the arm's find rate."""
        m = self.family_mean(family)
        finds, n = self.arms_.get((family, kind), (0, 0))
        return rng.betavariate(self.shrink * m + finds, self.shrink * (1.0 - m) + n - finds)

    def choose(self, candidates: list[QA], taste: Mapping[str, float], rng: random.Random) -> QA:
        """One of `candidates`, with probability ∝ taste(family) × draw^greed."""
        scores = [taste.get(qa.family, 0.0) * self.sample(qa.family, object_kind(qa.question), rng) ** self.greed
                  for qa in candidates]
        if not any(s > 0 for s in scores):
            return rng.choice(candidates)
        return rng.choices(candidates, weights=scores)[0]


def learner_question(scene: Scene, taste: Mapping[str, float], bandit: FindBandit, rng: random.Random,
                     per_family: int = 3) -> QA:
    """A learning player's next question about `scene`: `per_family` candidates for each family it can be
    asked about (the player sees what the picture offers: which objects it could ask about), the bandit
    picks. Each candidate carries 1/per_family of its family's taste, so without evidence the families
    keep the player's own mix."""
    candidates = []
    for family in taste:
        for _ in range(per_family):
            try:
                candidates.append(sample_question(scene, rng, family))
            except NoQuestion:  # e.g. no text in this picture
                break
    if not candidates:
        return sample_question(scene, rng, None)
    return bandit.choose(candidates, {f: w / per_family for f, w in taste.items()}, rng)



# ---------------------------------------------------------------------------- measurement

GROUPS = ("learners", "non-learners", "random/spammer")


def player_group(kind: str, learner: bool) -> str:
    """Which comparison group a player is in: careful/sloppy learners, careful/sloppy who keep
    their taste, and the players who never look (random flaggers and spammers)."""
    if kind in ("random", "spammer"):
        return "random/spammer"
    return "learners" if learner else "non-learners"


def weakest_family(outcomes: Iterable[Mapping], mistakes: Mapping[str, bool]) -> str | None:
    """The family in which the model's honest answers were most often wrong (by the truth)."""
    wrong: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in outcomes:
        if o["outcome"] in EVIDENCE and o["aid"] in mistakes:
            wrong[o["family"]][0] += bool(mistakes[o["aid"]])
            wrong[o["family"]][1] += 1
    rates = {f: w / n for f, (w, n) in wrong.items() if n}
    return max(sorted(rates), key=rates.get) if rates else None


def learning_report(outcomes: Iterable[Mapping], groups: Mapping[int, str], mistakes: Mapping[str, bool],
                    weak: Iterable[str]) -> dict:
    """Per group and session number: judged questions, the share asked in the `weak` families,
    finds per question (what the summary shows) and true finds per question (finds whose
    served answer really was wrong, by `mistakes`: answer id → bool).

    `outcomes` carry "p" (the player) and "s" (the session) as journaled; `groups` maps
    players to GROUPS. "first" and "last" sum each player's first and last session."""
    weak = set(weak)
    outcomes = list(outcomes)
    sessions = defaultdict(set)
    for o in outcomes:
        sessions[o["p"]].add(o["s"])
    firsts = {p: min(s) for p, s in sessions.items()}
    lasts = {p: max(s) for p, s in sessions.items()}
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])   # questions, weak, finds, true finds

    def add(key, o) -> None:
        c = cells[key]
        c[0] += 1
        c[1] += o["family"] in weak
        c[2] += o["outcome"] == "find"
        c[3] += o["outcome"] == "find" and bool(mistakes.get(o["aid"]))

    for o in outcomes:
        g = groups.get(o["p"])
        if g is None:
            continue
        add((g, f"session {o['s'] + 1}"), o)
        add((g, "all"), o)
        if lasts[o["p"]] > firsts[o["p"]]:  # before/after only for players with at least two sessions
            if o["s"] == firsts[o["p"]]:
                add((g, "first"), o)
            elif o["s"] == lasts[o["p"]]:
                add((g, "last"), o)
    out: dict = {"weak_families": sorted(weak), "groups": {}}
    for (g, row), (n, w, f, t) in sorted(cells.items()):
        out["groups"].setdefault(g, {})[row] = {
            "questions": n, "weak_share": w / n if n else None,
            "finds_per_question": f / n if n else None, "true_finds_per_question": t / n if n else None}
    return out


def learning_markdown(report: dict) -> list[str]:
    """The report as a Markdown table (one row per group and session)."""
    lines = [f"Weak families: {', '.join(report['weak_families']) or 'none'}", "",
             "| players | sessions | questions | share in weak families | finds / question | true finds / question |",
             "|---|---|---:|---:|---:|---:|"]
    for g in GROUPS:
        rows = report["groups"].get(g, {})
        order = sorted((r for r in rows if r.startswith("session")), key=lambda r: int(r.split()[1]))
        for row in [*order, "all"]:   # (first/last stay in the JSON: they differ only when session counts do)
            if row not in rows:
                continue
            c = rows[row]
            lines.append(f"| {g} | {row} | {c['questions']} | {c['weak_share']:.1%} | "
                         f"{c['finds_per_question']:.3f} | {c['true_finds_per_question']:.3f} |")
    return lines
