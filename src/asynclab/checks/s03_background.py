"""Checks for section 3, background tasks."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asynclab.bench.cancelling import ShutdownWatch
from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.load import load
from asynclab.bench.loopwatch import LoopWatch
from asynclab.bench.polling import wait_until
from asynclab.bench.probes import capture_every_log
from asynclab.checks._harness import build_app, concurrently, describe, watched
from asynclab.checks._s03_sends import FULL, STUCK, judge_callbacks, judge_endings, judge_failure_logs, plural
from asynclab.course.checking import exercise, fail
from asynclab.standins.s03_background import Mailer, Partners, ReportRenderer, serve_then_stop

# --- 3.1 -------------------------------------------------------------------------------------------

BATCHES = [
    ["ada@example.com", "bob@example.com", "eve@example.com"],
    ["joan@example.com", "kim@example.com", "lee@example.com"],
]
GRACE_LIMIT = 2.0  # how long the app's shutdown may take


@exercise(
    "3.1",
    "Track the fire-and-forget sends",
    hints=[
        (
            "The set keeps each task alive, and that is all it does. Two things are missing: a look at how each task "
            "ended, and a shutdown that waits for the tasks themselves (a sleep only guesses how long they need)."
        ),
        (
            "Give each task a done-callback of your own instead of tasks.discard: discard the task and, unless it was "
            "cancelled, log task.exception() with the address (name each task after its recipient). In the lifespan, "
            "replace the sleep with a drain of the set."
        ),
        (
            "Drain what is still running (skip it when nothing is: asyncio.wait refuses an empty set): `_, pending = await "
            "asyncio.wait(tasks, timeout=0.2)`, then `task.cancel()` for each pending task and "
            "`await asyncio.gather(*pending, return_exceptions=True)`. Or own an anyio task group in the lifespan (see the "
            "lesson)."
        ),
    ],
)
async def tracked_sends(factory: Callable[[Mailer], Any]) -> str:
    # A cancelled send cleans up for as long as the check holds it: only a shutdown that waits for it sees it end.
    mailer = Mailer(full=FULL, stuck=STUCK, held=True)
    app = build_app(factory, mailer, name="build_newsletter_app")
    everyone = [to for batch in BATCHES for to in batch]
    loop = asyncio.get_running_loop()
    loop_reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_reports.append(context))
    at_stop: dict[str, str] = {}
    watched_app = ShutdownWatch(app, mailer.cleanups, on_stopped=lambda: at_stop.update(mailer.states()))

    with capture_every_log(logging.WARNING) as logs:
        async with _newsletter_client(watched_app) as client:
            await _post_batches(client)
            await _let_sends_go(mailer, everyone)
        _free_unkept_tasks()

    never_retrieved = [c for c in loop_reports if "never retrieved" in str(c.get("message", ""))]
    destroyed = [c for c in loop_reports if "destroyed but it is pending" in str(c.get("message", ""))]
    judge_callbacks([c for c in loop_reports if c not in never_retrieved and c not in destroyed])
    judge_failure_logs([r for r in logs.records if not r.name.startswith("asyncio")], never_retrieved)
    judge_endings(mailer, everyone, at_stop, destroyed, never_retrieved)
    return (
        f"{len(everyone)} sends: {mailer.summary()}; each failure logged with its address, "
        "nothing left to asyncio's 'never retrieved', nothing running after shutdown."
    )


@asynccontextmanager
async def _newsletter_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (a startup longer than GRACE_LIMIT raises StartupTimedOut), and a client to it.

    The app's shutdown runs even when the check fails half-way (bounded by GRACE_LIMIT); a
    shutdown that does not end within GRACE_LIMIT, when all went well, fails the check.
    """
    stack = AsyncExitStack()
    client = await stack.enter_async_context(inprocess_client(app, startup_timeout=GRACE_LIMIT, shutdown_timeout=GRACE_LIMIT))
    try:
        yield client
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(GRACE_LIMIT):
            await stack.aclose()
        raise
    try:
        await stack.aclose()
    except TimeoutError:
        fail(
            f"the app's shutdown did not finish within {GRACE_LIMIT:.0f} s: it waits for sends that never end "
            f"({', '.join(sorted(STUCK))} hang).",
            (
                "Give the tasks still running a short grace period (asyncio.wait(..., timeout=...)), then cancel them and wait "
                "for them."
            ),
        )


