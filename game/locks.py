"""Per-key asyncio locks that disappear when unused, so the same player's
concurrent requests run one after another inside a process while different
players never wait for each other. (Across processes the database's unique
constraints keep the game correct.)"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Hashable


class KeyedLocks:
    def __init__(self) -> None:
        self._entries: dict[Hashable, list] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
