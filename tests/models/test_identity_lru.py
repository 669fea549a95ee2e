"""The identity-keyed LRU behind the serving caches."""
from __future__ import annotations

import gc

from models.identity_lru import IdentityLRU


class Box:
    def __init__(self, v: int):
        self.v = v

    def __eq__(self, other: object) -> bool:  # equal is not the same object
        return isinstance(other, Box) and other.v == self.v

    __hash__ = object.__hash__


def test_hits_are_by_identity_and_the_oldest_is_evicted():
    lru: IdentityLRU[str] = IdentityLRU(2)
    a, b, c = Box(1), Box(2), Box(3)
    lru.put(a, "a")
    lru.put(b, "b")
    assert lru.get(a) == "a"          # a is now the newest
    assert lru.get(Box(1)) is None     # an equal object is not the cached one
    lru.put(c, "c")                    # evicts b, the least recently used
    assert lru.get(b) is None and lru.get(a) == "a" and lru.get(c) == "c" and len(lru) == 2


def test_a_cached_object_keeps_its_id_from_being_reused():
    lru: IdentityLRU[int] = IdentityLRU(4)
    for i in range(4):
        lru.put(Box(i), i)             # no other reference: only the memo holds them
    gc.collect()
    fresh = [Box(10 + i) for i in range(50)]
    assert all(lru.get(f) is None for f in fresh)


def test_a_new_size_bounds_the_memo():
    lru: IdentityLRU[int] = IdentityLRU(4)
    keep = [Box(i) for i in range(4)]
    for i, b in enumerate(keep):
        lru.put(b, i)
    lru.size = 2
    for i, b in enumerate(keep):
        lru.put(b, i)
    assert len(lru) == 2 and lru.size == 2 and lru.get(keep[0]) is None and lru.get(keep[3]) == 3


def test_a_byte_budget_bounds_the_tensors_as_well_as_the_count():
    import torch

    lru: IdentityLRU[torch.Tensor] = IdentityLRU(4, max_bytes=4000)  # each entry counts >= 1000 bytes
    keep = [Box(i) for i in range(6)]
    for b in keep[:4]:
        lru.put(b, torch.zeros(10))              # 40 bytes: the count bounds
    assert len(lru) == 4
    lru.put(keep[4], torch.zeros(500))           # 2000 bytes: two small ones make room
    assert len(lru) == 3 and lru.get(keep[4]) is not None and lru.get(keep[0]) is None
    lru.put(keep[5], {"x": torch.zeros(2000)})   # 8000 bytes: over the whole budget, not memoised
    assert lru.get(keep[5]) is None and len(lru) == 3
    lru.put(keep[4], torch.zeros(2000))          # a replaced entry that no longer fits is dropped
    assert lru.get(keep[4]) is None