async def _post_batches(client: httpx.AsyncClient) -> None:
    """Do both POST /newsletter answer at once, while the e-mails still wait to go out?"""
    responses: dict[int, httpx.Response] = {}
    with anyio.move_on_after(1.0) as waited:
        responses = await concurrently(len(BATCHES), lambda i: client.post("/newsletter", json=BATCHES[i]))
    if waited.cancelled_caught:
        fail(
            "POST /newsletter did not answer while the e-mails were waiting to go out: the handler waits "
            "for the sends instead of leaving them in the background.",
            "Keep starting each send as a task (asyncio.create_task or a task group's start_soon) and return at once.",
        )
    for i, response in responses.items():
        if response.status_code != 200 or response.json() != {"queued": len(BATCHES[i])}:
            fail(f"POST /newsletter answered {describe(response)}", "Keep the handler's answer as it was.")


async def _let_sends_go(mailer: Mailer, everyone: list[str]) -> None:
    """Did one send start per recipient, and did the sends end once the mailer let them go?"""
    try:
        await wait_until(lambda: len(mailer.outcome) == len(everyone), timeout=1.0)
    except TimeoutError:
        fail(f"only {len(mailer.outcome)} of {len(everyone)} sends started", "Start one send per recipient, as before.")
    mailer.open()
    try:
        await wait_until(lambda: mailer.ended == len(everyone) - len(STUCK), timeout=1.0)
    except TimeoutError:
        fail(f"the sends did not end after the mailer let them go: {mailer.summary()}", 0)


def _free_unkept_tasks() -> None:
    """Free the tasks nobody kept (asyncio then reports what it never saw), and cancel the tasks still running."""
    leftover_tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    gc.collect()  # a task nobody kept is freed now, and asyncio reports what it never saw
    for task in leftover_tasks:
        task.cancel()


# --- 3.2 -------------------------------------------------------------------------------------------

REPORTS = 6


_REPORT_PATH = re.compile(r"^/reports/(\d+)$")


class _Watched:
    """Wraps the learner's app: notes when each report's response is sent, and answers /_probe itself."""

    def __init__(self, app: ASGIApp, renderer: ReportRenderer) -> None:
        self.app, self.renderer = app, renderer
        self.probes_during_render = 0
        self.probes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/_probe":
            self.probes += 1
            self.probes_during_render += self.renderer.rendering > 0
            body = json.dumps({"ok": True}).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        match = _REPORT_PATH.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        number = int(match.group(1))

        async def noting_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.renderer.responded.add(number)

        await self.app(scope, receive, noting_send)


async def _order_and_probe(app: _Watched, renderer: ReportRenderer) -> Any:
    """POST every report, and probe the app's health while they render; the load report of the POSTs."""
    posts_done = anyio.Event()
    async with inprocess_client(app) as client:

        async def order_reports() -> Any:
            try:
                return await load(client, lambda i: f"/reports/{i}", n=REPORTS, method="POST")
            finally:
                posts_done.set()

        async def probe_while_rendering() -> None:
            with anyio.move_on_after(3):
                while renderer.rendering == 0 and not posts_done.is_set():
                    await anyio.sleep(0.005)
            await load(client, "/_probe", n=REPORTS)

        report: Any = None

        async def run_orders() -> None:
            nonlocal report
            report = await order_reports()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_orders)
            tg.start_soon(probe_while_rendering)
    return report


@exercise(
    "3.2",
    "Unblock the report task",
    hints=[
        (
            "The background task is `async def`, so Starlette runs it on the event loop; renderer.render() blocks for 0.2 s and "
            "never awaits."
        ),
        (
            "Let the blocking call run in a worker thread: make the task a plain `def` (Starlette then runs it in the "
            "thread pool), "
            "or offload the call from the async task."
        ),
        (
            "`def make_report(n): renderer.publish(n, renderer.render(n))` — or keep `async def` and "
            "`pdf = await anyio.to_thread.run_sync(renderer.render, n)`, or `await renderer.arender(n)`."
        ),
    ],
)
async def unblocked_reports(factory: Callable[[ReportRenderer], Any]) -> str:
    watch = LoopWatch()
    renderer = watched(ReportRenderer, watch, "render")
    app = _Watched(build_app(factory, renderer, name="build_report_app"), renderer)
    report = await _order_and_probe(app, renderer)
    for r in report.results:
        if r.status != 200 or r.body != {"queued": r.index}:
            fail(
                f"POST /reports/{r.index} answered {r.status}: {str(r.body)[:100]}", "Keep the route and its answer as they were."
            )
    rendered_early = sorted(renderer.before_response)
    if rendered_early:
        fail(
            f"{plural(len(rendered_early), 'report')} (e.g. report {rendered_early[0]}) were rendered before the response was "
            "sent: the client waited for the render.",
            "Keep the rendering in the background task; change how the task runs, not where.",
        )
    missing = [n for n in range(REPORTS) if renderer.published.get(n) != ReportRenderer.pdf_for(n)]
    if missing:
        fail(
            f"{REPORTS - len(missing)} of {REPORTS} reports were published (report {missing[0]} is missing)",
            "The task must still render the report and publish it: renderer.publish(n, pdf).",
        )
    blocking, awaitable = renderer.record.of("render"), renderer.record.of("arender")
    if blocking.on_loop:
        fail(
            f"{blocking.on_loop} of {REPORTS} renders ran on the event-loop thread: at most {blocking.peak} report rendered "
            "at once, "
            f"and {app.probes_during_render} of {app.probes} health probes were answered while a report was rendering.",
            0,
        )
    if watch.loop_waited:
        fail(
            f"{watch.loop_waited} of {blocking.calls} renders ran in another thread, but the event loop waited for each "
            "of them (it could run nothing else meanwhile): blocking on a thread's result blocks the loop just the same.",
            1,
        )
    peak = max(blocking.peak, awaitable.peak)
    if peak < REPORTS // 2:
        fail(f"only {peak} of {REPORTS} reports were rendering at once", 1)
    return (
        f"{REPORTS} reports rendered after their responses, up to {peak} at once, none on the event-loop thread; "
        f"{app.probes_during_render} of {app.probes} health probes answered while reports were rendering."
    )


