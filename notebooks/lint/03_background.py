"""Anti-patterns from lesson 3, kept as a file so that ruff can lint it (it is never run)."""

import asyncio
import logging

from fastapi import FastAPI

app = FastAPI()
log = logging.getLogger("shop")
jobs: set[asyncio.Task[None]] = set()


async def send_welcome(email: str) -> None: ...


@app.post("/signup")
async def signup(email: str) -> dict[str, str]:
    asyncio.create_task(send_welcome(email))  # fire and forget: nothing holds the task
    return {"welcome": "on its way"}


@app.post("/resend")
async def resend(email: str) -> dict[str, str]:
    asyncio.ensure_future(send_welcome(email))  # the same mistake, older spelling
    return {"welcome": "on its way"}


@app.post("/guide")
async def guide(email: str) -> dict[str, str]:
    task = asyncio.create_task(send_welcome(email))  # stored: ruff is satisfied...
    jobs.add(task)
    task.add_done_callback(jobs.discard)  # ...but a failure is still never looked at
    return {"welcome": "on its way"}


def report(task: asyncio.Task[None]) -> None:
    jobs.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())


@app.post("/tracked")
async def tracked(email: str) -> dict[str, str]:
    task = asyncio.create_task(send_welcome(email), name=f"welcome mail to {email}")
    jobs.add(task)
    task.add_done_callback(report)  # kept, and its failure logged with context
    return {"welcome": "on its way"}
