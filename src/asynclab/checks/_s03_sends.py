"""Exercise 3.1's judges: what the callbacks, the logs and the shutdown did with each background send."""

from __future__ import annotations

import logging
from typing import Any

from asynclab.bench.mailbox import MailboxFull
from asynclab.course.checking import fail
from asynclab.standins.s03_background import Mailer

FULL = {"bob@example.com", "kim@example.com"}  # the send raises MailboxFull
STUCK = {"eve@example.com", "lee@example.com"}  # the send hangs until cancelled


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _names_error(record: logging.LogRecord) -> bool:
    if record.exc_info and isinstance(record.exc_info[1], MailboxFull):
        return True
    return "mailbox full" in record.getMessage().lower()


def judge_callbacks(callback_errors: list[dict[str, Any]]) -> None:
    """Did a done-callback raise while the app ran?"""
    if callback_errors:
        context = callback_errors[0]
        error = context.get("exception")
        callback = getattr(context.get("handle"), "_callback", None)
        where = f"the callback {getattr(callback, '__name__', 'of a task')}()" if callback is not None else "a callback"
        fail(
            f"{where} raised {type(error).__name__ if error is not None else 'an error'} while the app ran "
            f"(asyncio: {str(context.get('message', '')).split(' at ')[0][:60]!r}).",
            "In the done-callback, check task.cancelled() before task.exception(): on a cancelled task it raises CancelledError.",
        )


def judge_failure_logs(app_records: list[logging.LogRecord], never_retrieved: list[dict[str, Any]]) -> None:
    """Was each failed send logged by the app, at ERROR, with its address?"""
    unlogged = [to for to in sorted(FULL) if not any(to in r.getMessage() and _names_error(r) for r in app_records)]
    if unlogged and never_retrieved:
        fail(
            f"{plural(len(never_retrieved), 'failed send')} reached only asyncio's 'Task exception was never retrieved' "
            f"(no address; it comes when the task is freed); your app logged nothing for {', '.join(unlogged)}.",
            1,
        )
    if unlogged:
        anonymous = [r.getMessage() for r in app_records if _names_error(r)]
        if anonymous:
            fail(
                f"the failures were logged, but the log lines do not say which address failed: {anonymous[0]!r}.",
                "Put the address in the log message, e.g. name each task f'newsletter to {to}' and log task.get_name().",
            )
        fail(
            (
                f"the sends to {', '.join(unlogged)} failed with MailboxFull, and no log line says so (with the address and the "
                "error)."
            ),
            "Log each failure at ERROR, with exc_info=the exception and the address in the message.",
        )
    below_error = [
        r for to in sorted(FULL) for r in app_records if to in r.getMessage() and _names_error(r) and r.levelno < logging.ERROR
    ]
    at_error = [
        to
        for to in sorted(FULL)
        if any(to in r.getMessage() and _names_error(r) and r.levelno >= logging.ERROR for r in app_records)
    ]
    if len(at_error) < len(FULL):
        fail(
            f"the failed sends were logged with their address, but at {below_error[0].levelname}, not ERROR: "
            f"{below_error[0].getMessage()[:80]!r}",
            "A send that failed is an error: log it with log.error(..., exc_info=exc) (or log.exception).",
        )


def judge_endings(
    mailer: Mailer,
    everyone: list[str],
    at_stop: dict[str, str],
    destroyed: list[dict[str, Any]],
    never_retrieved: list[dict[str, Any]],
) -> None:
    """Had every send ended when the app's shutdown completed, each as it should, with no task lost on the way?"""
    still_running = [to for to in everyone if at_stop.get(to) == "sending"]
    if still_running:
        fail(
            f"after the app shut down, {plural(len(still_running), 'send')} ({', '.join(still_running)}) were still running: "
            "nothing ended them at shutdown.",
            2,
        )
    cancelling = [to for to in everyone if at_stop.get(to) == "cancelling"]
    if cancelling:
        fail(
            f"the shutdown cancelled {plural(len(cancelling), 'send')} ({', '.join(cancelling)}) and finished before they had "
            "ended: a cancelled send still closes its connection (a few awaits, as real I/O does), and the shutdown did not "
            "wait until it had.",
            "After cancelling, wait for the tasks themselves: `await asyncio.gather(*pending, return_exceptions=True)`. "
            "A fixed sleep only guesses how long they take.",
        )
    if destroyed:
        fail(f"{plural(len(destroyed), 'task')} were destroyed while still pending: nothing kept a reference to them.", 1)
    if never_retrieved:
        fail(f"asyncio still reported {plural(len(never_retrieved), 'exception')} as 'never retrieved'.", 1)
    for to in everyone:
        expected = "failed" if to in FULL else "cancelled" if to in STUCK else "delivered"
        if mailer.outcome.get(to) != expected:
            fail(
                f"the send to {to} ended as {mailer.outcome.get(to)!r}, expected {expected!r}",
                "Do not change what each send does.",
            )
