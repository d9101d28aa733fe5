from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi.testclient import TestClient

from app.main import app
from loop_watchdog import StallGuard

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:  # runs the lifespan: the watchdog runs
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as client:
            yield client


@pytest.fixture
def sync_client(stall_guard: StallGuard) -> Iterator[TestClient]:
    """Starlette's TestClient, unchanged: the app runs on an event loop in another thread.

    blockbuster sees that loop as it is; the stall guard is put on it here. Use it with
    ``with``: without, no lifespan runs (so no watchdog), and each request gets a new loop.
    """
    with (
        TestClient(app) as client,
        client.portal.wrap_async_context_manager(stall_guard.watching()),
    ):
        yield client


async def test_greets_in_the_visitors_language(client: httpx.AsyncClient) -> None:
    response = await client.get("/greeting/192.0.2.1")
    assert response.status_code == 200
    assert response.json() == {"country": "NO", "greeting": "Hei"}


def test_greets_through_the_sync_test_client(sync_client: TestClient) -> None:
    response = sync_client.get("/greeting/198.51.100.7")
    assert response.json() == {"country": "PT", "greeting": "Olá"}


async def test_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}


async def test_metrics_serve_the_loop_lag(client: httpx.AsyncClient) -> None:
    def beats(text: str) -> float:
        line = next(
            x for x in text.splitlines() if x.startswith("event_loop_lag_seconds_count")
        )
        return float(line.split()[-1])

    scraped = await client.get("/metrics", follow_redirects=True)
    for _ in range(1000):  # until the heartbeat has beaten once more (every 10 ms)
        if beats((await client.get("/metrics/")).text) > beats(scraped.text):
            break
        await asyncio.sleep(0.01)
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert 'event_loop_lag_seconds_bucket{le="0.25"}' in scraped.text
    assert beats((await client.get("/metrics/")).text) > beats(scraped.text)
