"""The database section 7's checks give the two workers: the SQLite file next to the module, or a fresh PostgreSQL database."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread

from asynclab.bench.crowd import at_once
from asynclab.bench.stack import postgres_here
from asynclab.bench.workers import Answer, Workers
from asynclab.course.checking import fail


@dataclass(frozen=True)
class SharedDatabase:
    """Where both workers keep their data: what to pass them, how feedback names it, and how to read it back."""

    kind: Literal["sqlite", "postgres"]
    env: dict[str, str]  # what serve_workers passes to the workers (empty on SQLite: the module's default file)
    file: Path  # the SQLite file next to the module (on PostgreSQL, there only if the module ignored the variable)
    variable: str
    dsn: str | None = None  # psycopg's URL of the PostgreSQL database

    @property
    def name(self) -> str:
        """The database as a failure message names it."""
        return self.file.name if self.dsn is None else f"the PostgreSQL database in {self.variable}"

    @property
    def on(self) -> str:
        """A few words for a check's ✅ line."""
        return "" if self.dsn is None else f" (on PostgreSQL: a new database, its URL passed in {self.variable})"

    async def rows(self, query: str) -> list[tuple[Any, ...]] | None:
        """The rows ``query`` reads from the database (read-only), or None when its table or columns are missing."""
        return await anyio.to_thread.run_sync(self._rows, query)

    def _rows(self, query: str) -> list[tuple[Any, ...]] | None:
        if self.dsn is not None:
            import psycopg

            with psycopg.connect(self.dsn) as connection:  # one read-only transaction, rolled back
                connection.read_only = True
                try:
                    return list(connection.execute(query).fetchall())
                except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
                    return None
                finally:
                    connection.rollback()
        if not self.file.is_file():
            return None
        uri = f"{self.file.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
            try:
                return list(connection.execute(query).fetchall())
            except sqlite3.OperationalError:  # no such table (or column)
                return None

    async def at_once(self, server: Workers, path: str, n: int) -> list[Answer]:
        """``n`` requests at the same moment, every read-then-write among them forced to read the same count.

        SQLite: the file's writes held (:func:`asynclab.bench.crowd.at_once`). PostgreSQL: every
        existing row locked ``FOR UPDATE`` (:func:`rows_held`), released once every request is
        answered or waits for a lock.
        """
        if self.dsn is None:
            return await at_once(server, path, n, hold=self.file)
        return await at_once(server, path, n, hold=self.dsn, holding=rows_held)


def judge_opened(path: Path, db: SharedDatabase) -> None:
    """On PostgreSQL: did the module open the database the check passed it, not the SQLite file it falls back to?"""
    if db.dsn is not None and db.file.exists():
        fail(
            f"{path.name} wrote to {db.file.name}, the SQLite file next to it, though {db.variable} named a PostgreSQL "
            "database: the workers did not open the database they were given",
            f"Open the engine on the URL in {db.variable} (`os.environ.get({db.variable!r}, ...)`); the file is only the default.",
        )


@asynccontextmanager
async def shared_database(copy: Path, *, variable: str, database: str, tables: tuple[str, ...]) -> AsyncIterator[SharedDatabase]:
    """The database for a check of the module ``copy``: ``database.db`` next to it, or a new PostgreSQL database.

    The learner's module reads its URL from ``variable`` (as a deployed app does) and falls back to
    the SQLite file next to itself: on SQLite the check passes nothing. On PostgreSQL it starts a
    temporary server, runs ``tables`` (``CREATE TABLE`` statements) before the workers start, as a
    deploy's migration step does (two workers running ``CREATE TABLE IF NOT EXISTS`` at the same
    moment can fail one startup there), and passes the URL in ``variable``.
    """
    file = copy.with_name(f"{database}.db")
    if not postgres_here():
        yield SharedDatabase("sqlite", {}, file, variable)
        return
    from asynclab.bench.postgres_server import temporary_postgres

    with contextlib.ExitStack() as stop:
        server = await anyio.to_thread.run_sync(stop.enter_context, temporary_postgres(databases=(database,)))
        try:
            await anyio.to_thread.run_sync(_create, server.dsn(database), tables)
            yield SharedDatabase("postgres", {variable: server.url(database)}, file, variable, server.dsn(database))
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(stop.close)


def _create(dsn: str, tables: tuple[str, ...]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        for statement in tables:
            connection.execute(statement.encode())


@contextlib.contextmanager
def rows_held(dsn: str) -> Iterator[None]:
    """Lock every row of every table of the PostgreSQL database at ``dsn`` ``FOR UPDATE`` for the block.

    Plain reads go through, and so does ``INSERT ... ON CONFLICT DO NOTHING`` on a row that exists;
    ``UPDATE``, ``SELECT ... FOR UPDATE`` and ``INSERT ... ON CONFLICT DO UPDATE`` of those rows wait.
    A table lock (:func:`asynclab.bench.crowd.writes_held`) would also make that first ``INSERT``
    wait, so a transaction that starts with it would read only after the lock is gone, each at its
    own moment: its read-then-write would race by luck, not every time.
    """
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn) as connection:  # one transaction, rolled back when the block ends
        tables = [row[0] for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            connection.execute(sql.SQL("SELECT 1 FROM {} FOR UPDATE").format(sql.Identifier(table)))
        try:
            yield
        finally:
            connection.rollback()
