"""Was the event loop free while a blocking call ran? Ask the loop itself, during the call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LoopWatch:
    """Watch one event loop (by default the running one) during blocking calls made from any thread.

    "Where did the call run" is not enough: code can run a blocking call on another thread and
    still make the event loop wait for it (``executor.submit(...).result()``, ``thread.join()``).
    :class:`LoopWatch` asks the loop to run a tiny callback at the start of each watched call, from
    the call's own thread, and looks at the end of the call whether the loop ran it. A free loop runs
    it at once; a loop that is waiting for the call cannot run it until the call has returned.
    This is an order of events, not a clock: nothing is timed except how long a call that already
    found the loop blocked waits before it gives up (``patience``, once per check).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, patience: float = 0.5) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.patience = patience
        self.calls = 0  # watched calls made off the loop's thread
        self.loop_ran = 0  # ... during which the loop ran our callback
        self.loop_waited = 0  # ... during which it did not: it was waiting for the call
        self.on_loop = 0  # watched calls made on the loop's own thread (they block it by definition)
        self._lock = threading.Lock()

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    @contextmanager
    def call(self) -> Iterator[None]:
        """Wrap one blocking call."""
        if self._on_loop_thread():
            with self._lock:
                self.on_loop += 1
            yield
            return
        ran = threading.Event()
        try:
            self.loop.call_soon_threadsafe(ran.set)
        except RuntimeError:  # the loop is closed: nothing to watch
            yield
            return
        yield
        if not ran.is_set():
            with self._lock:
                patience = 0.0 if self.loop_waited else self.patience
            ran.wait(patience)
        with self._lock:
            self.calls += 1
            if ran.is_set():
                self.loop_ran += 1
            else:
                self.loop_waited += 1

    @property
    def free(self) -> bool:
        """Every watched call ran off the loop, and the loop ran during each."""
        return self.on_loop == 0 and self.loop_waited == 0

    def __str__(self) -> str:
        return (
            f"{self.calls + self.on_loop} calls: {self.on_loop} on the loop's thread, "
            f"{self.loop_waited} with the loop waiting for them, {self.loop_ran} with the loop free"
        )
