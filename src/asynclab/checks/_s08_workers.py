"""Exercise 8.7's orders on two real workers: one by one on chosen workers, a crowd at once, then after a restart."""

from __future__ import annotations

import re
from collections import Counter
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, NoReturn

from asynclab.bench.worker_requests import send_to_workers
from asynclab.bench.workers import Answer, Workers, WorkersFailed, last_error, serve_workers
from asynclab.checks._s08_service import (
    STAFF,
)
from asynclab.course.checking import fail
from asynclab.standins.s08_capstone import GOOD_CARD

WORKER_TIMEOUT = 40.0  # about 3 s when all is well; the bound only guards a badly loaded machine


def did_not_run(path: Path, exc: WorkersFailed) -> NoReturn:
    fail(
        f"uvicorn could not start {path.name}: {exc.error}",
        "Every worker imports your module and runs its startup: fix that error first.",
    )


ORDER = {"email": "ada@example.com", "amount_cents": 1250, "card": GOOD_CARD}


DUPLICATE = re.compile(r"UNIQUE constraint failed: orders\.number(?:.*?\n\[parameters: \('([^']+)')?", re.DOTALL)


def _because(log: str, answer: Answer) -> str:
    """Why an order failed: a duplicate number if the database refused one, else the log's last error, else the body.

    A duplicate number is 8.7's own fault; whatever the shared session of 8.6 made of it afterwards
    (a PendingRollbackError, "Session is already flushing") is not what this exercise is about.
    """
    duplicate = DUPLICATE.search(log)
    if duplicate:
        number = f" a second order numbered {duplicate.group(1)}" if duplicate.group(1) else " a duplicate order number"
        return f"; the database refused{number} (the server's log says: UNIQUE constraint failed: orders.number)"
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


def order_number(answer: Answer) -> Any:
    return answer.body.get("number") if isinstance(answer.body, dict) else None


def orders_workers(copy: Path, url: str) -> AbstractAsyncContextManager[Workers]:
    return serve_workers(f"{copy.stem}:app", app_dir=copy.parent, workers=2, tag_pid=True, env={"ORDERS_DATABASE_URL": url})
