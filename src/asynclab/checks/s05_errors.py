"""Checks for section 5, error handling in routes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, HTTPException

from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.load import NO_ANSWER, load
from asynclab.bench.probes import capture_every_log
from asynclab.checks._harness import build_app
from asynclab.course.checking import exercise, fail
from asynclab.standins.s05_errors import CATALOG_PRICES, SEED_USERS, Catalog, StockService, UserDB

#: Words that must never reach a client when the database is down: SQLite's, then PostgreSQL's (asyncpg's) forms.
DB_INTERNALS = (
    *("no such table", "SQL", "sqlite", "OperationalError", "Traceback", "users_offline"),
    *("asyncpg", "postgres", "ProgrammingError", "UndefinedTable", "relation "),
)


def _leaks(text: str, secrets: tuple[str, ...]) -> list[str]:
    return [s for s in secrets if s.lower() in text.lower()]


def _logged_causes(records: list[logging.LogRecord]) -> list[str]:
    """``Type: message`` of every exception attached to a log record, in order, without repeats."""
    seen: list[str] = []
    for record in records:
        if record.levelno >= logging.ERROR and record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            if text not in seen:
                seen.append(text)
    return seen


@exercise(
    "5.1",
    "Stop turning 404s into 500s",
    hints=[
        "Run GET /users/42 yourself: the 404 is raised inside the `try`. Which `except` clause catches an HTTPException?",
        (
            "A SQLAlchemy result is read once: the first `.scalar()` closes it, the second raises ResourceClosedError. "
            "Read the row once with `result.scalar_one_or_none()` and keep it in a variable."
        ),
        (
            "Keep only the query inside the `try`, catch `SQLAlchemyError` (not `Exception`), "
            "`raise HTTPException(status_code=500, detail=...) from exc`, and raise the 404 after the `try`."
        ),
    ],
)
async def not_found_stays_404(factory: Callable[[UserDB], Any]) -> str:
    async with UserDB.temporary() as db:
        app = build_app(factory, db)
        with capture_every_log() as logs:
            async with inprocess_client(app, raise_app_exceptions=False) as client:
                found = [await client.get(f"/users/{uid}") for uid in (1, 2)]
                missing = await client.get("/users/42")
                bad = await client.get("/users/0")
                async with db.outage():
                    down = await client.get("/users/3")
    seen = (
        f"found user → {found[0].status_code}, missing user → {missing.status_code}, "
        f"id 0 → {bad.status_code}, database down → {down.status_code}"
    )
    causes = _logged_causes(logs.records)
    because = f" (the log shows {'; '.join(causes[:2])})" if causes else ""
    if missing.status_code != 404:
        fail(f"GET /users/42 (no such user) answered {missing.status_code}, expected 404. We saw: {seen}{because}", 0)
    for uid, response in zip((1, 2), found, strict=True):
        expected = {"id": uid, "name": SEED_USERS[uid]}
        if response.status_code != 200:
            fail(f"GET /users/{uid} (user exists) answered {response.status_code}, expected 200. We saw: {seen}{because}", 1)
        if response.json() != expected:
            fail(
                f"GET /users/{uid} answered {response.json()!r}, expected {expected!r}", "Keep returning the same body as before."
            )
    if bad.status_code != 400:
        fail(
            f"GET /users/0 answered {bad.status_code}, expected 400 as before. We saw: {seen}",
            "Keep the check on the id as it was.",
        )
    if down.status_code not in (500, 503):
        fail(
            f"with the database down, GET /users/3 answered {down.status_code}, expected 500 (or 503). We saw: {seen}",
            "A broken database is the server's fault, not the client's: the answer must be a 500.",
        )
    leaked = _leaks(down.text, DB_INTERNALS)
    if leaked:
        fail(
            (
                f"with the database down, the {down.status_code} body tells the client {', '.join(map(repr, leaked))}: "
                f"{down.text[:120]}"
            ),
            "Put the details in the log, not in the response: answer with a fixed message such as 'Internal server error'.",
        )
    return f"{seen}, and the {down.status_code} tells the client nothing about the database."


#: What the failing route's exception says: a message no client should ever read.
SECRET_MESSAGE = "could not reach postgres://orders:pa55w0rd@10.4.0.12:5432/orders"
SECRET_PARTS = ("pa55w0rd", "postgres://", "10.4.0.12", "ConnectionRefusedError", "Traceback", "could not reach")


def _record_text(record: logging.LogRecord) -> str:
    """Everything a log record says: its message and every extra field."""
    return " ".join([record.getMessage(), *(str(v) for v in vars(record).values())])


def _carries(record: logging.LogRecord, raised: list[BaseException]) -> bool:
    """Does the record carry (a chain leading to) one of the exceptions the route raised?"""
    exc = record.exc_info[1] if record.exc_info else None
    while exc is not None:
        if any(exc is r for r in raised):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@exercise(
    "5.2",
    "A catch-all handler that logs and tells nothing",
    hints=[
        (
            "The client must learn nothing about the failure; the log must learn everything. Start from the response: a fixed "
            "message."
        ),
        (
            "Log with `logger.error(..., exc_info=exc)` so the record carries the exception and its traceback; "
            "put the method, the path and the request id in the message (or in `extra=`)."
        ),
        (
            "`app.add_exception_handler(Exception, handler)` where the handler logs "
            "request.method, request.url.path, request.headers.get('x-request-id') with exc_info=exc and returns "
            "JSONResponse(status_code=500, content={'detail': 'Internal server error'})."
        ),
    ],
)
async def catch_all_handler(install: Callable[[FastAPI], Any]) -> str:
    if not callable(install):
        fail(
            f"expected the function add_catch_all, got {type(install).__name__}",
            "Pass the function itself: check('5.2', add_catch_all).",
        )
    raised: list[BaseException] = []
    app = _orders_app(raised)
    install(app)
    request_id = "chk-5b2e91"
    with capture_every_log() as logs:  # wherever the app's loggers send their records, propagating to the root or not
        async with inprocess_client(app, raise_app_exceptions=False) as client:
            health_response = await client.get("/health")
            missing = await client.get("/orders/404")
            failed = await client.get("/orders/7", headers={"X-Request-ID": request_id})
            bare = await client.get("/orders/8")  # no X-Request-ID: the handler must make one up, not fail
    _judge_client_side(health_response, missing, failed)
    _judge_logged(logs.records, raised, request_id)
    _judge_without_request_id(bare, logs.records, raised)
    return (
        f"the client got 500 {failed.text[:60]!r}; the log has the exception, method, path and request id; "
        "a request without X-Request-ID was answered and logged the same way; the 404 and the working route were left alone."
    )


def _orders_app(raised: list[BaseException]) -> FastAPI:
    """An app with a working route, a 404, and a route that fails with a secret (noted in ``raised``)."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        if order_id == 404:
            raise HTTPException(status_code=404, detail="no order 404")
        error = ConnectionRefusedError(SECRET_MESSAGE)
        raised.append(error)
        raise error

    return app


