"""Requests to a multi-worker server that know which worker answered: on fresh connections, or to a worker chosen."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from asynclab.bench.load import response_body
from asynclab.bench.workers import PID_HEADER, Answer, WorkersFailed

if TYPE_CHECKING:
    from asynclab.bench.workers import Workers


class NotEveryWorkerAnswered(WorkersFailed):
    """Requests on fresh connections reached fewer workers than expected, within the bounds given."""


def pid_of(response: httpx.Response, body: Any) -> int:
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
    async with fresh_client() as client:

        async def one(i: int) -> None:
            response = await client.request(method, server.url + (path(i) if callable(path) else path))
            body = response_body(response)
            answers.append(Answer(i, pid_of(response, body), response.status_code, body))

        while len(answers) < at_least or len({a.pid for a in answers}) < expected:
            if len(answers) >= at_most or time.monotonic() > deadline:
                seen = Counter(a.pid for a in answers)
                raise NotEveryWorkerAnswered(
                    f"after {len(answers)} requests on fresh connections, only {len(seen)} of {expected} workers "
                    f"had answered ({dict(seen)})"
                )
            answered = {a.pid for a in answers}
            if len(answers) >= max(at_least, patience) and answered and set(server.worker_pids) - answered:
                with paused(answered):  # every worker is idle here: no request of ours is in flight
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
    async with fresh_client() as client:
        for i, (pid, path) in enumerate(plan):
            if pid not in pids:
                raise WorkersFailed(f"{pid} is not one of the server's workers {sorted(pids)}")
            with paused(pids - {pid}):
                response = await client.request(method, server.url + path, **request)
            body = response_body(response)
            answers.append(Answer(i, pid_of(response, body), response.status_code, body))
            if answers[-1].pid != pid:  # pragma: no cover - would mean the pause did not hold
                raise WorkersFailed(f"request {i} was meant for worker {pid} but worker {answers[-1].pid} answered")
    return answers


def fresh_client(timeout: float = 5.0) -> httpx.AsyncClient:
    """An HTTP client that opens a new connection for every request."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.AsyncClient(limits=limits, timeout=timeout, headers={"Connection": "close"})


@contextlib.contextmanager
def paused(pids: set[int]) -> Iterator[None]:
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

    async with fresh_client(timeout=10.0) as client:

        async def worker() -> None:
            while not done():
                response = await client.get(url)
                response.raise_for_status()
                by_pid[pid_of(response, response_body(response))] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    return Throughput(sum(by_pid.values()), time.monotonic() - started, by_pid)
