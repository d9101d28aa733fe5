"""Stand-ins for the third-party SDKs the exercises call, with a blocking and an awaitable client each.

Their latency is simulated (``time.sleep`` for the blocking client, ``anyio.sleep`` for the awaitable
one) so that every laptop sees the same thing. Each service keeps a record of its calls: how many
ran at the same time, and how many ran *on the event-loop thread*, which is exactly what
"blocking the event loop" means. The checks read that record instead of the clock.
"""

from __future__ import annotations

import time

import anyio

from asynclab.bench.calls import CallRecorder


class WeatherService:
    """A weather SDK: ``fetch`` blocks (a sync HTTP client); ``afetch`` is its awaitable twin."""

    def __init__(self, latency: float = 0.15) -> None:
        self.latency = latency
        self.record = CallRecorder()

    @staticmethod
    def forecast_for(city: str) -> str:
        return f"sunny in {city.title()}"

    def fetch(self, city: str) -> str:
        with self.record.call("fetch", blocking=True):
            time.sleep(self.latency)
            return self.forecast_for(city)

    async def afetch(self, city: str) -> str:
        with self.record.call("afetch", blocking=False):
            await anyio.sleep(self.latency)
            return self.forecast_for(city)


class ShopBackend:
    """The back ends of a small shop: some calls are awaitable, some block (sync SDKs)."""

    def __init__(self, latency: float = 0.15) -> None:
        self.latency = latency
        self.record = CallRecorder()

    async def product(self, pid: int) -> dict[str, object]:
        """An awaitable database read."""
        with self.record.call("product", blocking=False):
            await anyio.sleep(self.latency)
            return {"id": pid, "name": f"product {pid}"}

    async def stock(self, pid: int) -> int:
        """An awaitable call to the warehouse service."""
        with self.record.call("stock", blocking=False):
            await anyio.sleep(self.latency)
            return pid * 3

    def exchange_rates(self) -> dict[str, float]:
        """A blocking call through a sync HTTP client."""
        with self.record.call("exchange_rates", blocking=True):
            time.sleep(self.latency)
            return {"EUR": 1.0, "USD": 1.08}

    def render_invoice(self, order_id: int) -> str:
        """A blocking call into a sync PDF library."""
        with self.record.call("render_invoice", blocking=True):
            time.sleep(self.latency)
            return f"invoice-{order_id}.pdf"
