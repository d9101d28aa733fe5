"""Anti-patterns from lesson 2, kept as a file so that ruff can lint it (it is never run)."""

import hashlib
import time
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException

app = FastAPI()
current_user = "nobody"


class TokenService:
    async def verify(self, token: str) -> str | None: ...


tokens = TokenService()


async def tenant_settings(x_tenant: str = Header()) -> dict[str, str]:
    time.sleep(0.15)  # a blocking call in an async def dependency: one request at a time
    return {"tenant": x_tenant}


async def password_ok(password: str = Header()) -> bool:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), b"salt", 50_000)  # 25 ms of CPU on the loop: ruff cannot tell
    return digest.hex() == "..."


async def caller(authorization: str = Header()) -> str:
    user = tokens.verify(authorization)  # no await: a coroutine object, always truthy, so anybody gets in
    if not user:
        raise HTTPException(status_code=401)
    return user


async def remember_user(x_user: str = Header()) -> None:
    global current_user  # one module global for every request (lesson 6): the last writer wins
    current_user = x_user


async def report_settings(settings: dict[str, str] = Depends(tenant_settings)) -> dict[str, str]:  # in a dependency: B008 only
    return settings


@app.get("/report", dependencies=[Depends(remember_user)])
async def report(
    settings: dict[str, str] = Depends(report_settings),  # the old style in a route: FAST002 and B008
    user: str = Depends(caller),  # FAST002 only: B008 lets a `str` parameter pass
) -> dict[str, str]:
    return {**settings, "user": user, "asked by": current_user}


def slow_settings(x_tenant: Annotated[str, Header()]) -> dict[str, str]:
    time.sleep(0.15)  # a def dependency runs in a worker thread: ruff does not flag it, and rightly so
    return {"tenant": x_tenant}


@app.get("/fine")
async def fine(settings: Annotated[dict[str, str], Depends(slow_settings)]) -> dict[str, str]:
    return settings
