"""`gap ceiling`: how far can fine-tuning on *perfect* labels move the held-out score?

Why: the closed loop (`gap experiment`) asks crowd data for +10 points on complex
scenes. Before blaming the crowd data, measure what the same fine-tuning does
with ground truth in quantities the game would need months to collect: many
complex training scenes (from the "train" seed range, never a held-out
picture), several questions each, true answers, under several LoRA recipes.
The best of these is an upper bound on what any export of the game can buy
this base model with these recipes.

With `styles` (models/scenes/styles.py) the question changes: the training scenes are
simple ones drawn in styles the base model never saw (plus a share of plain simple
"replay" scenes, so what it already knows is kept), and the held-out score adds one
slice per style ("simple:dark", ...) — the weak slice the closed loop should fix —
besides plain simple and complex scenes. Scored on the ten perception types (relation
and text are weak in every style, so they say nothing about a style).

Resumable: the dataset is written once (train.jsonl last), each variant's
adapter resumes from its checkpoint, and each finished evaluation is kept in
`results/<variant>.json`; a rerun only does what is missing.
"""
from __future__ import annotations

import asyncio
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from models.finetune import FinetuneConfig

# name -> what differs from FinetuneConfig's defaults. "lora" is the experiment's recipe.
VARIANTS: dict[str, dict] = {
    "lm": {"lora_vision": False},
    "lora": {"lora_vision": True},
    "lora-r32": {"lora_vision": True, "rank": 32, "lr": 1e-3},
    "full-vision": {"full_vision": True, "lr": 3e-4},
}


@dataclass
class CeilingConfig:
    images: int = 5000
    per_image: int = 4
    steps: int = 1500
    eval_per_type: int = 200
    variants: tuple[str, ...] = tuple(VARIANTS)
    seed: int = 0
    batch_size: int = 16
    styles: tuple[str, ...] = ()   # withheld styles to train on (simple scenes); () = plain complex scenes
    replay: float = 0.25           # with styles: share of plain simple training scenes


class CeilingMismatch(ValueError):
    """The output directory holds a run with other settings; mixing them would report neither."""


