"""Section 7's instruments on PostgreSQL: the rows the 7.1 check holds, and the database it gives the workers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import psycopg

from asynclab.bench.crowd import lock_waiters
from asynclab.bench.postgres_server import temporary_postgres
from asynclab.checks._s07_database import rows_held, shared_database
from asynclab.checks._s07_quota import USAGE, VARIABLE


def test_rows_held_lets_reads_and_a_no_op_insert_through_and_holds_the_update(on_postgres: None) -> None:
    """What makes a read-then-write after an ``INSERT ... DO NOTHING`` race every time: only the write waits."""
    with temporary_postgres(databases=("quota",)) as pg:
        dsn = pg.dsn("quota")
        with psycopg.connect(dsn, autocommit=True) as setup:
            setup.execute(USAGE)
            setup.execute("INSERT INTO usage VALUES ('carol', 1)")
        done: list[str] = []
        with psycopg.connect(dsn) as call, rows_held(dsn):
            call.execute("INSERT INTO usage VALUES ('carol', 0) ON CONFLICT (key) DO NOTHING")  # goes through
            row = call.execute("SELECT used FROM usage WHERE key = 'carol'").fetchone()  # goes through
            assert row == (1,)

            def write() -> None:
                call.execute("UPDATE usage SET used = 2 WHERE key = 'carol'")
                done.append("written")

            writer = threading.Thread(target=write)
            writer.start()
            while not lock_waiters(dsn):  # the update waits for the held row: an order of events
                assert writer.is_alive()
                time.sleep(0.005)
            assert done == []
        writer.join()  # the rows went when the block ended, and so did the update
        assert done == ["written"]


def test_shared_database_on_postgres_creates_the_table_and_names_it_by_the_variable(tmp_path: Path, on_postgres: None) -> None:
    async def look() -> tuple[dict[str, str], list[tuple[object, ...]] | None, str]:
        async with shared_database(tmp_path / "quota.py", variable=VARIABLE, database="quota", tables=(USAGE,)) as db:
            return db.env, await db.rows("SELECT key, used FROM usage"), db.name

    env, rows, name = anyio.run(look)
    assert list(env) == [VARIABLE] and env[VARIABLE].startswith("postgresql+asyncpg://postgres@127.0.0.1:")
    assert rows == [] and name == "the PostgreSQL database in QUOTA_DATABASE_URL"
