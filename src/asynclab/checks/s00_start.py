"""The warm-up exercise of the start-here notebook: it only shows how checks work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asynclab.bench.inprocess import inprocess_client
from asynclab.checks._harness import build_app
from asynclab.course.checking import exercise, fail


@exercise(
    "0.1",
    "Say hello",
    hints=[
        'GET /hello must answer with the JSON object {"message": "hello"}.',
        "Return a dict from the handler: FastAPI turns it into JSON.",
        '`return {"message": "hello"}`, with the return annotation to match: `async def hello() -> dict[str, str]:`',
    ],
)
async def say_hello(factory: Callable[[], Any]) -> str:
    app = build_app(factory)
    async with inprocess_client(app) as client:
        response = await client.get("/hello")
    if response.status_code != 200:
        fail(f"GET /hello answered {response.status_code}", "Is the route's path exactly /hello?")
    if response.headers.get("content-type") != "application/json" or response.json() != {"message": "hello"}:
        fail(f"GET /hello answered {response.text!r}", 0)
    return 'GET /hello answered {"message": "hello"}.'
