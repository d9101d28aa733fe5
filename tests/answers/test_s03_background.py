"""Section 3: each check accepts different correct answers and rejects plausible wrong ones."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import BackgroundTasks, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from asynclab.standins.s03_background import MailboxFull, Mailer, Partners, ReportRenderer
from tests.conftest import fails, passes

log = logging.getLogger("newsletter")

# --- 3.1 -------------------------------------------------------------------------------------------

Starter = Callable[[Mailer, str], None]
Lifespan = Callable[[FastAPI], Any]


def newsletter(make: Callable[[Mailer], tuple[Starter, Lifespan | None]]) -> Callable[[Mailer], FastAPI]:
    """An app whose handler calls ``start(mailer, to)`` per recipient, with the answer's own lifespan."""

    def build(mailer: Mailer) -> FastAPI:
        start, lifespan = make(mailer)
        app = FastAPI(lifespan=lifespan)

        @app.post("/newsletter")
        async def send_newsletter(recipients: list[str]) -> dict[str, int]:
            for to in recipients:
                start(mailer, to)
            return {"queued": len(recipients)}

        return app

    return build


def tracked_set(
    *, with_address: bool = True, drain: str = "cancel", safe_callback: bool = True, level: int = logging.ERROR
) -> Callable[[Mailer], tuple[Starter, Lifespan]]:
    """The set-and-done-callback family: the solution and several of its broken variants."""

    def make(mailer: Mailer) -> tuple[Starter, Lifespan]:
        sends: set[asyncio.Task[None]] = set()

        def ended(task: asyncio.Task[None]) -> None:
            sends.discard(task)
            if safe_callback and task.cancelled():
                return
            if task.exception() is not None:
                message = f"{task.get_name()} failed" if with_address else "a newsletter send failed"
                log.log(level, message, exc_info=task.exception())

        def start(mailer: Mailer, to: str) -> None:
            task = asyncio.create_task(mailer.send(to), name=f"newsletter to {to}")
            sends.add(task)
            task.add_done_callback(ended)

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            yield
            if not sends or drain == "none":
                return
            if drain == "gather":  # waits for ever for a send that never ends
                await asyncio.gather(*sends, return_exceptions=True)
                return
            _, pending = await asyncio.wait(sends, timeout=0.2)
            if drain in ("cancel", "cancel only", "cancel then sleep"):
                for task in pending:
                    task.cancel()
            if drain == "cancel":
                await asyncio.gather(*pending, return_exceptions=True)
            elif drain == "cancel then sleep":  # guesses how long a cancelled send takes to end
                await asyncio.sleep(0.1)

        return start, lifespan

    return make


def task_group(mailer: Mailer) -> tuple[Starter, Lifespan]:
    """A task group owned by the lifespan; each job logs its own failure; a deadline at shutdown."""
    group: dict[str, anyio.abc.TaskGroup] = {}

    async def logged(to: str) -> None:
        try:
            await mailer.send(to)
        except Exception:
            log.exception("newsletter to %s failed", to)

    def start(mailer: Mailer, to: str) -> None:
        group["jobs"].start_soon(logged, to)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as jobs:
            group["jobs"] = jobs
            yield
            jobs.cancel_scope.deadline = anyio.current_time() + 0.2

    return start, lifespan


