"""Checks for section 1, async route handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.load import load
from asynclab.bench.loopwatch import LoopWatch
from asynclab.checks._harness import BURST_WAIT, IDLE, build_app, expect_responses, watched
from asynclab.course.checking import exercise, fail
from asynclab.standins.s01_handlers import ShopBackend, WeatherService

CITIES = ["oslo", "lima", "pune", "kyiv", "nice", "bern", "cork", "riga"]

WAITED = (
    "ran in another thread, but the event loop waited for {it} (it could run nothing else meanwhile): "
    "blocking on a thread's result (`future.result()`, `thread.join()`) blocks the loop just the same"
)


@exercise(
    "1.1",
    "Unblock the weather route",
    hints=[
        "weather.fetch() blocks: inside `async def`, nothing else can run until it returns.",
        "Either await its awaitable twin (weather.afetch), or run the blocking call in a worker thread.",
        "`report = await anyio.to_thread.run_sync(weather.fetch, city)` — or make the handler a plain `def`.",
    ],
)
async def weather_route(factory: Callable[[WeatherService], Any]) -> str:
    watch = LoopWatch()
    weather = watched(WeatherService, watch, "fetch")
    weather.record.burst_wait, weather.record.idle = BURST_WAIT, IDLE
    app = build_app(factory, weather)
    n = len(CITIES)
    async with inprocess_client(app) as client:
        report = await load(client, lambda i: f"/weather/{CITIES[i]}", n=n)
    _expect_forecasts(report, weather)
    blocking, awaitable = weather.record.of("fetch"), weather.record.of("afetch")
    if blocking.calls + awaitable.calls < n:
        fail(
            f"{n} requests made only {blocking.calls + awaitable.calls} calls to the weather service",
            "Every request must ask the weather service.",
        )
    if blocking.on_loop:
        fail(
            f"{blocking.on_loop} of {n} calls to weather.fetch() ran on the event-loop thread, "
            "so the requests took turns: at most 1 in flight.",
            0,
        )
    if watch.loop_waited:
        fail(f"{watch.loop_waited} of {blocking.calls} calls to weather.fetch() " + WAITED.format(it="each"), 1)
    peak = max(blocking.peak, awaitable.peak)
    if peak < n // 2:
        fail(f"only {peak} of {n} requests were inside the weather service at once", 1)
    free = f", and the event loop ran other work during each of the {watch.calls} blocking calls" if watch.calls else ""
    return f"{n} concurrent requests, {peak} inside the weather service at once, none on the event-loop thread{free}."


def _expect_forecasts(report: Any, weather: WeatherService) -> None:
    """Did every request answer 200 with the forecast this check's service gives (it differs from run to run)?"""
    for r in report.results:
        city = CITIES[r.index]
        said = weather._forecast(city)
        if r.status != 200:
            fail(
                f"GET /weather/{city} answered {r.status}: {str(r.body)[:120]}",
                "Every route must still answer 200 with the same body as before.",
            )
        if not isinstance(r.body, dict) or set(r.body) != {"city", "forecast"} or r.body.get("city") != city:
            fail(
                f"GET /weather/{city} answered {str(r.body)[:120]}, expected {{'city': {city!r}, 'forecast': ...}}",
                "Change how the handler waits for its data, not what it returns.",
            )
        if r.body["forecast"] != said:
            fail(
                f"GET /weather/{city} answered the forecast {str(r.body['forecast'])[:60]!r}, not the one the weather "
                f"service gave for {city!r} ({said!r}): the route must answer what the service says, each time.",
                (
                    "Return what the service answered for this request: `report = await anyio.to_thread.run_sync(weather.fetch, "
                    "city)`, then the report."
                ),
            )


SHOP_ROUTES: dict[str, tuple[Callable[[int], str], Callable[[int], Any]]] = {
    "product": (lambda i: f"/products/{i}", lambda i: {"id": i, "name": f"product {i}"}),
    "stock": (lambda i: f"/stock/{i}", lambda i: {"pid": i, "units": i * 3}),
    "exchange_rates": (lambda i: "/rates", lambda i: {"EUR": 1.0, "USD": 1.08}),
    "render_invoice": (lambda i: f"/invoices/{i}", lambda i: {"file": f"invoice-{i}.pdf"}),
}


