"""Send many requests at once and report what happened, measured from both sides."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from asynclab.bench.gauges import Burst, InFlight, Span, current_burst, request_index, thread_pool

#: The status :func:`load` records for a request that had no answer when the client gave up.
NO_ANSWER = 0


@dataclass(frozen=True)
class RequestResult:
    """One request as the client saw it: issued at ``start``, answered at ``end`` (seconds since the burst began)."""

    index: int
    status: int
    start: float
    end: float
    body: Any


@dataclass(frozen=True)
class LoadReport:
    """What a burst of concurrent requests did.

    ``max_in_flight`` is the largest number of handlers that were inside the measured block at
    once, counted inside the app. It does not depend on the clock, so it is the number to trust.
    ``wall`` and the spans are times in seconds: compare them as ratios, never as absolutes.
    """

    results: list[RequestResult]
    wall: float
    max_in_flight: int | None = None
    handler_spans: list[Span] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(r.status for r in self.results)

    @property
    def ok(self) -> bool:
        return all(200 <= r.status < 300 for r in self.results)

    def summary(self) -> str:
        # "10 × HTTP 200", so the count never reads as milliseconds next to a 0.2 s wait
        codes = ", ".join(
            f"{count} × no answer" if code == NO_ANSWER else f"{count} × HTTP {code}"
            for code, count in sorted(self.statuses.items())
        )
        in_flight = "" if self.max_in_flight is None else f" · at most {self.max_in_flight} in flight"
        return f"{self.n} requests ({codes}){in_flight} · {self.wall:.2f} s"

    def __str__(self) -> str:
        return self.summary()


def response_body(response: httpx.Response) -> Any:
    """The response's JSON, or its text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text


async def load(
    client: httpx.AsyncClient,
    path: str | Callable[[int], str],
    n: int = 10,
    *,
    method: str | Callable[[int], str] = "GET",
    in_flight: InFlight | None = None,
    headers: dict[str, str] | None | Callable[[int], dict[str, str] | None] = None,
    json: Any = None,
    give_up_after: float | None = None,
    give_up_when: Callable[[], bool] | None = None,
) -> LoadReport:
    """Send ``n`` requests at the same time and wait for all of them.

    ``path``, ``method``, ``headers`` and ``json`` may be functions of the request's index (0 to n-1). Pass the app's
    :class:`InFlight` gauge as ``in_flight`` to get ``max_in_flight``; it is reset before the burst. Each request carries the
    burst's size, for :meth:`InFlight.until_all_in`. With ``give_up_after``, the client stops waiting that many seconds after
    the burst began: an unanswered request is recorded with status ``NO_ANSWER`` (0) and body ``None``. With ``give_up_when``,
    the client stops waiting as soon as that function returns True (it is asked every few milliseconds), e.g.
    ``lambda: gauge.now == 10``: a clock-free way to leave once every handler is inside. In-process, the app runs in the
    request's own task, so its handler is cancelled too; a real server keeps running it.
    """
    if in_flight is not None:
        in_flight.reset()
    burst = Burst(n, thread_pool().total)  # what InFlight.until_all_in waits for
    results: list[RequestResult] = []
    waits: list[anyio.CancelScope] = []
    gave_up = anyio.Event()
    t0 = time.perf_counter()

    async def one(i: int, sent: float) -> None:
        request_index.set(i)
        current_burst.set(burst)
        url = path(i) if callable(path) else path
        hdrs = headers(i) if callable(headers) else headers
        verb = method(i) if callable(method) else method
        body = json(i) if callable(json) else json
        with anyio.move_on_after(math.inf if give_up_after is None else give_up_after - sent) as wait:
            waits.append(wait)
            if gave_up.is_set():
                wait.cancel()
            response = await client.request(verb, url, headers=hdrs, json=body)
            results.append(RequestResult(i, response.status_code, sent, time.perf_counter() - t0, response_body(response)))
            return
        results.append(RequestResult(i, NO_ANSWER, sent, time.perf_counter() - t0, None))

    try:
        async with anyio.create_task_group() as watching:
            if give_up_when is not None:
                watching.start_soon(_give_up, give_up_when, gave_up, waits)
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    # A request counts from the moment it is issued: if the loop is blocked, its task
                    # waits to run, and that wait is part of what the user would feel.
                    tg.start_soon(one, i, time.perf_counter() - t0)
            watching.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Raise the first error as itself: a notebook does not report an ExceptionGroup as a failed cell.
        raise first_error(group) from None
    return _report(results, t0, in_flight)


async def _give_up(when: Callable[[], bool], gave_up: anyio.Event, waits: list[anyio.CancelScope]) -> None:
    """Stop waiting for every request as soon as ``when()`` is true (asked every few milliseconds)."""
    while not when():
        await anyio.sleep(0.005)
    gave_up.set()
    for wait in waits:
        wait.cancel()


def _report(results: list[RequestResult], t0: float, in_flight: InFlight | None) -> LoadReport:
    """The burst's report, its times counted from ``t0``."""
    wall = time.perf_counter() - t0
    results.sort(key=lambda r: r.index)
    spans: list[Span] = []
    peak: int | None = None
    if in_flight is not None:
        peak = in_flight.peak
        spans = [Span(s.request, s.start - t0, s.end - t0) for s in in_flight.spans]
    return LoadReport(results=results, wall=wall, max_in_flight=peak, handler_spans=spans)


def first_error(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def ratio(slow: float, fast: float) -> str:
    """``slow / fast`` as a rounded, human figure (e.g. ``'≈10×'``), for showing, not comparing."""
    if fast <= 0:
        return "∞"
    value = slow / fast
    return f"≈{value:.0f}×" if value >= 3 else f"≈{value:.1f}×"
