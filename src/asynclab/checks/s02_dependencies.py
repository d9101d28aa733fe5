"""Checks for section 2, async dependencies."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, NoReturn

import httpx
from fastapi.exceptions import FastAPIError

from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.load import load
from asynclab.bench.loopwatch import LoopWatch
from asynclab.checks._harness import BURST_WAIT, IDLE, build_app, describe, watched
from asynclab.course.checking import exercise, fail
from asynclab.standins.s02_dependencies import PASSWORDS, TOKENS, Accounts, MemoDatabase, TokenService, memo_database

# --- 2.1 --------------------------------------------------------------------------------------------

USERS = sorted(PASSWORDS)


def basic_auth(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@exercise(
    "2.1",
    "Take password hashing off the loop",
    hints=[
        (
            "accounts.check_password() hashes the password: seconds of CPU per hundred logins, and inside `async def` it runs "
            "on the loop."
        ),
        "Hand the blocking call to a worker thread and await it, or let FastAPI do that by making the dependency a plain `def`.",
        "`ok = await anyio.to_thread.run_sync(accounts.check_password, credentials.username, credentials.password)`",
    ],
)
async def login_dependency(factory: Callable[[Accounts], Any]) -> str:
    watch = LoopWatch()
    accounts = watched(Accounts, watch, "check_password")
    accounts.record.burst_wait, accounts.record.idle = BURST_WAIT, IDLE
    app = build_app(factory, accounts)
    n = len(USERS)
    async with inprocess_client(app) as client:
        report = await load(client, "/me", n=n, headers=lambda i: basic_auth(USERS[i], PASSWORDS[USERS[i]]))
        wrong = await client.get("/me", headers=basic_auth("ada", "let-me-in"))
        stranger = await client.get("/me", headers=basic_auth("mallory", "analytical-engine"))
    for r in report.results:
        if r.status != 200 or r.body != {"user": USERS[r.index]}:
            fail(
                f"GET /me as {USERS[r.index]}, with the right password, answered {r.status} {str(r.body)[:100]}",
                "The right password must still get in: 200 with {'user': <name>}.",
            )
    for who, response in (("ada with a wrong password", wrong), ("an unknown user", stranger)):
        if response.status_code != 401:
            fail(
                f"GET /me as {who} answered {describe(response)}, not 401.",
                "Did you await the offloaded call? Without `await` you get a coroutine, and a coroutine is truthy.",
            )
    checks = accounts.record.of("check_password")
    if checks.calls < n + 2:
        fail(
            f"{n + 2} logins made only {checks.calls} calls to accounts.check_password()", "Every login must check its password."
        )
    if checks.on_loop:
        fail(
            (
                f"{checks.on_loop} of {checks.calls} password hashes ran on the event-loop thread: logins took turns, and so did "
                "everybody else."
            ),
            0,
        )
    if watch.loop_waited:
        fail(
            f"{watch.loop_waited} of {checks.calls} password hashes ran in another thread, but the event loop waited for "
            "each of them (it could run nothing else meanwhile): blocking on a thread's result (`future.result()`, "
            "`thread.join()`) blocks the loop just the same.",
            "Await the offloaded call (`await anyio.to_thread.run_sync(...)`), or make the dependency a plain `def`.",
        )
    if checks.peak < 2:  # every hash waits for the others (BURST_WAIT): a right answer shows all of them at once
        fail(
            f"{n} concurrent logins took turns: at most {checks.peak} password hash ran at once",
            "Let the hashes run in worker threads at the same time: await the offloaded call.",
        )
    return (
        f"{n} concurrent logins and 2 refused ones; {checks.calls} hashes, none on the event loop, up to {checks.peak} at once, "
        f"and the loop ran other work during every one of them."
    )


# --- 2.2 --------------------------------------------------------------------------------------------

REPORTS = {"reports": ["q1-revenue", "q2-revenue", "q3-forecast"]}


@exercise(
    "2.2",
    "Close the authentication bypass",
    reveals=("TokenService.verify",),
    hints=[
        "Find out what `user` is: print it (or its type) in current_user, then send a request with a made-up token.",
        (
            "tokens.verify is `async def`: called without `await`, its body never runs (the auth server is never asked) and "
            "you get a coroutine object, which is truthy and never None."
        ),
        (
            "`return await tokens.verify(token)` in authenticate: then `user` is a User or None, "
            "and `if user is None` tests the real answer."
        ),
    ],
)
async def token_dependency(factory: Callable[[TokenService], Any]) -> str:
    """A "find it" exercise: the first message says what a client sees; the forgotten `await` is named after a hint."""
    tokens = TokenService()  # made on the check's loop, which serves the app: its connection belongs to that loop
    app = build_app(factory, tokens)
    refused = [("without a token", {}), ("with a made-up token", {"Authorization": "Bearer tok-mallory-0000"})]

    async def get(path: str, how: str, headers: dict[str, str]) -> httpx.Response:
        try:
            return await client.get(path, headers=headers)
        except Exception as exc:
            if tokens.connection.strangers:
                _on_another_loop(f"GET {path} {how}", tokens.connection.strangers, exc)
            raise

    async with inprocess_client(app) as client:
        for path in ("/reports", "/me"):
            answers = {how: await get(path, how, headers) for how, headers in refused}
            let_in = [how for how, response in answers.items() if response.status_code == 200]
            if let_in:
                fail(f"GET {path} {' and '.join(let_in)} answered 200: anybody gets in.", 0)
            for how, response in answers.items():
                if response.status_code != 401:
                    fail(f"GET {path} {how} answered {describe(response)}, not 401.", 1)
        for token, user in TOKENS.items():
            auth = {"Authorization": f"Bearer {token}"}
            for path, expected in (("/reports", REPORTS), ("/me", {"name": user.name, "role": user.role})):
                response = await get(path, f"with {user.name}'s valid token", auth)
                if response.status_code != 200 or response.json() != expected:
                    fail(
                        f"GET {path} with {user.name}'s valid token answered {describe(response)}, expected 200 {expected}.",
                        2,
                    )
    return f"no token and a made-up token: 401 on both routes; {len(TOKENS)} valid tokens: 200 with the right user."


def _on_another_loop(request: str, strangers: list[str], error: Exception) -> NoReturn:
    """Fail: the learner's code ran the token service's coroutine on an event loop of its own, not the app's."""
    how = strangers[0]
    new_loop = "a new event loop (asyncio.run)" if how == "asyncio.run()" else "an event loop of its own"
    fail(
        f"{request}: tokens.verify() ran on {new_loop}, not on the app's: {how} starts a new loop for every request, "
        f"and the token service, like any async client, works only on the loop it was opened on "
        f"(it raised {type(error).__name__}: {error}).",
        "Make current_user `async def` and write `user = await tokens.verify(token)`: it then runs on the app's own loop.",
    )


