"""Lesson 3's timeline: when each request waited for its answer and when its background task ran, on one clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import httpx
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from asynclab.bench.calls import on_event_loop_thread
from asynclab.bench.gauges import InFlight

WAITING = "#d9d9d9"
TASK = "#ff7f0e"


@dataclass
class Bar:
    """One stretch of time, in seconds since the burst began; ``end`` is None while it lasts."""

    start: float
    end: float | None = None


class AfterResponse:
    """When each request waited for its response, and when its background task ran, on one clock.

    Inside a background task, wrap the work in ``with record.task(i):``. ``await record.burst(...)``
    sends the requests at once; ``await record.tasks_done(n)`` waits until ``n`` tasks have ended.
    ``await record.client_has_response(i, patience)`` lets a task wait (at most ``patience``
    seconds) until the client holds request ``i``'s response: it returns whether it does.
    """

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()
        self.requests: dict[int, Bar] = {}
        self.statuses: dict[int, int] = {}
        self.tasks: dict[int, Bar] = {}
        self.on_loop: dict[int, bool] = {}
        self.running = InFlight("background task")
        self._answered: dict[int, anyio.Event] = {}

    def _clock(self) -> float:
        return time.perf_counter() - self.t0

    @contextmanager
    def task(self, i: int) -> Iterator[None]:
        """Count and time the background task of request ``i`` (from ``def`` or ``async def`` code)."""
        with self._lock:
            self.tasks[i] = Bar(self._clock())
            self.on_loop[i] = on_event_loop_thread()
        try:
            with self.running.inside():
                yield
        finally:
            with self._lock:
                self.tasks[i].end = self._clock()

    @property
    def peak(self) -> int:
        """The most background tasks that ran at once."""
        return self.running.peak

    def _event(self, i: int) -> anyio.Event:
        if i not in self._answered:
            self._answered[i] = anyio.Event()
        return self._answered[i]

    async def client_has_response(self, i: int, patience: float) -> bool:
        """Wait at most ``patience`` seconds for the client to hold request ``i``'s response."""
        with anyio.move_on_after(patience):
            await self._event(i).wait()
        return self._event(i).is_set()

    async def burst(self, client: httpx.AsyncClient, path: Callable[[int], str], n: int, method: str = "POST") -> None:
        """Send ``n`` requests at the same time; note when each was sent and when its response came."""
        self.t0 = time.perf_counter()

        async def one(i: int) -> None:
            self.requests[i] = Bar(self._clock())
            response = await client.request(method, path(i))
            self.requests[i].end = self._clock()
            self.statuses[i] = response.status_code
            self._event(i).set()

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)

    async def tasks_done(self, n: int, timeout: float = 3.0) -> None:
        """Wait until ``n`` background tasks have started and ended (fail after ``timeout`` seconds)."""
        with anyio.fail_after(timeout):
            while sum(bar.end is not None for bar in list(self.tasks.values())) < n:
                await anyio.sleep(0.005)

    @property
    def last_response(self) -> float:
        """Seconds from the burst's start until the last response arrived."""
        return max((bar.end or 0.0 for bar in self.requests.values()), default=0.0)

    @property
    def last_task_end(self) -> float:
        """Seconds from the burst's start until the last background task ended."""
        return max((bar.end or 0.0 for bar in self.tasks.values()), default=0.0)

    def responded_before_task_ended(self) -> int:
        """How many requests had their response while their task was still running (or not yet started)."""
        return sum(
            1
            for i, bar in self.requests.items()
            if bar.end is not None and i in self.tasks and (self.tasks[i].end or float("inf")) > bar.end
        )

    def summary(self) -> str:
        ms = 1000
        return (
            f"{len(self.requests)} responses, the last after {self.last_response * ms:.0f} ms · "
            f"tasks done after {self.last_task_end * ms:.0f} ms · at most {self.peak} task(s) at once"
        )

    def __str__(self) -> str:
        return self.summary()


def after_response(*panels: tuple[str, AfterResponse]) -> Figure:
    """One row per request: grey while the client waits for its response, orange while its background task runs."""
    rows = max(len(r.requests) for _, r in panels)
    right = max(max(r.last_response, r.last_task_end) for _, r in panels) * 1.03
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1, 0.22 * rows + 1.7), squeeze=False)
    for ax, (title, record) in zip(axes[0], panels, strict=True):
        for row, i in enumerate(sorted(record.requests)):
            req = record.requests[i]
            ax.barh(row, (req.end or req.start) - req.start, left=req.start, color=WAITING, height=0.75)
            task = record.tasks.get(i)
            if task is not None:
                ax.barh(row, (task.end or task.start) - task.start, left=task.start, color=TASK, height=0.35)
        ax.invert_yaxis()
        ax.set_xlim(0, right)  # one time axis for every panel
        ax.set_yticks([])
        ax.set_ylabel(f"{len(record.requests)} requests")
        ax.set_xlabel("seconds since the requests were sent")
        ax.set_title(f"{title}\nat most {record.peak} task(s) at once", fontsize=9)
    fig.legend(
        handles=[
            Patch(color=WAITING, label="client waiting for the response"),
            Patch(color=TASK, label="background task running"),
        ],
        loc="lower center",
        ncols=2,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    plt.close(fig)
    return fig
