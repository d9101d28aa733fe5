"""What dependencies hand to handlers, for the async-dependencies lessons (section 2), and the lesson's measuring harness."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import QueuePool

from asynclab.bench.calls import CallRecorder
from asynclab.bench.database import Row, SQLiteFile, rows_of, temporary_database
from asynclab.bench.gauges import InFlight
from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.load import load
from asynclab.bench.loopbound import LoopBound

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
            self.record.settle("check_password")  # with a burst wait set: until the other logins are hashing too
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
    calls whose body ran, i.e. the ones that were awaited. Like any async client, its connection
    belongs to the event loop it was made on (or first used on): ``verify`` run on another loop
    (``asyncio.run()`` in a worker thread) raises ``RuntimeError``, and ``connection.strangers``
    notes how each such loop was started.
    """

    def __init__(self, tokens: Mapping[str, User] = TOKENS, *, latency: float = 0.01) -> None:
        self.tokens = dict(tokens)
        self.latency = latency
        self.record = CallRecorder()
        self.connection = LoopBound("TokenService")

    async def verify(self, token: str) -> User | None:
        self.connection.use()
        with self.record.call("verify", blocking=False):
            await anyio.sleep(self.latency)
            return self.tokens.get(token)

    def __repr__(self) -> str:
        return f"TokenService({len(self.tokens)} tokens)"


class _Base(Row, DeclarativeBase):
    pass


class Memo(_Base):
    """One row of the ``memos`` table."""

    __tablename__ = "memos"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]


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
        pool = self.engine.pool
        if not isinstance(pool, QueuePool):  # pool_size makes SQLAlchemy's (async-adapted) queue pool
            raise TypeError(f"the engine's pool is a {type(pool).__name__}, not a QueuePool")
        return pool.checkedout()

    async def close(self) -> None:
        """Close every session still open, and every connection (``memo_database`` then deletes the file)."""
        for session in self.Session.made:
            await session.close()
        await self.engine.dispose()

    def __repr__(self) -> str:
        counts = f"{self.checked_out} checked out, {self.checkouts} checkouts, {self.checkins} checkins"
        return f"MemoDatabase(pool of {self.pool_size}, {counts})"


@asynccontextmanager
async def memo_database(
    memos: Mapping[int, str] = SEED_MEMOS, *, pool_size: int = 5, pool_timeout: float = 0.5
) -> AsyncIterator[MemoDatabase]:
    """``async with memo_database() as db:`` a fresh database, deleted (all connections closed) when the block ends."""
    rows = rows_of(Memo, ({"id": i, "text": t} for i, t in memos.items()))
    async with temporary_database(_Base.metadata, rows, name="memos", prefix="asynclab-memos-", on="sqlite") as file:
        db = MemoDatabase(file, pool_size=pool_size, pool_timeout=pool_timeout)
        try:
            yield db
        finally:
            await db.close()


# --- Lesson 2's measuring harness: run in one line from the lesson, never read to learn the rule ------


class ReportTemplates:
    """A template store whose :meth:`load` blocks for ``seconds``, as a sync SDK would: a slow ``def`` dependency.

    ``running`` counts the loads in progress (an :class:`InFlight`), ``done`` the loads finished since :meth:`reset`.
    """

    def __init__(self, seconds: float = 0.15) -> None:
        self.seconds = seconds
        self.running = InFlight("template load")
        self._lock = threading.Lock()
        self.done = 0

    def load(self) -> str:
        """Read the report's template: a blocking call."""
        with self.running.inside():
            time.sleep(self.seconds)
        with self._lock:
            self.done += 1
        return "template"

    def reset(self) -> None:
        """Forget the loads counted so far."""
        self.running.reset()
        with self._lock:
            self.done = 0


@dataclass(frozen=True)
class Ping:
    """What one trivial ping met while slow report dependencies held the thread pool."""

    kind: str  # "def" or "async def"
    queued_when_sent: int  # requests waiting for a thread token when the ping was sent
    done_when_sent: int  # reports finished when the ping was sent
    done_when_ran: int  # reports finished when the ping's handler ran
    tokens_borrowed: int  # thread tokens in use when its handler ran
    tokens_total: int  # the limiter's size
    thread: str  # the thread its handler ran on
    seconds: float  # how long its client waited for the answer

    def __str__(self) -> str:
        return (
            f"{self.kind:>9} ping: sent while {self.queued_when_sent} requests waited for a thread; ran after "
            f"{self.done_when_ran} reports had finished, with {self.tokens_borrowed} of {self.tokens_total} tokens taken, "
            f"on {self.thread!r}, {self.seconds * 1000:.0f} ms"
        )


@dataclass(frozen=True)
class Pings:
    """An ``async def`` and a ``def`` ping, sent one after the other while ``reports`` report requests were in flight."""

    reports: int
    async_def: Ping
    plain_def: Ping

    def __str__(self) -> str:
        ratio = self.plain_def.seconds / max(self.async_def.seconds, 1e-9)
        return (
            f"{self.reports} report requests in flight\n{self.async_def}\n{self.plain_def}\n"
            f"the def ping waited {ratio:.0f}× as long as the async def one"
        )