# --- 2.3 --------------------------------------------------------------------------------------------

#: (request, expected status): successes, 404s raised by the handler, and a handler that crashes.
PLAN = [
    ("/memos/1", 200),
    ("/memos/99", 404),
    ("/memos/2/words", 200),
    ("/memos/3/words", 500),
    ("/memos/98", 404),
    ("/memos/4", 200),
]
WHY = {200: "", 404: " (the handler raised HTTPException(404))", 500: " (the handler crashed with ZeroDivisionError)"}


async def get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET ``path``; the handler's planned crash becomes the 500 a server would send, any other error is the learner's."""
    try:
        return await client.get(path)
    except ZeroDivisionError:
        if path != "/memos/3/words":
            raise
        return httpx.Response(500, text="Internal Server Error")
    except FastAPIError as exc:
        if "Response not awaited" not in str(exc):
            raise
        fail(
            f"GET {path} ended in a 500 with FastAPI's error \"Response not awaited\" instead of the handler's answer: "
            "your dependency caught the handler's exception and did not raise it again.",
            "If you catch an exception around `yield`, end the except block with `raise`.",
        )


@exercise(
    "2.3",
    "Always give the connection back",
    hints=[
        (
            "When the handler raises, FastAPI throws its exception into your dependency at the `yield`. Once your `except` "
            "block raises it again, the lines after the `try` statement no longer run, and the session stays open."
        ),
        (
            "Close the session in a `finally:` block, or let `async with db.Session() as session:` close it for you; "
            "and end the `except` block with `raise`."
        ),
        (
            "Put the whole `try` inside `async with db.Session() as session:`, with `yield session` in it, "
            "and end the `except` block with `raise`."
        ),
    ],
)
async def session_dependency(factory: Callable[[MemoDatabase], Any]) -> str:
    async with memo_database(pool_size=3, pool_timeout=0.3) as db:
        app = build_app(factory, db)
        async with inprocess_client(app) as client:
            for path, status in PLAN:
                response = await get(client, path)
                if response.status_code != status:
                    fail(
                        f"GET {path} answered {describe(response)}, expected {status}{WHY[status]}.",
                        "Keep the routes as they are: change only get_session.",
                    )
                if db.checked_out:
                    fail(
                        f"after GET {path} answered {status}{WHY[status]}, the pool still lent {db.checked_out} of its "
                        f"{db.pool_size} connections: a session was not closed.",
                        0 if status != 200 else 1,
                    )
            burst = await load(client, "/memos/1", n=6)
        if burst.statuses[200] != 6:
            fail(f"6 concurrent GET /memos/1 answered {dict(burst.statuses)}", 1)
        if db.checked_out or db.checkouts != db.checkins:
            fail(f"after 6 concurrent requests, {db.checked_out} connections were still checked out", 1)
        return f"{len(PLAN) + 6} requests (3 failing in the handler): {db.checkouts} connections taken, {db.checkins} given back."
