"""Things that fail on purpose, for the error-handling lessons (section 5), and the lesson's measuring drivers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.lowlevel
import httpx
from sqlalchemy import String, text
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.types import ASGIApp

from asynclab.bench.database import Database, PostgresDatabase, Row, SQLiteFile, rows_of
from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.load import NO_ANSWER, load
from asynclab.bench.rawhttp import Connection, RawRequest
from asynclab.bench.server import uvicorn_server
from asynclab.bench.stack import Stack
from asynclab.bench.stack import stack as current_stack

#: The users every new database starts with.
SEED_USERS: Mapping[int, str] = {1: "Ada", 2: "Grace", 3: "Linus", 4: "Barbara", 5: "Guido"}


class Base(Row, DeclarativeBase):
    pass


class User(Base):
    """One row of the ``users`` table."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class UserDB:
    """A users database; :meth:`close` disposes the engine and removes the database.

    A temporary SQLite file, or on the PostgreSQL stack (``ASYNCLAB_STACK=postgres``, or ``on="postgres"``)
    a database in a temporary PostgreSQL server of its own, stopped and deleted by :meth:`close`.
    ``db.session`` is a FastAPI dependency (``session: AsyncSession = Depends(db.session)``) that
    opens one session per request and closes it afterwards.
    """

    def __init__(self, database: Database, remove: Callable[[], None]) -> None:
        self.database = database
        self.kind = database.kind
        self.path = database.path if isinstance(database, SQLiteFile) else None
        self.engine: AsyncEngine = database.engine()
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # removed by close(), or at the latest when garbage-collected or when the interpreter exits
        self._remove = weakref.finalize(self, remove)

    @classmethod
    async def create(cls, users: Mapping[int, str] = SEED_USERS, *, on: Stack | None = None) -> UserDB:
        """Make the database, create the table and add ``users`` (id -> name)."""
        db = cls(*await _new_database(on))
        try:
            rows = rows_of(User, ({"id": uid, "name": name} for uid, name in users.items()))
            await db.database.create(Base.metadata, rows, _ids_after_seed)
        except BaseException:
            await db.close()
            raise
        return db

    @classmethod
    @asynccontextmanager
    async def temporary(cls, users: Mapping[int, str] = SEED_USERS, *, on: Stack | None = None) -> AsyncIterator[UserDB]:
        """``async with UserDB.temporary() as db:`` a database that is removed when the block ends."""
        db = await cls.create(users, on=on)
        try:
            yield db
        finally:
            await db.close()

    @property
    def where(self) -> str:
        """Where the users live, in words."""
        if isinstance(self.database, SQLiteFile):
            return f"{self.database.path.name} (a temporary SQLite file)"
        return f"the database users of a temporary PostgreSQL server (127.0.0.1:{self.database.server.port})"

    @property
    def table_gone(self) -> type[SQLAlchemyError]:
        """What a query raises during an :meth:`outage` on this engine.

        SQLite: ``OperationalError`` ("no such table"); PostgreSQL: ``ProgrammingError`` (asyncpg's
        ``UndefinedTableError``, "relation ... does not exist"). Both are ``SQLAlchemyError``.
        """
        return OperationalError if self.kind == "sqlite" else ProgrammingError

    def removed(self) -> bool:
        """True once the database is gone: the file and its folder, or the server, its folder and its port."""
        if isinstance(self.database, SQLiteFile):
            return not self.database.path.exists() and not self.database.path.parent.exists()
        server = self.database.server
        with socket.socket() as probe:
            probe.settimeout(2)
            listening = probe.connect_ex((server.host, server.port)) == 0
        return not server.folder.exists() and not listening

    async def session(self) -> AsyncIterator[AsyncSession]:
        """FastAPI dependency: one session per request, closed when the response is done."""
        async with self.sessionmaker() as session:
            yield session

    def outage(self) -> AbstractAsyncContextManager[None]:
        """While the block runs, the ``users`` table is gone: every query on it raises :attr:`table_gone`."""
        return table_taken_away(self.engine, "users", "users_offline")

    async def close(self) -> None:
        """Close every connection, then remove the database (a PostgreSQL server is stopped)."""
        await self.engine.dispose()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._remove)

    def __repr__(self) -> str:
        return f"UserDB({self.where})"


