"""A real multi-worker server: ``python -m uvicorn module:app --workers N`` on 127.0.0.1, always stopped.

Uvicorn's parent process binds the port and starts N worker processes (with *spawn*: each one
imports the app module afresh). :func:`serve_workers` starts that command in its own process
group, waits until every worker has finished its startup, and yields a :class:`Workers` handle
with the URL and the log every process writes to. When the block ends, also when it fails, the
whole process group is stopped: SIGTERM (so each worker runs its lifespan shutdown), then
SIGKILL for anything left. Killing only the parent is not enough: its workers keep serving.

A client's keep-alive connection sticks to the worker that accepted it, so
:func:`fresh_requests` opens a new connection for every request, and keeps going until every
worker has answered (within a bounded number of requests and seconds).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

from asynclab.bench.load import response_body
from asynclab.bench.ports import free_port
from asynclab.bench.workspace import workspace

PID_HEADER = "x-worker-pid"
_STARTED = re.compile(r"Started server process \[(\d+)\]")
_READY = "Application startup complete."
_LIVE_GROUPS: set[int] = set()
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


class NotEveryWorkerAnswered(WorkersFailed):
    """Requests on fresh connections reached fewer workers than expected, within the bounds given."""


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
        return _group_members(self.process.pid)

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
        _signal_group(self.process.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))

    def kill_parent_only(self) -> None:
        """SIGKILL the parent alone and wait for it to die (a demonstration: its workers live on)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)


def _group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return sorted(members)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop(server: Workers, timeout: float) -> None:
    """Stop the whole group: SIGTERM (graceful: each worker runs its lifespan shutdown), then SIGKILL the rest.

    Once every worker has exited, the parent has nothing left to do but notice it (on its next
    half-second tick), so it is killed right away. Fully synchronous, so a cancelled or
    interrupted cell cannot skip it.
    """
    pgid = server.process.pid
    started = time.monotonic()
    workers = set(server.worker_pids) - {pgid}
    _signal_group(pgid, signal.SIGTERM)
    deadline = started + timeout
    while time.monotonic() < deadline:
        members = set(_group_members(pgid))
        if not members or (workers and not members & workers):
            break
        time.sleep(0.02)
    if _group_members(pgid):
        _signal_group(pgid, signal.SIGKILL)
        hard = time.monotonic() + 5
        while _group_members(pgid) and time.monotonic() < hard:
            time.sleep(0.02)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=5)
    _LIVE_GROUPS.discard(pgid)
    server.stopped_after = time.monotonic() - started


def running_servers() -> dict[int, list[int]]:
    """Servers started by :func:`serve_workers` that still have live processes: process group -> PIDs.

    Orphaned workers (their parent killed) are no longer children of this process, so a search of
    its children misses them; their process group does not.
    """
    return {pgid: members for pgid in sorted(_LIVE_GROUPS) if (members := _group_members(pgid))}


@atexit.register
def _kill_leftovers() -> None:  # pragma: no cover - a safety net for a kernel that exits mid-block
    for pgid in list(_LIVE_GROUPS):
        _signal_group(pgid, signal.SIGKILL)


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


def _die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], object] | None:
    """Linux: a call for the child that asks the kernel to send it ``sig`` (SIGTERM) when the thread that started it dies.

    A Jupyter kernel that is killed (out of memory, a hub stopping a server) runs no clean-up, so
    without this its uvicorn parent would live on, workers and port included. SIGTERM lets uvicorn
    stop its workers as a deploy would. Elsewhere: None (the atexit net below remains).
    The C function is looked up here, in the parent, so the child runs one system call and no Python import.
    """
    if sys.platform != "linux":
        return None
    import ctypes
    import functools

    pr_set_pdeathsig = 1
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return functools.partial(prctl, pr_set_pdeathsig, int(sig))


def _launch(
    command: list[str], log_path: Path, folder: Path, env: dict[str, str], death_signal: signal.Signals = signal.SIGTERM
) -> subprocess.Popen[bytes]:
    """Start the command as the leader of a new process group, every process writing to one log.

    Call it from a thread that outlives the server (the event loop's thread): on Linux the server
    is sent ``death_signal`` when that thread ends (see :func:`_die_with_parent`).
    """
    with open(log_path, "ab") as log_file:  # append mode: whole lines from every process
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent(death_signal),  # noqa: PLW1509 - one system call, no lock or import in the child
        )
    _LIVE_GROUPS.add(process.pid)
    return process


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

    ``app`` is ``"module:attribute"``, a module in ``app_dir``. The block starts once every worker
    has logged "Application startup complete". The server is stopped when the block ends, also
    when it fails: the whole process group, not just the parent. ``tag_pid=True`` adds an
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
            process = _launch(command, log_path, folder, environment)
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


def _pid_of(response: httpx.Response, body: Any) -> int:
    if PID_HEADER in response.headers:
        return int(response.headers[PID_HEADER])
    if isinstance(body, dict) and "pid" in body:
        return int(body["pid"])
    raise WorkersFailed(f"cannot tell which worker answered: no {PID_HEADER} header and no 'pid' in {body!r}")


