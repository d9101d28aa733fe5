"""Section 4: each check accepts different correct answers and rejects plausible wrong ones."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI, Request

from asynclab.bench.inprocess import inprocess_client
from asynclab.standins.s04_lifespan import Resource, Resources
from tests.conftest import fails, passes

# --- 4.1 -------------------------------------------------------------------------------------------


def add_order_route(app: FastAPI) -> None:
    @app.get("/orders/{oid}")
    async def order(oid: int, request: Request) -> dict[str, str]:
        db, payments = request.state.db, request.state.payments
        return {"order": await db.query(f"order {oid}"), "paid": await payments.query(f"order {oid}")}


def with_exit_stack(resources: Resources) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Resource]]:
        async with AsyncExitStack() as stack:
            db = await resources.open("db")
            stack.push_async_callback(db.aclose)
            payments = await resources.open("payments")
            stack.push_async_callback(payments.aclose)
            yield {"db": db, "payments": payments}

    app = FastAPI(lifespan=lifespan)
    add_order_route(app)
    return app


def with_nested_async_with(resources: Resources) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Resource]]:
        async with await resources.open("db") as db, await resources.open("payments") as payments:
            yield {"db": db, "payments": payments}

    app = FastAPI(lifespan=lifespan)
    add_order_route(app)
    return app


async def get_db(request: Request) -> Resource:
    return request.state.db  # type: ignore[no-any-return]


async def get_payments(request: Request) -> Resource:
    return request.state.payments  # type: ignore[no-any-return]


def with_try_finally_and_a_dependency(resources: Resources) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Resource]]:
        db = await resources.open("db")
        try:
            payments = await resources.open("payments")
            try:
                yield {"db": db, "payments": payments}
            finally:
                await payments.aclose()
        finally:
            await db.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/orders/{oid}")
    async def order(
        oid: int, db: Annotated[Resource, Depends(get_db)], payments: Annotated[Resource, Depends(get_payments)]
    ) -> dict[str, str]:
        return {"order": await db.query(f"order {oid}"), "paid": await payments.query(f"order {oid}")}

    return app


def as_handed_out(resources: Resources) -> FastAPI:
    app = FastAPI()

    @app.on_event("startup")
    async def connect() -> None:
        app.state.db = await resources.open("db")
        app.state.payments = await resources.open("payments")

    @app.on_event("shutdown")
    async def disconnect() -> None:
        await app.state.payments.aclose()
        await app.state.db.aclose()

    @app.get("/orders/{oid}")
    async def order(oid: int, request: Request) -> dict[str, str]:
        db, payments = request.app.state.db, request.app.state.payments
        return {"order": await db.query(f"order {oid}"), "paid": await payments.query(f"order {oid}")}

    return app


def lifespan_on_app_state(resources: Resources) -> FastAPI:
    """The guide's way: a lifespan, but the resources stored on app.state."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.db = await resources.open("db")
            stack.push_async_callback(app.state.db.aclose)
            app.state.payments = await resources.open("payments")
            stack.push_async_callback(app.state.payments.aclose)
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/orders/{oid}")
    async def order(oid: int, request: Request) -> dict[str, str]:
        db, payments = request.app.state.db, request.app.state.payments
        return {"order": await db.query(f"order {oid}"), "paid": await payments.query(f"order {oid}")}

    return app


def lifespan_with_closure_holder(resources: Resources) -> FastAPI:
    """A dict of the app's own, filled in the lifespan: per worker, like app.state (a check cannot tell them apart)."""
    held: dict[str, Resource] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            held["db"] = await stack.enter_async_context(await resources.open("db"))
            held["payments"] = await stack.enter_async_context(await resources.open("payments"))
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/orders/{oid}")
    async def order(oid: int) -> dict[str, str]:
        return {"order": await held["db"].query(f"order {oid}"), "paid": await held["payments"].query(f"order {oid}")}

    return app


def app_state_in_an_exit_stack(resources: Resources) -> FastAPI:
    """app.state set in the lifespan, each close registered with the open in one line."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.db = await stack.enter_async_context(await resources.open("db"))
            app.state.payments = await stack.enter_async_context(await resources.open("payments"))
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/orders/{oid}")
    async def order(oid: int, request: Request) -> dict[str, str]:
        db, payments = request.app.state.db, request.app.state.payments
        return {"order": await db.query(f"order {oid}"), "paid": await payments.query(f"order {oid}")}

    return app


def opened_on_first_request(resources: Resources) -> FastAPI:
    """No lifespan: the clients are opened lazily by the first request, kept in a dict, and never closed."""
    clients: dict[str, Resource] = {}
    app = FastAPI()

    @app.get("/orders/{oid}")
    async def order(oid: int) -> dict[str, str]:
        for name in ("db", "payments"):
            if name not in clients:
                clients[name] = await resources.open(name)
        return {"order": await clients["db"].query(f"order {oid}"), "paid": await clients["payments"].query(f"order {oid}")}

    return app


def straight_line_lifespan(resources: Resources) -> FastAPI:
    """Open, yield, close: fine on a good day, leaks db when payments fails to connect."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Resource]]:
        db = await resources.open("db")
        payments = await resources.open("payments")
        yield {"db": db, "payments": payments}
        await payments.aclose()
        await db.aclose()

    app = FastAPI(lifespan=lifespan)
    add_order_route(app)
    return app


