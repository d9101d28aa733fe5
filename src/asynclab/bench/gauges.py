"""Clock-free evidence: how many handlers were inside a block at once, and how busy the thread pool is."""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import anyio.to_thread

P = ParamSpec("P")
R = TypeVar("R")

#: Set by :func:`asynclab.bench.load.load` in each request's task, so a handler span can be matched
#: to the request that caused it. With an in-process client the app runs in that same task.
request_index: ContextVar[int | None] = ContextVar("asynclab_request_index", default=None)


@dataclass(frozen=True)
class Span:
    """One pass through a measured block: which request, and when (``time.perf_counter`` seconds)."""

    request: int | None
    start: float
    end: float


class InFlight:
    """Counts how many callers are inside a block at the same time, and keeps the peak.

    Use ``with gauge.inside():`` in a handler body, or decorate the handler with
    ``@gauge.track`` (works for ``def`` and ``async def``). Safe from threads and from tasks.
    """

    def __init__(self, name: str = "handler") -> None:
        self.name = name
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.entered = 0
        self.spans: list[Span] = []

    def reset(self) -> None:
        with self._lock:
            self.now = self.peak = self.entered = 0
            self.spans = []

    @contextmanager
    def inside(self) -> Iterator[None]:
        index = request_index.get()
        with self._lock:
            self.now += 1
            self.entered += 1
            self.peak = max(self.peak, self.now)
        start = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            with self._lock:
                self.now -= 1
                self.spans.append(Span(index, start, end))

    def track(self, func: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``func`` so that every call is counted; keeps its signature for FastAPI."""
        if inspect.iscoroutinefunction(func):
            async_func = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self.inside():
                    return await async_func(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.inside():
                return func(*args, **kwargs)

        return wrapper

    def __repr__(self) -> str:
        return f"InFlight({self.name!r}, now={self.now}, peak={self.peak}, entered={self.entered})"


@dataclass(frozen=True)
class ThreadPool:
    """A snapshot of anyio's default thread limiter, the one FastAPI uses for ``def`` code."""

    total: int
    borrowed: int

    @property
    def available(self) -> int:
        return self.total - self.borrowed


def thread_pool() -> ThreadPool:
    """Read the running event loop's default thread limiter (call it from async code)."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    return ThreadPool(total=int(limiter.total_tokens), borrowed=limiter.borrowed_tokens)


@contextmanager
def thread_tokens(total: int) -> Iterator[ThreadPool]:
    """Set the loop's thread limiter to ``total`` tokens, and always put the old value back.

    The limiter belongs to the event loop, and a notebook kernel keeps one loop for its whole
    life, so a change made without restoring it would leak into every later cell.
    """
    limiter = anyio.to_thread.current_default_thread_limiter()
    before = limiter.total_tokens
    limiter.total_tokens = total
    try:
        yield thread_pool()
    finally:
        limiter.total_tokens = before
