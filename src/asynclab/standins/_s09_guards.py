"""Which guard catches which block: lesson 9's table and the take-home template's proof."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from asynclab.bench.workspace import workspace
from asynclab.standins.s09_catch_blocking import import_file

GUARD_ROWS = {
    "time.sleep in a route": """
        import time

        from fastapi import FastAPI

        BLOCK = 0.2
        app = FastAPI()


        @app.get("/")
        async def route() -> None:
            time.sleep(BLOCK)
    """,
    "a sync driver, waiting in C (psycopg 3)": """
        from typing import Any

        from fastapi import FastAPI

        BLOCK = 0.2
        driver: Any = None  # a sync database driver: the harness gives it one
        app = FastAPI()


        @app.get("/")
        async def route() -> None:
            driver.query()
    """,
    "CPU in pure Python": """
        import time

        from fastapi import FastAPI

        BLOCK = 0.2
        app = FastAPI()


        @app.get("/")
        async def route() -> None:
            deadline = time.monotonic() + BLOCK
            while time.monotonic() < deadline:
                sum(i * i for i in range(10_000))
    """,
    "CPU in C (hashlib.pbkdf2_hmac)": """
        import hashlib
        import time

        from fastapi import FastAPI

        BLOCK = 0.2
        app = FastAPI()


        @app.get("/")
        async def route() -> None:
            deadline = time.monotonic() + BLOCK
            while time.monotonic() < deadline:
                hashlib.pbkdf2_hmac("sha256", b"secret", b"salt", 10_000)
    """,
    "a sync client in the lifespan": """
        import time
        from collections.abc import AsyncIterator
        from contextlib import asynccontextmanager

        from fastapi import FastAPI

        BLOCK = 0.2


        def fetch_settings() -> dict[str, str]:
            time.sleep(BLOCK)  # the settings service's sync client
            return {"greeting": "Hei"}


        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            app.state.settings = fetch_settings()
            yield


        app = FastAPI(lifespan=lifespan)


        @app.get("/")
        async def route() -> None:
            pass
    """,
}
GUARDS = ("ruff", "blockbuster per test", "blockbuster from startup", "stall guard")


class CDriver:
    """A sync database driver as psycopg 3 is one: libpq, in C, sends the query and waits for the reply.

    ``query()`` sends one byte with libc's ``send`` and waits in libc's ``recv`` (via ctypes,
    below anything blockbuster wraps) for the server's answer, which a thread of ours sends
    ``latency`` seconds later. Make one with :func:`c_driver`, which stops that thread at the end.
    """

    def __init__(self, latency: float) -> None:
        import ctypes
        import socket

        self.latency = latency
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._mine, self._server = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="c-driver-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._mine.close()  # the server's recv returns b"": it stops
        self._thread.join()
        self._server.close()

    def _serve(self) -> None:
        while self._server.recv(1):
            time.sleep(self.latency)  # the database at work
            self._server.send(b"r")

    def query(self) -> None:
        import ctypes

        buffer = ctypes.create_string_buffer(1)
        if self._libc.send(self._mine.fileno(), b"q", 1, 0) != 1 or self._libc.recv(self._mine.fileno(), buffer, 1, 0) != 1:
            raise OSError(ctypes.get_errno(), "the driver lost its connection")


@contextmanager
def c_driver(latency: float) -> Iterator[CDriver]:
    """A :class:`CDriver` whose server answers after ``latency`` seconds, running until the block ends."""
    driver = CDriver(latency)
    try:
        yield driver
    finally:
        driver.close()


@dataclass
class GuardTable:
    """Which guard caught which block: ``caught[row][guard]``, and what ruff said about each row."""

    caught: dict[str, dict[str, bool]]
    ruff: dict[str, list[str]]

    def __str__(self) -> str:
        width = max(map(len, self.caught))
        lines = [(" " * width + "".join(f"  {guard:<26}" for guard in GUARDS)).rstrip()]
        for row, verdicts in self.caught.items():
            marks = [
                ("caught" if verdicts[guard] else "missed")
                + (f" ({', '.join(self.ruff[row])})" if guard == "ruff" and self.ruff[row] else "")
                for guard in GUARDS
            ]
            lines.append((f"{row:<{width}}" + "".join(f"  {mark:<26}" for mark in marks)).rstrip())
        return "\n".join(lines)


REAL_DRIVER_ROW = "psycopg 3's own sync query (PostgreSQL)"
REAL_DRIVER = """
    import psycopg
    from fastapi import FastAPI

    DSN = ""  # a PostgreSQL database: the harness gives it one
    app = FastAPI()


    @app.get("/")
    async def route() -> None:
        with psycopg.connect(DSN) as conn:
            conn.execute("UPDATE stock SET left_over = left_over - 1 WHERE sku = 'tea'")
