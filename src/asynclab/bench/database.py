"""A temporary database for SQLAlchemy's async engine: a SQLite file (aiosqlite), or a PostgreSQL database (asyncpg)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio.to_thread
from sqlalchemy import FromClause, MetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from asynclab.bench.stack import Stack, stack


def sqlite_url(path: Path | str) -> str:
    """What ``create_async_engine`` takes for the SQLite file at ``path``."""
    return f"sqlite+aiosqlite:///{Path(path).resolve()}"


async def create_tables(url: str, metadata: MetaData, *fills: Callable[[AsyncConnection], Any]) -> None:
    """Create ``metadata``'s tables in the database at ``url``, then run each ``fill(connection)`` to fill them.

    One transaction, on an engine of its own that is closed before returning: what a migration
    does before the service starts.
    """
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            for fill in fills:
                await fill(conn)
    finally:
        await engine.dispose()


class SQLiteFile:
    """A path for a SQLite file in a new private folder, its URL, and engines on it."""

    kind: Literal["sqlite"] = "sqlite"

    def __init__(self, name: str = "app", *, prefix: str = "asynclab-db-") -> None:
        self._folder = tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True)
        self.path = Path(self._folder.name) / f"{name}.sqlite3"
        self.url = sqlite_url(self.path)

    def engine(self, **options: Any) -> AsyncEngine:
        """A new async engine on the file (``pool_size=...``, ``logging_name=...``: any engine option)."""
        return create_async_engine(self.url, **options)

    async def create(self, metadata: MetaData, *fills: Callable[[AsyncConnection], Any]) -> None:
        """Create ``metadata``'s tables, then run each ``fill(connection)`` coroutine function to fill them."""
        await create_tables(self.url, metadata, *fills)

    def remove(self) -> None:
        """Delete the folder and the file in it."""
        self._folder.cleanup()

    def __repr__(self) -> str:
        return f"SQLiteFile({self.path.name})"


class PostgresDatabase:
    """One database in a temporary PostgreSQL server: its URL and engines on it (the same methods as :class:`SQLiteFile`)."""

    kind: Literal["postgres"] = "postgres"

    def __init__(self, server: Any, name: str) -> None:
        self.server = server  # a asynclab.bench.postgres_server.PostgresServer
        self.name = name
        self.url: str = server.url(name)

    def engine(self, **options: Any) -> AsyncEngine:
        """A new async engine (asyncpg) on the database; any engine option."""
        return create_async_engine(self.url, **options)

    async def create(self, metadata: MetaData, *fills: Callable[[AsyncConnection], Any]) -> None:
        """Create ``metadata``'s tables, then run each ``fill(connection)`` coroutine function to fill them."""
        await create_tables(self.url, metadata, *fills)

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.name} on 127.0.0.1:{self.server.port})"


Database = SQLiteFile | PostgresDatabase


@asynccontextmanager
async def temporary_database(
    metadata: MetaData | None = None,
    *fills: Callable[[AsyncConnection], Any],
    name: str = "app",
    prefix: str = "asynclab-db-",
    on: Stack | None = None,
) -> AsyncIterator[Any]:
    """A new database with ``metadata``'s tables (filled by ``fills``), removed when the block ends.

    Every database a section uses is made here::

        async with temporary_database(Base.metadata, name="notes") as db:
            engine = db.engine()          # or create_async_engine(db.url) in the app under test
            ...

    It is a SQLite file (:class:`SQLiteFile`) unless the course runs on PostgreSQL
    (``ASYNCLAB_STACK=postgres``, or ``on="postgres"``): then it is a database in a temporary
    PostgreSQL server started for the block (:class:`PostgresDatabase`). Dispose of your engines
    inside the block, as an app's lifespan does when it stops.
    """
    if (on or stack()) == "postgres":
        async with _postgres_database(name) as pg:
            if metadata is not None:
                await pg.create(metadata, *fills)
            yield pg
        return
    db = SQLiteFile(name, prefix=prefix)
    try:
        if metadata is not None:
            await db.create(metadata, *fills)
        yield db
    finally:
        db.remove()


@asynccontextmanager
async def _postgres_database(name: str) -> AsyncIterator[PostgresDatabase]:
    from asynclab.bench.postgres_server import temporary_postgres

    with contextlib.ExitStack() as stop:
        server = await anyio.to_thread.run_sync(stop.enter_context, temporary_postgres(databases=(name,)))
        try:
            yield PostgresDatabase(server, name)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(stop.close)


def rows_of(table: Any, rows: Iterable[dict[str, Any]]) -> Callable[[AsyncConnection], Any]:
    """A fill for :func:`temporary_database`: insert ``rows`` (dicts) into ``table`` (a model or a Table)."""
    from sqlalchemy import insert

    listed = list(rows)

    async def fill(conn: AsyncConnection) -> None:
        if listed:
            await conn.execute(insert(table), listed)

    return fill


class Row:
    """What the stand-ins' table rows share: ``as_dict()`` and a repr, both made from the row's columns.

    A section declares its own base, ``class Base(Row, DeclarativeBase)``, so that its metadata holds its tables only.
    """

    __table__: ClassVar[FromClause]  # set by SQLAlchemy on each mapped class

    def as_dict(self) -> dict[str, object]:
        return {column.key: getattr(self, column.key) for column in self.__table__.columns}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{key}={value!r}' for key, value in self.as_dict().items())})"
