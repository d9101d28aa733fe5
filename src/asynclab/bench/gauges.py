"""Clock-free evidence: how many handlers were inside a block at once, and how busy the thread pool is."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import anyio
import anyio.to_thread

P = ParamSpec("P")
R = TypeVar("R")

#: Set by :func:`asynclab.bench.load.load` in each request's task, so a handler span can be matched
#: to the request that caused it. With an in-process client the app runs in that same task.
request_index: ContextVar[int | None] = ContextVar("asynclab_request_index", default=None)


@dataclass(frozen=True, eq=False)
class Burst:
    """One burst of :func:`asynclab.bench.load.load`: how many requests it sends, and the thread tokens the loop had."""

    size: int
    tokens: int


#: Set by :func:`asynclab.bench.load.load` in each request's task, like :data:`request_index`: it reaches the
#: worker threads that FastAPI and ``anyio.to_thread.run_sync`` start for the request, not a pool of your own.
current_burst: ContextVar[Burst | None] = ContextVar("asynclab_burst", default=None)


def on_event_loop_thread() -> bool:
    """True when the calling code runs on a thread whose event loop is running: a blocking call here stalls it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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

    A handler meant to overlap with the others can wait, inside, until the whole burst is in:
    ``await gauge.until_all_in()`` (``async def``) or ``gauge.wait_until_all_in()`` (``def``, in its
    thread). Then "N at once" holds by construction: a busy machine makes the burst slower, and the
    count stays the same. Each waits at most ``within`` seconds (30) and then goes on, so nothing hangs.
    """

    def __init__(self, name: str = "handler") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.now = 0
        self.peak = 0
        self.entered = 0
        self.spans: list[Span] = []
        self._burst: Burst | None = None  # the burst of the latest caller that came with one
        self._burst_peak = 0  # the most callers inside at once since that burst began (or since reset)
        self.last_entry = time.monotonic()  # when the latest caller came in

    def reset(self) -> None:
        with self._lock:
            self.now = self.peak = self.entered = self._burst_peak = 0
            self.spans = []
            self._burst = None

    @contextmanager
    def inside(self) -> Iterator[None]:
        index, burst = request_index.get(), current_burst.get()
        with self._changed:
            self.last_entry = time.monotonic()
            self.now += 1
            self.entered += 1
            self.peak = max(self.peak, self.now)
            if burst is not None and burst is not self._burst:  # a new burst counts afresh
                self._burst, self._burst_peak = burst, 0
            self._burst_peak = max(self._burst_peak, self.now)
            self._changed.notify_all()
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

    def _all_in(self, n: int) -> bool:
        with self._lock:
            return self._burst_peak >= n

    def _gave_up(self, deadline: float, idle: float | None) -> bool:
        now = time.monotonic()
        return now >= deadline or (idle is not None and now - self.last_entry >= idle)

    async def until_all_in(self, n: int | None = None, *, within: float = 30.0, idle: float | None = None) -> bool:
        """In ``async def`` code: wait until ``n`` callers have been inside at once, by default every request of the
        burst that :func:`~asynclab.bench.load.load` is sending, then return True; after ``within`` seconds return False
        and let the caller go on. The loop serves the others meanwhile (it asks every few milliseconds).
        With ``idle``, also go on once nobody new has come in for that long: the others are held elsewhere (a lock)."""
        target = n if n is not None else _burst_size(threads=False)
        deadline = time.monotonic() + within
        while target is not None and not self._all_in(target):
            if self._gave_up(deadline, idle):
                return False
            await anyio.sleep(0.005)
        return target is not None

    def wait_until_all_in(self, n: int | None = None, *, within: float = 30.0, idle: float | None = None) -> bool:
        """The same from a worker thread (a ``def`` handler or dependency, ``to_thread.run_sync``): by default every request
        of the burst that can hold a thread token at once. On an event loop's own thread it returns False at once, since
        waiting there would keep everybody else out; so does a thread the burst does not reach, unless given ``n``."""
        target = n if n is not None else _burst_size(threads=True)
        if target is None or on_event_loop_thread():
            return False
        goal = target
        deadline = time.monotonic() + within
        with self._changed:
            while self._burst_peak < goal:
                if self._gave_up(deadline, idle):
                    return False
                self._changed.wait(timeout=0.05 if idle is not None else max(0.0, deadline - time.monotonic()))
            return True

    def __repr__(self) -> str:
        return f"InFlight({self.name!r}, now={self.now}, peak={self.peak}, entered={self.entered})"


def _burst_size(*, threads: bool) -> int | None:
    """How many requests of the current burst can be inside at once: all of them, or, in threads, at most its tokens."""
    burst = current_burst.get()
    if burst is None:
        return None
    return min(burst.size, burst.tokens) if threads else burst.size


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
