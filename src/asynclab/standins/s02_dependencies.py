"""What dependencies hand to handlers, for the async-dependencies lessons (section 2).

- :class:`Accounts`: a user directory that checks passwords with real PBKDF2 hashing, a blocking
  CPU-bound call (it releases the GIL, so threads run it in parallel). It records how many checks
  ran on the event-loop thread.
- :class:`TokenService`: an auth server whose ``await verify(token)`` answers with the token's
  :class:`User`, or ``None``.
- :class:`MemoDatabase`: a real SQLite file reached through SQLAlchemy's async session on
  aiosqlite, with a small connection pool that counts checkouts and checkins, so a dependency
  that forgets to close its session shows up as connections that never come back.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asynclab.bench.calls import CallRecorder
from asynclab.bench.database import SQLiteFile, rows_of, temporary_database

#: username -> password of the people every new :class:`Accounts` knows.
PASSWORDS: Mapping[str, str] = {
    "ada": "analytical-engine",
    "grace": "cobol-1959",
    "linus": "penguin",
    "barbara": "clu-language",
    "guido": "benevolent",
    "margaret": "apollo-11",
    "alan": "enigma",
    "edsger": "goto-harmful",
}


@functools.lru_cache(maxsize=256)
def _pbkdf2(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)


def _salt(username: str) -> bytes:
    return hashlib.sha256(b"asynclab-salt:" + username.encode()).digest()[:16]


class Accounts:
    """A user directory that stores salted PBKDF2-SHA256 password hashes.

    :meth:`check_password` hashes the given password for real (``iterations`` rounds, about
    25 ms at 50 000): a blocking call. ``record.of("check_password")`` says how many checks ran,
    the most at once, and how many ran on the event-loop thread.
    """

    def __init__(self, passwords: Mapping[str, str] = PASSWORDS, *, iterations: int = 50_000) -> None:
        self.iterations = iterations
        self.record = CallRecorder()
        # stored hashes are computed once per process (cached), so making a directory is cheap
        self._hashes = {name: _pbkdf2(pw, _salt(name), iterations) for name, pw in passwords.items()}

    def check_password(self, username: str, password: str) -> bool:
        """Hash ``password`` with ``username``'s salt and compare it with the stored hash (blocking)."""
        with self.record.call("check_password", blocking=True):
            digest = hashlib.pbkdf2_hmac("sha256", password.encode(), _salt(username), self.iterations)
            stored = self._hashes.get(username)
            return stored is not None and hmac.compare_digest(digest, stored)

    def __repr__(self) -> str:
        return f"Accounts({len(self._hashes)} users, {self.iterations} PBKDF2 rounds)"


@dataclass(frozen=True)
class User:
    """Who a token belongs to."""

    name: str
    role: str = "staff"


#: token -> person, for every new :class:`TokenService`.
TOKENS: Mapping[str, User] = {
    "tok-ada-7f3a": User("ada", "admin"),
    "tok-grace-91c2": User("grace"),
    "tok-linus-0b5e": User("linus"),
}


class TokenService:
    """An auth server: ``await verify(token)`` returns the token's :class:`User`, or ``None``.

    The round trip is simulated with ``anyio.sleep(latency)``; ``record.of("verify")`` counts the
    calls whose body ran, i.e. the ones that were awaited.
    """

    def __init__(self, tokens: Mapping[str, User] = TOKENS, *, latency: float = 0.01) -> None:
        self.tokens = dict(tokens)
        self.latency = latency
        self.record = CallRecorder()

    async def verify(self, token: str) -> User | None:
        with self.record.call("verify", blocking=False):
            await anyio.sleep(self.latency)
            return self.tokens.get(token)

    def __repr__(self) -> str:
        return f"TokenService({len(self.tokens)} tokens)"


class _Base(DeclarativeBase):
    pass


class Memo(_Base):
    """One row of the ``memos`` table."""

    __tablename__ = "memos"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]

    def __repr__(self) -> str:
        return f"Memo(id={self.id}, text={self.text!r})"


#: The memos every new database starts with (memo 3 is empty on purpose).
SEED_MEMOS: Mapping[int, str] = {1: "buy milk", 2: "call the plumber about the leak", 3: "", 4: "ship it"}


class Sessions:
    """Like SQLAlchemy's ``async_sessionmaker``: ``Session()`` is a new :class:`AsyncSession`.

    It also keeps every session it made, so the database can close what a leaky dependency left open.
    """

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self._maker = maker
        self.made: list[AsyncSession] = []

    def __call__(self) -> AsyncSession:
        session = self._maker()
        self.made.append(session)
        return session


class MemoDatabase:
    """A memos table in a temporary SQLite file, behind a pool of ``pool_size`` connections.

    ``db.Session()`` opens a session; a session takes a connection from the pool at its first
    query and gives it back when it is closed. ``checkouts``, ``checkins`` and ``checked_out``
    count them. When every connection is out, the next query waits ``pool_timeout`` seconds,
    then fails with SQLAlchemy's ``TimeoutError``.
    """

    def __init__(self, file: SQLiteFile, *, pool_size: int, pool_timeout: float) -> None:
        self.path = file.path
        self.pool_size = pool_size
        self.engine: AsyncEngine = file.engine(pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout)
        self.Session = Sessions(async_sessionmaker(self.engine, expire_on_commit=False))
        self._lock = threading.Lock()
        self.checkouts = 0
        self.checkins = 0
        event.listen(self.engine.sync_engine, "checkout", self._on_checkout)
        event.listen(self.engine.sync_engine, "checkin", self._on_checkin)

    def _on_checkout(self, *args: Any) -> None:
        with self._lock:
            self.checkouts += 1

    def _on_checkin(self, *args: Any) -> None:
        with self._lock:
            self.checkins += 1

    @property
    def checked_out(self) -> int:
        """Connections lent to sessions right now."""
        return int(self.engine.pool.checkedout())

    async def close(self) -> None:
        """Close every session still open, and every connection (``memo_database`` then deletes the file)."""
        for session in self.Session.made:
            await session.close()
        await self.engine.dispose()

    def __repr__(self) -> str:
        return f"MemoDatabase(pool of {self.pool_size}, {self.checked_out} checked out, {self.checkouts} checkouts, {self.checkins} checkins)"


@asynccontextmanager
async def memo_database(
    memos: Mapping[int, str] = SEED_MEMOS, *, pool_size: int = 5, pool_timeout: float = 0.5
) -> AsyncIterator[MemoDatabase]:
    """``async with memo_database() as db:`` a fresh database, deleted (all connections closed) when the block ends."""
    rows = rows_of(Memo, ({"id": i, "text": t} for i, t in memos.items()))
    async with temporary_database(_Base.metadata, rows, name="memos", prefix="asynclab-memos-") as file:
        db = MemoDatabase(file, pool_size=pool_size, pool_timeout=pool_timeout)
        try:
            yield db
        finally:
            await db.close()
