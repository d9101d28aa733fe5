"""A stand-in mail server's behaviour: each message delivered, refused (mailbox full) or cancelled, and what became of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import anyio


class MailboxFull(Exception):
    """The mail server refused a message (550). Its text does not name the address: that context is yours to log."""


class Mailbox:
    """``await send(to)`` takes ``latency`` seconds (``slow[to]`` for the addresses in ``slow``); addresses in ``full`` fail.

    ``outcome[to]`` is ``"sending"``, ``"delivered"``, ``"failed"`` or ``"cancelled"`` (a subclass may add
    ``"cancelling"``). It imports nothing but anyio, so a uvicorn worker that imports a service using it stays light.
    """

    STATES = ("delivered", "failed", "cancelled", "cancelling", "sending")

    def __init__(self, *, full: Iterable[str] = (), slow: Mapping[str, float] | None = None, latency: float = 0.05) -> None:
        self.full, self.slow, self.latency = set(full), dict(slow or {}), latency
        self.outcome: dict[str, str] = {}

    async def send(self, to: str) -> None:
        self.outcome[to] = "sending"
        try:
            await self._transmit(to)
        except anyio.get_cancelled_exc_class():
            await self._cancelled(to)
            raise

    async def _transmit(self, to: str) -> None:
        await anyio.sleep(self.slow.get(to, self.latency))
        if to in self.full:
            self.outcome[to] = "failed"
            raise MailboxFull("550 mailbox full")
        self.outcome[to] = "delivered"

    async def _cancelled(self, to: str) -> None:
        """What a cancelled send does before the cancellation goes on (here: nothing to clean up)."""
        self.outcome[to] = "cancelled"

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcome.values() if value == outcome)

    def summary(self) -> str:
        return " · ".join(f"{self.count(s)} {s}" for s in self.STATES if self.count(s)) or "nothing sent"
