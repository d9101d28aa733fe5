"""A real multi-worker server, ``python -m uvicorn module:app --workers N`` on 127.0.0.1, always stopped.

Requests that know which worker answered are in :mod:`asynclab.bench.worker_requests` (importable from here too).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil

from asynclab.bench.ports import free_port
from asynclab.bench.process_group import group_members, kill_group, launch, signal_group
from asynclab.bench.workspace import workspace

PID_HEADER = "x-worker-pid"
_STARTED = re.compile(r"Started server process \[(\d+)\]")
_READY = "Application startup complete."
_STARTUP_FAILED = (
    "Traceback (most recent call last)",
    "Application startup failed",
    "failed to start",
    "] died",
    "error while attempting to bind",
)
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*$", re.MULTILINE)
_ERROR_LINE = re.compile(r"^ERROR: .*$", re.MULTILINE)


class WorkersFailed(RuntimeError):
    """The server did not start. The message ends with the log's tail; ``error`` is its last exception line."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log

    @property
    def error(self) -> str:
        """The last exception line of the log (``ValueError: boom``), or else the first line of the message."""
        return last_error(self.log) or (str(self).splitlines() or [""])[0]


def last_error(log: str) -> str:
    """The last line of a log that names an exception (``ValueError: boom``), or ``""``."""
    found = _EXCEPTION_LINE.findall(log) or _ERROR_LINE.findall(log)
    return found[-1].strip() if found else ""


@dataclass(frozen=True)
class Answer:
    """One response: which worker process answered, its status and its decoded body."""

    index: int
    pid: int
    status: int
    body: Any


@dataclass
class Workers:
    """A running ``uvicorn --workers N``: its URL, its processes and its log."""

    command: list[str]
    url: str
    port: int
    workers: int
    log_path: Path
    process: subprocess.Popen[bytes]
    stopped_after: float | None = field(default=None, repr=False)

    @property
    def shell(self) -> str:
        """The command as you would type it (``python -m uvicorn ...``)."""
        return " ".join(["python", *self.command[1:]])

    @property
    def parent_pid(self) -> int:
        return self.process.pid

    @property
    def worker_pids(self) -> list[int]:
        """The PIDs of the processes that serve requests, in the order they started (from the log)."""
        return [int(pid) for pid in _STARTED.findall(self.log())]

    def log(self) -> str:
        """Everything the parent and the workers wrote so far (uvicorn's log, the app's prints and logs)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lines(self, containing: str = "") -> list[str]:
        """The log's lines that contain ``containing``."""
        return [line for line in self.log().splitlines() if containing in line]

    def running(self) -> list[int]:
        """The live processes of the server's process group (parent, workers, helpers); empty once stopped."""
        return group_members(self.process.pid)

    def memory(self) -> dict[int, int]:
        """Each worker's resident memory in bytes (what it holds in RAM right now)."""
        return {pid: psutil.Process(pid).memory_info().rss for pid in self.worker_pids}

    def serving(self) -> bool:
        """Whether something still accepts connections on the server's port."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def terminate_parent(self, timeout: float = 10.0) -> None:
        """SIGTERM to the parent alone (what ``docker stop`` or ``kill <pid>`` send); wait until the whole group has exited.

        The parent passes the signal on to its workers, waits for them, then exits itself.
        (Ctrl-C in a terminal is different: see :meth:`interrupt_group`.)
        """
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.02)

    def interrupt_group(self, timeout: float = 10.0) -> None:
        """SIGINT to every process of the group, as Ctrl-C in the server's terminal sends; wait until all have exited.

        A terminal signals its whole foreground process group, so each worker receives SIGINT
        itself (and shuts down gracefully), whether or not its parent is still alive to pass it on.
        """
        signal_group(self.process.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))

    def kill_parent_only(self) -> None:
        """SIGKILL the parent alone and wait for it to die (a demonstration: its workers live on)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)


def _stop(server: Workers, timeout: float) -> None:
    """Stop the whole group: SIGTERM (graceful: each worker runs its lifespan shutdown), then SIGKILL the rest.

    Once every worker has exited, the parent has nothing left to do but notice it (on its next
    half-second tick), so it is killed right away. Fully synchronous, so a cancelled or
    interrupted cell cannot skip it.
    """
    pgid = server.process.pid
    started = time.monotonic()
    workers = set(server.worker_pids) - {pgid}
    signal_group(pgid, signal.SIGTERM)
    deadline = started + timeout
    while time.monotonic() < deadline:
        members = set(group_members(pgid))
        if not members or (workers and not members & workers):
            break
        time.sleep(0.02)
    kill_group(server.process)  # what is left, and the parent
    server.stopped_after = time.monotonic() - started


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.splitlines()[-lines:])


