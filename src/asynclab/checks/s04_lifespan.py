"""Checks for section 4, startup and shutdown with lifespan."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from asynclab.bench.inprocess import inprocess_client, lifespan_started
from asynclab.bench.probes import capture_logs
from asynclab.course.checking import build_app, exercise, fail
from asynclab.course.mistakes import warning_text
from asynclab.standins.s04_lifespan import Mailer, Resources, run_as_process

NEEDED = ("db", "payments")


def _order_body(run: int, oid: int) -> dict[str, str]:
    return {"order": f"db #{run}: order {oid}", "paid": f"payments #{run}: order {oid}"}


def _build_quietly(factory: Callable[[Resources], Any], resources: Resources) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return build_app(factory, resources)


async def _get_order(client: httpx.AsyncClient, oid: int, where: str) -> Any:
    response = await client.get(f"/orders/{oid}")
    if response.status_code != 200:
        fail(f"{where}: GET /orders/{oid} answered {response.status_code}: {response.text[:120]}", 1)
    return response.json()


@exercise(
    "4.1",
    "Migrate from on_event to a lifespan",
    hints=[
        (
            "`on_event` is deprecated: put the startup code and the shutdown code in one `@asynccontextmanager` "
            "function, around a `yield`, and pass it as `FastAPI(lifespan=...)`."
        ),
        (
            "Hand the resources to the handlers as lifespan state: `yield {'db': db, 'payments': payments}`, "
            "then read `request.state.db` in the handler (not `app.state`, which every start of the app shares)."
        ),
        (
            "Open inside `async with AsyncExitStack() as stack:` and register each close right after its open with "
            "`stack.push_async_callback(db.aclose)`: what was opened is closed, also when a later open fails."
        ),
    ],
)
async def migrate_to_lifespan(factory: Callable[[Resources], Any]) -> str:
    resources = Resources()
    app = _built_without_deprecation(factory, resources)
    await _one_clean_run(app, resources)
    await _started_twice(factory)
    await _startup_failing_half_way(factory)
    return (
        "no deprecation warning; db and payments opened once and closed once; two starts of the same app kept their "
        "own resources; a startup failing at payments stopped the app and closed db."
    )


def _built_without_deprecation(factory: Callable[[Resources], Any], resources: Resources) -> Any:
    """1. Building the app must not use the deprecated decorator."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = build_app(factory, resources)
    deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    if deprecated:
        fail(f"building the app emitted a DeprecationWarning: {warning_text(deprecated[0].message)}", 0)
    return app


async def _one_clean_run(app: Any, resources: Resources) -> None:
    """2. One clean run: each resource opened once at startup, used by the handler, closed once at shutdown."""
    async with inprocess_client(app) as client:
        started = sorted(resources.opened)
        if started != sorted(NEEDED):
            if not started:
                fail(
                    "the app started, but its startup opened nothing: is the lifespan passed as FastAPI(lifespan=...)?",
                    0,
                )
            fail(f"startup opened {', '.join(started)}; expected db and payments, once each", 0)
        body = await _get_order(client, 7, "after startup")
    if body != _order_body(1, 7):
        fail(f"GET /orders/7 answered {body!r}, expected {_order_body(1, 7)!r}", "Keep what the handler returns as it was.")
    if sorted(resources.opened) != sorted(NEEDED):
        fail(f"during one run the app opened {', '.join(resources.opened)}: open each resource once, at startup", 0)
    if resources.still_open:
        fail(f"after shutdown, {' and '.join(resources.still_open)} still open ({resources})", 2)
    if sorted(resources.closed) != sorted(NEEDED):
        fail(f"shutdown closed {', '.join(resources.closed) or 'nothing'}; expected db and payments, once each", 2)


async def _started_twice(factory: Callable[[Resources], Any]) -> None:
    """3. The same app object started twice at once (two test clients): each run must use its own resources."""
    resources = Resources()
    app = _build_quietly(factory, resources)
    async with inprocess_client(app) as client_1, inprocess_client(app) as client_2:
        body_1 = await _get_order(client_1, 8, "with the app started twice")
        body_2 = await _get_order(client_2, 9, "with the app started twice")
    if body_1 != _order_body(1, 8) or body_2 != _order_body(2, 9):
        fail(
            "with the same app started twice (as two test clients do), GET /orders/8 on the first start answered "
            f"{body_1!r}, with the second start's resources: the handler reads something every start shares, such as app.state",
            1,
        )
    if resources.still_open:
        fail(f"after two starts and two shutdowns, {' and '.join(resources.still_open)} still open", 1)


async def _startup_failing_half_way(factory: Callable[[Resources], Any]) -> None:
    """4. A startup that fails half-way must stop the app and close what it had opened."""
    resources = Resources(fail_on="payments")
    app = _build_quietly(factory, resources)
    try:
        async with lifespan_started(app):
            pass
    except ConnectionError:
        pass
    else:
        fail("payments could not connect, yet the app finished its startup and would serve requests without it", 2)
    if resources.still_open:
        fail(f"payments could not connect and the startup stopped there, but {' and '.join(resources.still_open)} stayed open", 2)


