"""Requests sent at the same moment to a real multi-worker server, each on its own new connection."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

from asynclab.bench.load import response_body
from asynclab.bench.worker_requests import fresh_client, paused, pid_of
from asynclab.bench.workers import PID_HEADER, Answer, Workers, WorkersFailed


@contextlib.contextmanager
def writes_held(database: Path) -> Iterator[None]:
    """Hold the write lock of a SQLite file: others may read it, and each write waits until the block ends.

    Requests that arrive meanwhile all read the same rows before any of them can write: a
    read-then-write that is not one statement (or one locked transaction) then loses updates every
    time, not only when the timing happens to be bad. A correct answer only waits a little longer.
    """
    connection = sqlite3.connect(database, timeout=5, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        connection.close()


async def at_once(
    server: Workers, path: str, n: int, *, method: str = "GET", hold: Path | None = None, **request: Any
) -> list[Answer]:
    """Send ``n`` requests at the same moment, each on its own new connection (so both workers take some).

    With ``hold`` (a SQLite file), its writes are held for the first 0.2 s of the burst (see :func:`writes_held`).
    """
    if hold is not None:
        results: list[list[Answer]] = []

        async def burst() -> None:
            results.append(await at_once(server, path, n, method=method, **request))

        with contextlib.ExitStack() as lock:
            lock.enter_context(writes_held(hold))
            async with anyio.create_task_group() as tg:
                tg.start_soon(burst)
                await anyio.sleep(0.2)
                lock.close()  # let the writes go: the burst goes on
        return results[0]
    answers: list[Answer] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=10, headers={"Connection": "close"}) as client:

        async def one(i: int) -> None:
            response = await client.request(method, server.url + path, **request)
            try:
                body = response.json()
            except ValueError:
                body = response.text
            pid = int(response.headers.get(PID_HEADER, 0))
            answers.append(Answer(i, pid, response.status_code, body))

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    return sorted(answers, key=lambda a: a.index)


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
