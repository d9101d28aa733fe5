"""Cancellation that takes time, as real I/O's does, and a watch that sees whether a shutdown waited for it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

QUICK_TURNS = 3  # the cleanup of a call nobody holds: a few turns of the loop


class Cleanups:
    """The cleanups of a stand-in's cancelled calls: quick, unless held (:meth:`hold`): then each waits to be released.

    A real client does not end the instant it is cancelled: it closes its connection, sends a reset,
    rolls a transaction back, each an ``await``. So a shutdown that cancels its background tasks has
    not ended them until it has waited for them (``await asyncio.gather(*cancelled)``, a task group).
    A stand-in's call runs :meth:`Cleanups.run` when it is cancelled: a few turns of the loop by
    default, shielded from further cancellation as a real cleanup is.
    """

    def __init__(self) -> None:
        self.held = False
        self.running = 0  # cleanups in progress now
        self.on_begin: Callable[[], None] | None = None  # told when a held cleanup begins (by ShutdownWatch)
        self._release: anyio.Event | None = None  # made on the loop that waits on it

    async def run(self) -> None:
        """Clean up after a cancelled call, shielded from further cancellation (an outright ``task.cancel()`` still ends it)."""
        with anyio.CancelScope(shield=True):
            self.running += 1
            try:
                if self.held:
                    if self._release is None:
                        self._release = anyio.Event()
                    if self.on_begin is not None:
                        self.on_begin()
                    await self._release.wait()
                else:
                    for _ in range(QUICK_TURNS):
                        await anyio.lowlevel.checkpoint()
            finally:
                self.running -= 1

    def hold(self) -> None:
        """From now on, each cleanup waits until it is released."""
        self.held = True

    def release_waiting(self) -> None:
        """Let the cleanups in progress end; cleanups that begin later wait for the next release."""
        release, self._release = self._release, None
        if release is not None:
            release.set()

    def release_all(self) -> None:
        """Let every cleanup end, now and from now on."""
        self.held = False
        self.release_waiting()


class _Timer:
    """A timer a task of the app set (``asyncio.sleep``, a timeout, a cancel scope's deadline).

    It is fired, cancelled, or still to come.
    """

    def __init__(self, order: int) -> None:
        self.order = order  # when it was set, among the timers and the cleanups' beginnings
        self.fired = False
        self.handle: asyncio.TimerHandle | None = None

    @property
    def live(self) -> bool:
        return not self.fired and self.handle is not None and not self.handle.cancelled()


class ShutdownWatch:
    """Wraps an app; holds the cleanups during its lifespan's shutdown, and lets them end only while the shutdown waits for them.

    "Waits for them" means, observed at a turn of the loop where cleanups are in progress: the
    lifespan's task is suspended on a future that is not done, and neither it nor a task it awaits
    has a timer still to fire that it set before those cleanups began. A fixed ``asyncio.sleep``
    after the cancel is such a timer; ``gather`` of the cancelled tasks, ``await task``, a task
    group's end, or a loop that sleeps a little and looks again whether they are done, is not.
    ``on_stopped()`` runs the moment the app reports ``lifespan.shutdown.complete``; every cleanup
    is released once the lifespan has ended.

    The timers are seen by wrapping the loop's ``call_at`` (which ``call_later``, ``asyncio.sleep``,
    ``asyncio.timeout`` and anyio's deadlines all use) while the lifespan runs.

    During an app's shutdown, a check holds the cleanups instead (:class:`ShutdownWatch`), so that
    no timing decides its verdict: a held cleanup ends only when the watch lets it, and the watch
    lets the cleanups in progress end only while the app's shutdown waits on something that is not a
    timer of its own (the cancelled tasks, a task group). A shutdown that cancels and returns, or
    cancels and sleeps a fixed time, finishes while they are still cleaning up, however long it sleeps.
    """

    def __init__(self, app: ASGIApp, cleanups: Cleanups, on_stopped: Callable[[], None] | None = None) -> None:
        self.app, self.cleanups, self.on_stopped = app, cleanups, on_stopped
        self.stopped = False
        self.released = 0  # how many times cleanups in progress were let go
        self._shutting_down = False
        self._shutdown_began: asyncio.Event | None = None
        self._order = itertools.count()
        self._cleanups_began: int | None = None  # when the first cleanup still held began
        self._timers: weakref.WeakKeyDictionary[asyncio.Task[Any], list[_Timer]] = weakref.WeakKeyDictionary()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        lifespan = asyncio.current_task()
        assert lifespan is not None
        self._shutdown_began = asyncio.Event()
        releaser = asyncio.ensure_future(self._release_while_waited_for(lifespan))
        had_own = "call_at" in vars(loop)
        previous = loop.call_at

        def call_at(when: float, callback: Callable[..., object], *args: object, context: Any = None) -> asyncio.TimerHandle:
            task = asyncio.current_task()
            if task is None or task is releaser or not self._shutting_down:
                return previous(when, callback, *args, context=context)
            timer = _Timer(next(self._order))

            def fire(*args: object) -> None:
                timer.fired = True
                callback(*args)

            timer.handle = previous(when, fire, *args, context=context)
            self._timers.setdefault(task, []).append(timer)
            return timer.handle

        async def noting_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self._shutting_down = True
                self.cleanups.hold()
                assert self._shutdown_began is not None
                self._shutdown_began.set()
            return message

        async def noting_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.stopped = True
                if self.on_stopped is not None:
                    self.on_stopped()
            await send(message)

        def cleanup_began() -> None:
            if self._cleanups_began is None:
                self._cleanups_began = next(self._order)

        loop.call_at = call_at  # type: ignore[method-assign]
        self.cleanups.on_begin = cleanup_began
        try:
            await self.app(scope, noting_receive, noting_send)
        finally:
            if had_own:
                loop.call_at = previous  # type: ignore[method-assign]
            else:
                del loop.call_at
            releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({releaser})
            self.cleanups.on_begin = None
            self.cleanups.release_all()

    def _waits_without_a_timer(self, task: asyncio.Task[Any], depth: int = 0) -> bool:
        """Is ``task`` suspended on an unfinished future, with no timer to end it?

        Only timers set before the cleanups began count, by ``task`` or by a task it awaits.
        """
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is None or waiter.done():
            return False  # running, or about to run
        began = self._cleanups_began if self._cleanups_began is not None else -1
        if any(timer.live and timer.order < began for timer in self._timers.get(task, [])):
            return False  # a wait set before the cleanups began: a guess at how long they take
        if isinstance(waiter, asyncio.Task) and depth < 8:
            return self._waits_without_a_timer(waiter, depth + 1)
        return True

    async def _release_while_waited_for(self, lifespan: asyncio.Task[Any]) -> None:
        assert self._shutdown_began is not None
        await self._shutdown_began.wait()
        while not lifespan.done():  # a look every millisecond: when it looks decides nothing, what it sees does
            if self.cleanups.running and self._waits_without_a_timer(lifespan):
                self._cleanups_began = None
                self.cleanups.release_waiting()
                self.released += 1
            await asyncio.sleep(0.001)
