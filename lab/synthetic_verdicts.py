"""Synthetic verdicts with known truth, shaped like the game's data: for tests and
`gap bench eval`. Answers are grouped into shared *tasks* (a served answer with its
true correctness M) judged by several players, so redundancy-based aggregators
(Dawid–Skene) get the same verdicts as our gold-based evaluation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from game.evaluation import HONEST_TAINTED, TAINTED, UNTAINTED


@dataclass
class SyntheticVerdicts:
    player: np.ndarray      # (N,) player index
    task: np.ndarray        # (N,) task index
    kind: np.ndarray        # (N,) TAINTED / HONEST_TAINTED / UNTAINTED
    group: np.ndarray       # (N,) π-stratum (0 simple, 1 complex)
    flagged: np.ndarray     # (N,) bool: Wrong verdict with a correction
    mistake: np.ndarray     # (N,) bool: truth M = 0
    true_s: np.ndarray      # (P,)
    true_f: np.ndarray      # (P,)
    player_type: np.ndarray  # (P,) str
    true_pi: np.ndarray     # (G,)


def make_population(n_players: int, rng: np.random.Generator, random_share: float = 0.2,
                    spammer_share: float = 0.03) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True (s, f, type) per player: careful, sloppy, random flaggers (s = f) and spammers (flag almost everything)."""
    kinds = rng.choice(["careful", "sloppy", "random", "spammer"], size=n_players,
                       p=[max(0.0, 1 - random_share - spammer_share - 0.3), 0.3, random_share, spammer_share])
    s = np.empty(n_players)
    f = np.empty(n_players)
    c = kinds == "careful"
    s[c], f[c] = rng.beta(18, 2, c.sum()), rng.beta(1, 25, c.sum())
    sl = kinds == "sloppy"
    s[sl], f[sl] = rng.beta(7, 3, sl.sum()), rng.beta(2, 14, sl.sum())
    r = kinds == "random"
    s[r] = f[r] = rng.uniform(0.1, 0.7, r.sum())
    sp = kinds == "spammer"
    s[sp] = f[sp] = rng.uniform(0.9, 1.0, sp.sum())
    return s, f, kinds


