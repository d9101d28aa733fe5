"""Section 6's stand-ins (request isolation): notes in a temporary database, services that hold requests.

And the lesson's drivers, each called in one line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from sqlalchemy import String, Text, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asynclab.bench.database import Row, rows_of
from asynclab.bench.database import temporary_database as bench_database
from asynclab.bench.gauges import InFlight
from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.load import LoadReport, load
from asynclab.bench.polling import until  # noqa: F401 - the lesson imports it from here
from asynclab.standins._s06_uploads import UPLOADS, who_is_anonymous, who_is_anonymous_in_a_process  # noqa: F401 - the lesson's

#: The ``logging_name`` of the engines that :meth:`NotesDatabase.notes` makes to read the database back.
READER = "asynclab-reader"


class Base(Row, DeclarativeBase):
    pass


class Note(Base):
    """One note, written by ``owner`` inside the organisation (tenant) ``tenant``."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(40), index=True)
    owner: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)  # unbounded: a check saves a 100 kB note (PostgreSQL enforces VARCHAR lengths)


@dataclass(frozen=True)
class StoredNote:
    """A row as it is in the database, read through a connection of its own."""

    id: int
    tenant: str
    owner: str
    text: str


@dataclass(frozen=True)
class NotesDatabase:
    """A database with a ``notes`` table; ``url`` is what ``create_async_engine`` takes.

    A SQLite file (``path``), or on the PostgreSQL stack a database in a temporary server (``path`` is None).
    """

    url: str
    kind: str = "sqlite"
    path: Path | None = None

    async def notes(self) -> list[StoredNote]:
        """Every committed note, in id order (through a fresh engine, closed before returning)."""
        engine = create_async_engine(self.url, logging_name=READER)
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(Note.id, Note.tenant, Note.owner, Note.text).order_by(Note.id))).all()
        finally:
            await engine.dispose()
        return [StoredNote(*row) for row in rows]


@asynccontextmanager
async def temporary_database(seed: Iterable[tuple[str, str, str]] = ()) -> AsyncIterator[NotesDatabase]:
    """Create a database holding the ``notes`` table (and the ``(tenant, owner, text)`` rows of ``seed``).

    A SQLite file, whose folder is removed when the block ends; with ``ASYNCLAB_STACK=postgres``, a
    database in a temporary PostgreSQL server, stopped when the block ends. Close your engines inside
    the block (``await engine.dispose()``): the lifespan of an app does that when the app stops::

        async with temporary_database(seed=[("acme", "alice", "hello")]) as db:
            engine = create_async_engine(db.url)   # the app opens its own engine on the database
            ...
            print(await db.notes())                # read back what was really committed
    """
    rows = rows_of(Note, ({"tenant": t, "owner": o, "text": x} for t, o, x in seed))
    async with bench_database(Base.metadata, rows, name="notes") as made:
        yield NotesDatabase(url=made.url, kind=made.kind, path=getattr(made, "path", None))


class Rendezvous:
    """A stand-in for a slow awaited call that returns only when ``parties`` callers are waiting in it.

    Whether two requests overlap usually depends on timing; with a rendezvous in the middle of a
    handler they always do: every request has done its first half before any does its second.
    If ``timeout`` seconds pass before everyone has arrived (the app serves requests one at a
    time, say), it lets the waiting callers go and from then on lets everybody straight through.
    ``complete`` tells whether all ``parties`` were ever inside at once; ``most_inside`` is the
    largest number that were.
    """

    def __init__(self, parties: int, *, timeout: float = 5.0) -> None:
        self.parties = parties
        self.timeout = timeout
        self.arrived = 0
        self.most_inside = 0
        self.complete = False
        self.broken = False
        self._inside = 0
        self._all_in = anyio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.broken or self._all_in.is_set():
            return
        self._inside += 1
        self.most_inside = max(self.most_inside, self._inside)
        try:
            if self._inside >= self.parties:
                self.complete = True
                self._all_in.set()
                return
            with anyio.move_on_after(self.timeout):
                await self._all_in.wait()
            if not self._all_in.is_set():
                self.broken = True
                self._all_in.set()
        finally:
            self._inside -= 1


class AuditLog:
    """An awaitable audit service: ``await audit.record(event)`` stores one entry.

    With a :class:`Rendezvous`, every call waits in it, so all requests are inside their handlers
    at the same moment; without one, a call takes ``latency`` seconds.
    """

    def __init__(self, latency: float = 0.0, *, rendezvous: Rendezvous | None = None) -> None:
        self.latency = latency
        self.rendezvous = rendezvous
        self.entries: list[str] = []

    async def record(self, event: str) -> None:
        self.entries.append(event)
        if self.rendezvous is not None:
            await self.rendezvous.wait()
        else:
            await anyio.sleep(self.latency)


class OrderBook:
    """An awaitable order service: ``await orders.cancel(order_id)`` cancels one order.

    With a :class:`Rendezvous`, every call waits in it, so all requests are inside their handlers at
    the same moment; without one, a call returns at the next turn of the event loop.
    """

    def __init__(self, rendezvous: Rendezvous | None = None) -> None:
        self.rendezvous = rendezvous
        self.cancelled: list[int] = []

    async def cancel(self, order_id: int) -> None:
        self.cancelled.append(order_id)
        if self.rendezvous is not None:
            await self.rendezvous.wait()
        else:
            await anyio.lowlevel.checkpoint()


