"""Exercise 8.7's orders on two real workers: one by one on chosen workers, a crowd at once on both, then after a restart."""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import anyio
import anyio.to_thread

from asynclab.bench.crowd import Held, accepted, until_answered_or_waiting, writes_held
from asynclab.bench.database import sqlite_url, temporary_database
from asynclab.bench.load import response_body
from asynclab.bench.polling import until
from asynclab.bench.stack import stack
from asynclab.bench.worker_requests import fresh_client, paused, send_to_workers
from asynclab.bench.workers import PID_HEADER, Answer, Workers, WorkersFailed, last_error, serve_workers
from asynclab.checks._s08_service import (
    STAFF,
)
from asynclab.course.checking import fail
from asynclab.standins import s08_capstone as capstone
from asynclab.standins.s08_capstone import GOOD_CARD

WORKER_TIMEOUT = 40.0  # about 3 s when all is well; the bound only guards a badly loaded machine


def did_not_run(path: Path, exc: WorkersFailed) -> NoReturn:
    fail(
        f"uvicorn could not start {path.name}: {exc.error}",
        "Every worker imports your module and runs its startup: fix that error first.",
    )


ORDER = {"email": "ada@example.com", "amount_cents": 1250, "card": GOOD_CARD}


#: The database refusing a second order with the same number, as the server's log shows it: SQLite's words (the
#: number is the first parameter of the INSERT or UPDATE), then PostgreSQL's (asyncpg's UniqueViolationError).
DUPLICATES = (
    re.compile(r"(UNIQUE constraint failed: orders\.number)(?:.*?\n\[parameters: \('([^']+)')?", re.DOTALL),
    re.compile(
        r'(duplicate key value violates unique constraint "orders_number_key")(?:\s*DETAIL:\s*Key \(number\)=\(([^)]+)\))?'
    ),
)


def _because(log: str, answer: Answer) -> str:
    """Why an order failed: a duplicate number if the database refused one, else the log's last error, else the body.

    A duplicate number is 8.7's own fault; whatever the shared session of 8.6 made of it afterwards
    (a PendingRollbackError, "Session is already flushing") is not what this exercise is about.
    """
    duplicate = next((found for pattern in DUPLICATES if (found := pattern.search(log))), None)
    if duplicate:
        number = f" a second order numbered {duplicate.group(2)}" if duplicate.group(2) else " a duplicate order number"
        return f"; the database refused{number} (the server's log says: {duplicate.group(1)})"
    error = last_error(log)
    return f"; the server's log says: {error}" if error else f": {str(answer.body)[:120]}"


def judge_sent_one_by_one(workers: tuple[int, ...], answers: list[Answer], log: str) -> list[Any]:
    """Did three orders, one after the other on chosen workers, get three different numbers? The numbers."""
    for worker, answer_ in zip(workers, answers, strict=True):
        if answer_.status != 201:
            fail(f"order {answer_.index + 1}, sent to worker {worker}, answered {answer_.status}" + _because(log, answer_), 0)
    numbers = [order_number(a_) for a_ in answers]
    if len(set(numbers)) != len(numbers):
        fail(f"three orders on two workers got the numbers {numbers}", 1)
    return numbers


def judge_crowd(crowd: list[Answer], numbers: list[Any], log: str) -> tuple[Counter[int], list[Any]]:
    """Did orders placed at the same moment all succeed, with numbers nobody else has? Who served them, and the numbers."""
    by_worker = Counter(a_.pid for a_ in crowd)
    failed = [a_ for a_ in crowd if a_.status != 201]
    if failed:
        fail(
            f"{len(failed)} of {BURST} orders placed at the same time on {len(by_worker)} workers answered "
            f"{failed[0].status}" + _because(log, failed[0]),
            "Two requests at the same moment must not compute the same number: let the database hand it out (the row's id).",
        )
    crowd_numbers = [order_number(a_) for a_ in crowd]
    repeated = sorted(n for n, k in Counter(numbers + crowd_numbers).items() if k > 1)
    if repeated:
        fail(f"{BURST} orders placed at the same time on {len(by_worker)} workers repeated the numbers {repeated}", 1)
    return by_worker, crowd_numbers