async def _ids_after_seed(conn: AsyncConnection) -> None:
    """On PostgreSQL, move the id sequence past the seeded ids (given explicitly), or the next new user would get id 1."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))"))


async def _new_database(on: Stack | None) -> tuple[Database, Callable[[], None]]:
    """A new, empty database for :class:`UserDB`, and how to remove it (a blocking call)."""
    if (on or current_stack()) == "postgres":
        from asynclab.bench.postgres_server import temporary_postgres

        stop = contextlib.ExitStack()
        server = await anyio.to_thread.run_sync(stop.enter_context, temporary_postgres(databases=("users",)))
        return PostgresDatabase(server, "users"), stop.close
    file = SQLiteFile("users", prefix="asynclab-users-")
    return file, file.remove


#: On PostgreSQL, the sessions a rename would wait for: a transaction that has read a table holds a lock on it until it ends.
_OPEN_TRANSACTIONS = (
    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
)


@asynccontextmanager
async def table_taken_away(engine: AsyncEngine, table: str, renamed: str) -> AsyncIterator[None]:
    """While the block runs, ``table`` is renamed ``renamed``: every query on it fails, as in an outage.

    On PostgreSQL a rename waits for every transaction that has read the table; a session left open
    in one would make it wait for ever, so such sessions are ended first, as a failing database ends them.
    """
    await rename_table(engine, table, renamed)
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await rename_table(engine, renamed, table)


async def rename_table(engine: AsyncEngine, old: str, new: str) -> None:
    """``ALTER TABLE old RENAME TO new``; on PostgreSQL, first end the sessions left open in a transaction (see above)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(_OPEN_TRANSACTIONS))
        await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


class StockService:
    """A warehouse back end: ``await level(sku)`` answers after ``latency`` seconds, or never if ``stalled``.

    With ``held=event`` a call waits until the event is set, then answers: the caller decides when.
    ``running`` counts calls that have started and not ended; ``completed`` counts calls that
    answered; ``cancelled`` counts calls that were cancelled (by a time-out, for example). A hung
    call that nobody cancels stays in ``running``.
    """

    def __init__(self, latency: float = 0.01, *, stalled: bool = False, held: anyio.Event | None = None) -> None:
        self.latency = latency
        self.stalled = stalled
        self.held = held
        self.calls = 0
        self.running = 0
        self.completed = 0
        self.cancelled = 0

    @staticmethod
    def level_for(sku: str) -> int:
        return 7 * len(sku)

    async def level(self, sku: str) -> int:
        self.calls += 1
        self.running += 1
        try:
            if self.stalled:
                await anyio.sleep_forever()
            if self.held is not None:
                await self.held.wait()
            await anyio.sleep(self.latency)
            self.completed += 1
            return self.level_for(sku)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.running -= 1

    def __repr__(self) -> str:
        state = "stalled" if self.stalled else "held" if self.held is not None else f"{self.latency:.2f} s"
        counts = f"calls={self.calls}, running={self.running}, completed={self.completed}, cancelled={self.cancelled}"
        return f"StockService({state}, {counts})"


@dataclass(frozen=True)
class GaveUp:
    """What became of the requests whose client stopped waiting once every handler was inside."""

    unanswered: int  # requests the client left without an answer
    still_running: int  # back-end calls still running right after the client left
    finished_later: int  # calls that went on to finish, for nobody
    cancelled: int  # calls that were cancelled


