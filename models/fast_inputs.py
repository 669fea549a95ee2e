"""A vectorised stand-in for a LlavaProcessor call with a plain CLIP image processor.

Why: for the tiny embedded model the processor's per-image Python work costs more than
the forward pass, so micro-batching could not pay off. When (and only when) the
processor is the simple case — square-or-larger RGB images already resized to the
shortest edge, centre crop, rescale, normalise, and `<image>` expanded to a fixed
number of tokens — this does the same arithmetic with numpy on the whole batch.
A test checks it matches the processor's tensors; any other processor (a real VLM
directory) keeps the processor path.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from models.identity_lru import IdentityLRU


class FastClipInputs:
    def __init__(self, tokenizer: Any, image_token: str, image_tokens: int, crop: tuple[int, int],
                 mean: np.ndarray, std: np.ndarray, rescale: float):
        self.tokenizer = tokenizer
        self.image_token = image_token
        self.expanded = image_token * image_tokens
        self.crop_h, self.crop_w = crop
        self.scale = (rescale / std).astype(np.float32)
        self.offset = (mean / std).astype(np.float32)
        self._cache: IdentityLRU[np.ndarray] = IdentityLRU(256, 256 << 20)  # a 336-px crop: 1.4 MB

    @classmethod
    def for_processor(cls, processor: Any) -> "FastClipInputs | None":
        """Build the fast path for a LlavaProcessor over a CLIPImageProcessor, else None."""
        ip = getattr(processor, "image_processor", None)
        if type(processor).__name__ != "LlavaProcessor" or ip is None or "CLIPImageProcessor" not in type(ip).__name__:
            return None
        if not all(getattr(ip, flag, False) for flag in ("do_resize", "do_center_crop", "do_rescale", "do_normalize")):
            return None
        crop = getattr(ip, "crop_size", None)
        patch = getattr(processor, "patch_size", None)
        image_token = getattr(processor, "image_token", None)
        if not crop or not patch or not image_token:
            return None
        h, w = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop.height, crop.width)
        tokens = (h // patch) * (w // patch) + int(getattr(processor, "num_additional_image_tokens", 0) or 0)
        if getattr(processor, "vision_feature_select_strategy", "default") == "default":
            tokens -= 1
        return cls(processor.tokenizer, image_token, tokens, (h, w), np.asarray(ip.image_mean, np.float32),
                   np.asarray(ip.image_std, np.float32), float(ip.rescale_factor))

    def _pixels(self, img: Image.Image) -> np.ndarray:
        """Normalised crop of one image, memoised per image object: the backend caches decoded images,
        and players ask several questions about the same one."""
        hit = self._cache.get(img)
        if hit is not None:
            return hit
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
        height, width = rgb.shape[:2]
        if height < self.crop_h or width < self.crop_w:
            raise ValueError("image smaller than the crop")
        top, left = (height - self.crop_h) // 2, (width - self.crop_w) // 2
        pixels = rgb[top:top + self.crop_h, left:left + self.crop_w] * self.scale - self.offset
        self._cache.put(img, pixels)
        return pixels

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> dict[str, torch.Tensor]:
        pixels = np.stack([self._pixels(im) for im in images])
        text = [p.replace(self.image_token, self.expanded) for p in prompts]
        enc = self.tokenizer(text, padding=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "pixel_values": torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))}
