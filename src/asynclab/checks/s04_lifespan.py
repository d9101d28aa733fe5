"""Checks for section 4, startup and shutdown with lifespan."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import httpx

from asynclab.bench.inprocess import inprocess_client, lifespan_started
from asynclab.bench.server import uvicorn_server
from asynclab.checks._harness import build_app
from asynclab.course.checking import exercise, fail
from asynclab.course.mistakes import warning_text
from asynclab.standins.s04_lifespan import Resources, SuiteRun, orders_app, run_suite

NEEDED = ("db", "payments")


def _order_body(run: int, oid: int) -> dict[str, str]:
    return {"order": f"db #{run}: order {oid}", "paid": f"payments #{run}: order {oid}"}


def _build_quietly(factory: Callable[[Resources], Any], resources: Resources) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return build_app(factory, resources)


async def _get_order(client: httpx.AsyncClient, oid: int, where: str) -> Any:
    response = await client.get(f"/orders/{oid}")
    if response.status_code != 200:
        fail(f"{where}: GET /orders/{oid} answered {response.status_code}: {response.text[:120]}", 1)
    return response.json()


@exercise(
    "4.1",
    "Migrate from on_event to a lifespan",
    hints=[
        (
            "`on_event` is deprecated: put the startup code and the shutdown code in one `@asynccontextmanager` "
            "function, around a `yield`, and pass it as `FastAPI(lifespan=...)`."
        ),
        (
            "Keep them where the handler finds them, set in the lifespan: on `app.state` "
            "(`app.state.db = await resources.open('db')`; the handler reads `request.app.state.db`, as now), or as "
            "lifespan state (`yield {'db': db, 'payments': payments}`, read as `request.state.db`). Both are per worker."
        ),
        (
            "Open inside `async with AsyncExitStack() as stack:` and register each close right after its open with "
            "`stack.push_async_callback(db.aclose)`: what was opened is closed, also when a later open fails."
        ),
    ],
)
async def migrate_to_lifespan(factory: Callable[[Resources], Any]) -> str:
    resources = Resources()
    app = _built_without_deprecation(factory, resources)
    await _one_clean_run(app, resources)
    await _startup_failing_half_way(factory)
    return (
        "no deprecation warning; db and payments opened once at startup and closed once at shutdown; a startup failing "
        "at payments stopped the app and closed db."
    )


def _built_without_deprecation(factory: Callable[[Resources], Any], resources: Resources) -> Any:
    """1. Building the app must not use the deprecated decorator."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = build_app(factory, resources)
    deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    if deprecated:
        fail(f"building the app emitted a DeprecationWarning: {warning_text(deprecated[0].message)}", 0)
    return app


async def _one_clean_run(app: Any, resources: Resources) -> None:
    """2. One clean run: each resource opened once at startup, used by the handler, closed once at shutdown."""
    async with inprocess_client(app) as client:
        started = sorted(resources.opened)
        if started != sorted(NEEDED):
            if not started:
                fail(
                    "the app started, but its startup opened nothing: is the lifespan passed as FastAPI(lifespan=...)?",
                    0,
                )
            fail(f"startup opened {', '.join(started)}; expected db and payments, once each", 0)
        body = await _get_order(client, 7, "after startup")
    if body != _order_body(1, 7):
        fail(f"GET /orders/7 answered {body!r}, expected {_order_body(1, 7)!r}", "Keep what the handler returns as it was.")
    if sorted(resources.opened) != sorted(NEEDED):
        fail(f"during one run the app opened {', '.join(resources.opened)}: open each resource once, at startup", 0)
    if resources.still_open:
        fail(f"after shutdown, {' and '.join(resources.still_open)} still open ({resources})", 2)
    if sorted(resources.closed) != sorted(NEEDED):
        fail(f"shutdown closed {', '.join(resources.closed) or 'nothing'}; expected db and payments, once each", 2)


