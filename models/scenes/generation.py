"""Scene generation: the scene graph (objects with shape, colour, size, place, text) and
the seeded draws of each split.

Why seeds by split: training, held-out evaluation and image pools must never share a
picture (SPEC §3.2 scores on a held-out set), so each split owns a disjoint seed range,
and training also skips any scene whose fingerprint appears in the held-out set
(tiny simple scenes can repeat across seeds).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

from models.scenes.styles import check_style


COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "orange": (245, 135, 20),
    "yellow": (236, 210, 25),
    "green": (40, 160, 60),
    "blue": (35, 85, 215),
    "purple": (135, 55, 185),
    "gray": (120, 120, 120),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
SHAPE_PLURALS: dict[str, str] = {s: s + "s" for s in SHAPES}
SIZES: tuple[str, ...] = ("small", "big")
GLYPHS: str = "ABCDEHKMNRSTXZ2345789"
BACKGROUND = (246, 244, 238)
GRID = 4  # simple scenes: 4x4 cells (one model patch per cell)
COMPLEXITIES = ("simple", "complex")

# Seed ranges: never overlap, so a held-out scene is never drawn for training.
SEED_RANGES: dict[str, range] = {
    "train": range(0, 1_000_000_000),
    "heldout": range(1_000_000_000, 2_000_000_000),
    "pool": range(2_000_000_000, 3_000_000_000),
}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str            # "small" | "big"
    x: float             # centre, 0..1 from the left
    y: float             # centre, 0..1 from the top
    r: float             # half-extent, fraction of the image side
    text: str | None = None  # a letter or digit drawn on the object
    cell: int | None = None  # grid cell (row*GRID+col) for grid layouts

    @property
    def side(self) -> str:
        return "left" if self.x < 0.5 else "right"

    @property
    def half(self) -> str:
        return "top" if self.y < 0.5 else "bottom"


@dataclass(frozen=True)
class Scene:
    complexity: str
    objects: tuple[SceneObject, ...]
    seed: int | None = None
    style: str = "plain"  # how it is drawn (models/scenes/styles.py); never what it shows

    def to_json(self) -> str:
        data = {"complexity": self.complexity, "seed": self.seed, "objects": [asdict(o) for o in self.objects]}
        if self.style != "plain":  # plain scenes keep the JSON stored before styles existed
            data["style"] = self.style
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Scene":
        data = json.loads(text)
        return cls(complexity=data["complexity"], seed=data.get("seed"),
                   objects=tuple(SceneObject(**o) for o in data["objects"]),
                   style=check_style(data.get("style", "plain")))

    def styled(self, style: str) -> "Scene":
        """The same objects drawn in another style (same questions, same true answers)."""
        return replace(self, style=check_style(style))

    def fingerprint(self) -> str:
        """Identity of what the picture shows (not of the seed, nor of its style): equal fingerprints
        draw the same objects in the same places. Style is left out on purpose: training skips a
        held-out scene's objects in every style, so a styled held-out picture is never learnt from."""
        # grid objects by cell (the sub-pixel jitter does not make a new picture), free ones at 1% resolution
        body = json.dumps([(o.shape, o.color, o.size, o.text, o.cell if o.cell is not None else
                            (round(o.x, 2), round(o.y, 2), round(o.r, 2))) for o in self.objects])
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _text_for(rng: random.Random, p: float) -> str | None:
    return rng.choice(GLYPHS) if rng.random() < p else None


def _grid_scene(rng: random.Random, n: int, complexity: str, seed: int | None, text_p: float) -> Scene:
    cells = rng.sample(range(GRID * GRID), n)
    objects = []
    for cell in cells:
        row, col = divmod(cell, GRID)
        size = rng.choice(SIZES)
        r = (0.44 if size == "big" else 0.30) / GRID
        jitter = 0.01
        objects.append(SceneObject(
            shape=rng.choice(SHAPES), color=rng.choice(list(COLORS)), size=size,
            x=round((col + 0.5) / GRID + rng.uniform(-jitter, jitter), 4),
            y=round((row + 0.5) / GRID + rng.uniform(-jitter, jitter), 4),
            r=round(r, 4), text=_text_for(rng, text_p) if size == "big" else None, cell=cell))
    return Scene(complexity=complexity, objects=tuple(objects), seed=seed)


