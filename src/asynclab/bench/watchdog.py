"""A loop-stall watchdog for production: which route held the event loop, and where.

A heartbeat task on the loop notes the time every ``interval`` seconds. A watchdog thread looks at
that note; when the loop has not turned for more than ``threshold`` seconds, it logs, once per
stall, the request the stuck task serves (noted by the middleware) and the loop thread's stack.
Every heartbeat's lateness goes to a ``prometheus_client`` histogram, to graph beside latency.

    watchdog = Watchdog(threshold=0.2)
    app = FastAPI(lifespan=watchdog.lifespan)
    app.add_middleware(watchdog.middleware)

This file needs only the standard library and prometheus_client: copy it into your service.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import Histogram

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Watchdog:
    def __init__(self, threshold: float = 0.2, *, interval: float = 0.01, lag: Histogram | None = None,
                 logger: logging.Logger | None = None) -> None:
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
                return await app(scope, receive, send)
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
            reported, poll = -1, max(self.interval, self.threshold / 5)  # a stall is seen within a fifth of the threshold
            while not stop.wait(poll):
                beat, stalled = self._beat, time.monotonic() - self._last
                if stalled > self.threshold and beat != reported:  # once per stall
                    reported = beat
                    self.stalls += 1
                    route = self.route(self.requests.get(asyncio.current_task(loop)))  # type: ignore[arg-type]
                    frame = sys._current_frames().get(loop_thread)
                    stack = "".join(traceback.format_stack(frame)[-6:]) if frame else ""
                    self.log.warning("event loop stalled (%.0f ms so far) by %s; loop thread at:\n%s", stalled * 1000,
                                     route, stack, extra={"route": route, "stalled": stalled, "stack": stack})

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
