"""Checks for section 9: a blocking-call detector in a team's tests, and a watchdog that names the route."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

import anyio
from blockbuster import BlockingError, blockbuster_ctx

from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.load import first_error, load
from asynclab.bench.probes import capture_logs
from asynclab.checks._harness import build_app
from asynclab.course.checking import exercise, fail, raised
from asynclab.standins import s09_catch_blocking as catching
from asynclab.standins.s09_catch_blocking import (
    RENDER_SECONDS,
    SERVICE,
    SUITE,
    UPSTREAM_SECONDS,
    SuiteResult,
    arun_suite,
    import_file,
    prices,
)

FOLDER = "09-catch-blocking"


def _folder(answer: Any) -> Path:
    folder = Path(answer) if isinstance(answer, str | Path) else None
    if folder is None or not folder.is_dir():
        fail(f"expected the folder of your service and its tests, got {answer!r}", f"Pass the folder: check('9.1', {FOLDER!r}).")
    missing = [name for name in (SERVICE, SUITE) if not (folder / name).is_file()]
    if missing:
        fail(f"{folder} has no {' and no '.join(missing)}", f"Pass the folder that holds {SERVICE} and {SUITE}.")
    return folder


def _said(result: SuiteResult) -> str:
    errors = result.errors()
    return f"{result.summary}" + (f", with {'; '.join(errors[:2])}" if errors else "")


async def _suite_on(tests: str, service: str) -> SuiteResult:
    with tempfile.TemporaryDirectory(prefix="catalog-suite-") as tmp:
        folder = Path(tmp)
        (folder / SUITE).write_text(tests, encoding="utf-8")
        (folder / SERVICE).write_text(service, encoding="utf-8")
        return await arun_suite(folder, "-x", SUITE, timeout=40)  # below the check's own limit: no process outlives it


@exercise(
    "9.1",
    "Let the tests catch the blocking calls",
    hints=[
        (
            'Give the suite a detector first: in the `blockbuster` fixture, `with blockbuster_ctx(["catalog_service"]) as '
            "detector: yield detector`. Scoped to your service, it leaves pytest's and httpx's own file reads alone. "
            "Then run the suite (the cell above the check) and read each BlockingError."
        ),
        (
            "Each BlockingError names the function that blocked: `time.sleep` comes from inside `display_price` (the pricing "
            "team's SDK makes a sync HTTP call), `os.stat` from `path.is_file()`, `io.TextIOWrapper.read` from `read_text()`."
        ),
        (
            "In the service: `price = await anyio.to_thread.run_sync(display_price, sku)`; for the file, `path = "
            'anyio.Path(DESCRIPTIONS / f"{sku}.txt")`, then `await path.is_file()` and `await path.read_text(encoding="utf-8")`.'
        ),
    ],
    timeout=50,  # two fresh pytest processes; progress gives a check cell 60 s
)
async def tests_catch_blocking(answer: Any) -> str:
    """Run the learner's suite on both services, then load theirs in-process with blockbuster on.

    The loop itself is asked whether it stayed free during every price quote.
    """
    folder = _folder(answer)
    handed, yours = await _judge_suites(folder)
    module = import_file(folder / SERVICE, "catalog_service_check")
    skus = list(catching.PRODUCTS) * 3
    try:
        with blockbuster_ctx([module]), prices.watching(asyncio.get_running_loop()) as feed:
            async with inprocess_client(module.app) as client:
                pages = await load(client, lambda i: f"/products/{skus[i]}", n=len(skus))
                texts = await load(client, lambda i: f"/products/{skus[i]}/description", n=len(skus))
                missing = await client.get("/products/spoon/description")
                feed.reprice(REPRICED, NEW_CENTS)  # the pricing team changes a price between two requests
                after = await client.get(f"/products/{REPRICED}")
    except Exception as exc:  # noqa: BLE001 - the learner's error, reported in one line
        leaf = first_error(exc)
        if isinstance(leaf, BlockingError):
            fail(f"under load, with blockbuster on, your service raised {leaf}", 1)
        fail(raised(leaf), "Fix that error first: the check calls your service just as a server would.")
    wrong = [r.status for r in [*pages.results, *texts.results] if r.status != 200]
    wrong += [missing.status_code] if missing.status_code != 404 else []
    wrong += [after.status_code] if after.status_code != 200 else []
    if wrong:
        fail(
            f"{len(wrong)} of {len(skus) * 2 + 2} requests got a wrong status, e.g. {wrong[0]}",
            "Change how the routes wait, not what they answer: 200 for a product, 404 for an unknown one.",
        )
    _judge_prices(pages.results, skus, after.json(), len(skus) + 1, feed.calls)
    if feed.loop_held:
        fail(
            f"{feed.loop_held} of {feed.calls} price quotes held the event loop while they waited for the pricing service "
            "(the loop could not run a callback until they returned)",
            2,
        )
    return (
        f"your suite failed on the handed-out service ({', '.join(handed.errors()[:1])}) and passes on yours "
        f"({yours.summary}); under load, {len(skus) + 1} product pages, each with the price quoted for it (a price "
        f"changed between two requests was shown at once), and {feed.calls} of {feed.calls} price quotes left the loop free."
    )


async def _judge_suites(folder: Path) -> tuple[SuiteResult, SuiteResult]:
    """The learner's suite, in fresh processes, on the catalog service as handed out (it must fail with a
    ``BlockingError``) and on the learner's service (it must pass): both results."""
    tests = (folder / SUITE).read_text(encoding="utf-8")
    service = (folder / SERVICE).read_text(encoding="utf-8")
    async with anyio.create_task_group() as tg:
        results: dict[str, SuiteResult] = {}

        async def run(key: str, service_text: str) -> None:
            results[key] = await _suite_on(tests, service_text)

        tg.start_soon(run, "handed out", catching.handed_out(SERVICE))
        tg.start_soon(run, "yours", service)
    handed, yours = results["handed out"], results["yours"]
    if handed.passed:
        fail(
            f"your test suite passed ({handed.summary}) against the catalog service as handed out, which blocks the event "
            "loop in both routes"
        )
    if "BlockingError" not in handed.output:
        fail(
            f"against the service as handed out, your suite failed without a BlockingError: {_said(handed)}",
            "Keep the tests as they were; add the detector in the `blockbuster` fixture.",
        )
    if not yours.passed:
        fail(f"your test suite fails on your service: {_said(yours)}", 1)
    return handed, yours


