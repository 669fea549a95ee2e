"""`gap ceiling`: how far can fine-tuning on *perfect* labels move the held-out score?

Why: the closed loop (`gap experiment`) asks crowd data for +10 points on complex
scenes. Before blaming the crowd data, measure what the same fine-tuning does
with ground truth in quantities the game would need months to collect: many
complex training scenes (from the "train" seed range, never a held-out
picture), several questions each, true answers, under several LoRA recipes.
The best of these is an upper bound on what any export of the game can buy
this base model with these recipes.

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


class CeilingMismatch(ValueError):
    """The output directory holds a run with other settings; mixing them would report neither."""


def _claim(out: Path, base: str, cfg: CeilingConfig) -> None:
    """Record this run's settings in `out`, or refuse when an earlier run there used others
    (the recipes may differ: a rerun with more recipes adds them to the same report)."""
    settings = {**asdict(cfg), "base": str(base)}
    settings.pop("variants")
    path = out / "settings.json"
    if path.exists():
        earlier = json.loads(path.read_text())
        if earlier != settings:
            changed = ", ".join(k for k in settings if earlier.get(k) != settings[k])
            raise CeilingMismatch(f"{out} holds a run with other settings ({changed}); use another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings))


def write_ground_truth(out: Path, images: int, per_image: int, seed: int) -> dict:
    """Complex training scenes with true answers, as a `vqa` dataset `gap finetune` reads."""
    from models.scenes import EVAL_TYPES, NoQuestion, heldout_fingerprints, render_png, sample_question, scene_from_seed

    if (out / "train.jsonl").exists():
        return json.loads((out / "dataset.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    held = heldout_fingerprints()
    rng = random.Random(f"ceiling:{seed}")
    lines: list[str] = []
    index = skipped = 0
    for n in range(images):
        while (scene := scene_from_seed("train", index, "complex")).fingerprint() in held:
            index += 1
            skipped += 1
        index += 1
        name = f"img{n:05d}.png"
        (out / name).write_bytes(render_png(scene, 384))
        for _ in range(per_image):
            try:
                qa = sample_question(scene, rng, rng.choice(EVAL_TYPES))
            except NoQuestion:
                continue
            lines.append(json.dumps({"image": name, "question": qa.question, "answer": qa.answer}))
    info = {"images": images, "examples": len(lines), "heldout_pictures_skipped": skipped}
    (out / "dataset.json").write_text(json.dumps(info))
    (out / "train.jsonl").write_text("\n".join(lines) + "\n")
    return info


async def _score(path: str, n: int) -> dict:
    from gap.app import load_model
    from models.evaluation import evaluate, mean_standard_error
    from models.scenes import EVAL_TYPES

    model = await load_model(path)
    try:
        res = await evaluate(model, n=n, types=EVAL_TYPES)
    finally:
        await model.aclose()
    return {"by_type": res, "mean": {c: sum(v.values()) / len(v) for c, v in res.items()},
            "se": {c: mean_standard_error(v, n) for c, v in res.items()}}


def run_ceiling(base: str, out: Path, cfg: CeilingConfig, log: Callable[[str], None] = print) -> dict:
    from models.finetune import finetune
    from tqdm import tqdm

    out = Path(out)
    _claim(out, base, cfg)
    data = out / "data"
    info = write_ground_truth(data, cfg.images, cfg.per_image, cfg.seed)
    log(f"ground truth: {info['examples']} questions on {info['images']} complex training scenes")
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
        score = asyncio.run(_score(path, cfg.eval_per_type))
        results[name] = {"recipe": VARIANTS.get(name, {}), "finetune": ft_log, **score}
        done.write_text(json.dumps(results[name]))
        log(f"{name}: complex {score['mean']['complex']:.1%}, simple {score['mean']['simple']:.1%}")
    summary = {"config": asdict(cfg), "dataset": info,
               "base_model": str(base), "results": results}
    (out / "ceiling.json").write_text(json.dumps(summary, indent=1))
    (out / "REPORT.md").write_text(report(summary))
    return summary


def report(summary: dict) -> str:
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
