"""Section 1: each check accepts different correct answers and rejects plausible wrong ones."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

import anyio
import anyio.to_thread
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from asynclab.course import checking
from asynclab.standins.s01_handlers import ShopBackend, WeatherService
from tests.conftest import fails, passes

# --- 1.1 -------------------------------------------------------------------------------------------


def weather_app(handler: Callable[[WeatherService], Callable[..., object]]) -> Callable[[WeatherService], FastAPI]:
    def build(weather: WeatherService) -> FastAPI:
        app = FastAPI()
        app.get("/weather/{city}")(handler(weather))
        return app

    return build


def offload_with_anyio(weather: WeatherService) -> Callable[..., object]:
    async def forecast(city: str) -> dict[str, str]:
        return {"city": city, "forecast": await anyio.to_thread.run_sync(weather.fetch, city)}

    return forecast


def offload_with_starlette(weather: WeatherService) -> Callable[..., object]:
    async def forecast(city: str) -> dict[str, str]:
        return {"city": city, "forecast": await run_in_threadpool(weather.fetch, city)}

    return forecast


def offload_with_asyncio(weather: WeatherService) -> Callable[..., object]:
    async def forecast(city: str) -> dict[str, str]:
        return {"city": city, "forecast": await asyncio.to_thread(weather.fetch, city)}

    return forecast


def plain_def(weather: WeatherService) -> Callable[..., object]:
    def forecast(city: str) -> dict[str, str]:
        return {"city": city, "forecast": weather.fetch(city)}

    return forecast


def awaitable_client(weather: WeatherService) -> Callable[..., object]:
    async def forecast(city: str) -> dict[str, str]:
        return {"city": city, "forecast": await weather.afetch(city)}

    return forecast


def as_handed_out(weather: WeatherService) -> Callable[..., object]:
    async def forecast(city: str) -> dict[str, str]:
        return {"city": city, "forecast": weather.fetch(city)}

    return forecast


def yields_first_then_blocks(weather: WeatherService) -> Callable[..., object]:
    async def forecast(city: str) -> dict[str, str]:
        await asyncio.sleep(0)  # an await somewhere does not make the blocking call non-blocking
        return {"city": city, "forecast": weather.fetch(city)}

    return forecast


def calls_before_offloading(weather: WeatherService) -> Callable[..., object]:
    async def forecast(city: str) -> dict[str, str]:
        return {"city": city, "forecast": await anyio.to_thread.run_sync(weather.fetch(city))}  # type: ignore[arg-type]

    return forecast


def forgets_to_await(weather: WeatherService) -> Callable[..., object]:
    async def forecast(city: str) -> dict[str, object]:
        return {"city": city, "forecast": weather.afetch(city)}

    return forecast


def serialises_with_a_lock(weather: WeatherService) -> Callable[..., object]:
    lock = anyio.Lock()

    async def forecast(city: str) -> dict[str, str]:
        async with lock:
            return {"city": city, "forecast": await anyio.to_thread.run_sync(weather.fetch, city)}

    return forecast


def test_1_1_accepts_every_non_blocking_answer() -> None:
    for answer in (offload_with_anyio, offload_with_starlette, offload_with_asyncio, plain_def, awaitable_client):
        said = passes("1.1", weather_app(answer))
        # every call waits for the rest of its burst: all 8 inside at once, however busy the machine
        assert "8 concurrent requests, 8 inside the weather service at once, none on the event-loop thread" in said


def test_1_1_rejects_the_handed_out_blocking_call() -> None:
    fails("1.1", weather_app(as_handed_out), saying="8 of 8 calls to weather.fetch() ran on the event-loop thread")


def test_1_1_rejects_an_await_elsewhere() -> None:
    fails("1.1", weather_app(yields_first_then_blocks), saying="ran on the event-loop thread")


def test_1_1_rejects_calling_before_offloading() -> None:
    failure = fails(
        "1.1",
        weather_app(calls_before_offloading),
        saying="`run_sync()` was given the result of `weather.fetch(city)`, not the function",
    )
    assert "in forecast(): return" in failure.observed  # the learner's own line
    assert "`run_sync(weather.fetch, city)`" in failure.hint


def test_1_1_names_a_forgotten_await_and_the_learners_line() -> None:
    failure = fails(
        "1.1",
        weather_app(forgets_to_await),
        saying="`forecast()` returned a coroutine from `weather.afetch(city)` instead of its result: did you forget `await`?",
    )
    assert 'in forecast(): return {"city": city, "forecast": weather.afetch(city)}' in failure.observed
    assert 'Write `return {"city": city, "forecast": await weather.afetch(city)}`' in failure.hint
    assert "ResponseValidationError" not in str(failure) and "validation error" not in str(failure)


def test_1_1_names_a_coroutine_that_was_made_and_dropped() -> None:
    def also_calls_the_async_twin(weather: WeatherService) -> Callable[..., object]:
        async def forecast(city: str) -> dict[str, str]:
            weather.afetch(city)  # made, never awaited: its work never runs
            return {"city": city, "forecast": await anyio.to_thread.run_sync(weather.fetch, city)}

        return forecast

    fails(
        "1.1",
        weather_app(also_calls_the_async_twin),
        saying="every answer was as expected, but `forecast()` called `weather.afetch(city)` and never awaited the coroutine it returned",
    )


def test_1_1_names_an_async_function_handed_to_a_thread() -> None:
    def offloads_the_async_twin(weather: WeatherService) -> Callable[..., object]:
        async def forecast(city: str) -> dict[str, object]:
            return {"city": city, "forecast": await anyio.to_thread.run_sync(weather.afetch, city)}

        return forecast

    failure = fails(
        "1.1", weather_app(offloads_the_async_twin), saying="WeatherService.afetch() was handed to code that only calls it"
    )
    assert "never awaited" in failure.observed and "validation" not in str(failure)


def test_1_1_rejects_one_at_a_time() -> None:
    fails("1.1", weather_app(serialises_with_a_lock), saying="only 1 of 8 requests were inside the weather service at once")


def ignores_what_the_service_said(weather: WeatherService) -> Callable[..., object]:
    async def forecast(city: str) -> dict[str, str]:
        await anyio.to_thread.run_sync(weather.fetch, city)  # asked, off the loop, and the answer dropped
        return {"city": city, "forecast": f"sunny in {city.title()}"}  # what the service said last time

    return forecast


def test_1_1_rejects_a_forecast_the_service_did_not_give() -> None:
    """The forecast varies per check run: only the service's own answer matches it."""
    failure = fails(
        "1.1",
        weather_app(ignores_what_the_service_said),
        saying="GET /weather/oslo answered the forecast 'sunny in Oslo', not the one the weather service gave for 'oslo'",
    )
    assert "Return what the service answered" in failure.hint


