"""The journal that makes measuring the reliable pool resumable.

Why: measuring is a pass of the model over every image with ground truth (about a
minute per 1,000 images on 2 CPU cores, hours for a large pool or a remote
model); an interruption should cost the images in flight, not the whole pass.
Each measured accuracy is appended as it arrives; a rerun with the same model
(its id carries a hash of the weights), questions and seed skips what is already
in the journal. The pool itself is still replaced in one database transaction at
the end, so a live game never draws from a half-measured pool, and the journal
is deleted once that transaction has committed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any

from game.db import sqlite_file


def default_journal_path(database_url: str) -> Path:
    """Next to a SQLite file; in the working directory (named after the URL) for a server database."""
    if (database := sqlite_file(database_url)) is not None:
        return Path(f"{database}.reliability.jsonl")
    return Path(f".gap-reliability-{hashlib.sha256(database_url.encode()).hexdigest()[:10]}.jsonl")


class MeasureJournal:
    """Append-only JSON Lines: a header with the measurement's settings, then {"image", "accuracy"}."""

    def __init__(self, path: Path, header: dict[str, Any], done: dict[int, float], note: str | None):
        self.path = path
        self.done = done      # image id -> accuracy measured by an earlier, interrupted run
        self.note = note      # what happened to an existing journal, for the log
        self._fh: IO[str] | None = None
        self._header = header

    @classmethod
    def open(cls, path: Path, header: dict[str, Any]) -> "MeasureJournal":
        """Resume from `path` when its header matches `header`; otherwise start a new journal."""
        path = Path(path)
        done: dict[int, float] = {}
        note = None
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            try:
                same = bool(lines) and json.loads(lines[0]) == header
            except ValueError:
                same = False
            if same:
                for line in lines[1:]:
                    try:
                        row = json.loads(line)
                        done[int(row["image"])] = float(row["accuracy"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut short by the interruption
                note = f"resuming: {len(done)} images already measured ({path})"
            else:
                note = f"{path} belongs to another measurement (model, questions or seed differ); starting over"
        journal = cls(path, header, done, note)
        journal._start()
        return journal

    def _start(self) -> None:
        self._fh = open(self.path, "w", encoding="utf-8")
        self._fh.write(json.dumps(self._header) + "\n")
        for image_id, accuracy in self.done.items():
            self._fh.write(json.dumps({"image": image_id, "accuracy": accuracy}) + "\n")
        self._fh.flush()

    def record(self, image_id: int, accuracy: float) -> None:
        assert self._fh is not None
        self._fh.write(json.dumps({"image": image_id, "accuracy": accuracy}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def finish(self) -> None:
        """The pool is stored: the journal has nothing left to resume."""
        self.close()
        self.path.unlink(missing_ok=True)
