"""Checks for section 6, request context and isolation (a real SQLite or PostgreSQL database, through SQLAlchemy's async ORM)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.limits import BenchTimedOut
from asynclab.bench.load import response_body
from asynclab.checks._harness import (
    build_app,
    collect_garbage_before_leaving,
    counting_connections,
    recording_errors,
)
from asynclab.checks._s06_callers import (
    N_62,
    SEED_62,
    TENANTS_62,
    USERS_62,
    calls_62,
    judge_leaks_62,
    judge_statuses_62,
    judge_stored_62,
    keep_alive_62,
)
from asynclab.checks._s06_sessions import SEED_61, drive_61, judge_burst
from asynclab.course.checking import exercise, fail
from asynclab.standins.s06_isolation import (
    READER,
    AuditLog,
    Call,
    Moderation,
    OrderBook,
    Rendezvous,
    burst,
    temporary_database,
)

# --- 6.1 · one session per request -----------------------------------------------------------------


@exercise(
    "6.1",
    "One session per request",
    hints=[
        "Every request gets the same AsyncSession object, so one request's rollback or commit acts on the others' notes.",
        (
            "Create the engine in a lifespan (dispose of it after the yield) and hand each request a new session from a `yield` "
            "dependency."
        ),
        (
            "In the lifespan: `yield {'sessions': async_sessionmaker(engine, expire_on_commit=False)}`; the dependency: "
            "`async with request.state.sessions() as session: yield session`."
        ),
    ],
)
@collect_garbage_before_leaving
async def session_per_request(factory: Callable[[str, Moderation], Any]) -> str:
    errors: list[str] = []
    async with temporary_database(SEED_61) as db:
        moderation = Moderation(latency=0.01)
        with counting_connections(ignore_engine=READER) as connections:
            try:
                app = build_app(factory, db.url, moderation)
                async with inprocess_client(recording_errors(app, errors), raise_app_exceptions=False) as client:
                    calls, report = await drive_61(client, db, moderation, errors)
                stored_after = await db.notes()
            finally:
                still_open, engines = connections.still_open, len(connections.engines)
                await connections.close_leftovers()
    judge_burst(calls, report, stored_after, errors)
    if still_open > 0:
        fail(
            f"after the app stopped, {still_open} connection(s) to the database were still open",
            "Dispose of the engine when the app stops: `await engine.dispose()` after the lifespan's yield.",
        )
    if engines > 1:
        fail(
            f"the app connected through {engines} different engines for {len(calls) + 5} requests",
            "An engine holds the connection pool: create it once, in the lifespan, not per request.",
        )
    return (
        "a rejected request's rollback left the 3 other notes alone, and 50 mixed concurrent requests gave no errors, "
        f"lost no note and saved no rejected one ({len(stored_after)} notes in the database, one engine, every connection closed)."
    )


# --- 6.2 · who is asking, and for which tenant -----------------------------------------------------


@exercise(
    "6.2",
    "Whose request is this?",
    hints=[
        (
            "Every request writes the same current_user and current_tenant, and reads them back after an await, when another "
            "request may have overwritten them. One value per process (or per thread: all async def handlers share one) is "
            "not one per request."
        ),
        (
            "Let the dependency return the user and tenant and take them as a handler parameter, or keep them in ContextVars "
            "set in an `async def` dependency on every request, anonymous ones too (set None): on a keep-alive connection, "
            "uvicorn starts a request from the context the previous one left."
        ),
        (
            "`async def caller(x_user: Annotated[str | None, Header()] = None, x_tenant: Annotated[str | None, Header()] = None) "
            "-> tuple[str | None, str | None]: return x_user, x_tenant`, then `who: Annotated[tuple[str | None, str | None], "
            "Depends(caller)]` in each handler, and `user, tenant = who` instead of the globals (None for an anonymous "
            "caller, as before)."
        ),
    ],
    timeout=45,  # the bench's own limits on real uvicorn (SERVER_START, ANSWER_WITHIN) must run out first
)
@collect_garbage_before_leaving
async def whose_request(factory: Callable[[str, AuditLog], Any]) -> str:
    try:
        return await _whose_request(factory)
    except BenchTimedOut as exc:  # a limit of the check's own ran out: never reported as the learner's error
        fail(
            f"the check could not {exc.what} within {exc.seconds:g} s: the machine is busy; run it again",
            "This is the check's trouble, not your code's: run the check cell again (close other heavy programs if it repeats).",
        )


async def _whose_request(factory: Callable[[str, AuditLog], Any]) -> str:
    errors: list[str] = []
    rendezvous = Rendezvous(N_62, timeout=2.0)
    audit = AuditLog(rendezvous=rendezvous)
    calls = calls_62()
    async with temporary_database(SEED_62) as db:  # for the burst, then for the keep-alive part
        with counting_connections(ignore_engine=READER) as connections:
            try:
                app = build_app(factory, db.url, audit, name="build_service")
                async with inprocess_client(recording_errors(app, errors), raise_app_exceptions=False) as client:
                    report = await burst(client, calls)
            finally:
                await connections.close_leftovers()
        stored = await db.notes()
        judge_statuses_62(calls, report, errors)
        judge_leaks_62(calls, report, stored)
        if len(audit.entries) < N_62:
            fail(f"only {len(audit.entries)} of {N_62} requests called audit.record()", "Keep the audit call in every route.")
        if not rendezvous.complete:
            fail(
                f"the {N_62} requests were never inside the app at the same time: "
                f"at most {rendezvous.most_inside} of them were waiting in audit.record() at once",
                "Requests must not take turns: remove any lock, and keep the per-request values per request instead.",
            )
        judge_stored_62(calls, stored)
        served = await keep_alive_62(factory, db.url)
    return (
        f"{N_62} requests from {len(USERS_62)} users of {len(TENANTS_62)} tenants, all inside the app at once: each saw and "
        f"wrote only its own data; on real uvicorn (h11), {served} signed-in and anonymous requests on one keep-alive "
        "connection (pipelined, and after a large POST): every anonymous request stayed anonymous."
    )


# --- 6.3 · find it: the audit trail names the wrong person -------------------------------------------

PEOPLE_63 = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]


def _cancellation(order_id: int, user: str) -> str:
    return f"{user} cancelled order {order_id}"


async def _cancel_one_at_a_time(factory: Callable[[OrderBook, AuditLog], Any]) -> None:
    """Three cancellations, one after the other: each must answer 200 and be audited under its own name."""
    audit = AuditLog()
    app = build_app(factory, OrderBook(), audit, name="build_orders")
    async with inprocess_client(app, raise_app_exceptions=False) as client:
        for order_id, user in enumerate(PEOPLE_63[:3], start=1):
            response = await client.post(f"/orders/{order_id}/cancel", headers={"X-User": user})
            body = response_body(response)
            if response.status_code != 200 or body != {"order": order_id, "cancelled_by": user}:
                fail(
                    f"POST /orders/{order_id}/cancel as {user}, on its own, answered {response.status_code} {str(body)[:80]}",
                    "Keep the route's answer as it was: {'order': ..., 'cancelled_by': ...}, with the caller's name.",
                )
    expected = [_cancellation(order_id, user) for order_id, user in enumerate(PEOPLE_63[:3], start=1)]
    if audit.entries != expected:
        fail(
            f"three cancellations sent one after the other were audited as {audit.entries}, expected {expected}",
            "Keep the audit entries as they were: '<who> cancelled order <id>'.",
        )


@exercise(
    "6.3",
    "Find why the audit trail blames the wrong person",
    hints=[
        (
            "The name is read after an `await`, and by then the other requests have run too. Where does the handler read "
            "the caller's name from, and how many of that object are there?"
        ),
        (
            "request.state is per request, but it starts as a shallow copy of what the lifespan yielded: the RequestContext "
            "made in the lifespan is one object, and every request writes its caller into it."
        ),
        (
            "Keep the caller on the request itself: in identify, `request.state.user = x_user`, and read `request.state.user` "
            "wherever the handler reads `request.state.context.user`. (Or let identify return the name, and take it as a "
            "parameter.)"
        ),
    ],
)
async def audit_names_the_caller(factory: Callable[[OrderBook, AuditLog], Any]) -> str:
    await _cancel_one_at_a_time(factory)
    n = len(PEOPLE_63)
    rendezvous = Rendezvous(n, timeout=2.0)
    audit = AuditLog()
    app = build_app(factory, OrderBook(rendezvous), audit, name="build_orders")
    calls = [Call("POST", f"/orders/{100 + i}/cancel", headers={"X-User": person}) for i, person in enumerate(PEOPLE_63)]
    async with inprocess_client(app, raise_app_exceptions=False) as client:
        report = await burst(client, calls)
    wrong = [e for e in audit.entries if e not in {_cancellation(100 + i, p) for i, p in enumerate(PEOPLE_63)}]
    if wrong or len(audit.entries) != n:
        order_id = int(wrong[0].rsplit(" ", 1)[1]) if wrong and wrong[0].rsplit(" ", 1)[1].isdigit() else None
        who = PEOPLE_63[order_id - 100] if order_id is not None and 0 <= order_id - 100 < n else None
        example = (
            f" (it says {wrong[0]!r}, but {who} cancelled order {order_id})"
            if who
            else (f" (e.g. {wrong[0]!r})" if wrong else "")
        )
        fail(
            f"{n} cancellations sent at once by {n} different people: the audit trail named the wrong person for "
            f"{len(wrong)} of them{example}; sent one at a time, every entry was right.",
            0,
        )
    for i, result in enumerate(report.results):
        if result.status != 200 or result.body != {"order": 100 + i, "cancelled_by": PEOPLE_63[i]}:
            fail(
                (
                    f"POST /orders/{100 + i}/cancel as {PEOPLE_63[i]}, one of {n} at once, answered {result.status} "
                    f"{str(result.body)[:80]}"
                ),
                "The answer names the caller too: read the name from the same per-request place as the audit entry.",
            )
    if not rendezvous.complete:
        fail(
            f"the {n} cancellations were never inside the app at the same time: at most {rendezvous.most_inside} of them "
            "were waiting in orders.cancel() at once",
            "Requests must not take turns: remove any lock, and keep the caller's name per request instead.",
        )
    return (
        f"{n} cancellations sent at once by {n} people, all inside the app together: "
        "every audit entry and every answer named its own caller."
    )
