"""Admin-edited tables read at most once per task of the agent loop, not per call.

A price or risk policy changed in the admin applies from the next task on. Nothing
is kept across tasks, so no process holds an old table for longer than one task;
outside read_once() every call reads the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Inside read_once(): the tables read so far in the block, by name.
_memo: ContextVar[dict | None] = ContextVar("read_once", default=None)


@contextmanager
def read_once() -> Iterator[None]:
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def once[T](name: str, load: Callable[[], T]) -> T:
    """`load()`'s result, read once within read_once() and every time outside it."""
    memo = _memo.get()
    if memo is None:
        return load()
    if name not in memo:
        memo[name] = load()
    return memo[name]
