"""Section 8, the capstone: the orders service's schema, settings and the vendors' SDKs it calls."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
from sqlalchemy import String, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asynclab.bench.calls import CallRecorder
from asynclab.bench.database import Row, create_tables, sqlite_url, temporary_database
from asynclab.bench.loopbound import LoopBound
from asynclab.bench.mailbox import (
    Mailbox,
    MailboxFull,  # noqa: F401 - part of the mail SDK a service imports from here
)
from asynclab.bench.stack import Stack

if TYPE_CHECKING:
    from asynclab.bench.loopwatch import LoopWatch

SECTION = "08-capstone"  # its module folder; authoring names its notebooks
SLOW_MAIL = 1.0
DECLINED_CARD = "4000 0000 0000 0002"  # the card number every payment provider's test mode declines
GOOD_CARD = "4242 4242 4242 4242"


class Base(Row, DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(String(20), unique=True)
    email: Mapped[str] = mapped_column(String(200))
    amount_cents: Mapped[int]
    receipt: Mapped[str | None] = mapped_column(String(60), default=None)


@dataclass
class Settings:
    """What the service reads at start-up. Tests and checks change it in-process; workers read the environment.

    Settings come from the environment, so the same module runs in-process and under real uvicorn
    workers: ``ORDERS_DATABASE_URL`` names the database, a SQLite file by default. On the PostgreSQL
    stack the checks set it to a database in a temporary PostgreSQL server (``postgresql+asyncpg://...``).
    """

    database_url: str = field(default_factory=lambda: os.environ.get("ORDERS_DATABASE_URL", "sqlite+aiosqlite:///orders.db"))
    payments_key: str = "sk_test_course"
    payments_latency: float = 0.02
    mail_latency: float = 0.01
    mail_server_down: bool = False
    failing_mailboxes: set[str] = field(default_factory=set)
    slow_mailboxes: set[str] = field(default_factory=set)  # the mail server takes SLOW_MAIL seconds to accept these
    staff_tokens: dict[str, str] = field(default_factory=lambda: {"tok-ada": "ada", "tok-bob": "bob"})


settings = Settings()


def database_url(path: str | Path) -> str:
    """The URL of the SQLite file at ``path`` (what ``settings.database_url`` holds)."""
    return sqlite_url(path)


async def prepare_database(url: str) -> None:
    """Create the tables, as a migration does before the service starts (never by the workers themselves)."""
    await create_tables(url, Base.metadata)


async def count_after_insert(on: Stack) -> list[str]:
    """Orders A and B, each inserted and then numbered by counting the rows, before A commits: what happened, in order.

    On SQLite (told not to wait: ``timeout=0``) B's INSERT is refused while A's write transaction is open;
    B tries again once A has committed. On PostgreSQL B's INSERT goes through at once.
    """
    events: list[str] = []
    async with temporary_database(Base.metadata, name="orders", on=on) as db:
        engine = db.engine(connect_args={"timeout": 0}) if on == "sqlite" else db.engine()
        try:
            async with AsyncSession(engine) as a, AsyncSession(engine) as b:
                await _insert_and_count("A", a, events)
                refused = not await _insert_and_count("B", b, events)
                await a.commit()
                events.append("A committed")
                if refused:
                    await _insert_and_count("B", b, events)
        finally:
            await engine.dispose()
    return events


async def _insert_and_count(name: str, session: AsyncSession, events: list[str]) -> bool:
    session.add(Order(email=f"{name.lower()}@example.com", amount_cents=100))
    try:
        await session.flush()
    except OperationalError as exc:
        await session.rollback()
        events.append(f"{name}'s INSERT refused: {exc.orig}")
        return False
    events.append(f"{name} inserted, counts {await session.scalar(select(func.count()).select_from(Order))}")
    return True


class Journal:
    """Everything the stand-ins saw, for the checks: charges (and on which thread), clients opened and closed.

    The learner's service (``08-capstone/orders_service.py``) imports everything from here, as a real
    service imports its models and its vendors' client libraries. Each stand-in keeps a record of what
    happened to it (which thread a charge ran on, whether a client was closed, how each e-mail ended),
    so the checks judge the service by behaviour, never by reading its source.
    """

    def __init__(self) -> None:
        self.calls = CallRecorder()
        self.gateways: list[PaymentGateway] = []
        self.mail_clients: list[MailClient] = []
        self.watch: LoopWatch | None = None  # set by a check: the loop watched during each charge
        self.strangers: list[str] = []  # how each call to StaffTokens from another event loop came (see LoopBound)
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.calls.reset()
        self.watch = None
        self.strangers.clear()
        with self._lock:
            self.gateways.clear()
            self.mail_clients.clear()

    def left_open(self) -> list[str]:
        clients: list[PaymentGateway | MailClient] = [*self.gateways, *self.mail_clients]
        return [repr(c) for c in clients if not c.closed]


journal = Journal()


class CardDeclined(Exception):
    """The payment provider refused the card."""


class PaymentGateway:
    """A payment provider's SDK. Like many vendor SDKs, its calls block the calling thread."""

    def __init__(self, api_key: str) -> None:
        self.api_key, self.closed = api_key, False
        with journal._lock:
            journal.gateways.append(self)

    def charge(self, order_number: str, amount_cents: int, card: str) -> str:
        """Charge the card; return the receipt id, or raise :class:`CardDeclined`."""
        if self.closed:
            raise RuntimeError("PaymentGateway is closed")
        watch = journal.watch
        with (
            watch.call() if watch is not None else contextlib.nullcontext(),
            journal.calls.call("payments.charge", blocking=True),
        ):
            time.sleep(settings.payments_latency)
        if card.replace(" ", "") == DECLINED_CARD.replace(" ", ""):
            raise CardDeclined(f"card declined for {order_number}")
        return f"rcpt_{order_number}"

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"PaymentGateway({'closed' if self.closed else 'open'})"


class MailServerDown(ConnectionError):
    """The mail server refused the connection."""


class MailClient(Mailbox):
    """An e-mail API client: connect once, ``await send(to)`` per mail, ``await aclose()`` at the end."""

    def __init__(self) -> None:
        slow = dict.fromkeys(settings.slow_mailboxes, SLOW_MAIL)
        super().__init__(full=settings.failing_mailboxes, slow=slow, latency=settings.mail_latency)
        self.closed = False
        with journal._lock:
            journal.mail_clients.append(self)

    @classmethod
    async def connect(cls, host: str = "smtp.internal") -> MailClient:
        if settings.mail_server_down:
            raise MailServerDown(f"{host}: connection refused")
        return cls()

    async def send(self, to: str) -> None:
        if self.closed:
            raise RuntimeError("MailClient is closed")
        await super().send(to)

    async def aclose(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"MailClient({'closed' if self.closed else 'open'}, {self.summary()})"


class StaffTokens:
    """The identity provider's client: ``await verify(token)`` gives the staff member's name, or None.

    Like any async client, it connects on first use, and its connection then belongs to that event
    loop: ``verify`` run on another loop (``asyncio.run()`` in a worker thread, a new loop per
    request) raises ``RuntimeError``, noted in ``journal.strangers``.
    """

    def __init__(self) -> None:
        self.connection = LoopBound("StaffTokens", journal.strangers, opened_now=False)

    async def verify(self, token: str) -> str | None:
        self.connection.use()
        await anyio.lowlevel.checkpoint()  # a network round trip
        return settings.staff_tokens.get(token)


def handed_out_service(folder: Path | None = None) -> Path:
    """The service exactly as handed out (made from the solution), written to ``folder``.

    By default the folder is the kernel's workspace, which is removed when the kernel exits.
    """
    from asynclab.bench.workspace import workspace
    from asynclab.course import authoring

    solution = authoring.find_solution(SECTION)
    text = authoring.handed_out(solution)[Path(SECTION) / "orders_service.py"]
    target = (folder or Path(tempfile.mkdtemp(prefix="capstone-", dir=workspace()))) / "orders_service.py"
    target.write_text(text, encoding="utf-8")
    return target


def symptoms(service: Path, ids: list[str]) -> list[tuple[str, str, str]]:
    """Run the capstone checks ``ids`` on ``service``: (exercise, title, what the check said) for each."""
    from asynclab.course import checking

    said = []
    for ex in checking.all_exercises():
        if ex.id in ids:
            try:
                line = checking.run(ex.id, service)
            except checking.CheckFailed as failed:
                line = f"❌ failing · {failed.observed}"
            said.append((ex.id, ex.title, line))
    return said
