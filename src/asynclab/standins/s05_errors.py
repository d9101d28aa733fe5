"""Things that fail on purpose, for the error-handling lessons (section 5), and the lesson's measuring drivers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.lowlevel
import httpx
from sqlalchemy import String, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.types import ASGIApp

from asynclab.bench.database import Row, SQLiteFile, rows_of
from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.load import NO_ANSWER, load
from asynclab.bench.rawhttp import Connection, RawRequest
from asynclab.bench.server import uvicorn_server

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
    """A users database in a temporary SQLite file; :meth:`close` disposes the engine and deletes the file.

    ``db.session`` is a FastAPI dependency (``session: AsyncSession = Depends(db.session)``) that
    opens one session per request and closes it afterwards.
    """

    def __init__(self, file: SQLiteFile) -> None:
        self._file = file  # its folder is deleted when closed (or, at the latest, when garbage-collected)
        self.path = file.path
        self.engine: AsyncEngine = file.engine()
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    async def create(cls, users: Mapping[int, str] = SEED_USERS) -> UserDB:
        """Make the file, create the table and add ``users`` (id -> name)."""
        db = cls(SQLiteFile("users", prefix="asynclab-users-"))
        try:
            await db._file.create(Base.metadata, rows_of(User, ({"id": uid, "name": name} for uid, name in users.items())))
        except BaseException:
            await db.close()
            raise
        return db

    @classmethod
    @asynccontextmanager
    async def temporary(cls, users: Mapping[int, str] = SEED_USERS) -> AsyncIterator[UserDB]:
        """``async with UserDB.temporary() as db:`` a database that is deleted when the block ends."""
        db = await cls.create(users)
        try:
            yield db
        finally:
            await db.close()

    async def session(self) -> AsyncIterator[AsyncSession]:
        """FastAPI dependency: one session per request, closed when the response is done."""
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """While the block runs, the ``users`` table is gone: every query on it raises ``OperationalError``."""
        async with self.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE users RENAME TO users_offline"))
        try:
            yield
        finally:
            async with self.engine.begin() as conn:
                await conn.execute(text("ALTER TABLE users_offline RENAME TO users"))

    async def close(self) -> None:
        """Close every connection, then delete the file and its folder."""
        await self.engine.dispose()
        self._file.remove()

    def __repr__(self) -> str:
        return f"UserDB({self.path})"


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
