"""Admin-edited tables read at most once per task of the agent loop, and kept per process.

Inside read_once() (one task) the first named read checks the config token (one
short query; agentops.runtime.config_cache) and takes the process's generation for
it: a table this process already read under the same token costs nothing, and a
change (in the admin or by any other write) applies from the next task on. Within a
task every read of a name returns the same value, whatever is written meanwhile.
Outside read_once() every call reads the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from agentops.runtime.config_cache import Generation, config_generation, config_token_read

_UNREAD = object()


class _Task:
    __slots__ = ("token", "generation")

    def __init__(self, token: object) -> None:
        self.token = token
        self.generation: Generation | None = None


_task: ContextVar[_Task | None] = ContextVar("read_once", default=None)


@contextmanager
def read_once(*, config_token: object = _UNREAD) -> Iterator[None]:
    """One task. `config_token`: the token, if the caller read it already (else read at
    the first named read; None means there is no token and nothing is kept).

    Inside another read_once() it joins that task (the Celery task wraps run_advance
    and what follows the run's end, with one token read for both), handing it the
    token if that task has not read one yet.
    """
    outer = _task.get()
    if outer is not None:
        if outer.token is _UNREAD and outer.generation is None:
            outer.token = config_token
        yield
        return
    token = _task.set(_Task(config_token))
    try:
        yield
    finally:
        _task.reset(token)


def once[T](name: str, load: Callable[[], T]) -> T:
    """`load()`'s result, read once within read_once() and every time outside it."""
    task = _task.get()
    if task is None:
        return load()
    if task.generation is None:
        token = config_token_read() if task.token is _UNREAD else task.token
        task.generation = config_generation(token if isinstance(token, str) else None)
    return task.generation.get(name, load)