def forgets_to_close_db(resources: Resources) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Resource]]:
        async with AsyncExitStack() as stack:
            db = await resources.open("db")
            payments = await stack.enter_async_context(await resources.open("payments"))
            yield {"db": db, "payments": payments}

    app = FastAPI(lifespan=lifespan)
    add_order_route(app)
    return app


def swallows_the_startup_error(resources: Resources) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(await resources.open("db"))
            payments: Resource | None = None
            with contextlib.suppress(ConnectionError):
                payments = await stack.enter_async_context(await resources.open("payments"))
            yield {"db": db, "payments": payments}

    app = FastAPI(lifespan=lifespan)
    add_order_route(app)
    return app


def lifespan_not_passed(resources: Resources) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Resource]]:
        async with await resources.open("db") as db, await resources.open("payments") as payments:
            yield {"db": db, "payments": payments}

    app = FastAPI()  # the lifespan is written, but never handed to the app
    add_order_route(app)
    return app


def test_4_1_accepts_exit_stack_nested_with_and_try_finally() -> None:
    assert "closed db" in passes("4.1", with_exit_stack)
    passes("4.1", with_nested_async_with)
    passes("4.1", with_try_finally_and_a_dependency)


def test_4_1_rejects_the_handed_out_on_event_app() -> None:
    fails("4.1", as_handed_out, saying="building the app emitted a DeprecationWarning: on_event is deprecated")


def test_4_1_accepts_app_state_set_in_the_lifespan() -> None:
    """The one answer: lifespan state or app.state set inside the lifespan, both per worker, both fine."""
    assert "closed db" in passes("4.1", lifespan_on_app_state)
    passes("4.1", app_state_in_an_exit_stack)
    passes("4.1", lifespan_with_closure_holder)


def test_4_1_rejects_clients_opened_by_the_first_request() -> None:
    fails("4.1", opened_on_first_request, saying="the app started, but its startup opened nothing")


def test_4_1_rejects_a_lifespan_that_leaks_when_startup_fails_half_way() -> None:
    failure = fails(
        "4.1", straight_line_lifespan, saying="payments could not connect and the startup stopped there, but db stayed open"
    )
    assert "AsyncExitStack" in failure.hint


def test_4_1_rejects_a_missing_close_a_swallowed_error_and_an_unused_lifespan() -> None:
    fails("4.1", forgets_to_close_db, saying="after shutdown, db still open")
    fails("4.1", swallows_the_startup_error, saying="payments could not connect, yet the app finished its startup")
    fails("4.1", lifespan_not_passed, saying="its startup opened nothing: is the lifespan passed")


# --- 4.2 -------------------------------------------------------------------------------------------


@asynccontextmanager
async def bare_transport(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """As handed out: ASGITransport alone runs no lifespan."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


@asynccontextmanager
async def manager_but_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The lifespan runs, but the transport is given `app`: the lifespan state never reaches the requests."""
    async with LifespanManager(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


@asynccontextmanager
async def manager_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@asynccontextmanager
async def the_course_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with inprocess_client(app) as client:
        yield client


@asynccontextmanager
async def lifespan_by_hand(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The lifespan context entered by hand, its state put in each request's scope, as a server does."""
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            await app({**scope, "state": dict(state or {})}, receive, send)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=with_state), base_url="http://test") as client:
            yield client


@asynccontextmanager
async def started_never_stopped(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The startup run by hand, its state passed on as a server does; the shutdown forgotten."""
    lifespan = app.router.lifespan_context(app)
    state = await lifespan.__aenter__()

    async def with_state(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "state": dict(state or {})}, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=with_state), base_url="http://test") as client:
        yield client


@asynccontextmanager
async def stopped_before_the_test(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The service started and stopped before the test's first request."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def not_a_context_manager(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The decorator forgotten: calling it gives an async generator, which `async with` refuses."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def test_4_2_accepts_a_test_client_that_runs_the_lifespan() -> None:
    for answer in (manager_app, the_course_client, lifespan_by_hand):
        assert "4 of 4 tests passed" in passes("4.2", answer)


def test_4_2_rejects_the_bare_transport_with_the_symptom_only() -> None:
    failure = fails(
        "4.2",
        bare_transport,
        saying="3 of the suite's 4 tests failed (test_one_order, test_another_order, test_two_orders_in_one_test): "
        "AttributeError: 'State' object has no attribute 'db'",
    )
    assert "on uvicorn the same service answers GET /orders/7: 200" in failure.observed
    assert not any(word in failure.observed for word in ("lifespan", "LifespanManager", "manager.app", "startup"))


def test_4_2_rejects_a_lifespan_whose_state_never_reaches_the_requests() -> None:
    failure = fails("4.2", manager_but_app, saying="db and payments were opened for each test (4 times), yet 3 of")
    assert "manager.app" in failure.hint


def test_4_2_rejects_a_service_never_stopped_or_stopped_too_soon_and_a_helper_that_is_no_context_manager() -> None:
    fails("4.2", started_never_stopped, saying="all tests passed, but after test_health db and payments were still open")
    fails(
        "4.2",
        stopped_before_the_test,
        saying="the service was stopped before the test's requests: ResourceClosedError: db is closed",
    )
    fails("4.2", not_a_context_manager, saying="every test of the suite failed before its first answer")
