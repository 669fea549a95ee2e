"""Image import: every kind of bad file is skipped with a reason and leaves no
row; good files are resized, re-encoded without EXIF and deduplicated."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from game.images import MAX_SIDE, import_files, list_image_files, prepare_image, ImageRejected
from game.tables import images

pytestmark = pytest.mark.both_backends


def png_bomb(path: Path, side: int = 20000) -> None:
    """A real 1-bit 20000×20000 PNG (~50 KB on disk, 400 MB when decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def jpeg_with_exif(size=(1600, 1200)) -> bytes:
    img = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"       # Make
    exif[0x0132] = "2020:01:01 10:00:00"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    good = jpeg_with_exif()
    (d / "big_with_exif.jpg").write_bytes(good)
    (d / "copy_of_big.jpeg").write_bytes(good)
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("this is not an image\n")
    (d / "readme.txt").write_text("hello")
    buf = io.BytesIO()
    Image.new("RGBA", (300, 200), (0, 128, 0, 128)).save(buf, format="WEBP")
    (d / "alpha.webp").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="GIF")
    (d / "animated.png").write_bytes(buf.getvalue())  # a GIF with a .png name
    png_bomb(d / "bomb.png")
    return d


async def test_import_reports_and_never_half_imports(db, folder: Path):
    report = await import_files(db, list_image_files(folder), pool="imported:photos")
    by_name = {r.name: r for r in report.results}
    assert by_name["big_with_exif.jpg"].status == "imported"
    assert by_name["alpha.webp"].status == "imported"
    assert by_name["copy_of_big.jpeg"].status == "duplicate"
    expected = {
        "truncated.jpg": "truncated",
        "empty.png": "empty",
        "notes.png": "not an image",
        "readme.txt": "not an image file name",
        "animated.png": "unsupported image format",
        "bomb.png": "too large",
    }
    for name, reason in expected.items():
        assert by_name[name].status == "skipped", name
        assert reason in by_name[name].reason, (name, by_name[name].reason)
    async with db.read() as conn:
        rows = (await conn.execute(select(images))).all()
    assert len(rows) == 2 == report.count("imported")
    for row in rows:
        assert max(row.width, row.height) <= MAX_SIDE
        assert row.source_name in ("big_with_exif.jpg", "alpha.webp") and len(row.opaque_id) == 32
        img = Image.open(io.BytesIO(row.content))
        assert not img.getexif() and b"SecretCam" not in row.content
        assert img.size == (row.width, row.height)
    big = next(r for r in rows if r.source_name == "big_with_exif.jpg")
    assert (big.width, big.height) == (768, 576) and big.mime == "image/jpeg" and not big.reliable
    alpha = next(r for r in rows if r.source_name == "alpha.webp")
    assert alpha.mime == "image/png"
    # Importing again changes nothing.
    again = await import_files(db, list_image_files(folder), pool="imported:photos")
    assert again.count("imported") == 0 and again.count("duplicate") == 3
    async with db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(images))).scalar_one() == 2


def test_prepare_rejects_bomb_without_decoding(tmp_path: Path):
    png_bomb(tmp_path / "b.png")
    with pytest.raises(ImageRejected, match="too large"):
        prepare_image((tmp_path / "b.png").read_bytes())


async def test_annotations_are_stored(db, tmp_path: Path):
    d = tmp_path / "a"
    d.mkdir()
    (d / "x.jpg").write_bytes(jpeg_with_exif((100, 80)))
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"file": "x.jpg", "qa": [{"question": "What colour is the square?", "answers": ["red"]}]}\n')
    from game.images import read_annotations

    report = await import_files(db, list_image_files(d), pool="imported:a",
                                annotations=read_annotations(notes, {"x.jpg"}))
    assert report.count("imported") == 1
    async with db.read() as conn:
        row = (await conn.execute(select(images.c.annotations_json, images.c.width))).one()
    assert "What colour is the square?" in row.annotations_json and row.width == 100


def test_cli_import_from_a_folder_with_a_long_name(db_url: str, tmp_path: Path, monkeypatch, capsys):
    """The default pool name comes from the folder; a long one is cut to the column's 64
    characters instead of failing the import on PostgreSQL (which enforces VARCHAR lengths)."""
    import asyncio

    from game.db import Database
    from gap.cli import main

    folder = tmp_path / ("holiday photos from the summer of twenty twenty-six, " * 2).strip()
    folder.mkdir()
    (folder / "ok.jpg").write_bytes(jpeg_with_exif((50, 40)))
    monkeypatch.setenv("GAP_DATABASE_URL", db_url)
    assert main(["images", "import", str(folder)]) == 0
    assert "imported 1, duplicates 0, skipped 0" in capsys.readouterr().out

    async def pools() -> list[str]:
        db = Database(db_url)
        try:
            async with db.read() as conn:
                return [r.pool for r in (await conn.execute(select(images.c.pool))).all()]
        finally:
            await db.dispose()

    assert asyncio.run(pools()) == [f"imported:{folder.name}"[:64]]
