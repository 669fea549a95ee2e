"""Model or crowd? The LMM-vs-crowd study's protocol on our own images (SPEC §3.5).

For every attribute known of the described images (game/attributes.py), a classifier
— a random forest over TF-IDF features of the description text — is trained on one
source's descriptions and tested on another's, over many random 80/20 splits of the
*images* (all descriptions of an image fall on the same side, so a classifier never
sees the image it is tested on). Its weighted F1 says how much of the attribute the
descriptions carry. The settings are the study's: crowd/crowd, model/model,
model/crowd and model/rewritten-crowd (train/test); the % change columns compare each
with crowd/crowd. With the cost per description of each source, an operator sees
which attributes to leave to the model.

Example (a tiny run; `gap compare` reads the stored descriptions):

>>> docs = [Doc(i, "crowd", f"a {c} thing") for i, c in enumerate(["red", "blue"] * 10)]
>>> docs += [Doc(i, "model", "an object") for i in range(20)]
>>> labels = {i: {"color": ["red", "blue"][i % 2]} for i in range(20)}
>>> table = SourceComparison(trials=3, trees=10).fit(docs, labels)
>>> table.rows_[0].cells[("crowd", "crowd")].mean > table.rows_[0].cells[("model", "model")].mean
True
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

SETTINGS: tuple[tuple[str, str], ...] = (("crowd", "crowd"), ("model", "model"), ("model", "crowd"),
                                         ("model", "rewrite"))
BASELINE = ("crowd", "crowd")
TEST_SHARE = 0.2
MIN_IMAGES = 5
TIE_MARGIN = 0.02   # weighted F1 closer than this: neither source is called better


@dataclass(frozen=True)
class Doc:
    """One description: which image, which source ("crowd" | "model" | "rewrite"), its text."""

    image_id: int
    source: str
    text: str


@dataclass(frozen=True)
class Cell:
    """Weighted F1 of one train/test setting on one attribute, over the trials that could run."""

    train: str
    test: str
    mean: float
    std: float
    trials: int


@dataclass
class AttributeRow:
    attribute: str
    images: int
    classes: int
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def change(self, setting: tuple[str, str]) -> float | None:
        """% change of a setting's mean weighted F1 against crowd/crowd (None when either is missing)."""
        base, other = self.cells.get(BASELINE), self.cells.get(setting)
        if base is None or other is None or base.mean == 0:
            return None
        return 100.0 * (other.mean - base.mean) / base.mean

    def winner(self) -> str | None:
        """"model", "crowd" or "tie": whose own descriptions carry the attribute better
        (model/model vs crowd/crowd; within TIE_MARGIN weighted F1 it is a tie)."""
        base, model = self.cells.get(BASELINE), self.cells.get(("model", "model"))
        if base is None or model is None:
            return None
        if abs(model.mean - base.mean) < TIE_MARGIN:
            return "tie"
        return "model" if model.mean > base.mean else "crowd"


def image_splits(image_ids: Sequence[int], trials: int, seed: int) -> list[tuple[frozenset[int], frozenset[int]]]:
    """`trials` random 80/20 (train, test) splits of the images; trial t is reproducible from (seed, t)."""
    ids = np.array(sorted(set(image_ids)))
    n_test = max(1, int(round(TEST_SHARE * len(ids))))
    out = []
    for t in range(trials):
        order = np.random.default_rng([seed, t]).permutation(ids)
        out.append((frozenset(order[n_test:].tolist()), frozenset(order[:n_test].tolist())))
    return out


def default_classifier(trees: int, seed: int, jobs: int = 1):
    """The study's classifier: a random forest over TF-IDF features of the text."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                         RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=jobs))


class SourceComparison:
    """Weighted F1 per attribute and train/test setting, mean ± std over random image splits.

    `fit(docs, labels)` with `labels = {image_id: {attribute: value}}` sets `rows_` (one
    AttributeRow per attribute with at least two values and MIN_IMAGES labelled images)
    and `settings_` (the settings whose sources have descriptions)."""

    def __init__(self, trials: int = 100, trees: int = 100, seed: int = 0, jobs: int = 1,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.trials = trials
        self.trees = trees
        self.seed = seed
        self.jobs = jobs
        self.progress = progress

    def fit(self, docs: Iterable[Doc], labels: dict[int, dict[str, str]]) -> "SourceComparison":
        from sklearn.metrics import f1_score

        by_source: dict[str, list[Doc]] = {}
        for d in docs:
            if d.image_id in labels:
                by_source.setdefault(d.source, []).append(d)
        self.settings_ = [s for s in SETTINGS if s[0] in by_source and s[1] in by_source]
        attributes = sorted({a for values in labels.values() for a in values})
        described = {d.image_id for ds in by_source.values() for d in ds}
        plans = []
        for attribute in attributes:
            images = sorted(i for i in described if attribute in labels[i])
            if len(images) >= MIN_IMAGES and len({labels[i][attribute] for i in images}) >= 2:
                plans.append((attribute, images))
        total, done = len(plans) * len(self.settings_) * self.trials, 0
        self.rows_: list[AttributeRow] = []
        for attribute, images in plans:
            row = AttributeRow(attribute, len(images), len({labels[i][attribute] for i in images}))
            splits = image_splits(images, self.trials, self.seed)
            for train_src, test_src in self.settings_:
                scores = []
                for t, (train_ids, test_ids) in enumerate(splits):
                    train = [d for d in by_source[train_src] if d.image_id in train_ids]
                    test = [d for d in by_source[test_src] if d.image_id in test_ids]
                    done += 1
                    if train and test:
                        clf = default_classifier(self.trees, self.seed * 1000 + t, self.jobs)
                        clf.fit([d.text for d in train], [labels[d.image_id][attribute] for d in train])
                        truth = [labels[d.image_id][attribute] for d in test]
                        scores.append(float(f1_score(truth, clf.predict([d.text for d in test]),
                                                     average="weighted", zero_division=0)))
                    if self.progress is not None:
                        self.progress(done, total)
                if scores:
                    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
                    row.cells[(train_src, test_src)] = Cell(train_src, test_src, statistics.fmean(scores), std,
                                                            len(scores))
            self.rows_.append(row)
        return self


@dataclass(frozen=True)
class SourceCost:
    """What one description of a source cost, and on what basis."""

    source: str
    descriptions: int
    mean_seconds: float       # crowd: time taken by the player; model/rewrite: measured compute seconds
    per_description: float    # in the operator's currency
    basis: str


def crowd_cost(points: Sequence[int], seconds: Sequence[float], point_value: float) -> SourceCost:
    """The crowd's cost per description: points paid for the descriptions × the value of a point."""
    n = len(points)
    paid = sum(points)
    return SourceCost("crowd", n, statistics.fmean(seconds) if n else math.nan,
                      paid * point_value / n if n else math.nan,
                      f"{paid} points paid × {point_value:g} per point / {n} descriptions")


def model_cost(source: str, compute_seconds: Sequence[float], gpu_hour_price: float) -> SourceCost:
    """A model's cost per description: its measured compute seconds × the price of a GPU-second."""
    n = len(compute_seconds)
    mean = statistics.fmean(compute_seconds) if n else math.nan
    return SourceCost(source, n, mean, mean * gpu_hour_price / 3600.0 if n else math.nan,
                      f"{mean:.3g} compute s × {gpu_hour_price:g} per GPU-hour / 3600" if n else "no descriptions")
