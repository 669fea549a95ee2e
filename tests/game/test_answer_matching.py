"""The answer matcher (game/answer_matching.py): a table of model answers against VQA-style acceptable answers."""
from __future__ import annotations

import pytest

from game.answer_matching import answer_matches, normalize, numbers, polarity

CASES = [
    # (model answer, acceptable answers, expected)
    ("2", ["2"], True),
    ("Two.", ["2"], True),
    ("There are 2 dogs.", ["2", "two"], True),
    ("There are two dogs in the picture", ["2"], True),
    ("I can see 3 dogs.", ["2", "two"], False),
    ("There are 2 dogs and 3 cats.", ["2"], False),          # two numbers named: ambiguous
    ("There are no dogs.", ["0"], True),
    ("None.", ["0", "zero"], True),
    ("Zero", ["none"], True),
    ("One.", ["1"], True),
    ("There is only one cat.", ["1"], True),
    ("The red one.", ["1"], False),                          # "one" as a pronoun, not a count
    ("Yes", ["yes"], True),
    ("Yes, there is a red car.", ["yes"], True),
    ("Yeah, it is.", ["yes"], True),
    ("No, there isn't.", ["no"], True),
    ("No, there isn't.", ["yes"], False),
    ("There isn't any car.", ["no"], True),
    ("There is no car", ["yes"], False),
    ("It's not a dog.", ["no"], True),
    ("Nope", ["no"], True),
    ("There is a red car.", ["yes"], False),                # takes no side: not counted as yes
    ("Red", ["red"], True),
    ("The car is red.", ["red"], True),
    ("The car is not red.", ["red"], False),
    ("It is dark red", ["red", "maroon"], True),
    ("Blue.", ["red", "maroon"], False),
    ("A cat.", ["cat"], True),
    ("The animal is a cat sitting on a chair", ["cat"], True),
    ("catalogue", ["cat"], False),                           # whole words only
    ("In the left corner", ["left"], True),
    ("On the right.", ["left"], False),
    ("A cup of coffee", ["coffee", "cup"], True),
    ("a coffee cup", ["coffee cup"], True),
    ("", ["yes"], False),
    ("...", ["no"], False),
    ("Astronaut!", ["an astronaut"], True),
    ("ASTRONAUT", ["astronaut"], True),
    ("It is 12.", ["twelve"], True),
    ("There are a dozen eggs", ["12"], True),
    ("I count twenty-four coins.", ["24"], True),
    ("24", ["twenty-four"], True),
    ("twenty coins", ["24"], False),
]


@pytest.mark.parametrize("answer,acceptable,expected", CASES)
def test_answer_matching_table(answer: str, acceptable: list[str], expected: bool):
    assert answer_matches(answer, acceptable) is expected


def test_building_blocks():
    assert normalize("The Two DOGS!") == "2 dogs"
    assert normalize("isn't") == "is not"
    assert polarity("Sure, why not") == "yes" and polarity("Not really") == "no" and polarity("A dog") is None
    assert numbers("2 or three") == {2.0, 3.0} and numbers("no cats") == {0.0} and numbers("a cat") == set()
    assert answer_matches("anything", []) is False
