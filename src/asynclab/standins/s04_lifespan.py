"""Section 4's stand-ins (lifespan): what an app opens and closes, how its tests start it, how its workers end."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import anyio
import anyio.lowlevel
import httpx
from fastapi import FastAPI, Request

from asynclab.bench.processes import UvicornProcess, uvicorn_process

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


# --- A worker that dies, and one that stops answering ------------------------------------------------

TINY_APP = "from starlette.applications import Starlette\n\napp = Starlette()\n"
_WORKER = re.compile(r"Started server process \[(\d+)\]")


@dataclass
class WorkerFate:
    """What a ``--workers 2`` parent did about the worker we signalled."""

    pid: int  # the worker we sent the signal to
    died: int  # the parent's "Child process [pid] died" lines about it
    replacements: int  # workers started after the signal
    still_there: bool  # the signalled process still exists (stopped, never killed)


async def signal_one_worker(cases: Mapping[str, tuple[signal.Signals, float]], wait_for: Iterable[str]) -> dict[str, WorkerFate]:
    """Per case, side by side: ``uvicorn --workers 2 --timeout-worker-healthcheck N``, then ``signal`` to one worker.

    ``cases`` maps a name to ``(signal, N)``. Once every case named in ``wait_for`` has started a
    replacement worker, report what each parent had done by then.
    """
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, UvicornProcess] = {}
        for name, (_, seconds) in cases.items():
            options = ("--workers", "2", "--timeout-worker-healthcheck", f"{seconds:g}")
            servers[name] = await stack.enter_async_context(uvicorn_process(TINY_APP, *options))
        targets: dict[str, int] = {}
        for name, server in servers.items():
            assert await server.started(workers=2)
            targets[name] = int(_WORKER.findall(server.log())[0])
            os.kill(targets[name], cases[name][0])
        for name in wait_for:
            await servers[name].wait_for("Application startup complete", 3)  # the replacement has started
        return {
            name: WorkerFate(
                pid=targets[name],
                died=len(server.lines(f"Child process [{targets[name]}] died")),
                replacements=len(_WORKER.findall(server.log())) - 2,
                still_there=_exists(targets[name]),
            )
            for name, server in servers.items()
        }


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    return True


# --- Going deeper: a Redis client opened in the lifespan (on the PostgreSQL stack) -----------------


async def redis_clients(url: str, *, settled_at: int | None = None, timeout: float = 5.0) -> list[int]:
    """The ids of the client connections the Redis server at ``url`` holds now (``CLIENT LIST``), the asking one left out.

    A client's close reaches the server as the end of its socket, which the server handles in its
    own time: with ``settled_at``, ask again every 5 ms until there are that many (at most
    ``timeout`` s), then return what the server says.
    """
    import redis.asyncio as redis

    async def others(admin: redis.Redis) -> list[int]:
        me = await admin.client_id()
        return sorted(int(c["id"]) for c in await admin.client_list() if int(c["id"]) != me)

    async with redis.from_url(url) as admin:
        ids = await others(admin)
        with anyio.move_on_after(timeout):
            while settled_at is not None and len(ids) != settled_at:
                await anyio.sleep(0.005)
                ids = await others(admin)
    return ids


# --- Exercise 4.2: the orders service and its test suite ---------------------------------------------


def orders_app(resources: Resources) -> FastAPI:
    """The orders service: its lifespan opens ``db`` and ``payments`` and hands them over as lifespan state."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Resource]]:
        async with contextlib.AsyncExitStack() as stack:
            db = await stack.enter_async_context(await resources.open("db"))
            payments = await stack.enter_async_context(await resources.open("payments"))
            yield {"db": db, "payments": payments}

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/orders/{oid}")
    async def order(oid: int, request: Request) -> dict[str, str]:
        db, payments = request.state.db, request.state.payments
        return {"order": await db.query(f"order {oid}"), "paid": await payments.query(f"order {oid}")}

    return app


ClientFor = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]
SUITE: dict[str, tuple[int, ...]] = {  # each test of the suite: the orders it reads (none: it asks GET /health)
    "test_health": (),
    "test_one_order": (7,),
    "test_another_order": (8,),
    "test_two_orders_in_one_test": (9, 10),
}


@dataclass
class SuiteRun:
    """What each test of :data:`SUITE` saw, and the books of the resources the service opened."""

    outcomes: dict[str, str]  # test name -> "passed", or the error or answer that failed it
    resources: Resources
    open_after: dict[str, list[str]] = field(default_factory=dict)  # test name -> what was still open when it ended

    @property
    def failed(self) -> dict[str, str]:
        return {name: said for name, said in self.outcomes.items() if said != "passed"}

    def __str__(self) -> str:
        lines = [f"{name}: {said}" for name, said in self.outcomes.items()]
        return "\n".join([*lines, f"the service's resources: {self.resources}"])


async def run_suite(client_for: ClientFor) -> SuiteRun:
    """Run the suite against one ``orders_app``, as a test runner would: each test gets its own ``client_for(app)``."""
    resources = Resources()
    app = orders_app(resources)
    run = SuiteRun({}, resources)
    for name, orders in SUITE.items():
        run.outcomes[name] = await _one_test(client_for, app, orders)
        run.open_after[name] = list(resources.still_open)
    return run


async def _one_test(client_for: ClientFor, app: FastAPI, orders: tuple[int, ...]) -> str:
    try:
        async with client_for(app) as client:
            if not orders:
                response = await client.get("/health")
                return "passed" if response.status_code == 200 else f"GET /health answered {response.status_code}"
            for oid in orders:
                response = await client.get(f"/orders/{oid}")
                body = response.json() if response.status_code == 200 else None
                if not body or not str(body.get("order", "")).endswith(f"order {oid}"):
                    return f"GET /orders/{oid} answered {response.status_code}: {response.text[:80]}"
            return "passed"
    except Exception as exc:  # noqa: BLE001 - a test that raised: what it raised is what the suite reports
        return f"{type(exc).__name__}: {exc}"