# --- 3.3 -------------------------------------------------------------------------------------------

WEBHOOK_PATIENCE = 2.0  # how long the check gives the app's shutdown (its drain needs 0.2 s)


@exercise(
    "3.3",
    "Find why every deploy hangs",
    hints=[
        (
            "Run the cell above the check and read what the app logs about the delivery to hung.example once the drain "
            "has cancelled it: does that delivery stop?"
        ),
        (
            "`task.cancel()` raises CancelledError inside the task, at the await where it waits. `except BaseException` "
            "catches that too: the delivery logs a failed attempt and tries again, and the drain waits for the new attempt."
        ),
        (
            "Retry on `Exception` only, `except Exception as exc:` (since Python 3.8 CancelledError is a BaseException, "
            "not an Exception), or let the cancel through first: `except asyncio.CancelledError: raise`."
        ),
    ],
)
async def deploy_hangs(factory: Callable[[Partners], Any]) -> str:
    partners = Partners()
    app = build_app(factory, partners, name="build_webhook_app")
    answered: list[httpx.Response] = []
    at_stop: dict[str, str] = {}

    async def order_paid(client: httpx.AsyncClient) -> None:
        answered.append(await client.post("/orders/1/paid"))
        with anyio.move_on_after(1.0):  # the quick partner, and the flaky one after its retry
            while partners.outcome.get(Partners.QUICK) != "delivered" or partners.outcome.get(Partners.FLAKY) != "delivered":
                await anyio.sleep(0.01)

    finished = await serve_then_stop(app, order_paid, patience=WEBHOOK_PATIENCE, at_stop=lambda: at_stop.update(partners.outcome))
    _judge_webhooks(partners, answered, at_stop, finished)
    return (
        "the shutdown ended after its 0.2 s of grace: quick.example got the event at once, flaky.example after one "
        "retry, and the delivery to hung.example was cancelled once, and ended cancelled."
    )


def _judge_webhooks(partners: Partners, answered: list[httpx.Response], at_stop: dict[str, str], finished: bool) -> None:
    """Fail on the first thing the webhook app did wrong, the symptom first."""
    expected = {"notified": len(partners.urls)}
    if not answered or answered[0].status_code != 202 or answered[0].json() != expected:
        fail(f"POST /orders/1/paid answered {describe(answered[0]) if answered else 'nothing'}", "Keep the route as it was.")
    if not finished:
        fail(
            f"the app's shutdown was still running {WEBHOOK_PATIENCE:g} s after it began, though its drain gives the "
            "deliveries 0.2 s: every deploy would wait until the platform kills the process (SIGKILL), and lose what is "
            "still running.",
            0,
        )
    if not partners.events[Partners.FLAKY]:
        fail(
            f"flaky.example failed once (503 Service Unavailable) and never got the event: it was called "
            f"{plural(partners.calls[Partners.FLAKY], 'time')}.",
            "Keep the retries: a partner that fails once must be tried again.",
        )
    if at_stop.get(Partners.HUNG) == "sending":
        fail(
            "when the app had stopped, the delivery to hung.example was still running: the process would lose it.",
            "Keep the drain: 0.2 s of grace, then cancel, then wait until the tasks have ended.",
        )
    first = partners.tasks.get(Partners.HUNG)
    if first is not None and not first.cancelled():
        fail(
            "the delivery to hung.example was cancelled at shutdown, but its task ended as if it had finished: "
            "whatever waits on it (the drain, a task group, a timeout) cannot tell that it was stopped.",
            2,
        )
    if partners.calls[Partners.HUNG] > 1:
        calls = partners.calls[Partners.HUNG]
        fail(f"hung.example was called {calls} times: the delivery tried again after it was cancelled.", 1)
