"""Exploratory probe: give the embedded model a 128-pixel input without changing
what it computes, then ask `gap ceiling` whether fine-tuning can use the extra pixels.

The vision tower's 16-pixel patch embedding becomes a 32-pixel one whose kernel is the old
kernel upsampled 2×2 and divided by 4 (a 2×2 average, then the old kernel), so 16 image
tokens still cover the picture and the model answers as before (measured: simple 87.0 %,
complex 59.3 % vs 59.4 %), while a tiny object is now 4–6 input pixels instead of 1–2.

    .venv/bin/python benchmarks/ceiling/upscale_vision.py data/model /tmp/model128 2
    .venv/bin/gap ceiling --out /tmp/c128 --base /tmp/model128 --variants full-vision

Result (5,000 complex scenes, 18,964 true pairs, 1,500 steps): whole vision tower −2.2 ± 2.4
points on complex held-out, simple 87.0 % → 76.5 %. Question–answer pairs alone do not teach
the tower to use the added resolution; the model is not shipped this way.
"""
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor


def upscale(src: Path, dst: Path, factor: int) -> None:
    model = AutoModelForImageTextToText.from_pretrained(src, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(src)
    config = model.config
    size, patch = config.vision_config.image_size * factor, config.vision_config.patch_size * factor
    config.vision_config.image_size, config.vision_config.patch_size = size, patch
    wider = AutoModelForImageTextToText.from_config(config)
    state = model.state_dict()
    key = next(k for k in state if k.endswith("patch_embedding.weight"))
    state[key] = state[key].repeat_interleave(factor, 2).repeat_interleave(factor, 3) / factor ** 2
    wider.load_state_dict(state, strict=True)
    wider.save_pretrained(dst)
    processor.image_processor.size = {"shortest_edge": size}
    processor.image_processor.crop_size = {"height": size, "width": size}
    processor.patch_size = patch
    processor.save_pretrained(dst)
    shutil.copy(src / "generation_config.json", dst / "generation_config.json")


if __name__ == "__main__":
    upscale(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