def _judge_client_side(health_response: httpx.Response, missing: httpx.Response, failed: httpx.Response) -> None:
    """Did the working route and the 404 stay as they were, and did the failure answer a 500 that tells nothing?"""
    if health_response.status_code != 200:
        fail(f"GET /health answered {health_response.status_code}, expected 200", "Leave the working routes alone.")
    if missing.status_code != 404 or "no order 404" not in missing.text:
        fail(
            f"GET /orders/404 raised HTTPException(404) and the client got {missing.status_code} {missing.text[:80]}",
            "A catch-all for server errors must let client errors (HTTPException) through as they are.",
        )
    if failed.status_code != 500:
        fail(f"GET /orders/7 raised ConnectionRefusedError and the client got {failed.status_code}, expected 500", 0)
    leaked = _leaks(failed.text, SECRET_PARTS)
    if leaked:
        fail(
            (
                f"the 500 body discloses {', '.join(map(repr, leaked))}: {failed.text[:100]!r}. That is an "
                "information-disclosure bug."
            ),
            0,
        )


def _judge_logged(records: list[logging.LogRecord], raised: list[BaseException], request_id: str) -> None:
    """Does an ERROR record carry the exception, the method, the path and the request id?"""
    errors = [r for r in records if r.levelno >= logging.ERROR]
    if not errors:
        fail("GET /orders/7 failed and nothing was logged at ERROR or above: nobody will ever know.", 1)
    carrying = [r for r in errors if _carries(r, raised)]
    if not carrying:
        said = errors[0].getMessage()[:80]
        fail(f"the log says {said!r} but carries no exception (exc_info): the traceback is lost.", 1)
    text = " ".join(_record_text(r) for r in carrying)
    missing_context = [
        name
        for name, value in (("the method", "GET"), ("the path", "/orders/7"), ("the request id", request_id))
        if value not in text
    ]
    if missing_context:
        fail(
            f"the log record carries the exception but not {' or '.join(missing_context)} "
            f"(we sent X-Request-ID: {request_id}); it says {carrying[0].getMessage()[:80]!r}",
            2,
        )


