"""`gap evaluate | export | simulate | finetune | experiment`: the data pipeline (SPEC §2 evaluation, §3.1 exports, §3.2 fine-tuning and proof).

Thin: each subcommand parses, calls one function of game/, gap/ or models/, prints."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tqdm import tqdm


def _database(args: argparse.Namespace, settings):
    from game.migrate import upgrade
    from gap.app import open_database

    url = getattr(args, "database", None) or settings.database_url
    upgrade(url)
    return open_database(settings, url)


def _eval_config(args: argparse.Namespace, settings):
    from game.evaluation import EvalConfig

    theta = args.theta if getattr(args, "theta", None) is not None else settings.theta
    crowd = getattr(args, "crowd_threshold", None)
    return EvalConfig(theta=theta, prior=getattr(args, "prior", "eb"),
                      crowd_threshold=crowd if crowd is not None else settings.crowd_threshold)


def _evaluate(args: argparse.Namespace, settings) -> int:
    from game.evaluation_store import run_evaluation

    async def go():
        db = _database(args, settings)
        try:
            return await run_evaluation(db, _eval_config(args, settings), player_model=args.player_model,
                                        plot_path=Path(args.plot) if args.player_model else None)
        finally:
            await db.dispose()

    summary = asyncio.run(go())
    if args.json:
        out = {k: v for k, v in summary.__dict__.items()}
        if out.get("crowd") is not None:
            out["crowd"] = dict(out["crowd"].__dict__)
        if out.get("player_model"):
            out["player_model"] = {k: v for k, v in out["player_model"].items() if k != "abilities"}
        print(json.dumps(out, default=str))
    else:
        print("\n".join(summary.lines()))
    return 0


def _export(args: argparse.Namespace, settings) -> int:
    from game.exports import clean_strata, export_finds

    if args.format == "pairs" or args.duels:
        return _export_duels(args, settings)
    try:
        strata = clean_strata(args.strata or ())
    except ValueError as exc:
        print(f"gap export: {exc}", file=sys.stderr)
        return 2

    async def go(bar: tqdm):
        db = _database(args, settings)
        try:
            theta = args.theta if args.theta is not None else settings.theta

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            return await export_finds(db, args.format, theta, Path(args.out), unfiltered=args.unfiltered,
                                      confirmed=args.confirmed, progress=progress, license=args.license,
                                      strata=strata)
        finally:
            await db.dispose()

    with tqdm(desc="export", unit="row", file=sys.stderr, disable=None) as bar:
        try:
            card = asyncio.run(go(bar))
        except ValueError as exc:  # e.g. --out holds an export of another format
            print(f"gap export: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {card['examples']} examples ({card['images']} images) to {args.out} "
          f"[{args.format}, θ={card['theta']}]; skipped {card['skipped_same_sides']} pairs whose answer and "
          f"correction say the same; types: {card['question_types']}")
    if card["examples"] == 0:
        print("note: nothing passed the filter — run `gap evaluate` first", file=sys.stderr)
    return 0


def _export_duels(args: argparse.Namespace, settings) -> int:
    """Preference data from duels (SPEC §3.4): `pairs`, or `dpo` from answer duels (`--duels`)."""
    from game.duel_export import export_dpo, export_pairs

    if args.format not in ("pairs", "dpo"):
        print("gap export: --duels writes `pairs` or `dpo`", file=sys.stderr)
        return 2

    async def go():
        db = _database(args, settings)
        try:
            if args.format == "pairs":
                return await export_pairs(db, Path(args.out))
            return await export_dpo(db, Path(args.out))
        finally:
            await db.dispose()

    card = asyncio.run(go())
    print(f"wrote {card['examples']} examples ({card['images']} images) to {args.out} [{args.format}, duels]")
    return 0


def _simulate(args: argparse.Namespace, settings) -> int:
    from lab.simulation import run_simulation_cli

    return run_simulation_cli(args, settings)


def _finetune(args: argparse.Namespace, settings) -> int:
    from models.finetune import FinetuneConfig, finetune

    base = args.base or settings.model
    try:
        cfg = FinetuneConfig(epochs=args.epochs, lr=args.lr, rank=args.rank, batch_size=args.batch_size,
                             seed=args.seed, max_steps=args.max_steps, lora_vision=args.vision == "lora",
                             full_vision=args.vision == "full", interpolate=args.interpolate)
    except ValueError as exc:
        print(f"gap finetune: {exc}", file=sys.stderr)
        return 2
    with tqdm(desc="finetune", unit="step", disable=not sys.stderr.isatty()) as bar:
        def progress(step: int, total: int, loss: float) -> None:
            bar.total = total
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.3f}")

        try:
            result = finetune(base, Path(args.data), Path(args.out), cfg, progress=progress, resume=args.resume)
        except KeyboardInterrupt as exc:
            print(f"gap finetune: interrupted — {exc or 'no checkpoint written'}", file=sys.stderr)
            return 130
    print(json.dumps(result))
    return 0


def _share(text: str) -> float:
    """A share in [0, 1] (--learners)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def _sessions(text: str) -> int:
    """A number of sessions per player, 1 to 1000 (--round2-sessions)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected a number of sessions from 1 to 1000, got {text!r}")
    return value


def _family_accuracy(text: str) -> tuple[str, float]:
    """`color=0.2` → ("color", 0.2), for --standin-weak."""
    from models.scenes import FAMILIES

    family, _, value = text.partition("=")
    try:
        accuracy = float(value)
    except ValueError:
        accuracy = -1.0
    if family not in FAMILIES or not 0.0 <= accuracy <= 1.0:
        raise argparse.ArgumentTypeError(f"expected FAMILY=ACCURACY with FAMILY one of {', '.join(FAMILIES)} "
                                         f"and ACCURACY in [0, 1], got {text!r}")
    return family, accuracy


def _experiment(args: argparse.Namespace, settings) -> int:
    from lab.experiment import run_experiment_cli

    return run_experiment_cli(args, settings)


def _ceiling(args: argparse.Namespace, settings) -> int:
    from lab.ceiling import VARIANTS, CeilingConfig, CeilingMismatch, run_ceiling

    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"gap ceiling: unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    from models.scenes import WITHHELD_STYLES

    styles = WITHHELD_STYLES if args.styles == "all" else tuple(s for s in (args.styles or "").split(",") if s)
    unknown = [s for s in styles if s not in WITHHELD_STYLES]
    if unknown:
        print(f"gap ceiling: unknown style(s) {', '.join(unknown)}; choose from {', '.join(WITHHELD_STYLES)}",
              file=sys.stderr)
        return 2
    if not 0 <= args.replay < 1:
        print("gap ceiling: --replay is a share in [0, 1)", file=sys.stderr)
        return 2
    cfg = CeilingConfig(images=args.images, per_image=args.per_image, steps=args.steps,
                        eval_per_type=args.eval_per_type, variants=variants, seed=args.seed, styles=styles,
                        replay=args.replay)
    try:
        run_ceiling(args.base or settings.model, Path(args.out), cfg, log=lambda m: print(m, file=sys.stderr))
    except CeilingMismatch as exc:
        print(f"gap ceiling: {exc}", file=sys.stderr)
        return 2
    print((Path(args.out) / "REPORT.md").read_text())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="update player reliability, π and find posteriors from new answers (SPEC §2)")
    ev.add_argument("--database", help="SQLAlchemy URL (default: GAP_DATABASE_URL)")
    ev.add_argument("--theta", type=float, default=None, help="posterior threshold (default: GAP_THETA, 0.8)")
    ev.add_argument("--prior", choices=["eb", "uniform"], default="eb", help="Beta prior: empirical Bayes or Beta(1,1)")
    ev.add_argument("--crowd-threshold", type=float, default=None,
                    help="lower credible bound of the model's accuracy at which the crowd makes an unmeasured "
                         "image reliable (default: GAP_CROWD_THRESHOLD, 0.9)")
    ev.add_argument("--player-model", action="store_true", help="also fit the logistic player model and plot it")
    ev.add_argument("--plot", default="player_model.png", help="where --player-model writes its plot")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_evaluate)

    from game.export_formats import FORMATS

    ex = sub.add_parser("export", help=f"write the finds at θ as training data ({', '.join(FORMATS)}), "
                                       "or duel preferences (pairs; dpo with --duels)")
    ex.add_argument("--format", choices=[*FORMATS, "pairs"], default="sharegpt",
                    help="sharegpt (LLaMA-Factory, with dataset_info.json), llava, trl-sft, dpo (TRL), vqa, "
                         "hf (a Hugging Face dataset directory: Parquet with the images embedded); "
                         "pairs: preference duels, one line per choice")
    ex.add_argument("--duels", action="store_true",
                    help="export from preference duels: `pairs` (one line per choice) or `dpo` (answer duels)")
    ex.add_argument("--theta", type=float, default=None)
    ex.add_argument("--out", required=True, help="output directory (data file, images/, README.md dataset card)")
    ex.add_argument("--unfiltered", action="store_true", help="every find with a correction, ignoring θ and muting")
    ex.add_argument("--confirmed", action="store_true",
                    help="also export confirmations (answers trusted players judged correct, P(missed mistake) ≤ 1−θ) "
                         "with the model's answer as target: fine-tuning on corrections alone biases the model")
    ex.add_argument("--strata", action="append", metavar="STRATUM[,STRATUM]",
                    help="only images of these pool strata, e.g. simple (takes simple:dark too) or simple:dark; "
                         "`gap ceiling` shows which strata perfect labels can teach (default: all)")
    ex.add_argument("--license", default="other",
                    help="the dataset card's licence, a Hugging Face Hub licence id such as cc-by-4.0 (default: other)")
    ex.add_argument("--database", help="SQLAlchemy URL (default: GAP_DATABASE_URL)")
    ex.set_defaults(func=_export)

    si = sub.add_parser("simulate", help="simulated players play whole sessions through the HTTP API")
    si.add_argument("--players", type=int, default=20)
    si.add_argument("--server", required=True, help="base URL of a running server, e.g. http://127.0.0.1:8080")
    si.add_argument("--seed", type=int, default=0)
    si.add_argument("--sessions", type=int, default=3, help="sessions per player")
    si.add_argument("--bot-token", help="signs initData (default: GAP_BOT_TOKEN)")
    si.add_argument("--truth-out", help="JSON file for the simulated population's truth")
    si.add_argument("--state", help="directory journaling the run as it goes, so that rerunning the same command "
                                    "resumes it after Ctrl-C or a crash (default: <truth-out>.state)")
    si.add_argument("--concurrency", type=int, default=8)
    si.add_argument("--learners", type=_share, default=1.0,
                    help="share of careful and sloppy players who learn from their summaries to ask more of what "
                         "earned finds (random flaggers and spammers never learn)")
    si.add_argument("--speed", type=float, default=0.0,
                    help="seconds of real waiting per simulated second of thinking (0: no waiting)")
    si.add_argument("--database", help="the server's database, to map image ids to ground-truth scenes")
    si.set_defaults(func=_simulate)

    ft = sub.add_parser("finetune", help="LoRA fine-tuning (peft) of the serving model on an export")
    ft.add_argument("--data", required=True, help="an export directory (any format) or a .jsonl file")
    ft.add_argument("--out", required=True, help="adapter directory (GAP_MODEL can point at it)")
    ft.add_argument("--base", help="base model directory (default: GAP_MODEL)")
    ft.add_argument("--epochs", type=float, default=3.0)
    ft.add_argument("--max-steps", type=int, default=None)
    ft.add_argument("--lr", type=float, default=5e-4)
    ft.add_argument("--rank", type=int, default=8)
    ft.add_argument("--batch-size", type=int, default=16)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--resume", action="store_true",
                    help="continue from OUT/checkpoint.pt (written every 50 steps and on Ctrl-C)")
    ft.add_argument("--vision", choices=["none", "lora", "full"], default="lora",
                    help="the vision tower: frozen, LoRA-adapted (default) or fully trained (small models)")
    ft.add_argument("--interpolate", type=float, default=1.0, metavar="ALPHA",
                    help="save base + ALPHA × (fine-tuned − base), 0 < ALPHA ≤ 1 (WiSE-FT): keeps most of the gain "
                         "and less of the cost on what the base knew (default 1: the fine-tuned weights)")
    ft.set_defaults(func=_finetune)

    xp = sub.add_parser("experiment", help="the closed loop: simulate → evaluate → export → fine-tune → held-out score")
    xp.add_argument("--small", action="store_true", help="a few minutes (CI)")
    xp.add_argument("--out", default="experiment", help="working directory and report (resumable)")
    xp.add_argument("--players", type=int, default=None)
    xp.add_argument("--sessions", type=int, default=None)
    xp.add_argument("--seed", type=int, default=0)
    xp.add_argument("--pool", type=int, default=None, help="images in the pool")
    xp.add_argument("--eval-per-type", type=int, default=None, help="held-out questions per type and complexity")
    xp.add_argument("--ft-max-steps", type=int, default=None, help="cap on LoRA steps per arm")
    xp.add_argument("--reliability-questions", type=int, default=None,
                    help="questions per image when measuring the reliable pool")
    xp.add_argument("--base", help="base model directory (default: GAP_MODEL)")
    xp.add_argument("--theta", type=float, default=None)
    xp.add_argument("--standin", action="store_true",
                    help="a stand-in model of set accuracy (97%% simple, 60%% complex): checks the evaluation only")
    xp.add_argument("--standin-weak", action="append", type=_family_accuracy, metavar="FAMILY=ACCURACY",
                    help="with --standin: its accuracy on one question family, on every scene (repeatable), "
                         "e.g. color=0.2 — a weakness for learning players to find")
    xp.add_argument("--learners", type=_share, default=None,
                    help="share of careful and sloppy players who learn from their summaries (default 1)")
    xp.add_argument("--pool-styles", default=None, metavar="STYLE=SHARE,...",
                    help="shares of the pool drawn as simple scenes in withheld styles (e.g. dark=0.1,clutter=0.1); "
                         "adds the held-out weak slice (one column per style) to the report")
    xp.add_argument("--arms", default=None, metavar="gap,random,...",
                    help="arms to fine-tune and score (default: gap,random,unfiltered,truth; all are exported)")
    xp.add_argument("--replay", type=int, default=None, metavar="IMAGES",
                    help="add true pairs on this many plain complex training scenes to every trained arm "
                         "(keeps what the base knew)")
    xp.add_argument("--replay-simple", type=int, default=None, metavar="IMAGES",
                    help="add true pairs on this many plain simple training scenes to every trained arm")
    xp.add_argument("--ft-interpolate", type=float, default=None, metavar="ALPHA",
                    help="save every adapter as base + ALPHA × (fine-tuned − base) (WiSE-FT, as `gap finetune "
                         "--interpolate`; default 1)")
    xp.add_argument("--replay-target", choices=("truth", "base"), default=None,
                    help="the replay pairs' answers: the truth (default) or the base model's own answers "
                         "(self-distillation: keeps what the base did where the truth is beyond what it can see)")
    xp.add_argument("--gap-arm", choices=("confirmed", "finds"), default=None,
                    help="the GAP arm: the export with confirmations (default) or the finds alone (`gap export`)")
    xp.add_argument("--complex-share", type=_share, default=None,
                    help="of the plain images, the share of complex scenes (default 0.5)")
    xp.add_argument("--curve", default=None, metavar="SHARE,...",
                    help="learning curve: also fine-tune the GAP and random arms on these shares of their examples "
                         "(e.g. 0.25,0.5) and score each on the weak slice")
    xp.add_argument("--train-strata", action="append", metavar="STRATUM[,STRATUM]",
                    help="every arm only on pool images of these strata, as `gap export --strata` (e.g. simple: "
                         "leave out complex scenes, whose mistakes `gap ceiling` shows data cannot fix)")
    xp.add_argument("--round2-sessions", type=_sessions, default=None, metavar="N",
                    help="model round 2: promote the GAP arm's adapter and let the same players play N more "
                         "sessions each against it (adds \"Model rounds\" to the report; can be added to a "
                         "finished run)")
    xp.set_defaults(func=_experiment)

    ce = sub.add_parser("ceiling", help="upper bound for the experiment: fine-tune on ground truth (complex scenes, or --styles)")
    ce.add_argument("--out", required=True, help="working directory and report (resumable)")
    ce.add_argument("--base", help="base model directory (default: GAP_MODEL)")
    ce.add_argument("--images", type=int, default=5000, help="complex training scenes")
    ce.add_argument("--per-image", type=int, default=4, help="true question-answer pairs per scene")
    ce.add_argument("--steps", type=int, default=1500, help="fine-tuning steps per recipe (batch 16)")
    ce.add_argument("--eval-per-type", type=int, default=200, help="held-out questions per type and complexity")
    ce.add_argument("--variants", default="lm,lora,lora-r32,full-vision", help="recipes, comma-separated")
    ce.add_argument("--seed", type=int, default=0)
    ce.add_argument("--styles", default=None,
                    help="train on simple scenes in these withheld styles (comma-separated, or 'all') and score "
                         "each as a held-out weak slice; default: plain complex scenes")
    ce.add_argument("--replay", type=float, default=0.25, help="with --styles: share of plain simple scenes")
    ce.set_defaults(func=_ceiling)
