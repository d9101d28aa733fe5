"""Lesson 9 on the PostgreSQL stack: psycopg 3's sync driver inside ``async def``, on a real server, under both guards."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx

if TYPE_CHECKING:
    from asynclab.bench.watchdog import StallGuard

STOCK = (
    "CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, left_over integer NOT NULL)",
    "INSERT INTO stock VALUES ('tea', 100) ON CONFLICT (sku) DO UPDATE SET left_over = 100",
)
WAITING = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"


def prepare_stock(dsn: str) -> None:
    """The table the routes update: one row, ``tea``, with 100 left."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in STOCK:
            conn.execute(statement)


@dataclass
class Held:
    """What the lock holder saw: when a query began to wait for the row, and why it let go."""

    waiting: threading.Event = field(default_factory=threading.Event)
    released_because: str = "nobody waited"
    _stop: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def row_locked(
    dsn: str, release_when: Callable[[], str | None], *, on_waiting: Callable[[], None] = lambda: None, timeout: float = 30.0
) -> Iterator[Held]:
    """Hold ``tea``'s row (``SELECT ... FOR UPDATE``) from a thread of ours while the block runs.

    The block is a row lock, not a set time: the route's query waits for the row, and we let go once
    the point is made (the stall guard will count the stall, by its own rules: :class:`StallSeen`).

    Once a query waits for a lock (``pg_stat_activity``), the thread calls ``on_waiting()``, then
    lets go when ``release_when()`` returns a reason (asked every 5 ms), after ``timeout`` s at
    the latest, or when the block ends. Entered, the row is held; left, the thread has ended.
    """
    import psycopg

    held, locked, failed = Held(), threading.Event(), list[BaseException]()

    def hold() -> None:
        try:
            with psycopg.connect(dsn) as owner, psycopg.connect(dsn, autocommit=True) as watcher:
                owner.execute("SELECT left_over FROM stock WHERE sku = 'tea' FOR UPDATE")
                locked.set()
                while not held._stop.is_set() and not (watcher.execute(WAITING).fetchone() or (0,))[0]:
                    held._stop.wait(0.005)
                if held._stop.is_set():
                    return
                held.waiting.set()
                on_waiting()
                for _ in range(int(timeout / 0.005)):
                    if (reason := release_when()) is not None or held._stop.wait(0.005):
                        held.released_because = reason or "the block ended"
                        return
                held.released_because = f"{timeout:.0f} s went by"
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failed.append(exc)
        finally:
            locked.set()  # ...and the owner's transaction ends here: the row is free

    thread = threading.Thread(target=hold, name="row-lock-holder", daemon=True)
    thread.start()
    locked.wait()
    try:
        if failed:
            raise failed[0]
        yield held
    finally:
        held._stop.set()
        thread.join()


class StallSeen(logging.Handler):
    """What a stall guard's watchdog thread reported, as it reported it: attach with :meth:`on`.

    :meth:`will_count` says when the guard's ``take()`` will count the stall under way. A report
    counts at once unless the watchdog thread was itself kept waiting (then ``take()`` discounts
    it); then the stall counts as the heartbeat's lateness, once it lasts longer than the guard's
    bar (``3 * threshold``). The rules are the guard's own (see :class:`StallGuard`).
    """

    def __init__(self, guard: StallGuard) -> None:
        super().__init__(logging.WARNING)
        self.threshold, self.interval, self.bar = guard.threshold, guard.interval, guard.lag.bar
        self.poll = max(guard.interval, guard.threshold / 5)
        self.reports: list[tuple[str, str]] = []  # (the route it named, the loop thread's stack)
        self.counted, self.stuck_since = False, 0.0

    @classmethod
    def on(cls, guard: StallGuard) -> StallSeen:
        seen = cls(guard)
        guard.log.addHandler(seen)
        return seen

    def emit(self, record: logging.LogRecord) -> None:
        stalled, slept = float(getattr(record, "stalled", 0.0)), float(getattr(record, "slept", 0.0))
        self.reports.append((str(getattr(record, "route", "")), str(getattr(record, "stack", ""))))
        self.stuck_since = record.created - stalled
        self.counted = self.counted or stalled - max(0.0, slept - self.poll) > self.threshold

    def will_count(self) -> bool:
        if self.counted:
            return True
        return bool(self.reports) and time.time() - self.stuck_since > self.bar + self.interval + 0.01


