"""Section 9's bench: the vendors' stand-ins of its two sample services (9.1's catalog, 9.2's reports), and a suite runner."""

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
    """The price of ``sku`` as shown on the page, e.g. ``'34.90 EUR'``: quoted by the pricing service now.

    Exercise 9.1's catalog calls it: a helper from "the pricing team's package" that looks harmless
    and calls the blocking price SDK (:class:`PriceFeed`).
    """
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
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-c",
            str(ini),
            "--rootdir",
            str(folder),
            "--confcutdir",
            str(folder),
            "-p",
            "anyio.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "--tb=short",
            "--color=no",
            *args,
        ]
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


# --- Which guard catches which block: lesson 9 and the take-home template (its own module) ----------

from asynclab.standins._s09_guards import (  # noqa: F401 - the lesson imports them from here
    GUARD_ROWS,
    GUARDS,
    REAL_DRIVER_ROW,
    CDriver,
    GuardTable,
    c_driver,
    which_guard_catches_what,
)
from asynclab.standins._s09_postgres import DriverRun, driver_runs  # noqa: F401 - lesson 9 on the PostgreSQL stack