def _claim(out: Path, base: str, cfg: CeilingConfig) -> None:
    """Record this run's settings in `out`, or refuse when an earlier run there used others
    (the recipes may differ: a rerun with more recipes adds them to the same report)."""
    settings = {**asdict(cfg), "base": str(base)}
    settings.pop("variants")
    if not cfg.styles:  # a run without styles keeps the settings it recorded before styles existed
        settings.pop("styles")
        settings.pop("replay")
    else:
        settings["styles"] = list(cfg.styles)
    path = out / "settings.json"
    if path.exists():
        earlier = json.loads(path.read_text())
        if earlier != settings:
            changed = ", ".join(k for k in settings if earlier.get(k) != settings[k])
            raise CeilingMismatch(f"{out} holds a run with other settings ({changed}); use another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings))


def training_style(rng: random.Random, styles: tuple[str, ...], replay: float) -> str:
    """The style of one training scene: plain with probability `replay`, else one of `styles`."""
    return "plain" if not styles or rng.random() < replay else rng.choice(styles)


def write_ground_truth(out: Path, images: int, per_image: int, seed: int, styles: tuple[str, ...] = (),
                       replay: float = 0.25) -> dict:
    """Training scenes with true answers, as a `vqa` dataset `gap finetune` reads: complex plain scenes,
    or (with `styles`) simple scenes in those styles mixed with plain replay. Always from the "train"
    seed range, skipping any scene whose objects a held-out scene shows (in any style)."""
    from models.evaluation import PERCEPTION_TYPES
    from models.scenes import EVAL_TYPES, NoQuestion, heldout_fingerprints, render_png, sample_question, scene_from_seed

    if (out / "train.jsonl").exists():
        return json.loads((out / "dataset.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    held = heldout_fingerprints()
    rng = random.Random(f"ceiling:{seed}")
    complexity, types = ("simple", PERCEPTION_TYPES) if styles else ("complex", EVAL_TYPES)
    lines: list[str] = []
    per_style: dict[str, int] = {}
    index = skipped = 0
    for n in range(images):
        style = training_style(rng, styles, replay)
        while (scene := scene_from_seed("train", index, complexity, style)).fingerprint() in held:
            index += 1
            skipped += 1
        index += 1
        per_style[style] = per_style.get(style, 0) + 1
        name = f"img{n:05d}.png"
        (out / name).write_bytes(render_png(scene, 384))
        for _ in range(per_image):
            try:
                qa = sample_question(scene, rng, rng.choice(types))
            except NoQuestion:
                continue
            lines.append(json.dumps({"image": name, "question": qa.question, "answer": qa.answer}))
    info = {"images": images, "examples": len(lines), "heldout_pictures_skipped": skipped,
            "complexity": complexity, "images_per_style": per_style}
    (out / "dataset.json").write_text(json.dumps(info))
    (out / "train.jsonl").write_text("\n".join(lines) + "\n")
    return info


def eval_plan(styles: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(held-out slices, question types) a run scores: styled runs add one slice per style."""
    from models.evaluation import COMPLEXITIES, PERCEPTION_TYPES, slice_name
    from models.scenes import EVAL_TYPES

    if not styles:
        return COMPLEXITIES, EVAL_TYPES
    return COMPLEXITIES + tuple(slice_name("simple", s) for s in styles), PERCEPTION_TYPES


async def _score(path: str, n: int, styles: tuple[str, ...] = ()) -> dict:
    from gap.app import load_model
    from models.evaluation import evaluate, mean_standard_error

    slices, types = eval_plan(styles)
    model = await load_model(path)
    try:
        res = await evaluate(model, n=n, types=types, complexities=slices)
    finally:
        await model.aclose()
    out = {"by_type": res, "mean": {c: sum(v.values()) / len(v) for c, v in res.items()},
           "se": {c: mean_standard_error(v, n) for c, v in res.items()}}
    weak = [c for c in slices if ":" in c]
    if weak:  # the weak slice: every styled slice, equally weighted
        out["mean"]["weak"] = sum(out["mean"][c] for c in weak) / len(weak)
        out["se"]["weak"] = sum(out["se"][c] ** 2 for c in weak) ** 0.5 / len(weak)
    return out


def run_ceiling(base: str, out: Path, cfg: CeilingConfig, log: Callable[[str], None] = print) -> dict:
    from models.finetune import finetune
    from tqdm import tqdm

    out = Path(out)
    _claim(out, base, cfg)
    data = out / "data"
    info = write_ground_truth(data, cfg.images, cfg.per_image, cfg.seed, cfg.styles, cfg.replay)
    log(f"ground truth: {info['examples']} questions on {info['images']} {info.get('complexity', 'complex')} "
        f"training scenes {info.get('images_per_style', '')}")
    (out / "results").mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for name in ("base",) + tuple(cfg.variants):
        done = out / "results" / f"{name}.json"
        if done.exists():
            results[name] = json.loads(done.read_text())
            continue
        path, ft_log = base, None
        if name != "base":
            ft = FinetuneConfig(max_steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed,
                                **VARIANTS[name])
            with tqdm(total=cfg.steps, desc=f"finetune {name}", unit="step", leave=False) as bar:
                ft_log = finetune(base, data, out / "adapters" / name, ft, resume=True,
                                  progress=lambda s, t, loss: (bar.update(s - bar.n), bar.set_postfix(loss=f"{loss:.3f}")))
            path = str(out / "adapters" / name)
            ft_log = {k: ft_log[k] for k in ("examples_used", "steps", "trainable_parameters", "seconds", "loss_last_10")}
        score = asyncio.run(_score(path, cfg.eval_per_type, cfg.styles))
        results[name] = {"recipe": VARIANTS.get(name, {}), "finetune": ft_log, **score}
        done.write_text(json.dumps(results[name]))
        log(f"{name}: " + ", ".join(f"{c} {v:.1%}" for c, v in score["mean"].items()))
    summary = {"config": asdict(cfg), "dataset": info,
               "base_model": str(base), "results": results}
    (out / "ceiling.json").write_text(json.dumps(summary, indent=1))
    (out / "REPORT.md").write_text(report(summary))
    return summary


def report(summary: dict) -> str:
    if summary["config"].get("styles"):
        return styled_report(summary)
    cfg, res = summary["config"], summary["results"]
    base = res["base"]["mean"]
    lines = [
        "# Fine-tuning ceiling: ground truth instead of crowd data", "",
        f"Base model `{summary['base_model']}`; {summary['dataset']['examples']} true question–answer pairs on "
        f"{summary['dataset']['images']} complex training scenes (never a held-out picture); {cfg['steps']} steps of "
        f"batch {cfg['batch_size']} per recipe; held-out: {cfg['eval_per_type']} questions per type and complexity "
        "(the experiment's 12 types).", "",
        "| recipe | settings | simple | complex | Δ complex | ± 95 % |", "|---|---|---:|---:|---:|---:|",
    ]
    for name, r in res.items():
        m, se = r["mean"], r["se"]["complex"]
        delta = (m["complex"] - base["complex"]) * 100
        spread = 1.96 * (se ** 2 + res["base"]["se"]["complex"] ** 2) ** 0.5 * 100 if name != "base" else 0
        recipe = ", ".join(f"{k}={v}" for k, v in r["recipe"].items()) or "–"
        lines.append(f"| {name} | {recipe} | {m['simple']:.1%} | {m['complex']:.1%} | {delta:+.1f} pts | "
                     f"{'±%.1f' % spread if name != 'base' else '–'} |")
    types = sorted(res["base"]["by_type"]["complex"])
    lines += ["", "Complex scenes per question type:", "",
              "| recipe | " + " | ".join(types) + " |", "|---|" + "---:|" * len(types)]
    for name, r in res.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['by_type']['complex'][t]:.0%}" for t in types) + " |")
    return "\n".join(lines) + "\n"


def styled_report(summary: dict) -> str:
    """The report of a styled run: plain simple, complex, each style and the weak slice, before and after."""
    cfg, res, data = summary["config"], summary["results"], summary["dataset"]
    base = res["base"]
    slices = [c for c in base["mean"] if c != "weak"]
    minutes = {n: r["finetune"]["seconds"] / 60 for n, r in res.items() if r.get("finetune")}
    lines = [
        "# Fine-tuning ceiling: withheld scene styles", "",
        f"Base model `{summary['base_model']}`; {data['examples']} true question–answer pairs on {data['images']} "
        f"simple training scenes (never a held-out scene's objects), by style {data.get('images_per_style')} "
        f"(plain = replay, share {cfg['replay']}); {cfg['steps']} steps of batch {cfg['batch_size']} per recipe. "
        f"Held-out: {cfg['eval_per_type']} questions per type and slice, the ten perception types; the weak slice "
        f"is the mean of the styled slices ({', '.join(cfg['styles'])}).", "",
        "| recipe | minutes | " + " | ".join(slices) + " | weak | Δ weak | ± 95 % |",
        "|---|---:|" + "---:|" * (len(slices) + 3),
    ]
    for name, r in res.items():
        m = r["mean"]
        delta = (m["weak"] - base["mean"]["weak"]) * 100
        spread = 1.96 * (r["se"]["weak"] ** 2 + base["se"]["weak"] ** 2) ** 0.5 * 100
        lines.append(f"| {name} | {minutes.get(name, 0):.1f} | " + " | ".join(f"{m[c]:.1%}" for c in slices)
                     + f" | {m['weak']:.1%} | " + (f"{delta:+.1f} pts | ±{spread:.1f} |" if name != "base" else "– | – |"))
    for c in slices:
        types = sorted(base["by_type"][c])
        lines += ["", f"`{c}` per question type:", "", "| recipe | " + " | ".join(types) + " |",
                  "|---|" + "---:|" * len(types)]
        for name, r in res.items():
            lines.append(f"| {name} | " + " | ".join(f"{r['by_type'][c][t]:.0%}" for t in types) + " |")
    return "\n".join(lines) + "\n"
