"""A loop-stall watchdog for production: which route held the event loop, and where.

    watchdog = Watchdog(threshold=0.2)
    app = FastAPI(lifespan=watchdog.lifespan)
    app.add_middleware(watchdog.middleware)

It needs only the standard library and prometheus_client: copy it into your service.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Watchdog:
    """Logs, once per stall, the request the stuck task serves and the loop thread's stack.

    A heartbeat task on the loop notes the time every ``interval`` seconds; a thread looks at that
    note and reports when the loop has not turned for more than ``threshold`` seconds. Every
    heartbeat's lateness goes to a prometheus_client histogram, to graph beside latency.
    """

    def __init__(
        self,
        threshold: float = 0.2,
        *,
        interval: float = 0.01,
        lag: Histogram | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.threshold, self.interval, self.lag = threshold, interval, lag
        self.log = logger or logging.getLogger("watchdog")
        self.requests: dict[asyncio.Task[Any], dict[str, Any]] = {}  # task -> the ASGI scope it serves
        self.stalls = 0
        self._beat, self._last = 0, time.monotonic()

    def middleware(self, app: Any) -> Any:
        """ASGI middleware: note which request each task serves (``app.add_middleware(watchdog.middleware)``)."""

        async def note_request(scope: dict[str, Any], receive: Any, send: Any) -> None:
            task = asyncio.current_task()
            if scope["type"] != "http" or task is None:
                await app(scope, receive, send)
                return
            self.requests[task] = scope
            try:
                await app(scope, receive, send)
            finally:
                self.requests.pop(task, None)

        return note_request

    def route(self, scope: dict[str, Any] | None) -> str:
        if scope is None:
            return "no request"
        route = scope.get("route")  # set by the router once it has matched the path
        return f"{scope['method']} {getattr(route, 'path', None) or scope['path']}"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Watchdog]:
        """Watch the running loop while the block runs (a server: its whole lifespan)."""
        loop, loop_thread, stop = asyncio.get_running_loop(), threading.get_ident(), threading.Event()

        async def heartbeat() -> None:
            while True:
                self._last, self._beat = time.monotonic(), self._beat + 1
                await asyncio.sleep(self.interval)
                if self.lag is not None:
                    self.lag.observe(max(0.0, time.monotonic() - self._last - self.interval))

        def watch() -> None:
            reported, poll, woke = None, max(self.interval, self.threshold / 5), time.monotonic()  # seen within threshold/5
            while not stop.wait(poll):
                slept, woke = time.monotonic() - woke, time.monotonic()  # more than poll: this thread was kept waiting too
                if not loop.is_running():  # stopped between two runs (pytest's anyio plugin between phases): no stall
                    self._last = time.monotonic()
                    continue
                task, beat, stalled = asyncio.current_task(loop), self._beat, time.monotonic() - self._last
                if stalled > self.threshold and (beat, task) != reported:  # once per stall (per task, if back to back)
                    reported = (beat, task)
                    self.stalls += 1
                    route = self.route(self.requests.get(task))  # type: ignore[arg-type]
                    frame = sys._current_frames().get(loop_thread)
                    stack = "".join(traceback.format_stack(frame)[-6:]) if frame else ""
                    self.log.warning(
                        "event loop stalled (%.0f ms so far) by %s; loop thread at:\n%s",
                        stalled * 1000,
                        route,
                        stack,
                        extra={"route": route, "stalled": stalled, "stack": stack, "slept": slept},
                    )

        self._last = time.monotonic()
        beating = asyncio.create_task(heartbeat(), name="watchdog-heartbeat")
        watcher = threading.Thread(target=watch, name="watchdog", daemon=True)
        watcher.start()
        try:
            yield self
        finally:
            stop.set()
            beating.cancel()
            await asyncio.wait({beating})
            await asyncio.to_thread(watcher.join)  # it ends within one poll

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        async with self.running():
            yield


class StallGuard:
    """For tests: what watchdogs saw, kept instead of logged, to fail the test during which the loop stalled.

    ``async with guard.watching():`` runs a :class:`Watchdog` on the running loop (several loops may
    be watched, at once or in turn); ``guard.take()`` returns, one message per stall, what was seen
    since the last call. Two witnesses. The watchdog thread reports a loop that has not turned for
    ``threshold`` seconds, with the loop thread's stack. The heartbeat measures its own lateness when
    the loop turns again, and a late beat that no report covers counts from ``3 * threshold``: it
    needs no thread to be scheduled in time (a loop blocked for 1 s runs its next heartbeat at least
    0.99 s late, on any machine), but it also counts a moment when a loaded machine did not run the
    process at all, hence the higher bar. (A report, for the same reason, does not count the time
    the watchdog thread itself was kept waiting.)
    """

    def __init__(self, threshold: float = 0.3, *, interval: float = 0.01) -> None:
        self.threshold, self.interval = threshold, interval
        self.lag = _Lateness(bar=3 * threshold)
        # Outside logging's tree, so its reports go to the guard alone (pytest captures every logger in it).
        self.log = logging.Logger("stall-guard", logging.WARNING)  # noqa: LOG001
        self._kept = _Kept()
        self.log.addHandler(self._kept)
        self._sightings: deque[float] = deque(maxlen=1000)  # when the thread reported a stall (time.time())

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[Watchdog]:
        async with Watchdog(self.threshold, interval=self.interval, lag=self.lag, logger=self.log).running() as watchdog:
            yield watchdog

    def take(self) -> list[str]:
        """What was seen since the last call, one message per stall; empty if the loop kept turning."""
        # Less the time the watchdog thread itself overslept: while both threads were kept waiting,
        # the machine had paused the whole process, not the loop alone.
        poll = max(self.interval, self.threshold / 5)
        reports = [r for r in self._kept.take() if r.stalled - max(0.0, r.slept - poll) > self.threshold]
        self._sightings.extend(r.created for r in reports)
        found = [
            f"the event loop stalled longer than {self.threshold} s (stuck for {r.stalled:.2f} s when seen"
            + (f", serving {r.route}" if r.route != "no request" else "")
            + f"); the loop thread was at:\n{r.stack}"
            for r in reports
        ]
        found += [
            f"the event loop's heartbeat ran {late:.2f} s late (more than {self.lag.bar:.2f} s); "
            "the watchdog thread did not get to see where the loop was"
            for ran, late in self.lag.take()
            if not any(ran - late - self.interval <= seen <= ran for seen in self._sightings)
        ]
        return found


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._records_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._records_lock:
            self.records.append(record)

    def take(self) -> list[Any]:  # LogRecords with the watchdog's extras: stalled, route, stack, slept
        with self._records_lock:
            taken, self.records = self.records, []
        return taken


class _Lateness(Histogram):
    """The heartbeat's lateness, as a histogram, and each beat later than ``bar``: (when it ran, how late)."""

    def __init__(self, bar: float) -> None:
        super().__init__("stall_guard_lag_seconds", "Heartbeat lateness", buckets=(bar,), registry=CollectorRegistry())
        self.bar, self.late, self._late_lock = bar, list[tuple[float, float]](), threading.Lock()

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        super().observe(amount, exemplar)
        if amount > self.bar:
            with self._late_lock:
                self.late.append((time.time(), amount))

    def take(self) -> list[tuple[float, float]]:
        with self._late_lock:
            taken, self.late = self.late, []
        return taken
