"""Probes that watch the event loop and the logs while a block of code runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field


@dataclass
class LoopLag:
    """The longest gap between two wake-ups of a task that asked to wake every ``tick`` seconds.

    On a free loop that gap is about ``tick``; a blocking call of 0.2 s makes it at least 0.2 s.
    """

    tick: float
    worst: float = 0.0
    ticks: int = 0

    def __str__(self) -> str:
        return f"longest stretch without a turn for a task that asked every {self.tick * 1000:.0f} ms: {self.worst * 1000:.0f} ms"


@asynccontextmanager
async def loop_lag(tick: float = 0.01) -> AsyncIterator[LoopLag]:
    """Measure the longest stretch during which the event loop could not run a ready task.

    A free loop wakes the probe about every ``tick`` seconds; a blocked one wakes it late.
    ``worst`` is the longest gap, so a blocking call of 0.2 s always shows as at least 0.2 s.
    """
    lag = LoopLag(tick=tick)

    async def probe() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(tick)
            lag.ticks += 1
            lag.worst = max(lag.worst, time.perf_counter() - before)

    # A plain task, not a task group: an error in the block reaches the notebook as itself,
    # not wrapped in an ExceptionGroup (which a notebook cell would not report as a failure).
    task = asyncio.create_task(probe(), name="asynclab-loop-lag")
    await asyncio.sleep(0)  # let the probe take its first step
    try:
        yield lag
    finally:
        await asyncio.sleep(tick * 2)  # one more wake-up, to catch a block at the very end
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class CapturedLogs:
    """Log records caught by :func:`capture_logs`."""

    records: list[logging.LogRecord] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def __len__(self) -> int:
        return len(self.records)


@contextmanager
def capture_logs(name: str = "", level: int = logging.DEBUG) -> Iterator[CapturedLogs]:
    """Catch every record logged to logger ``name`` (and its children) while the block runs."""
    logger = logging.getLogger(name)
    handler = _ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    captured = CapturedLogs(handler.records)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


_every_log_lock = threading.Lock()
_every_log_sinks: list[tuple[int, list[logging.LogRecord]]] = []
_real_call_handlers = logging.Logger.callHandlers


def _call_handlers_noting(self: logging.Logger, record: logging.LogRecord) -> None:
    for level, records in tuple(_every_log_sinks):  # a copy: another thread may change the list meanwhile
        if record.levelno >= level:
            records.append(record)
    _real_call_handlers(self, record)


@contextmanager
def capture_every_log(level: int = logging.DEBUG) -> Iterator[CapturedLogs]:
    """Catch every record any logger hands to its handlers while the block runs, wherever they send it.

    Unlike :func:`capture_logs`, which listens on one logger, this sees a record whose logger does
    not propagate to the root (``propagate = False``, its own handlers): what the app logged, not
    where its configuration sends it. Loggers without a level of their own log from ``level`` up.
    """
    captured = CapturedLogs()
    root = logging.getLogger()
    old_level = root.level
    with _every_log_lock:
        if not _every_log_sinks:
            logging.Logger.callHandlers = _call_handlers_noting  # type: ignore[method-assign]
        _every_log_sinks.append((level, captured.records))
    root.setLevel(level)
    try:
        yield captured
    finally:
        root.setLevel(old_level)
        with _every_log_lock:
            _every_log_sinks[:] = [sink for sink in _every_log_sinks if sink[1] is not captured.records]
            if not _every_log_sinks:
                logging.Logger.callHandlers = _real_call_handlers  # type: ignore[method-assign]


@asynccontextmanager
async def asyncio_debug(slow_callback: float = 0.1) -> AsyncIterator[CapturedLogs]:
    """Turn on asyncio's debug mode for the running loop and catch what it logs.

    In debug mode asyncio logs a warning for every step of a task that held the loop
    for longer than ``slow_callback`` seconds (0.1 s by default): the blocking call's fingerprint.
    """
    loop = asyncio.get_running_loop()
    was_debug, was_slow = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = slow_callback
    try:
        with capture_logs("asyncio", logging.WARNING) as logs:
            await asyncio.sleep(0)  # the loop times a step only if debug was on when the step began
            yield logs
            await asyncio.sleep(0)  # let the last step end (and be timed) while debug is still on
    finally:
        loop.set_debug(was_debug)
        loop.slow_callback_duration = was_slow
