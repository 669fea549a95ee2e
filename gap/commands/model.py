"""`gap model train|ask` and `gap model-eval`: the embedded model's training, a one-off question, the accuracy table."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from settings import EMBEDDED_MODEL_DIR


def _train(args: argparse.Namespace, settings) -> int:
    from models.training import train

    steps = tuple(int(s) for s in args.steps.split(",")) if args.steps else None
    if steps is not None and len(steps) != 3:
        print("gap model train: --steps takes three comma-separated counts (slots,align,joint)", file=sys.stderr)
        return 2
    out = train(args.out, minutes=args.minutes, resume=args.resume, seed=args.seed, steps=steps,  # type: ignore[arg-type]
                threads=args.threads, state_dir=args.state_dir)
    print(f"checkpoint written to {out}")
    return 0


def _load(spec: str | None, settings, strategy: str | None = None, **kw):
    from models.loader import load_model

    kw.setdefault("answer_style", getattr(settings, "answer_style", "free"))
    return load_model(spec or settings.model, strategy=strategy or settings.taint_strategy, **kw)


def _ask(args: argparse.Namespace, settings) -> int:
    from models.base import ModelError

    try:
        image = Path(args.image).read_bytes()
    except OSError as exc:
        print(f"gap model ask: cannot read {args.image}: {exc.strerror}", file=sys.stderr)
        return 2

    async def go():
        model = _load(args.model, settings, args.strategy)
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

    from models.evaluation import COMPLEXITIES, TYPES, evaluate, format_table

    types = tuple(args.types.split(",")) if args.types else TYPES

    async def go():
        model = _load(args.model, settings, None, max_batch=32, max_queue=100_000, timeout_s=600)
        bar = tqdm(total=None, desc="model-eval", disable=args.json or not sys.stderr.isatty(), mininterval=2)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            return await evaluate(model, n=args.n, types=types, complexities=COMPLEXITIES, progress=progress)
        finally:
            bar.close()
            await model.aclose()

    result = asyncio.run(go())
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="the embedded model: train it, ask it a question")
    kinds = model.add_subparsers(dest="model_cmd", metavar="ACTION", required=True)

    train = kinds.add_parser("train", help="train the embedded model from scratch on CPU (staged recipe)")
    train.add_argument("--out", default=str(EMBEDDED_MODEL_DIR), help="checkpoint directory (default: data/model)")
    train.add_argument("--minutes", type=float, default=90.0, help="time budget, turned into step counts")
    train.add_argument("--steps", default=None, help="exact step counts per stage 'slots,align,joint' (reproduce a run)")
    train.add_argument("--resume", action="store_true", help="continue from --state-dir/train_state.pt")
    train.add_argument("--seed", type=int, default=1234)
    train.add_argument("--threads", type=int, default=1,
                       help="torch threads (1 is fastest when the CPU is shared with other work)")
    train.add_argument("--state-dir", default="runs/model-train", help="where resumable training state is kept")
    train.set_defaults(func=_train)

    ask = kinds.add_parser("ask", help="answer a question about an image: honest and tainted")
    ask.add_argument("image")
    ask.add_argument("question")
    ask.add_argument("--model", default=None, help="model directory or openai:<url> (default: GAP_MODEL)")
    ask.add_argument("--strategy", choices=["decode", "prompt"], default=None)
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(func=_ask)

    ev = sub.add_parser("model-eval", help="held-out accuracy per question type, simple and complex scenes")
    ev.add_argument("--model", default=None, help="model directory or openai:<url> (default: GAP_MODEL)")
    ev.add_argument("--n", type=int, default=1000, help="questions per type and complexity")
    ev.add_argument("--types", default=None, help="comma-separated question types (default: all)")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_eval)
