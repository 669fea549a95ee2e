"""The processor's image half, done once per distinct image and batched by concatenation.

Why: SPEC §1.1 — players ask several questions about one picture, and many
players share the pool's pictures, yet a processor call redoes every image of
every batch: Idefics3 resizes and splits each image into crops (three PIL
resizes an image, over half of a tiny model's batch), Qwen2-VL normalises
and flattens each image into patches. This memo runs the family's own image
processor on one image at a time, keeps its output per image object (the
backend keeps one decoded image object per picture, models.identity_lru),
and builds a batch's output by concatenating the images' outputs along the
first dimension, zero-padding the others to the largest (Idefics3's crop
count) — which is what the image processors do themselves. The processor
then expands the image tokens and tokenises the prompts exactly as before,
because the memo stands in only for its `image_processor`.

`memoised_processor` checks the rule on probe images of awkward sizes against
the processor's own batch output and returns None for any family whose
outputs it does not reproduce exactly (those keep the plain processor).
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.identity_lru import IdentityLRU

log = logging.getLogger(__name__)
PROBE_SIZES = ((64, 64), (30, 90), (200, 100), (7, 5))  # (w, h): square, tall, wide, tiny
MEMO_SIZE, MEMO_BYTES = 256, 256 << 20  # images, and bytes of their tensors (models.identity_lru)


def _pad_to(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if tuple(t.shape[1:]) == shape:
        return t
    out = t.new_zeros((t.shape[0], *shape))
    out[(slice(None), *(slice(0, n) for n in t.shape[1:]))] = t
    return out


def collate(parts: list[dict]) -> dict:
    """One batch output from per-image outputs: tensors concatenated along dim 0 (zero-padded to the
    largest size in every other dim), lists concatenated. Anything else is refused (ValueError)."""
    out: dict = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if all(isinstance(v, torch.Tensor) for v in values):
            if values[0].dim() == 0:
                raise ValueError(f"{key}: a scalar per image cannot be concatenated")
            shape = tuple(max(v.shape[d] for v in values) for d in range(1, values[0].dim()))
            out[key] = torch.cat([_pad_to(v, shape) for v in values]) if len(values) > 1 else values[0]
        elif all(isinstance(v, list) for v in values):
            out[key] = [x for v in values for x in v]
        else:
            raise ValueError(f"{key}: {type(values[0]).__name__} outputs are not concatenated")
    return out


class MemoImageProcessor:
    """Stands in for a processor's `image_processor`: per-image outputs memoised by image identity,
    batches concatenated (`collate`); every other attribute is the real image processor's."""

    def __init__(self, real: Any, size: int = MEMO_SIZE, max_bytes: int | None = MEMO_BYTES):
        self.real = real
        self.memo: IdentityLRU[tuple[str, dict]] = IdentityLRU(size, max_bytes)

    def __getattr__(self, name: str) -> Any:  # only reached for attributes not set in __init__
        return getattr(self.real, name)

    def one(self, image: Image.Image, nested: bool, **kwargs) -> dict:
        """The real image processor's output for `image` alone, memoised per image and call options."""
        key = repr((nested, sorted(kwargs.items(), key=lambda kv: kv[0])))
        hit = self.memo.get(image)
        if hit is not None and hit[0] == key:
            return hit[1]
        out = dict(self.real([[image]] if nested else [image], **kwargs))
        self.memo.put(image, (key, out))
        return out

    def last(self, image: Image.Image) -> dict | None:
        """The memoised output for `image` alone (whatever the call's options were), or None."""
        hit = self.memo.get(image)
        return None if hit is None else hit[1]

    def __call__(self, images: Any, **kwargs) -> dict:
        if isinstance(images, Image.Image):
            images = [images]
        nested = bool(images) and isinstance(images[0], (list, tuple))
        if nested and any(len(sample) != 1 for sample in images):  # the game sends one image per question
            return self.real(images, **kwargs)
        flat = [sample[0] for sample in images] if nested else list(images)
        if not all(isinstance(im, Image.Image) for im in flat):
            return self.real(images, **kwargs)
        from transformers import BatchFeature

        return BatchFeature(collate([self.one(im, nested, **kwargs) for im in flat]))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def probe_images() -> list[Image.Image]:
    """Random RGB images of awkward sizes (`PROBE_SIZES`) for load-time equality checks."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in PROBE_SIZES]


def memoised_processor(processor: Any, prepare: Any, text: list[str]) -> Any | None:
    """A shallow copy of `processor` whose image processor is a MemoImageProcessor, or None when its
    batches differ from the processor's own on probe images (`prepare`d as the backend does; `text`:
    a prompt with one image per probe) or the processor has no separate image processor."""
    real = getattr(processor, "image_processor", None)
    if real is None or not callable(real):
        return None
    memo = copy.copy(processor)
    memo.image_processor = MemoImageProcessor(real)
    images = [prepare(im) for im in probe_images()]
    prompts = (text * len(images))[: len(images)]
    try:
        want = processor(images=[[im] for im in images], text=prompts, padding=True, return_tensors="pt")
        memo(images=[[im] for im in images[1:2]], text=prompts[:1], padding=True, return_tensors="pt")  # one cached
        got = memo(images=[[im] for im in images], text=prompts, padding=True, return_tensors="pt")
    except Exception as exc:  # noqa: BLE001 - any failure means: keep the plain processor
        log.info("%s: per-image memo of the image processor not used (%s)", type(processor).__name__, exc)
        return None
    if set(want) != set(got) or not all(_same(want[k], got[k]) for k in want):
        log.info("%s: per-image memo of the image processor not used (batch differs)", type(processor).__name__)
        return None
    memo.image_processor.memo.clear()
    return memo
