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


def test_cached_image_features_give_the_same_answers_and_scores(embedded):
    """The batch path hands generate precomputed image features (cached per image); answers and
    first-step scores must equal plain generate from pixels, for cache misses and hits alike."""
    images = [embedded._image(render_png(scene_from_seed("heldout", 40 + i, kind), 384))
              for i, kind in enumerate(["simple", "complex", "complex", "simple", "complex"])]
    questions = ["How many objects are there?", "What color is the circle?", "Is there a blue star?",
                 "How many squares are there?", "Is the star on the left or the right?"]
    plain = embedded._inputs(images, questions)
    want_answers, want_scores = embedded._generate_with_first_scores(plain)
    embedded._features.clear()
    for order in ([0, 2], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]):  # misses, a mix of hits and misses, all hits
        imgs, qs = [images[i] for i in order], [questions[i] for i in order]
        inputs = embedded._with_image_features(imgs, embedded._inputs(imgs, qs))
        assert "pixel_values" not in inputs and "mm_encoder_outputs" in inputs
        answers, scores = embedded._generate_with_first_scores(inputs)
        assert answers == [want_answers[i] for i in order]
        assert torch.allclose(scores, want_scores[order], atol=1e-5)
    assert len(embedded._features) == len(images)


def test_feature_cache_smaller_than_a_batch_evicts_safely(embedded):
    """A batch whose misses push its own hits out of a full cache (the experiment's 1,000-image pool
    met this with the real 256-image cache: KeyError, "the model failed to answer")."""
    images = [embedded._image(render_png(scene_from_seed("heldout", 60 + i, "complex"), 384)) for i in range(6)]
    questions = ["How many objects are there?"] * 6
    want, _ = embedded._generate_with_first_scores(embedded._inputs(images, questions))
    size, embedded._features.size = embedded._features.size, 3
    try:
        embedded._features.clear()
        embedded._with_image_features(images[:3], embedded._inputs(images[:3], questions[:3]))  # cache full
        got, _ = embedded._generate_with_first_scores(
            embedded._with_image_features(images, embedded._inputs(images, questions)))  # 3 hits, 3 misses
        assert got == want and len(embedded._features) == 3
    finally:
        embedded._features.size = size
        embedded._features.clear()
