"""A real ``python -m uvicorn`` in a process group of its own, started from module source, always killed."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import anyio
import psutil

from asynclab.bench.process_group import kill_group, launch
from asynclab.bench.workspace import workspace

_RUNNING_ON = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass
class UvicornProcess:
    """A ``python -m uvicorn`` command running in its own process group; everything it writes goes to one log."""

    command: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    pid_namespace: bool = False  # started as PID 1 of a PID namespace of its own (``unshare`` is the process we hold)

    @property
    def shell(self) -> str:
        """The command as you would type it."""
        start = self.command.index(sys.executable)
        return " ".join([*self.command[:start], "python", *self.command[start + 1 :]])

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

    @property
    def first_pid(self) -> int:
        """The process a signal is meant for: uvicorn's parent, or in a PID namespace its PID 1 (uvicorn or the init)."""
        if not self.pid_namespace:
            return self.process.pid
        children = psutil.Process(self.process.pid).children()  # unshare has forked PID 1 of the namespace
        if not children:
            raise RuntimeError("the PID namespace has no process yet")
        return int(children[0].pid)

    def terminate(self) -> None:
        """SIGTERM to the parent alone (in a PID namespace, to its PID 1): what a deploy, ``docker stop`` or Kubernetes send."""
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            os.kill(self.first_pid, signal.SIGTERM)


@cache
def _unshare() -> list[str]:
    """The command that starts a process as PID 1 of a new PID namespace, as root or (user namespaces) as anybody."""
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *user]


@cache
def pid_namespace_unavailable() -> str | None:
    """None when ``uvicorn_process(..., pid_namespace=True)`` can run here; otherwise why not, in one sentence."""
    if sys.platform != "linux":
        return f"PID namespaces are a Linux feature; this is {sys.platform}"
    if shutil.which("unshare") is None:
        return "the `unshare` command (util-linux) is not installed"
    try:
        probe = subprocess.run([*_unshare(), "true"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare` could not run: {exc}"
    if probe.returncode != 0:
        said = probe.stderr.decode(errors="replace").strip().splitlines()
        return f"`{' '.join(_unshare())}` failed here: {said[-1] if said else f'exit status {probe.returncode}'}"
    return None


@contextlib.asynccontextmanager
async def uvicorn_process(
    module_source: str,
    *options: str,
    env: dict[str, str] | None = None,
    pid_namespace: bool = False,
    init: Sequence[str] = (),
) -> AsyncIterator[UvicornProcess]:
    """Write ``module_source`` as ``app.py`` in a new folder; run ``python -m uvicorn app:app`` on it.

    The command goes on with ``--host 127.0.0.1 --port 0 *options``.

    The block starts as soon as the process is launched (wait with :meth:`UvicornProcess.wait_for`
    or :meth:`UvicornProcess.exited`). When it ends, also when it fails, the whole process group is
    killed (SIGKILL), so no worker outlives it. ``pid_namespace=True``: uvicorn (or ``init``, a
    command such as ``("tini", "--")`` that runs it) is PID 1 of a new PID namespace, as in a
    container; the group then holds ``unshare``, whose death takes the whole namespace with it.
    Check :func:`pid_namespace_unavailable` first.

    :func:`uvicorn_process` writes the module, starts the command and yields an :class:`UvicornProcess`
    to wait for lines of its log, signal it and read its exit status. It is for what only a process
    of its own shows: signals and exit codes, ``--loop uvloop``, ``--workers``. For an app object
    served in the kernel's own loop use :func:`asynclab.bench.server.uvicorn_server`; for a
    multi-worker server of an app module, :func:`asynclab.bench.workers.serve_workers`.

    ``pid_namespace=True`` starts it as PID 1 of a new PID namespace (Linux, ``unshare``), as a
    container without an init runs it; ``init=("tini", "--")`` puts an init in front of it, as
    ``docker run --init`` does. :func:`pid_namespace_unavailable` says why that cannot run here.
    """
    if pid_namespace and (reason := pid_namespace_unavailable()):
        raise RuntimeError(f"cannot start uvicorn in a PID namespace: {reason}")
    folder = Path(tempfile.mkdtemp(prefix="asynclab-uvicorn-", dir=workspace()))
    (folder / "app.py").write_text(module_source, encoding="utf-8")
    uvicorn = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "0", *options]
    command = [*(_unshare() if pid_namespace else []), *init, *uvicorn]
    environment = {**os.environ, **(env or {})}
    # unshare blocks SIGTERM, so if the kernel dies, SIGKILL it: --kill-child then kills the namespace
    dies_by = signal.SIGKILL if pid_namespace else signal.SIGTERM
    launched = launch(command, folder / "uvicorn.log", folder, environment, dies_by)
    server = UvicornProcess(command, launched, folder / "uvicorn.log", pid_namespace)
    try:
        yield server
    finally:
        kill_group(server.process)
