"""A real uvicorn server on 127.0.0.1, running in the notebook's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn

import anyio
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LifespanType

from asynclab.bench.limits import BenchTimedOut
from asynclab.bench.ports import bound_socket


class StartupFailed(RuntimeError):
    """uvicorn stopped before it served: the app's startup failed. ``exit_code`` is uvicorn's exit status (3)."""

    def __init__(self, exit_code: int | None) -> None:
        super().__init__("uvicorn did not start: the app's startup failed (its error is logged above)")
        self.exit_code = exit_code


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the notebook's signal handlers alone (Ctrl-C stays the kernel's)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _noting_startup(app: ASGIApp, startup: list[str]) -> ASGIApp:
    """The app, noting in ``startup`` when its lifespan startup began (``"began"``) and when it ended (``"ended"``)."""

    async def noting(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def noting_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                startup.append("began")
            return message

        async def noting_send(message: Message) -> None:
            if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed"):
                startup.append("ended")
            await send(message)

        await app(scope, noting_receive, noting_send)

    return noting


def _did_not_start(startup: list[str], seconds: float) -> NoReturn:
    """Whose fault is a server not started in time: the app's, if its own startup began and had not ended; else the bench's."""
    from asynclab.course.checking import StartupTimedOut

    if "began" in startup and "ended" not in startup:
        raise StartupTimedOut(seconds)
    raise BenchTimedOut("start the server", seconds)


@contextlib.asynccontextmanager
async def uvicorn_server(
    app: ASGIApp,
    *,
    log_level: str = "warning",
    startup_timeout: float = 5.0,
    shutdown_timeout: float = 5.0,
    http: str = "auto",
    lifespan: LifespanType = "auto",
    **config: Any,
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 on a free port; yield its base URL.

    ``http`` picks uvicorn's HTTP protocol as ``--http`` does: ``"h11"``, ``"httptools"``, or
    ``"auto"`` (httptools where it is installed, as with ``uvicorn[standard]``, else h11).
    ``lifespan`` is ``--lifespan``: ``"on"`` makes a failing startup stop uvicorn, as in production.
    Any other keyword is a ``uvicorn.Config`` option, e.g. ``limit_concurrency=4``,
    ``reset_contextvars=True``, ``timeout_graceful_shutdown=1``.

    A startup that takes longer than ``startup_timeout`` raises ``StartupTimedOut`` if the app's own
    startup (its lifespan) was still running, else :class:`~asynclab.bench.limits.BenchTimedOut`.

    Unlike an in-process client, this is a real HTTP server: a response reaches the client as
    soon as it is sent, while background tasks are still running. The server is always stopped
    when the block ends, also when the block fails: no port outlives it.
    """
    sock = bound_socket()
    port = sock.getsockname()[1]
    startup: list[str] = []
    settings = uvicorn.Config(
        _noting_startup(app, startup),
        log_level=log_level,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        http=http,
        **config,
    )
    server = _QuietServer(settings)

    exit_code: list[int] = []

    async def serve() -> None:
        try:
            await server.serve([sock])
        except SystemExit as exc:  # uvicorn exits with status 3 when the app's startup fails: raised below instead
            exit_code.append(exc.code if isinstance(exc.code, int) else 1)

    serving = asyncio.create_task(serve(), name="asynclab-uvicorn")
    try:
        await _started(server, serving, exit_code, startup, startup_timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        await _stop(server, serving, shutdown_timeout)
        sock.close()


async def _started(
    server: uvicorn.Server, serving: asyncio.Task[None], exit_code: list[int], startup: list[str], timeout: float
) -> None:
    """Wait until uvicorn serves; raise :class:`StartupFailed` if it stopped first, or say whose fault a time-out is."""
    with anyio.move_on_after(timeout):
        while not server.started:
            if serving.done():
                raise StartupFailed(exit_code[0] if exit_code else None)
            await anyio.sleep(0.005)
    if not server.started:
        _did_not_start(startup, timeout)


async def _stop(server: uvicorn.Server, serving: asyncio.Task[None], timeout: float) -> None:
    """Ask uvicorn to exit (it waits for open requests and background tasks); after ``timeout`` s, stop it hard."""
    server.should_exit = True
    done, _ = await asyncio.wait({serving}, timeout=timeout)
    if not done:  # a request or a task that would not finish: stop hard
        server.force_exit = True
        serving.cancel()
        await asyncio.wait({serving}, timeout=1)