class Moderation:
    """An awaitable moderation service: ``await moderation.check(text)`` says whether a note may be saved.

    A text holding ``"spam"`` is rejected; any other is accepted after ``latency`` seconds. Texts
    passed to :meth:`hold` are answered only once :meth:`release` is called: the caller decides
    when those requests go on, which makes an interleaving certain instead of likely.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.checked = 0
        self.waiting = 0
        self._held: set[str] = set()
        self._gate = anyio.Event()

    @staticmethod
    def acceptable(text: str) -> bool:
        return "spam" not in text

    def hold(self, *texts: str) -> None:
        """Keep the checks of these texts waiting until :meth:`release`."""
        self._held.update(texts)
        self._gate = anyio.Event()

    def release(self) -> None:
        self._held.clear()
        self._gate.set()

    async def until_waiting(self, n: int, timeout: float = 5.0) -> bool:
        """Wait (at most ``timeout`` s) until ``n`` held checks are waiting; say whether they are."""
        with anyio.move_on_after(timeout):
            while self.waiting < n:
                await anyio.sleep(0.002)
        return self.waiting >= n

    async def check(self, text: str) -> bool:
        self.checked += 1
        if text in self._held:
            gate = self._gate
            self.waiting += 1
            try:
                await gate.wait()
            finally:
                self.waiting -= 1
        await anyio.sleep(self.latency)
        return self.acceptable(text)


@dataclass(frozen=True)
class Call:
    """One request of a :func:`burst`."""

    method: str
    path: str
    json: Any = None
    headers: dict[str, str] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


async def burst(client: httpx.AsyncClient, calls: Sequence[Call], *, in_flight: InFlight | None = None) -> LoadReport:
    """Like :func:`asynclab.bench.load`, but each request has its own method, path, body and headers.

    All requests are sent at once, each in its own task; the report lists them in the order given.
    """
    return await load(
        client,
        lambda i: calls[i].path,
        n=len(calls),
        method=lambda i: calls[i].method,
        json=lambda i: calls[i].json,
        headers=lambda i: calls[i].headers,
        in_flight=in_flight,
    )


# --- the lesson's drivers: two requests on one session, in an order made certain --------------------


async def lost_write(app: Any, moderation: Moderation) -> tuple[httpx.Response, httpx.Response]:
    """A (alice) waits in moderation while B (bob, spam) is rejected and rolls back; then A commits.

    Returns A's answer and B's answer.
    """
    moderation.hold("A's note")
    answers: dict[str, httpx.Response] = {}
    async with inprocess_client(app, raise_app_exceptions=False) as client, anyio.create_task_group() as tg:

        async def send_a() -> None:
            answers["A"] = await client.post("/notes", json={"owner": "alice", "text": "A's note"})

        tg.start_soon(send_a)
        if not await moderation.until_waiting(1):  # A is inside its moderation check
            raise RuntimeError("A never reached its moderation check")
        answers["B"] = await client.post("/notes", json={"owner": "bob", "text": "B's spam"})
        moderation.release()
    return answers["A"], answers["B"]


async def half_done(app: Any, moderation: Moderation) -> tuple[httpx.Response, httpx.Response]:
    """B's batch (``POST /notes/batch``, its 2nd note spam) waits in moderation while A commits; then B rolls back.

    Returns A's answer and B's answer.
    """
    moderation.hold("B1")
    answers: dict[str, httpx.Response] = {}
    async with inprocess_client(app, raise_app_exceptions=False) as client, anyio.create_task_group() as tg:

        async def send_b() -> None:
            batch = [{"owner": "bob", "text": "B1"}, {"owner": "bob", "text": "B2 spam"}]
            answers["B"] = await client.post("/notes/batch", json=batch)

        tg.start_soon(send_b)
        if not await moderation.until_waiting(1):  # B has added both notes and waits
            raise RuntimeError("B never reached its moderation check")
        answers["A"] = await client.post("/notes", json={"owner": "alice", "text": "A's note"})
        moderation.release()
    return answers["A"], answers["B"]


# --- who is asking: many users at once, and tenants --------------------------------------------------

USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]


async def answered_as(app: Any, users: Sequence[str] = USERS) -> list[tuple[str, str]]:
    """Each user asks ``GET /me`` (header ``X-User``), all at once; return (who asked, who the answer says), in order."""
    async with inprocess_client(app) as client:
        report = await load(client, "/me", n=len(users), headers=lambda i: {"X-User": users[i]})
    return [(users[r.index], r.body["user"]) for r in report.results]


async def foreign_rows(app: Any, tenants: Sequence[str]) -> list[int]:
    """One ``GET /notes`` per entry of ``tenants`` (header ``X-Tenant``), all at once.

    Returns how many rows of another tenant each got.
    """
    async with inprocess_client(app) as client:
        report = await load(client, "/notes", n=len(tenants), headers=lambda i: {"X-Tenant": tenants[i]})
    if not report.ok:
        raise RuntimeError(f"the notes service answered {dict(report.statuses)}")
    return [sum(row["tenant"] != tenants[r.index] for row in r.body) for r in report.results]
