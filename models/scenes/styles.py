"""Scene styles: the same scene graph drawn on other backgrounds, under other light, among clutter.

Why: the closed loop (SPEC §3.2) needs a model that is wrong on things data can fix. The
embedded model is trained only on "plain" pictures (objects on an off-white background,
models/training_data.py never varies it), while the game's pool may hold styled pictures
of simple scenes. A person reads a styled picture as easily as a plain one, so the model's
mistakes there are learnable weaknesses, one per style, that rounds can fix one after
another.

A style never changes what the picture shows (objects, colours, places), only how it is
drawn, so questions and their true answers are those of the scene graph. Every random
choice a style makes (gradient direction, marks) is seeded by the scene's identity, so a
scene renders to the same pixels every time. "plain" draws exactly today's pictures.
"""
from __future__ import annotations

import random

from PIL import Image, ImageDraw

STYLES: tuple[str, ...] = ("plain", "dark", "gradient", "clutter")
WITHHELD_STYLES: tuple[str, ...] = STYLES[1:]


def check_style(style: str) -> str:
    """`style` itself, or a ValueError naming the known ones (a typo must not draw plain pictures)."""
    if style not in STYLES:
        raise ValueError(f"unknown scene style {style!r}; known: {', '.join(STYLES)}")
    return style


def parse_style_shares(text: str | None) -> tuple[tuple[str, float], ...]:
    """"dark=0.1,clutter=0.05" -> (("dark", 0.1), ("clutter", 0.05)): the share of a pool drawn in each
    withheld style. Refuses plain, unknown styles, repeats, and shares outside [0, 1] or summing past 1."""
    out: list[tuple[str, float]] = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if name not in WITHHELD_STYLES:
            raise ValueError(f"unknown pool style {name!r}; known: {', '.join(WITHHELD_STYLES)}")
        try:
            share = float(value) if sep else float("nan")
        except ValueError:
            share = float("nan")
        if not 0 <= share <= 1:
            raise ValueError(f"pool style {name!r} needs a share in [0, 1], as in {name}=0.1")
        if name in dict(out):
            raise ValueError(f"pool style {name!r} is given twice")
        out.append((name, share))
    if sum(v for _, v in out) > 1 + 1e-9:
        raise ValueError("pool style shares add up to more than 1")
    return tuple(out)


def pick_style(u: float, shares: tuple[tuple[str, float], ...]) -> str:
    """The style a uniform draw `u` in [0, 1) lands on: each style over its share, plain for the rest."""
    edge = 0.0
    for name, share in shares:
        edge += share
        if u < edge:
            return name
    return "plain"


def style_rng(style: str, identity: str) -> random.Random:
    """The style's own random stream for one scene (seed and fingerprint: equal scenes draw equally)."""
    return random.Random(f"style:{style}:{identity}")


def background(style: str, size: int, plain: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """The canvas the objects are drawn on (`size` px square)."""
    if style == "dark":
        return Image.new("RGB", (size, size), (38, 40, 52))
    if style == "gradient":
        return _gradient(size, rng)
    if style == "clutter":
        return _clutter(size, plain, rng)
    return Image.new("RGB", (size, size), plain)


def finish(style: str, img: Image.Image) -> Image.Image:
    """Changes to the whole drawn picture (light on objects and background alike). None is kept today:
    a warm colour cast made grey read as brown and purple as maroon (ambiguous for a person too), and
    low contrast (x0.55) left the base model at 84 % (not a clear weakness); see models/README.md."""
    return img


def _gradient(size: int, rng: random.Random) -> Image.Image:
    """Uneven light: a linear ramp from bright to a dim blue-grey across the picture, seeded direction."""
    light, dim = (250, 246, 236), (92, 98, 118)
    ramp = Image.linear_gradient("L").resize((size, size))
    ramp = ramp.rotate(rng.choice((0, 90, 180, 270)))
    return Image.composite(Image.new("RGB", (size, size), dim), Image.new("RGB", (size, size), light), ramp)


def _clutter(size: int, plain: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """Distractor marks that are not objects: thin grey scribbles and specks on the background."""
    img = Image.new("RGB", (size, size), plain)
    draw = ImageDraw.Draw(img)
    width = max(1, size // 110)
    for _ in range(40):
        grey = rng.randint(60, 150)
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        points = [(x, y)]
        for _ in range(rng.randint(2, 4)):
            x += rng.uniform(-0.2, 0.2) * size
            y += rng.uniform(-0.2, 0.2) * size
            points.append((x, y))
        draw.line(points, fill=(grey, grey, grey - 10), width=width)
    for _ in range(60):
        grey = rng.randint(70, 170)
        x, y, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0.004, 0.012) * size
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(grey, grey, grey))
    return img
