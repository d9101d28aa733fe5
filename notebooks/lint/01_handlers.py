"""Anti-patterns from lesson 1, kept as a file so that ruff can lint it (it is never run)."""

import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

app = FastAPI()


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)


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


async def get_db() -> AsyncIterator[AsyncSession]:
    async with AsyncSession() as session:
        yield session


@app.get("/users/{user_id}")
def get_user(user_id: int, db: Annotated[AsyncSession, Depends(get_db)]) -> object:
    user = db.execute(select(User).where(User.id == user_id))  # the guide's "sync handler": never awaited, a 500
    return user.scalar_one_or_none()