async def _startup_failing_half_way(factory: Callable[[Resources], Any]) -> None:
    """4. A startup that fails half-way must stop the app and close what it had opened."""
    resources = Resources(fail_on="payments")
    app = _build_quietly(factory, resources)
    try:
        async with lifespan_started(app):
            pass
    except ConnectionError:
        pass
    else:
        fail("payments could not connect, yet the app finished its startup and would serve requests without it", 2)
    if resources.still_open:
        fail(f"payments could not connect and the startup stopped there, but {' and '.join(resources.still_open)} stayed open", 2)


# --- 4.2 -------------------------------------------------------------------------------------------


@exercise(
    "4.2",
    "Find why the tests fail and production works",
    hints=[
        (
            "The service is fine: uvicorn serves it. Compare what uvicorn does before it serves its first request with "
            "what the suite's test client does: where does request.state.db come from?"
        ),
        (
            "httpx's ASGITransport only sends requests: nothing runs the app's lifespan, so db and payments are never "
            "opened, nor yielded as lifespan state. `LifespanManager(app)`, from asgi_lifespan, runs it around each test."
        ),
        (
            "Hand the transport the manager's app, which carries the lifespan state: `async with LifespanManager(app) as "
            "manager:`, then `httpx.ASGITransport(app=manager.app)`."
        ),
    ],
)
async def tests_reach_the_service(client_for: Callable[[Any], Any]) -> str:
    if not callable(client_for):
        fail(
            f"expected the function client_for; got {type(client_for).__name__}",
            'Pass the function itself: check("4.2", client_for).',
        )
    in_production = await _on_uvicorn()
    run = await run_suite(client_for)
    _judge_suite(run, in_production)
    passed = len(run.outcomes)
    return (
        f"{passed} of {passed} tests passed: each started the service (db and payments opened once), reached it through "
        f"the client as uvicorn's clients do ({in_production}), and stopped it (both closed)."
    )


async def _on_uvicorn() -> str:
    """What the same service answers on a real uvicorn: the suite's failure is the test client's, not the app's."""
    async with uvicorn_server(orders_app(Resources()), lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/orders/7")
    return f"GET /orders/7: {response.status_code}"


def _judge_suite(run: SuiteRun, in_production: str) -> None:
    """Fail on what the suite saw, the symptom first."""
    failed = run.failed
    opened = run.resources.opened
    errors = {said.split(":", 1)[0] for said in failed.values()}
    if failed and len(failed) == len(run.outcomes) and not opened and "AttributeError" not in errors:
        first = next(iter(failed.values()))
        fail(
            f"every test of the suite failed before its first answer: {first[:120]}",
            "Keep client_for an async context manager that yields an httpx client.",
        )
    if failed and not opened:
        names = ", ".join(failed)
        fail(
            f"{len(failed)} of the suite's {len(run.outcomes)} tests failed ({names}): {next(iter(failed.values()))[:90]}. "
            f"test_health passed, and on uvicorn the same service answers {in_production}.",
            0,
        )
    closed_early = [said for said in failed.values() if said.startswith("ResourceClosedError")]
    if closed_early:
        fail(
            f"the service was stopped before the test's requests: {closed_early[0][:80]}.",
            "Keep the requests inside the LifespanManager's block: leaving it runs the app's shutdown.",
        )
    if failed:
        fail(
            f"db and payments were opened for each test ({len(opened) // 2} times), yet {len(failed)} of the suite's "
            f"{len(run.outcomes)} tests still failed: {next(iter(failed.values()))[:90]}. The requests did not get what was "
            "opened.",
            2,
        )
    left_open = {name: still for name, still in run.open_after.items() if still}
    if left_open:
        name, still = next(iter(left_open.items()))
        fail(
            (
                f"all tests passed, but after {name} {' and '.join(still)} were still open: each test must stop the service it "
                "started."
            ),
            "Leave the LifespanManager's block when the test ends: leaving it runs the app's shutdown.",
        )
    per_test = len(run.outcomes)
    if sorted(opened) != sorted(["db", "payments"] * per_test):
        fail(
            f"all tests passed, but the service opened {', '.join(opened)}: expected db and payments once per test",
            "Start the service once per test client, with its lifespan.",
        )
