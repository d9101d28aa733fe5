"""Section 3's stand-ins (background tasks): an e-mail API, a report renderer, partners, and the lesson's harness."""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from asynclab.bench.calls import CallRecorder
from asynclab.bench.cancelling import Cleanups
from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.mailbox import (
    Mailbox,
    MailboxFull,  # noqa: F401 - the lessons import it from here
)
from asynclab.bench.polling import wait_until
from asynclab.bench.probes import LoopLag, capture_logs, loop_lag
from asynclab.bench.processes import uvicorn_process
from asynclab.bench.server import uvicorn_server
from asynclab.standins._s03_timeline import AfterResponse, after_response  # noqa: F401 - the lesson imports both from here

# --- Stand-in services ---------------------------------------------------------------------------


class Mailer(Mailbox):
    """A stand-in e-mail API for background sends.

    With ``held=True``, ``send(to)`` first waits until :meth:`open` is called (so a test decides
    when sending may proceed). A send takes ``latency`` seconds, or ``slow[to]`` for the addresses
    in ``slow``. Addresses in ``full`` fail with :class:`MailboxFull`;
    addresses in ``stuck`` hang until cancelled, like a server that never answers.
    A cancelled send cleans up before it ends, as real I/O does (``cleanups``: a few turns of the
    loop, or, held by a check, as long as the check says).
    ``outcome[to]`` is ``"sending"``, ``"delivered"``, ``"failed"``, ``"cancelling"`` (cancelled,
    still cleaning up) or ``"cancelled"``.
    """

    def __init__(
        self,
        *,
        full: Iterable[str] = (),
        stuck: Iterable[str] = (),
        slow: Mapping[str, float] | None = None,
        latency: float = 0.05,
        held: bool = False,
        cleanups: Cleanups | None = None,
    ) -> None:
        super().__init__(full=full, slow=slow, latency=latency)
        self.stuck = set(stuck)
        self.cleanups = cleanups or Cleanups()
        self._tasks: dict[str, weakref.ref[asyncio.Task[object]]] = {}  # the task each send runs in, not kept alive
        self._opened = not held
        self._gate: anyio.Event | None = None

    def _event(self) -> anyio.Event:
        if self._gate is None:
            self._gate = anyio.Event()
            if self._opened:
                self._gate.set()
        return self._gate

    def open(self) -> None:
        """Let the waiting sends go ahead."""
        self._opened = True
        self._event().set()

    async def send(self, to: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks[to] = weakref.ref(task)
        await super().send(to)

    async def _transmit(self, to: str) -> None:
        await self._event().wait()
        if to in self.stuck:
            await anyio.sleep(self.slow.get(to, self.latency))
            await anyio.sleep_forever()
        await super()._transmit(to)

    async def _cancelled(self, to: str) -> None:
        self.outcome[to] = "cancelling"
        try:
            await self.cleanups.run()  # the connection is closed properly: that takes a few awaits
        finally:
            self.outcome[to] = "cancelled"

    def states(self) -> dict[str, str]:
        """Each send's outcome now; a send whose task was asked to cancel but has not run since is ``"cancelling"``."""
        states = dict(self.outcome)
        for to, state in states.items():
            task = self._tasks[to]() if to in self._tasks else None
            if state == "sending" and task is not None and not task.done() and task.cancelling():
                states[to] = "cancelling"
        return states

    @property
    def ended(self) -> int:
        """How many sends have ended, whichever way."""
        return len(self.outcome) - self.count("sending") - self.count("cancelling")


class ReportRenderer:
    """A stand-in PDF renderer: ``render`` blocks (a sync library); ``arender`` is its awaitable twin.

    ``publish(n, pdf)`` stores a finished report. ``record`` says how many renders ran at once and
    how many ran on the event-loop thread; ``responded`` may be filled by a test with the report
    numbers whose response was already sent, so each render notes whether it ran after its response.
    """

    def __init__(self, latency: float = 0.2) -> None:
        self.latency = latency
        self.record = CallRecorder()
        self.published: dict[int, str] = {}
        self.responded: set[int] = set()
        self.before_response: set[int] = set()
        self._lock = threading.Lock()

    @staticmethod
    def pdf_for(n: int) -> str:
        return f"report-{n}.pdf"

    def _note(self, n: int) -> None:
        with self._lock:
            if n not in self.responded:
                self.before_response.add(n)

    @property
    def rendering(self) -> int:
        """How many renders (blocking or awaitable) are running right now."""
        return self.record.of("render").now + self.record.of("arender").now

    def render(self, n: int) -> str:
        self._note(n)
        with self.record.call("render", blocking=True):
            time.sleep(self.latency)
            return self.pdf_for(n)

    async def arender(self, n: int) -> str:
        self._note(n)
        with self.record.call("arender", blocking=False):
            await anyio.sleep(self.latency)
            return self.pdf_for(n)

    def publish(self, n: int, pdf: str) -> None:
        with self._lock:
            self.published[n] = pdf


# --- Lesson 3's measuring harness -------------------------------------------------------------------


async def ten_reports(make_app: Callable[[AfterResponse, str], Any], kind: str) -> tuple[AfterResponse, LoopLag]:
    """Order ten reports at once on a real server (``make_app(record, kind)``); wait for their tasks; watch the loop."""
    record = AfterResponse()
    async with uvicorn_server(make_app(record, kind)) as url, httpx.AsyncClient(base_url=url) as client, loop_lag() as lag:
        await record.burst(client, lambda i: f"/reports/{i}", n=10)
        await record.tasks_done(10)
    print(f"{kind:>9} task: {record} · {lag}")
    print(f"           tasks that ran on the event-loop thread: {sum(record.on_loop.values())} of 10")
    return record, lag


SIGN_UPS = ("ada@example.com", "bob@example.com", "eve@example.com")


@dataclass
class SignUps:
    """How three welcome mails ended, as things stood when the app had stopped (or when we stopped waiting for it)."""

    outcome: dict[str, str]  # per address: delivered, failed, cancelled, or still sending
    app_log: list[str]  # what the app's own loggers ("shop...") had said by then
    asyncio_log: list[str]  # the first line of each report asyncio made about a send
    shutdown_finished: bool  # did the app's shutdown end within the patience given?

    def __str__(self) -> str:
        stopped = "the app stopped" if self.shutdown_finished else "the shutdown was still waiting"
        return f"when {stopped}, the mails were: {self.outcome}"


async def sign_up_three(make_app: Callable[[Mailer], Any], *, patience: float = 1.0) -> SignUps:
    """Ada, Bob (mailbox full) and Eve (her mail server never answers) sign up; then the app shuts down.

    The shutdown gets ``patience`` seconds. What the mails and the logs show at that moment is
    returned; then anything the app left running is cancelled, as often as it takes, so that no
    demo leaves a task behind in the notebook.
    """
    mailer = Mailer(full={"bob@example.com"}, stuck={"eve@example.com"})
    seen = SignUps({}, [], [], shutdown_finished=False)

    async def sign_up(client: httpx.AsyncClient) -> None:
        for email in SIGN_UPS:
            await client.post("/signup", params={"email": email})
        await wait_until(lambda: mailer.ended >= 2, what="Ada's and Bob's sends ending")

    with capture_logs("shop") as app_log, capture_logs("asyncio") as asyncio_log:

        def at_stop() -> None:
            seen.outcome, seen.app_log = dict(mailer.outcome), list(app_log.messages)

        seen.shutdown_finished = await serve_then_stop(make_app(mailer), sign_up, patience=patience, at_stop=at_stop)
        gc.collect()  # asyncio reports an exception nobody retrieved when the task is freed
        seen.asyncio_log = [m.splitlines()[0] for m in asyncio_log.messages if "Mailer.send" in m]
    return seen


async def serve_then_stop(
    app: Any, work: Callable[[httpx.AsyncClient], Any], *, patience: float, at_stop: Callable[[], None] | None = None
) -> bool:
    """Start ``app`` in-process, ``await work(client)``, then shut it down: True if the shutdown ended within ``patience`` s.

    ``at_stop()`` runs at that moment: when the shutdown has ended, or when the patience ran out.
    Then every task the app left running is cancelled, as often as it takes (a task that swallows a
    cancel needs another), so that nothing outlives the call.
    """
    before = asyncio.all_tasks()
    stopping = asyncio.Event()

    async def serve() -> None:
        async with inprocess_client(app, shutdown_timeout=None) as client:
            await work(client)
            stopping.set()  # leaving the block shuts the app down

    serving = asyncio.create_task(serve())
    waiting = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()  # the startup or the work failed: say so
        await asyncio.wait({serving}, timeout=patience)
        finished = serving.done() and not serving.cancelled()
        if at_stop is not None:
            at_stop()
        if finished:
            serving.result()
    finally:
        waiting.cancel()
        await _end_for_good([serving, *(t for t in asyncio.all_tasks() - before if t is not asyncio.current_task())])
    return finished


async def _end_for_good(tasks: list[asyncio.Task[Any]], rounds: int = 20) -> None:
    """Cancel ``tasks`` until every one has ended (a task that swallows a cancel needs another)."""
    for _ in range(rounds):
        left = [t for t in tasks if not t.done()]
        if not left:
            return
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=0.2)
    raise RuntimeError(f"{len([t for t in tasks if not t.done()])} task(s) would not end")


