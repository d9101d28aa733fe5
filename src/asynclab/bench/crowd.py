"""Requests sent at the same moment to a real multi-worker server, each on its own new connection."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sized
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import psutil

from asynclab.bench.load import response_body
from asynclab.bench.worker_requests import fresh_client, paused, pid_of
from asynclab.bench.workers import PID_HEADER, Answer, Workers, WorkersFailed

Held = Path | str
"""What :func:`writes_held` holds: a SQLite file's path, or a PostgreSQL database's psycopg URL (``postgresql://...``)."""


@contextlib.contextmanager
def writes_held(database: Held) -> Iterator[None]:
    """Hold a database's writes: others may read it, and each write waits until the block ends.

    Requests that arrive meanwhile all read the same rows before any of them can write: a
    read-then-write that is not one statement (or one locked transaction) then loses updates every
    time, not only when the timing happens to be bad. A correct answer only waits a little longer.
    On SQLite that is the file's write lock (``BEGIN IMMEDIATE``); on PostgreSQL, every table of
    the database locked ``IN EXCLUSIVE MODE``, which lets plain reads through and makes every
    ``INSERT``, ``UPDATE``, ``DELETE`` and ``SELECT ... FOR UPDATE`` wait.
    """
    if isinstance(database, str):
        with _postgres_writes_held(database):
            yield
        return
    connection = sqlite3.connect(database, timeout=5, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        connection.close()


@contextlib.contextmanager
def _postgres_writes_held(dsn: str) -> Iterator[None]:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn) as connection:  # one transaction, rolled back when the block ends
        tables = [row[0] for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        if tables:
            names = sql.SQL(", ").join(sql.Identifier(name) for name in tables)
            connection.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(names))
        try:
            yield
        finally:
            connection.rollback()


def lock_waiters(dsn: str) -> int:
    """How many sessions of the PostgreSQL database at ``dsn`` are waiting for a lock right now."""
    import psycopg

    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(query).fetchone()
    return int(row[0]) if row else 0


async def at_once(
    server: Workers,
    path: str,
    n: int,
    *,
    method: str = "GET",
    hold: Held | None = None,
    holding: Callable[[Any], AbstractContextManager[None]] = writes_held,  # or a holder of one engine only
    within: float = 10.0,
    **request: Any,
) -> list[Answer]:
    """Send ``n`` requests at the same moment, each on its own new connection (so both workers take some).

    With ``hold`` (a SQLite file, or a PostgreSQL URL), ``holding(hold)`` (:func:`writes_held` by default)
    holds the database at the start of the burst, until :func:`until_answered_or_waiting`.
    """
    answers: list[Answer] = []
    async with fresh_client(timeout=within + 10) as client:

        async def one(i: int) -> None:
            response = await client.request(method, server.url + path, **request)
            answers.append(Answer(i, int(response.headers.get(PID_HEADER, 0)), response.status_code, response_body(response)))

        with contextlib.ExitStack() as lock:
            if hold is not None:
                lock.enter_context(holding(hold))
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
                if hold is not None:
                    await until_answered_or_waiting(hold, n, answers, within=within)
                    lock.close()  # let the writes go: the burst goes on
    return sorted(answers, key=lambda a: a.index)


async def until_answered_or_waiting(hold: Held, n: int, answers: Sized, *, within: float = 10.0) -> None:
    """How long a burst keeps the database ``hold`` held: until each of its ``n`` requests is answered or waiting.

    On PostgreSQL, a request waiting for a lock shows in ``pg_stat_activity`` (:func:`lock_waiters`): an order
    of events, not a clock, bounded by ``within`` seconds (a request queued behind a lock of the app's own
    never shows there). SQLite shows no waiters: there the hold lasts 0.2 s.
    """
    if not isinstance(hold, str):
        await anyio.sleep(0.2)
        return
    deadline = anyio.current_time() + within
    while len(answers) + await anyio.to_thread.run_sync(lock_waiters, hold) < n:
        if anyio.current_time() > deadline:
            return
        await anyio.sleep(0.01)


def accepted(pid: int, port: int) -> int:
    """How many connections to ``port`` the process ``pid`` has accepted and still holds open."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)


async def _until(ready: Any, within: float, what: str) -> None:
    deadline = anyio.current_time() + within
    while not ready():
        if anyio.current_time() > deadline:
            raise WorkersFailed(f"{what} within {within:.0f} s")
        await anyio.sleep(0.01)


async def one_per_worker(
    server: Workers, path: str, *, hold: Path, logged: str | None = None, within: float = 10.0
) -> list[Answer]:
    """One request to each worker, all in flight together while the writes of the SQLite file ``hold`` are held.

    Each request goes to its worker with the others paused (so that worker alone can accept it);
    the next is sent once that worker has accepted it and, with ``logged``, once the server's log
    has one more line holding ``logged`` (say, the app's line after its read). Then the writes go.
    So every request has read before any of them writes: an order of events, not a clock.
    """
    answers: list[Answer] = []
    pids = server.worker_pids
    async with fresh_client(timeout=within + 5) as client:

        async def one(i: int) -> None:
            response = await client.get(server.url + path)
            body = response_body(response)
            answers.append(Answer(i, pid_of(response, body), response.status_code, body))

        async with anyio.create_task_group() as tg:
            with writes_held(hold):
                for i, pid in enumerate(pids):
                    seen = len(server.lines(logged)) if logged else 0
                    with paused(set(pids) - {pid}):
                        before = accepted(pid, server.port)
                        tg.start_soon(one, i)
                        await _until(lambda: accepted(pid, server.port) > before, within, f"worker {pid} accepted no connection")  # noqa: B023
                    if logged:
                        await _until(lambda: len(server.lines(logged)) > seen, within, f"the log showed no new {logged!r} line")  # noqa: B023
    return sorted(answers, key=lambda a: a.index)
