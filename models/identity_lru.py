"""A small LRU memo keyed by object identity, on cachetools' LRUCache (the project's one LRU).

Why identity: the backend keeps one decoded image object per distinct picture, so
"the same image" is "the same object" — cheaper than hashing pixels again. The
memo holds the key object itself, so its id cannot be reused by another object
while the entry lives.

Why a byte budget as well as a count: what the serving path memoises per image
(processor tensors, vision features) is kilobytes for the tiny models and tens
of megabytes for a real one (SmolVLM's 13 crops of 512 px are 40 MB of
pixels), so 256 entries could be gigabytes. With `max_bytes`, every entry
counts as at least `max_bytes / size`, which bounds both the number of
entries and the tensors' total size; one value over the whole budget is simply
not memoised.
"""
from __future__ import annotations

from typing import Any, Generic, TypeVar

import numpy as np
import torch
from cachetools import LRUCache

V = TypeVar("V")


def nbytes(value: Any) -> int:
    """Bytes of the tensors and arrays in `value` (nested in dicts, lists and tuples)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


class IdentityLRU(Generic[V]):
    def __init__(self, size: int, max_bytes: int | None = None):
        self.max_bytes = max_bytes
        self.size = size

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, size: int) -> None:
        """A new bound; the memo starts empty (a resize is a configuration change, not a hot path)."""
        self._size = size
        if self.max_bytes is None:
            self._entries: LRUCache[int, tuple[Any, V]] = LRUCache(size)
        else:
            unit = max(1, self.max_bytes // size)
            self._entries = LRUCache(unit * size, getsizeof=lambda entry: max(unit, nbytes(entry[1])))

    def get(self, obj: Any) -> V | None:
        hit = self._entries.get(id(obj))
        if hit is None or hit[0] is not obj:
            return None
        return hit[1]

    def put(self, obj: Any, value: V) -> None:
        try:
            self._entries[id(obj)] = (obj, value)
        except ValueError:  # larger than the whole byte budget (cachetools refuses it): not memoised
            self._entries.pop(id(obj), None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
