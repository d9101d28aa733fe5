"""Section 4: each check accepts different correct answers and rejects plausible wrong ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Request

from asynclab.standins.s04_lifespan import Mailer, Resource, Resources
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
    """Lifespan state avoided with a dict shared by closure: the same sharing as app.state."""
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


def test_4_1_rejects_resources_on_app_state_or_in_a_shared_dict() -> None:
    failure = fails("4.1", lifespan_on_app_state, saying="with the same app started twice")
    assert "app.state" in failure.observed and "request.state.db" in failure.hint
    fails("4.1", lifespan_with_closure_holder, saying="with the second start's resources")


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

log = logging.getLogger("shop.shutdown")


def mail_app(mailer: Mailer, shutdown: Any) -> FastAPI:
    """The handed-out app, with its shutdown step swapped: ``shutdown(tasks)`` runs after the yield."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        tasks: set[asyncio.Task[str]] = set()
        yield {"tasks": tasks}
        await shutdown(tasks)

    app = FastAPI(lifespan=lifespan)

    @app.post("/emails/{to}", status_code=202)
    async def send_email(to: str, request: Request) -> dict[str, str]:
        task = asyncio.create_task(mailer.send(to), name=f"email to {to}")
        request.state.tasks.add(task)
        task.add_done_callback(request.state.tasks.discard)
        return {"queued": to}

    return app


def drained_with(shutdown: Any) -> Any:
    def build(mailer: Mailer, deadline: float) -> FastAPI:
        async def stop(tasks: set[asyncio.Task[str]]) -> None:
            await shutdown(tasks, deadline)

        return mail_app(mailer, stop)

    return build


async def wait_then_cancel(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
        log.warning("shutdown: cancelled %s, still running after %.1f s", task.get_name(), deadline)
    await asyncio.gather(*pending, return_exceptions=True)


async def timeout_around_gather(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    snapshot = set(tasks)
    try:
        async with asyncio.timeout(deadline):
            await asyncio.gather(*snapshot, return_exceptions=True)
    except TimeoutError:
        for task in snapshot:
            if task.cancelled():
                log.warning("gave up on %s at shutdown", task.get_name())


def with_a_task_group(mailer: Mailer, deadline: float) -> FastAPI:
    """The other correct design: the lifespan owns an anyio task group, and its deadline bounds the drain."""

    async def send_logged(to: str) -> None:
        try:
            await mailer.send(to)
        except anyio.get_cancelled_exc_class():
            log.warning("email to %s cancelled at shutdown", to)
            raise

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with anyio.create_task_group() as tg:
            yield {"tg": tg}
            tg.cancel_scope.deadline = anyio.current_time() + deadline

    app = FastAPI(lifespan=lifespan)

    @app.post("/emails/{to}", status_code=202)
    async def send_email(to: str, request: Request) -> dict[str, str]:
        request.state.tg.start_soon(send_logged, to)
        return {"queued": to}

    return app


async def guide_sleep(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    await asyncio.sleep(0.1)  # the guide: "let pending tasks finish"


async def cancel_at_once(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    for task in list(tasks):
        task.cancel()
        log.warning("cancelled %s", task.get_name())
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_for_everything(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_but_never_cancel(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        log.warning("%s is still running", task.get_name())


async def cancel_without_a_word(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def cancel_without_awaiting(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
        log.warning("cancelled %s", task.get_name())


def test_4_2_accepts_wait_then_cancel_a_timeout_and_a_task_group() -> None:
    assert "was named in a WARNING" in passes("4.2", drained_with(wait_then_cancel))
    passes("4.2", drained_with(timeout_around_gather))
    passes("4.2", with_a_task_group)


def test_4_2_rejects_the_guides_sleep() -> None:
    fails("4.2", drained_with(guide_sleep), saying="the email to slow@example.com (it takes 0.4 s) was still running")


def test_4_2_rejects_cancelling_everything_at_once() -> None:
    fails("4.2", drained_with(cancel_at_once), saying="(it takes 0.05 s) was cancelled before the deadline")


def test_4_2_rejects_waiting_without_a_deadline() -> None:
    failure = fails("4.2", drained_with(wait_for_everything), saying="the shutdown was still waiting 2.10 s after it began")
    assert "asyncio.wait(tasks, timeout=deadline)" in failure.hint


def test_4_2_rejects_a_drain_that_never_cancels_or_does_not_await_the_cancel() -> None:
    fails(
        "4.2",
        drained_with(wait_but_never_cancel),
        saying="stuck@example.com (it takes 60 s) was still running when the app had finished stopping",
    )
    fails(
        "4.2",
        drained_with(cancel_without_awaiting),
        saying="stuck@example.com (it takes 60 s) was still running when the app had finished stopping",
    )


def test_4_2_rejects_a_silent_cancel() -> None:
    fails(
        "4.2", drained_with(cancel_without_a_word), saying="the email to stuck@example.com was cancelled, but no WARNING named it"
    )


# Root cause 3: the deadline is a parameter. The check runs deadline=0.6 (the text's) and 0.25 side by side.


async def move_on_after_then_cancel(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    """New, correct: anyio's scope bounds a wait that polls the tasks; they are cancelled only after it."""
    snapshot = set(tasks)
    with anyio.move_on_after(deadline):
        while not all(t.done() for t in snapshot):
            await anyio.sleep(0.01)
    pending = [t for t in snapshot if not t.done()]
    for task in pending:
        task.cancel()
        log.warning("cancelled %s at shutdown", task.get_name())
    await asyncio.gather(*pending, return_exceptions=True)


def hard_coded(seconds: float) -> Any:
    async def drain(tasks: set[asyncio.Task[str]], deadline: float) -> None:
        await wait_then_cancel(tasks, seconds)  # ignores the deadline it was given

    return drain


async def cancel_logged_at_error(tasks: set[asyncio.Task[str]], deadline: float) -> None:
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
        log.error("cancelled %s", task.get_name())  # the text asks for a warning
    await asyncio.gather(*pending, return_exceptions=True)


def test_4_2_accepts_a_shielded_wait_bounded_by_a_cancel_scope() -> None:
    assert "with deadline=0.25 s the 0.55 s one was cancelled" in passes("4.2", drained_with(move_on_after_then_cancel))


def test_4_2_rejects_the_texts_deadline_hard_coded() -> None:
    failure = fails(
        "4.2",
        drained_with(hard_coded(0.6)),
        saying="with deadline=0.25 s, the email to late@example.com (it takes 0.55 s) was delivered",
    )
    assert "`deadline` parameter" in failure.observed


def test_4_2_rejects_a_longer_deadline_hard_coded() -> None:
    fails("4.2", drained_with(hard_coded(1.0)), saying="the email to late@example.com (it takes 0.55 s) was delivered")


def test_4_2_rejects_a_cancel_logged_at_another_level() -> None:
    fails("4.2", drained_with(cancel_logged_at_error), saying="but no WARNING named it (it was logged at ERROR)")