def test_1_1_rejects_a_changed_answer_and_a_missing_return() -> None:
    def changed(weather: WeatherService) -> Callable[..., object]:
        async def forecast(city: str) -> dict[str, str]:
            return {"city": city, "forecast": "rain"}

        return forecast

    fails(
        "1.1", weather_app(changed), saying="GET /weather/oslo answered the forecast 'rain', not the one the weather service gave"
    )
    fails("1.1", lambda weather: None, saying="build_app(...) returned None")


# --- 1.2 -------------------------------------------------------------------------------------------


def shop(rates: str = "async-blocking", invoice: str = "def", stock: str = "decoy") -> Callable[[ShopBackend], FastAPI]:
    """The shop as handed out (``rates`` awaits a helper that blocks inside; ``stock`` has a harmless sync look-up), or a variant."""

    def build(backend: ShopBackend) -> FastAPI:
        app = FastAPI()

        async def latest_rates() -> dict[str, float]:  # the team's helper: awaited, and blocking inside
            if rates == "yields-first":
                await asyncio.sleep(0)  # an await in the helper, before the same blocking call
            if rates == "offloaded":
                return await anyio.to_thread.run_sync(backend.exchange_rates)
            return backend.exchange_rates()

        @app.get("/health")
        async def health() -> dict[str, bool]:
            return {"ok": True}

        @app.get("/products/{pid}")
        async def product(pid: int) -> dict[str, object]:
            return await backend.product(pid)

        if stock == "decoy":

            @app.get("/stock/{pid}")
            async def stock_decoy(pid: int) -> dict[str, int]:
                if backend.sold_out(pid):  # a sync look-up in memory: quick, harmless
                    return {"pid": pid, "units": 0}
                return {"pid": pid, "units": await backend.stock(pid)}

        else:  # the decoy "fixed": the look-up offloaded as well

            @app.get("/stock/{pid}")
            async def stock_offloaded(pid: int) -> dict[str, int]:
                if await anyio.to_thread.run_sync(backend.sold_out, pid):
                    return {"pid": pid, "units": 0}
                return {"pid": pid, "units": await backend.stock(pid)}

        if rates in ("async-blocking", "yields-first", "offloaded"):

            @app.get("/rates")
            async def rates_awaiting_the_helper() -> dict[str, float]:
                return await latest_rates()

        elif rates == "def":

            @app.get("/rates")
            def rates_def() -> dict[str, float]:
                return backend.exchange_rates()

        elif rates == "offloaded-in-route":

            @app.get("/rates")
            async def rates_offloaded() -> dict[str, float]:
                return await anyio.to_thread.run_sync(backend.exchange_rates)

        if invoice == "def":

            @app.get("/invoices/{order_id}")
            def invoice_def(order_id: int) -> dict[str, str]:
                return {"file": backend.render_invoice(order_id)}

        else:

            @app.get("/invoices/{order_id}")
            async def invoice_async(order_id: int) -> dict[str, str]:
                return {"file": backend.render_invoice(order_id)}

        return app

    return build


