"""Checks for section 7, multiple workers: each check serves the learner's module with ``uvicorn --workers 2``."""

from __future__ import annotations

import contextlib
import gc
import itertools
import sqlite3
import sys
import warnings
from collections import Counter
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, NoReturn

import anyio
import anyio.to_thread

from asynclab.bench.crowd import at_once
from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.worker_requests import send_to_workers
from asynclab.bench.workers import Answer, Workers, WorkersFailed, last_error, serve_workers
from asynclab.bench.workspace import fresh_copy
from asynclab.checks._harness import import_fresh, module_file
from asynclab.course.checking import exercise, fail
from asynclab.course.mistakes import warning_text
from asynclab.standins.s07_workers import ClientEvents, RatesClient, quietly

TIMEOUT = 40.0  # a correct answer takes about 2 s; the bound only guards a badly loaded machine


def _module_file(answer: Any, expected: str) -> Path:
    return module_file(answer, f"Run the %%writefile cell first, then pass its file: check(..., apps / {expected!r}).")


def _two_workers(module: Path, *, copy: Path | None = None) -> AbstractAsyncContextManager[Workers]:
    """Serve a fresh copy of ``module`` (an empty folder: a new database) with two workers.

    With ``copy``, serve that copy again instead (its folder and database as the last run left them).

    The learner passes the path of the module file their cell wrote. The check copies it into a new
    empty folder (so a SQLite file next to it starts empty), runs it under two real workers on
    127.0.0.1, and sends each request on a fresh connection to a chosen worker (the other one is
    paused meanwhile), so it knows without luck which worker served what. It stops the server and
    judges by the answers and by the server's log.
    """
    copy = copy or fresh_copy(module)
    return serve_workers(f"{copy.stem}:app", app_dir=copy.parent, workers=2, tag_pid=True)


def _did_not_run(module: Path, exc: WorkersFailed) -> NoReturn:
    if "already exists" in exc.error:
        fail(
            f"uvicorn could not start {module.name}: {exc.error}",
            "Both workers run the lifespan at the same moment: create tables with CREATE TABLE IF NOT EXISTS "
            "(metadata.create_all checks, then creates, so two workers can race), or create them once before the server starts.",
        )
    fail(
        f"uvicorn could not start {module.name}: {exc.error}",
        "Run your module's cell again and fix that error: each worker imports the module and runs its lifespan.",
    )


def _log_error(server: Workers) -> str:
    error = last_error(server.log())
    return f"; the server's log says: {error}" if error else ""


# --- 7.1 ------------------------------------------------------------------------------------------

QUOTA = 5


@exercise(
    "7.1",
    "A quota that holds across workers",
    hints=[
        "The `used` dict lives in one worker's memory: the other worker starts at zero. Count in the database instead.",
        "Each request: in one transaction, make sure the key has a row, then add one to `used` only if it is below QUOTA.",
        (
            "`async with request.app.state.engine.begin() as conn:` then INSERT ... ON CONFLICT DO NOTHING, and "
            "`UPDATE usage SET used = used + 1 WHERE key = :key AND used < :quota RETURNING used` (no row back: answer 429)."
        ),
    ],
    timeout=TIMEOUT,
)
async def quota(module: Any) -> str:
    path = _module_file(module, "quota.py")
    copy = fresh_copy(path)
    try:
        async with _two_workers(path, copy=copy) as server:
            a, b = server.worker_pids
            plan = [(a, "/ask/alice")] * QUOTA + [(b, "/ask/alice")] * 3 + [(a, "/ask/alice")] * 2
            plan += [(b, "/ask/bob"), (a, "/ask/bob")]
            answers = await send_to_workers(server, plan)
            stored = await _stored_counts(copy.with_name("quota.db"))  # read back from the file both workers share
            crowd = await at_once(server, "/ask/carol", CROWD, hold=copy.with_name("quota.db"))
    except WorkersFailed as exc:
        _did_not_run(path, exc)
    _judge_one_by_one(server, a, b, plan, answers)
    _judge_stored(plan, answers, stored)
    by_worker = _judge_crowd(server, crowd)
    await _judge_restart(path, copy)
    spread = " and ".join(f"{k} on {pid}" for pid, k in sorted(by_worker.items()))
    return (
        f"alice's calls 1-{QUOTA} on worker {a} were allowed; calls {QUOTA + 1}-{QUOTA + 3} on worker {b} and "
        f"{QUOTA + 4}-{QUOTA + 5} back on {a} were refused; bob was allowed on both; {CROWD} calls for carol at the same "
        f"moment ({spread}) were allowed exactly {QUOTA} times; after a restart the used-up quotas still held. The quota "
        "holds across workers and restarts."
    )


CROWD = 8


