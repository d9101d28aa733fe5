"""Section 5: each check accepts different correct answers and rejects plausible wrong ones.

No ``from __future__ import annotations`` here: FastAPI would then read ``Annotated[..., Depends(db.session)]``
as a string and fail to resolve ``db``, a local variable of the app factory (every request would get a 422).
"""

import asyncio
import io
import itertools
import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException

from asynclab.bench import stack
from asynclab.standins import s05_errors as s05
from asynclab.standins.s05_errors import Catalog, StockService, User, UserDB
from tests.conftest import fails, passes

logger = logging.getLogger("shop")

# --- 5.1 -------------------------------------------------------------------------------------------

Route = Callable[[int, AsyncSession], Awaitable[dict[str, object]]]


def users_app(route: Route) -> Callable[[UserDB], FastAPI]:
    """An app factory whose GET /users/{user_id} checks the id, then runs ``route`` with a session."""

    def build(db: UserDB) -> FastAPI:
        app = FastAPI()

        @app.get("/users/{user_id}")
        async def read_user(user_id: int, session: Annotated[AsyncSession, Depends(db.session)]) -> dict[str, object]:
            if user_id <= 0:
                raise HTTPException(status_code=400, detail="user ids start at 1")
            return await route(user_id, session)

        return app

    return build


async def narrow_and_chain(user_id: int, session: AsyncSession) -> dict[str, object]:
    try:
        user = (await session.execute(select(User).where(User.id == user_id))).scalar_one_or_none()
    except SQLAlchemyError as exc:
        logger.error("reading user %s failed", user_id, exc_info=exc)
        raise HTTPException(status_code=500, detail="Internal server error") from exc
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return {"id": user.id, "name": user.name}


async def reraise_http_first(user_id: int, session: AsyncSession) -> dict[str, object]:
    try:
        result = await session.execute(select(User).where(User.id == user_id))
        user = result.scalar_one_or_none()
        if user is None:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        return {"id": user.id, "name": user.name}
    except HTTPException:
        raise
    except Exception as exc:
        logger.error("unexpected error", exc_info=exc)
        raise HTTPException(status_code=500, detail="Internal server error") from exc


async def no_try_at_all(user_id: int, session: AsyncSession) -> dict[str, object]:
    user = await session.get(User, user_id)  # a database error is unhandled: the server answers a bare 500
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return {"id": user.id, "name": user.name}


async def outage_as_503(user_id: int, session: AsyncSession) -> dict[str, object]:
    try:
        user = await session.get(User, user_id)
    except SQLAlchemyError as exc:
        raise HTTPException(status_code=503, detail="the database is unavailable") from exc
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return {"id": user.id, "name": user.name}


async def read_once_but_broad_except(user_id: int, session: AsyncSession) -> dict[str, object]:
    try:
        user = (await session.execute(select(User).where(User.id == user_id))).scalar_one_or_none()
        if user is None:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        return {"id": user.id, "name": user.name}
    except Exception as exc:
        logger.error("unexpected error", exc_info=exc)
        raise HTTPException(status_code=500, detail="Internal server error") from exc


async def reraise_http_but_scalar_twice(user_id: int, session: AsyncSession) -> dict[str, object]:
    try:
        result = await session.execute(select(User).where(User.id == user_id))
        if not result.scalar():
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        user = result.scalar()
        return {"id": user.id, "name": user.name}
    except HTTPException:
        raise
    except Exception as exc:
        logger.error("unexpected error", exc_info=exc)
        raise HTTPException(status_code=500, detail="Internal server error") from exc


async def narrow_but_scalar_twice(user_id: int, session: AsyncSession) -> dict[str, object]:
    try:
        result = await session.execute(select(User).where(User.id == user_id))
        if not result.scalar():
            raise HTTPException(status_code=404, detail=f"no user {user_id}")  # not a SQLAlchemyError: goes through
        user = result.scalar()  # but ResourceClosedError is a SQLAlchemyError
    except SQLAlchemyError as exc:
        logger.error("reading user %s failed", user_id, exc_info=exc)
        raise HTTPException(status_code=500, detail="Internal server error") from exc
    return {"id": user.id, "name": user.name}


