"""Image pools (SPEC §1.2 reliable pool, §4 storage in the core): import, normalise, store, and the
reliable pool.

Every image is decoded fully, resized to at most `MAX_SIDE` pixels, re-encoded
once (EXIF and other metadata dropped) and stored with a random opaque id; an
import stores all its files in a single transaction, so it is either fully
imported or not at all. Anything that is not a sound JPEG/PNG/WebP of sane size
is skipped with a reason, and so is a file whose annotation line is bad
(game/annotations.py)."""
from __future__ import annotations

import hashlib
import io
import secrets
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from game.annotations import Annotations, parse_annotations
from game.db import Database
from game.tables import images

MAX_SIDE = 768
MAX_FILE_BYTES = 30 * 1024 * 1024
MAX_PIXELS = 40_000_000          # 40 MP: far above any photo we want, far below a bomb
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
JPEG_QUALITY = 88


class ImageRejected(ValueError):
    """The file cannot be imported; the message is the per-file reason."""


@dataclass(frozen=True)
class PreparedImage:
    content: bytes
    mime: str
    width: int
    height: int
    sha256: str


def prepare_image(data: bytes, max_side: int = MAX_SIDE) -> PreparedImage:
    """Validate, fully decode, resize and re-encode image bytes (metadata-free JPEG,
    or PNG when the image has transparency).

    The pixel count is checked from the header *before* decoding, so a
    decompression bomb is refused without allocating its pixels."""
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageRejected(f"file too large ({len(data)} bytes > {MAX_FILE_BYTES})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            width, height = img.size
            if fmt not in ACCEPTED_FORMATS:
                raise ImageRejected(f"unsupported image format {fmt!r} (accepted: JPEG, PNG, WebP)")
            if width * height > MAX_PIXELS:
                raise ImageRejected(f"image too large ({width}x{height} pixels > {MAX_PIXELS}), possible decompression bomb")
            if width < 1 or height < 1:
                raise ImageRejected("image has no pixels")
            img.load()  # full decode: raises on truncated or corrupt data
            img = ImageOps.exif_transpose(img)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"image too large, possible decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"corrupt or truncated image ({exc})") from None
    has_alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA" if has_alpha else "RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if has_alpha:
        img.save(out, format="PNG", optimize=True)
        mime = "image/png"
    else:
        img.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        mime = "image/jpeg"
    content = out.getvalue()
    return PreparedImage(content, mime, img.width, img.height, hashlib.sha256(content).hexdigest())


@dataclass
class FileResult:
    name: str
    status: str            # "imported" | "updated" | "duplicate" | "skipped"
    reason: str = ""
    image_id: int | None = None


@dataclass
class ImportReport:
    results: list[FileResult] = field(default_factory=list)
    annotation_problems: list[tuple[int, str]] = field(default_factory=list)   # (line, reason)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def lines(self) -> list[str]:
        """Human-readable report: one line per file, one per bad annotations line, then totals."""
        out = [f"{r.status:9} {r.name}" + (f": {r.reason}" if r.reason else "") for r in self.results]
        out += [f"annotations line {n}: {reason}" for n, reason in self.annotation_problems]
        updated = f"updated {self.count('updated')}, " if self.count("updated") else ""
        out.append(f"imported {self.count('imported')}, {updated}duplicates {self.count('duplicate')}, "
                   f"skipped {self.count('skipped')}"
                   + (f"; bad annotation lines {len(self.annotation_problems)}" if self.annotation_problems else ""))
        return out


async def store_image(db: Database, prepared: PreparedImage, *, pool: str, source_name: str | None = None,
                      complexity: str | None = None, scene_json: str | None = None,
                      annotations_json: str | None = None, reliable: bool = False,
                      model_accuracy: float | None = None) -> tuple[int, bool]:
    """Insert one prepared image in its own transaction; returns (id, created).
    An image whose bytes are already stored is not stored again (dedupe by sha256)."""
    async with db.write() as conn:
        existing = (await conn.execute(select(images.c.id).where(images.c.sha256 == prepared.sha256))).first()
        if existing is not None:
            return int(existing.id), False
        try:
            result = await conn.execute(insert(images).values(
                opaque_id=secrets.token_hex(16), pool=pool, source_name=source_name, sha256=prepared.sha256,
                mime=prepared.mime, content=prepared.content, width=prepared.width, height=prepared.height,
                complexity=complexity, scene_json=scene_json, annotations_json=annotations_json,
                model_accuracy=model_accuracy, reliable=reliable, created_at=int(time.time() * 1000)))
        except IntegrityError:  # a concurrent importer stored the same bytes first
            raise ImageRejected("duplicate (stored concurrently)") from None
        return int(result.inserted_primary_key[0]), True


def read_annotations(path: Path, available: set[str]) -> Annotations:
    """The annotations file (JSON Lines, game/annotations.py) checked against the files being imported."""
    return parse_annotations(path.read_text(encoding="utf-8"), available)


def import_pool_name(label: str) -> str:
    """The pool of imported images, `imported:<label>` (by default the folder's name), cut to the
    column's length: PostgreSQL refuses a longer VARCHAR (SQLite would store it)."""
    return f"imported:{label}"[:images.c.pool.type.length]


def list_image_files(path: Path) -> list[Path]:
    """The files to import: `path` itself, or every regular file under a folder (sorted)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _prepare_file(path: Path) -> PreparedImage:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageRejected(f"not an image file name ({path.suffix or 'no suffix'})")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageRejected(f"file too large ({size} bytes > {MAX_FILE_BYTES})")
        return prepare_image(path.read_bytes())
    except OSError as exc:
        raise ImageRejected(f"cannot read file ({exc.strerror or exc})") from None


async def import_files(db: Database, files: Iterable[Path], *, pool: str, annotations: Annotations | None = None,
                       declared_reliable: bool = False) -> ImportReport:
    """Import files: each is imported whole, found duplicate, or skipped with a reason.

    Every file is decoded and checked first; then all good ones are stored in ONE transaction,
    so an interrupted or failing import leaves nothing behind. A file named by a bad
    annotations line is skipped rather than stored without its annotations. `declared_reliable`
    puts the images in the reliable pool on the operator's word (SPEC §1.2, "declared")."""
    report = ImportReport(annotation_problems=list(annotations.problems) if annotations else [])
    staged: list[tuple[FileResult, PreparedImage, str | None]] = []
    for path in files:
        name = path.name
        if annotations is not None and name in annotations.bad_files:
            line = annotations.bad_files[name]
            report.results.append(FileResult(name, "skipped", f"its annotations are not valid (annotations line {line})"))
            continue
        try:
            prepared = _prepare_file(path)
        except ImageRejected as exc:
            report.results.append(FileResult(name, "skipped", str(exc)))
            continue
        result = FileResult(name, "imported")
        report.results.append(result)
        staged.append((result, prepared, annotations.record(name) if annotations is not None else None))
    async with db.write() as conn:
        for result, prepared, note in staged:
            await _stage_one(conn, result, prepared, pool=pool, note=note, declared=declared_reliable)
    return report


async def _stage_one(conn, result: FileResult, prepared: PreparedImage, *, pool: str, note: str | None,
                     declared: bool) -> None:
    """Store one image inside the import's transaction, or mark it a duplicate (same bytes already
    stored, in this import or an earlier one). A duplicate still takes new annotations and a
    declaration, so annotating a pool after importing it is one more `gap images import`."""
    existing = (await conn.execute(select(images.c.id).where(images.c.sha256 == prepared.sha256))).first()
    if existing is not None:
        changes: dict[str, Any] = {}
        if note is not None:
            changes["annotations_json"] = note
        if declared:
            changes.update(declared_reliable=True, reliable=True)
        if changes:
            await conn.execute(update(images).where(images.c.id == existing.id).values(**changes))
        result.status, result.image_id = ("updated" if changes else "duplicate"), int(existing.id)
        result.reason = "same image already stored" + ("; annotations/declaration updated" if changes else "")
        return
    inserted = await conn.execute(insert(images).values(
        opaque_id=secrets.token_hex(16), pool=pool, source_name=result.name, sha256=prepared.sha256,
        mime=prepared.mime, content=prepared.content, width=prepared.width, height=prepared.height,
        annotations_json=note, declared_reliable=declared, reliable=declared, created_at=int(time.time() * 1000)))
    result.image_id = int(inserted.inserted_primary_key[0])


async def images_with_scenes(db: Database) -> list[tuple[int, bytes, str]]:
    """(id, content, scene_json) of every image with ground truth, for reliability runs."""
    async with db.read() as conn:
        rows = (await conn.execute(select(images.c.id, images.c.content, images.c.scene_json)
                                   .where(images.c.scene_json.is_not(None)).order_by(images.c.id))).all()
    return [(r.id, bytes(r.content), r.scene_json) for r in rows]


async def images_with_ground_truth(db: Database) -> list[tuple[int, bytes, str | None, str | None]]:
    """(id, content, scene_json, annotations_json) of every image the model can be measured on:
    a procedural scene graph, or annotation question–answer pairs (SPEC §1.2)."""
    async with db.read() as conn:
        rows = (await conn.execute(
            select(images.c.id, images.c.content, images.c.scene_json, images.c.annotations_json)
            .where(or_(images.c.scene_json.is_not(None), images.c.annotations_json.is_not(None)))
            .order_by(images.c.id))).all()
    return [(r.id, bytes(r.content), r.scene_json, r.annotations_json) for r in rows]


async def set_reliability(db: Database, accuracies: dict[int, float], threshold: float) -> int:
    """Store measured accuracies and the reliable flag (accuracy ≥ threshold); returns the pool size.

    Measured images are reliable by their measurement; images the operator declared stay
    reliable; images decided by the crowd (no measurement, crowd evidence: game/crowd_reliability.py)
    are left to it; every other image is not reliable."""
    async with db.write() as conn:
        await conn.execute(update(images).where(and_(
            images.c.declared_reliable.is_(False),
            or_(images.c.model_accuracy.is_not(None), images.c.crowd_lower.is_(None)))).values(reliable=False))
        for image_id, accuracy in accuracies.items():
            await conn.execute(update(images).where(images.c.id == image_id).values(
                model_accuracy=float(accuracy),
                reliable=True if accuracy >= threshold else images.c.declared_reliable))
        count = (await conn.execute(select(images.c.id).where(images.c.reliable.is_(True)))).all()
    return len(count)


async def pool_counts(db: Database) -> dict[str, int]:
    """How many images the game can draw from: all, reliable, and playable — the images of pools
    that have a reliable image (a session stratifies by pool, so a pool without one is left out:
    game/rules.plan_session)."""
    async with db.read() as conn:
        rows = (await conn.execute(select(images.c.pool, images.c.reliable))).all()
    with_reliable = {r.pool for r in rows if r.reliable}
    return {"images": len(rows), "reliable": sum(1 for r in rows if r.reliable),
            "playable": sum(1 for r in rows if r.pool in with_reliable)}
