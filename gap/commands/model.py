"""`gap model train|ask|promote|rounds` and `gap model-eval`: the embedded model's training, a one-off
question, model rounds (SPEC §3.2: promote a fine-tuned model into the running game, report each round),
the accuracy table."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

from settings import EMBEDDED_MODEL_DIR

log = logging.getLogger("gap.model")


def _train(args: argparse.Namespace, settings) -> int:
    from models.training import train

    if args.source or args.stage:
        return _train_stage(args)
    steps = tuple(int(s) for s in args.steps.split(",")) if args.steps else None
    if steps is not None and len(steps) != 3:
        print("gap model train: --steps takes three comma-separated counts (slots,align,joint)", file=sys.stderr)
        return 2
    out = train(args.out, minutes=args.minutes, resume=args.resume, seed=args.seed, steps=steps,  # type: ignore[arg-type]
                threads=args.threads, state_dir=args.state_dir)
    print(f"checkpoint written to {out}")
    return 0


def _train_stage(args: argparse.Namespace) -> int:
    """A continued-training stage of a trained checkpoint (`--from DIR --stage phrasing`)."""
    from models.phrasing import train_phrasing

    if not (args.source and args.stage):
        print("gap model train: --from and --stage go together (e.g. --from data/model --stage phrasing)",
              file=sys.stderr)
        return 2
    if not (Path(args.source) / "config.json").is_file():
        print(f"gap model train: {args.source} is not a model directory (no config.json)", file=sys.stderr)
        return 2
    try:
        steps = int(args.steps) if args.steps else 600
    except ValueError:
        steps = 0
    if steps <= 0:
        print("gap model train: with --stage, --steps takes one positive count", file=sys.stderr)
        return 2
    if Path(args.out).resolve() == Path(args.source).resolve():
        print("gap model train: --out must differ from --from (the source is read while the result is written)",
              file=sys.stderr)
        return 2
    out = train_phrasing(args.source, args.out, steps=steps, seed=args.seed, threads=args.threads)
    print(f"checkpoint written to {out}")
    return 0


async def _load(spec: str | None, settings, strategy: str | None = None, **kw):
    from gap.app import load_model

    return await load_model(spec or settings.model, strategy, settings, **kw)


def _ask(args: argparse.Namespace, settings) -> int:
    from models.base import ModelError

    try:
        image = Path(args.image).read_bytes()
    except OSError as exc:
        print(f"gap model ask: cannot read {args.image}: {exc.strerror}", file=sys.stderr)
        return 2

    async def go():
        model = await _load(args.model, settings, args.strategy)
        try:
            return await model.answer(image, args.question, taint=True)
        finally:
            await model.aclose()

    try:
        ans = asyncio.run(go())
    except ModelError as exc:
        print(f"gap model ask: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"honest": ans.honest, "tainted": ans.served, "was_tainted": ans.tainted,
                          "strategy": ans.strategy, "model_id": ans.model_id}, ensure_ascii=False))
    else:
        print(f"honest:  {ans.honest}")
        print(f"tainted: {ans.served}" + ("" if ans.tainted else "   (no different plausible answer: served honest)"))
    return 0


def _eval(args: argparse.Namespace, settings) -> int:
    from tqdm import tqdm

    from models.evaluation import (COMPLEXITIES, TYPES, evaluate, evaluate_paraphrases, format_paraphrases,
                                   format_table, slice_name)
    from models.scenes import WITHHELD_STYLES

    types = tuple(args.types.split(",")) if args.types else TYPES
    styles = WITHHELD_STYLES if args.styles == "all" else tuple(s for s in (args.styles or "").split(",") if s)
    try:  # styled simple scenes: the weak slices of the closed loop (models/scenes/styles.py)
        slices = COMPLEXITIES + tuple(slice_name("simple", s) for s in styles)
    except ValueError as exc:
        print(f"gap model-eval: {exc}", file=sys.stderr)
        return 2

    async def go():
        spec = args.model or settings.model
        # a local model queues every question at once: give each time to wait its turn; a model server
        # is asked a bounded number at a time, within the usual deadline (so a dead one fails fast)
        queue = {} if spec.startswith("openai:") else {"max_queue": 100_000, "timeout_s": 600}
        model = await _load(spec, settings, None, max_batch=32, **queue)
        bar = tqdm(total=None, desc="model-eval", disable=args.json or not sys.stderr.isatty(), mininterval=2)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            if args.paraphrases:
                return await evaluate_paraphrases(model, per_frame=args.per_frame, progress=progress)
            return await evaluate(model, n=args.n, types=types, complexities=slices, progress=progress)
        finally:
            bar.close()
            await model.aclose()

    result = asyncio.run(go())
    if args.paraphrases:
        print(json.dumps(result) if args.json else format_paraphrases(result))
        return 0
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def _serve(args: argparse.Namespace, settings) -> int:
    """The model worker (SPEC §4.2): the model behind /v1/chat/completions for many `gap serve` workers."""
    from aiohttp import web

    from models.health import MonitoredModel
    from models.openai_server import create_model_server

    spec = args.model or settings.model
    name = args.served_model_name or Path(spec.rstrip("/")).name or "gap"

    async def factory() -> web.Application:
        model = MonitoredModel(await _load(spec, settings, args.strategy, max_batch=args.max_batch,
                                           max_queue=args.max_queue))
        if not await model.probe():  # serve anyway: /health says 503 and why, and probes again
            log.error("the model %s failed its start-up probe: %s", spec, model.last_error)
        app = create_model_server(model, name)

        async def close(_app: web.Application) -> None:
            await model.aclose()
        app.on_cleanup.append(close)
        log.info("model worker: %s as %r (strategy %s) on %s:%s", spec, name,
                 args.strategy or settings.taint_strategy, args.host, args.port)
        return app

    web.run_app(factory(), host=args.host, port=args.port, access_log=None, shutdown_timeout=10, print=None)
    return 0


def _promote(args: argparse.Namespace, settings) -> int:
    """Load the model once here (a spec that does not load never becomes a round), then record the round."""
    from game import rounds
    from game.errors import Invalid
    from gap.commands.data import _database
    from models.base import ModelError

    async def go() -> int:
        try:
            spec = rounds.clean_spec(args.spec)
        except Invalid as exc:
            print(f"gap model promote: {exc.message}", file=sys.stderr)
            return 2
        try:
            model = await _load(spec, settings)
            model_id = model.model_id
            await model.aclose()
        except ModelError as exc:
            print(f"gap model promote: {spec!r} does not load: {exc}", file=sys.stderr)
            return 1
        db = _database(args, settings)
        try:
            new = await rounds.promote(db, spec, by="cli", now_ms=int(time.time() * 1000))
        finally:
            await db.dispose()
        print(f"round {new.number}: {model_id} ({spec}) promoted; running servers switch to it within "
              f"{settings.round_poll_seconds:g} s without a restart")
        return 0

    return asyncio.run(go())


def _rounds(args: argparse.Namespace, settings) -> int:
    from game import rounds
    from gap.commands.data import _database

    theta = args.theta if args.theta is not None else settings.theta

    async def go() -> tuple[list, list]:
        db = _database(args, settings)
        try:
            return await rounds.all_rounds(db), await rounds.round_report(db, theta)
        finally:
            await db.dispose()

    promoted, stats = asyncio.run(go())
    if args.json:
        print(json.dumps({"theta": theta, "rounds": [vars(r) for r in promoted], "models": [
            {**vars(s), "by_type": {t: list(v) for t, v in s.by_type.items()}, "error_rate": s.error_rate,
             "finds_per_player_minute": s.finds_per_player_minute, "weaknesses": s.weaknesses(),
             "weak_strata": s.weak_strata()} for s in stats]},
            ensure_ascii=False))
        return 0
    for r in promoted:
        state = f"serving {r.model_id}" if r.model_id else ("failed: " + r.error if r.error else "not loaded yet")
        print(f"round {r.number}: {r.spec} (by {r.promoted_by}) — {state}")
    print("\n".join(rounds.report_lines(stats, theta)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="the model: train the embedded one, ask a question, serve it to web workers")
    kinds = model.add_subparsers(dest="model_cmd", metavar="ACTION", required=True)

    train = kinds.add_parser("train", help="train the embedded model from scratch on CPU (staged recipe)")
    train.add_argument("--out", default=str(EMBEDDED_MODEL_DIR), help="checkpoint directory (default: data/model)")
    train.add_argument("--minutes", type=float, default=90.0, help="time budget, turned into step counts")
    train.add_argument("--steps", default=None, help="exact step counts per stage 'slots,align,joint' (reproduce a "
                                                      "run); with --stage, one count")
    train.add_argument("--resume", action="store_true", help="continue from --state-dir/train_state.pt")
    train.add_argument("--seed", type=int, default=1234)
    train.add_argument("--threads", type=int, default=1,
                       help="torch threads (1 is fastest when the CPU is shared with other work)")
    train.add_argument("--state-dir", default="runs/model-train", help="where resumable training state is kept")
    train.add_argument("--from", dest="source", default=None,
                       help="continue training this checkpoint (with --stage) instead of training from scratch")
    train.add_argument("--stage", choices=["phrasing"], default=None,
                       help="the continued-training stage: 'phrasing' teaches players' wordings (--steps N)")
    train.set_defaults(func=_train)

    ask = kinds.add_parser("ask", help="answer a question about an image: honest and tainted")
    ask.add_argument("image")
    ask.add_argument("question")
    ask.add_argument("--model", default=None, help="model directory or openai:<url> (default: GAP_MODEL)")
    ask.add_argument("--strategy", choices=["decode", "prompt"], default=None)
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(func=_ask)

    serve = kinds.add_parser("serve", help="the model worker: an OpenAI-compatible API for many `gap serve` workers")
    serve.add_argument("--model", default=None, help="model directory, fake:<ms> or openai:<url> (default: GAP_MODEL)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to serve other machines)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", default=None, help="the name in /v1/models (default: the directory's)")
    serve.add_argument("--strategy", choices=["decode", "prompt"], default=None,
                       help="how tainted answers are made (default: GAP_TAINT_STRATEGY)")
    serve.add_argument("--max-batch", type=int, default=16, help="questions per micro-batch")
    serve.add_argument("--max-queue", type=int, default=1024, help="waiting questions before 503 + Retry-After")
    serve.set_defaults(func=_serve, log_level=logging.INFO)  # a server's log is what its operator reads

    promote = kinds.add_parser("promote", help="serve another model (e.g. a gap finetune adapter) in the running "
                                              "game from the next round on, without a restart")
    promote.add_argument("spec", help="model directory, LoRA adapter directory or openai:<url>")
    promote.add_argument("--database", default=None, help="database URL (default: GAP_DATABASE_URL)")
    promote.set_defaults(func=_promote)

    rounds = kinds.add_parser("rounds", help="per round: validated model error rate, finds per player-minute, "
                                             "weaknesses that remain")
    rounds.add_argument("--theta", type=float, default=None, help="posterior threshold (default: GAP_THETA)")
    rounds.add_argument("--database", default=None, help="database URL (default: GAP_DATABASE_URL)")
    rounds.add_argument("--json", action="store_true")
    rounds.set_defaults(func=_rounds)

    ev = sub.add_parser("model-eval", help="held-out accuracy per question type, simple and complex scenes")
    ev.add_argument("--model", default=None, help="model directory or openai:<url> (default: GAP_MODEL)")
    ev.add_argument("--n", type=int, default=1000, help="questions per type and complexity")
    ev.add_argument("--types", default=None, help="comma-separated question types (default: all)")
    ev.add_argument("--styles", default=None,
                    help="also score simple scenes drawn in these withheld styles (comma-separated, or 'all'): "
                         "one column each, e.g. simple:dark")
    ev.add_argument("--paraphrases", action="store_true",
                    help="score the held-out paraphrase set instead (models/paraphrases, simple scenes)")
    ev.add_argument("--per-frame", type=int, default=20, help="with --paraphrases: questions per held-out frame")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_eval)
