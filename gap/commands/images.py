"""`gap images import|generate|reliable|stats`: the image pools of SPEC §1.2.

This is the wiring layer: game/images.py stores and validates, models.scenes
draws scenes with ground truth, the configured model measures its accuracy per
image, and the reliable pool (tainted images come only from it) is stored."""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
from pathlib import Path
from typing import Callable

from game.db import Database
from game.images import (
    PreparedImage,
    import_files,
    import_pool_name,
    images_with_ground_truth,
    list_image_files,
    pool_counts,
    read_annotations,
    set_reliability,
    store_image,
)
from game.migrate import upgrade
from gap.measure_journal import MeasureJournal, default_journal_path

DEFAULT_THRESHOLD = 0.9
DEFAULT_QUESTIONS = 8
SCENE_SIZE = 384


async def generate_pool(db: Database, count: int, *, seed: int = 0, complex_share: float = 0.5,
                        pool: str = "generated", styles: tuple[tuple[str, float], ...] = ()) -> tuple[int, int]:
    """Render `count` procedural scenes from the pool seed range (disjoint from the
    training and held-out seeds), a mix of simple and complex, and store them
    with their scene graphs. Returns (created, already present).

    `styles` (("dark", 0.1), ...) draws that share of the images as simple scenes in a style the
    embedded model never saw in training (models/scenes/styles.py): the learnable weaknesses the
    closed loop finds and fixes (SPEC §3.2). Styles come from their own random stream, so a pool
    without them is the same pool as before."""
    from models.evaluation import slice_name
    from models.scenes import pick_style, render_png, scene_from_seed

    created = existing = 0
    rng = random.Random(f"pool-mix:{seed}")
    style_rng = random.Random(f"pool-style:{seed}")
    for i in range(count):
        complexity = "complex" if rng.random() < complex_share else "simple"
        style = pick_style(style_rng.random(), styles) if styles else "plain"
        if style != "plain":
            complexity = "simple"
        scene = scene_from_seed("pool", seed + i, complexity, style)
        png = render_png(scene, SCENE_SIZE)
        prepared = PreparedImage(png, "image/png", SCENE_SIZE, SCENE_SIZE, hashlib.sha256(png).hexdigest())
        # a styled image is its own stratum ("simple:dark"): the crowd's error rate π is estimated per
        # stratum (SPEC §2), and pooled with plain simple images, where the model is nearly always right,
        # a find on a styled image would look improbable and never be exported
        stratum = slice_name(complexity, style)
        _, was_created = await store_image(db, prepared, pool=pool, source_name=f"scene-{scene.seed}-{stratum}",
                                           complexity=stratum, scene_json=scene.to_json())
        created += was_created
        existing += not was_created
    return created, existing


async def measure_accuracies(db: Database, model, *, questions: int = DEFAULT_QUESTIONS, seed: int = 0,
                             concurrency: int = 8, progress: Callable[[], None] | None = None,
                             journal: MeasureJournal | None = None) -> dict[int, float]:
    """The model's accuracy on every image with ground truth: seeded questions from a scene
    graph, or an imported image's annotation questions (matched by game/answer_matching.py).
    Images are measured concurrently so the model's micro-batcher can batch them;
    `progress` is called once per image (for a progress bar). With a `journal`, images it
    already holds are not measured again and each new accuracy is recorded as it arrives."""
    from game.annotations import measure_on_annotations, stored_qa
    from models.scenes import Scene, measure_accuracy

    items = [item for item in await images_with_ground_truth(db) if item[2] is not None or stored_qa(item[3])]
    done = journal.done if journal is not None else {}
    accuracies: dict[int, float] = {item[0]: done[item[0]] for item in items if item[0] in done}
    gate = asyncio.Semaphore(concurrency)

    async def one(image_id: int, content: bytes, scene_json: str | None, annotations_json: str | None) -> None:
        async with gate:
            if scene_json is not None:
                rng = random.Random(f"reliability:{seed}:{image_id}")
                accuracies[image_id] = await measure_accuracy(model, content, Scene.from_json(scene_json), rng,
                                                              n=questions)
            else:
                accuracies[image_id] = await measure_on_annotations(model, content, stored_qa(annotations_json))
        if journal is not None:
            journal.record(image_id, accuracies[image_id])
        if progress is not None:
            progress()

    for _ in accuracies:
        if progress is not None:
            progress()
    tasks = [asyncio.ensure_future(one(*item)) for item in items if item[0] not in accuracies]
    try:
        await asyncio.gather(*tasks)
    except BaseException:  # a failing model or Ctrl-C: stop the other images too, then report
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return accuracies


