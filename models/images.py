"""Decoding untrusted image bytes safely.

Why: players never upload images, but the model API accepts bytes from the
image pool and from operators' tools; a truncated file, a non-image or a
decompression bomb must become a clear BadImage, never a crash or an
out-of-memory kill.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from models.base import BadImage

MAX_BYTES = 20 * 1024 * 1024      # encoded size
MAX_PIXELS = 40_000_000           # declared width x height, checked before decoding
MAX_SIDE = 1024                   # larger images are downscaled (the model sees far fewer pixels anyway)
FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> Image.Image:
    """RGB image from encoded bytes, at most `max_side` pixels a side; BadImage with a safe message otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise BadImage("no image data")
    if len(data) > MAX_BYTES:
        raise BadImage("the image file is too large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)))
            if img.format not in FORMATS:
                raise BadImage(f"unsupported image format {img.format!r}")
            w, h = img.size
            if w < 1 or h < 1 or w * h > max_pixels:
                raise BadImage(f"the image is too large ({w}x{h} pixels)")
            if img.format == "JPEG":
                img.draft("RGB", (max_side, max_side))  # decode JPEGs at reduced size directly
            img.seek(0)
            img.load()
            img = img.convert("RGB")
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage("the image is too large") from exc
    except UnidentifiedImageError as exc:
        raise BadImage("not a decodable image") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImage("not a decodable image") from exc
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.BICUBIC)
    return img


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
