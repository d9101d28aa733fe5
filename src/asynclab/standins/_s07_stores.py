"""Lesson 7's shared stores on the PostgreSQL stack: two transactions at once, every worker's pool filled, Redis's clients.

Every wait here is an order of events, never a clock."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from asynclab.bench.polling import until

if TYPE_CHECKING:
    from asynclab.bench.postgres_server import PostgresServer
    from asynclab.bench.workers import Answer

CREATE_USAGE = "CREATE TABLE IF NOT EXISTS usage (key TEXT PRIMARY KEY, used INTEGER NOT NULL)"
ENSURE = text("INSERT INTO usage VALUES ('carol', 0) ON CONFLICT (key) DO NOTHING")
READ = text("SELECT used FROM usage WHERE key = 'carol'")
WRITE = text("UPDATE usage SET used = :n WHERE key = 'carol'")
WAITING = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")


def _engine(url: str) -> AsyncEngine:
    """An engine on ``url``; on SQLite, one that never waits for the file's lock, so a wait shows as an error at once."""
    return create_async_engine(url, connect_args={"timeout": 0} if url.startswith("sqlite") else {})


def _why(error: DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0].split(">: ")[-1]


async def two_calls(url: str) -> tuple[list[str], int]:
    """Calls A and B, each one transaction: make sure carol's row exists, read ``used``, write ``used + 1``.

    Her row exists already (from an earlier call). B starts while A's transaction is open, after
    A's read and before A's write. Returns what B met, and ``used`` after both calls (2 when no
    update was lost).
    """
    engine, seen = _engine(url), []
    try:
        async with engine.begin() as earlier:  # carol has called before: her row exists
            await earlier.execute(text(CREATE_USAGE))
            await earlier.execute(ENSURE)
        async with engine.connect() as a, engine.connect() as b:
            await a.execute(ENSURE)
            n_a = (await a.execute(READ)).scalar_one()
            try:
                await b.execute(ENSURE)
                n_b: int | None = (await b.execute(READ)).scalar_one()
                isolation = (
                    ""
                    if engine.dialect.name != "postgresql"
                    else (await b.execute(text("SHOW transaction_isolation"))).scalar_one()
                )
                seen.append(f"B read {n_b} while A's transaction was open" + (f" (isolation: {isolation})" if isolation else ""))
            except DBAPIError as error:
                seen.append(f"B could not start while A's transaction was open: {_why(error)}")
                await b.rollback()
                n_b = None
            await a.execute(WRITE, {"n": n_a + 1})
            await a.commit()
            if n_b is None:  # B goes once A has committed
                await b.execute(ENSURE)
                n_b = (await b.execute(READ)).scalar_one()
                seen.append(f"B read {n_b} after A's commit")
            await b.execute(WRITE, {"n": n_b + 1})
            await b.commit()
            return seen, (await a.execute(READ)).scalar_one()
    finally:
        await engine.dispose()


async def two_creates(url: str) -> list[str]:
    """Workers A and B start together: each runs ``CREATE TABLE IF NOT EXISTS usage`` in its startup's transaction.

    B's comes while A's transaction is open; A commits once B has failed or waits for a lock.
    Returns what B met, in order.
    """
    engine, seen, done = _engine(url), list[str](), anyio.Event()
    try:
        async with engine.connect() as a, engine.connect() as b, engine.connect() as watcher:
            await a.execute(text(CREATE_USAGE))

            async def b_creates(when: str) -> None:
                try:
                    await b.execute(text(CREATE_USAGE))
                    await b.commit()
                    seen.append(f"B, {when}: no error, nothing done (A's table was already there)")
                except DBAPIError as error:
                    seen.append(f"B, {when}: {_why(error)}")
                    await b.rollback()
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(b_creates, "while A's transaction was open")
                postgres = engine.dialect.name == "postgresql"
                while not done.is_set() and not (postgres and (await watcher.execute(WAITING)).scalar_one()):
                    await anyio.sleep(0.005)
                if not done.is_set():
                    seen.append("B waited for A's transaction")
                await a.commit()
            if "locked" in seen[-1]:
                await b_creates("after A's commit")
        return seen
    finally:
        await engine.dispose()


# --- every worker's pool, filled at once ----------------------------------------------------------

BARRIER = 7  # the advisory lock our connection holds: each request waits for it, holding its pooled connection


@dataclass
class PoolsFilled:
    """One run: how many connections the workers' pools wanted, how many the server held, what failed."""

    workers: int
    pool_size: int
    limit: int  # the server's max_connections
    held: int  # the app's connections, all held at the same moment
    ours: int  # connections of ours (the one that counts and holds the barrier)
    answers: list[Answer]
    log: str
    left_after: int  # the app's connections still open once the server had stopped

    @property
    def wanted(self) -> int:
        return self.workers * self.pool_size

    @property
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    def __str__(self) -> str:
        return (
            f"{self.workers} workers × pool_size={self.pool_size} = {self.wanted} connections wanted; "
            f"max_connections={self.limit}, {self.ours} of them ours: the server held {self.held} for the app, "
            f"and {len(self.failed)} of {len(self.answers)} requests failed"
        )


