"""A small LRU memo keyed by object identity.

Why identity: the backend keeps one decoded image object per distinct picture, so
"the same image" is "the same object" — cheaper than hashing pixels again. The
memo holds the key object itself, so its id cannot be reused by another object
while the entry lives.
"""
from __future__ import annotations

import collections
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class IdentityLRU(Generic[V]):
    def __init__(self, size: int):
        self.size = size
        self._entries: collections.OrderedDict[int, tuple[Any, V]] = collections.OrderedDict()

    def get(self, obj: Any) -> V | None:
        hit = self._entries.get(id(obj))
        if hit is None or hit[0] is not obj:
            return None
        self._entries.move_to_end(id(obj))
        return hit[1]

    def put(self, obj: Any, value: V) -> None:
        self._entries[id(obj)] = (obj, value)
        self._entries.move_to_end(id(obj))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