INVOICES = {1: 0.5, 2: 0.5, 3: 0.5, 4: 3600.0}  # seconds each mail server takes: the fourth never answers
_ENDING = re.compile(r"^invoice (\d+): (sent|cancelled)$", re.MULTILINE)


@dataclass(frozen=True)
class Deploy:
    """How an app sends its invoices (``JOBS_BY``), and how its uvicorn runs."""

    jobs_by: str  # "BackgroundTasks", "create_task" or "create_task + drain"
    options: tuple[str, ...] = ()  # uvicorn's options
    pid_namespace: bool = False  # uvicorn is PID 1, as in a container without an init
    init: tuple[str, ...] = ()  # an init in front of it: ("tini", "--") is what `docker run --init` adds
    exits: bool = True  # False: uvicorn waits for ever; we stop looking once the short invoices are sent


@dataclass
class Deployed:
    """Which invoices were sent, cancelled (their ``except CancelledError`` ran) or had no ending; how uvicorn ended."""

    sent: list[int]
    cancelled: list[int]
    no_ending: list[int]
    uvicorn: str
    said: list[str] = field(default_factory=list)  # uvicorn's lines about waiting and cancelling

    def outcome(self) -> tuple[list[int], list[int], list[int], str]:
        return self.sent, self.cancelled, self.no_ending, self.uvicorn


