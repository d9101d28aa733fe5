"""Learner code that misbehaves: it exits the process, has the wrong type, never starts, or leaves a thread running.

Each must get one line that names the mistake, and none may end or hang the process running the check.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from asynclab.course import authoring
from asynclab.standins.s01_handlers import WeatherService
from tests.conftest import fails, passes

SERVICE = authoring.ROOT / "solutions" / "08-capstone" / "orders_service.py"


def weather_route(body: Callable[[WeatherService, str], object]) -> Callable[[WeatherService], FastAPI]:
    def build_app(weather: WeatherService) -> FastAPI:
        app = FastAPI()

        @app.get("/weather/{city}")
        async def forecast(city: str) -> object:
            return body(weather, city)

        return app

    return build_app


def quit_with_sys_exit(weather: WeatherService, city: str) -> object:
    sys.exit(3)


def quit_with_os_exit(weather: WeatherService, city: str) -> object:
    os._exit(4)


def test_sys_exit_in_a_handler_is_reported_and_the_process_lives_on() -> None:
    failure = fails(
        "1.1", weather_route(quit_with_sys_exit), saying="your code exited the process (status 3) in quit_with_sys_exit()"
    )
    assert "raise an exception" in failure.hint


def test_os_exit_in_a_handler_is_reported_and_the_process_lives_on() -> None:
    fails("1.1", weather_route(quit_with_os_exit), saying="your code exited the process (status 4) in quit_with_os_exit()")
    assert os._exit.__module__ in ("os", "posix", "nt")  # the real one is back after the check


def test_an_exit_while_the_module_is_imported_is_reported(tmp_path: Path) -> None:
    text = authoring.solution_source(SERVICE.read_text(encoding="utf-8"))
    for call, status in (("sys.exit(2)", 2), ("os._exit(5)", 5)):
        service = tmp_path / "orders_service.py"
        service.write_text(f"{text}\nimport os\nimport sys\n\n{call}\n", encoding="utf-8")
        fails("8.2", service, saying=f"your code exited the process (status {status}) while orders_service.py was being imported")


def test_a_factory_that_returns_the_route_function_is_named() -> None:
    def build_app(weather: WeatherService):  # type: ignore[no-untyped-def]
        app = FastAPI()

        @app.get("/weather/{city}")
        async def forecast(city: str) -> dict[str, str]:
            return {"city": city, "forecast": await weather.afetch(city)}

        return forecast

    fails(
        "1.1", build_app, saying="expected a function that returns a FastAPI app; build_app(...) returned the function forecast()"
    )


def test_an_app_passed_instead_of_its_factory_is_named() -> None:
    fails("1.1", FastAPI(), saying="expected a function that returns a FastAPI app; got the app itself (FastAPI)")


def test_something_that_is_not_a_function_is_named() -> None:
    fails("1.1", "build_app", saying="expected a function that returns a FastAPI app; got str 'build_app'")


def test_a_startup_that_never_finishes_is_named() -> None:
    def build_app(weather: WeatherService) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await asyncio.Event().wait()  # waits for a connection that never comes
            yield

        return FastAPI(lifespan=lifespan)

    fails("1.1", build_app, saying="the app's startup did not finish within 5 s")


def test_threads_that_never_end_keep_nothing_alive() -> None:
    """A plain thread, a pool thread and the loop's executor, all still running when the check has passed."""
    stop = threading.Event()
    started: list[threading.Thread] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="learner-pool")

    def build_app(weather: WeatherService) -> FastAPI:
        app = FastAPI()
        worker = threading.Thread(target=stop.wait, name="learner-forever")  # not a daemon: it would keep Python alive
        worker.start()
        started.append(worker)
        pool.submit(stop.wait)

        @app.get("/weather/{city}")
        async def forecast(city: str) -> dict[str, str]:
            asyncio.get_running_loop().run_in_executor(None, stop.wait)  # never awaited, never ends
            return {"city": city, "forecast": await weather.afetch(city)}

        return app

    try:
        passes("1.1", build_app)
        still = [t for t in threading.enumerate() if t.is_alive() and t.name.startswith(("learner-", "asynclab-check-executor"))]
        assert still, "the learner's threads should still be running"
        assert all(t.daemon for t in still), [t.name for t in still if not t.daemon]
        assert not [t for t in still if t in concurrent.futures.thread._threads_queues]  # type: ignore[attr-defined]
    finally:
        stop.set()
        pool.shutdown(wait=True)