async def tells_the_client_why(user_id: int, session: AsyncSession) -> dict[str, object]:
    try:
        user = await session.get(User, user_id)
    except SQLAlchemyError as exc:
        raise HTTPException(status_code=500, detail=str(exc)) from exc
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return {"id": user.id, "name": user.name}


async def everything_is_not_found(user_id: int, session: AsyncSession) -> dict[str, object]:
    try:
        user = await session.get(User, user_id)
    except Exception as exc:
        raise HTTPException(status_code=404, detail=f"no user {user_id}") from exc
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return {"id": user.id, "name": user.name}


def test_5_1_accepts_narrowing_reraising_or_no_try() -> None:
    for answer in (narrow_and_chain, reraise_http_first, no_try_at_all):
        assert "missing user → 404" in passes("5.1", users_app(answer))
    assert "database down → 503" in passes("5.1", users_app(outage_as_503))


def test_5_1_rejects_the_handed_out_route() -> None:
    async def as_handed_out(user_id: int, session: AsyncSession) -> dict[str, object]:
        try:
            result = await session.execute(select(User).where(User.id == user_id))
            if not result.scalar():
                raise HTTPException(status_code=404, detail=f"no user {user_id}")
            user = result.scalar()
            return {"id": user.id, "name": user.name}
        except Exception as exc:
            logger.error("unexpected error", exc_info=exc)
            raise HTTPException(status_code=500, detail="Internal server error")  # the guide's code

    failure = fails("5.1", users_app(as_handed_out), saying="GET /users/42 (no such user) answered 500, expected 404")
    assert "found user → 500" in failure.observed and "ResourceClosedError" in failure.observed


def test_5_1_rejects_a_broad_except_that_still_eats_the_404() -> None:
    failure = fails("5.1", users_app(read_once_but_broad_except), saying="GET /users/42 (no such user) answered 500")
    assert "HTTPException: 404" in failure.observed
    assert "Which `except` clause catches an HTTPException" in failure.hint


def test_5_1_rejects_reading_the_result_twice() -> None:
    for answer in (reraise_http_but_scalar_twice, narrow_but_scalar_twice):
        failure = fails("5.1", users_app(answer), saying="GET /users/1 (user exists) answered 500, expected 200")
        assert "ResourceClosedError: This result object is closed" in failure.observed
        assert "scalar_one_or_none" in failure.hint


async def tells_the_client_the_drivers_words(user_id: int, session: AsyncSession) -> dict[str, object]:
    try:
        user = await session.get(User, user_id)
    except SQLAlchemyError as exc:
        raise HTTPException(status_code=500, detail=str(exc.orig)) from exc  # no SQL, no class name: the driver's message
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return {"id": user.id, "name": user.name}


#: What the driver says when the table is gone, as the leak message quotes it.
TABLE_GONE_WORDS = "'relation '" if stack.on_postgres() else "'no such table'"


def test_5_1_rejects_database_details_in_the_body() -> None:
    failure = fails("5.1", users_app(tells_the_client_why), saying="with the database down, the 500 body tells the client")
    assert TABLE_GONE_WORDS in failure.observed
    failure = fails("5.1", users_app(tells_the_client_the_drivers_words), saying="the 500 body tells the client")
    assert TABLE_GONE_WORDS in failure.observed


def test_5_1_a_session_kept_open_across_requests_still_sees_the_outage() -> None:
    """One session for every request keeps a transaction open; on PostgreSQL it would hold off the outage's rename for ever.

    The outage ends such sessions first, as a failing database does: the check still sees a broken database, and ends.
    """

    def build(db: UserDB) -> FastAPI:
        app, kept = FastAPI(), db.sessionmaker()

        @app.get("/users/{user_id}")
        async def read_user(user_id: int) -> dict[str, object]:
            if user_id <= 0:
                raise HTTPException(status_code=400, detail="user ids start at 1")
            return await narrow_and_chain(user_id, kept)

        return app

    assert "database down → 500" in passes("5.1", build)


