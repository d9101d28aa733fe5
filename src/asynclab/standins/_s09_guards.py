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


async def which_guard_catches_what(stall: float = 0.2, threshold: float = 0.05) -> GuardTable:
    """Plant each block of :data:`GUARD_ROWS` in a small service and run it under each guard of :data:`GUARDS`.

    ruff lints the file with the template's configuration (templates/keep-the-rules). The
    service then starts, serves ``GET /`` once and stops, with blockbuster switched on after
    startup and off before shutdown (a fixture per test, under a module-scoped client), with
    blockbuster on from before startup to after shutdown (the template's session fixture), and
    under the template's stall guard at ``threshold`` seconds. blockbuster's runs block for 0.01 s;
    the stall guard's for ``stall`` s, which a heartbeat late from ``3 * threshold`` cannot miss.
    """
    import json
    import textwrap

    from asgi_lifespan import LifespanManager
    from blockbuster import BlockingError, blockbuster_ctx

    from asynclab.bench.watchdog import StallGuard

    if 3 * threshold >= stall - 0.01:
        raise ValueError(f"a {stall} s stall would not be far enough above a {threshold} s threshold")
    folder = Path(tempfile.mkdtemp(prefix="guards-", dir=workspace()))
    files = {row: folder / f"row_{n}.py" for n, row in enumerate(GUARD_ROWS)}
    for row, path in files.items():
        path.write_text(textwrap.dedent(GUARD_ROWS[row]).lstrip(), encoding="utf-8")
    config = Path(__file__).resolve().parents[3] / "templates" / "keep-the-rules" / "pyproject.toml"
    ruff_check = [sys.executable, "-m", "ruff", "check", "--no-cache", "--exit-zero", "--output-format", "json"]
    linted = await anyio.run_process([*ruff_check, "--config", str(config), *map(str, files.values())], check=True)
    findings = json.loads(linted.stdout)
    ruff = {row: sorted(f["code"] for f in findings if Path(f["filename"]).samefile(path)) for row, path in files.items()}

    async def served(row: str, block: float, guard: str) -> bool:
        module = import_file(files[row], "guarded")
        with c_driver(block) as driver, contextlib.ExitStack() as around:
            vars(module).update(BLOCK=block, driver=driver)
            guard_stalls = StallGuard(threshold) if guard == "stall guard" else None
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
        return bool(guard_stalls.take()) if guard_stalls is not None else False

    caught: dict[str, dict[str, bool]] = {}
    for row in GUARD_ROWS:
        caught[row] = {"ruff": bool(ruff[row])}
        for guard in GUARDS[1:]:
            caught[row][guard] = await served(row, stall if guard == "stall guard" else 0.01, guard)
    return GuardTable(caught, ruff)
