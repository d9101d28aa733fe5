"""Running the learner's orders service for a check: a fresh import, a new database, the settings of one scenario."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from asynclab.bench.database import temporary_database
from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.loopwatch import LoopWatch
from asynclab.checks._harness import import_fresh, module_file, noting_errors
from asynclab.course.checking import fail, raised
from asynclab.standins import s08_capstone as capstone
from asynclab.standins.s08_capstone import GOOD_CARD, Order, journal, settings

STAFF = {"Authorization": "Bearer tok-ada"}
SERVICE = "08-capstone/orders_service.py"
_imports = itertools.count(1)


def service_file(answer: Any) -> Path:
    return module_file(answer, f"Pass the file: check(..., {SERVICE!r}).", what="service")


def import_service(path: Path) -> ModuleType:
    """A fresh copy of the learner's module: new module globals every time."""
    return import_fresh(path, f"orders_service_check_{next(_imports)}")


@contextmanager
def scenario(**changes: Any) -> Iterator[None]:
    saved = dataclasses.asdict(settings)
    for key, value in changes.items():
        setattr(settings, key, value)
    journal.reset()
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(settings, key, value)


@asynccontextmanager
async def orders_database() -> AsyncIterator[str]:
    async with temporary_database(name="orders", prefix="asynclab-orders-") as db:
        await capstone.prepare_database(db.url)
        yield db.url


app_errors: list[BaseException] = []  # what the learner's app raised in the current check


def _recording(app: Any) -> Any:
    """The app, noting any exception it raises (the client only sees a bare 500)."""
    return noting_errors(app, app_errors.append)


@asynccontextmanager
async def serving(path: Path, *, url: str | None = None, **changes: Any) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The learner's service with a new database (or the one at ``url``), started and stopped through its lifespan."""
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            url = await stack.enter_async_context(orders_database())
        with scenario(database_url=url, **changes):
            app = import_service(path).app
            app_errors.clear()
            journal.watch = LoopWatch()
            async with inprocess_client(app, raise_app_exceptions=False, wrap=_recording) as client:
                yield client, url
            gc.collect()


async def place_order(
    client: httpx.AsyncClient, email: str = "ada@example.com", card: str = GOOD_CARD, **kw: Any
) -> httpx.Response:
    headers = kw.pop("headers", STAFF)
    return await client.post("/orders", json={"email": email, "amount_cents": 1250, "card": card}, headers=headers, **kw)


def expect_created(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 201:
        cause = f"; {raised(app_errors[-1])}" if app_errors else ""
        fail(
            f"{what} answered {response.status_code}: {response.text[:160]}{cause}",
            "A good order from a staff member must still answer 201 with the order.",
        )
    body: dict[str, Any] = response.json()
    return body


async def stored_orders(url: str) -> list[dict[str, object]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(Order.id, Order.number, Order.email).order_by(Order.id))).all()
    finally:
        await engine.dispose()
    return [dict(row._mapping) for row in rows]