async def deploy(app_source: str, how: Deploy) -> Deployed:
    """Serve ``app_source`` as ``python -m uvicorn``, place four orders, send SIGTERM, read the log."""
    env = {"JOBS_BY": how.jobs_by}
    async with uvicorn_process(app_source, *how.options, env=env, pid_namespace=how.pid_namespace, init=how.init) as server:
        assert await server.started()
        async with httpx.AsyncClient(base_url=server.url) as client:
            for order, seconds in INVOICES.items():
                (await client.post(f"/orders/{order}", params={"seconds": seconds})).raise_for_status()
        server.terminate()  # the deploy
        if how.exits:
            await server.exited()
        else:  # wait for the three short invoices, and half a second more
            for order in (1, 2, 3):
                await server.wait_for(f"invoice {order}: sent")
            with anyio.move_on_after(0.5):
                await server.exited()
        endings = {int(order): how_ended for order, how_ended in _ENDING.findall(server.log())}
        status = server.status
        said = [line for line in server.lines() if "Waiting for background" in line or "Cancel " in line]
    return Deployed(
        sent=[o for o in INVOICES if endings.get(o) == "sent"],
        cancelled=[o for o in INVOICES if endings.get(o) == "cancelled"],
        no_ending=[o for o in INVOICES if o not in endings],
        uvicorn="still waiting (killed)" if status is None else f"exited, status {status}",
        said=said,
    )


async def deploy_all(app_source: str, runs: Mapping[str, Deploy]) -> dict[str, Deployed]:
    """Every deploy of ``runs`` side by side (each uvicorn is a process of its own); the results in the same order."""
    results: dict[str, Deployed] = {}

    async def one(name: str) -> None:
        results[name] = await deploy(app_source, runs[name])

    async with anyio.create_task_group() as tg:
        for name in runs:
            tg.start_soon(one, name)
    return {name: results[name] for name in runs}


def deploy_table(results: Mapping[str, Deployed]) -> None:
    """Print one row per deploy: the invoices sent, cancelled or without an ending, and how uvicorn ended."""

    def show(orders: list[int]) -> str:
        return ",".join(map(str, orders)) or "-"

    width = max(len(name) for name in results) + 2
    print(f"{'after SIGTERM':{width}}{'sent':>7}{'cancelled':>11}{'no ending':>11}   uvicorn")
    for name, d in results.items():
        print(f"{name:{width}}{show(d.sent):>7}{show(d.cancelled):>11}{show(d.no_ending):>11}   {d.uvicorn}")


# --- Exercise 3.3's partners --------------------------------------------------------------------------


class PartnerError(Exception):
    """A partner's webhook endpoint answered with an error. Its text names no URL."""


class Partners:
    """Stand-in webhook endpoints: one answers at once, one fails its first call (a 503), one never answers.

    ``await partners.post(url, event)`` delivers ``event``. ``calls[url]`` counts the calls,
    ``outcome[url]`` is how the last one ended (``"sending"``, ``"delivered"``, ``"failed"`` or
    ``"cancelled"``), ``events[url]`` what was delivered, and ``tasks[url]`` the task that made the
    first call (kept, so that a check can see how it ended).
    """

    QUICK = "https://quick.example/hooks"
    FLAKY = "https://flaky.example/hooks"
    HUNG = "https://hung.example/hooks"

    def __init__(self, latency: float = 0.02) -> None:
        self.latency = latency
        self.urls = [self.QUICK, self.FLAKY, self.HUNG]
        self.calls: dict[str, int] = dict.fromkeys(self.urls, 0)
        self.outcome: dict[str, str] = {}
        self.events: dict[str, list[object]] = {url: [] for url in self.urls}
        self.tasks: dict[str, asyncio.Task[Any]] = {}

    async def post(self, url: str, event: object) -> None:
        self.calls[url] += 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.setdefault(url, task)
        self.outcome[url] = "sending"
        try:
            await anyio.sleep(self.latency)
            if url == self.HUNG:
                await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.outcome[url] = "cancelled"
            raise
        if url == self.FLAKY and self.calls[url] == 1:
            self.outcome[url] = "failed"
            raise PartnerError("503 Service Unavailable")
        self.outcome[url] = "delivered"
        self.events[url].append(event)

    def short(self, url: str) -> str:
        """``https://flaky.example/hooks`` -> ``flaky.example``."""
        return url.split("//", 1)[1].split("/", 1)[0]