# Free-placement object sizes: (cumulative probability, radius range, size word). Radii are fractions of
# the image side. "Tiny" objects (complex scenes only) are plain to a player at 384 px but one or two pixels
# wide at the embedded model's 64-px input: the real, fixable blind spot of a low-resolution VLM.
_SCATTERED_SIZES = ((0.45, (0.035, 0.06), "small"), (1.0, (0.07, 0.12), "big"))
_COMPLEX_SIZES = ((0.3, (0.015, 0.022), "small"), (0.6, (0.03, 0.05), "small"), (1.0, (0.07, 0.11), "big"))


def _free_scene(rng: random.Random, n: int, complexity: str, seed: int | None,
                sizes: tuple[tuple[float, tuple[float, float], str], ...]) -> Scene:
    objects: list[SceneObject] = []
    attempts = 0
    while len(objects) < n and attempts < 2000:
        attempts += 1
        u = rng.random()
        _, (r_lo, r_hi), size = next(band for band in sizes if u < band[0])
        r = rng.uniform(r_lo, r_hi)
        x, y = rng.uniform(r + 0.01, 1 - r - 0.01), rng.uniform(r + 0.01, 1 - r - 0.01)
        # partial overlaps are allowed, hiding an object's centre is not
        if any(math.hypot(x - o.x, y - o.y) < 0.75 * max(r, o.r) for o in objects):
            continue
        objects.append(SceneObject(
            shape=rng.choice(SHAPES), color=rng.choice(list(COLORS)), size=size,
            x=round(x, 4), y=round(y, 4), r=round(r, 4),
            text=_text_for(rng, 0.3) if size == "big" else None))
    return Scene(complexity=complexity, objects=tuple(objects), seed=seed)


def generate_scene(rng: random.Random, complexity: str, seed: int | None = None) -> Scene:
    """Draw a scene: "simple" (1-3 objects on the grid), "complex" (6-10 anywhere, overlapping,
    many small or tiny), or the training curricula "grid" (4-10 on the grid) and "scattered"
    (6-10 anywhere, overlapping, small but never tiny)."""
    if complexity == "simple":
        return _grid_scene(rng, rng.randint(1, 3), "simple", seed, text_p=0.35)
    if complexity == "grid":
        return _grid_scene(rng, rng.randint(4, 10), "grid", seed, text_p=0.2)
    if complexity == "scattered":
        return _free_scene(rng, rng.randint(6, 10), "scattered", seed, _SCATTERED_SIZES)
    if complexity == "complex":
        return _free_scene(rng, rng.randint(6, 10), "complex", seed, _COMPLEX_SIZES)
    raise ValueError(f"unknown complexity {complexity!r}")


def scene_from_seed(split: str, index: int, complexity: str, style: str = "plain") -> Scene:
    """The `index`-th scene of a split ("train", "heldout", "pool"); seeds never overlap across splits.
    A style draws the same objects as the plain scene of that index (models/scenes/styles.py)."""
    seeds = SEED_RANGES[split]
    seed = seeds[index % len(seeds)]
    rng = random.Random(f"{complexity}:{seed}")
    return generate_scene(rng, complexity, seed=seed).styled(style)


@lru_cache(maxsize=8)
def heldout_fingerprints(n: int = 4000) -> frozenset[str]:
    """Fingerprints of the first `n` held-out scenes of each complexity (training skips these)."""
    out: set[str] = set()
    for complexity in COMPLEXITIES:
        for i in range(n):
            out.add(scene_from_seed("heldout", i, complexity).fingerprint())
    return frozenset(out)
