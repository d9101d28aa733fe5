"""Things that fail on purpose, for the error-handling lessons (section 5).

- :class:`UserDB`: a real users table in a **temporary SQLite file**, reached through a real
  SQLAlchemy async session on aiosqlite. :meth:`UserDB.outage` takes the table away for a moment,
  so queries fail the way a broken database makes them fail (``OperationalError``).
- :class:`StockService`: a back end whose call answers quickly, never (``stalled=True``), or once
  an event is set (``held=event``). It counts the calls that are still running, the ones that
  finished and the ones that were cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
from sqlalchemy import String, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asynclab.bench.database import SQLiteFile, rows_of

#: The users every new database starts with.
SEED_USERS: Mapping[int, str] = {1: "Ada", 2: "Grace", 3: "Linus", 4: "Barbara", 5: "Guido"}


class Base(DeclarativeBase):
    pass


class User(Base):
    """One row of the ``users`` table."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)

    def __repr__(self) -> str:
        return f"User(id={self.id}, name={self.name!r})"


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
