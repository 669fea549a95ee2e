"""`gap bench api|model`: benchmarks that print ratios against a baseline measured in the same run."""
from __future__ import annotations

import argparse
import importlib


def _runner(module: str):
    def run(args: argparse.Namespace, settings) -> int | None:
        return importlib.import_module(module).run(args, settings)
    return run


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (ratios against a same-run baseline)")
    kinds = bench.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    api = kinds.add_parser("api", help="the game API over HTTP vs a bare aiohttp endpoint")
    api.add_argument("--players", type=int, default=1000)
    api.add_argument("--model-latency-ms", type=float, default=20.0)
    api.add_argument("--model-server", action="store_true",
                     help="also measure with the model in its own process (gap model serve, GAP_MODEL=openai:)")
    api.add_argument("--json", action="store_true")
    api.set_defaults(func=_runner("lab.bench_api"))
    model = kinds.add_parser("model", help="the embedded model: latency, micro-batching, taint timing, loop lag")
    model.add_argument("--model", default=None, help="model directory (default: GAP_MODEL)")
    model.add_argument("--json", action="store_true")
    model.set_defaults(func=_runner("lab.bench_model"))
    ev = kinds.add_parser("eval", help="gap evaluate vs crowd-kit OneCoinDawidSkene on the same 1,000,000 verdicts")
    ev.add_argument("--answers", type=int, default=1_000_000)
    ev.add_argument("--players", type=int, default=5000)
    ev.add_argument("--seed", type=int, default=1)
    ev.add_argument("--memory-only", action="store_true", help="skip the stored (SQLite) comparison")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_runner("lab.bench_eval"))
