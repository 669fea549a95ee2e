"""One answer style (SPEC §1.2, "the split must not leak"): a tainted answer has the honest
answer's form. A model that answers in sentences gets its answer replaced inside its own
sentence, so length, words, punctuation and form cannot tell tainted from honest; a deployer
may instead ask for short answers (GAP_ANSWER_STYLE=short)."""
from __future__ import annotations

import asyncio
import random
import re

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from models.loader import load_model
from models.scenes import normalize_answer, render_png, sample_question, scene_from_seed
from models.taint import (SHORT_ANSWER_INSTRUCTION, acceptable_taint, answer_of, answer_span, in_form, says,
                          taint_candidates)
from settings import Settings
from tests.models.sentence_model import build_sentence_model


def test_the_answer_inside_a_sentence():
    q = "How many circles are there?"
    assert answer_of(q, "There are three circles.") == "three"
    assert answer_of(q, "There is one circle.") == "one"
    assert answer_of("What colour is the red one?", "The red one is blue.") == "red"
    assert answer_of("What colour is the square?", "The blue one is a square.") == "blue"  # "one": a pronoun
    assert answer_span(q, "I am not sure what you mean.") is None
    assert in_form("5", "three") == "five" and in_form("5", "3") == "5" and in_form("no", "Yes") == "No"


def test_candidates_keep_the_honest_form():
    sentences, verbatim = taint_candidates("How many circles are there?", "There are three circles.")
    assert verbatim and "There are five circles." in sentences and len(sentences) == 10
    assert all(s.startswith("There are ") and s.endswith(" circles.") for s in sentences if "one" not in s)
    assert taint_candidates("Is there a red star?", "Yes, there is.")[0] == ["No, there is."]
    # a count that turns from one to many (or back) keeps the sentence grammatical
    assert "There are five circles." in taint_candidates("How many circles are there?", "There is one circle.")[0]
    assert "There is 1 circle." in taint_candidates("How many circles are there?", "There are 3 circles.")[0]
    bare, verbatim = taint_candidates("How many circles are there?", "3")
    assert not verbatim and "4" in bare and "3" not in bare
    # a long answer with no answer of the question's type: any alternative would look different
    assert taint_candidates("How many circles are there?", "The picture shows some shapes on a grid.") == ([], True)


def test_sentences_are_compared_by_their_answers():
    q = "How many circles are there?"
    assert acceptable_taint(q, "There are three circles.", "There are five circles.")
    assert not acceptable_taint(q, "There are three circles.", "There are 3 circles.")
    assert not acceptable_taint(q, "There are three circles.", "There are red circles.")
    assert not acceptable_taint(q, "There are three circles.", "I was told to say five circles.")


def test_answer_style_is_a_setting():
    assert Settings().answer_style == "free"
    assert Settings(answer_style="short").answer_style == "short"
    with pytest.raises(ValidationError):
        Settings(answer_style="haiku")


@pytest.fixture(scope="module")
def sentence_dir(family_dir, tmp_path_factory):
    return build_sentence_model(family_dir("idefics3"), tmp_path_factory.mktemp("sentence-model"))


def _questions(n: int) -> list[str]:
    """`n` different questions of the game's kinds (the model's answer is a function of the question)."""
    rng = random.Random(3)
    asked = (sample_question(scene_from_seed("pool", i, "complex"), rng).question for i in range(20 * n))
    return list(dict.fromkeys(asked))[:n]


async def _answer_all(model, image: bytes, questions: list[str], taint: list[bool]):
    out = []
    for k in range(0, len(questions), 64):
        out += await asyncio.gather(*(model.answer(image, q, t) for q, t in
                                      zip(questions[k:k + 64], taint[k:k + 64])))
    return out


def features(text: str) -> list[float]:
    """What a player could see at a glance: length, words, punctuation and the answer's form."""
    words = text.split()
    return [len(text), len(words), sum(not c.isalnum() and not c.isspace() for c in text), text.endswith("."),
            text[:1].isupper(), any(c.isdigit() for c in text), sum(c.isupper() for c in text),
            np.mean([len(w) for w in words]) if words else 0.0, "," in text]


