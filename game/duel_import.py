"""Caption duels from the operator's own pictures (SPEC §3.4: "two imported images with a
caption"). A JSON Lines file, one duel per line:

    {"caption": "A dog on a beach", "image_0": "a.jpg", "image_1": "b.jpg", "fits": 0, "gold": false}

Paths are relative to the file. `fits` (0, 1 or null) says which picture fits when the
operator knows; `gold: true` makes the duel hidden comparison gold and needs `fits` (one side
unambiguous, e.g. a picture taken for another caption). Pictures are validated and
re-encoded like every imported image (game/images.prepare_image: no EXIF, bounded size).
Every line is checked before anything is stored; errors name the line."""
from __future__ import annotations

import json
from pathlib import Path

from game import duel_stock as S
from game.db import Database
from game.errors import Invalid
from game.images import ImageRejected, prepare_image
from game.rules import clean_text

CAPTION_MAX = 300


def parse_line(raw: str, base: Path, number: int) -> S.NewPair:
    """One line → a caption pair with side "a" the picture that fits (when known)."""
    try:
        obj = json.loads(raw)
    except ValueError:
        raise Invalid(f"line {number}: not JSON") from None
    if not isinstance(obj, dict):
        raise Invalid(f"line {number}: not a JSON object")
    try:
        caption = clean_text(obj.get("caption"), field="caption", max_len=CAPTION_MAX)
    except Invalid as exc:
        raise Invalid(f"line {number}: {exc.message}") from None
    fits, gold = obj.get("fits"), obj.get("gold", False)
    if fits not in (0, 1, None) or isinstance(fits, bool) or not isinstance(gold, bool):
        raise Invalid(f'line {number}: "fits" must be 0, 1 or null and "gold" true or false')
    if gold and fits is None:
        raise Invalid(f'line {number}: a gold duel needs "fits" (which picture is right)')
    sides = []
    for key in ("image_0", "image_1"):
        name = obj.get(key)
        if not isinstance(name, str) or not name:
            raise Invalid(f"line {number}: {key} must be a file name")
        path = (base / name).resolve()
        try:
            sides.append(prepare_image(path.read_bytes()))
        except OSError as exc:
            raise Invalid(f"line {number}: cannot read {name}: {exc.strerror or exc}") from None
        except ImageRejected as exc:
            raise Invalid(f"line {number}: {name}: {exc}") from None
    if sides[0].sha256 == sides[1].sha256:
        raise Invalid(f"line {number}: the two pictures are the same")
    if fits == 1:
        sides.reverse()
    return S.NewPair("caption", "gold" if gold else "imported", gold, caption, a_png=sides[0].content,
                     b_png=sides[1].content, a_mime=sides[0].mime, b_mime=sides[1].mime,
                     truth="a" if fits is not None else None)


async def import_caption_duels(db: Database, path: Path, now_ms: int) -> dict[str, int]:
    """Validate every line, then store them in one transaction: {"lines", "added"}."""
    path = Path(path)
    pairs = [parse_line(raw, path.parent, i) for i, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if raw.strip()]
    added = await db.run_write(S.tx_insert_pairs, pairs, now_ms)
    return {"lines": len(pairs), "added": added}