@dataclass
class DriverRun:
    """One route under both guards: its answer, blockbuster's verdict, the stall guard's reports."""

    route: str
    status: int
    blockbuster: str  # "passed", or what its BlockingError said
    blocked_in: list[str]  # where that BlockingError was raised, outermost first (see _frames)
    stalls: list[str]  # the stall guard's verdict: what its take() returned, one message per stall
    reports: list[tuple[str, str]]  # its watchdog thread's reports, as made: (the route named, the loop thread's stack)
    answered_while_waiting: int  # other requests answered while the route's query waited for the row
    released_because: str

    def __str__(self) -> str:
        named = ", ".join(route for route, _ in self.reports)
        stalls = f"{len(self.stalls)} stall(s) counted" + (f", reported as {named}" if named else "")
        if self.blocked_in:
            return f"POST {self.route}: blockbuster: {self.blockbuster}, under {self.blocked_in[-1]}"
        return (
            f"POST {self.route}: {self.status} · blockbuster: {self.blockbuster} · stall guard: {stalls} · "
            f"{self.answered_while_waiting} other requests answered while the query waited · "
            f"the row was let go when {self.released_because}"
        )


async def driver_runs(
    path: Path,
    routes: list[str],
    *,
    allow: Sequence[tuple[str, str]] = (),
    threshold: float = 0.05,
    enough: int = 20,
) -> dict[str, DriverRun]:
    """Serve each of ``routes`` (``POST``) of the service in ``path`` once, on a new PostgreSQL, under both guards.

    The service's module has ``DSN`` (set here) and ``GET /health``. Each route gets a fresh copy
    of the module, with blockbuster (scoped to it) on from before startup, every blocking call made
    in one of ``allow``'s (file, function) admitted, and the stall guard watching at ``threshold`` s,
    its middleware noting each request; ``GET /health`` is asked again and again meanwhile. The row
    is let go once the stall guard will count the stall (:meth:`StallSeen.will_count`), or once
    ``enough`` health checks were answered while the route's query waited.
    """
    from asynclab.bench.postgres_server import temporary_postgres

    servers = contextlib.ExitStack()
    try:
        pg = await anyio.to_thread.run_sync(servers.enter_context, temporary_postgres())
        await anyio.to_thread.run_sync(prepare_stock, pg.dsn())
        return {route: await _run(path, route, pg.dsn(), allow, threshold, enough) for route in routes}
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(servers.close)  # stops the server off the loop


async def _run(path: Path, route: str, dsn: str, allow: Sequence[tuple[str, str]], threshold: float, enough: int) -> DriverRun:
    from asgi_lifespan import LifespanManager
    from blockbuster import BlockingError, blockbuster_ctx

    from asynclab.bench.watchdog import StallGuard
    from asynclab.standins.s09_catch_blocking import import_file

    module = import_file(path, "stock")
    vars(module).update(DSN=dsn)
    guard = StallGuard(threshold)
    seen = StallSeen.on(guard)
    answered, done, status, verdict, blocked_in = 0, threading.Event(), 0, "passed", list[str]()
    counts = {"since": 0, "during": 0}  # health checks answered: when the query began to wait; while it waited

    def on_waiting() -> None:
        counts["since"] = answered

    def release_when() -> str | None:  # asked by the lock holder's thread
        counts["during"] = answered - counts["since"]
        if seen.will_count():
            return "the stall guard saw the stall"
        return f"{enough} other requests were answered" if counts["during"] >= enough else None

    async def ask_for_health(client: httpx.AsyncClient) -> None:
        nonlocal answered
        while not done.is_set():
            await client.get("/health")
            answered += 1
            await asyncio.sleep(0)  # an in-process request need not suspend: let the others run

    with contextlib.ExitStack() as stack:
        held = await anyio.to_thread.run_sync(stack.enter_context, row_locked(dsn, release_when, on_waiting=on_waiting))
        try:
            async with guard.watching() as watchdog, contextlib.AsyncExitStack() as serving:
                module.app.add_middleware(watchdog.middleware)
                detector = serving.enter_context(blockbuster_ctx([module]))
                for file, function in allow:
                    for wrapped in detector.functions.values():
                        wrapped.can_block_in(file, function)
                manager = await serving.enter_async_context(LifespanManager(module.app))
                transport = httpx.ASGITransport(app=manager.app)
                client = await serving.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://stock"))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask_for_health, client)
                    try:
                        status = (await client.post(route)).status_code
                    except BlockingError as error:
                        verdict, blocked_in = str(error), _frames(error)
                    finally:
                        done.set()
        except BlockingError as error:  # at startup or shutdown
            verdict, blocked_in = str(error), _frames(error)
        finally:
            done.set()
    during = counts["during"] if held.waiting.is_set() else 0
    return DriverRun(route, status, verdict, blocked_in, guard.take(), seen.reports, during, held.released_because)


def _frames(error: BaseException) -> list[str]:
    """Where ``error`` was raised, outermost first: "folder/file.py:function", Python's own modules and blockbuster's left out."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return [
        f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith("<")
        and stdlib not in Path(frame.filename).resolve().parents
        and Path(frame.filename).parent.name != "blockbuster"
    ]
