"""Image pools (SPEC §1.2 reliable pool, §4 storage in the core): import, normalise, store, and the
reliable pool.

Every image is decoded fully, resized to at most `MAX_SIDE` pixels, re-encoded
once (EXIF and other metadata dropped) and stored with a random opaque id in a
single transaction, so a file is either fully imported or not at all. Anything
that is not a sound JPEG/PNG/WebP of sane size is skipped with a reason."""
from __future__ import annotations

import hashlib
import io
import json
import secrets
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

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
    status: str            # "imported" | "duplicate" | "skipped"
    reason: str = ""
    image_id: int | None = None


@dataclass
class ImportReport:
    results: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def lines(self) -> list[str]:
        """Human-readable report: one line per file, then totals."""
        out = [f"{r.status:9} {r.name}" + (f": {r.reason}" if r.reason else "") for r in self.results]
        out.append(f"imported {self.count('imported')}, duplicates {self.count('duplicate')}, "
                   f"skipped {self.count('skipped')}")
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


def read_annotations(path: Path) -> dict[str, dict[str, Any]]:
    """JSONL annotations keyed by file name (`file`, `image` or `file_name` field)."""
    out: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
        name = record.get("file") or record.get("image") or record.get("file_name") if isinstance(record, dict) else None
        if not isinstance(name, str):
            raise ValueError(f"{path}:{number}: needs a \"file\" field naming the image")
        out[Path(name).name] = record
    return out


def import_pool_name(label: str) -> str:
    """The pool of imported images, `imported:<label>` (by default the folder's name), cut to the
    column's length: PostgreSQL refuses a longer VARCHAR (SQLite would store it)."""
    return f"imported:{label}"[:images.c.pool.type.length]


def list_image_files(path: Path) -> list[Path]:
    """The files to import: `path` itself, or every regular file under a folder (sorted)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


async def import_files(db: Database, files: Iterable[Path], *, pool: str,
                       annotations: dict[str, dict[str, Any]] | None = None) -> ImportReport:
    """Import files one by one; each is imported whole, found duplicate, or skipped with a reason."""
    report = ImportReport()
    annotations = annotations or {}
    for path in files:
        name = path.name
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            report.results.append(FileResult(name, "skipped", f"not an image file name ({path.suffix or 'no suffix'})"))
            continue
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ImageRejected(f"file too large ({size} bytes > {MAX_FILE_BYTES})")
            prepared = prepare_image(path.read_bytes())
            note = annotations.get(name)
            image_id, created = await store_image(
                db, prepared, pool=pool, source_name=name,
                annotations_json=json.dumps(note, ensure_ascii=False) if note is not None else None)
        except ImageRejected as exc:
            report.results.append(FileResult(name, "skipped", str(exc)))
            continue
        except OSError as exc:
            report.results.append(FileResult(name, "skipped", f"cannot read file ({exc.strerror or exc})"))
            continue
        report.results.append(FileResult(name, "imported" if created else "duplicate",
                                         "" if created else "same image already stored", image_id))
    return report


async def images_with_scenes(db: Database) -> list[tuple[int, bytes, str]]:
    """(id, content, scene_json) of every image with ground truth, for reliability runs."""
    async with db.read() as conn:
        rows = (await conn.execute(select(images.c.id, images.c.content, images.c.scene_json)
                                   .where(images.c.scene_json.is_not(None)).order_by(images.c.id))).all()
    return [(r.id, bytes(r.content), r.scene_json) for r in rows]


async def set_reliability(db: Database, accuracies: dict[int, float], threshold: float) -> int:
    """Store measured accuracies and the reliable flag (accuracy ≥ threshold).
    Images without a measurement (no ground truth) are not reliable. Returns the pool size."""
    async with db.write() as conn:
        await conn.execute(update(images).values(reliable=False))
        for image_id, accuracy in accuracies.items():
            await conn.execute(update(images).where(images.c.id == image_id).values(
                model_accuracy=float(accuracy), reliable=bool(accuracy >= threshold)))
        count = (await conn.execute(select(images.c.id).where(images.c.reliable.is_(True)))).all()
    return len(count)


async def pool_counts(db: Database) -> dict[str, int]:
    """How many images the game can draw from: all, reliable."""
    async with db.read() as conn:
        rows = (await conn.execute(select(images.c.reliable))).all()
    return {"images": len(rows), "reliable": sum(1 for r in rows if r.reliable)}
