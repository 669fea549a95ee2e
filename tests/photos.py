"""Real photographs for tests: scikit-image ships them inside its wheel (skimage/data/*.png|jpg;
nothing is downloaded — its pooch registry is only for the larger optional images), and
data/photos/skimage.jsonl holds our VQA-style annotations for 14 of them."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANNOTATIONS = REPO / "data" / "photos" / "skimage.jsonl"


def skimage_data_dir() -> Path:
    """The folder of scikit-image's bundled images, found without importing the package."""
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.origin, "scikit-image is a test dependency: pip install -e '.[test]'"
    return Path(spec.origin).parent / "data"


def annotated_names() -> list[str]:
    return [json.loads(line)["file"] for line in ANNOTATIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