async def pings_while_busy(template: Any, templates: ReportTemplates, n: int, *, queued: int = 0, running: int = 0) -> Pings:
    """Send ``n`` requests to a report route guarded by ``template`` (a ``Depends``); once ``queued`` requests wait for a
    thread token and ``running`` template loads run (or a report has finished), ping an ``async def`` route, then a
    ``def`` one, and say what each met."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    ran: dict[str, tuple[int, int, str]] = {}
    sent: dict[str, tuple[int, int]] = {}
    took: dict[str, float] = {}

    def note(kind: str) -> None:  # the def ping calls it from a worker thread
        ran[kind] = (templates.done, int(limiter.borrowed_tokens), threading.current_thread().name)

    async def report() -> dict[str, bool]:
        return {"ok": True}

    def ping_def() -> dict[str, bool]:
        note("def")
        return {"pong": True}

    async def ping_async() -> dict[str, bool]:
        note("async def")
        return {"pong": True}

    app = FastAPI()
    app.get("/report", dependencies=[template])(report)
    app.get("/ping-def")(ping_def)
    app.get("/ping-async")(ping_async)
    templates.reset()
    async with inprocess_client(app) as client:
        burst = asyncio.create_task(load(client, "/report", n))  # kept, and awaited below
        try:
            with anyio.fail_after(30):
                while not templates.done and (limiter.statistics().tasks_waiting < queued or templates.running.now < running):
                    await anyio.sleep(0.002)
            for kind, path in (("async def", "/ping-async"), ("def", "/ping-def")):
                sent[kind] = (limiter.statistics().tasks_waiting, templates.done)
                start = time.perf_counter()
                await client.get(path)
                took[kind] = time.perf_counter() - start
        finally:
            await burst
    total = int(limiter.total_tokens)
    pings = {kind: Ping(kind, *sent[kind], ran[kind][0], ran[kind][1], total, ran[kind][2], took[kind]) for kind in sent}
    return Pings(n, pings["async def"], pings["def"])


class RateGate:
    """What :func:`rate_lookup` reports to: how many requests reached it, how many are inside, and the gate it waits at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.arrived = 0
        self.lookups = InFlight("rate lookup")
        self.open = threading.Event()  # a threading.Event: works from any event loop

    def arrive(self) -> None:
        """Note one more request that got as far as the dependency's limit."""
        with self._lock:
            self.arrived += 1

    def reset(self) -> None:
        """Close the gate and forget the counts."""
        with self._lock:
            self.arrived = 0
        self.lookups.reset()
        self.open.clear()


async def _arrive(request: Request) -> None:
    """A sub-dependency of :func:`rate_lookup`: sub-dependencies run before a ``max_concurrency`` limit applies."""
    request.app.state.rates.arrive()


async def rate_lookup(request: Request, _: Annotated[None, Depends(_arrive)]) -> float:
    """An exchange-rate dependency that holds every call until the measuring helper opens the app's gate."""
    gate: RateGate = request.app.state.rates
    with gate.lookups.inside():
        while not gate.open.is_set():
            await anyio.sleep(0.002)
    return 1.08


def rates_app(first: Any, second: Any) -> FastAPI:
    """Two routes, ``/eur`` and ``/usd``; each takes its rate through the annotation it is given.

    Pass ``Annotated[float, Depends(...)]`` objects: :func:`lookups_at_once` then counts how their limits add up.
    """

    async def eur(rate: float) -> float:
        return rate

    async def usd(rate: float) -> float:
        return rate

    eur.__annotations__["rate"] = first  # the annotation objects themselves, not this module's strings
    usd.__annotations__["rate"] = second
    app = FastAPI()
    app.state.rates = RateGate()
    app.get("/eur")(eur)
    app.get("/usd")(usd)
    return app


async def lookups_at_once(app: FastAPI, n: int = 8) -> int:
    """Send ``n`` requests to a :func:`rates_app`, half to each route; once all have reached the limit and the loop has
    had 100 more turns, count the :func:`rate_lookup` calls inside, then open the gate and let every request finish."""
    gate: RateGate = app.state.rates
    gate.reset()
    async with inprocess_client(app) as client:
        burst = asyncio.create_task(load(client, lambda i: "/eur" if i % 2 else "/usd", n=n))
        try:
            with anyio.fail_after(30):
                while gate.arrived < n:
                    await anyio.sleep(0.002)
            for _ in range(100):
                await asyncio.sleep(0)
            inside = gate.lookups.now
        finally:
            gate.open.set()
            report = await burst
    if not report.ok:
        raise RuntimeError(f"the rate requests did not all succeed: {report}")
    return inside


async def lookups_on_two_loops(app: FastAPI, each: int = 4, *, wait_for: int = 4) -> int:
    """Send ``each`` requests to a :func:`rates_app` from this event loop and ``each`` from a second one (in a worker
    thread, standing in for a second worker process); once ``wait_for`` lookups are inside at once (a ``TimeoutError``
    after 30 s if they never are), open the gate. Returns the most lookups that were inside at once."""
    gate: RateGate = app.state.rates
    gate.reset()

    def second_loop() -> None:
        async def burst() -> None:
            async with inprocess_client(app) as client:
                await load(client, "/eur", n=each)

        anyio.run(burst)  # a new event loop, in this worker thread

    other = asyncio.create_task(anyio.to_thread.run_sync(second_loop))
    async with inprocess_client(app) as client:
        here = asyncio.create_task(load(client, "/usd", n=each))
        try:
            with anyio.fail_after(30):
                while gate.lookups.now < wait_for:
                    await anyio.sleep(0.002)
        finally:
            gate.open.set()
            await here
            await other
    return gate.lookups.peak