async def judge_restart(path: Path, copy: Path, url: str, before: list[Any]) -> None:
    """After a deploy (new workers, the same database), are new numbers still new?"""
    try:
        async with orders_workers(copy, url) as restarted:
            c, d = restarted.worker_pids
            after = await send_to_workers(restarted, [(c, "/orders"), (d, "/orders")], method="POST", json=ORDER, headers=STAFF)
        log = restarted.log()
    except WorkersFailed as exc:
        did_not_run(path, exc)
    for worker, answer_ in zip((c, d), after, strict=True):
        if answer_.status != 201:
            fail(
                f"after a restart of both workers, an order sent to worker {worker} answered {answer_.status}"
                + _because(log, answer_),
                "Numbers must stay unique across restarts too: keep no count that starts again when a worker starts.",
            )
    again = sorted({order_number(a_) for a_ in after} & set(before))
    if again:
        fail(
            (
                f"after a restart of both workers, new orders got the numbers {again}, which orders placed before the restart "
                "already have"
            ),
            "Numbers must stay unique across restarts too: keep no count that starts again when a worker starts.",
        )


BURST = 8


async def crowd_on_every_worker(server: Workers, n: int, hold: Held, **request: Any) -> list[Answer]:
    """``n`` orders sent at the same moment, shared out between the workers by construction, with the writes held.

    Each worker in turn is the only one running (the others paused) while its share connects, so every
    worker holds some of the orders, whichever worker the kernel would have picked. The database's
    writes stay held until every order is answered or waits to write: on PostgreSQL, counted among its
    lock waiters (at most 5 s: orders queued behind a lock of the app's own never show there); on
    SQLite, which shows no waiters, for 0.2 s, as :func:`asynclab.bench.crowd.at_once` does.
    """
    pids, answers = server.worker_pids, []
    async with fresh_client(timeout=15.0) as client:

        async def one(i: int) -> None:
            response = await client.post(server.url + "/orders", **request)
            answers.append(Answer(i, int(response.headers.get(PID_HEADER, 0)), response.status_code, response_body(response)))

        with contextlib.ExitStack() as lock:
            lock.enter_context(writes_held(hold))
            async with anyio.create_task_group() as tg:
                for k, pid in enumerate(pids):
                    share = range(k * n // len(pids), (k + 1) * n // len(pids))
                    with paused(set(pids) - {pid}):
                        before = accepted(pid, server.port)
                        for i in share:
                            tg.start_soon(one, i)
                        await until(lambda: accepted(pid, server.port) >= before + len(share), timeout=5.0)  # noqa: B023
                await until_answered_or_waiting(hold, n, answers, within=5.0)
                lock.close()  # the writes go on
    return sorted(answers, key=lambda a: a.index)


def order_number(answer: Answer) -> Any:
    return answer.body.get("number") if isinstance(answer.body, dict) else None


@asynccontextmanager
async def workers_database(copy: Path) -> AsyncIterator[tuple[str, Held]]:
    """The orders table both runs of the workers share: its URL, and what :func:`at_once` holds to force the race.

    A SQLite file next to the copy of the service; on the PostgreSQL stack, a database in a temporary
    server, held through its psycopg URL and stopped when the block ends.
    """
    if stack() == "postgres":
        async with temporary_database(name="orders") as db:
            await capstone.prepare_database(db.url)
            yield db.url, db.server.dsn(db.name)
        return
    file = copy.parent / "orders.db"
    await capstone.prepare_database(sqlite_url(file))
    yield sqlite_url(file), file


def orders_workers(copy: Path, url: str) -> AbstractAsyncContextManager[Workers]:
    return serve_workers(f"{copy.stem}:app", app_dir=copy.parent, workers=2, tag_pid=True, env={"ORDERS_DATABASE_URL": url})
