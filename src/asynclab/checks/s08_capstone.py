"""Checks for section 8, the capstone: one check per rule, each judging the learner's ``orders_service.py`` by behaviour.

Checks 8.1 to 8.6 send their requests one after another wherever they can, so that a rule not yet fixed
does not make another rule's check fail.
"""

from __future__ import annotations

import gc
import logging
import warnings
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import create_async_engine

from asynclab.bench.inprocess import lifespan_started
from asynclab.bench.probes import capture_logs
from asynclab.bench.worker_requests import send_to_workers
from asynclab.bench.workers import WorkersFailed
from asynclab.bench.workspace import fresh_copy
from asynclab.checks._harness import concurrently, counting_connections
from asynclab.checks._s08_service import (
    STAFF,
    app_errors,
    expect_created,
    import_service,
    orders_database,
    place_order,
    scenario,
    service_file,
    serving,
    stored_orders,
)
from asynclab.checks._s08_workers import (
    BURST,
    ORDER,
    WORKER_TIMEOUT,
    crowd_on_every_worker,
    did_not_run,
    judge_crowd,
    judge_restart,
    judge_sent_one_by_one,
    orders_workers,
    workers_database,
)
from asynclab.course.checking import exercise, fail
from asynclab.course.mistakes import warning_text
from asynclab.standins.s05_errors import rename_table
from asynclab.standins.s08_capstone import DECLINED_CARD, journal

# --- 8.1 async route handlers ---------------------------------------------------------------------


@exercise(
    "8.1",
    (
        '"Placing orders gets slow when we are busy"'
    ),  # the symptom, as the notebook heads it: the rule behind it is the learner's to find
    hints=[
        "Find a call in an `async def` route that does not `await`: while it runs, the whole worker waits with it.",
        "The payment SDK blocks its thread. In an `async def` route, run it in a worker thread.",
        (
            "`order.receipt = await anyio.to_thread.run_sync(request.app.state.payments.charge, order.number, new.amount_cents, "
            "new.card)`"
        ),
    ],
)
async def loop_stays_free(answer: Any) -> str:
    path = service_file(answer)
    async with serving(path) as (client, _):
        for i in range(3):
            expect_created(await place_order(client, f"buyer{i}@example.com"), f"POST /orders #{i + 1}")
        watch = journal.watch
    charges = journal.calls.of("payments.charge")
    if charges.calls < 3:
        fail(f"3 orders made {charges.calls} charges", "Every order must still be charged.")
    if charges.on_loop:
        fail(
            f"{charges.on_loop} of {charges.calls} card charges ran on the event-loop thread: while the payment "
            "provider answers, every other request to this worker waits.",
            0,
        )
    if watch is not None and watch.loop_waited:
        fail(
            f"{watch.loop_waited} of {charges.calls} card charges ran in another thread, but the event loop waited for "
            "each of them (it could run nothing else meanwhile): blocking on a thread's result blocks the loop just the same.",
            2,
        )
    return (
        f"{charges.calls} of {charges.calls} card charges ran in worker threads, and the event loop ran other work "
        "during every one of them."
    )


# --- 8.2 async dependencies -----------------------------------------------------------------------


@exercise(
    "8.2",
    '"An order appeared that no staff member placed"',
    reveals=("StaffTokens.verify",),
    hints=[
        "Try POST /orders with no Authorization header at all. What does it answer, and why?",
        "Look at what the staff dependency gets back from `tokens.verify(...)`: is it a name, or something still to be awaited?",
        "`name = await tokens.verify(...)`, then `if name is None: raise HTTPException(401, ...)`.",
    ],
)
async def staff_only(answer: Any) -> str:
    path = service_file(answer)
    async with serving(path) as (client, url):
        anonymous = await place_order(client, "nobody@example.com", headers={})
        forged = await place_order(client, "forger@example.com", headers={"Authorization": "Bearer tok-forged"})
        staff = await place_order(client, "ada@example.com")
        emails = [row["email"] for row in await stored_orders(url)]
    if journal.strangers:
        how = journal.strangers[0]
        new_loop = "a new event loop (asyncio.run)" if how == "asyncio.run()" else "an event loop of its own"
        error = next((e for e in app_errors if isinstance(e, RuntimeError)), None)
        sent = (("with no token", anonymous), ("with a forged token", forged), ("with a staff token", staff))
        label, status = next(((lb, r.status_code) for lb, r in sent if r.status_code >= 500), ("", 0))
        fail(
            (f"POST /orders {label} answered {status}: " if label else "")
            + f"tokens.verify() ran on {new_loop}, not on the app's: {how} starts a new loop for every request, and the "
            "identity provider's client, like any async client, works only on the loop it first connected on"
            + (f" (it raised {type(error).__name__}: {error})." if error else "."),
            (
                "Keep the staff dependency `async def` and write `name = await tokens.verify(...)`: it then runs on the app's "
                "own loop."
            ),
        )
    for label, response in (("with no token", anonymous), ("with a forged token", forged)):
        if response.status_code != 401:
            fail(
                f"POST /orders {label} answered {response.status_code}, not 401"
                + (": anybody can place an order." if response.status_code == 201 else f": {response.text[:120]}"),
                0 if label == "with no token" else 1,
            )
    expect_created(staff, "POST /orders with a staff token")
    if emails != ["ada@example.com"]:
        fail(f"the orders table holds {emails}, expected only the staff member's order", 1)
    return "no token: 401 · forged token: 401 · staff token: 201, and only the staff member's order was stored."