def _judge_one_by_one(server: Workers, a: int, b: int, plan: list[tuple[int, str]], answers: list[Answer]) -> None:
    """Did alice's calls, one after the other on workers ``a`` and ``b``, stop at her quota on both, and leave bob's alone?"""
    for (_, route), answer in zip(plan, answers, strict=True):
        if answer.status not in (200, 429):
            fail(
                f"GET {route} answered {answer.status}: {str(answer.body)[:100]}{_log_error(server)}",
                "Every call must answer 200 (allowed) or 429 (over the quota).",
            )
    status = [answer.status for answer in answers]
    first, other, back, bob = status[:QUOTA], status[QUOTA : QUOTA + 3], status[QUOTA + 3 : QUOTA + 5], status[QUOTA + 5 :]
    if first != [200] * QUOTA:
        fail(
            f"alice's first {QUOTA} calls (all to worker {a}) answered {first}; all {QUOTA} must be allowed",
            "Count the call, then compare with QUOTA: calls 1 to 5 answer 200, call 6 and later answer 429.",
        )
    if other == [200, 200, 200]:
        fail(
            f"alice's calls {QUOTA + 1} to {QUOTA + 3} went to worker {b} (the other one), which allowed all 3: "
            f"it had not seen calls 1 to {QUOTA}. Each worker counted only the calls it saw.",
            0,
        )
    if other == [200, 429, 429]:
        fail(
            f"alice's call {QUOTA + 1} was allowed and calls {QUOTA + 2} and {QUOTA + 3} refused: "
            f"one call more than her quota of {QUOTA}",
            "Allow a call only while the count before it is below QUOTA (`used < QUOTA`), not `<=`.",
        )
    if other + back != [429] * 5:
        fail(
            f"after alice's {QUOTA} allowed calls, her next calls answered {other} (worker {b}) and {back} (worker {a}); "
            "all must answer 429",
            1,
        )
    if bob != [200, 200]:
        fail(
            f"bob's first two calls answered {bob}, after alice had used up her quota",
            "Count per key: alice's calls must not use up bob's quota.",
        )


async def _stored_counts(database: Path) -> dict[str, int] | None:
    """The ``used`` count of each key in the ``usage`` table of ``database`` (read-only), or None without such a table."""

    def read() -> dict[str, int] | None:
        if not database.is_file():
            return None
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=10)) as connection:
            try:
                rows = connection.execute("SELECT key, used FROM usage").fetchall()
            except sqlite3.OperationalError:  # no such table (or column)
                return None
        return {str(key): int(used) for key, used in rows}

    return await anyio.to_thread.run_sync(read)


def _judge_stored(plan: list[tuple[int, str]], answers: list[Answer], stored: dict[str, int] | None) -> None:
    """Are the allowed calls counted in the database both workers share, the one the exercise names?"""
    allowed = Counter(
        route.removeprefix("/ask/") for (_, route), answer in zip(plan, answers, strict=True) if answer.status == 200
    )
    if stored is None:
        fail(
            "quota.db has no usage table with a `used` count per key: the calls were counted somewhere else",
            "Keep the lifespan's CREATE TABLE IF NOT EXISTS usage (key, used), and count in that table.",
        )
    for key, calls in sorted(allowed.items()):
        if key not in stored:
            fail(
                f"the usage table in quota.db holds no count for {key}, who was allowed {calls} calls: the calls were counted "
                "somewhere else (a file, a worker's memory), not in the database both workers share",
                "Count in the usage table: `UPDATE usage SET used = used + 1 WHERE key = :key AND used < :quota RETURNING used`.",
            )
        if stored[key] < calls:
            fail(
                f"the usage table in quota.db says {key} used {stored[key]} calls, yet {calls} were allowed: "
                "some calls were counted somewhere else",
                "Count every allowed call in the usage table, in the same transaction that allows it.",
            )


def _judge_crowd(server: Workers, crowd: list[Answer]) -> Counter[int]:
    """Were calls for one key, sent at the same moment, allowed exactly QUOTA times? How many each worker served."""
    by_worker = Counter(x.pid for x in crowd)
    on = f"on {len(by_worker)} worker{'s' if len(by_worker) > 1 else ''}"
    odd = [x for x in crowd if x.status not in (200, 429)]
    if odd:
        fail(
            f"{len(odd)} of {CROWD} calls for carol sent at the same moment {on} answered {odd[0].status}: "
            f"{str(odd[0].body)[:100]}{_log_error(server)}",
            "Concurrent calls must not fail: do the check and the count in one statement (UPDATE ... WHERE used < quota).",
        )
    allowed = [x for x in crowd if x.status == 200]
    used = sorted(n for x in allowed if isinstance(x.body, dict) and isinstance(n := x.body.get("used"), int))
    if len(allowed) != QUOTA or used != list(range(1, QUOTA + 1)):
        fail(
            f"{CROWD} calls for carol sent at the same moment {on} were allowed {len(allowed)} times "
            f"(quota {QUOTA}), with used = {used}: two calls read the same count before either wrote it.",
            "Read-then-write races: do the check and the count in one statement, `UPDATE usage SET used = used + 1 "
            "WHERE key = :key AND used < :quota RETURNING used`.",
        )
    return by_worker


