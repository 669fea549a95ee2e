"""Across seeds: the weak-slice gains of `gap experiment --pool-styles ...` runs, one row per seed.

Usage: python benchmarks/experiment/styles/summary.py DIR [DIR ...]
Each DIR is a run directory (or a copy holding heldout.json and arms.json, as committed
here). Prints a markdown table: GAP and random gains on the weak slice with their 95 %
sampling intervals, the overall held-out change, and the example counts; then the mean
over seeds with a t-interval of the seed-to-seed spread.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from lab.experiment import curve_stats, weak_stats


def _load(d: Path, name: str) -> dict:
    for path in (d / f"{name}.json", d / "stages" / f"{name}.done"):
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"{d}: no {name}.json or stages/{name}.done")


def main(dirs: list[str]) -> None:
    rows, gains = [], {"gap": [], "random": [], "overall": []}
    halves: dict[str, list[float]] = {"gap": [], "random": []}
    for d in map(Path, dirs):
        held, arms = _load(d, "heldout"), _load(d, "arms")["arms"]
        st = weak_stats(held["models"], held["weak_slices"], held["per_type"])
        g, r = st["gap"], st["random"]
        overall = st["gap"]["overall"] - st["base"]["overall"]
        seed = json.loads((d / "config.json").read_text())["seed"]
        apart = g["gain_interval"][0] > r["gain_interval"][1]
        rows.append(f"| {seed} | {arms['gap']['examples']} | {held['models']['base']['mean']['weak']:.1%} | "
                    f"{g['gain'] * 100:+.1f} ({g['gain_interval'][0] * 100:+.1f} … {g['gain_interval'][1] * 100:+.1f}) | "
                    f"{r['gain'] * 100:+.1f} ({r['gain_interval'][0] * 100:+.1f} … {r['gain_interval'][1] * 100:+.1f}) | "
                    f"{_ratio(g['gain'], r['gain'])} | {'yes' if apart else 'no'} | {overall * 100:+.1f} |")
        for name, v in (("gap", g), ("random", r)):
            halves[name].append((v["gain_interval"][1] - v["gain_interval"][0]) / 2)
        gains["gap"].append(g["gain"])
        gains["random"].append(r["gain"])
        gains["overall"].append(overall)
    print("| seed | GAP examples | base weak | GAP Δ weak (95 %) | random Δ weak (95 %) | GAP ÷ random | "
          "intervals apart | GAP Δ overall |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    print("\n".join(rows))
    if len(dirs) > 1:
        def ci(v: list[float]) -> str:
            m, h = np.mean(v), stats.t.ppf(0.975, len(v) - 1) * np.std(v, ddof=1) / np.sqrt(len(v))
            return f"{m * 100:+.1f} ({(m - h) * 100:+.1f} … {(m + h) * 100:+.1f})"
        def pooled(name: str) -> tuple[float, float]:
            """The seeds' mean gain and its 95 % half-width from sampling alone (independent held-out draws)."""
            return float(np.mean(gains[name])), float(np.sqrt(np.sum(np.square(halves[name]))) / len(dirs))

        (g, hg), (r, hr) = pooled("gap"), pooled("random")
        print(f"| mean of {len(dirs)} seeds (t 95 %, seed-to-seed) | | | {ci(gains['gap'])} | {ci(gains['random'])} | "
              f"{_ratio(g, r)} | | {np.mean(gains['overall']) * 100:+.1f} |")
        print(f"| mean of {len(dirs)} seeds (95 %, sampling) | | | {g * 100:+.1f} ({(g - hg) * 100:+.1f} … "
              f"{(g + hg) * 100:+.1f}) | {r * 100:+.1f} ({(r - hr) * 100:+.1f} … {(r + hr) * 100:+.1f}) | "
              f"{_ratio(g, r)} | {'yes' if g - hg > r + hr else 'no'} | {np.mean(gains['overall']) * 100:+.1f} |")

    curves = [_curve_row(d) for d in map(Path, dirs) if (d / "curve.json").exists() or (d / "stages" / "curve.done").exists()]
    if curves:
        print("\nLearning curve (`--curve`): weak-slice gain (95 %) of the GAP and random arms fine-tuned on their first "
              "k examples (the same images in both arms)\n")
        print("| seed | k | GAP Δ weak | random Δ weak | GAP ÷ random |")
        print("|---:|---:|---:|---:|---:|")
        print("\n".join(line for rows_ in curves for line in rows_))


def _curve_row(d: Path) -> list[str]:
    held, arms, curve = _load(d, "heldout"), _load(d, "arms")["arms"], _load(d, "curve")
    st = weak_stats(held["models"], held["weak_slices"], held["per_type"])
    cs = curve_stats(curve, held["models"], held["weak_slices"], held["per_type"])
    seed = json.loads((d / "config.json").read_text())["seed"]
    points = [(g, r) for g, r in zip(cs.get("gap", []), cs.get("random", []))]
    points.append(({"examples": arms["gap"]["examples"], **st["gap"]}, st["random"]))

    def fmt(v: dict) -> str:
        lo, hi = v["gain_interval"]
        return f"{v['gain'] * 100:+.1f} ({lo * 100:+.1f} … {hi * 100:+.1f})"
    return [f"| {seed} | {g['examples']} | {fmt(g)} | {fmt(r)} | {_ratio(g['gain'], r['gain'])} |" for g, r in points]


def _ratio(gap: float, random: float) -> str:
    if gap <= 0:
        return "–"
    return f"{gap / random:.1f}×" if random > 0 else "∞ (random ≤ 0)"


if __name__ == "__main__":
    main(sys.argv[1:])