# --- 8.3 background tasks -------------------------------------------------------------------------

FULL, SLOW = "full@example.com", "slow@example.com"


def _mentions(record: logging.LogRecord, *words: str) -> bool:
    text = record.getMessage() + (repr(record.exc_info[1]) if record.exc_info else "")
    return any(word in text for word in words)


@exercise(
    "8.3",
    '"The customer never got a confirmation"',
    hints=[
        (
            "Send an order to an address whose mailbox is full, then read your service's log. Then stop the service while a "
            "slow e-mail is on its way."
        ),
        (
            "A task nobody awaits loses its exception, and a shutdown that does not wait for it loses the e-mail. FastAPI's "
            "BackgroundTasks runs it as part of the request."
        ),
        (
            "`background.add_task(send_confirmation, request.app.state.mail, order.number, order.email)` (with a `background: "
            "BackgroundTasks` parameter) and a `send_confirmation` that catches, and `log.exception(...)`s with the order "
            "number, every failure."
        ),
    ],
)
async def mail_is_tracked(answer: Any) -> str:
    path = service_file(answer)
    with capture_logs("", logging.WARNING) as logs:
        async with serving(path, failing_mailboxes={FULL}, slow_mailboxes={SLOW}) as (client, _):
            full = expect_created(await place_order(client, FULL), f"POST /orders for {FULL}")
            slow = expect_created(await place_order(client, SLOW), f"POST /orders for {SLOW}")
            mail = journal.mail_clients[-1] if journal.mail_clients else None
            with anyio.move_on_after(2):
                while mail is not None and mail.outcome.get(FULL) in (None, "sending"):
                    await anyio.sleep(0.01)
        outcome = dict(mail.outcome) if mail is not None else {}
        gc.collect()  # an unreferenced failed task reports "exception was never retrieved" now
    if outcome.get(FULL) != "failed" or SLOW not in outcome:
        fail(f"the service did not try to send both confirmations: {outcome}", "Every order still sends its confirmation.")
    by_app = [r for r in logs.records if r.name != "asyncio"]  # WARNING and up
    own = [r for r in by_app if r.levelno >= logging.ERROR]
    if not any(_mentions(r, FULL, str(full.get("number"))) for r in own):
        lost = [r for r in logs.records if r.name == "asyncio"]
        where = " only asyncio said 'Task exception was never retrieved', without the order" if lost else " nothing was logged"
        fail(
            f"the confirmation of order {full.get('number')} to {FULL} failed (550 mailbox full), and{where}: "
            "nobody will know the customer got no e-mail.",
            0,
        )
    if outcome[SLOW] == "sending":
        fail(
            f"when the service had shut down, the confirmation of order {slow.get('number')} to {SLOW} was still on its "
            "way: when the process exits it is lost.",
            1,
        )
    if outcome[SLOW] == "cancelled" and not any(_mentions(r, SLOW, str(slow.get("number"))) for r in by_app):
        fail(f"the confirmation to {SLOW} was cancelled at shutdown without a word in the log", 2)
    return f"the failed e-mail was logged with its order; the slow one ended as '{outcome[SLOW]}' before shutdown finished."


