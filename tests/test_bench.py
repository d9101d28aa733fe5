"""Unit tests of the lab bench (the asynclab package)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import httpx
import psutil
import pytest
from fastapi import BackgroundTasks, FastAPI
from sqlalchemy import select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asynclab import (
    CheckFailed,
    InFlight,
    asyncio_debug,
    capture_logs,
    check,
    inprocess_client,
    load,
    loop_lag,
    ratio,
    thread_pool,
    thread_tokens,
    timeline,
    uvicorn_server,
)
from asynclab.bench.calls import on_event_loop_thread
from asynclab.bench.database import rows_of, temporary_database
from asynclab.bench.leftovers import leftovers
from asynclab.bench.lint import ruff
from asynclab.bench.processes import pid_namespace_unavailable, uvicorn_process
from asynclab.bench.server import StartupFailed
from asynclab.course import authoring, checking, environment

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sleeper_app(gauge: InFlight) -> FastAPI:
    """Three ways to wait 50 ms. The awaiting and threaded handlers then wait until the whole burst is inside
    (at most 30 s): "all at once" holds by construction, however loaded the machine."""
    app = FastAPI()

    @app.get("/block")
    @gauge.track
    async def block() -> int:
        time.sleep(0.05)
        return 1

    @app.get("/await")
    @gauge.track
    async def awaiting() -> int:
        await anyio.sleep(0.05)
        await gauge.until_all_in()
        return 1

    @app.get("/thread")
    @gauge.track
    def threaded() -> int:
        time.sleep(0.05)
        gauge.wait_until_all_in()
        return 1

    return app


async def test_inprocess_client_runs_the_lifespan_and_passes_its_state() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append("startup")
        yield {"greeting": "hi"}
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def root(request: __import__("fastapi").Request) -> str:
        return request.state.greeting

    async with inprocess_client(app) as client:
        assert (await client.get("/")).json() == "hi"
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


async def test_inprocess_client_reraises_or_answers_500() -> None:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    async with inprocess_client(app) as client:
        with pytest.raises(RuntimeError, match="boom"):
            await client.get("/boom")
    async with inprocess_client(app, raise_app_exceptions=False) as client:
        assert (await client.get("/boom")).status_code == 500


async def test_load_counts_in_flight_inside_the_app_and_matches_spans_to_requests() -> None:
    gauge = InFlight()
    async with inprocess_client(sleeper_app(gauge)) as client:
        blocked = await load(client, "/block", n=5, in_flight=gauge)
        awaited = await load(client, "/await", n=5, in_flight=gauge)
        threaded = await load(client, "/thread", n=5, in_flight=gauge)
    assert (blocked.max_in_flight, awaited.max_in_flight, threaded.max_in_flight) == (1, 5, 5)
    assert blocked.ok and blocked.statuses == {200: 5} and blocked.n == 5
    assert blocked.wall >= 5 * 0.05
    for report in (blocked, awaited, threaded):  # the context variable reaches def handlers too
        assert sorted(s.request for s in report.handler_spans) == [0, 1, 2, 3, 4]
    assert "5 requests (5 × HTTP 200) · at most 1 in flight" in blocked.summary()


async def test_load_takes_paths_and_headers_per_request() -> None:
    app = FastAPI()

    @app.get("/echo/{i}")
    async def echo(i: int, request: __import__("fastapi").Request) -> list[object]:
        return [i, request.headers["x-n"]]

    async with inprocess_client(app) as client:
        report = await load(client, lambda i: f"/echo/{i}", n=3, headers=lambda i: {"x-n": str(i * 2)})
    assert [r.body for r in report.results] == [[0, "0"], [1, "2"], [2, "4"]]


async def test_load_gives_up_when_told_and_in_process_the_handlers_are_cancelled() -> None:
    gauge = InFlight()
    never = anyio.Event()
    cancelled = 0
    app = FastAPI()

    @app.get("/wait")
    async def wait() -> str:
        nonlocal cancelled
        with gauge.inside():
            try:
                await never.wait()
            except anyio.get_cancelled_exc_class():
                cancelled += 1
                raise
        return "never"

    with anyio.fail_after(30):  # a hang guard only: without give_up_when this load would wait for ever
        async with inprocess_client(app) as client:
            report = await load(client, "/wait", n=4, in_flight=gauge, give_up_when=lambda: gauge.now == 4)
    assert report.statuses == {0: 4} and gauge.entered == 4
    assert cancelled == 4 and gauge.now == 0


def test_in_flight_is_thread_safe() -> None:
    gauge = InFlight()
    barrier = threading.Barrier(8)

    def work() -> None:
        with gauge.inside():
            barrier.wait(timeout=5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (gauge.peak, gauge.now, gauge.entered, len(gauge.spans)) == (8, 0, 8, 8)


async def test_until_all_in_waits_for_the_burst_and_in_threads_for_as_many_as_hold_a_token() -> None:
    gauge, app = InFlight(), FastAPI()

    @app.get("/thread")
    @gauge.track
    def threaded() -> bool:
        return gauge.wait_until_all_in()

    @app.get("/await")
    async def awaiting() -> bool:
        with gauge.inside():  # load is not given this gauge, so never resets it: each new burst counts afresh
            return await gauge.until_all_in()

    async with inprocess_client(app) as client:
        with thread_tokens(3):
            capped = await load(client, "/thread", n=7, in_flight=gauge)
        first, second = [await load(client, "/await", n=4) for _ in range(2)]
    assert capped.max_in_flight == 3 and [r.body for r in capped.results] == [True] * 7
    for burst in (first, second):
        assert [r.body for r in burst.results] == [True] * 4
    spans = gauge.spans[-4:]  # the second burst's: every handler was still inside when the last came in
    assert max(s.start for s in spans) <= min(s.end for s in spans)


async def test_until_all_in_goes_on_after_its_limit_and_never_waits_on_the_loop() -> None:
    gauge = InFlight()
    with gauge.inside():
        assert await gauge.until_all_in(2, within=0.05) is False  # nobody else came: it went on
        assert await anyio.to_thread.run_sync(lambda: gauge.wait_until_all_in(2, within=0.05)) is False
        assert await gauge.until_all_in() is False and gauge.wait_until_all_in() is False  # no burst, no number: no wait
        assert await gauge.until_all_in(1) is True
        assert await anyio.to_thread.run_sync(gauge.wait_until_all_in, 1) is True
        assert gauge.wait_until_all_in(1) is False  # on the loop's thread it never waits: it would block everybody


async def test_thread_tokens_restores_the_limiter_even_on_error() -> None:
    assert thread_pool().total == 40
    with pytest.raises(ValueError), thread_tokens(3) as pool:
        assert pool.total == 3 and thread_pool().available == 3
        raise ValueError
    assert thread_pool().total == 40


async def test_loop_lag_sees_a_block_and_asyncio_debug_logs_it() -> None:
    async with loop_lag() as lag:
        time.sleep(0.1)
        await anyio.lowlevel.checkpoint()
    assert lag.worst >= 0.1
    async with asyncio_debug(slow_callback=0.05) as logs:
        time.sleep(0.06)
    assert any(" took " in m for m in logs.messages)
    assert not asyncio.get_running_loop().get_debug()


def test_capture_logs_catches_and_detaches() -> None:
    import logging

    with capture_logs("asynclab.test") as logs:
        logging.getLogger("asynclab.test.child").warning("hello %s", "there")
    logging.getLogger("asynclab.test").warning("not caught")
    assert logs.messages == ["hello there"]


async def test_uvicorn_server_answers_before_background_tasks_finish_and_frees_its_port() -> None:
    before = set(leftovers())  # other tests on this worker may still be stopping kernels of their own
    finished = anyio.Event()
    app = FastAPI()

    @app.get("/later")
    async def later(tasks: BackgroundTasks) -> str:
        async def slow() -> None:
            await anyio.sleep(0.3)
            finished.set()

        tasks.add_task(slow)
        return "queued"

    async with uvicorn_server(app) as url:
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/later")).json() == "queued"
            assert not finished.is_set()  # the response came first
        await finished.wait()
    with socket.socket() as probe:  # the port is free again
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert set(leftovers()) - before == set()


async def test_uvicorn_server_stops_when_the_block_fails() -> None:
    before = set(leftovers())
    with pytest.raises(ZeroDivisionError):
        async with uvicorn_server(FastAPI()):
            1 / 0
    assert set(leftovers()) - before == set()


def test_timeline_draws_one_bar_per_request_and_phase() -> None:
    from asynclab.bench.gauges import Span
    from asynclab.bench.load import LoadReport, RequestResult

    report = LoadReport([RequestResult(i, 200, 0.0, 0.2, None) for i in range(3)], 0.2, 3, [Span(i, 0.05, 0.2) for i in range(3)])
    fig = timeline(("a", report), ("b", report))
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 6
    assert "at most 3 in flight" in fig.axes[0].get_title()


def test_ratio_is_rounded_for_people() -> None:
    assert ratio(2.0, 0.2) == "≈10×" and ratio(0.3, 0.2) == "≈1.5×" and ratio(1, 0) == "∞"


def test_on_event_loop_thread() -> None:
    assert not on_event_loop_thread()
    assert anyio.run(lambda: _async_on_loop())


async def _async_on_loop() -> bool:
    return on_event_loop_thread()


# --- the checker ------------------------------------------------------------------------------------


def test_check_passes_in_one_line_and_fails_with_a_short_message(capsys: pytest.CaptureFixture[str]) -> None:
    def good() -> FastAPI:
        app = FastAPI()
        app.get("/hello")(lambda: {"message": "hello"})
        return app

    check("0.1", good)
    out = capsys.readouterr().out
    assert out.startswith("✅ passed · Exercise 0.1 (Say hello): ") and out.count("\n") == 1
    with pytest.raises(CheckFailed) as info:
        check("0.1", FastAPI)
    message = str(info.value)
    assert message.startswith("❌ not yet · Exercise 0.1 (Say hello): GET /hello answered 404")
    assert "Hint:" in message and "hint('0.1')" in message
    assert info.value._render_traceback_() == [message]


def test_check_stops_an_endless_loop_within_its_time_limit() -> None:
    def endless() -> FastAPI:
        while True:
            pass

    started = time.perf_counter()
    with pytest.raises(CheckFailed, match="did not finish within 1 s"):
        check("0.1", endless, timeout=1)
    assert time.perf_counter() - started >= 1
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name == "asynclab-check"]  # the loop was stopped


def test_check_reports_the_learners_error_and_line() -> None:
    def broken() -> FastAPI:
        return undefined_name  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(CheckFailed) as info:
        check("0.1", broken)
    assert "your code raised NameError: name 'undefined_name' is not defined" in info.value.observed
    assert "return undefined_name" in info.value.observed


def test_hints_step_forward_and_stay_on_the_last() -> None:
    exercise = checking.get("0.1")
    exercise.hints_given = 0
    texts = [checking.next_hint("0.1") for _ in range(4)]
    assert [t.split(":")[0] for t in texts] == [f"💡 Hint {i} of 3 for exercise 0.1" for i in (1, 2, 3, 3)]


def test_unknown_exercise_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="there is no exercise '9.9'"):
        check("9.9", None)


# --- authoring, environment, lint --------------------------------------------------------------------


def test_stub_source_swaps_solution_for_handed_out_lines() -> None:
    source = "def f():\n    # BEGIN SOLUTION\n    return 1\n    # HANDED OUT\n    # return 0\n    #\n    # END SOLUTION\n"
    assert authoring.stub_source(source) == "def f():\n    return 0\n"
    assert authoring.solution_source(source) == "def f():\n    return 1"
    for broken in (
        "# BEGIN SOLUTION\nx",
        "# END SOLUTION",
        "# HANDED OUT",
        "# BEGIN SOLUTION\n# HANDED OUT\nx = 1\n# END SOLUTION",
    ):
        with pytest.raises(authoring.MarkerError):
            authoring.stub_source(broken)


def test_environment_matches_the_pins() -> None:
    pins = environment.pins()
    assert {"fastapi", "httpx", "anyio", "asgi-lifespan", "nbval", "jupyterlab", "sqlalchemy"} <= set(pins)
    assert [p.name for p in environment.packages() if not p.ok] == []


def test_ruff_reports_blocking_calls_in_async_code(tmp_path: __import__("pathlib").Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text("import time\n\n\nasync def f() -> None:\n    time.sleep(1)\n")
    assert [(f.line, f.code) for f in ruff(source)] == [(5, "ASYNC251")]


async def test_uvicorn_server_reports_a_failed_startup() -> None:
    @asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        raise ConnectionError("the database is down")
        yield

    before = set(leftovers())
    with capture_logs("uvicorn.error"), pytest.raises(StartupFailed, match="uvicorn did not start") as failed:
        async with uvicorn_server(FastAPI(lifespan=broken), lifespan="on"):
            pass
    assert failed.value.exit_code == 3  # uvicorn's status for a failed startup
    assert set(leftovers()) - before == set()


async def test_temporary_database_creates_fills_and_removes_its_file() -> None:
    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)

    async with temporary_database(Base.metadata, rows_of(Item, [{"id": 1}, {"id": 2}]), name="items") as db:
        assert db.path.name == "items.sqlite3" and db.url.startswith("sqlite+aiosqlite:///")
        engine = db.engine()
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(select(Item.id).order_by(Item.id))).scalars().all() == [1, 2]
        finally:
            await engine.dispose()
    assert not db.path.parent.exists()


async def test_errors_inside_helpers_reach_the_notebook_as_themselves() -> None:
    """An ExceptionGroup escaping a notebook cell is not reported as a failure, so helpers unwrap them."""
    with pytest.raises(AssertionError):
        async with loop_lag():
            raise AssertionError("a failed claim inside the block")
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise KeyError("boom")

    async with inprocess_client(app) as client:
        with pytest.raises(KeyError):
            await load(client, "/boom", n=3)


def test_the_suite_guard_finds_a_process_that_outlived_its_notebook() -> None:
    import os
    import subprocess
    import sys

    from conftest import MARKER, survivors

    marker = "guard-self-test"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env={**os.environ, MARKER: marker})
    try:
        assert any(line.startswith(f"{child.pid} ") for line in survivors(marker))
    finally:
        child.kill()
        child.wait()
    assert survivors(marker) == []


def test_a_worker_group_stops_when_the_kernel_that_started_it_is_killed(tmp_path: __import__("pathlib").Path) -> None:
    """A kernel killed hard runs no clean-up; its uvicorn group must stop anyway (Linux: parent-death signal)."""
    import os
    import signal
    import subprocess
    import sys

    from asynclab.bench.process_group import group_members

    if sys.platform != "linux":
        pytest.skip("the parent-death signal is Linux's")
    (tmp_path / "tiny.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n", encoding="utf-8")
    kernel = (
        "import anyio, sys\n"
        "from asynclab.bench.workers import serve_workers\n"
        "async def main():\n"
        f"    async with serve_workers('tiny:app', app_dir={str(tmp_path)!r}, workers=2) as server:\n"
        "        print(server.process.pid, flush=True)\n"
        "        await anyio.sleep_forever()\n"
        "anyio.run(main)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", kernel], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        pgid = int(child.stdout.readline())
        assert len(group_members(pgid)) >= 3  # uvicorn's parent, its two workers (and a helper process)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 20  # a hang guard, not a speed claim
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = group_members(pgid)
    if left:
        os.killpg(pgid, signal.SIGKILL)
    assert left == []


def test_bench_checks_times_each_check_on_its_solution_and_as_handed_out() -> None:
    """``python -m asynclab bench-checks 1``: both notebooks run, each check timed, with the verdict it gave."""
    from asynclab.course import benchchecks

    timings = benchchecks.measure(["1"])
    verdicts = [(t.exercise, t.solution_verdict, t.handed_out_verdict.split(":")[0]) for t in timings]
    assert verdicts == [("1.1", "passed", "failed"), ("1.2", "passed", "failed")]
    assert all(None not in (t.solution, t.solution_first, t.handed_out, t.handed_out_first) for t in timings)


@pytest.mark.skipif(pid_namespace_unavailable() is not None, reason=f"no PID namespace here: {pid_namespace_unavailable()}")
async def test_uvicorn_process_as_pid_1_is_stopped_with_its_namespace_even_when_the_block_fails() -> None:
    """A container's uvicorn: PID 1 of its own namespace, SIGTERM ignored on re-raise (status 0), gone after a failure."""
    app = "from fastapi import FastAPI\n\napp = FastAPI()\n"
    async with uvicorn_process(app, pid_namespace=True) as server:
        assert await server.started()
        assert server.lines("Started server process [1]")  # uvicorn is PID 1 in there
        server.terminate()
        assert await server.exited() == 0  # as PID 1 the re-raised SIGTERM is ignored
    with pytest.raises(RuntimeError, match="on purpose"):
        async with uvicorn_process(app, pid_namespace=True) as server:
            assert await server.started()
            inside = [server.process.pid, server.first_pid]
            raise RuntimeError("a cell that fails on purpose")
    assert not [pid for pid in inside if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