REPRICED, NEW_CENTS = "kettle", 3540  # a price the check changes between two requests


def _judge_prices(results: list[Any], skus: list[str], after: Any, pages: int, quotes: int) -> None:
    """Did every page show the price the pricing service quoted for it, the changed one too, with one quote per page at least?"""
    for r in results:
        expected = catching.price_text(catching.PRODUCTS[skus[r.index]])
        if not isinstance(r.body, dict) or r.body.get("price") != expected:
            fail(
                f"GET /products/{skus[r.index]} answered {str(r.body)[:100]}, expected the price {expected!r}",
                "Change how the routes wait, not what they answer.",
            )
    old, new = catching.price_text(catching.PRODUCTS[REPRICED]), catching.price_text(NEW_CENTS)
    shown = after.get("price") if isinstance(after, dict) else after
    if shown != new:
        fail(
            f"after the pricing service changed the price of {REPRICED} from {old} to {new}, GET /products/{REPRICED} "
            f"still answered {str(shown)[:40]!r}: a page must show the price quoted for it, not one kept from before "
            f"({quotes} price quotes for {pages} product pages).",
            "Ask the pricing service on every request (`display_price(sku)`), off the loop: "
            "`price = await anyio.to_thread.run_sync(display_price, sku)`.",
        )
    if quotes < pages:
        fail(
            f"{pages} product pages were served with {quotes} price quotes: each page must ask the pricing service for its price",
            "Ask the pricing service on every request: `price = await anyio.to_thread.run_sync(display_price, sku)`.",
        )


PDF, RATES = "GET /invoices/{number}/pdf", "GET /rates"
NOISE = 2  # stall reports a loaded machine may cause by itself during the check


@exercise(
    "9.2",
    "Make the watchdog name the route that stalls",
    hints=[
        (
            "The watchdog reports a stall only when the loop has not turned for longer than `threshold`: it must be below the "
            f"{RENDER_SECONDS} s a PDF render holds the loop, and well above the heartbeat's `interval` (0.01 s)."
        ),
        (
            "To name a route, the watchdog must know which task serves which request: `app.add_middleware(watchdog.middleware)`. "
            "Without it, every report says 'no request'. It starts and stops with the app: `FastAPI(lifespan=watchdog.lifespan)`."
        ),
        (
            "`watchdog = Watchdog(threshold=0.2)`, `app = FastAPI(lifespan=watchdog.lifespan)`, "
            "`app.add_middleware(watchdog.middleware)`, then include the router."
        ),
    ],
)
async def watchdog_names_the_route(factory: Any) -> str:
    """Send the learner's reports app slow-but-awaiting requests and two PDF renders that stall the loop; read the watchdog's log."""
    app = build_app(factory)
    renders = 2
    with capture_logs("", logging.WARNING) as logs:
        async with inprocess_client(app) as client, anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(client.get, "/rates")
            statuses = []
            for path in [*(f"/invoices/{n}/pdf" for n in range(1, renders + 1)), "/health"]:
                # In-process, requests are plain calls: without a pause the loop would not turn
                # between two renders, and they would be one stall.
                await anyio.sleep(0.05)
                statuses.append((await client.get(path)).status_code)
    if statuses != [200] * (renders + 1):
        fail(f"the reports service answered {statuses}", "Include the reports router unchanged: `app.include_router(reports)`.")
    said = [r for r in logs.records if hasattr(r, "route")]
    named = [r.route for r in said]
    if not said:
        fail(f"the watchdog logged nothing while {PDF} held the event loop for {RENDER_SECONDS} s, {renders} times")
    # A busy machine can leave the loop late now and then by itself: up to NOISE such reports are the
    # machine's, not the app's. A threshold that reports ordinary loop turns makes far more.
    others = [route for route in named if route != PDF]
    awaiting = [route for route in others if route != "no request"]
    if len(others) > NOISE and awaiting:
        fail(
            f"the watchdog named {awaiting[0]}, which waits {UPSTREAM_SECONDS} s but awaits (the loop was free): "
            f"{len(said)} reports in all",
            "A threshold at or below the heartbeat interval reports ordinary loop turns; raise it.",
        )
    if PDF not in named:
        many = len(said) > renders + NOISE
        fail(
            (
                f"the watchdog logged {len(said)} stall{'s' * (len(said) != 1)} for {renders} PDF renders, naming no route ('no "
                "request')"
            )
            + (": far more reports than stalls" if many else ""),
            "A threshold at or below the heartbeat interval reports ordinary loop turns; raise it." if many else 1,
        )
    if named.count(PDF) != renders or len(others) > NOISE:
        fail(
            f"the watchdog logged {len(said)} reports ({', '.join(sorted(set(named)))}) for {renders} stalls by {PDF}: "
            "expected one report per stall",
            0,
        )
    return (
        f"{renders} stalls by {PDF} reported once each, with the loop thread's stack; "
        f"{len(others)} other report(s), at most {NOISE} allowed for a busy machine, while {RATES} waited {UPSTREAM_SECONDS} "
        "s, awaited."
    )
