"""The thread a check runs on: its own event loop, a time limit, and a guard on exits and threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread
import contextlib
import ctypes
import gc
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from asynclab.course import unawaited


class _CheckTimedOut(BaseException):
    """Injected into a check thread that ran past its time limit."""


class LearnerExit(BaseException):
    """Raised instead of ending the process when the learner's code calls ``os._exit`` during a check."""

    def __init__(self, status: int) -> None:
        super().__init__(f"os._exit({status})")
        self.code = status


class _DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """The default executor of a check's loop: each job on its own daemon thread, never waited for.

    ``loop.run_in_executor(None, ...)`` and ``asyncio.to_thread`` use it. A job that never ends
    (the learner's endless thread) cannot then keep the check, the kernel or a test run alive.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=work, name="asynclab-check-executor", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


def check_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for one check, whose default executor never waits for its threads."""
    loop = asyncio.new_event_loop()
    loop.set_default_executor(_DaemonExecutor())
    return loop


class _Guard:
    """While a check runs: ``os._exit`` raises :class:`LearnerExit`, and every new thread is a daemon.

    The learner's code runs in the kernel's (or the test run's) process: an exit must not end it,
    and a thread that never ends must not keep it alive at exit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._real_exit = os._exit
        self._real_start = threading.Thread.start
        self.started: list[threading.Thread] = []

    def _start_as_daemon(self, thread: threading.Thread) -> None:
        """``thread.start()`` while a check runs: a daemon thread, whose coroutines say where they were made."""
        if not thread._started.is_set() and not thread.daemon:  # type: ignore[attr-defined]
            thread.daemon = True
        work = thread.run

        def tracked() -> None:  # the learner's coroutines made on this thread say where
            unawaited.track_origins()
            work()

        thread.run = tracked  # type: ignore[method-assign]
        with self._lock:
            self.started.append(thread)
        self._real_start(thread)

    @contextlib.contextmanager
    def active(self) -> Iterator[list[threading.Thread]]:
        guard = self
        with self._lock:
            if self._active == 0:

                def exit_guarded(status: int) -> NoReturn:
                    raise LearnerExit(status)

                def start_as_daemon(self: threading.Thread) -> None:  # replaces Thread.start: self is the thread
                    guard._start_as_daemon(self)

                os._exit = exit_guarded
                threading.Thread.start = start_as_daemon  # type: ignore[method-assign]
            self._active += 1
        try:
            yield self.started
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    os._exit = self._real_exit
                    threading.Thread.start = self._real_start  # type: ignore[method-assign]
                    leftovers, self.started = [t for t in self.started if t.is_alive()], []
                    # A thread pool joins its threads when the process exits, daemons included:
                    # forget the learner's threads that are still running, so the exit does not wait.
                    for thread in leftovers:
                        concurrent.futures.thread._threads_queues.pop(thread, None)  # type: ignore[attr-defined]


_GUARD = _Guard()


def run_in_thread(func: Callable[[], str], timeout: float) -> tuple[str | None, BaseException | None, bool]:
    """Run ``func`` in its own thread (with its own event loop), waiting at most ``timeout`` seconds.

    A learner's code may block the event loop for ever; an async time-out cannot stop that, so the
    check runs on a thread the kernel can walk away from.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        unawaited.track_origins()
        try:
            outcome["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - everything is reported to the learner
            outcome["error"] = exc
        finally:
            # Free what the learner's app left behind (sessions, greenlets, loops) on this thread,
            # while its event loop's thread still exists, not later on a thread it never knew.
            gc.collect()

    with _GUARD.active():
        thread = threading.Thread(target=target, name="asynclab-check", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            # Ask the thread to stop; this ends a pure-Python endless loop, not a blocking C call.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident or 0), ctypes.py_object(_CheckTimedOut))
            thread.join(0.5)
            return None, None, True
    return outcome.get("value"), outcome.get("error"), False
