"""Anti-patterns from lesson 1, kept as a file so that ruff can lint it (it is never run)."""

import time
import urllib.request

import httpx
from fastapi import FastAPI

app = FastAPI()


@app.get("/sleepy")
async def sleepy() -> dict[str, str]:
    time.sleep(0.2)  # blocks the event loop
    return {"status": "done"}


@app.get("/quote")
async def quote() -> str:
    response = httpx.get("https://quotes.example/today")  # a sync HTTP call inside async def
    return response.text


@app.get("/legacy")
async def legacy() -> bytes:
    with urllib.request.urlopen("https://legacy.example/feed") as feed:  # also sync I/O
        return feed.read()


@app.get("/fine")
def fine() -> dict[str, str]:
    time.sleep(0.2)  # a def handler runs in a worker thread: ruff does not flag it, and rightly so
    return {"status": "done"}
