"""Run a FastAPI (or any ASGI) app inside the notebook's own process and event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

BASE_URL = "http://lab"


@asynccontextmanager
async def inprocess_client(
    app: ASGIApp,
    *,
    raise_app_exceptions: bool = True,
    lifespan: bool = True,
    timeout: float = 10.0,
) -> AsyncIterator[httpx.AsyncClient]:
    """Start ``app`` (its lifespan included) and yield an httpx client wired straight to it.

    ``raise_app_exceptions=False`` makes an unhandled exception arrive as the 500 response a
    real server would send, instead of being re-raised in the client.
    ``lifespan=False`` skips the lifespan, as a bare ``ASGITransport`` does.
    No socket is opened: requests are plain function calls into the app.
    """
    if not lifespan:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=timeout) as client:
            yield client
        return
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=timeout) as client:
            yield client
