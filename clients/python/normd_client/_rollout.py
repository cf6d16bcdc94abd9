"""Sticky rollout buckets. Pure functions: no I/O, no clock, no randomness
except for the keyless case.

The hash is FNV-1a 32-bit over the key's UTF-8 bytes, mod 100, the same split
every normd client computes, so one order lands on the same path whichever
service (and language) handles it:
    h = 0x811c9dc5; for each byte b: h = (h ^ b) * 0x01000193 mod 2**32
"""
from __future__ import annotations

import math
import random
from typing import Optional, Union

Key = Union[str, bytes, int]

_OFFSET = 0x811C9DC5
_PRIME = 0x01000193


def fnv1a32(data: Union[str, bytes]) -> int:
    """Unsigned 32-bit FNV-1a of `data` (a str is hashed as its UTF-8 bytes)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = _OFFSET
    for b in data:
        h = ((h ^ b) * _PRIME) & 0xFFFFFFFF
    return h


def bucket_of(key: Optional[Key]) -> int:
    """Bucket 0..99 of `key`; without a key a random one (not sticky, but the
    percentages still hold on average)."""
    if key is None:
        return random.randrange(100)
    if isinstance(key, (bytes, bytearray)):
        return fnv1a32(bytes(key)) % 100
    return fnv1a32(str(key)) % 100


def clamp_percent(value: object) -> int:
    """A percentage from outside (the flags document) as an integer 0..100;
    anything that is not a finite number reads 0, so garbage never routes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return max(0, min(100, math.floor(value)))
