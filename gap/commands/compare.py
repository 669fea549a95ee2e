"""`gap compare` (SPEC §3.5): describe the crowd-described images with the model, rewrite
crowd descriptions where the model can, and write the model-or-crowd report (Markdown +
PNG chart) — plus `gap simulate-describe`, simulated describers for trying it out."""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from game.db import Database
from game.migrate import upgrade


def _bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="step", disable=not sys.stderr.isatty(), file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


async def run_compare(settings, args: argparse.Namespace) -> str:
    """The steps of `gap compare`; returns the Markdown report (also written to --out)."""
    from game.compare_report import markdown, write_report
    from game.compare_run import CompareConfig, compare_sources, describe_missing, rewrite_missing
    from gap.app import load_model

    await asyncio.to_thread(upgrade, settings.database_url)
    db = Database(settings.database_url)
    model = None
    try:
        model_id = None
        if not args.no_generate:
            model = await load_model(args.model or settings.model, settings=settings)
            model_id = model.model_id
            bar, update = _bar("describing with the model")
            with bar:
                described = await describe_missing(db, model, update)
            bar, update = _bar("rewriting crowd descriptions")
            with bar:
                rewritten = await rewrite_missing(db, model, update)
            print(f"gap compare: {described} new model descriptions, {rewritten} rewrites", file=sys.stderr)
        config = CompareConfig(trials=args.trials, trees=args.trees, seed=args.seed, jobs=args.jobs,
                               gpu_hour_price=settings.gpu_hour_price, point_value=settings.point_value)
        bar, update = _bar("comparing")
        with bar:
            report = await compare_sources(db, config, model_id=model_id, progress=update)
        md, png = write_report(report, Path(args.out))
        print(f"gap compare: wrote {md} and {png}", file=sys.stderr)
        return markdown(report)
    finally:
        if model is not None:
            await model.aclose()
        await db.dispose()


def _compare(args: argparse.Namespace, settings) -> int:
    if args.trials < 2 or args.trees < 1:
        print("gap compare: --trials must be at least 2 and --trees at least 1", file=sys.stderr)
        return 2
    from models.base import ModelError

    try:
        print(asyncio.run(run_compare(settings, args)), end="")
    except KeyboardInterrupt:
        print("\ninterrupted: the descriptions made so far are stored; rerun to continue", file=sys.stderr)
        return 130
    except ModelError as exc:
        print(f"gap compare: the model failed: {exc} (the descriptions made so far are stored; rerun to continue, "
              "or --no-generate to compare what is stored)", file=sys.stderr)
        return 1
    return 0


def _simulate(args: argparse.Namespace, settings) -> int:
    from lab.describers import run_describers_cli

    return run_describers_cli(args, settings)


def register(sub: argparse._SubParsersAction) -> None:
    cmp = sub.add_parser("compare", help="model or crowd? compare descriptions per attribute and cost (SPEC §3.5)")
    cmp.add_argument("--out", default="compare-report", help="directory for REPORT.md and compare.png")
    cmp.add_argument("--trials", type=int, default=100, help="random 80/20 image splits (the study: 100)")
    cmp.add_argument("--trees", type=int, default=100, help="trees of each random forest")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--jobs", type=int, default=1, help="CPU cores for each forest")
    cmp.add_argument("--model", default=None, help="the describing model (default: GAP_MODEL)")
    cmp.add_argument("--no-generate", action="store_true",
                     help="compare the stored descriptions only (no new model descriptions or rewrites)")
    cmp.set_defaults(func=_compare)
    sim = sub.add_parser("simulate-describe", help="simulated describers play the describe round over HTTP")
    sim.add_argument("--server", required=True, help="base URL of a running server")
    sim.add_argument("--players", type=int, default=20)
    sim.add_argument("--images", type=int, default=5, help="images each describer describes")
    sim.add_argument("--ratings", type=int, default=5, help="descriptions each describer rates")
    sim.add_argument("--accuracy", default="", help="per attribute, e.g. largest_color=0.9,count=0.6")
    sim.add_argument("--default-accuracy", type=float, default=0.8)
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(func=_simulate)