def _described(path: Callable[[int], str]) -> Callable[[int], str]:
    """How a failure names request ``i`` to a route: ``GET /products/3``."""
    return lambda i: f"GET {path(i)}"


#: 1.2 is a "find it" exercise: the failure says what a learner can observe; only the last hint names the route.
FIND_IT = "exchange_rates"


@exercise(
    "1.2",
    "Find and fix the blocking route",
    hints=[
        (
            "Measure before you read the code: in a new cell, `async with inprocess_client(build_shop(ShopBackend())) as "
            "client:` "
            "and, inside it, `print(await load(client, path, n=6))` for each of the shop's paths (e.g. /products/1). "
            "Each back-end call takes 0.15 s: the route you want needs about 6 × 0.15 s for its 6 requests, the others "
            "about 0.15 s."
        ),
        (
            "Found the slow route? Follow each call it makes, into any `async def` helper it awaits, down to the call that waits "
            "without awaiting: an `await` in front of a helper does not make what runs inside it non-blocking. "
            "A quick call that only reads memory is harmless, awaited or not."
        ),
        (
            "It is GET /rates: it awaits `latest_rates()`, whose `shop.exchange_rates()` is a blocking SDK call (a sync "
            "HTTP client) "
            "made on the event loop. Offload it in the helper, `return await anyio.to_thread.run_sync(shop.exchange_rates)`, "
            "or make /rates a plain `def` route that returns `shop.exchange_rates()` itself."
        ),
    ],
)
async def shop_routes(factory: Callable[[ShopBackend], Any]) -> str:
    watch = LoopWatch()
    shop = watched(ShopBackend, watch, "exchange_rates", "render_invoice")
    shop.record.burst_wait, shop.record.idle = BURST_WAIT, IDLE
    app = build_app(factory, shop)
    n = 6
    async with inprocess_client(app) as client:
        health = await client.get("/health")
        if health.status_code != 200:
            fail(f"GET /health answered {health.status_code}", "Keep the /health route as it was.")
        for operation, (path, body) in SHOP_ROUTES.items():
            shop.record.reset()
            waited_before = watch.loop_waited
            report = await load(client, path, n=n)
            expect_responses(report, _described(path), body)
            stats = shop.record.of(operation)
            if stats.calls < n:
                fail(
                    f"GET {path(0)}: {n} requests made {stats.calls} calls to shop.{operation}()",
                    "Keep every route calling the same back end.",
                )
            if stats.on_loop and operation == FIND_IT:
                fail(
                    f"one of the shop's {len(SHOP_ROUTES) + 1} routes serves concurrent requests one at a time: {n} sent to it "
                    f"at once went through one after another (at most {stats.peak} in the shop's back end at once), and the "
                    "event loop could run nothing else while each one was being answered.",
                    0,
                )
            if stats.on_loop:
                fail(
                    f"GET {path(0)}: {stats.on_loop} of {n} calls to shop.{operation}() blocked the event-loop thread.",
                    "That route was fine as handed out: a `def` handler already runs in a worker thread.",
                )
            if watch.loop_waited > waited_before:
                fail(
                    f"GET {path(0)}: {watch.loop_waited - waited_before} of {n} calls to shop.{operation}() "
                    + WAITED.format(it="them"),
                    (
                        "Await the offloaded call (`await anyio.to_thread.run_sync(...)`) instead of waiting for its result, or "
                        "make the handler a plain `def`."
                    ),
                )
            if stats.peak < n // 2:
                fail(
                    f"GET {path(0)}: only {stats.peak} of {n} requests were inside shop.{operation}() at once",
                    "Let the calls overlap: no lock and no single worker thread around them.",
                )
    return (
        f"all {len(SHOP_ROUTES) + 1} routes answered as before, the {len(SHOP_ROUTES)} that call the back end served {n} "
        "concurrent requests each, and no route blocked the event loop: no call "
        f"ran on its thread, and it ran other work during each of the {watch.calls} blocking calls."
    )