def _judge_without_request_id(bare: httpx.Response, records: list[logging.LogRecord], raised: list[BaseException]) -> None:
    """Was a failing request without X-Request-ID answered and logged like any other?"""
    if bare.status_code != 500 or _leaks(bare.text, SECRET_PARTS):
        fail(
            f"GET /orders/8 without an X-Request-ID header answered {bare.status_code} {bare.text[:80]!r}",
            (
                "When the header is missing, make a request id up (e.g. uuid.uuid4().hex): do not fail, and still answer the "
                "fixed 500."
            ),
        )
    logged_bare = [r for r in records if r.levelno >= logging.ERROR and _carries(r, raised[1:])]
    if not logged_bare or not any("/orders/8" in _record_text(r) for r in logged_bare):
        fail(
            "GET /orders/8 without an X-Request-ID header failed, and no ERROR record carries its exception and its path",
            "When the header is missing, make a request id up (e.g. uuid.uuid4().hex) and log as for any other request.",
        )


DEADLINE = 0.2  # the deadline the exercise's text names
#: A second app, side by side, with a longer deadline: an answer that ignores `deadline` cannot meet both.
LONG_DEADLINE = 0.8
GIVE_UP_AFTER = 2.0
STALLED = 4


@exercise(
    "5.3",
    "Give the stock route a deadline",
    hints=[
        "Nothing stops `await stock.level(sku)` from waiting for ever. Wrap it in a deadline of `deadline` seconds.",
        (
            "`with anyio.fail_after(deadline):` (or `async with asyncio.timeout(deadline):`) cancels the call and raises "
            "TimeoutError when time is up; catch it, log a line, and answer 503."
        ),
        (
            "try:\n        with anyio.fail_after(deadline):\n            level = await stock.level(sku)\n"
            "    except TimeoutError:\n        logger.warning('stock service timed out for %s', sku)\n"
            "        raise HTTPException(status_code=503, detail='stock service unavailable') from None"
        ),
    ],
)
async def stock_deadline(factory: Callable[[StockService, float], Any]) -> str:
    stock = StockService()
    app = build_app(factory, stock, DEADLINE)
    long_stock = StockService()
    long_app = build_app(factory, long_stock, LONG_DEADLINE)
    with capture_every_log() as logs:
        reports, calls_before, still_running = await _quick_then_stalled(app, stock, long_app, long_stock)
    for deadline, report in ((DEADLINE, reports[DEADLINE]), (LONG_DEADLINE, reports[LONG_DEADLINE])):
        unanswered = [r for r in report.results if r.status == NO_ANSWER]
        if unanswered:
            fail(
                f"the back end never answers, and {len(unanswered)} of {STALLED} requests still had no answer after "
                f"{GIVE_UP_AFTER:.0f} s (the deadline was {deadline} s)",
                0,
            )
    if stock.calls + long_stock.calls - calls_before < 2 * STALLED:
        fail(
            f"{2 * STALLED} requests made only {stock.calls + long_stock.calls - calls_before} calls to stock.level()",
            "Every request must still ask the back end.",
        )
    _judge_deadlines(reports)
    if still_running:
        fail(
            (
                f"the 503s went out, but {still_running} calls to stock.level() were still running: the hung calls were left "
                "behind, not cancelled"
            ),
            (
                "Use a deadline that cancels the call (anyio.fail_after, asyncio.timeout, asyncio.wait_for), not one that only "
                "stops waiting."
            ),
        )
    warnings = [r for r in logs.records if r.levelno >= logging.WARNING]
    if len(warnings) < 2 * STALLED:
        fail(f"{2 * STALLED} requests timed out and {len(warnings)} log lines at WARNING or above were written", 1)
    return (
        f"{2 * STALLED} requests to a back end that never answers got 503, after the {DEADLINE} s deadline in one app and the "
        f"{LONG_DEADLINE} s deadline in the other, each logged; no call left running."
    )