async def fill_pools(app: str, app_dir: Path, pg: PostgresServer, *, workers: int, pool_size: int) -> PoolsFilled:
    """Serve ``app`` with ``workers`` workers, each with ``pool_size`` connections to ``pg``; fill every pool at once.

    The app reads ``DATABASE_URL`` and ``POOL_SIZE`` from its environment, and its ``GET /hold``
    takes a pooled connection and waits for advisory lock ``BARRIER``, which our one connection
    holds. Each worker in turn is sent exactly ``pool_size`` requests, the others paused (so that
    worker alone takes them), and the next goes once each of them holds a connection or has
    failed. Then we count the app's connections and let go.
    """
    import psycopg

    from asynclab.bench.load import response_body
    from asynclab.bench.worker_requests import fresh_client, paused, pid_of
    from asynclab.bench.workers import Answer, serve_workers

    env = {"DATABASE_URL": pg.url("app"), "POOL_SIZE": str(pool_size)}
    answers: list[Answer] = []
    with psycopg.connect(pg.dsn("app"), autocommit=True) as ours:
        ours.execute("SELECT pg_advisory_lock(%s)", (BARRIER,))
        async with (
            serve_workers(app, app_dir=app_dir, workers=workers, tag_pid=True, env=env) as server,
            fresh_client(timeout=60) as client,
            anyio.create_task_group() as tg,
        ):

            async def one(i: int) -> None:
                response = await client.get(server.url + "/hold")
                body = response_body(response)
                answers.append(Answer(i, pid_of(response, body), response.status_code, body))

            pids = server.worker_pids
            for k, pid in enumerate(pids):
                with paused(set(pids) - {pid}):  # this worker alone accepts the next pool_size requests
                    for i in range(pool_size):
                        tg.start_soon(one, k * pool_size + i)
                    expected = (k + 1) * pool_size  # each request so far holds a connection (waits for us) or failed
                    await until(lambda: _count(ours, HOLDING) + sum(a.status != 200 for a in answers) >= expected, timeout=30.0)  # noqa: B023
            held = _count(ours, APP_CONNECTIONS)
            ours.execute("SELECT pg_advisory_unlock(%s)", (BARRIER,))  # every request goes on, and answers
        log = server.log()
        left = await _until_none_left(ours)
    return PoolsFilled(workers, pool_size, pg.max_connections, held, 1, sorted(answers, key=lambda a: a.index), log, left)


HOLDING = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
APP_CONNECTIONS = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"


def _count(connection: Any, query: str) -> int:
    row = connection.execute(query).fetchone()
    return int(row[0]) if row else 0


async def _until_none_left(ours: Any, within: float = 10.0) -> int:
    """The app's connections left once its server has stopped (asked until there are none, at most ``within`` s)."""
    deadline = anyio.current_time() + within
    while (left := _count(ours, APP_CONNECTIONS)) and anyio.current_time() < deadline:
        await anyio.sleep(0.01)
    return left


def slots(pg: PostgresServer) -> tuple[int, dict[str, tuple[int, str]]]:
    """Connections opened one after another until the server refuses: as a plain role ``app``, then as the superuser.

    The plain role's stay open while the superuser tries. Returns the server's ``superuser_reserved_connections``
    and, for each role, how many more connections it got and the server's refusal.
    """
    import psycopg

    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as admin:
        admin.execute("DO $$ BEGIN CREATE ROLE app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        reserved = _count(admin, "SHOW superuser_reserved_connections")
    got: dict[str, tuple[int, str]] = {}
    with contextlib.ExitStack() as held:
        for role in ("app", "postgres"):
            opened = 0
            while True:
                try:
                    held.enter_context(psycopg.connect(pg.dsn("app").replace("postgres@", f"{role}@", 1)))
                    opened += 1
                except psycopg.OperationalError as refused:
                    got[role] = (opened, str(refused).strip().splitlines()[-1].split("FATAL:")[-1].strip())
                    break
    return reserved, got


# --- Redis ----------------------------------------------------------------------------------------


async def connected_clients(client: Any, *, settle_at: int | None = None, within: float = 5.0) -> int:
    """Redis's ``connected_clients`` (``INFO clients``), asked through ``client``.

    With ``settle_at``, asked again until it is that number (at most ``within`` s): Redis notices a
    connection closed by a process that exited on its next turn of its event loop, not at once.
    """
    deadline = anyio.current_time() + within
    while True:
        now = int((await client.info("clients"))["connected_clients"])
        if settle_at is None or now == settle_at or anyio.current_time() > deadline:
            return now
        await anyio.sleep(0.01)