EMAILS = {"fast@example.com": 0.05, "slow@example.com": 0.4, "stuck@example.com": 60.0}
DEADLINE = 0.6  # the deadline the exercise's text names
#: A second run with a shorter deadline: an answer that ignores `deadline` (and waits 0.6 s) delivers the late email.
SHORT_DEADLINE = 0.25
SHORT_EMAILS = {"quick@example.com": 0.05, "late@example.com": 0.55, "hung@example.com": 60.0}
GRACE = 1.5  # how much longer than the deadline the check waits for the shutdown to end


@exercise(
    "4.2",
    "Drain in-flight emails at shutdown, within a deadline",
    hints=[
        "Sleeping a fixed 0.1 s does not wait for the emails: at shutdown, wait for the tracked tasks themselves.",
        (
            "Wait with a deadline: `done, pending = await asyncio.wait(tasks, timeout=deadline)` returns when all are "
            "done or when the deadline passes, whichever comes first. It refuses an empty set: wait only while a task is left."
        ),
        (
            "After the deadline, cancel each pending task, log a warning naming it (task.get_name()), then await them "
            "(`await asyncio.gather(*pending, return_exceptions=True)`) so they have stopped before the app has."
        ),
    ],
)
async def drain_at_shutdown(factory: Callable[[Mailer, float], Any]) -> str:
    runs: dict[float, tuple[Mailer, Any, dict[str, int]]] = {}

    async def one_run(deadline: float, emails: dict[str, float]) -> None:
        mailer = Mailer(emails)
        app = build_app(factory, mailer, deadline, name="build_mail_app")
        answers: dict[str, int] = {}

        async def queue_emails(client: httpx.AsyncClient) -> None:
            for to in emails:
                answers[to] = (await client.post(f"/emails/{to}")).status_code

        run = await run_as_process(app, queue_emails, on_stopped=mailer.snapshot, shutdown_timeout=deadline + GRACE)
        runs[deadline] = (mailer, run, answers)

    with capture_logs("", logging.WARNING) as logs:
        async with anyio.create_task_group() as tg:  # the two runs, each in its own thread and loop, side by side
            tg.start_soon(one_run, DEADLINE, EMAILS)
            tg.start_soon(one_run, SHORT_DEADLINE, SHORT_EMAILS)

    named: list[logging.LogRecord] = []
    for deadline, emails in ((DEADLINE, EMAILS), (SHORT_DEADLINE, SHORT_EMAILS)):
        mailer, run, answers = runs[deadline]
        named += _judge_drain(deadline, emails, mailer, run, answers, logs.records)
    return (
        f"with deadline={DEADLINE} s the 0.05 s and 0.4 s emails were delivered, and with deadline={SHORT_DEADLINE} s the "
        f"0.55 s one was cancelled; each email still running at the deadline was cancelled, had stopped before the app "
        f"had, and was named in a WARNING ({named[0].getMessage()[:70]!r})."
    )


def _judge_drain(
    deadline: float, emails: dict[str, float], mailer: Mailer, run: Any, answers: dict[str, int], records: list[logging.LogRecord]
) -> list[logging.LogRecord]:
    """Fail on what one run with ``deadline`` did wrong; return the warnings that named a cancelled email."""
    with_deadline = f"with deadline={deadline} s"
    if not run.started:
        fail(f"the app did not start: {type(run.error).__name__}: {run.error}", "Keep the app starting as before.")
    failed = {to: status for to, status in answers.items() if not 200 <= status < 300}
    if failed or len(answers) < len(emails):
        fail(f"POST /emails/... answered {failed or answers}", "Keep the route queuing the email as it was.")
    if not run.stopped:
        fail(
            f"{with_deadline}, the shutdown was still waiting {deadline + GRACE:.2f} s after it began: "
            "one email never finishes, so waiting for everything means waiting for ever",
            1,
        )
    at_stop = mailer.at_shutdown or {}
    cancelled: list[str] = []
    for to, seconds in emails.items():
        state = at_stop.get(to)
        if state is None:
            fail(f"the email to {to} was never sent", "Keep the route creating one task per email.")
        if state == "running":
            fail(
                f"{with_deadline}, the email to {to} (it takes {seconds:g} s) was still running when the app had finished "
                "stopping: the process would lose it"
                + (" (cancel what is left after the deadline, and wait until it has stopped)" if seconds > deadline else ""),
                2 if seconds > deadline else 0,
            )
        if seconds < deadline and state == "cancelled":
            fail(f"{with_deadline}, the email to {to} (it takes {seconds:g} s) was cancelled before the deadline", 1)
        if seconds > deadline and state == "delivered":
            fail(
                f"{with_deadline}, the email to {to} (it takes {seconds:g} s) was delivered: the shutdown waited past the "
                "deadline. Does your code use the `deadline` parameter, or a number of its own?",
                "Wait `deadline` seconds, the parameter build_mail_app receives: `asyncio.wait(tasks, timeout=deadline)`.",
            )
        if state == "cancelled":
            cancelled.append(to)
    named: list[logging.LogRecord] = []
    for to in cancelled:
        about = [r for r in records if to in r.getMessage()]
        warned = [r for r in about if r.levelno == logging.WARNING]
        if not warned:
            fail(
                f"{with_deadline}, the email to {to} was cancelled, but no WARNING named it"
                + (f" (it was logged at {about[0].levelname})" if about else f": the log got {len(records)} record(s) at WARNING or above"),
                2,
            )
        named += warned
    return named