async def _quick_then_stalled(
    app: Any, stock: StockService, long_app: Any, long_stock: StockService
) -> tuple[dict[float, Any], int, int]:
    """One quick request, then STALLED requests to each app while the back end never answers.

    Returns the load report of each deadline, the back-end calls made before the stall, and the
    calls still running when the apps had stopped.
    """
    reports: dict[float, Any] = {}
    async with (
        inprocess_client(app, raise_app_exceptions=False) as client,
        inprocess_client(long_app, raise_app_exceptions=False) as long_client,
    ):
        quick = await client.get("/stock/tea")
        if quick.status_code != 200 or quick.json() != {"sku": "tea", "level": StockService.level_for("tea")}:
            fail(
                f"with a back end that answers at once, GET /stock/tea answered {quick.status_code} {quick.text[:80]}",
                "Keep the normal answer as it was: {'sku': ..., 'level': ...}.",
            )
        stock.stalled = long_stock.stalled = True
        calls_before = stock.calls + long_stock.calls

        async def stalled(deadline: float, c: Any) -> None:
            reports[deadline] = await load(c, lambda i: f"/stock/sku-{i}", n=STALLED, give_up_after=GIVE_UP_AFTER)

        async with anyio.create_task_group() as tg:  # both apps at once: the two deadlines run side by side
            tg.start_soon(stalled, DEADLINE, client)
            tg.start_soon(stalled, LONG_DEADLINE, long_client)
        still_running = stock.running + long_stock.running
    return reports, calls_before, still_running


def _judge_deadlines(reports: dict[float, Any]) -> None:
    """Did each app answer 503 at its own deadline: not before it, and not as late as the other's?"""
    for deadline, report in ((DEADLINE, reports[DEADLINE]), (LONG_DEADLINE, reports[LONG_DEADLINE])):
        wrong = [r for r in report.results if r.status != 503]
        if wrong:
            fail(
                f"with deadline={deadline} s, when the back end did not answer in time, GET /stock/sku-{wrong[0].index} "
                f"answered {wrong[0].status} {str(wrong[0].body)[:80]}, expected 503",
                "Catch the TimeoutError and raise HTTPException(status_code=503, ...).",
            )
        early = [r for r in report.results if r.end - r.start < deadline]
        if early:
            fail(
                f"with deadline={deadline} s, GET /stock/sku-{early[0].index} answered 503 after "
                f"{early[0].end - early[0].start:.2f} s, before the deadline. Does your code use the `deadline` parameter?",
                "Wait for the back end for `deadline` seconds (the parameter build_stock_app receives) before giving up.",
            )
    late = [r for r in reports[DEADLINE].results if r.end - r.start >= LONG_DEADLINE]
    if late:
        fail(
            f"with deadline={DEADLINE} s, GET /stock/sku-{late[0].index} answered 503 only after "
            f"{late[0].end - late[0].start:.2f} s, "
            f"as late as the other app's {LONG_DEADLINE} s deadline. Does your code use the `deadline` parameter?",
            "Wait for the back end for `deadline` seconds (the parameter build_stock_app receives), not a number of your own.",
        )


