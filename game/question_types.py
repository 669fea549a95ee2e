"""The core's view of the one question classifier (models/question_types.py): the coarse type
that answers store and that evaluation strata (SPEC §2) and dataset cards (§3.1) count.

Kept as the core's import path so the core names the concept without knowing the model
package's layout; the rules live in models/, which may not import the core (SPEC §4)."""
from __future__ import annotations

from models.question_types import COARSE_TYPES as QUESTION_TYPES
from models.question_types import classify_question

__all__ = ["QUESTION_TYPES", "classify_question"]