async def client_gives_up(make_app: Callable[[StockService], ASGIApp], where: str = "uvicorn, h11", n: int = 10) -> GaveUp:
    """Send ``n`` requests to ``make_app(stock)``; leave once all ``n`` wait in the back end, then let it answer.

    ``where`` is ``"in-process"`` (the test client) or ``"uvicorn, h11"`` / ``"uvicorn, httptools"``
    (a real server in this event loop). The client leaves when the back end counts ``n`` calls
    waiting, not after a time, so the outcome does not depend on the machine's speed.
    """
    answer_now = anyio.Event()
    stock = StockService(held=answer_now)
    app = make_app(stock)
    async with contextlib.AsyncExitStack() as stack:
        if where == "in-process":
            client = await stack.enter_async_context(inprocess_client(app))
        else:
            url = await stack.enter_async_context(uvicorn_server(app, http=where.split()[-1]))
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=url))
        report = await load(client, lambda i: f"/stock/sku-{i}", n=n, give_up_when=lambda: stock.running == n)
        still_running = stock.running  # right after the client left
        answer_now.set()  # the back end answers now, late
        with anyio.fail_after(5):
            while stock.running:
                await anyio.sleep(0.01)
    return GaveUp(report.statuses[NO_ANSWER], still_running, stock.completed, stock.cancelled)


class BlockingLookup:
    """A sync SDK call: it blocks its worker thread until released, and notes what happens, in order."""

    def __init__(self) -> None:
        self.release, self.done = threading.Event(), threading.Event()
        self.events: list[str] = []

    def __call__(self) -> str:  # runs in a worker thread
        self.release.wait(10)
        self.events.append("thread finished")
        self.done.set()
        return "level 7"

    async def release_later(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        tokens = anyio.to_thread.current_default_thread_limiter().borrowed_tokens
        self.events.append(f"{seconds} s: thread still running, tokens in use {tokens}")
        self.release.set()


async def thread_under_deadline(kind: str, deadline: float = 0.2, release_after: float = 0.4) -> list[str]:
    """Run a :class:`BlockingLookup` in a worker thread under a deadline; return what happened, in order.

    ``kind``: ``"fail_after"``, ``"fail_after, then an await"`` (one more ``await`` inside the block),
    ``"asyncio.timeout"``, or ``"fail_after, abandon_on_cancel"`` (``run_sync(..., abandon_on_cancel=True)``).
    The thread is released ``release_after`` seconds in, well after the deadline.
    """
    limiter = anyio.to_thread.current_default_thread_limiter()
    lookup = BlockingLookup()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lookup.release_later, release_after)
        try:
            if kind == "asyncio.timeout":
                async with asyncio.timeout(deadline):
                    level = await anyio.to_thread.run_sync(lookup)
            else:
                with anyio.fail_after(deadline):
                    level = await anyio.to_thread.run_sync(lookup, abandon_on_cancel=kind.endswith("abandon_on_cancel"))
                    if kind == "fail_after, then an await":
                        await anyio.lowlevel.checkpoint()
            lookup.events.append(f"returned {level!r}")
        except TimeoutError:
            running = not lookup.release.is_set()
            lookup.events.append(f"TimeoutError, thread still running: {running}, tokens in use {limiter.borrowed_tokens}")
    while not lookup.done.is_set():  # an abandoned thread ends on its own time: wait for it before reading
        await anyio.sleep(0.005)
    return lookup.events


async def same_connection_after(url: str, first: str, then: str = "/health") -> str:
    """``GET first``, then ``GET then`` on the same keep-alive connection: what became of the connection.

    Returns e.g. ``"402, then 200 on the same connection"`` or ``"500, then the connection was closed"``.
    Clock-free: a closed connection shows as the end of the stream, not as a wait that ran out.
    """
    async with Connection(url) as connection:
        (answer,) = await connection.send(RawRequest("GET", first))
        try:
            (second,) = await connection.send(RawRequest("GET", then))
        except (asyncio.IncompleteReadError, ConnectionError):
            return f"{answer.status}, then the connection was closed"
    return f"{answer.status}, then {second.status} on the same connection"


#: The prices a :class:`Catalog` starts with, as an old import stored them: as text, and cake's was lost.
CATALOG_PRICES: Mapping[str, str] = {"tea": "4.50", "scone": "3.20", "cake": "n/a"}


class Catalog:
    """The shop's product data: ``await catalog.price(sku)`` is the stored price text, or None for no such product."""

    def __init__(self, prices: Mapping[str, str] = CATALOG_PRICES) -> None:
        self.prices = dict(prices)
        self.lookups = 0

    async def price(self, sku: str) -> str | None:
        self.lookups += 1
        await anyio.lowlevel.checkpoint()  # a database call, in a real shop
        return self.prices.get(sku)