def test_1_2_accepts_a_def_route_and_an_offloaded_call() -> None:
    assert "no route blocked the event loop" in passes("1.2", shop(rates="def"))
    passes("1.2", shop(rates="offloaded"))  # in the helper, as the last hint shows
    passes("1.2", shop(rates="offloaded-in-route"))


SYMPTOM = (
    "one of the shop's 5 routes serves concurrent requests one at a time: 6 sent to it at once went through one after another"
)


def test_1_2_rejects_the_handed_out_shop_by_its_symptom_without_naming_the_route() -> None:
    """A "find it" exercise: the message says what a client sees, the hints say how to find it, the last one names the route."""
    checking.get("1.2").hints_given = 0
    failure = fails("1.2", shop(), saying=SYMPTOM)
    assert not [word for word in ("/rates", "rates", "latest_rates") if word in str(failure)], str(failure)
    assert "print(await load(client, path, n=6))" in failure.hint  # shown with the message: how to measure, not a syntax rule
    assert "/rates" not in checking.next_hint("1.2")  # the first hint() after the message: what to look for in the slow route
    assert "It is GET /rates" in checking.next_hint("1.2")  # the next one: where it is


def test_1_2_rejects_fixing_the_decoy_or_an_await_in_the_helper() -> None:
    """The harmless sync look-up in /stock offloaded, or an await added before the blocking call: the symptom stays."""
    fails("1.2", shop(stock="offloaded"), saying=SYMPTOM)
    fails("1.2", shop(rates="yields-first"), saying=SYMPTOM)
    fails("1.2", shop(rates="yields-first", stock="offloaded"), saying=SYMPTOM)


def test_1_2_a_wrong_fix_of_the_right_route_is_named_by_what_changed() -> None:
    def waits_for_a_thread(backend: ShopBackend) -> FastAPI:
        app = shop(rates="deleted")(backend)

        @app.get("/rates")
        async def rates() -> dict[str, float]:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(backend.exchange_rates).result()

        return app

    failure = fails(
        "1.2",
        waits_for_a_thread,
        saying="GET /rates: 6 of 6 calls to shop.exchange_rates() ran in another thread, but the event loop waited",
    )
    assert "Await the offloaded call" in failure.hint


def test_1_2_rejects_fixing_the_wrong_route() -> None:
    failure = fails("1.2", shop(rates="def", invoice="async"), saying="GET /invoices/0")
    assert "fine as handed out" in failure.hint


def test_1_2_rejects_deleting_the_route() -> None:
    fails("1.2", shop(rates="deleted"), saying="GET /rates answered 404")