async def measure_reliability(db: Database, model, *, threshold: float = DEFAULT_THRESHOLD,
                              questions: int = DEFAULT_QUESTIONS, seed: int = 0, concurrency: int = 8,
                              progress: Callable[[], None] | None = None,
                              journal_path: Path | None = None) -> dict[str, float | int]:
    """Measure the model's accuracy on every image with ground truth (scene graph or annotations)
    and store the reliable pool (accuracy ≥ threshold). Images without ground truth keep what the
    operator declared or the crowd measured (game/images.set_reliability).
    The pool is replaced in one transaction at the end, so a live game never sees a half-measured one.
    With `journal_path` an interrupted run resumes where it stopped (gap/measure_journal.py)."""
    journal = None
    if journal_path is not None:
        journal = MeasureJournal.open(journal_path, {"model": model.model_id, "questions": questions, "seed": seed})
        if journal.note:
            print(journal.note, file=sys.stderr)
    try:
        accuracies = await measure_accuracies(db, model, questions=questions, seed=seed, concurrency=concurrency,
                                              progress=progress, journal=journal)
        reliable = await set_reliability(db, accuracies, threshold)
    finally:
        if journal is not None:
            journal.close()
    if journal is not None:
        journal.finish()
    mean = sum(accuracies.values()) / len(accuracies) if accuracies else 0.0
    return {"measured": len(accuracies), "reliable": reliable, "mean_accuracy": mean}


async def _with_db(settings, work):
    await asyncio.to_thread(upgrade, settings.database_url)
    from gap.app import open_database

    db = open_database(settings)
    try:
        return await work(db)
    finally:
        await db.dispose()


async def _measure_with_model(db: Database, settings, args) -> dict:
    from tqdm import tqdm

    from gap.app import load_model

    # the model is asked as it will be when serving (the answer style changes its answers)
    model = await load_model(args.model or settings.model, settings=settings)
    total = (await pool_counts(db))["images"]  # images without ground truth are skipped: an upper bound
    try:
        with tqdm(total=total, desc="measuring", unit="image", disable=not sys.stderr.isatty()) as bar:
            return await measure_reliability(db, model, threshold=args.threshold, questions=args.questions,
                                             progress=bar.update,
                                             journal_path=default_journal_path(settings.database_url))
    finally:
        await model.aclose()


def _print_measure(result: dict) -> None:
    from game.rules import TAINTED_PER_SESSION

    print(f"reliable pool: {result['reliable']} of {result['measured']} measured images "
          f"(mean model accuracy {result['mean_accuracy']:.3f})")
    if result["reliable"] < TAINTED_PER_SESSION:
        print(f"warning: sessions need at least {TAINTED_PER_SESSION} reliable images; annotate or declare more "
              f"(gap images import --annotations F / --reliable), generate more simple scenes, improve the model, "
              f"or lower --threshold; the crowd measures the rest once play starts (README: Your own images)",
              file=sys.stderr)


def _import(args: argparse.Namespace, settings) -> int:
    path = Path(args.path)
    if not path.exists():
        print(f"gap images import: {path} does not exist", file=sys.stderr)
        return 2
    files = list_image_files(path)
    try:
        notes = read_annotations(Path(args.annotations), {f.name for f in files}) if args.annotations else None
    except (OSError, UnicodeDecodeError) as exc:
        print(f"gap images import: annotations: cannot read {args.annotations} ({exc})", file=sys.stderr)
        return 2
    if args.only_annotated:
        if notes is None:
            print("gap images import: --only-annotated needs --annotations", file=sys.stderr)
            return 2
        files = [f for f in files if f.name in notes.by_file or f.name in notes.bad_files]
    pool = import_pool_name(args.pool or (path.name if path.is_dir() else path.parent.name))

    async def work(db: Database):
        return await import_files(db, files, pool=pool, annotations=notes, declared_reliable=args.reliable)

    report = asyncio.run(_with_db(settings, work))
    for line in report.lines():
        print(line)
    if not (report.count("imported") or report.count("updated")):
        print("gap images import: nothing was imported", file=sys.stderr)
        return 1
    return 0


