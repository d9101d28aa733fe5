"""The part of an async client that belongs to one event loop, as a real client's connections do."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading


def _started_by() -> str:
    """How the loop running the caller was started, read from the call stack: ``asyncio.run()`` or another way."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "run" and code.co_filename.replace("\\", "/").endswith("asyncio/runners.py"):
            return "asyncio.run()"
        frame = frame.f_back  # type: ignore[assignment]
    return "an event loop of its own"


class LoopBound:
    """A connection that belongs to one event loop: the loop running when it was opened, or else the first loop that uses it.

    With ``opened_now=False`` it always waits for its first use (a module-level client, which a
    process may import on one loop and serve on another, connects lazily, as httpx's pool does).
    Call :meth:`use` at the start of every awaitable call. From any other loop it raises the
    ``RuntimeError`` a real client raises, after noting in ``strangers`` how that loop was started.

    asyncpg's connections, httpx's and aiohttp's connection pools, redis-py's asyncio client: each
    holds sockets, futures and locks made on the event loop that opened it, and fails when a
    coroutine running on another loop uses it (``asyncio.run()`` in a worker thread makes a new loop
    every time): ``RuntimeError: ... is bound to a different event loop``, or ``Event loop is closed``
    once that first loop has ended. A stand-in holding a :class:`LoopBound` behaves the same, and
    says how each call from another loop came (``asyncio.run()`` or another loop).
    """

    def __init__(self, owner: str, strangers: list[str] | None = None, *, opened_now: bool = True) -> None:
        self.owner = owner
        self.strangers: list[str] = [] if strangers is None else strangers
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        if opened_now:
            with contextlib.suppress(RuntimeError):  # no loop running: the first one to use it
                self.loop = asyncio.get_running_loop()

    def use(self) -> None:
        """Use the connection from the running loop: fine on its own loop, a ``RuntimeError`` on any other."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.loop is None:
                self.loop = loop
            if loop is self.loop:
                return
            self.strangers.append(_started_by())
        if self.loop.is_closed():
            raise RuntimeError("Event loop is closed")
        raise RuntimeError(f"<{self.owner} connection> is bound to a different event loop")

    def __repr__(self) -> str:
        state = "unbound" if self.loop is None else "bound"
        return f"LoopBound({self.owner}, {state}, {len(self.strangers)} calls from other loops)"
