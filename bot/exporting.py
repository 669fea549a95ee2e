"""/export's work: refresh the evaluation, write the export with the data
pipeline's exporter (game/exports.py, the same code as `gap export`) and pack
the directory (train.jsonl, images/, README.md card) into one zip to send."""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from bot.deps import BotDeps


async def export_file(deps: BotDeps, fmt: str, theta: float, *, confirmed: bool = False,
                      strata: tuple[str, ...] = ()) -> tuple[Path, dict]:
    """(path of the zip, the dataset card's numbers) for an export in `fmt` at `theta` (with confirmations;
    of the images of `strata` only, when given)."""
    from game.evaluation import EvalConfig
    from game.evaluation_store import run_evaluation
    from game.exports import export_finds

    db = deps.service.db
    await run_evaluation(db, EvalConfig(theta=theta, crowd_threshold=deps.settings.crowd_threshold),
                         now_ms=deps.service.clock())
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(deps.service.clock() / 1000))
    label = "".join(ch if ch.isalnum() else "-" for ch in "-".join(strata))
    out = deps.export_dir / f"gap-{fmt}-theta{theta:g}{'-confirmed' if confirmed else ''}{'-' + label if label else ''}-{stamp}"
    card = await export_finds(db, fmt, theta, out, confirmed=confirmed, strata=strata)
    archive = await asyncio.to_thread(shutil.make_archive, str(out), "zip", root_dir=out)
    return Path(archive), card
