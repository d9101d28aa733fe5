"""Checks for section 7, multiple workers: each check serves the learner's module with ``uvicorn --workers 2``."""

from __future__ import annotations

import gc
import itertools
import sys
import warnings
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, NoReturn

from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.worker_requests import send_to_workers
from asynclab.bench.workers import Workers, WorkersFailed, serve_workers
from asynclab.bench.workspace import fresh_copy
from asynclab.checks._harness import import_fresh, module_file
from asynclab.checks._s07_database import judge_opened, shared_database
from asynclab.checks._s07_quota import (
    CROWD,
    QUOTA,
    USAGE,
    VARIABLE,
    judge_crowd,
    judge_one_by_one,
    judge_stored,
    log_error,
    stored_counts,
)
from asynclab.course.checking import exercise, fail
from asynclab.course.mistakes import warning_text
from asynclab.standins.s07_workers import ClientEvents, RatesClient, quietly

TIMEOUT = 40.0  # a correct answer takes about 3 s; the bound only guards a badly loaded machine


def _module_file(answer: Any, expected: str) -> Path:
    return module_file(answer, f"Run the %%writefile cell first, then pass its file: check(..., apps / {expected!r}).")


def _two_workers(
    module: Path, *, copy: Path | None = None, env: dict[str, str] | None = None
) -> AbstractAsyncContextManager[Workers]:
    """Serve a fresh copy of ``module`` (an empty folder: a new database) with two workers.

    With ``copy``, serve that copy again instead (its folder and database as the last run left them);
    ``env`` goes to the workers (the URL of the database to open, on PostgreSQL).

    The learner passes the path of the module file their cell wrote. The check copies it into a new
    empty folder (so a SQLite file next to it starts empty), runs it under two real workers on
    127.0.0.1, and sends each request on a fresh connection to a chosen worker (the other one is
    paused meanwhile), so it knows without luck which worker served what. It stops the server and
    judges by the answers and by the server's log.
    """
    copy = copy or fresh_copy(module)
    return serve_workers(f"{copy.stem}:app", app_dir=copy.parent, workers=2, tag_pid=True, env=env)


def _did_not_run(module: Path, exc: WorkersFailed) -> NoReturn:
    if "already exists" in exc.error or "pg_type_typname_nsp_index" in exc.error:
        fail(
            f"uvicorn could not start {module.name}: {exc.error}",
            "Both workers run the lifespan at the same moment, and on PostgreSQL two CREATE TABLE at once can fail one of "
            "them even with IF NOT EXISTS (metadata.create_all too): create tables once, before the server starts.",
        )
    if 'syntax error at or near "OR"' in exc.error:
        fail(
            f"uvicorn could not start {module.name} on PostgreSQL: {exc.error}",
            "INSERT OR IGNORE is SQLite's own: write INSERT ... ON CONFLICT (...) DO NOTHING, which both databases understand.",
        )
    fail(
        f"uvicorn could not start {module.name}: {exc.error}",
        "Run your module's cell again and fix that error: each worker imports the module and runs its lifespan.",
    )


# --- 7.1 ------------------------------------------------------------------------------------------


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
        async with shared_database(copy, variable=VARIABLE, database="quota", tables=(USAGE,)) as db:
            async with _two_workers(path, copy=copy, env=db.env) as server:
                a, b = server.worker_pids
                plan = [(a, "/ask/alice")] * QUOTA + [(b, "/ask/alice")] * 3 + [(a, "/ask/alice")] * 2
                plan += [(b, "/ask/bob"), (a, "/ask/bob")]
                answers = await send_to_workers(server, plan)
                stored = await stored_counts(db)  # read back from the database both workers share
                first = await send_to_workers(server, [(a, "/ask/carol")])
                crowd = await db.at_once(server, "/ask/carol", CROWD)
            judge_one_by_one(server, a, b, plan, answers)
            judge_opened(path, db)
            judge_stored(plan, answers, stored, db.name)
            by_worker = judge_crowd(server, first[0], crowd, db)
            await _judge_restart(path, copy, db.env)
    except WorkersFailed as exc:
        _did_not_run(path, exc)
    spread = " and ".join(f"{k} on {pid}" for pid, k in sorted(by_worker.items()))
    return (
        f"alice's calls 1-{QUOTA} on worker {a} were allowed; calls {QUOTA + 1}-{QUOTA + 3} on worker {b} and "
        f"{QUOTA + 4}-{QUOTA + 5} back on {a} were refused; bob was allowed on both; after carol's first call, {CROWD} more "
        f"at the same moment ({spread}) were allowed exactly {QUOTA - 1} times; after a restart the used-up quotas still "
        f"held{db.on}. The quota holds across workers and restarts."
    )


async def _judge_restart(path: Path, copy: Path, env: dict[str, str]) -> None:
    """After a deploy (new workers, the same database), do the used-up quotas still hold?"""
    async with _two_workers(path, copy=copy, env=env) as restarted:  # a deploy: new workers, the same database
        c, d = restarted.worker_pids
        after = await send_to_workers(restarted, [(c, "/ask/alice"), (d, "/ask/carol"), (c, "/ask/dave")])
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
                f"GET /convert/{euros} answered {answer.status}{log_error(server)}",
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
# What the handed-out lifespan creates; on PostgreSQL the check creates it before the workers start.
PRICES = "CREATE TABLE IF NOT EXISTS prices (sku TEXT PRIMARY KEY, cents INTEGER NOT NULL)"


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
    copy = fresh_copy(path)
    try:
        async with (
            shared_database(copy, variable="PRICE_LIST_DATABASE_URL", database="price_list", tables=(PRICES,)) as db,
            _two_workers(path, copy=copy, env=db.env) as server,
        ):
            a, b = server.worker_pids
            before = await send_to_workers(server, [(a, KETTLE), (b, KETTLE)])  # pages viewed before the change
            change = await send_to_workers(server, [(a, KETTLE)], method="PUT", json={"cents": NEW_CENTS})
            after = await send_to_workers(server, [(a, KETTLE), (b, KETTLE)] * 2)
            unknown = await send_to_workers(server, [(b, "/prices/spoon")])
    except WorkersFailed as exc:
        _did_not_run(path, exc)
    judge_opened(path, db)
    keep = "Keep the routes' answers as they were: {'sku': ..., 'cents': ...}, and 404 for an unknown product."
    for answer in before:
        if (answer.status, answer.body) != (200, {"sku": "kettle", "cents": OLD_CENTS}):
            fail(f"GET {KETTLE} answered {answer.status} {str(answer.body)[:100]}{log_error(server)}", keep)
    if (change[0].status, change[0].body) != (200, {"sku": "kettle", "cents": NEW_CENTS}):
        fail(f"PUT {KETTLE} with {{'cents': {NEW_CENTS}}} answered {change[0].status} {str(change[0].body)[:100]}", keep)
    if any(x.status != 200 for x in after):
        odd = next(x for x in after if x.status != 200)
        fail(f"after PUT {KETTLE}, GET {KETTLE} answered {odd.status} {str(odd.body)[:100]}{log_error(server)}", keep)
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
        f"({NEW_CENTS} cents), though both had shown the old one before; an unknown product answered 404{db.on}."
    )
