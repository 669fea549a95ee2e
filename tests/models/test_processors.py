"""Processors of the VLM families: the image-only fallback when torchvision is missing, and the
family adapter each processor gets (models.processors, models.families)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, LlavaProcessor, Qwen2VLImageProcessorPil, Qwen2VLProcessor

from models.families import ChatPrompt, FamilyAdapter, PrefixPrompt, pad_to_aspect
from models.processors import _torchvision_available, load_processor


def test_qwen2_vl_loads_without_its_video_processor(family_dir):
    path = family_dir("qwen2_vl")
    assert not _torchvision_available()  # the pinned environment: no torchvision beside torch 2.13 CPU
    with pytest.raises(Exception):
        AutoProcessor.from_pretrained(path)  # wants the video processor, which needs torchvision
    processor = load_processor(path)
    assert isinstance(processor, Qwen2VLProcessor) and "video_processor" not in processor.get_attributes()
    assert processor.chat_template and processor.tokenizer is not None
    # the image half is the family's own: same pixels as its image processor, one pad token per merged patch
    image = Image.new("RGB", (50, 30), (200, 10, 10))
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}],
        add_generation_prompt=True, tokenize=False)
    out = processor(images=[[image]], text=[text], return_tensors="pt")
    alone = Qwen2VLImageProcessorPil.from_pretrained(path)(images=[image], return_tensors="pt")
    assert torch.equal(out["pixel_values"], alone["pixel_values"])
    pads = int((out["input_ids"] == processor.image_token_id).sum())
    assert pads == int(alone["image_grid_thw"].prod()) // processor.image_processor.merge_size ** 2


@pytest.mark.parametrize("family", ["smolvlm2", "llava_onevision", "qwen2_5_vl"])
def test_other_video_families_load_image_only(family, family_dir):
    processor = load_processor(family_dir(family))
    assert "video_processor" not in processor.get_attributes()
    assert "<image>" in ChatPrompt(processor)("How many?") or "<|image_pad|>" in ChatPrompt(processor)("How many?")


def test_a_processor_without_video_is_autoprocessors_own(family_dir):
    processor = load_processor(family_dir("llava"))
    assert type(processor) is LlavaProcessor


def test_each_family_gets_its_adapter(family_dir):
    paligemma = FamilyAdapter.for_processor(load_processor(family_dir("paligemma")))
    assert isinstance(paligemma.prompt, PrefixPrompt) and paligemma.prompt("How many?") == "answer en How many?"
    llava = FamilyAdapter.for_processor(load_processor(family_dir("llava")))
    assert isinstance(llava.prompt, ChatPrompt) and llava.shortest_edge == 32 and llava.fast_inputs is not None
    # an image smaller than the crop is enlarged as the processor would (it used to fail the batch)
    assert llava.prepare(Image.new("RGB", (5, 3))).size == (53, 32)
    qwen = FamilyAdapter.for_processor(load_processor(family_dir("qwen2_vl")))
    assert qwen.shortest_edge is None and qwen.fast_inputs is None  # Qwen's size is a pixel budget


def test_slivers_are_padded_to_a_bounded_aspect():
    assert pad_to_aspect(Image.new("RGB", (1024, 2))).size == (1024, 128)
    assert pad_to_aspect(Image.new("L", (3, 700))).size == (88, 700)
    square = Image.new("RGB", (40, 30))
    assert pad_to_aspect(square) is square


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "llava", "gemma3", "paligemma", "idefics3",
                                    "llava_onevision"])
def test_presizing_gives_the_processors_own_pixels(family, family_dir):
    """The adapter's one-off resize per image leaves the processor's output unchanged, pixel for pixel."""
    processor = load_processor(family_dir(family))
    adapter = FamilyAdapter.for_processor(processor)
    rng = np.random.default_rng(0)
    for w, h in [(384, 384), (5, 3), (1024, 128), (77, 333), (16, 16)]:
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        raw = processor.image_processor(images=[image], return_tensors="pt")
        presized = processor.image_processor(images=[adapter.prepare(image)], return_tensors="pt")
        if max(w, h) <= 8 * min(w, h):  # slivers are padded first, by design
            assert torch.equal(raw["pixel_values"], presized["pixel_values"]), (w, h)
