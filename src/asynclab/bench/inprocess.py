"""Run a FastAPI (or any ASGI) app inside the notebook's own process and event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Receive, Scope, Send

BASE_URL = "http://lab"


def state_per_request(app: ASGIApp) -> ASGIApp:
    """Give every request its own shallow copy of the lifespan state, as uvicorn does.

    asgi-lifespan 2.1 hands every request the *same* ``scope["state"]`` dict, so a value one
    request puts on ``request.state`` is seen by every other request. uvicorn copies the dict
    for each request: the values the lifespan yielded are shared, what a request adds is its own.
    """

    async def copied(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and isinstance(scope.get("state"), dict):
            scope = {**scope, "state": scope["state"].copy()}
        await app(scope, receive, send)

    return copied


@asynccontextmanager
async def lifespan_started(
    app: ASGIApp, *, startup_timeout: float = 5.0, shutdown_timeout: float | None = 5.0
) -> AsyncIterator[ASGIApp]:
    """Run ``app``'s lifespan startup; yield the app to send requests to; run its shutdown at the end.

    Each request gets its own copy of the lifespan state (as on uvicorn). A startup that does not
    finish within ``startup_timeout`` seconds raises ``StartupTimedOut``, which says so in one line.
    """
    from asynclab.course.checking import StartupTimedOut

    manager = LifespanManager(state_per_request(app), startup_timeout=None, shutdown_timeout=shutdown_timeout)
    entered = False
    with anyio.move_on_after(startup_timeout) as waiting:
        await manager.__aenter__()
        entered = True
    if not entered:
        if waiting.cancelled_caught:
            raise StartupTimedOut(startup_timeout)
        raise RuntimeError("the app's startup was cancelled")  # pragma: no cover - cancelled from outside
    try:
        yield manager.app
    except BaseException as exc:
        if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await manager.__aexit__(None, None, None)


@asynccontextmanager
async def inprocess_client(
    app: ASGIApp,
    *,
    raise_app_exceptions: bool = True,
    lifespan: bool = True,
    timeout: float = 10.0,
    startup_timeout: float = 5.0,
    shutdown_timeout: float | None = 5.0,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """Start ``app`` (its lifespan included) and yield an httpx client wired straight to it.

    ``raise_app_exceptions=False`` makes an unhandled exception arrive as the 500 response a
    real server would send, instead of being re-raised in the client.
    ``lifespan=False`` skips the lifespan, as a bare ``ASGITransport`` does.
    ``wrap`` puts a middleware of your own around the started app (to record what reaches it).
    No socket is opened: requests are plain function calls into the app. As on uvicorn, each
    request gets its own copy of the lifespan state (``request.state``).
    """
    wrap = wrap or (lambda started: started)
    if not lifespan:
        transport = httpx.ASGITransport(app=wrap(app), raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=timeout) as client:
            yield client
        return
    async with lifespan_started(app, startup_timeout=startup_timeout, shutdown_timeout=shutdown_timeout) as started:
        transport = httpx.ASGITransport(app=wrap(started), raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=timeout) as client:
            yield client
