"""Section 4's stand-ins (lifespan): what an app opens, what it leaves running, and how it ends.

- :class:`Resources` opens stand-in clients (a database pool, an HTTP client) by name and keeps the
  books: what was opened, what was closed, what is still open. ``Resources(fail_on="cache")`` makes
  one of them fail to connect, to break a startup half-way.
- :class:`Mailer` is an email API whose sends take a set time per recipient; each send reports how
  it ended: delivered, cancelled by the app, or still running when the app had finished stopping.
- :func:`run_as_process` runs an app for one whole server-process lifetime on a fresh event loop:
  startup, some requests, shutdown, and then the end of the loop, which cancels whatever the app
  left running, as ``asyncio.run`` does when uvicorn is stopped with Ctrl-C (SIGINT). (After a
  SIGTERM, uvicorn re-raises the signal once its shutdown is done and the process dies at once:
  what is left is not even cancelled.)

A real ``python -m uvicorn`` in a process of its own is :func:`asynclab.bench.processes.uvicorn_process`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.server import StartupFailed, uvicorn_server

# --- Resources that must be opened and closed -------------------------------------------------------


class ResourceClosedError(RuntimeError):
    """Raised when a closed (or never opened) resource is used."""


class Resource:
    """A client that must be opened before use and closed after: a connection pool, an HTTP client.

    ``number`` tells two resources of the same name apart (the db of the first start, of the second...).
    """

    def __init__(self, name: str, number: int, books: Resources) -> None:
        self.name, self.number, self._books = name, number, books
        self.is_open = True
        self.uses = 0

    async def query(self, what: str = "") -> str:
        """Use the resource; raises :class:`ResourceClosedError` once it is closed."""
        if not self.is_open:
            raise ResourceClosedError(f"{self.name} is closed")
        self.uses += 1
        await anyio.lowlevel.checkpoint()
        return f"{self.name} #{self.number}: {what}" if what else f"{self.name} #{self.number}"

    async def aclose(self) -> None:
        """Close the resource (closing it twice is harmless, and is counted once)."""
        await anyio.lowlevel.checkpoint()
        if self.is_open:
            self.is_open = False
            self._books._record_close(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{self.name} #{self.number} {'open' if self.is_open else 'closed'}>"


class Resources:
    """Opens stand-in resources by name and counts them: after a clean shutdown, opened == closed.

    ``fail_on`` names a resource whose opening fails with ``ConnectionError``, to break a startup half-way.
    """

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.handles: list[Resource] = []
        self.opened: list[str] = []
        self.closed: list[str] = []
        self._lock = threading.Lock()

    async def open(self, name: str) -> Resource:
        """Connect to ``name`` and return its client (a new one each call)."""
        await anyio.lowlevel.checkpoint()
        if name == self.fail_on:
            raise ConnectionError(f"could not connect to {name}")
        with self._lock:
            resource = Resource(name, sum(r.name == name for r in self.handles) + 1, self)
            self.handles.append(resource)
            self.opened.append(name)
        return resource

    def _record_close(self, resource: Resource) -> None:
        with self._lock:
            self.closed.append(resource.name)

    @property
    def still_open(self) -> list[str]:
        return [r.name for r in self.handles if r.is_open]

    def __str__(self) -> str:
        def names(items: list[str]) -> str:
            return ", ".join(items) or "none"

        return f"opened: {names(self.opened)} · closed: {names(self.closed)} · still open: {names(self.still_open)}"


# --- Work that outlives a request -------------------------------------------------------------------

Outcome = Literal["running", "delivered", "cancelled"]


class Mailer:
    """An email API: ``await mailer.send(to)`` takes ``durations[to]`` seconds (``default`` otherwise).

    Each send records how it ended in :attr:`outcomes`, and when it began and ended (for
    :func:`shutdown_timeline`). :meth:`snapshot` freezes the outcomes as they stood when the app
    finished shutting down (``at_shutdown``): a send still ``running`` then is work the process
    loses when it exits.
    """

    def __init__(self, durations: dict[str, float] | None = None, *, default: float = 0.05) -> None:
        self.durations = dict(durations or {})
        self.default = default
        self.outcomes: dict[str, Outcome] = {}
        self.at_shutdown: dict[str, Outcome] | None = None
        self.began: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self._lock = threading.Lock()

    def seconds(self, to: str) -> float:
        return self.durations.get(to, self.default)

    async def send(self, to: str) -> str:
        with self._lock:
            self.outcomes[to] = "running"
            self.began[to] = time.perf_counter()
        try:
            await anyio.sleep(self.seconds(to))
        except BaseException:
            with self._lock:
                self.outcomes[to] = "cancelled"
                self.ended[to] = time.perf_counter()
            raise
        with self._lock:
            self.outcomes[to] = "delivered"
            self.ended[to] = time.perf_counter()
        return to

    def snapshot(self) -> None:
        """Record the outcomes as they stand now (called when the app reports its shutdown complete)."""
        with self._lock:
            self.at_shutdown = dict(self.outcomes)

    def report(self) -> dict[str, str]:
        """For each recipient: delivered, cancelled (by the app, while it stopped), or lost (still running when it had stopped)."""
        seen = self.at_shutdown if self.at_shutdown is not None else self.outcomes
        words = {"delivered": "delivered", "cancelled": "cancelled", "running": "lost"}
        return {to: words[state] for to, state in seen.items()}


# --- One process lifetime ---------------------------------------------------------------------------


@dataclass
class ProcessRun:
    """How one run of :func:`run_as_process` went (times are ``time.perf_counter`` seconds)."""

    started: bool = False
    stopped: bool = False  # the app reported its shutdown complete
    exit_code: int | None = None  # uvicorn's exit status when its startup failed (3)
    error: BaseException | None = None  # what the lifespan raised (in-process runs)
    left_running: list[str] = field(default_factory=list)  # tasks the end of the loop had to cancel
    shutdown_began: float | None = None  # the work was done; the server was asked to stop
    stopped_at: float | None = None  # the app reported its shutdown complete


def _watch_shutdown(app: ASGIApp, on_stopped: Callable[[], None]) -> ASGIApp:
    """Wrap ``app`` so that ``on_stopped()`` runs at the moment it reports ``lifespan.shutdown.complete``."""

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                on_stopped()
            await send(message)

        await app(scope, receive, send_and_watch)

    return watched


async def _lifetime(
    app: ASGIApp,
    work: Callable[[httpx.AsyncClient], Awaitable[object]],
    run: ProcessRun,
    server: Literal["inprocess", "uvicorn"],
    shutdown_timeout: float,
) -> None:
    if server == "inprocess":
        try:
            async with inprocess_client(app, shutdown_timeout=shutdown_timeout) as client:
                run.started = True
                await work(client)
                run.shutdown_began = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - a failed startup, or a shutdown that did not finish in time: reported
            run.error = exc
    else:
        try:
            async with uvicorn_server(app, lifespan="on", startup_timeout=20.0, shutdown_timeout=shutdown_timeout) as url:
                run.started = True
                try:
                    async with httpx.AsyncClient(base_url=url) as client:
                        await work(client)
                finally:
                    run.shutdown_began = time.perf_counter()
        except StartupFailed as failed:  # uvicorn exits with status 3 when the app's startup fails
            run.exit_code = failed.exit_code
            run.shutdown_began = time.perf_counter()
    me = asyncio.current_task()
    run.left_running = sorted(t.get_name() for t in asyncio.all_tasks() if t is not me and not t.done())


async def run_as_process(
    app: ASGIApp,
    work: Callable[[httpx.AsyncClient], Awaitable[object]] | None = None,
    *,
    server: Literal["inprocess", "uvicorn"] = "inprocess",
    on_stopped: Callable[[], None] | None = None,
    shutdown_timeout: float = 5.0,
) -> ProcessRun:
    """Run ``app`` for one server-process lifetime, on a new event loop in a worker thread.

    Start the app (its lifespan), ``await work(client)``, shut it down, and end the loop the way
    ``asyncio.run`` ends it (uvicorn runs each worker with it): every task still pending is
    cancelled. ``on_stopped()`` runs the moment the app reports its shutdown complete (use
    :meth:`Mailer.snapshot`). ``server="uvicorn"`` serves it with a real uvicorn on 127.0.0.1 and
    a real HTTP client; the default drives it in-process (``LifespanManager`` + ``ASGITransport``).
    """
    run = ProcessRun()

    def stopped() -> None:
        run.stopped, run.stopped_at = True, time.perf_counter()
        if on_stopped is not None:
            on_stopped()

    async def nothing(client: httpx.AsyncClient) -> None:
        return None

    watched = _watch_shutdown(app, stopped)
    await anyio.to_thread.run_sync(lambda: asyncio.run(_lifetime(watched, work or nothing, run, server, shutdown_timeout)))
    return run


# --- The picture ------------------------------------------------------------------------------------

_COLOURS = {"delivered": "#2ca02c", "cancelled": "#ff7f0e", "lost": "#d62728"}


def _label(to: str, seconds: float) -> str:
    return f"{to.split('@')[0]} ({seconds:g} s)" if seconds < 10 else f"{to.split('@')[0]} (never ends)"


def shutdown_timeline(*panels: tuple[str, Mailer, ProcessRun]) -> Figure:
    """One panel per shutdown strategy: a bar per email, from when it was queued to when it ended.

    Green: delivered. Orange: cancelled by the app while it stopped. Red: lost, still running when
    the app had stopped (drawn up to that moment). A dotted outline shows how long the email needed.
    The dashed line is when the server was asked to stop, the solid one when the app had stopped.
    """
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.0 + 0.9 * len(panels)), sharex=True, squeeze=False)
    horizon = max(((run.stopped_at or 0.0) - min(m.began.values(), default=0.0) for _, m, run in panels), default=1.0) + 0.25
    for ax, (title, mailer, run) in zip(axes[:, 0], panels, strict=True):
        t0 = min(mailer.began.values(), default=0.0)
        stop = (run.stopped_at or t0) - t0
        report = mailer.report()
        for row, to in enumerate(report):
            begin, state = mailer.began[to] - t0, report[to]
            end = stop if state == "lost" else mailer.ended[to] - t0
            needed = min(mailer.seconds(to), horizon - begin)
            ax.barh(row, needed, left=begin, fill=False, edgecolor="#999999", linestyle=":", height=0.6)
            ax.barh(row, end - begin, left=begin, color=_COLOURS[state], height=0.6)
            ax.text(end + 0.01, row, state, va="center", fontsize=8)
        ax.set_yticks(range(len(report)), [_label(to, mailer.seconds(to)) for to in report], fontsize=8)
        if run.shutdown_began is not None:
            ax.axvline(run.shutdown_began - t0, color="grey", linestyle="--", linewidth=1)
        ax.axvline(stop, color="black", linewidth=1.2)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9, loc="left")
    axes[-1, 0].set_xlim(0, horizon)
    axes[-1, 0].set_xlabel("seconds since the first email was queued  (dashed: stop asked · solid: app stopped)")
    fig.tight_layout()
    plt.close(fig)  # the notebook shows the returned figure once, not twice
    return fig