async def _judge_restart(path: Path, copy: Path) -> None:
    """After a deploy (new workers, the same database), do the used-up quotas still hold?"""
    try:
        async with _two_workers(path, copy=copy) as restarted:  # a deploy: new workers, the same database
            c, d = restarted.worker_pids
            after = await send_to_workers(restarted, [(c, "/ask/alice"), (d, "/ask/carol"), (c, "/ask/dave")])
    except WorkersFailed as exc:
        _did_not_run(path, exc)
    if [x.status for x in after] != [429, 429, 200]:
        fail(
            f"after a restart of both workers, alice's next call answered {after[0].status}, carol's {after[1].status} "
            f"and a new key's {after[2].status}; expected 429, 429 and 200: the quota is 5 calls in total, a deploy does not "
            "reset it",
            "Keep the counts in the database only, and never reset them when a worker starts.",
        )


# --- 7.2 ------------------------------------------------------------------------------------------


@exercise(
    "7.2",
    "Open the client in each worker's lifespan",
    hints=[
        (
            "`rates = RatesClient()` at module level runs when the module is imported, in every process that imports it, "
            "and nothing closes it."
        ),
        "Give the app a lifespan: open the client before `yield`, keep it on `app.state`, close it after `yield`.",
        (
            "`app.state.rates = RatesClient()`, `yield`, `await app.state.rates.aclose()`; "
            "in the handler, `await request.app.state.rates.rate('EUR', 'USD')`."
        ),
    ],
    timeout=TIMEOUT,
)
async def lifespan_client(module: Any) -> str:
    path = _module_file(module, "prices.py")
    await _started_twice_in_one_process(path)
    amounts = [10, 25, 40, 55, 70, 85]
    try:
        async with _two_workers(path) as server:
            workers = server.worker_pids
            plan = [(workers[i % 2], f"/convert/{euros}") for i, euros in enumerate(amounts)]
            answers = await send_to_workers(server, plan)
    except WorkersFailed as exc:
        _did_not_run(path, exc)
    for euros, answer in zip(amounts, answers, strict=True):
        if answer.status != 200:
            fail(
                f"GET /convert/{euros} answered {answer.status}{_log_error(server)}",
                "Keep the route answering 200; check how the handler finds the client.",
            )
        expected = {"eur": euros, "usd": round(euros * 1.08, 2)}
        if answer.body != expected:
            fail(
                f"GET /convert/{euros} answered {answer.body!r}, expected {expected!r}",
                "Change where the client is opened, not what the route returns.",
            )
    events = ClientEvents.parse(server.log())
    if events.opened_at_import:
        fail(
            f"RatesClient was opened while the module was being imported, in processes {sorted(events.opened_at_import)}: "
            "import-time code runs in every process that imports the module, and nothing closes what it opens.",
            0,
        )
    served = len(amounts) // 2
    for pid in workers:
        opened = events.opened(pid)
        if opened == 0:
            fail(
                f"worker {pid} served {served} requests without opening a RatesClient",
                "Use a RatesClient, opened in the lifespan.",
            )
        if opened > 1:
            fail(
                f"worker {pid} opened {opened} rates clients for {served} requests: open one per worker, not one per request.", 1
            )
        if events.closed[pid] < opened:
            fail(f"worker {pid} never closed its rates client when the server stopped", 2)
    return (
        f"{len(answers)} requests, {served} to each worker {workers}: each worker opened one RatesClient "
        "after import, in its lifespan, and closed it at shutdown; in one process, importing the module opened none, "
        "and two starts of the app one after the other each opened their own client, used it and closed it."
    )


_imports = itertools.count(1)


def _clients() -> list[RatesClient]:
    """Every RatesClient alive in this process, found by the garbage collector: what was made, not what anything says."""
    return [o for o in gc.get_objects() if isinstance(o, RatesClient)]


async def _works(client: RatesClient) -> bool:
    """Does the client still answer (is it open)? Asked of the client itself."""
    try:
        await client.rate("EUR", "USD")
    except RuntimeError:
        return False
    return True


