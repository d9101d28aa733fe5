"""Anti-patterns from lesson 5, kept as a file so that ruff can lint it (it is never run)."""

import logging
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

app = FastAPI()
log = logging.getLogger("shop")


class Base(DeclarativeBase): ...


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


async def session() -> AsyncSession: ...


@app.get("/users/{user_id}")
async def get_user(user_id: int, db: Annotated[AsyncSession, Depends(session)]) -> Any:
    try:
        result = await db.execute(select(User).where(User.id == user_id))
        if not result.scalar():
            raise HTTPException(status_code=404, detail="User not found")  # caught below: every 404 becomes a 500
        return result.scalar()  # a result is read once: ResourceClosedError, another 500
    except TimeoutError:  # nothing sets a deadline, so nothing ever lands here
        log.error("Database query timeout", extra={"user_id": user_id})
        raise HTTPException(status_code=503, detail="Service unavailable")
    except Exception as exc:  # logs the traceback, so BLE001 lets it pass
        log.error("Unexpected error", exc_info=exc, extra={"user_id": user_id})
        raise HTTPException(status_code=500, detail="Internal server error")


@app.get("/v1/users/{user_id}")
async def get_user_first_version(user_id: int, db: Annotated[AsyncSession, Depends(session)]) -> Any:
    user = await db.execute(select(User).where(User.id == user_id))
    return user.scalar_one_or_none()  # the guide's section 1: a missing user answers 200 null, not 404


def fetch_rates() -> dict[str, float]: ...  # a sync SDK call that can hang


@app.get("/rates")
async def rates() -> dict[str, float]:
    with anyio.fail_after(2):  # shields the thread: nothing happens at 2 s, and maybe no TimeoutError at all
        return await anyio.to_thread.run_sync(fetch_rates)


@app.delete("/users/{user_id}")
async def delete_user(user_id: int, db: Annotated[AsyncSession, Depends(session)]) -> dict[str, bool]:
    try:
        await db.delete(await db.get_one(User, user_id))
        await db.commit()
    except Exception:  # swallowed: no log, no re-raise, and the client hears "not deleted"
        return {"deleted": False}
    return {"deleted": True}


@app.exception_handler(ValueError)
async def value_error(request: Request, exc: ValueError) -> JSONResponse:
    return JSONResponse(status_code=400, content={"detail": "Invalid request"})  # our own bugs, blamed on the client


@app.exception_handler(Exception)
async def anything(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=500, content={"detail": "Error"})  # no log line, no request context
