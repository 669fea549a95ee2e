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