async def _started_twice_in_one_process(path: Path) -> None:
    """In this process, as a test suite or a script runs it: import the module, then start the app twice, one after the other.

    Importing must open nothing and use no deprecated API; each start must open its own client, answer, and close it.
    """
    name = f"prices_check_{next(_imports)}"
    before = {id(c) for c in _clients()}
    try:
        with quietly(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            app = import_fresh(path, name).app
            at_import = [c for c in _clients() if id(c) not in before]
            deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning) and "on_event" in str(w.message)]
            if deprecated:
                fail(f"{path.name} uses on_event, and FastAPI warned: {warning_text(deprecated[0].message)}", 1)
            if at_import:
                fail(
                    f"RatesClient was opened while the module was being imported ({len(at_import)} of them, found in this "
                    "process "
                    "right after `import prices`): import-time code runs in every process that imports the module, and nothing "
                    "closes what it opens.",
                    0,
                )
            statuses: list[int] = []
            for start in (1, 2):
                known = {id(c) for c in _clients()}
                async with inprocess_client(app, raise_app_exceptions=False) as client:
                    response = await client.get("/convert/10")
                statuses.append(response.status_code)
                opened = [c for c in _clients() if id(c) not in known]
                still_open = [c for c in opened if await _works(c)]
                if response.status_code == 200 and still_open:
                    fail(
                        f"after the app's {'first' if start == 1 else 'second'} start had stopped, the RatesClient it opened "
                        "still answered: "
                        "nothing closed it when the app stopped",
                        2,
                    )
    finally:
        sys.modules.pop(name, None)
    if statuses != [200, 200]:
        fail(
            f"started twice in one process (as a test suite does), GET /convert/10 answered {statuses[0]} on the first start "
            f"and {statuses[1]} on the second: a client kept in a module variable and closed at shutdown is gone for the next "
            "start, which reuses it instead of opening its own",
            "Open the client in the lifespan, on every start (before `yield`), and close it after `yield`.",
        )


# --- 7.3 ------------------------------------------------------------------------------------------

OLD_CENTS, NEW_CENTS = 3490, 3540
KETTLE = "/prices/kettle"


@exercise(
    "7.3",
    "A price change that some customers never see",
    hints=[
        (
            "Run the try-it cell: each answer's x-worker-pid header names the process that served it. Compare the ones that "
            "answered the old price with the one that took the PUT, and with what each of them had answered before the change."
        ),
        (
            "The PUT wrote the new price to the database. Where else does the module keep a price, and which processes can "
            "see what the PUT wrote there?"
        ),
        (
            "`known` is a dict in each worker's memory. The PUT updated the copy of the worker that served it; the other "
            "worker keeps answering from its own copy for as long as it runs. Read the price from the database on every GET, "
            "and delete `known`: the database is the one copy both workers see."
        ),
    ],
    timeout=TIMEOUT,
)
async def price_change(module: Any) -> str:
    path = _module_file(module, "price_list.py")
    try:
        async with _two_workers(path) as server:
            a, b = server.worker_pids
            before = await send_to_workers(server, [(a, KETTLE), (b, KETTLE)])  # pages viewed before the change
            change = await send_to_workers(server, [(a, KETTLE)], method="PUT", json={"cents": NEW_CENTS})
            after = await send_to_workers(server, [(a, KETTLE), (b, KETTLE)] * 2)
            unknown = await send_to_workers(server, [(b, "/prices/spoon")])
    except WorkersFailed as exc:
        _did_not_run(path, exc)
    keep = "Keep the routes' answers as they were: {'sku': ..., 'cents': ...}, and 404 for an unknown product."
    for answer in before:
        if (answer.status, answer.body) != (200, {"sku": "kettle", "cents": OLD_CENTS}):
            fail(f"GET {KETTLE} answered {answer.status} {str(answer.body)[:100]}{_log_error(server)}", keep)
    if (change[0].status, change[0].body) != (200, {"sku": "kettle", "cents": NEW_CENTS}):
        fail(f"PUT {KETTLE} with {{'cents': {NEW_CENTS}}} answered {change[0].status} {str(change[0].body)[:100]}", keep)
    if any(x.status != 200 for x in after):
        odd = next(x for x in after if x.status != 200)
        fail(f"after PUT {KETTLE}, GET {KETTLE} answered {odd.status} {str(odd.body)[:100]}{_log_error(server)}", keep)
    cents = [x.body.get("cents") if isinstance(x.body, dict) else x.body for x in after]
    if cents != [NEW_CENTS] * len(after):
        old = cents.count(OLD_CENTS)
        fail(
            f"after PUT {KETTLE} changed the price from {OLD_CENTS} to {NEW_CENTS} cents (answered 200), the next "
            f"{len(after)} GET {KETTLE} answered {cents}: {old} of them the old price",
            0,
        )
    if unknown[0].status != 404:
        fail(f"GET /prices/spoon (no such product) answered {unknown[0].status}, expected 404", keep)
    return (
        f"after PUT {KETTLE} on worker {a}, all {len(after)} reads, on worker {a} and on worker {b}, answered the new price "
        f"({NEW_CENTS} cents), though both had shown the old one before; an unknown product answered 404."
    )
