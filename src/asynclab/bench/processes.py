"""A real ``python -m uvicorn`` in a process group of its own, started from module source, always killed.

:func:`uvicorn_process` writes the module, starts the command and yields an :class:`UvicornProcess`
to wait for lines of its log, signal it and read its exit status. It is for what only a process
of its own shows: signals and exit codes, ``--loop uvloop``, ``--workers``. For an app object
served in the kernel's own loop use :func:`asynclab.bench.server.uvicorn_server`; for a
multi-worker server of an app module, :func:`asynclab.bench.workers.serve_workers`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from asynclab.bench.workers import _LIVE_GROUPS, _group_members, _launch, _signal_group
from asynclab.bench.workspace import workspace

_RUNNING_ON = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass
class UvicornProcess:
    """A ``python -m uvicorn`` command running in its own process group; everything it writes goes to one log."""

    command: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def shell(self) -> str:
        """The command as you would type it."""
        return " ".join(["python", *self.command[1:]])

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lines(self, containing: str = "") -> list[str]:
        """The log's lines that contain ``containing``."""
        return [line for line in self.log().splitlines() if containing in line]

    @property
    def url(self) -> str:
        found = _RUNNING_ON.search(self.log())
        if not found:
            raise RuntimeError("uvicorn has not said which port it listens on (yet)")
        return f"http://127.0.0.1:{found.group(1)}"

    @property
    def status(self) -> int | None:
        """The exit status, once the parent process has exited (``-15``: ended by SIGTERM); else None."""
        return self.process.poll()

    async def wait_for(self, text: str, count: int = 1, *, timeout: float = 60.0) -> bool:
        """Wait until ``text`` appears ``count`` times in the log: True; False if the process exited first."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.status is not None:
                await anyio.sleep(0.1)  # let the last lines reach the log
                return self.log().count(text) >= count
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{text!r} did not appear {count} time(s) within {timeout:g} s. The log ends:\n{self.log()[-1500:]}"
                )
            await anyio.sleep(0.02)
        return True

    async def started(self, workers: int = 1, *, timeout: float = 60.0) -> bool:
        """Wait until the server listens and ``workers`` processes finished their startup: True; False if it exited first."""
        return await self.wait_for("Uvicorn running on", timeout=timeout) and await self.wait_for(
            "Application startup complete", workers, timeout=timeout
        )

    async def exited(self, *, timeout: float = 60.0) -> int:
        """Wait until the parent process has exited; return its status."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn was still running after {timeout:g} s. The log ends:\n{self.log()[-1500:]}")
            await anyio.sleep(0.02)
        await anyio.sleep(0.05)  # let the last lines reach the log
        return self.process.returncode

    def terminate(self) -> None:
        """SIGTERM to the parent alone: what a deploy, ``docker stop`` or Kubernetes send."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)


@contextlib.asynccontextmanager
async def uvicorn_process(module_source: str, *options: str, env: dict[str, str] | None = None) -> AsyncIterator[UvicornProcess]:
    """Write ``module_source`` as ``app.py`` in a new folder; run ``python -m uvicorn app:app --host 127.0.0.1 --port 0 *options``.

    The block starts as soon as the process is launched (wait with :meth:`UvicornProcess.wait_for`
    or :meth:`UvicornProcess.exited`). When it ends, also when it fails, the whole process group is
    killed (SIGKILL), so no worker outlives it.
    """
    folder = Path(tempfile.mkdtemp(prefix="asynclab-uvicorn-", dir=workspace()))
    (folder / "app.py").write_text(module_source, encoding="utf-8")
    command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "0", *options]
    environment = {**os.environ, **(env or {})}
    server = UvicornProcess(command, _launch(command, folder / "uvicorn.log", folder, environment), folder / "uvicorn.log")
    try:
        yield server
    finally:
        _kill_group(server.process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a whole process group and wait until it is gone (synchronous, so a cancelled cell cannot skip it)."""
    pgid = process.pid
    _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    _LIVE_GROUPS.discard(pgid)
