"""Stand-ins for the third-party SDKs the exercises call, with a blocking and an awaitable client each."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import anyio

from asynclab.bench.calls import CallRecorder


class WeatherService:
    """A weather SDK: ``fetch`` blocks (a sync HTTP client); ``afetch`` is its awaitable twin.

    Like a real forecast, what it answers is known only by asking it: each service issues its
    forecasts under a number of its own (``"sunny in Oslo (issue 4821)"``), new for every instance.

    Their latency is simulated (``time.sleep`` for the blocking client, ``anyio.sleep`` for the awaitable
    one) so that every laptop sees the same thing. Each service keeps a record of its calls: how many
    ran at the same time, and how many ran *on the event-loop thread*, which is exactly what
    "blocking the event loop" means. The checks read that record instead of the clock.

    With ``wait_for_burst=True`` (the lesson's), each call then also waits until every request of the burst
    is inside it (at most 30 s; :class:`~asynclab.bench.calls.CallRecorder`), so how many ran at once does not
    depend on the machine's load. The checks set a shorter wait on ``record.burst_wait``.
    """

    def __init__(self, latency: float = 0.15, *, wait_for_burst: bool = False) -> None:
        self.latency = latency
        self.record = CallRecorder(burst_wait=30.0 if wait_for_burst else 0.0)
        self._issue = secrets.randbelow(9000) + 1000

    def _forecast(self, city: str) -> str:
        return f"sunny in {city.title()} (issue {self._issue})"

    def fetch(self, city: str) -> str:
        with self.record.call("fetch", blocking=True):
            time.sleep(self.latency)
            self.record.settle("fetch")  # on the loop's own thread it returns at once
            return self._forecast(city)

    async def afetch(self, city: str) -> str:
        with self.record.call("afetch", blocking=False):
            await anyio.sleep(self.latency)
            await self.record.asettle("afetch")
            return self._forecast(city)


class ShopBackend:
    """The back ends of a small shop: some calls are awaitable, some block (sync SDKs)."""

    def __init__(self, latency: float = 0.15) -> None:
        self.latency = latency
        self.record = CallRecorder()
        self.sold_out_pids: set[int] = set()

    def sold_out(self, pid: int) -> bool:
        """A look-up in the shop's in-memory set of sold-out products: no I/O, it answers at once."""
        return pid in self.sold_out_pids

    async def product(self, pid: int) -> dict[str, object]:
        """An awaitable database read."""
        with self.record.call("product", blocking=False):
            await anyio.sleep(self.latency)
            await self.record.asettle("product")
            return {"id": pid, "name": f"product {pid}"}

    async def stock(self, pid: int) -> int:
        """An awaitable call to the warehouse service."""
        with self.record.call("stock", blocking=False):
            await anyio.sleep(self.latency)
            await self.record.asettle("stock")
            return pid * 3

    def exchange_rates(self) -> dict[str, float]:
        """A blocking call through a sync HTTP client."""
        with self.record.call("exchange_rates", blocking=True):
            time.sleep(self.latency)
            self.record.settle("exchange_rates")
            return {"EUR": 1.0, "USD": 1.08}

    def render_invoice(self, order_id: int) -> str:
        """A blocking call into a sync PDF library."""
        with self.record.call("render_invoice", blocking=True):
            time.sleep(self.latency)
            self.record.settle("render_invoice")
            return f"invoice-{order_id}.pdf"


# --- lesson 1's measuring harness ------------------------------------------------------------------

#: The lesson's blocking ``async def`` handler as a module uvicorn imports; it answers with its loop and the in-flight peak.
BLOCKING_MODULE = '''"""A blocking async def handler that counts the requests inside it at once."""
import asyncio
import time

from fastapi import FastAPI

app = FastAPI()
inside = {"now": 0, "peak": 0}


@app.get("/blocking")
async def blocking() -> dict[str, object]:
    inside["now"] += 1
    inside["peak"] = max(inside["peak"], inside["now"])
    time.sleep(0.2)  # blocks the loop
    inside["now"] -= 1
    return {"loop": type(asyncio.get_running_loop()).__module__, "peak": inside["peak"]}
'''


@dataclass(frozen=True)
class ServerRun:
    """What a real server did with a burst of requests: its command line, its event loop's module, the in-flight peak."""

    command: str
    loop: str
    peak: int


async def blocking_in_a_server_process(n: int = 4, **uvicorn_env: str) -> ServerRun:
    """Serve :data:`BLOCKING_MODULE` with ``python -m uvicorn`` in a process of its own and send it ``n`` requests at once.

    ``uvicorn_env`` sets uvicorn's options through its environment, e.g. ``UVICORN_LOOP="uvloop"``.
    """
    import asyncio
    import tempfile
    from pathlib import Path

    import httpx

    from asynclab.bench.workers import serve_workers
    from asynclab.bench.workspace import workspace

    folder = Path(tempfile.mkdtemp(prefix="s01-", dir=workspace()))
    (folder / "blocking_app.py").write_text(BLOCKING_MODULE, encoding="utf-8")
    served = serve_workers("blocking_app:app", app_dir=folder, workers=1, env=uvicorn_env)
    async with served as server, httpx.AsyncClient(base_url=server.url) as client:
        answers = await asyncio.gather(*(client.get("/blocking") for _ in range(n)))
    bodies = [answer.json() for answer in answers]
    words = server.shell.split()
    at = words.index("--app-dir")
    shown = [f"{name}={value}" for name, value in uvicorn_env.items()] + words[:at] + words[at + 2 :]  # no scratch path
    return ServerRun(" ".join(shown), bodies[0]["loop"], max(body["peak"] for body in bodies))
