"""`gap rank` and `gap duels stats`: preference duels (SPEC §3.4). Thin: parse, call game/, print."""
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
    from game.duel_export import rank_items

    async def go():
        db = _database(args, settings)
        try:
            return await rank_items(db, n_boot=args.bootstrap, seed=args.seed)
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


def register(sub) -> None:
    rk = sub.add_parser("rank", help="Bradley–Terry scores of duel items with bootstrap 95%% intervals")
    rk.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
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