# --- 8.4 lifespan ---------------------------------------------------------------------------------


@exercise(
    "8.4",
    '"Connections pile up after a failed start"',
    hints=[
        "Start and stop the service with warnings shown, then start it while the mail server is down: what is left open?",
        "`on_event` is deprecated, and its shutdown handlers never run when startup fails half-way. Use one lifespan.",
        (
            "`@asynccontextmanager async def lifespan(app)` with an `AsyncExitStack`: register each close right after opening; "
            "`FastAPI(lifespan=lifespan)`."
        ),
    ],
)
async def lifespan_owns_resources(answer: Any) -> str:
    path = service_file(answer)
    async with orders_database() as url:  # one database for both starts (on PostgreSQL, one server)
        with warnings.catch_warnings(record=True) as caught, counting_connections() as connections:
            warnings.simplefilter("always", DeprecationWarning)
            try:
                async with serving(path, url=url) as (client, _):
                    expect_created(await place_order(client), "POST /orders")
                    used = connections.opened
            finally:
                still_open = connections.still_open
                await connections.close_leftovers()
        left_after_shutdown = journal.left_open()  # before the next start resets the journal
        started, left = await _start_with_the_mail_server_down(path, url)
    deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning) and "on_event" in str(w.message)]
    if deprecated:
        fail(f"the service uses on_event, and FastAPI warned: {warning_text(deprecated[0].message)}", 1)
    if left_after_shutdown:
        fail(f"after a normal shutdown, {', '.join(left_after_shutdown)} was still open", 2)
    if still_open:
        fail(
            f"after a normal shutdown, {still_open} of the {used} database connection(s) the service opened were still "
            "open: the engine was never disposed (is `engine.dispose()` awaited?)",
            (
                "Register `stack.push_async_callback(engine.dispose)` (an async callback, awaited at exit) right after creating "
                "the engine."
            ),
        )
    if started:
        fail(
            "with the mail server down, the service started anyway", "Let a failed connection fail the startup: do not catch it."
        )
    if left:
        fail(
            f"with the mail server down, startup failed (as it should) but {', '.join(left)} was left open: "
            "nothing closed what had been opened before the failure.",
            2,
        )
    return (
        f"no deprecation warnings; the payment and mail clients were closed and the engine disposed ({used} database "
        "connection(s) opened, all closed) after shutdown, and everything opened was closed after a startup that failed half-way."
    )


async def _start_with_the_mail_server_down(path: Path, url: str) -> tuple[bool, list[str]]:
    """Start the service while the mail server is down: did it start, and what did it leave open?"""
    with scenario(database_url=url, mail_server_down=True):
        app = import_service(path).app
        started = True
        try:
            async with lifespan_started(app, startup_timeout=5, shutdown_timeout=5):
                pass
        except Exception:  # noqa: BLE001 - whatever failed the startup, this part expects it
            started = False
        return started, journal.left_open()


# --- 8.5 error handling ---------------------------------------------------------------------------

#: What the server's inside looks like in a body: SQLite's words, then PostgreSQL's (asyncpg's).
INTERNALS_85 = ("SELECT", "orders_moved", "no such table", "Traceback", "relation ", "asyncpg", "UndefinedTable")


@exercise(
    "8.5",
    '"Looking up a wrong order number pages the on-call engineer"',
    hints=[
        "Ask for an order that does not exist. What status comes back, and what did the log say?",
        "`except Exception` also catches the HTTPException(404) raised inside the `try`.",
        "Catch only database errors (`SQLAlchemyError`) around the query, and raise the 404 after the `try`.",
    ],
)
async def missing_is_404(answer: Any) -> str:
    path = service_file(answer)
    with capture_logs("", logging.ERROR) as logs:
        async with serving(path) as (client, url):
            created = expect_created(await place_order(client), "POST /orders")
            found = await client.get(f"/orders/{created.get('id')}")
            missing = await client.get("/orders/9999")
            engine = create_async_engine(url)
            try:
                await rename_table(engine, "orders", "orders_moved")  # the table is gone
                broken = await client.get("/orders/9998")  # not in any session's identity map: the query must run
            finally:
                await engine.dispose()
    if found.status_code != 200 or found.json() != created:
        fail(f"GET /orders/{created.get('id')} for an existing order answered {found.status_code}: {found.text[:120]}", 2)
    if missing.status_code != 404:
        fail(f"GET /orders/9999 for an order that does not exist answered {missing.status_code}: {missing.text[:120]}", 1)
    if broken.status_code < 500:
        fail(
            f"with the orders table gone, GET /orders/9998 answered {broken.status_code}: "
            "a broken database is the server's fault, not a missing order.",
            "Answer 500 or 503 when the database fails, and log it.",
        )
    leaked = [word for word in INTERNALS_85 if word in broken.text]
    if leaked:
        fail(
            f"the {broken.status_code} body tells the client about the server's inside ({leaked[0]!r}): {broken.text[:120]}",
            "Log the details; answer a fixed message.",
        )
    return (
        f"existing: 200 · missing: 404 · database gone: {broken.status_code}, "
        f"with {len(logs.records)} error line(s) logged and nothing leaked."
    )


