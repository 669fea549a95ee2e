"""Scene styles (models/scenes/styles.py): withheld ways of drawing the same scene graph.

Plain must stay byte-identical to the pictures drawn before styles existed (the shipped
checkpoint, stored pools and committed benchmarks depend on them); a style must render
deterministically and must not change what the picture shows."""
from __future__ import annotations

import hashlib
import random

import pytest

from gap.cli import main
from models.evaluation import heldout_items, parse_slice, slice_name
from models.scenes import (STYLES, WITHHELD_STYLES, Scene, generate_scene, render, render_png, sample_question,
                           scene_from_seed)

# sha256 over 4 held-out simple and 4 complex scenes (128-px PNG + scene JSON), drawn by the renderer
# as it was before styles existed (main at fbb0cfe) with Pillow as pinned
PLAIN_GOLDEN = "e7dbc171e30db6cfa50ca4d7e5a839d45b61746c69ef7ebabff1a4682aecd7f9"


def test_plain_pictures_and_json_are_byte_identical_to_before_styles():
    h = hashlib.sha256()
    for complexity in ("simple", "complex"):
        for i in range(4):
            scene = scene_from_seed("heldout", i, complexity)
            assert scene.style == "plain" and '"style"' not in scene.to_json()
            h.update(render_png(scene, 128))
            h.update(scene.to_json().encode())
    assert h.hexdigest() == PLAIN_GOLDEN


@pytest.mark.parametrize("style", WITHHELD_STYLES)
def test_a_style_renders_deterministically_and_differs_from_plain(style):
    scene = scene_from_seed("pool", 3, "simple", style)
    again = Scene.from_json(scene.to_json())
    assert again == scene and again.style == style
    assert render_png(again, 128) == render_png(scene, 128)
    assert render_png(scene, 128) != render_png(scene.styled("plain"), 128)
    # same objects as the plain scene of that index: same questions, same true answers
    plain = scene_from_seed("pool", 3, "simple")
    assert scene.objects == plain.objects and scene.fingerprint() == plain.fingerprint()
    qa = sample_question(scene, random.Random(1), "count_all")
    assert qa == sample_question(plain, random.Random(1), "count_all")


@pytest.mark.parametrize("style", WITHHELD_STYLES)
def test_a_style_keeps_each_object_where_and_what_it_was(style):
    rng = random.Random(11)
    scene = next(s for s in (generate_scene(rng, "simple", seed=i) for i in range(200))
                 if any(o.size == "big" and not o.text for o in s.objects))
    plain, styled = render(scene, 192), render(scene.styled(style), 192)
    for o in scene.objects:
        if o.size == "big" and not o.text:
            centre = (int(o.x * 192), int(o.y * 192))
            assert styled.getpixel(centre) == plain.getpixel(centre)
    corners = [(2, 2), (189, 2), (2, 189), (189, 189)]
    assert any(styled.getpixel(c) != plain.getpixel(c) for c in corners)


def test_unknown_style_is_refused_everywhere():
    scene = scene_from_seed("pool", 0, "simple")
    with pytest.raises(ValueError, match="unknown scene style 'neon'"):
        scene.styled("neon")
    with pytest.raises(ValueError, match="unknown scene style"):
        Scene.from_json(scene.to_json()[:-1] + ', "style": "neon"}')
    with pytest.raises(ValueError):
        parse_slice("simple:neon")
    assert STYLES[0] == "plain" and "plain" not in WITHHELD_STYLES


def test_a_styled_heldout_slice_asks_the_plain_slice_questions():
    name = slice_name("simple", "dark")
    assert name == "simple:dark" and parse_slice(name) == ("simple", "dark") and slice_name("simple") == "simple"
    styled, plain = heldout_items(name, "color", 5), heldout_items("simple", "color", 5)
    assert styled == plain


def test_model_eval_refuses_an_unknown_style(capsys):
    assert main(["model-eval", "--styles", "dark,neon", "--n", "1"]) == 2
    assert "unknown scene style 'neon'" in capsys.readouterr().err
