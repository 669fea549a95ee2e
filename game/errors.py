"""Typed game errors. The core raises these; adapters (HTTP, bot) map them to
their own vocabulary, so game/ never imports a web framework."""
from __future__ import annotations


class GameError(Exception):
    """Base class: `code` is a stable machine-readable string, the message is safe to show."""

    code = "game_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Invalid(GameError):
    """The input is malformed (empty, too long, control characters, wrong choice). Maps to 400."""

    code = "invalid"


class SameAsAnswer(Invalid):
    """A correction that says what the judged answer already said teaches nothing. Maps to 400."""

    code = "correction_same_as_answer"


class NotFound(GameError):
    """Unknown id — or an id that belongs to another player, so existence never leaks. Maps to 404."""

    code = "not_found"


class Conflict(GameError):
    """The request is well-formed but not allowed in the current state (already judged, finished...). Maps to 409."""

    code = "conflict"


class Expired(Conflict):
    """The image's deadline passed before the request arrived; the session moved on. Maps to 409."""

    code = "expired"


class Unavailable(GameError):
    """The game cannot run right now (e.g. the image pools are too small). Maps to 503."""

    code = "unavailable"