def record_kinds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The engines of the databases the checks make from now on, in order."""
    made: list[str] = []
    real = s05._new_database

    async def noting(on: Any) -> Any:
        database, remove = await real(on)
        made.append(database.kind)
        return database, remove

    monkeypatch.setattr(s05, "_new_database", noting)
    return made


def test_5_1_on_postgres_right_and_wrong_answers(on_postgres: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL the outage raises ProgrammingError (asyncpg's UndefinedTableError): the same verdicts, in its words."""
    kinds = record_kinds(monkeypatch)
    assert "database down → 500" in passes("5.1", users_app(narrow_and_chain))
    assert "database down → 503" in passes("5.1", users_app(outage_as_503))
    leak = fails("5.1", users_app(tells_the_client_the_drivers_words), saying="the 500 body tells the client")
    assert "'relation '" in leak.observed and "no such table" not in leak.observed
    fails("5.1", users_app(everything_is_not_found), saying="GET /users/3 answered 404, expected 500 (or 503)")
    assert kinds == ["postgres"] * 4


def test_5_1_rejects_a_404_for_a_broken_database() -> None:
    fails(
        "5.1",
        users_app(everything_is_not_found),
        saying="with the database down, GET /users/3 answered 404, expected 500 (or 503)",
    )


# --- 5.2 -------------------------------------------------------------------------------------------


def handler_answer(
    handler: Callable[[Request, Exception], Awaitable[Response]], *, also: type[Exception] | None = None
) -> Callable[[FastAPI], None]:
    def install(app: FastAPI) -> None:
        app.add_exception_handler(Exception, handler)
        if also is not None:
            app.add_exception_handler(also, handler)

    return install


async def log_args_and_hide(request: Request, exc: Exception) -> JSONResponse:
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
    logger.error("unhandled %s on %s %s (request %s)", type(exc).__name__, request.method, request.url.path, rid, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "Internal server error", "request_id": rid})


async def log_extras_with_exception(request: Request, exc: Exception) -> Response:
    # logger.exception works here: Starlette calls the handler inside its own `except` block
    logging.getLogger("api.errors").exception(
        "unhandled error",
        extra={"method": request.method, "path": request.url.path, "request_id": request.headers.get("x-request-id", "-")},
    )
    return Response("Internal Server Error", status_code=500, media_type="text/plain")


def catch_in_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def catch_everything(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        try:
            return await call_next(request)
        except Exception:
            rid = request.headers.get("x-request-id", "none")
            logging.getLogger("api").exception("%s %s failed (request %s)", request.method, request.url, rid)
            return JSONResponse(status_code=500, content={"detail": "something went wrong", "request_id": rid})


async def leak_the_message(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=500, content={"detail": f"{type(exc).__name__}: {exc}"})


async def log_and_leak_the_traceback(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "Internal server error", "trace": traceback.format_exception(exc)})


async def the_guides_generic_handler(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=500, content={"detail": "Error"})


async def log_text_without_exc_info(request: Request, exc: Exception) -> JSONResponse:
    rid = request.headers.get("x-request-id")
    logger.error(f"{request.method} {request.url.path} failed (request {rid}): {exc!r}")
    return JSONResponse(status_code=500, content={"detail": "Internal server error"})


async def log_without_request_id(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "Internal server error"})


async def log_as_warning(request: Request, exc: Exception) -> JSONResponse:
    rid = request.headers.get("x-request-id")
    logger.warning("unhandled error on %s %s (request %s)", request.method, request.url.path, rid, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "Internal server error"})


def test_5_2_accepts_handlers_and_a_middleware() -> None:
    for answer in (handler_answer(log_args_and_hide), handler_answer(log_extras_with_exception), catch_in_middleware):
        assert "the log has the exception, method, path and request id" in passes("5.2", answer)


def test_5_2_rejects_the_handed_out_leak() -> None:
    failure = fails("5.2", handler_answer(leak_the_message), saying="the 500 body discloses 'pa55w0rd'")
    assert "information-disclosure" in failure.observed


