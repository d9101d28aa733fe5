"""Section 9's bench: the vendors' stand-ins of its two sample services, and a way to run a test suite.

- Exercise 9.1's catalog service shows product pages: ``display_price`` (a helper from "the pricing
  team's package") looks harmless and calls a blocking price SDK; the product descriptions are
  text files in :data:`DESCRIPTIONS`. The SDK records, for every call, whether the event loop was
  free while it blocked, asked of the loop itself (see :class:`PriceFeed`).
- Exercise 9.2's reports service (:data:`reports`) has one route that renders a PDF on the loop,
  one that waits for a slow upstream without blocking, and a health check.
- :func:`run_suite` runs a pytest suite in a fresh process, as a developer or CI would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
from fastapi import APIRouter

from asynclab.bench.workspace import workspace

SECTION = "09-catch-blocking"  # its module folder
SERVICE, SUITE = "catalog_service.py", "catalog_tests.py"
PRODUCTS = {"kettle": 3490, "teapot": 2450, "mug": 890}
DESCRIPTIONS = Path(tempfile.mkdtemp(prefix="catalog-", dir=workspace()))  # removed when the process exits
for _sku in PRODUCTS:
    (DESCRIPTIONS / f"{_sku}.txt").write_text(f"The {_sku}: a customer favourite.", encoding="utf-8")


class PriceFeed:
    """The pricing team's SDK: ``quote`` blocks the calling thread for ``latency`` seconds.

    While a check watches a loop (``watching(loop)``), every call asks that loop to run a tiny
    callback at its start, from the call's own thread, and looks at the end whether it ran. A free
    loop runs it at once; a loop that waits for the call (the call runs on it, or the loop waits
    for a thread's result) cannot. An order of events, not a clock.
    """

    def __init__(self, latency: float = 0.05) -> None:
        self.latency = latency
        self.loop: asyncio.AbstractEventLoop | None = None
        self.calls = self.loop_held = 0
        self.cents = dict(PRODUCTS)  # the prices the pricing team quotes now: they change (see reprice)
        self._lock = threading.Lock()

    @contextmanager
    def watching(self, loop: asyncio.AbstractEventLoop) -> Iterator[PriceFeed]:
        with self._lock:
            self.loop, self.calls, self.loop_held = loop, 0, 0
        try:
            yield self
        finally:
            self.loop = None
            with self._lock:
                self.cents = dict(PRODUCTS)

    def reprice(self, sku: str, cents: int) -> None:
        """The pricing team changes a price: every quote from now on says ``cents``."""
        with self._lock:
            self.cents[sku] = cents

    def quote(self, sku: str) -> int:
        loop, ran = self.loop, threading.Event()
        try:
            on_loop = loop is not None and asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if loop is not None and not on_loop:
            loop.call_soon_threadsafe(ran.set)
        time.sleep(self.latency)  # the HTTP round trip of a sync client
        if loop is not None and not on_loop:
            ran.wait(0.5)  # a loop that waited for us runs the callback as soon as we return
        with self._lock:
            self.calls += 1
            self.loop_held += loop is not None and not ran.is_set()
            return self.cents.get(sku, 0)


prices = PriceFeed()


def price_text(cents: int) -> str:
    """A price as a page shows it, e.g. ``'34.90 EUR'``."""
    return f"{cents // 100}.{cents % 100:02d} EUR"


def display_price(sku: str) -> str:
    """The price of ``sku`` as shown on the page, e.g. ``'34.90 EUR'``: quoted by the pricing service now."""
    return price_text(prices.quote(sku))


# --- Exercise 9.2: the reports service ------------------------------------------------------------

RENDER_SECONDS = 0.5  # the PDF library holds the thread (and the loop, when called on it)
UPSTREAM_SECONDS = 0.5  # the exchange-rate provider is slow, but awaited
reports = APIRouter()


def render_pdf(number: int) -> bytes:
    """A sync PDF library."""
    time.sleep(RENDER_SECONDS)
    return b"%PDF-1.7 invoice " + str(number).encode()


@reports.get("/invoices/{number}/pdf")
async def invoice_pdf(number: int) -> dict[str, object]:
    return {"number": number, "bytes": len(render_pdf(number))}


@reports.get("/rates")
async def rates() -> dict[str, float]:
    await anyio.sleep(UPSTREAM_SECONDS)
    return {"EUR": 1.0, "USD": 1.08}


@reports.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


# --- Running a suite and importing a service ------------------------------------------------------


@dataclass
class SuiteResult:
    returncode: int
    output: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0

    @property
    def summary(self) -> str:
        lines = [line.strip("= ") for line in self.output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
        return lines[-1] if lines else f"pytest exited with {self.returncode}"

    def errors(self) -> list[str]:
        """The distinct ``E   SomeError: ...`` lines of the failures, in order."""
        found = [m.strip() for m in re.findall(r"^E\s+(?:[\w.]+\.)?(\w+(?:Error|Exception): .*)$", self.output, re.MULTILINE)]
        return list(dict.fromkeys(found))


def run_suite(folder: Path, *args: str, timeout: float = 60) -> SuiteResult:
    """Run ``pytest`` on the suite in ``folder``, in a fresh process, as a developer or CI would.

    Only the anyio plugin, no configuration from the folders above, and nothing written to disk
    (no cache, no bytecode), so the folder stays as it was.
    """
    folder = Path(folder).resolve()
    with tempfile.TemporaryDirectory(prefix="suite-") as config:
        ini = Path(config) / "pytest.ini"
        ini.write_text("[pytest]\npython_files = test_*.py *_tests.py\n", encoding="utf-8")
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        command = [sys.executable, "-m", "pytest", "-q", "-c", str(ini), "--rootdir", str(folder), "--confcutdir", str(folder),
                   "-p", "anyio.pytest_plugin", "-p", "no:cacheprovider", "--tb=short", "--color=no", *args]
        done = subprocess.run(command, check=False, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    return SuiteResult(done.returncode, done.stdout + done.stderr)


async def arun_suite(folder: Path, *args: str, timeout: float = 60) -> SuiteResult:
    """:func:`run_suite` without blocking the event loop."""
    return await anyio.to_thread.run_sync(lambda: run_suite(folder, *args, timeout=timeout))


_imports = itertools.count(1)


def import_file(path: Path, stem: str = "service") -> ModuleType:
    """A fresh copy of the module in ``path``, under a new name (new globals, a new app)."""
    from asynclab.bench.modules import load_module

    return load_module(path, f"{stem}_{next(_imports)}")


def handed_out(name: str = SERVICE) -> str:
    """Exercise 9.1's file ``name`` exactly as handed out (made from the solution)."""
    from asynclab.course import authoring

    solution = authoring.find_solution(SECTION)
    return authoring.handed_out(solution)[Path(SECTION) / name]


# --- Lesson 9's harness: the capstone's service under a watchdog ------------------------------------

ORDER = {"email": "ada@example.com", "amount_cents": 1250, "card": "4242 4242 4242 4242"}  # the capstone's GOOD_CARD
STAFF = {"Authorization": "Bearer tok-ada"}


@dataclass
class WatchedRun:
    """What :func:`orders_under_watch` saw: the two orders' status codes, the watchdog and what it logged."""

    statuses: list[int]
    reports: list[logging.LogRecord]
    watchdog: Any


async def orders_under_watch(
    path: Path, watched: Callable[[ModuleType], Any], *, real_server: bool, latency: float = 0.5
) -> WatchedRun:
    """Staff place two orders, one after the other, while readers browse ``/docs``: a fresh copy of the service in ``path``.

    The copy gets a database of its own, a payment vendor that takes ``latency`` s a charge, and
    whatever ``watched(service)`` sets up (it returns the watchdog), which runs while the orders
    are placed. It is served by a real uvicorn (h11) on the kernel's loop, or in-process.
    """
    from asynclab.bench.inprocess import inprocess_client
    from asynclab.bench.probes import capture_logs
    from asynclab.bench.server import uvicorn_server
    from asynclab.standins.s08_capstone import database_url, prepare_database, settings

    settings.database_url = database_url(Path(tempfile.mkdtemp(prefix="orders-", dir=workspace())) / "orders.db")
    await prepare_database(settings.database_url)
    settings.payments_latency, was = latency, settings.payments_latency
    service = import_file(path, "orders")
    watchdog = watched(service)
    try:
        with warnings.catch_warnings(), capture_logs("orders"), capture_logs("watchdog") as said:
            warnings.simplefilter("ignore")  # the handed-out service's other faults: not this lesson's topic
            async with contextlib.AsyncExitStack() as stack:
                if real_server:
                    url = await stack.enter_async_context(uvicorn_server(service.app, http="h11"))
                    client = await stack.enter_async_context(httpx.AsyncClient(base_url=url))
                else:
                    client = await stack.enter_async_context(inprocess_client(service.app))
                await client.get("/docs")  # warm up before watching
                async with watchdog.running():
                    readers = asyncio.create_task(_browse(client))
                    orders = [await client.post("/orders", json=ORDER, headers=STAFF) for _ in range(2)]
                    await readers
    finally:
        settings.payments_latency = was
    return WatchedRun([o.status_code for o in orders], said.records, watchdog)


async def _browse(client: httpx.AsyncClient) -> None:
    for _ in range(10):
        await client.get("/docs")


# --- Which guard catches which block: lesson 9 and the take-home template --------------------------

GUARD_ROWS = {
    "time.sleep in a route": """
        import time

        from fastapi import FastAPI

        BLOCK = 0.2
        app = FastAPI()


        @app.get("/")
        async def route() -> None:
            time.sleep(BLOCK)
    """,
    "a sync driver, waiting in C (psycopg 3)": """
        from typing import Any

        from fastapi import FastAPI

        BLOCK = 0.2
        driver: Any = None  # a sync database driver: the harness gives it one
        app = FastAPI()


        @app.get("/")
        async def route() -> None:
            driver.query()
    """,
    "CPU in pure Python": """
        import time

        from fastapi import FastAPI

        BLOCK = 0.2
        app = FastAPI()


        @app.get("/")
        async def route() -> None:
            deadline = time.monotonic() + BLOCK
            while time.monotonic() < deadline:
                sum(i * i for i in range(10_000))
    """,
    "CPU in C (hashlib.pbkdf2_hmac)": """
        import hashlib
        import time

        from fastapi import FastAPI

        BLOCK = 0.2
        app = FastAPI()


        @app.get("/")
        async def route() -> None:
            deadline = time.monotonic() + BLOCK
            while time.monotonic() < deadline:
                hashlib.pbkdf2_hmac("sha256", b"secret", b"salt", 10_000)
    """,
    "a sync client in the lifespan": """
        import time
        from collections.abc import AsyncIterator
        from contextlib import asynccontextmanager

        from fastapi import FastAPI

        BLOCK = 0.2


        def fetch_settings() -> dict[str, str]:
            time.sleep(BLOCK)  # the settings service's sync client
            return {"greeting": "Hei"}


        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            app.state.settings = fetch_settings()
            yield


        app = FastAPI(lifespan=lifespan)


        @app.get("/")
        async def route() -> None:
            pass
    """,
}
GUARDS = ("ruff", "blockbuster per test", "blockbuster from startup", "stall guard")


class CDriver:
    """A sync database driver as psycopg 3 is one: libpq, in C, sends the query and waits for the reply.

    ``query()`` sends one byte with libc's ``send`` and waits in libc's ``recv`` (via ctypes,
    below anything blockbuster wraps) for the server's answer, which a thread of ours sends
    ``latency`` seconds later. Make one with :func:`c_driver`, which stops that thread at the end.
    """

    def __init__(self, latency: float) -> None:
        import ctypes
        import socket

        self.latency = latency
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._mine, self._server = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="c-driver-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._mine.close()  # the server's recv returns b"": it stops
        self._thread.join()
        self._server.close()

    def _serve(self) -> None:
        while self._server.recv(1):
            time.sleep(self.latency)  # the database at work
            self._server.send(b"r")

    def query(self) -> None:
        import ctypes

        buffer = ctypes.create_string_buffer(1)
        if self._libc.send(self._mine.fileno(), b"q", 1, 0) != 1 or self._libc.recv(self._mine.fileno(), buffer, 1, 0) != 1:
            raise OSError(ctypes.get_errno(), "the driver lost its connection")


@contextmanager
def c_driver(latency: float) -> Iterator[CDriver]:
    """A :class:`CDriver` whose server answers after ``latency`` seconds, running until the block ends."""
    driver = CDriver(latency)
    try:
        yield driver
    finally:
        driver.close()


@dataclass
class GuardTable:
    """Which guard caught which block: ``caught[row][guard]``, and what ruff said about each row."""

    caught: dict[str, dict[str, bool]]
    ruff: dict[str, list[str]]

    def __str__(self) -> str:
        width = max(map(len, self.caught))
        lines = [(" " * width + "".join(f"  {guard:<26}" for guard in GUARDS)).rstrip()]
        for row, verdicts in self.caught.items():
            marks = [
                ("caught" if verdicts[guard] else "missed")
                + (f" ({', '.join(self.ruff[row])})" if guard == "ruff" and self.ruff[row] else "")
                for guard in GUARDS
            ]
            lines.append((f"{row:<{width}}" + "".join(f"  {mark:<26}" for mark in marks)).rstrip())
        return "\n".join(lines)


async def which_guard_catches_what(stall: float = 0.2, threshold: float = 0.05) -> GuardTable:
    """Plant each block of :data:`GUARD_ROWS` in a small service and run it under each guard of :data:`GUARDS`.

    ruff lints the file with the template's configuration (templates/keep-the-rules). The
    service then starts, serves ``GET /`` once and stops, with blockbuster switched on after
    startup and off before shutdown (a fixture per test, under a module-scoped client), with
    blockbuster on from before startup to after shutdown (the template's session fixture), and
    under the template's stall guard at ``threshold`` seconds. blockbuster's verdicts do not
    depend on time, so its runs block for 0.01 s; the stall guard's block for ``stall``
    seconds, which its heartbeat cannot miss: it runs at least ``stall - 0.01`` s late, and a
    late beat counts from ``3 * threshold``. About ``len(GUARD_ROWS) * stall`` seconds in all.
    """
    import json
    import textwrap

    from asgi_lifespan import LifespanManager
    from blockbuster import BlockingError, blockbuster_ctx

    from asynclab.bench.watchdog import StallGuard

    if 3 * threshold >= stall - 0.01:
        raise ValueError(f"a {stall} s stall would not be far enough above a {threshold} s threshold")
    folder = Path(tempfile.mkdtemp(prefix="guards-", dir=workspace()))
    files = {row: folder / f"row_{n}.py" for n, row in enumerate(GUARD_ROWS)}
    for row, path in files.items():
        path.write_text(textwrap.dedent(GUARD_ROWS[row]).lstrip(), encoding="utf-8")
    config = Path(__file__).resolve().parents[3] / "templates" / "keep-the-rules" / "pyproject.toml"
    ruff_check = [sys.executable, "-m", "ruff", "check", "--no-cache", "--exit-zero", "--output-format", "json"]
    linted = await anyio.run_process([*ruff_check, "--config", str(config), *map(str, files.values())], check=True)
    findings = json.loads(linted.stdout)
    ruff = {row: sorted(f["code"] for f in findings if Path(f["filename"]).samefile(path)) for row, path in files.items()}

    async def served(row: str, block: float, guard: str) -> bool:
        module = import_file(files[row], "guarded")
        with c_driver(block) as driver, contextlib.ExitStack() as around:
            vars(module).update(BLOCK=block, driver=driver)
            guard_stalls = StallGuard(threshold) if guard == "stall guard" else None
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if guard == "blockbuster from startup":
                        around.enter_context(blockbuster_ctx([module]))
                    if guard_stalls is not None:
                        await stack.enter_async_context(guard_stalls.watching())
                    manager = await stack.enter_async_context(LifespanManager(module.app))
                    client = await stack.enter_async_context(
                        httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://guarded")
                    )
                    with blockbuster_ctx([module]) if guard == "blockbuster per test" else contextlib.nullcontext():
                        await client.get("/")
                    if guard_stalls is not None:
                        await asyncio.sleep(0.05)  # a turn of the loop after the stall: the heartbeat measures it
            except BlockingError:
                return True
        return bool(guard_stalls.take()) if guard_stalls is not None else False

    caught: dict[str, dict[str, bool]] = {}
    for row in GUARD_ROWS:
        caught[row] = {"ruff": bool(ruff[row])}
        for guard in GUARDS[1:]:
            caught[row][guard] = await served(row, stall if guard == "stall guard" else 0.01, guard)
    return GuardTable(caught, ruff)