def _generate(args: argparse.Namespace, settings) -> int:
    from models.scenes import parse_style_shares

    try:
        styles = parse_style_shares(args.styles)
    except ValueError as exc:
        print(f"gap images generate: {exc}", file=sys.stderr)
        return 2

    async def work(db: Database):
        created, existing = await generate_pool(db, args.count, seed=args.seed, complex_share=args.complex_share,
                                                styles=styles)
        print(f"generated {created} scenes ({existing} already present)")
        if not args.no_measure:
            _print_measure(await _measure_with_model(db, settings, args))
        print("pools: " + ", ".join(f"{k} {v}" for k, v in (await pool_counts(db)).items()))

    return _run_measuring(settings, work)


def _reliable(args: argparse.Namespace, settings) -> int:
    async def work(db: Database):
        _print_measure(await _measure_with_model(db, settings, args))
        print("pools: " + ", ".join(f"{k} {v}" for k, v in (await pool_counts(db)).items()))

    return _run_measuring(settings, work)


def _run_measuring(settings, work) -> int:
    """Run a command that measures the pool; Ctrl-C keeps what was measured for the next run."""
    try:
        asyncio.run(_with_db(settings, work))
    except KeyboardInterrupt:
        print(f"\ninterrupted: the pool is unchanged; the images measured so far are kept in "
              f"{default_journal_path(settings.database_url)} — rerun the same command to continue",
              file=sys.stderr)
        return 130
    return 0


def _stats(args: argparse.Namespace, settings) -> int:
    from game.pool_progress import pool_progress, progress_lines

    async def work(db: Database):
        return await pool_counts(db), await pool_progress(db)

    counts, progress = asyncio.run(_with_db(settings, work))
    print(", ".join(f"{k} {v}" for k, v in counts.items()))
    for line in progress_lines(progress):
        print(line)
    return 0


def _measure_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="minimum measured accuracy for the reliable pool (default 0.9)")
    parser.add_argument("--questions", type=int, default=DEFAULT_QUESTIONS, help="questions per image")
    parser.add_argument("--model", default=None, help="model to measure (default: GAP_MODEL)")


def register(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser("images", help="image pools: import, generate, reliable pool")
    kinds = images.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    imp = kinds.add_parser("import", help="import a folder (or file) of JPEG/PNG/WebP images")
    imp.add_argument("path")
    imp.add_argument("--annotations", metavar="F.jsonl",
                     help='one line per file: {"file": "dog.jpg", "qa": [{"question": "...", "answers": ["2", "two"]}]}')
    imp.add_argument("--only-annotated", action="store_true",
                     help="import only the files the annotations name (a folder that holds other files too)")
    imp.add_argument("--reliable", action="store_true",
                     help="declare these images reliable (a curated set the model answers well; shown as declared)")
    imp.add_argument("--pool", help="pool name (default: the folder name)")
    imp.set_defaults(func=_import)
    gen = kinds.add_parser("generate", help="render procedural scenes with ground truth")
    gen.add_argument("count", type=int)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--complex-share", type=float, default=0.5, help="fraction of complex scenes")
    gen.add_argument("--styles", default=None, metavar="STYLE=SHARE,...",
                     help="shares of simple scenes drawn in withheld styles, e.g. dark=0.1,gradient=0.1,clutter=0.1 "
                          "(the model's learnable weaknesses; the rest is plain)")
    gen.add_argument("--no-measure", action="store_true", help="skip measuring the reliable pool")
    _measure_options(gen)
    gen.set_defaults(func=_generate)
    rel = kinds.add_parser("reliable", help="re-measure the model's accuracy and store the reliable pool")
    _measure_options(rel)
    rel.set_defaults(func=_reliable)
    stats = kinds.add_parser("stats", help="pool sizes and the reliable pool's progress by way "
                                            "(declared / measured / crowd-measured / unknown)")
    stats.set_defaults(func=_stats)
