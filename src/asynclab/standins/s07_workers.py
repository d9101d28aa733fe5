"""Section 7's stand-ins: an SDK client that logs where and when it was opened, and a reader for those lines.

An app served by several uvicorn workers imports this module in every worker process, so it
stays small: no matplotlib, no bench.
"""

from __future__ import annotations

import contextlib
import os
import re
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Self

import anyio

_quiet: list[bool] = []  # while not empty, the lines are not written (a check that runs the app in its own process)


def _say(line: str) -> None:
    if _quiet:
        return
    os.write(2, (line + "\n").encode())  # one write: whole lines, even with several processes on one log


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """Write no client lines while the block runs: the app runs in this process, whose log is not a server's."""
    _quiet.append(True)
    try:
        yield
    finally:
        _quiet.pop()


def _importing() -> bool:
    """True while a module is being imported (the call comes from module-level code)."""
    return any(frame.filename.startswith("<frozen importlib") for frame in traceback.extract_stack())


class RatesClient:
    """A stand-in for an SDK client that holds a connection pool (think ``httpx.AsyncClient``).

    It writes one line to the server's log when it opens, saying whether that happened while a
    module was being imported, and one when it is closed, each with its process ID. A request
    after :meth:`aclose` fails, as it would with a real client.
    """

    opened = 0

    def __init__(self) -> None:
        RatesClient.opened += 1
        self.number = RatesClient.opened
        self.pid = os.getpid()
        self.closed = False
        when = "at import time" if _importing() else "while running"
        _say(f"rates client #{self.number} opened {when} [pid {self.pid}]")

    async def rate(self, base: str, quote: str) -> float:
        """The exchange rate from ``base`` to ``quote`` (a fixed 1.08 for EUR→USD, else 1.0)."""
        if self.closed:
            raise RuntimeError("this rates client is closed")
        await anyio.sleep(0.001)
        return 1.08 if (base, quote) == ("EUR", "USD") else 1.0

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            _say(f"rates client #{self.number} closed [pid {self.pid}]")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_CLIENT_LINE = re.compile(r"rates client #(\d+) (opened at import time|opened while running|closed) \[pid (\d+)\]")


@dataclass
class ClientEvents:
    """What the :class:`RatesClient` lines of a log say, per process."""

    opened_at_import: Counter[int] = field(default_factory=Counter)
    opened_running: Counter[int] = field(default_factory=Counter)
    closed: Counter[int] = field(default_factory=Counter)

    @classmethod
    def parse(cls, log: str) -> ClientEvents:
        events = cls()
        for _number, what, pid in _CLIENT_LINE.findall(log):
            bucket = {"opened at import time": events.opened_at_import, "opened while running": events.opened_running}
            bucket.get(what, events.closed)[int(pid)] += 1
        return events

    def opened(self, pid: int) -> int:
        return self.opened_at_import[pid] + self.opened_running[pid]