"""


async def which_guard_catches_what(stall: float = 0.2, threshold: float = 0.05, *, real_driver: bool | None = None) -> GuardTable:
    """Plant each block of :data:`GUARD_ROWS` in a small service and run it under each guard of :data:`GUARDS`.

    ruff lints the file with the template's configuration (templates/keep-the-rules). The
    service then starts, serves ``GET /`` once and stops, with blockbuster switched on after
    startup and off before shutdown (a fixture per test, under a module-scoped client), with
    blockbuster on from before startup to after shutdown (the template's session fixture), and
    under the template's stall guard at ``threshold`` seconds. blockbuster's runs block for 0.01 s;
    the stall guard's for ``stall`` s, which a heartbeat late from ``3 * threshold`` cannot miss.

    With ``real_driver`` (by default: on the PostgreSQL stack), one more row, :data:`REAL_DRIVER_ROW`:
    psycopg 3's sync query on a new PostgreSQL server, waiting for a row that a connection of ours
    holds until the query waits (blockbuster's runs) or until the stall guard will count the stall (its run).
    """
    import json
    import textwrap

    from asynclab.bench.stack import postgres_here

    if 3 * threshold >= stall - 0.01:
        raise ValueError(f"a {stall} s stall would not be far enough above a {threshold} s threshold")
    rows = dict(GUARD_ROWS)
    if postgres_here() if real_driver is None else real_driver:
        rows[REAL_DRIVER_ROW] = REAL_DRIVER
    folder = Path(tempfile.mkdtemp(prefix="guards-", dir=workspace()))
    files = {row: folder / f"row_{n}.py" for n, row in enumerate(rows)}
    for row, path in files.items():
        path.write_text(textwrap.dedent(rows[row]).lstrip(), encoding="utf-8")
    config = Path(__file__).resolve().parents[3] / "templates" / "keep-the-rules" / "pyproject.toml"
    ruff_check = [sys.executable, "-m", "ruff", "check", "--no-cache", "--exit-zero", "--output-format", "json"]
    linted = await anyio.run_process([*ruff_check, "--config", str(config), *map(str, files.values())], check=True)
    findings = json.loads(linted.stdout)
    ruff = {row: sorted(f["code"] for f in findings if Path(f["filename"]).samefile(path)) for row, path in files.items()}
    caught: dict[str, dict[str, bool]] = {}
    servers = contextlib.ExitStack()
    try:
        dsn = ""
        if REAL_DRIVER_ROW in rows:
            from asynclab.bench.postgres_server import temporary_postgres
            from asynclab.standins._s09_postgres import prepare_stock

            dsn = (await anyio.to_thread.run_sync(servers.enter_context, temporary_postgres())).dsn()
            await anyio.to_thread.run_sync(prepare_stock, dsn)
        for row in rows:
            caught[row] = {"ruff": bool(ruff[row])}
            for guard in GUARDS[1:]:
                block = stall if guard == "stall guard" else 0.01
                caught[row][guard] = await _served(files[row], guard, block, threshold, dsn if row == REAL_DRIVER_ROW else None)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(servers.close)  # stops the server off the loop
    return GuardTable(caught, ruff)


async def _served(path: Path, guard: str, block: float, threshold: float, dsn: str | None) -> bool:
    """Start the service in ``path``, serve ``GET /`` once, stop it, under ``guard``: did the guard catch the block?

    With ``dsn``, the route's row is held until its query waits for it, or, under the stall guard,
    until the guard will count the stall: then the wait lasts as long as it takes to be seen.
    """
    from asgi_lifespan import LifespanManager
    from blockbuster import BlockingError, blockbuster_ctx

    from asynclab.bench.watchdog import StallGuard
    from asynclab.standins._s09_postgres import StallSeen, row_locked

    module = import_file(path, "guarded")
    guard_stalls = StallGuard(threshold) if guard == "stall guard" else None
    with c_driver(block) as driver, contextlib.ExitStack() as around:
        vars(module).update(BLOCK=block, driver=driver, DSN=dsn)
        if dsn is not None:
            seen = StallSeen.on(guard_stalls) if guard_stalls is not None else None

            def release() -> str | None:  # blockbuster's runs: once the query waits; the stall guard's: once it will count it
                if seen is None:
                    return "the query waited"
                return "the stall guard saw the stall" if seen.will_count() else None

            held = await anyio.to_thread.run_sync(around.enter_context, row_locked(dsn, release))
        try:
            async with contextlib.AsyncExitStack() as stack:
                if guard == "blockbuster from startup":
                    around.enter_context(blockbuster_ctx([module]))
                if guard_stalls is not None:
                    await stack.enter_async_context(guard_stalls.watching())
                manager = await stack.enter_async_context(LifespanManager(module.app))
                client = await stack.enter_async_context(
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://guarded")
                )
                with blockbuster_ctx([module]) if guard == "blockbuster per test" else contextlib.nullcontext():
                    await client.get("/")
                if guard_stalls is not None:
                    await asyncio.sleep(0.05)  # a turn of the loop after the stall: the heartbeat measures it
        except BlockingError:
            return True
    if dsn is not None and held.released_because not in ("the query waited", "the stall guard saw the stall"):
        raise RuntimeError(f"the route's query was to wait for the row, but the row was let go when {held.released_because}")
    return bool(guard_stalls.take()) if guard_stalls is not None else False
