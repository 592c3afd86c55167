"""Ids that are unique and roughly ordered by time, so index inserts stay together.

A random key sends each insert to a random leaf page of its unique index. Once the
index outgrows memory's recent pages, and after every checkpoint, nearly each
insert then writes a full-page image of the leaf it lands on: on a bench database
with 200k spans that was 40 KB of WAL per ticket for span ids alone (issue 8).
Keys that start with the time land on the few pages holding the present.
"""

from __future__ import annotations

import os
import time
import uuid

# Span ids: 16 bits of Unix seconds (wrapping every 18.2 hours), then 48 random bits.
# Uniqueness: a new id can only collide with an id made in the same second of another
# lap, so with spans kept longer than one lap the chance of a collision is that of 64
# random bits (live ids / 2**64), no worse than secrets.token_hex(8). Only a retention
# shorter than a lap would make it worse, by the factor lap / retention.
SPAN_TIME_BITS = 16
SPAN_RANDOM_BITS = 64 - SPAN_TIME_BITS


def span_id() -> str:
    """A W3C span id: 16 lowercase hex digits, never all zeros."""
    lap_second = int(time.time()) % (1 << SPAN_TIME_BITS)
    while True:
        value = lap_second << SPAN_RANDOM_BITS | int.from_bytes(os.urandom(SPAN_RANDOM_BITS // 8))
        if value:
            return f"{value:016x}"


def trace_id() -> str:
    """A W3C trace id: 32 lowercase hex digits.

    Its first half is the run's root span id (the runtime's root_span_id), so it is
    made like a span id; the second half is random.
    """
    return span_id() + os.urandom(8).hex()


def uuid7() -> uuid.UUID:
    """A version 7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    For codes in URLs and keys made from them: unique like uuid4 (74 random bits per
    millisecond), and ordered by creation, so their unique indexes are appended to.
    """
    value = (time.time_ns() // 1_000_000) % (1 << 48) << 80 | int.from_bytes(os.urandom(10))
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant RFC 9562
    return uuid.UUID(int=value)