# --- 8.6 request isolation ------------------------------------------------------------------------


@exercise(
    "8.6",
    '"We shipped an order whose card was declined"',
    hints=[
        f"Place an order with the declined test card ({DECLINED_CARD}), then a good order, then look at the orders table.",
        "One session shared by every request keeps the declined order's unfinished work, and the next request's commit saves it.",
        (
            "A `yield` dependency: `async with request.app.state.sessions() as session: yield session`, with a session factory "
            "(async_sessionmaker) made in the startup code."
        ),
    ],
)
async def session_per_request(answer: Any) -> str:
    path = service_file(answer)
    async with serving(path) as (client, url):
        declined = await place_order(client, "declined@example.com", card=DECLINED_CARD)
        good = expect_created(await place_order(client, "good@example.com"), "POST /orders after a declined one")
        stored = await stored_orders(url)
        if declined.status_code != 402:
            fail(
                f"an order with the declined card answered {declined.status_code}, not 402: {declined.text[:120]}",
                "Keep answering 402 for a declined card.",
            )
        if [row["email"] for row in stored] != ["good@example.com"]:
            fail(
                f"after a declined order and a good one, the orders table holds {[row['email'] for row in stored]}: "
                "the declined order was saved by the next request's commit.",
                1,
            )
        crowd = await concurrently(5, lambda i: place_order(client, f"crowd{i}@example.com"))
    statuses = sorted(r.status_code for r in crowd.values())
    if statuses != [201] * 5:
        fail(f"5 orders placed at the same time answered {statuses}", 1)
    return f"the declined order left nothing behind (order {good.get('number')} alone was saved); 5 orders at once: 5 × 201."


# --- 8.7 multiple workers -------------------------------------------------------------------------


@exercise(
    "8.7",
    '"Since we run two workers, some orders fail"',
    hints=[
        "Run the service with two workers and place one order on each. Compare the order numbers.",
        "A counter in a module's memory exists once per worker: both workers count from 1.",
        (
            "Let the database hand out the number: `await session.flush()` gives `order.id`, then `order.number = "
            'f"ORD-{order.id:05d}"`. Orders placed at the same moment also need 8.6\'s fix: one session per request.'
        ),
    ],
    timeout=WORKER_TIMEOUT,
)
async def unique_across_workers(answer: Any) -> str:
    path = service_file(answer)
    copy = fresh_copy(path)
    async with workers_database(copy) as (url, hold):  # a SQLite file, or a database in a temporary PostgreSQL server
        try:
            async with orders_workers(copy, url) as server:
                a, b = server.worker_pids
                answers = await send_to_workers(
                    server, [(a, "/orders"), (b, "/orders"), (a, "/orders")], method="POST", json=ORDER, headers=STAFF
                )
                crowd = await crowd_on_every_worker(server, BURST, hold, json=ORDER, headers=STAFF)
            log = server.log()  # read once the server has stopped: every line is written
        except WorkersFailed as exc:
            did_not_run(path, exc)
        numbers = judge_sent_one_by_one((a, b, a), answers, log)
        by_worker, crowd_numbers = judge_crowd(crowd, numbers, log)
        await judge_restart(path, copy, url, numbers + crowd_numbers)
    spread = " and ".join(f"{k} on {pid}" for pid, k in sorted(by_worker.items()))
    return (
        f"3 orders on 2 workers (pids {a} and {b}), then {BURST} at the same time ({spread}), then 2 more after a restart "
        f"of both workers: {3 + BURST + 2} orders, {3 + BURST + 2} different numbers."
    )
