"""The shipped photo annotations (data/photos/skimage.jsonl) describe photographs that
scikit-image's wheel itself contains — listed in the installed distribution's RECORD, so
nothing is fetched at run time — and every line is valid."""
from __future__ import annotations

from importlib.metadata import files

from game.annotations import parse_annotations
from tests.photos import ANNOTATIONS, annotated_names, skimage_data_dir


def test_annotated_photos_ship_inside_the_scikit_image_wheel():
    shipped = {str(f) for f in files("scikit-image") or []}
    names = annotated_names()
    assert len(names) == len(set(names)) >= 10
    for name in names:
        assert f"skimage/data/{name}" in shipped, name
        assert (skimage_data_dir() / name).stat().st_size > 10_000
    notes = parse_annotations(ANNOTATIONS.read_text(encoding="utf-8"), set(names))
    assert notes.problems == [] and set(notes.by_file) == set(names)
    assert sum(len(qa) for qa in notes.by_file.values()) >= 3 * len(names)