def test_5_2_rejects_a_traceback_in_the_body() -> None:
    fails("5.2", handler_answer(log_and_leak_the_traceback), saying="the 500 body discloses")


def test_5_2_rejects_a_handler_that_logs_nothing() -> None:
    fails("5.2", handler_answer(the_guides_generic_handler), saying="nothing was logged at ERROR or above")
    fails("5.2", handler_answer(log_as_warning), saying="nothing was logged at ERROR or above")


def test_5_2_rejects_a_log_without_the_exception() -> None:
    failure = fails("5.2", handler_answer(log_text_without_exc_info), saying="carries no exception (exc_info)")
    assert "exc_info=exc" in failure.hint


def test_5_2_rejects_a_log_without_the_request_id() -> None:
    fails("5.2", handler_answer(log_without_request_id), saying="carries the exception but not the request id")


def test_5_2_rejects_swallowing_client_errors() -> None:
    fails(
        "5.2",
        handler_answer(log_args_and_hide, also=StarletteHTTPException),
        saying="GET /orders/404 raised HTTPException(404) and the client got 500",
    )


# --- 5.3 -------------------------------------------------------------------------------------------


def stock_app(route: Callable[[StockService, float, str], Awaitable[dict[str, object]]], *, on_timeout_handler: bool = False):
    def build(stock: StockService, deadline: float) -> FastAPI:
        app = FastAPI()

        @app.get("/stock/{sku}")
        async def stock_level(sku: str) -> dict[str, object]:
            return await route(stock, deadline, sku)

        if on_timeout_handler:

            @app.exception_handler(TimeoutError)
            async def timed_out(request: Request, exc: TimeoutError) -> JSONResponse:
                logging.getLogger("api").error("%s timed out", request.url.path)
                return JSONResponse(status_code=503, content={"detail": "try again later"}, headers={"Retry-After": "1"})

        return app

    return build