_PID_TAG = '''"""Written by asynclab: serves {target} and names the answering worker in an {header} header."""
import os
import sys

sys.path.insert(0, {app_dir!r})
from {module} import {attr} as _inner  # noqa: E402

_PID = str(os.getpid()).encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        await _inner(scope, receive, send)
        return

    async def tagged(message):
        if message["type"] == "http.response.start":
            message = {{**message, "headers": [*message.get("headers", []), (b"{header}", _PID)]}}
        await send(message)

    await _inner(scope, receive, tagged)
'''


def _write_pid_tag(target: str, app_dir: Path) -> str:
    module, _, attr = target.partition(":")
    name = f"_asynclab_tagged_{module.replace('.', '_')}"
    (app_dir / f"{name}.py").write_text(
        _PID_TAG.format(target=target, header=PID_HEADER, app_dir=str(app_dir), module=module, attr=attr or "app"),
        encoding="utf-8",
    )
    return f"{name}:app"


@contextlib.asynccontextmanager
async def serve_workers(
    app: str,
    *,
    app_dir: str | Path,
    workers: int = 2,
    access_log: bool = False,
    tag_pid: bool = False,
    env: dict[str, str] | None = None,
    startup_timeout: float = 20.0,
    stop_timeout: float = 10.0,
) -> AsyncIterator[Workers]:
    """Run ``python -m uvicorn <app> --workers <workers> --host 127.0.0.1 --port <free>``; yield a :class:`Workers`.

    ``app`` is ``"module:attribute"``, a module in ``app_dir``; uvicorn's parent binds the port and
    spawns the workers, each importing the module afresh. The block starts once every worker
    has logged "Application startup complete". The server is stopped when the block ends, also
    when it fails: the whole process group, not just the parent, whose workers would keep serving. ``tag_pid=True`` adds an
    ``x-worker-pid`` header to every response (for apps that do not report their PID).
    """
    folder = Path(app_dir).resolve()
    target = _write_pid_tag(app, folder) if tag_pid else app
    log_dir = Path(tempfile.mkdtemp(prefix="asynclab-log-", dir=workspace()))
    environment = {**os.environ, **(env or {})}
    environment.pop("PYTHONUNBUFFERED", None)
    try:
        for attempt in range(3):
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                target,
                "--workers",
                str(workers),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            command += ["--app-dir", str(folder), "--log-level", "info"]
            if not access_log:
                command.append("--no-access-log")
            log_path = log_dir / f"uvicorn-{attempt}.log"
            process = launch(command, log_path, folder, environment)
            server = Workers(command, f"http://127.0.0.1:{port}", port, workers, log_path, process)
            try:
                retry = await _wait_until_ready(server, startup_timeout)
                if retry:
                    continue
                yield server
                return
            finally:
                _stop(server, stop_timeout)
        raise WorkersFailed("no free port after 3 attempts")
    finally:
        if tag_pid:
            with contextlib.suppress(OSError):
                (folder / f"{target.partition(':')[0]}.py").unlink()


async def _wait_until_ready(server: Workers, timeout: float) -> bool:
    """Wait until every worker finished its startup; True means: the port was taken, try another."""
    deadline = time.monotonic() + timeout
    while True:
        text = server.log()
        if text.count(_READY) >= server.workers:
            return False
        if server.process.poll() is not None or any(sign in text for sign in _STARTUP_FAILED):
            if "address already in use" in text.lower():
                return True
            await anyio.sleep(0.2)  # let the failing process finish writing its traceback
            text = server.log()
            raise WorkersFailed(
                f"uvicorn stopped before its {server.workers} worker(s) started. Its log ends:\n{_tail(text)}", text
            )
        if time.monotonic() > deadline:
            raise WorkersFailed(f"the workers did not finish starting within {timeout:.0f} s. The log ends:\n{_tail(text)}", text)
        await anyio.sleep(0.05)


_REQUESTS = {"fresh_requests", "send_to_workers", "throughput", "Throughput", "NotEveryWorkerAnswered"}


def __getattr__(name: str) -> Any:
    """The lessons import ``fresh_requests`` and ``throughput`` from here: they live in :mod:`asynclab.bench.worker_requests`."""
    if name in _REQUESTS:
        from asynclab.bench import worker_requests

        return getattr(worker_requests, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