# --- 5.4 · find it: the shop's own broken data, answered as the customer's mistake ---------------------

#: What the shop's answers must never say about its own failure.
PRICE_INTERNALS = ("could not convert", "n/a", "float", "ValueError", "Traceback")


def _shown(response: httpx.Response) -> str:
    return f"{response.status_code} {response.text[:80]}"


@exercise(
    "5.4",
    "Find why a broken product says 'Invalid request'",
    hints=[
        (
            "Follow GET /products/cake by hand: which line fails, with which exception, "
            "and what turns that exception into the answer the customer gets?"
        ),
        (
            'Converting the text "n/a" to a number raises ValueError, and so does much of Python on bad data of your own. '
            "A handler that answers 400 for every ValueError blames the customer for all of them: only the coupon code is the "
            "customer's to get wrong."
        ),
        (
            "Remove the ValueError handler, and answer the customer's mistake where it happens, in the coupon route: "
            "`try: percent = parse_coupon(code)` and "
            "`except ValueError as exc: raise HTTPException(status_code=400, detail='not a coupon code') from exc`."
        ),
    ],
)
async def broken_data_is_the_shops(factory: Callable[[Catalog], Any]) -> str:
    catalog = Catalog()
    app = build_app(factory, catalog, name="build_shop")
    async with inprocess_client(app, raise_app_exceptions=False) as client:
        tea = await client.get("/products/tea")
        cake = await client.get("/products/cake")
        basket = await client.get("/basket", params={"items": "tea,cake"})
        unknown = await client.get("/products/caviar")
        coupon = await client.post("/coupons/SAVE10")
        typo = await client.post("/coupons/SAVE-TEN")
    broken = f"the price stored for cake is {CATALOG_PRICES['cake']!r}"
    for what, response in (("GET /products/cake", cake), ("GET /basket?items=tea,cake", basket)):
        if response.status_code < 500:
            fail(
                f"{what} fails because of the shop's own data ({broken}), and the customer was told {_shown(response)}: "
                "an answer that blames the customer, which no retry can fix and no alert on server errors counts.",
                0,
            )
        leaked = [word for word in PRICE_INTERNALS if word.lower() in response.text.lower()]
        if leaked:
            fail(
                f"{what} answered {_shown(response)}: it tells the customer {', '.join(map(repr, leaked))}",
                (
                    "A server error tells the client nothing about itself: let it reach the server's own 500, or answer a fixed "
                    "message."
                ),
            )
    if tea.status_code != 200 or tea.json() != {"sku": "tea", "price": 4.5}:
        fail(f"GET /products/tea answered {_shown(tea)}", "Keep the working answers as they were: {'sku': 'tea', 'price': 4.5}.")
    if unknown.status_code != 404:
        fail(f"GET /products/caviar (no such product) answered {_shown(unknown)}", "Keep answering an unknown product with 404.")
    if coupon.status_code != 200 or coupon.json() != {"code": "SAVE10", "percent": 10}:
        fail(f"POST /coupons/SAVE10 answered {_shown(coupon)}", "Keep the coupon route's answer as it was.")
    if not 400 <= typo.status_code < 500:
        fail(
            f"POST /coupons/SAVE-TEN (a code the customer mistyped) answered {_shown(typo)}: now the customer's own mistake "
            "reads as the shop's failure, and pages whoever watches the server errors",
            "The coupon code is the customer's to get wrong: answer it with a 4xx where it is read (HTTPException(400)).",
        )
    return (
        f"the shop's broken price answered {cake.status_code} on both routes that read it, "
        f"while the customer's mistyped coupon still answered {typo.status_code} and the rest worked as before."
    )
