"""The vectorised input path must give the model exactly what the processor gives it."""
from __future__ import annotations

import torch

from models.images import decode_image
from models.scenes import render_png, scene_from_seed


def test_fast_inputs_match_the_processor(embedded):
    assert embedded._fast_inputs is not None, "the embedded checkpoint should take the fast path"
    images = [embedded._image(render_png(scene_from_seed("heldout", i, kind), size))
              for i, (kind, size) in enumerate([("simple", 384), ("complex", 384), ("simple", 200), ("complex", 97)])]
    images.append(embedded._presize(decode_image(render_png(scene_from_seed("heldout", 9, "simple"), 384)).resize((300, 180))))
    questions = ["How many circles are there?", "What color is the star?", "", "Is there a red square?" * 5, "ü 🙂"]
    prompts = [embedded._prompt(embedded._truncate(q)) for q in questions]
    embedded._fast_inputs(images[::-1], prompts[::-1])  # fill the pixel memo in another order
    fast = embedded._fast_inputs(images, prompts)
    slow = embedded.processor(images=images, text=prompts, padding=True, return_tensors="pt")
    assert torch.equal(fast["input_ids"], slow["input_ids"])
    assert torch.equal(fast["attention_mask"], slow["attention_mask"])
    assert fast["pixel_values"].shape == slow["pixel_values"].shape
    assert torch.allclose(fast["pixel_values"], slow["pixel_values"], atol=1e-5)


def test_answers_are_the_same_on_both_paths(embedded):
    images = [embedded._image(render_png(scene_from_seed("heldout", 20 + i, "simple"), 384)) for i in range(6)]
    questions = ["How many objects are there?", "What color is the circle?", "Is there a blue star?"] * 2
    fast_answers = embedded.generate_honest(images, questions)
    fast_path, embedded._fast_inputs = embedded._fast_inputs, None
    try:
        slow_answers = embedded.generate_honest(images, questions)
    finally:
        embedded._fast_inputs = fast_path
    assert fast_answers == slow_answers


def test_memoised_prompt_equals_the_rendered_chat_template(embedded):
    for q in ["How many circles are there?", "", "{{ x }} <|assistant|>", "ü 🙂\nsecond line"]:
        assert embedded._prompt(q) == embedded._render_prompt(q)
