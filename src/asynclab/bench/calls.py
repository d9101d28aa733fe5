"""A record of the calls a stand-in service receives: how many, how many at once, how many on the loop's thread.

A blocking call made on the event loop's thread stalls every other request, so the stand-ins of
every section count such calls here, and the checks read that count instead of the clock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from asynclab.bench.gauges import InFlight, on_event_loop_thread

__all__ = ["CallRecorder", "CallStats", "on_event_loop_thread"]


class CallStats(InFlight):
    """What one operation of a service saw: an :class:`InFlight` gauge (``entered``, ``peak``, ``now``)
    plus how many blocking calls were made on the event-loop thread."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.on_loop = 0

    @property
    def calls(self) -> int:
        return self.entered


class CallRecorder:
    """Thread-safe record of calls per operation name.

    With ``burst_wait`` > 0, a stand-in's operation, once its simulated latency is over, waits (at most
    that many seconds) until every request of the burst is inside it: :meth:`settle` in a thread,
    :meth:`asettle` on the loop. "How many at once" then holds by construction, whatever the load.
    A call on the loop's own thread never waits; with ``idle``, a call goes on once nobody new has
    come in for that long, so an answer that serialises the calls (a lock) costs ``idle`` per call.
    """

    def __init__(self, burst_wait: float = 0.0, idle: float | None = None) -> None:
        self._lock = threading.Lock()
        self.stats: dict[str, CallStats] = {}
        self.burst_wait, self.idle = burst_wait, idle

    def settle(self, name: str) -> None:
        """In a worker thread: wait until the burst is inside ``name`` (returns at once on the loop's thread)."""
        if self.burst_wait > 0:
            self.of(name).wait_until_all_in(within=self.burst_wait, idle=self.idle)

    async def asettle(self, name: str) -> None:
        """On the loop: wait until the burst is inside ``name``, the loop serving the others meanwhile."""
        if self.burst_wait > 0:
            await self.of(name).until_all_in(within=self.burst_wait, idle=self.idle)

    def of(self, name: str) -> CallStats:
        with self._lock:
            return self.stats.setdefault(name, CallStats(name))

    @contextmanager
    def call(self, name: str, *, blocking: bool) -> Iterator[None]:
        stats = self.of(name)
        if blocking and on_event_loop_thread():
            with self._lock:
                stats.on_loop += 1
        with stats.inside():
            yield

    def reset(self) -> None:
        with self._lock:
            self.stats.clear()