def balanced_accuracy(texts: list[str], tainted: list[bool]) -> float:
    """The better of two cross-validated classifiers (logistic regression, a depth-4 tree)."""
    x, y = np.array([features(t) for t in texts], dtype=float), np.array(tainted)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = [cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), x, y,
                              cv=folds, scoring="balanced_accuracy").mean(),
              cross_val_score(DecisionTreeClassifier(max_depth=4, random_state=0), x, y, cv=folds,
                              scoring="balanced_accuracy").mean()]
    return max(scores)


async def test_tainted_sentences_cannot_be_told_from_honest_ones(sentence_dir):
    """1,000+ served answers of a model that answers in sentences, half of them asked tainted:
    a classifier on length, word count, punctuation and form does no better than chance."""
    model = load_model(str(sentence_dir), max_batch=16, max_wait_ms=5, timeout_s=300)
    try:
        questions = _questions(520)
        image = render_png(scene_from_seed("pool", 1, "simple"), 64)
        answers = await _answer_all(model, image, questions * 2, [False] * 520 + [True] * 520)
    finally:
        await model.aclose()
    served = [a.served for a in answers]
    tainted = [a.tainted for a in answers]
    assert len(served) >= 1000 and 400 <= sum(tainted) <= 520
    assert all(a.strategy == "decode" for a in answers if a.tainted)
    for q, a in zip(questions * 2, answers):
        if a.tainted:  # the same sentence around a different answer of the same type (and agreeing with it)
            span_h, span_t = answer_span(q, a.honest), answer_span(q, a.served)
            assert normalize_answer(a.served[span_t[0]:span_t[1]]) != normalize_answer(a.honest[span_h[0]:span_h[1]])
            words_h, words_t = a.honest.split(), a.served.split()
            assert len(words_h) == len(words_t) and sum(x != y for x, y in zip(words_h, words_t)) <= 3
    assert balanced_accuracy(served, tainted) <= 0.55
    # the same classifier on what a bare-word taint would have served tells the split at once
    bare = [answer_of(q, a.served) if a.tainted else a.served for q, a in zip(questions * 2, answers)]
    assert balanced_accuracy(bare, tainted) >= 0.9


async def test_short_answer_style_asks_for_a_word(sentence_dir):
    model = load_model(str(sentence_dir), max_batch=16, max_wait_ms=5, timeout_s=120, answer_style="short")
    try:
        questions = _questions(24)
        image = render_png(scene_from_seed("pool", 2, "simple"), 64)
        answers = await _answer_all(model, image, questions, [True] * 24)
    finally:
        await model.aclose()
    assert model._styled(questions[0]).endswith(SHORT_ANSWER_INSTRUCTION)
    typed = [a for q, a in zip(questions, answers) if answer_span(q, a.honest)]
    assert len(typed) >= 15
    for a in typed:  # a bare honest answer, and a bare tainted one
        assert len(re.findall(r"\w+", a.honest)) == 1, a
        assert a.tainted and len(re.findall(r"\w+", a.served)) == 1, a


async def test_reliability_reads_the_answer_inside_a_sentence(sentence_dir):
    """The reliable pool is measured against ground truth (SPEC §1.2): a sentence that gives the true
    answer counts as right. Scored here on the sentence model: the same count as scoring its answers' spans."""
    from models.scenes import measure_accuracy

    model = load_model(str(sentence_dir), max_batch=16, max_wait_ms=5, timeout_s=120)
    try:
        scene = scene_from_seed("pool", 5, "simple")
        image = render_png(scene, 64)
        accuracy = await measure_accuracy(model, image, scene, random.Random(1), n=40)
        rng = random.Random(1)
        qas = [sample_question(scene, rng, ["count", "color", "shape", "exists", "position"][i % 5]) for i in range(40)]
        honest = [(await model.answer(image, qa.question, False)).honest for qa in qas]
    finally:
        await model.aclose()
    right = sum(normalize_answer(answer_of(qa.question, h)) == normalize_answer(qa.answer) for qa, h in zip(qas, honest))
    assert right >= 4 and accuracy == right / 40  # its sentences are sometimes right, and counted when they are
    assert says("How many circles are there?", "I can see three circles in the image.", "3")
    assert not says("How many circles are there?", "I can see three circles in the image.", "4")