def synthetic_verdicts(n_answers: int, n_players: int, seed: int = 0, labels_per_task: int = 5,
                       pi: tuple[float, float] = (0.03, 0.35), random_share: float = 0.2) -> SyntheticVerdicts:
    """N answers over P players; kinds in game proportions (≈ 30% tainted, 10% honest on tainted images)."""
    rng = np.random.default_rng(seed)
    s, f, kinds = make_population(n_players, rng, random_share=random_share)
    n_tasks = max(1, n_answers // labels_per_task)
    t_kind = rng.choice([TAINTED, HONEST_TAINTED, UNTAINTED], size=n_tasks, p=[0.3, 0.1, 0.6])
    t_group = rng.integers(0, 2, n_tasks)
    pi_arr = np.asarray(pi)
    t_mistake = np.where(t_kind == TAINTED, True,
                         np.where(t_kind == HONEST_TAINTED, False, rng.random(n_tasks) < pi_arr[t_group]))
    task = rng.integers(0, n_tasks, n_answers)
    player = rng.integers(0, n_players, n_answers)
    mistake = t_mistake[task]
    p_flag = np.where(mistake, s[player], f[player])
    flagged = rng.random(n_answers) < p_flag
    return SyntheticVerdicts(player=player, task=task, kind=t_kind[task], group=t_group[task], flagged=flagged,
                             mistake=mistake, true_s=s, true_f=f, player_type=kinds, true_pi=pi_arr)


# π per stratum of `game_shaped_verdicts`, as measured on an experiment run (complex × 7 question
# types, then simple × 7; the last of each is text, which the model cannot read) and how often
# each stratum is asked
GAME_PI = (0.27, 0.32, 0.14, 0.48, 0.15, 0.28, 0.97, 0.0, 0.0, 0.0, 0.3, 0.07, 0.0, 0.92)
GAME_FREQ = (286, 531, 262, 29, 156, 138, 78, 343, 614, 300, 20, 209, 180, 37)
GAME_PARENT = (0,) * 7 + (1,) * 7


@dataclass
class GameShapedVerdicts(SyntheticVerdicts):
    group_parent: np.ndarray = None  # type: ignore[assignment]  # (G,) complexity of each stratum
    position: np.ndarray = None  # type: ignore[assignment]      # (N,) image position in its session


def game_shaped_verdicts(n_players: int, sessions: int = 4, seed: int = 0, q_taint: float = 0.8,
                         pi_reliable: float = 0.015, stratum_pi: tuple[float, ...] = GAME_PI) -> GameShapedVerdicts:
    """Verdicts shaped like the game's, for calibration tests: sessions of 10 images (5 tainted,
    from the simple/reliable strata), 2–5 questions per image, the image ends at the first flag,
    sensitivity fading with the image's position (fatigue), strata with very different error
    rates (`stratum_pi`, by default `GAME_PI` with small outlier strata), and the population of lab/simulation.py
    (careful, sloppy, 20% random flaggers, spammers). So each player judges only ≈ 1 honest
    answer on a tainted image per session — the scarcity that makes f hard to estimate."""
    rng = np.random.default_rng(seed)
    s, f, kinds = make_population(n_players, rng)
    fatigue = np.where(np.isin(kinds, ["careful", "sloppy"]), rng.uniform(0.0, 0.3, n_players), 0.0)
    pi, parent = np.asarray(stratum_pi, dtype=float), np.asarray(GAME_PARENT)
    freq = np.asarray(GAME_FREQ, dtype=float)
    simple = np.flatnonzero(parent == 1)
    n_img = n_players * sessions * 10
    img_player = np.repeat(np.arange(n_players), sessions * 10)
    img_pos = np.tile(np.arange(10), n_players * sessions)
    img_tainted = np.concatenate([rng.permutation([True] * 5 + [False] * 5) for _ in range(n_players * sessions)])
    n_q = rng.integers(2, 6, n_players)[img_player]
    q_max = 5
    shape = (n_img, q_max)
    tainted_img = np.broadcast_to(img_tainted[:, None], shape)
    grp = np.where(tainted_img, rng.choice(simple, size=shape, p=freq[simple] / freq[simple].sum()),
                   rng.choice(len(pi), size=shape, p=freq / freq.sum()))
    taint = tainted_img & (rng.random(shape) < q_taint)
    kind = np.where(tainted_img, np.where(taint, TAINTED, HONEST_TAINTED), UNTAINTED)
    mistake = np.where(kind == TAINTED, True, np.where(kind == HONEST_TAINTED, rng.random(shape) < pi_reliable,
                                                       rng.random(shape) < pi[grp]))
    player = np.broadcast_to(img_player[:, None], shape)
    fresh = 1.0 - fatigue[player] * np.broadcast_to(img_pos[:, None], shape) / 9.0
    p_flag = np.where(mistake, s[player] * fresh, f[player])
    p_flag = np.where(np.isin(kinds, ["random", "spammer"])[player], s[player], p_flag)
    flagged = rng.random(shape) < p_flag
    asked = np.arange(q_max)[None, :] < n_q[:, None]
    before = np.cumsum(flagged, axis=1) - flagged        # flags earlier on the same image
    keep = asked & (before == 0)
    return GameShapedVerdicts(
        player=player[keep], task=np.flatnonzero(keep.ravel()), kind=kind[keep],
        group=np.where(kind == UNTAINTED, grp, 0)[keep], flagged=flagged[keep], mistake=mistake[keep],
        true_s=s, true_f=f, player_type=kinds, true_pi=pi, group_parent=parent,
        position=np.broadcast_to(img_pos[:, None], shape)[keep])
