"""Procedural scenes with ground truth (transitional: the module is being split)."""
from models.scenes.questions import *  # noqa: F401,F403
from models.scenes.questions import (_COLOR, _COUNT_ALL, _COUNT_COLOR, _COUNT_SHAPE, _EXISTS_COLOR,  # noqa: F401
                                     _EXISTS_COLOR_SHAPE, _EXISTS_SHAPE, _POSITION_LR, _POSITION_TB,
                                     _RELATION_LR, _RELATION_TB, _SHAPE, _TEXT)
