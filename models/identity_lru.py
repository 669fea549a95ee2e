"""A small LRU memo keyed by object identity, on cachetools' LRUCache (the project's one LRU).

Why identity: the backend keeps one decoded image object per distinct picture, so
"the same image" is "the same object" — cheaper than hashing pixels again. The
memo holds the key object itself, so its id cannot be reused by another object
while the entry lives.
"""
from __future__ import annotations

from typing import Any, Generic, TypeVar

from cachetools import LRUCache

V = TypeVar("V")


class IdentityLRU(Generic[V]):
    def __init__(self, size: int):
        self._entries: LRUCache[int, tuple[Any, V]] = LRUCache(size)

    @property
    def size(self) -> int:
        return int(self._entries.maxsize)

    @size.setter
    def size(self, size: int) -> None:
        """A new bound; the memo starts empty (a resize is a configuration change, not a hot path)."""
        self._entries = LRUCache(size)

    def get(self, obj: Any) -> V | None:
        hit = self._entries.get(id(obj))
        if hit is None or hit[0] is not obj:
            return None
        return hit[1]

    def put(self, obj: Any, value: V) -> None:
        self._entries[id(obj)] = (obj, value)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