async def with_fail_after(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    try:
        with anyio.fail_after(deadline):
            level = await stock.level(sku)
    except TimeoutError:
        logger.warning("stock service timed out for %s", sku)
        raise HTTPException(status_code=503, detail="stock service unavailable") from None
    return {"sku": sku, "level": level}


async def with_asyncio_timeout_and_a_handler(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    async with asyncio.timeout(deadline):
        level = await stock.level(sku)
    return {"sku": sku, "level": level}


async def with_wait_for(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    try:
        level = await asyncio.wait_for(stock.level(sku), timeout=deadline)
    except TimeoutError as exc:
        logger.error("no stock level for %s within %s s", sku, deadline)
        raise HTTPException(status_code=503, detail="stock service unavailable") from exc
    return {"sku": sku, "level": level}


async def with_move_on_after(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    with anyio.move_on_after(deadline) as scope:
        level = await stock.level(sku)
    if scope.cancelled_caught:
        logger.warning("stock service timed out for %s", sku)
        raise HTTPException(status_code=503, detail="stock service unavailable")
    return {"sku": sku, "level": level}


async def no_deadline(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    return {"sku": sku, "level": await stock.level(sku)}


async def deadline_but_no_except(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    with anyio.fail_after(deadline):
        level = await stock.level(sku)
    return {"sku": sku, "level": level}


async def silent_503(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    try:
        with anyio.fail_after(deadline):
            level = await stock.level(sku)
    except TimeoutError:
        raise HTTPException(status_code=503, detail="stock service unavailable") from None
    return {"sku": sku, "level": level}


async def stops_waiting_but_leaves_the_call(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    task = asyncio.create_task(stock.level(sku))
    done, _ = await asyncio.wait({task}, timeout=deadline)
    if not done:
        logger.warning("stock service timed out for %s", sku)
        raise HTTPException(status_code=503, detail="stock service unavailable")
    return {"sku": sku, "level": task.result()}


async def moves_on_with_nothing(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    level = None
    with anyio.move_on_after(deadline):
        level = await stock.level(sku)
    return {"sku": sku, "level": level}


def test_5_3_accepts_each_kind_of_deadline() -> None:
    for answer in (
        stock_app(with_fail_after),
        stock_app(with_asyncio_timeout_and_a_handler, on_timeout_handler=True),
        stock_app(with_wait_for),
        stock_app(with_move_on_after),
    ):
        assert "got 503, after the 0.2 s deadline in one app" in passes("5.3", answer)


def test_5_3_rejects_no_deadline() -> None:
    fails("5.3", stock_app(no_deadline), saying="4 of 4 requests still had no answer after 2 s")


def test_5_3_rejects_a_timeout_that_becomes_a_500() -> None:
    fails("5.3", stock_app(deadline_but_no_except), saying="GET /stock/sku-0 answered 500")


def test_5_3_rejects_an_empty_200() -> None:
    fails("5.3", stock_app(moves_on_with_nothing), saying="answered 200 {'sku': 'sku-0', 'level': None}, expected 503")


def test_5_3_rejects_a_503_nobody_logs() -> None:
    fails("5.3", stock_app(silent_503), saying="8 requests timed out and 0 log lines at WARNING or above")


def test_5_3_rejects_leaving_the_hung_call_running() -> None:
    fails("5.3", stock_app(stops_waiting_but_leaves_the_call), saying="8 calls to stock.level() were still running")


# Root cause 3: the deadline is a parameter. The check builds one app with deadline=0.2 (the text's) and one with 0.8.


async def with_a_cancel_scope_deadline(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    """New, correct: an absolute deadline on anyio's cancel scope."""
    with anyio.CancelScope(deadline=anyio.current_time() + deadline) as scope:
        level = await stock.level(sku)
    if scope.cancelled_caught:
        logger.warning("stock level for %s: no answer in %s s", sku, deadline)
        raise HTTPException(status_code=503, detail="stock service unavailable")
    return {"sku": sku, "level": level}


def hard_coded(seconds: float) -> Any:
    async def handler(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
        return await with_fail_after(stock, seconds, sku)  # ignores the deadline it was given

    return handler


def test_5_3_accepts_a_cancel_scope_deadline() -> None:
    assert "the 0.8 s deadline in the other" in passes("5.3", stock_app(with_a_cancel_scope_deadline))


def test_5_3_rejects_the_texts_deadline_hard_coded() -> None:
    fails("5.3", stock_app(hard_coded(0.2)), saying="with deadline=0.8 s, GET /stock/sku-0 answered 503 after")


def test_5_3_rejects_a_longer_deadline_hard_coded() -> None:
    fails("5.3", stock_app(hard_coded(1.0)), saying="as late as the other app's 0.8 s deadline")


# Root cause 5: "make one up when the header is missing" — a request without X-Request-ID must still be answered and logged.


async def needs_the_header(request: Request, exc: Exception) -> JSONResponse:
    rid = request.headers["x-request-id"]  # KeyError when the client sent none
    logger.error("unhandled error on %s %s (request %s)", request.method, request.url.path, rid, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "Internal server error", "request_id": rid})


async def logs_only_requests_with_an_id(request: Request, exc: Exception) -> JSONResponse:
    rid = request.headers.get("x-request-id")
    if rid is not None:
        logger.error("unhandled error on %s %s (request %s)", request.method, request.url.path, rid, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "Internal server error"})


async def makes_an_id_from_a_counter(request: Request, exc: Exception) -> JSONResponse:
    """New, correct: any made-up id will do, here a process-wide counter."""
    rid = request.headers.get("x-request-id") or f"local-{next(_ids)}"
    logger.error("unhandled error on %s %s (request %s)", request.method, request.url.path, rid, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "Internal server error", "request_id": rid})


_ids = itertools.count(1)


def test_5_2_accepts_an_id_made_up_from_a_counter() -> None:
    assert "a request without X-Request-ID was answered and logged" in passes("5.2", handler_answer(makes_an_id_from_a_counter))


def test_5_2_rejects_a_handler_that_needs_the_header() -> None:
    fails(
        "5.2",
        handler_answer(needs_the_header),
        saying="GET /orders/8 without an X-Request-ID header failed, and no ERROR record carries its exception",
    )


def test_5_2_rejects_a_handler_that_logs_only_requests_with_an_id() -> None:
    fails("5.2", handler_answer(logs_only_requests_with_an_id), saying="no ERROR record carries its exception and its path")


# Root cause 6: the log is observed wherever it goes, also on a logger of the app's own that does not propagate to the root.


def own_logger(name: str) -> logging.Logger:
    """A logger with its own handler, cut off from the root logger, as many apps configure theirs."""
    own = logging.getLogger(name)
    own.propagate = False
    if not own.handlers:
        own.addHandler(logging.StreamHandler(io.StringIO()))
    return own


async def logs_to_its_own_logger(request: Request, exc: Exception) -> JSONResponse:
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
    own_logger("orders.errors").error("%s %s failed (request %s)", request.method, request.url.path, rid, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "Internal server error", "request_id": rid})


async def logs_to_its_own_logger_without_exc_info(request: Request, exc: Exception) -> JSONResponse:
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
    own_logger("orders.errors").error("%s %s failed (request %s)", request.method, request.url.path, rid)
    return JSONResponse(status_code=500, content={"detail": "Internal server error", "request_id": rid})


def test_5_2_accepts_a_logger_that_does_not_propagate() -> None:
    assert "the log has the exception, method, path and request id" in passes("5.2", handler_answer(logs_to_its_own_logger))


def test_5_2_reads_a_logger_that_does_not_propagate_and_names_what_is_missing() -> None:
    fails("5.2", handler_answer(logs_to_its_own_logger_without_exc_info), saying="carries no exception (exc_info)")


async def warns_on_its_own_logger(stock: StockService, deadline: float, sku: str) -> dict[str, object]:
    try:
        with anyio.fail_after(deadline):
            level = await stock.level(sku)
    except TimeoutError:
        own_logger("orders.stock").warning("stock service timed out for %s", sku)
        raise HTTPException(status_code=503, detail="stock service unavailable") from None
    return {"sku": sku, "level": level}


def test_5_3_reads_a_logger_that_does_not_propagate() -> None:
    assert "each logged" in passes("5.3", stock_app(warns_on_its_own_logger))


# --- 5.4 · find it: the shop's own broken data, answered as the customer's mistake ---------------------


def parse_price(text: str) -> float:
    return float(text)


def parse_coupon(code: str) -> int:
    if not code.startswith("SAVE"):
        raise ValueError(f"not a coupon code: {code!r}")
    return int(code.removeprefix("SAVE"))


def shop_app(*, value_error_status: int | None, coupon_400: bool, price_500: bool = False) -> Callable[[Catalog], FastAPI]:
    """5.4's shop: a ValueError handler answering ``value_error_status`` (None: no handler); the coupon route turning
    its own ValueError into a 400 (``coupon_400``); the price reader turning a bad price into a 500 (``price_500``)."""

    def price_of(text: str) -> float:
        if not price_500:
            return parse_price(text)
        try:
            return parse_price(text)
        except ValueError as exc:
            logger.error("the stored price %r is not a number", text, exc_info=exc)
            raise HTTPException(status_code=500, detail="Internal server error") from exc

    def build_shop(catalog: Catalog) -> FastAPI:
        app = FastAPI()
        if value_error_status is not None:

            @app.exception_handler(ValueError)
            async def value_error(request: Request, exc: ValueError) -> JSONResponse:
                detail = "Invalid request" if value_error_status < 500 else "Internal server error"
                return JSONResponse(status_code=value_error_status, content={"detail": detail})

        @app.get("/products/{sku}")
        async def product(sku: str) -> dict[str, object]:
            price = await catalog.price(sku)
            if price is None:
                raise HTTPException(status_code=404, detail=f"no product {sku}")
            return {"sku": sku, "price": price_of(price)}

        @app.get("/basket")
        async def basket(items: str) -> dict[str, object]:
            prices = [await catalog.price(sku) for sku in items.split(",")]
            if None in prices:
                raise HTTPException(status_code=404, detail="a product in the basket does not exist")
            return {"items": items.split(","), "total": round(sum(price_of(p) for p in prices), 2)}

        @app.post("/coupons/{code}")
        async def apply_coupon(code: str) -> dict[str, object]:
            if not coupon_400:
                return {"code": code, "percent": parse_coupon(code)}
            try:
                percent = parse_coupon(code)
            except ValueError as exc:
                raise HTTPException(status_code=400, detail="not a coupon code") from exc
            return {"code": code, "percent": percent}

        return app

    return build_shop


class NotACoupon(Exception):
    """The customer's mistake, as the shop's own exception."""


def domain_exception_shop(catalog: Catalog) -> FastAPI:
    """A right answer of another shape: the coupon's mistake is a domain exception, mapped to 400 by a handler."""
    app = shop_app(value_error_status=None, coupon_400=False)(catalog)

    @app.exception_handler(NotACoupon)
    async def not_a_coupon(request: Request, exc: NotACoupon) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": "not a coupon code"})

    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/coupons/{code}"]

    @app.post("/coupons/{code}")
    async def apply_coupon(code: str) -> dict[str, object]:
        if not code.startswith("SAVE") or not code.removeprefix("SAVE").isdigit():
            raise NotACoupon(code)
        return {"code": code, "percent": int(code.removeprefix("SAVE"))}

    return app


def test_5_4_accepts_the_handler_removed_and_the_coupon_answered_where_it_is_read() -> None:
    assert "answered 500 on both routes" in passes("5.4", shop_app(value_error_status=None, coupon_400=True))


def test_5_4_accepts_the_price_failure_turned_into_a_500_where_it_happens() -> None:
    assert "still answered 400" in passes("5.4", shop_app(value_error_status=None, coupon_400=True, price_500=True))


def test_5_4_accepts_a_domain_exception_for_the_customers_mistake() -> None:
    assert "still answered 400" in passes("5.4", domain_exception_shop)


def test_5_4_as_handed_out_tells_the_symptom_not_the_place() -> None:
    failure = fails(
        "5.4",
        shop_app(value_error_status=400, coupon_400=False),
        saying="GET /products/cake fails because of the shop's own data",
    )
    assert "told 400" in failure.observed
    assert not [word for word in ("ValueError", "handler", "exception") if word in failure.observed]


def test_5_4_rejects_the_handler_removed_alone() -> None:
    fails(
        "5.4",
        shop_app(value_error_status=None, coupon_400=False),
        saying="POST /coupons/SAVE-TEN (a code the customer mistyped) answered 500",
    )


def test_5_4_rejects_the_handler_answering_500_for_everything() -> None:
    fails(
        "5.4",
        shop_app(value_error_status=500, coupon_400=False),
        saying="now the customer's own mistake reads as the shop's failure",
    )


def test_5_4_rejects_a_fix_of_one_route_only() -> None:
    """The price fixed where the product page reads it, the handler left: the basket still blames the customer."""

    def product_page_only(catalog: Catalog) -> FastAPI:
        app = shop_app(value_error_status=400, coupon_400=False)(catalog)
        app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/products/{sku}"]

        @app.get("/products/{sku}")
        async def product(sku: str) -> dict[str, object]:
            price = await catalog.price(sku)
            if price is None:
                raise HTTPException(status_code=404, detail=f"no product {sku}")
            try:
                return {"sku": sku, "price": parse_price(price)}
            except ValueError as exc:
                raise HTTPException(status_code=500, detail="Internal server error") from exc

        return app

    fails("5.4", product_page_only, saying="GET /basket?items=tea,cake fails because of the shop's own data")


def test_5_4_rejects_a_500_that_tells_the_customer_why() -> None:
    def says_why(catalog: Catalog) -> FastAPI:
        app = shop_app(value_error_status=None, coupon_400=True)(catalog)

        @app.exception_handler(Exception)
        async def tell_all(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse(status_code=500, content={"detail": str(exc)})

        return app

    fails("5.4", says_why, saying="it tells the customer 'could not convert'")
