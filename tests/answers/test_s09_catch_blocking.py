"""Section 9: right and wrong answers for each exercise's check.

9.1's answers are folders holding a catalog service and its test suite, made from the solution's
files with small edits; the check runs each suite in fresh processes (several seconds each).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from asynclab.bench.watchdog import Watchdog
from asynclab.course import authoring
from asynclab.standins.s09_catch_blocking import reports
from tests.conftest import fails, passes

SOLVED = authoring.ROOT / "solutions" / "09-catch-blocking"
HANDED_OUT = authoring.ROOT / "exercises" / "09-catch-blocking"
FIXTURE = """    with blockbuster_ctx(["catalog_service"]) as detector:
        yield detector"""
OFFLOADED = "price = await anyio.to_thread.run_sync(display_price, sku)"


def folder(tmp_path: Path, *, tests: str | None = None, service: str | None = None, edits: dict[str, str] | None = None) -> Path:
    """A copy of the solved folder; ``edits`` replace text in either file (each must match)."""
    tests = tests if tests is not None else (SOLVED / "catalog_tests.py").read_text()
    service = service if service is not None else (SOLVED / "catalog_service.py").read_text()
    for old, new in (edits or {}).items():
        assert (old in tests) != (old in service), old
        tests, service = tests.replace(old, new), service.replace(old, new)
    (tmp_path / "catalog_tests.py").write_text(tests)
    (tmp_path / "catalog_service.py").write_text(service)
    return tmp_path


# --- 9.1 -----------------------------------------------------------------------------------------


def test_9_1_solution_passes() -> None:
    assert "passes on yours" in passes("9.1", SOLVED)


def test_9_1_def_handlers_and_a_manual_detector_pass(tmp_path: Path) -> None:
    service = """
from fastapi import FastAPI, HTTPException

from asynclab.standins.s09_catch_blocking import DESCRIPTIONS, display_price

app = FastAPI()


@app.get("/products/{sku}")
def product(sku: str) -> dict[str, str]:
    return {"sku": sku, "price": display_price(sku)}


@app.get("/products/{sku}/description")
def description(sku: str) -> dict[str, str]:
    path = DESCRIPTIONS / f"{sku}.txt"
    if not path.is_file():
        raise HTTPException(404, "no such product")
    return {"sku": sku, "description": path.read_text(encoding="utf-8")}