def wrapper_coroutine(mailer: Mailer) -> tuple[Starter, Lifespan]:
    """The coroutine catches and logs its own failure; a list of tasks, cancelled at shutdown after a wait."""
    tasks: list[asyncio.Task[None]] = []

    async def send_logged(to: str) -> None:
        try:
            await mailer.send(to)
        except MailboxFull as exc:
            log.error("could not send the newsletter to %s: %s", to, exc)

    def start(mailer: Mailer, to: str) -> None:
        tasks.append(asyncio.create_task(send_logged(to)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        with anyio.move_on_after(0.2):
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)

    return start, lifespan


def fire_and_forget(mailer: Mailer) -> tuple[Starter, None]:
    def start(mailer: Mailer, to: str) -> None:
        asyncio.create_task(mailer.send(to))  # the handed-out mistake: nobody keeps the task

    return start, None


def the_guides_set(mailer: Mailer) -> tuple[Starter, None]:
    background: set[asyncio.Task[None]] = set()

    def start(mailer: Mailer, to: str) -> None:
        task = asyncio.create_task(mailer.send(to))
        background.add(task)
        task.add_done_callback(background.discard)

    return start, None


def test_3_1_accepts_tracked_sends() -> None:
    for answer in (tracked_set(), task_group, wrapper_coroutine):
        assert "each failure logged with its address" in passes("3.1", newsletter(answer))


def test_3_1_rejects_fire_and_forget() -> None:
    fails("3.1", newsletter(fire_and_forget), saying="2 failed sends reached only asyncio's 'Task exception was never retrieved'")


def test_3_1_rejects_the_guides_set_and_discard() -> None:
    fails("3.1", newsletter(the_guides_set), saying="reached only asyncio's 'Task exception was never retrieved'")


def test_3_1_rejects_a_log_line_without_the_address() -> None:
    fails(
        "3.1", newsletter(tracked_set(with_address=False)), saying="do not say which address failed: 'a newsletter send failed'"
    )


def test_3_1_rejects_no_drain_and_a_drain_that_does_not_cancel() -> None:
    fails("3.1", newsletter(tracked_set(drain="none")), saying="2 sends (eve@example.com, lee@example.com) were still running")
    fails("3.1", newsletter(tracked_set(drain="wait only")), saying="were still running")


def test_3_1_rejects_cancelling_without_waiting_for_the_cancelled_sends() -> None:
    """A cancelled send still has to clean up (as real I/O does): only a shutdown that waits for it sees it end."""
    failure = fails(
        "3.1",
        newsletter(tracked_set(drain="cancel only")),
        saying="the shutdown cancelled 2 sends (eve@example.com, lee@example.com) and finished before they had ended",
    )
    assert "asyncio.gather(*pending, return_exceptions=True)" in failure.hint
    fails(
        "3.1",
        newsletter(tracked_set(drain="cancel then sleep")),
        saying="the shutdown cancelled 2 sends (eve@example.com, lee@example.com) and finished before they had ended",
    )


def test_3_1_rejects_a_drain_without_a_deadline() -> None:
    fails("3.1", newsletter(tracked_set(drain="gather")), saying="shutdown did not finish within 2 s")


def test_3_1_rejects_a_callback_that_reads_a_cancelled_task() -> None:
    fails(
        "3.1", newsletter(tracked_set(safe_callback=False)), saying="the callback ended() raised CancelledError while the app ran"
    )


def test_3_1_rejects_silently_swallowed_failures() -> None:
    def swallowing(mailer: Mailer) -> tuple[Starter, Lifespan]:
        tasks: list[asyncio.Task[None]] = []

        async def send_quietly(to: str) -> None:
            try:
                await mailer.send(to)
            except MailboxFull:
                pass  # "handled"

        def start_quietly(mailer: Mailer, to: str) -> None:
            tasks.append(asyncio.create_task(send_quietly(to)))

        @asynccontextmanager
        async def lifespan_quietly(app: FastAPI) -> AsyncIterator[None]:
            yield
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        return start_quietly, lifespan_quietly

    fails("3.1", newsletter(swallowing), saying="no log line says so")


def test_3_1_rejects_sending_before_answering() -> None:
    def awaits_inline(mailer: Mailer) -> FastAPI:
        app = FastAPI()

        @app.post("/newsletter")
        async def send_newsletter(recipients: list[str]) -> dict[str, int]:
            for to in recipients:
                try:
                    await mailer.send(to)
                except MailboxFull:
                    log.exception("newsletter to %s failed", to)
            return {"queued": len(recipients)}

        return app

    fails("3.1", awaits_inline, saying="did not answer while the e-mails were waiting")


# --- 3.2 -------------------------------------------------------------------------------------------

TaskFactory = Callable[[ReportRenderer], Callable[[int], Any]]


def reports(make_task: TaskFactory) -> Callable[[ReportRenderer], FastAPI]:
    def build(renderer: ReportRenderer) -> FastAPI:
        app = FastAPI()
        task = make_task(renderer)

        @app.post("/reports/{n}")
        async def order_report(n: int, background_tasks: BackgroundTasks) -> dict[str, int]:
            background_tasks.add_task(task, n)
            return {"queued": n}

        return app

    return build


def def_task(renderer: ReportRenderer) -> Callable[[int], None]:
    def make_report(n: int) -> None:
        renderer.publish(n, renderer.render(n))

    return make_report


def anyio_offload(renderer: ReportRenderer) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def make_report(n: int) -> None:
        renderer.publish(n, await anyio.to_thread.run_sync(renderer.render, n))

    return make_report


def starlette_offload(renderer: ReportRenderer) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def make_report(n: int) -> None:
        renderer.publish(n, await run_in_threadpool(renderer.render, n))

    return make_report


def asyncio_offload(renderer: ReportRenderer) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def make_report(n: int) -> None:
        renderer.publish(n, await asyncio.to_thread(renderer.render, n))

    return make_report


def awaitable_twin(renderer: ReportRenderer) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def make_report(n: int) -> None:
        renderer.publish(n, await renderer.arender(n))

    return make_report


def as_handed_out(renderer: ReportRenderer) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def make_report(n: int) -> None:
        renderer.publish(n, renderer.render(n))

    return make_report


def yields_first_then_blocks(renderer: ReportRenderer) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def make_report(n: int) -> None:
        await asyncio.sleep(0)
        renderer.publish(n, renderer.render(n))

    return make_report


def calls_before_offloading(renderer: ReportRenderer) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def make_report(n: int) -> None:
        renderer.publish(n, await anyio.to_thread.run_sync(renderer.render(n)))  # type: ignore[arg-type]

    return make_report


def one_at_a_time(renderer: ReportRenderer) -> Callable[[int], None]:
    lock = threading.Lock()

    def make_report(n: int) -> None:
        with lock:
            renderer.publish(n, renderer.render(n))

    return make_report


def forgets_to_publish(renderer: ReportRenderer) -> Callable[[int], None]:
    def make_report(n: int) -> None:
        renderer.render(n)

    return make_report


def test_3_2_accepts_every_non_blocking_task() -> None:
    for answer in (def_task, anyio_offload, starlette_offload, asyncio_offload, awaitable_twin):
        assert "none on the event-loop thread" in passes("3.2", reports(answer))


def test_3_2_rejects_the_handed_out_task() -> None:
    fails("3.2", reports(as_handed_out), saying="6 of 6 renders ran on the event-loop thread: at most 1 report rendered at once")


def test_3_2_rejects_an_await_before_the_blocking_call() -> None:
    fails("3.2", reports(yields_first_then_blocks), saying="0 of 6 health probes were answered while a report was rendering")


def test_3_2_rejects_rendering_in_a_def_handler() -> None:
    def render_in_handler(renderer: ReportRenderer) -> FastAPI:
        app = FastAPI()

        @app.post("/reports/{n}")
        def order_report(n: int, background_tasks: BackgroundTasks) -> dict[str, int]:
            pdf = renderer.render(n)  # in a worker thread, but before the response
            background_tasks.add_task(renderer.publish, n, pdf)
            return {"queued": n}

        return app

    fails("3.2", render_in_handler, saying="were rendered before the response was sent")


def test_3_2_rejects_calling_before_offloading() -> None:
    failure = fails("3.2", reports(calls_before_offloading), saying="`run_sync()` was given the result of `renderer.render(n)`")
    assert "`run_sync(renderer.render, n)`" in failure.hint


def test_3_2_rejects_one_at_a_time_and_a_lost_result() -> None:
    fails("3.2", reports(one_at_a_time), saying="only 1 of 6 reports were rendering at once")
    fails("3.2", reports(forgets_to_publish), saying="0 of 6 reports were published")


# Root cause 5: the text says "logged at ERROR"; the check enforces that level.


def test_3_1_accepts_a_failure_logged_above_error() -> None:
    passes("3.1", newsletter(tracked_set(level=logging.CRITICAL)))


def test_3_1_rejects_a_failure_logged_as_a_warning() -> None:
    fails("3.1", newsletter(tracked_set(level=logging.WARNING)), saying="logged with their address, but at WARNING, not ERROR")


def test_3_1_rejects_the_handed_out_set_with_the_guides_sleep() -> None:
    """As handed out: the guide's set, and its sleep(0.1) at shutdown."""

    def the_guides_set_and_sleep(mailer: Mailer) -> tuple[Starter, Lifespan]:
        start, _ = the_guides_set(mailer)

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            yield
            await asyncio.sleep(0.1)  # the guide: "allow pending tasks to complete gracefully"

        return start, lifespan

    fails(
        "3.1",
        newsletter(the_guides_set_and_sleep),
        saying="2 failed sends reached only asyncio's 'Task exception was never retrieved'",
    )


# --- 3.3 -------------------------------------------------------------------------------------------

hooks_log = logging.getLogger("webhooks")


def webhooks(deliver_with: str, *, drain: bool = True) -> Callable[[Partners], FastAPI]:
    """The handed-out webhook app, its ``deliver`` written one way or another (``deliver_with``)."""

    def build(partners: Partners) -> FastAPI:
        deliveries: set[asyncio.Task[None]] = set()

        def ended(task: asyncio.Task[None]) -> None:
            deliveries.discard(task)
            if task.cancelled():
                hooks_log.warning("%s was cancelled", task.get_name())
            elif task.exception() is not None:
                hooks_log.error("%s failed", task.get_name(), exc_info=task.exception())

        async def deliver(url: str, event: dict[str, Any]) -> None:
            for attempt in range(1, 4 if deliver_with != "one attempt" else 2):
                try:
                    await partners.post(url, event)
                    return
                except asyncio.CancelledError:
                    if deliver_with == "reraise first":
                        raise
                    if deliver_with == "swallow and return":
                        hooks_log.warning("delivery to %s stopped at shutdown", url)
                        return
                    if deliver_with in ("BaseException", "bare except"):
                        hooks_log.warning("delivery to %s failed (attempt %d): cancelled", url, attempt)
                        await asyncio.sleep(0.05 * attempt)
                        continue
                    raise
                except Exception as exc:  # noqa: BLE001 - a partner can fail in any way
                    hooks_log.warning("delivery to %s failed (attempt %d): %r", url, attempt, exc)
                    await asyncio.sleep(0.05 * attempt)
            hooks_log.error("gave up on %s", url)

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            yield
            if deliveries and drain:
                _, late = await asyncio.wait(deliveries, timeout=0.2)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)

        app = FastAPI(lifespan=lifespan)

        @app.post("/orders/{order_id}/paid", status_code=202)
        async def order_paid(order_id: int) -> dict[str, int]:
            for url in partners.urls:
                task = asyncio.create_task(deliver(url, {"order": order_id}), name=f"webhook to {url}")
                deliveries.add(task)
                task.add_done_callback(ended)
            return {"notified": len(partners.urls)}

        return app

    return build


