"""`gap rank`, `gap duels stats` and `gap duels simulate`: preference duels (SPEC §3.4). Thin: parse, call game/, print."""
from __future__ import annotations

import argparse
import asyncio
import json


def _database(args: argparse.Namespace, settings):
    from game.db import Database
    from game.migrate import upgrade

    url = getattr(args, "database", None) or settings.database_url
    upgrade(url)
    return Database(url)


def _rank(args: argparse.Namespace, settings) -> int:
    import sys

    from tqdm import tqdm

    from game.duel_export import rank_items

    async def go():
        db = _database(args, settings)
        try:
            with tqdm(total=args.bootstrap, desc="bootstrap", unit="fit", disable=not sys.stderr.isatty()) as bar:
                return await rank_items(db, n_boot=args.bootstrap, seed=args.seed,
                                        progress=lambda done: bar.update(done - bar.n))
        finally:
            await db.dispose()

    rows = asyncio.run(go())
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    print("score\t95% interval\twins/comparisons\tkind\tprompt\tside")
    for r in rows[: args.top]:
        print(f"{r['score']:+.2f}\t[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]\t{r['wins']}/{r['comparisons']}\t"
              f"{r['kind']}\t{r['prompt']}\t{r['side']}")
    return 0


def _stats(args: argparse.Namespace, settings) -> int:
    from game.duels_stats import duel_summary

    async def go():
        db = _database(args, settings)
        try:
            return await duel_summary(db)
        finally:
            await db.dispose()

    print(json.dumps(asyncio.run(go()), indent=None if args.json else 2))
    return 0


def _simulate(args: argparse.Namespace, settings) -> int:
    import sys

    from game.db import sqlite_file
    from lab.duel_simulation import simulate

    token = args.bot_token or (settings.bot_token.get_secret_value() if settings.bot_token else None)
    url = args.database or settings.database_url
    path = sqlite_file(url)
    if not token or path is None:
        print("gap duels simulate: needs the server's bot token (GAP_BOT_TOKEN or --bot-token) and its SQLite "
              "database (GAP_DATABASE_URL or --database), where the simulated players look at the pictures",
              file=sys.stderr)
        return 2
    counts = {"careful": args.careful, "sloppy": args.sloppy, "random": args.random, "always-left": args.always_left}
    result = asyncio.run(simulate(args.server.rstrip("/"), token, url, path, counts, batches=args.batches,
                                  seed=args.seed, concurrency=args.concurrency))
    print(json.dumps(result, indent=2))
    return 0


def _import_captions(args: argparse.Namespace, settings) -> int:
    import sys
    import time
    from pathlib import Path

    from game.duel_import import import_caption_duels
    from game.errors import Invalid

    async def go():
        db = _database(args, settings)
        try:
            return await import_caption_duels(db, Path(args.file), int(time.time() * 1000))
        finally:
            await db.dispose()

    try:
        result = asyncio.run(go())
    except (Invalid, OSError) as exc:
        print(f"gap duels import-captions: {getattr(exc, 'message', exc)}; nothing was stored", file=sys.stderr)
        return 2
    print(f"{result['added']} new caption duels ({result['lines'] - result['added']} already stored)")
    return 0


def register(sub) -> None:
    rk = sub.add_parser("rank", help="Bradley–Terry scores of duel items with bootstrap 95%% intervals")
    rk.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples")
    rk.add_argument("--seed", type=int, default=0)
    rk.add_argument("--top", type=int, default=50, help="rows to print (table)")
    rk.add_argument("--json", action="store_true", help="every item as JSON Lines")
    rk.add_argument("--database", help="SQLAlchemy URL (default: GAP_DATABASE_URL)")
    rk.set_defaults(func=_rank)
    du = sub.add_parser("duels", help="preference duels: statistics")
    dsub = du.add_subparsers(dest="duels_command", metavar="SUBCOMMAND")
    st = dsub.add_parser("stats", help="players, accuracy on gold, removals, time per duel")
    st.add_argument("--json", action="store_true")
    st.add_argument("--database", help="SQLAlchemy URL (default: GAP_DATABASE_URL)")
    st.set_defaults(func=_stats)
    im = dsub.add_parser("import-captions", help="caption duels from your pictures (JSON Lines: caption, image_0, "
                                                 "image_1, fits, gold)")
    im.add_argument("file", help="a .jsonl file; image paths are relative to it")
    im.add_argument("--database", help="SQLAlchemy URL (default: GAP_DATABASE_URL)")
    im.set_defaults(func=_import_captions)
    si = dsub.add_parser("simulate", help="simulated duellers (careful, sloppy, random, always-left) over the HTTP API")
    si.add_argument("--server", required=True, help="base URL of a running server")
    si.add_argument("--database", help="the server's SQLite URL (default: GAP_DATABASE_URL)")
    si.add_argument("--bot-token", help="signs the players' initData (default: GAP_BOT_TOKEN)")
    si.add_argument("--careful", type=int, default=20)
    si.add_argument("--sloppy", type=int, default=20)
    si.add_argument("--random", type=int, default=20)
    si.add_argument("--always-left", type=int, default=10)
    si.add_argument("--batches", type=int, default=12, help="batches per player (random ones keep coming, up to 40)")
    si.add_argument("--seed", type=int, default=0)
    si.add_argument("--concurrency", type=int, default=16)
    si.set_defaults(func=_simulate)
