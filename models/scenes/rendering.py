"""Rendering: a scene graph drawn as the RGB image the game serves and the model sees.

Drawn at twice the size and downsampled, so edges are smooth at every size a pool
or a model asks for; tiny objects stay visible to a player at 384 px (SPEC §1.2
reliable pool: the picture, not the renderer, decides what is hard).
"""
from __future__ import annotations

import io
import math
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from models.scenes import styles
from models.scenes.generation import BACKGROUND, COLORS, Scene


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.9
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            ang = -math.pi / 2 + k * math.pi / 5
            rad = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang) + r * 0.08))
        return pts
    raise ValueError(shape)


@lru_cache(maxsize=64)
def _font(px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(px, 6))


def render(scene: Scene, size: int = 384) -> Image.Image:
    """Draw the scene as an RGB image `size` pixels square (drawn at 2x and downsampled: smooth edges),
    in the scene's style (plain: objects on the off-white background)."""
    ss = size * 2
    rng = styles.style_rng(scene.style, f"{scene.seed}:{scene.fingerprint()}")
    img = styles.background(scene.style, ss, BACKGROUND, rng)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        cx, cy, r = o.x * ss, o.y * ss, o.r * ss
        fill = COLORS[o.color]
        outline = tuple(max(0, c - 70) for c in fill)
        width = max(1, ss // 192)
        if o.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=outline, width=width)
        else:
            draw.polygon(_shape_points(o.shape, cx, cy, r), fill=fill, outline=outline, width=width)
        if o.text:
            ink = (0, 0, 0) if o.color in ("yellow", "orange") else (255, 255, 255)
            px = int(r * (0.9 if o.shape in ("circle", "square") else 0.7))
            ty = cy + (r * 0.2 if o.shape == "triangle" else 0)
            draw.text((cx, ty), o.text, fill=ink, font=_font(px), anchor="mm")
    return styles.finish(scene.style, img).resize((size, size), Image.LANCZOS)


def render_png(scene: Scene, size: int = 384) -> bytes:
    """PNG bytes of `render(scene, size)` (what the game serves and the model receives)."""
    buf = io.BytesIO()
    render(scene, size).save(buf, format="PNG")
    return buf.getvalue()