"""
    manual = """    detector = BlockBuster(scanned_modules=[catalog_service])
    detector.activate()
    try:
        yield detector
    finally:
        detector.deactivate()"""
    assert "passes on yours" in passes("9.1", folder(tmp_path, service=service, edits={FIXTURE: manual}))


def test_9_1_as_handed_out_fails() -> None:
    fails("9.1", HANDED_OUT, saying="your test suite passed (3 passed")


def test_9_1_fixed_service_without_a_detector_fails(tmp_path: Path) -> None:
    fails(
        "9.1",
        folder(tmp_path, tests=(HANDED_OUT / "catalog_tests.py").read_text()),
        saying="against the catalog service as handed out",
    )


def test_9_1_the_helper_left_on_the_loop_fails(tmp_path: Path) -> None:
    answer = folder(tmp_path, edits={OFFLOADED: "price = display_price(sku)"})
    fails("9.1", answer, saying="your test suite fails on your service: 1 failed")


def test_9_1_waiting_on_a_thread_pool_fails(tmp_path: Path) -> None:
    pooled = "price = concurrent.futures.ThreadPoolExecutor(1).submit(display_price, sku).result()"
    answer = folder(tmp_path, edits={OFFLOADED: pooled, "import anyio": "import concurrent.futures\n\nimport anyio"})
    fails("9.1", answer, saying="BlockingError: Blocking call to lock.acquire")


def test_9_1_allowing_the_block_in_the_route_fails_under_load(tmp_path: Path) -> None:
    allowed = FIXTURE.replace(
        "        yield detector",
        '        detector.functions["time.sleep"].can_block_in("catalog_service.py", "product")\n        yield detector',
    )
    answer = folder(tmp_path, edits={FIXTURE: allowed, OFFLOADED: "price = display_price(sku)"})
    fails("9.1", answer, saying="under load, with blockbuster on, your service raised Blocking call to time.sleep")


def test_9_1_prices_asked_once_at_import_fail(tmp_path: Path) -> None:
    """Quoting every price once, at import, blocks no request, but every page then shows a price that may be stale."""
    at_import = (
        'app = FastAPI()\nPRICES = {sku: display_price(sku) for sku in ("kettle", "teapot", "mug")}  # asked once, at import\n'
    )
    answer = folder(tmp_path, edits={"app = FastAPI()\n": at_import, OFFLOADED: "price = PRICES[sku]"})
    fails(
        "9.1",
        answer,
        saying="after the pricing service changed the price of kettle from 34.90 EUR to 35.40 EUR, "
        "GET /products/kettle still answered '34.90 EUR'",
    )


def test_9_1_not_a_folder_fails() -> None:
    fails("9.1", "catalog_service.py", saying="expected the folder of your service and its tests")


# --- 9.2 -----------------------------------------------------------------------------------------


def build(threshold: float, *, middleware: bool = True, lifespan: bool = True):  # type: ignore[no-untyped-def]
    def build_app() -> FastAPI:
        watchdog = Watchdog(threshold=threshold)
        app = FastAPI(lifespan=watchdog.lifespan) if lifespan else FastAPI()
        if middleware:
            app.add_middleware(watchdog.middleware)
        app.include_router(reports)
        return app

    return build_app


def test_9_2_solution_passes() -> None:
    assert "reported once each" in passes("9.2", build(0.2))


def test_9_2_own_lifespan_and_a_lower_threshold_pass() -> None:
    def build_app() -> FastAPI:
        watchdog = Watchdog(threshold=0.1, interval=0.02)

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with watchdog.running():
                await asyncio.sleep(0)
                yield

        app = FastAPI(lifespan=lifespan)
        app.include_router(reports)
        app.add_middleware(watchdog.middleware)
        return app

    assert "reported once each" in passes("9.2", build_app)


def test_9_2_as_handed_out_fails() -> None:
    fails("9.2", build(1.0, middleware=False), saying="the watchdog logged nothing while GET /invoices/{number}/pdf held")


def test_9_2_threshold_above_the_stall_fails() -> None:
    fails("9.2", build(0.6), saying="the watchdog logged nothing")


def test_9_2_without_the_middleware_fails() -> None:
    fails("9.2", build(0.2, middleware=False), saying="for 2 PDF renders, naming no route ('no request')")


def test_9_2_never_started_fails() -> None:
    fails("9.2", build(0.2, lifespan=False), saying="the watchdog logged nothing")


def test_9_2_threshold_below_the_heartbeat_fails() -> None:
    failed = fails("9.2", build(0.001), saying="the watchdog ")
    assert (
        "far more reports than stalls" in str(failed)
        or "expected one report per stall" in str(failed)
        or "which waits" in str(failed)
    )


def test_9_2_returning_the_watchdog_fails() -> None:
    fails("9.2", lambda: Watchdog(threshold=0.2), saying="expected a function that returns a FastAPI app")


@pytest.mark.parametrize("exercise", ["9.1", "9.2"])
def test_9_hints_are_at_least_two(exercise: str) -> None:
    from asynclab.course.checking import get

    assert len(get(exercise).hints) >= 2


# --- Lesson 9 on the PostgreSQL stack: its harness for a real driver under both guards ---------------

STOCK = """
import psycopg
from fastapi import FastAPI

DSN = ""
TAKE_ONE = "UPDATE stock SET left_over = left_over - 1 WHERE sku = 'tea' RETURNING left_over"
app = FastAPI()


@app.post("/sync")
async def take_sync() -> dict[str, int]:
    with psycopg.connect(DSN) as conn:
        return {"left": conn.execute(TAKE_ONE).fetchone()[0]}


@app.post("/async")
async def take_async() -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        return {"left": (await (await conn.execute(TAKE_ONE)).fetchone())[0]}


@app.post("/elsewhere")
async def elsewhere() -> dict[str, int]:
    return {"left": -1}


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}
"""


def test_9_lesson_a_sync_psycopg_query_is_seen_by_the_stall_guard_alone(tmp_path: Path, on_postgres: None) -> None:
    """The sync query holds the loop until the stall guard will count it; the async one lets 20 requests through."""
    from asynclab.standins.s09_catch_blocking import driver_runs

    (tmp_path / "stock.py").write_text(STOCK, encoding="utf-8")
    runs = asyncio.run(driver_runs(tmp_path / "stock.py", ["/sync", "/async", "/elsewhere"]))
    sync, fixed, elsewhere = runs.values()
    assert sync.status == fixed.status == elsewhere.status == 200
    assert sync.blockbuster == fixed.blockbuster == "passed"
    assert sync.released_because == "the stall guard saw the stall" and sync.answered_while_waiting == 0 and sync.stalls
    assert [route for route, _ in sync.reports].count("POST /sync") == 1
    assert fixed.released_because == "20 other requests were answered" and fixed.answered_while_waiting >= 20
    assert elsewhere.released_because == "nobody waited"  # the row is let go on events: none came
