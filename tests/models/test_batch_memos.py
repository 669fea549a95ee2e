"""The batch path's shortcuts (per-image memo of the image processor, cached image features, position
ids computed once per batch) must give the model exactly what the plain processor and `generate` give
it, for every family, for images seen before and images not seen yet."""
from __future__ import annotations

import asyncio

import pytest
import torch
from PIL import Image

from lab.tiny_families import FAMILIES
from models.image_memo import MemoImageProcessor, collate
from models.loader import load_model
from tests.models.test_families import QUESTIONS, mixed_images

ORDERS = (list(range(0, 16, 2)), list(range(16)), list(range(15, -1, -1)))  # misses; hits and misses; all hits


@pytest.fixture(scope="module")
def loaded(family_dir):
    models: dict[str, object] = {}

    def get(family: str):
        if family not in models:
            models[family] = load_model(str(family_dir(family)), max_batch=16, timeout_s=120)
        return models[family]

    yield get
    for m in models.values():
        asyncio.run(m.aclose())


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "llava"])  # LLaVA-1.5 takes models.fast_inputs
def test_memoised_image_processor_gives_the_processors_own_batch(family, loaded):
    model = loaded(family)
    assert model.family.memo is not None, "every family's image processor concatenates per image"
    model.family.memo.image_processor.memo.clear()
    images = [model._image(b) for b in mixed_images()]
    prompts = [model._prompt(QUESTIONS[i % 4]) for i in range(16)]
    for order in ORDERS:
        imgs, texts = [[images[i]] for i in order], [prompts[i] for i in order]
        want = model.processor(images=imgs, text=texts, padding=True, return_tensors="pt")
        got = model.family.memo(images=imgs, text=texts, padding=True, return_tensors="pt")
        assert set(got) == set(want)
        for key in want:
            assert _equal(got[key], want[key]), (family, key, order)
    assert len(model.family.memo.image_processor.memo) == 16


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_batch_path_gives_plain_generates_answers_scores_and_alternatives(family, loaded):
    model = loaded(family)
    assert model._features_ok, "the load-time probe should accept cached features for every built family"
    images = [model._image(b) for b in mixed_images()]
    questions = [QUESTIONS[i % 4] for i in range(16)]
    memo, model.family.memo = model.family.memo, None
    try:  # the plain processor, pixels into generate, generate's own position ids
        plain = model._inputs(images, questions)
        want, want_scores = model._generate_with_first_scores(plain)
        want_alt = model.generate_alternatives(images, questions, want, inputs=plain)
    finally:
        model.family.memo = memo
    model._features.clear()
    for order in ORDERS:
        imgs, qs = [images[i] for i in order], [questions[i] for i in order]
        inputs = model._with_positions(model._with_image_features(imgs, model._inputs(imgs, qs)))
        assert "mm_encoder_outputs" in inputs and not any(k.startswith("pixel_") for k in inputs)
        got, scores = model._generate_with_first_scores(inputs)
        assert got == [want[i] for i in order], (family, order)
        assert torch.allclose(scores, want_scores[order], atol=1e-5), (family, order)
        alt = model.generate_alternatives(imgs, qs, got, inputs=inputs)
        assert alt == [want_alt[i] for i in order], (family, order)
    assert len(model._features) == 16


def test_collate_pads_every_dimension_after_the_first_with_zeros():
    a, b = torch.ones(1, 2, 3), torch.full((1, 3, 1), 2.0)
    out = collate([{"x": a, "rows": [[1]]}, {"x": b, "rows": [[2]]}])
    assert out["rows"] == [[1], [2]]
    assert out["x"].shape == (2, 3, 3)
    assert torch.equal(out["x"][0, :2], a[0]) and out["x"][0, 2].abs().sum() == 0
    assert torch.equal(out["x"][1, :, :1], b[0]) and out["x"][1, :, 1:].abs().sum() == 0
    with pytest.raises(ValueError):
        collate([{"x": torch.tensor(1.0)}, {"x": torch.tensor(2.0)}])  # a scalar per image: no batch rule
    with pytest.raises(ValueError):
        collate([{"x": "a"}, {"x": "b"}])


def test_the_memo_leaves_several_images_per_sample_to_the_real_image_processor(loaded):
    model = loaded("qwen2_vl")
    real = model.processor.image_processor
    memo = MemoImageProcessor(real)
    images = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    want = real(images=[images[:2], images[2:]], return_tensors="pt")
    got = memo(images=[images[:2], images[2:]], return_tensors="pt")
    assert len(memo.memo) == 0 and all(torch.equal(want[k], got[k]) for k in want)
    got = memo(images=[[im] for im in images], return_tensors="pt")  # one per sample: memoised
    assert len(memo.memo) == 3 and all(torch.equal(want[k], got[k]) for k in want)
    assert memo.last(images[1]) is not None and memo.last(Image.new("RGB", (4, 4))) is None