async def fresh_requests(
    server: Workers,
    path: str | Callable[[int], str],
    *,
    at_least: int = 1,
    workers: int | None = None,
    concurrency: int = 1,
    patience: int = 8,
    at_most: int = 100,
    within: float = 10.0,
    method: str = "GET",
) -> list[Answer]:
    """Send requests to ``server``, each on a new connection, until ``at_least`` were sent and every worker answered.

    A keep-alive connection stays with one worker; a new connection goes to whichever worker
    accepts it first, so the split is uneven and changes from run to run, and one worker may win
    many times in a row. After ``patience`` requests (or ``at_least``, if more) without an answer
    from every worker, the workers that did answer are paused (SIGSTOP) while one request is sent,
    so a worker still waiting must take it; they resume (SIGCONT) as soon as it is answered.
    Requests go ``concurrency`` at a time (1: one after the other); ``path`` may depend on the
    request's index. Gives up with :class:`NotEveryWorkerAnswered` after ``at_most`` requests or
    ``within`` seconds. ``workers`` defaults to the server's worker count.
    """
    expected = server.workers if workers is None else workers
    answers: list[Answer] = []
    deadline = time.monotonic() + within
    async with _fresh_client() as client:

        async def one(i: int) -> None:
            response = await client.request(method, server.url + (path(i) if callable(path) else path))
            body = response_body(response)
            answers.append(Answer(i, _pid_of(response, body), response.status_code, body))

        while len(answers) < at_least or len({a.pid for a in answers}) < expected:
            if len(answers) >= at_most or time.monotonic() > deadline:
                seen = Counter(a.pid for a in answers)
                raise NotEveryWorkerAnswered(
                    f"after {len(answers)} requests on fresh connections, only {len(seen)} of {expected} workers "
                    f"had answered ({dict(seen)})"
                )
            answered = {a.pid for a in answers}
            if len(answers) >= max(at_least, patience) and answered and set(server.worker_pids) - answered:
                with _paused(answered):  # every worker is idle here: no request of ours is in flight
                    await one(len(answers))
                continue
            async with anyio.create_task_group() as tg:
                for i in range(len(answers), len(answers) + concurrency):
                    tg.start_soon(one, i)
    return sorted(answers, key=lambda a: a.index)


async def send_to_workers(
    server: Workers, plan: Sequence[tuple[int, str]], *, method: str = "GET", **request: Any
) -> list[Answer]:
    """Send one request per ``(worker pid, path)`` in ``plan``, in order, each to the worker named.

    Every other worker is paused (SIGSTOP) while a request is sent, so the named worker is the
    only one left to accept its connection; all resume (SIGCONT) as soon as it is answered. This
    lets a check know, without luck, which worker served which request. ``request`` (``json=``,
    ``headers=``...) goes to every request.
    """
    answers: list[Answer] = []
    pids = set(server.worker_pids)
    async with _fresh_client() as client:
        for i, (pid, path) in enumerate(plan):
            if pid not in pids:
                raise WorkersFailed(f"{pid} is not one of the server's workers {sorted(pids)}")
            with _paused(pids - {pid}):
                response = await client.request(method, server.url + path, **request)
            body = response_body(response)
            answers.append(Answer(i, _pid_of(response, body), response.status_code, body))
            if answers[-1].pid != pid:  # pragma: no cover - would mean the pause did not hold
                raise WorkersFailed(f"request {i} was meant for worker {pid} but worker {answers[-1].pid} answered")
    return answers


def _fresh_client(timeout: float = 5.0) -> httpx.AsyncClient:
    """An HTTP client that opens a new connection for every request."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.AsyncClient(limits=limits, timeout=timeout, headers={"Connection": "close"})


@contextlib.contextmanager
def _paused(pids: set[int]) -> Iterator[None]:
    """Stop these processes (SIGSTOP) for the block, and always let them go on (SIGCONT) after it."""
    stopped = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@dataclass(frozen=True)
class Throughput:
    """How many requests a server answered in a fixed time, and which worker answered them."""

    answered: int
    seconds: float
    by_pid: Counter[int]

    @property
    def per_second(self) -> float:
        return self.answered / self.seconds

    def __str__(self) -> str:
        split = " + ".join(str(n) for _, n in self.by_pid.most_common())
        return f"{self.answered} answers in {self.seconds:.1f} s from {len(self.by_pid)} worker(s) ({split})"


async def throughput(
    server: Workers, path: str, *, seconds: float = 1.0, concurrency: int = 4, at_most: float = 10.0
) -> Throughput:
    """Keep ``concurrency`` requests in flight (each on a new connection) for ``seconds``; count the answers.

    The run goes on past ``seconds`` until every worker has answered (at most ``at_most`` seconds
    in all), so that the count covers every worker; the rate uses the real duration.
    """
    url, workers = server.url + path, server.workers
    by_pid: Counter[int] = Counter()
    started = time.monotonic()

    def done() -> bool:
        now = time.monotonic()
        return now >= started + at_most or (now >= started + seconds and len(by_pid) >= workers)

    async with _fresh_client(timeout=10.0) as client:

        async def worker() -> None:
            while not done():
                response = await client.get(url)
                response.raise_for_status()
                by_pid[_pid_of(response, response_body(response))] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    return Throughput(sum(by_pid.values()), time.monotonic() - started, by_pid)