def as_handed_out_3_3(partners: Partners) -> FastAPI:
    """The handed-out code itself: `except BaseException` around each attempt."""
    deliveries: set[asyncio.Task[None]] = set()

    async def deliver(url: str, event: dict[str, Any]) -> None:
        for attempt in (1, 2, 3):
            try:
                await partners.post(url, event)
                return
            except BaseException as exc:  # noqa: BLE001 - the handed-out fault: it catches the cancel too
                hooks_log.warning("delivery to %s failed (attempt %d): %r", url, attempt, exc)
                await asyncio.sleep(0.05 * attempt)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if deliveries:
            _, late = await asyncio.wait(deliveries, timeout=0.2)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders/{order_id}/paid", status_code=202)
    async def order_paid(order_id: int) -> dict[str, int]:
        for url in partners.urls:
            task = asyncio.create_task(deliver(url, {"order": order_id}))
            deliveries.add(task)
            task.add_done_callback(deliveries.discard)
        return {"notified": len(partners.urls)}

    return app


def webhooks_in_a_task_group(partners: Partners) -> FastAPI:
    """Another right answer: a task group owned by the lifespan, with a deadline at shutdown."""

    async def deliver(url: str, event: dict[str, Any]) -> None:
        for attempt in (1, 2, 3):
            try:
                await partners.post(url, event)
                return
            except Exception as exc:  # noqa: BLE001 - a partner can fail in any way
                hooks_log.warning("delivery to %s failed (attempt %d): %r", url, attempt, exc)
                await anyio.sleep(0.05 * attempt)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with anyio.create_task_group() as deliveries:
            yield {"deliveries": deliveries}
            deliveries.cancel_scope.deadline = anyio.current_time() + 0.2

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders/{order_id}/paid", status_code=202)
    async def order_paid(order_id: int, request: Request) -> dict[str, int]:
        for url in partners.urls:
            request.state.deliveries.start_soon(deliver, url, {"order": order_id})
        return {"notified": len(partners.urls)}

    return app


def test_3_3_accepts_a_cancel_that_goes_through() -> None:
    for answer in (webhooks("Exception"), webhooks("reraise first"), webhooks_in_a_task_group):
        assert "the delivery to hung.example was cancelled once" in passes("3.3", answer)


def test_3_3_rejects_a_retry_that_catches_the_cancel_with_the_symptom_only() -> None:
    for answer in (as_handed_out_3_3, webhooks("BaseException"), webhooks("bare except")):
        failure = fails("3.3", answer, saying="the app's shutdown was still running 2 s after it began")
        assert not any(word in failure.observed for word in ("CancelledError", "BaseException", "except"))


def test_3_3_rejects_a_cancel_swallowed_and_returned() -> None:
    fails("3.3", webhooks("swallow and return"), saying="its task ended as if it had finished")


def test_3_3_rejects_no_retries_and_no_drain() -> None:
    fails("3.3", webhooks("one attempt"), saying="flaky.example failed once (503 Service Unavailable) and never got the event")
    fails("3.3", webhooks("Exception", drain=False), saying="the delivery to hung.example was still running")
