"""Section 2: each check accepts different correct answers and rejects plausible wrong ones.

No `from __future__ import annotations` here: FastAPI must see the real annotations of the
dependencies defined inside functions (strings could not be resolved from the module's globals).
"""

import asyncio
import concurrent.futures
import logging
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from asynclab.course import checking, unawaited
from asynclab.standins.s01_handlers import WeatherService
from asynclab.standins.s02_dependencies import PASSWORDS, Accounts, Memo, MemoDatabase, TokenService, User
from tests.conftest import fails, passes

# --- 2.1 -------------------------------------------------------------------------------------------

Login = Callable[[Accounts], Callable[..., Any]]
security = HTTPBasic()
Credentials = Annotated[HTTPBasicCredentials, Depends(security)]


def refuse() -> HTTPException:
    return HTTPException(401, "wrong username or password", headers={"WWW-Authenticate": "Basic"})


def login_app(dependency: Login) -> Callable[[Accounts], FastAPI]:
    def build(accounts: Accounts) -> FastAPI:
        app = FastAPI()
        current_user = dependency(accounts)

        @app.get("/me")
        async def me(user: Annotated[str, Depends(current_user)]) -> dict[str, str]:
            return {"user": user}

        return app

    return build


def offload_with_anyio(accounts: Accounts) -> Callable[..., Any]:
    async def current_user(credentials: Credentials) -> str:
        if not await anyio.to_thread.run_sync(accounts.check_password, credentials.username, credentials.password):
            raise refuse()
        return credentials.username

    return current_user


def plain_def_dependency(accounts: Accounts) -> Callable[..., Any]:
    def current_user(credentials: Credentials) -> str:
        if not accounts.check_password(credentials.username, credentials.password):
            raise refuse()
        return credentials.username

    return current_user


def offload_with_starlette(accounts: Accounts) -> Callable[..., Any]:
    async def current_user(credentials: Credentials) -> str:
        ok = await run_in_threadpool(accounts.check_password, credentials.username, credentials.password)
        if not ok:
            raise refuse()
        return credentials.username

    return current_user


def offload_with_asyncio(accounts: Accounts) -> Callable[..., Any]:
    async def current_user(credentials: Credentials) -> str:
        if not await asyncio.to_thread(accounts.check_password, credentials.username, credentials.password):
            raise refuse()
        return credentials.username

    return current_user


def hashes_on_the_loop(accounts: Accounts) -> Callable[..., Any]:
    async def current_user(credentials: Credentials) -> str:
        if not accounts.check_password(credentials.username, credentials.password):
            raise refuse()
        return credentials.username

    return current_user


def awaits_something_else_first(accounts: Accounts) -> Callable[..., Any]:
    async def current_user(credentials: Credentials) -> str:
        await asyncio.sleep(0)  # an await elsewhere does not make the hash non-blocking
        if not accounts.check_password(credentials.username, credentials.password):
            raise refuse()
        return credentials.username

    return current_user


def calls_before_offloading(accounts: Accounts) -> Callable[..., Any]:
    async def current_user(credentials: Credentials) -> str:
        ok = await anyio.to_thread.run_sync(accounts.check_password(credentials.username, credentials.password))  # type: ignore[arg-type]
        if not ok:
            raise refuse()
        return credentials.username

    return current_user


def offloads_without_await(accounts: Accounts) -> Callable[..., Any]:
    async def current_user(credentials: Credentials) -> str:
        ok = anyio.to_thread.run_sync(accounts.check_password, credentials.username, credentials.password)
        if not ok:
            raise refuse()
        return credentials.username

    return current_user


def test_2_1_accepts_offloading_and_a_def_dependency() -> None:
    for answer in (offload_with_anyio, plain_def_dependency, offload_with_starlette, offload_with_asyncio):
        said = passes("2.1", login_app(answer))  # latency: python -m asynclab bench-checks
        # each hash waits for the other logins' (BURST_WAIT): all of them at once, however busy the machine
        assert f"none on the event loop, up to {len(PASSWORDS)} at once" in said, said


def test_2_1_rejects_the_handed_out_dependency() -> None:
    fails("2.1", login_app(hashes_on_the_loop), saying="10 of 10 password hashes ran on the event-loop thread")


def test_2_1_rejects_an_await_elsewhere() -> None:
    fails("2.1", login_app(awaits_something_else_first), saying="password hashes ran on the event-loop thread")


def test_2_1_rejects_calling_before_offloading() -> None:
    failure = fails(
        "2.1", login_app(calls_before_offloading), saying="`run_sync()` was given the result of `accounts.check_password("
    )
    assert "`run_sync(accounts.check_password, credentials.username, credentials.password)`" in failure.hint


def test_2_1_rejects_an_offload_that_is_not_awaited() -> None:
    failure = fails("2.1", login_app(offloads_without_await), saying="GET /me as ada with a wrong password answered 200")
    assert "Python also saw this: `current_user()` called `anyio.to_thread.run_sync(...)` and never awaited" in failure.observed


# --- 2.2 -------------------------------------------------------------------------------------------

Verifier = Callable[[TokenService], Callable[..., Any]]


def reports_app(dependency: Verifier) -> Callable[[TokenService], FastAPI]:
    def build(tokens: TokenService) -> FastAPI:
        app = FastAPI()
        current_user = dependency(tokens)

        @app.get("/reports", dependencies=[Depends(current_user)])
        async def reports() -> dict[str, list[str]]:
            return {"reports": ["q1-revenue", "q2-revenue", "q3-forecast"]}

        @app.get("/me")
        async def me(user: Annotated[User, Depends(current_user)]) -> dict[str, str]:
            return {"name": user.name, "role": user.role}

        return app

    return build


def not_authenticated() -> HTTPException:
    return HTTPException(401, "not authenticated", headers={"WWW-Authenticate": "Bearer"})


def awaits_the_verification(tokens: TokenService) -> Callable[..., Any]:
    async def current_user(authorization: Annotated[str | None, Header()] = None) -> User:
        user = await tokens.verify((authorization or "").removeprefix("Bearer "))
        if not user:
            raise not_authenticated()
        return user

    return current_user


def uses_http_bearer(tokens: TokenService) -> Callable[..., Any]:
    bearer = HTTPBearer(auto_error=False)

    async def current_user(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> User:
        if credentials is None:
            raise not_authenticated()
        user = await tokens.verify(credentials.credentials)
        if user is None:
            raise not_authenticated()
        return user

    return current_user


def forgets_the_await(tokens: TokenService) -> Callable[..., Any]:
    async def current_user(authorization: Annotated[str | None, Header()] = None) -> User:
        user = tokens.verify((authorization or "").removeprefix("Bearer "))
        if not user:
            raise not_authenticated()
        return user  # type: ignore[return-value]

    return current_user


def checks_is_none_without_await(tokens: TokenService) -> Callable[..., Any]:
    async def current_user(authorization: Annotated[str | None, Header()] = None) -> User:
        user = tokens.verify((authorization or "").removeprefix("Bearer "))
        if user is None:
            raise not_authenticated()
        return user  # type: ignore[return-value]

    return current_user


def only_checks_a_header_is_there(tokens: TokenService) -> Callable[..., Any]:
    async def current_user(authorization: Annotated[str | None, Header()] = None) -> User | None:
        if not authorization:
            raise not_authenticated()
        return await tokens.verify(authorization.removeprefix("Bearer "))

    return current_user


def runs_a_new_event_loop(tokens: TokenService) -> Callable[..., Any]:
    async def current_user(authorization: Annotated[str | None, Header()] = None) -> User:
        user = asyncio.run(tokens.verify((authorization or "").removeprefix("Bearer ")))
        if not user:
            raise not_authenticated()
        return user

    return current_user


def a_new_event_loop_per_request(tokens: TokenService) -> Callable[..., Any]:
    def current_user(authorization: Annotated[str | None, Header()] = None) -> User:  # a worker thread: no running loop
        user = asyncio.run(tokens.verify((authorization or "").removeprefix("Bearer ")))
        if not user:
            raise not_authenticated()
        return user

    return current_user


def test_2_2_accepts_an_await_and_http_bearer() -> None:
    for answer in (awaits_the_verification, uses_http_bearer):
        assert "401 on both routes" in passes("2.2", reports_app(answer))


def test_2_2_rejects_the_handed_out_bypass_by_its_symptom_then_names_the_forgotten_await() -> None:
    """A "find it" exercise: the first message says what a client sees; once a hint was shown, the cause too."""
    exercise = checking.get("2.2")
    exercise.last_observed, exercise.hints_given = None, 0
    failure = fails(
        "2.2",
        reports_app(forgets_the_await),
        saying="GET /reports without a token and with a made-up token answered 200: anybody gets in.",
    )
    assert "await" not in str(failure) and "coroutine" not in str(failure)
    assert "The same as your previous check" not in str(failure)
    again = fails("2.2", reports_app(forgets_the_await), saying="anybody gets in.")
    assert "Python also saw this: `current_user()` called `tokens.verify(...)` and never awaited" in again.observed


def test_2_2_a_right_answer_is_not_failed_by_a_coroutine_another_answer_left_behind() -> None:
    """A coroutine made (and dropped in a reference cycle) before the check is not this answer's."""

    def leave_one_behind() -> None:
        unawaited.track_origins()
        cycle: list[object] = []
        cycle.append([cycle, WeatherService().afetch("oslo")])

    thread = threading.Thread(target=leave_one_behind)
    thread.start()
    thread.join()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Python's own warning for it, printed as it goes
        assert "401 on both routes" in passes("2.2", reports_app(awaits_the_verification))


def test_2_2_rejects_is_none_without_await_and_says_nothing_changed() -> None:
    """Testing `is None` without awaiting behaves exactly as the handed-out code: the message says so."""
    checking.get("2.2").last_observed = None
    fails("2.2", reports_app(forgets_the_await), saying="anybody gets in.")
    again = fails("2.2", reports_app(checks_is_none_without_await), saying="anybody gets in.")
    assert str(again.observed).endswith("(The same as your previous check: the app still behaves as it did then.)")


def test_2_2_rejects_a_header_check_that_lets_bad_tokens_in() -> None:
    fails("2.2", reports_app(only_checks_a_header_is_there), saying="GET /reports with a made-up token answered 200")


def test_2_2_rejects_asyncio_run() -> None:
    fails("2.2", reports_app(runs_a_new_event_loop), saying="asyncio.run() cannot be called from a running event loop")


def test_2_2_rejects_a_new_event_loop_per_request() -> None:
    """A `def` dependency may call asyncio.run(): a new loop per request, which a client tied to the app's loop refuses."""
    failure = fails(
        "2.2",
        reports_app(a_new_event_loop_per_request),
        saying="tokens.verify() ran on a new event loop (asyncio.run), not on the app's",
    )
    assert "RuntimeError" in failure.observed and "await tokens.verify(token)" in failure.hint


# --- 2.3 -------------------------------------------------------------------------------------------

SessionDependency = Callable[[MemoDatabase], Callable[..., Any]]


def memos_app(dependency: SessionDependency) -> Callable[[MemoDatabase], FastAPI]:
    def build(db: MemoDatabase) -> FastAPI:
        app = FastAPI()
        get_session = dependency(db)

        @app.get("/memos/{memo_id}")
        async def read_memo(memo_id: int, session: Annotated[AsyncSession, Depends(get_session)]) -> dict[str, object]:
            memo = await session.get(Memo, memo_id)
            if memo is None:
                raise HTTPException(404, "no such memo")
            return {"id": memo.id, "text": memo.text}

        @app.get("/memos/{memo_id}/words")
        async def average_word_length(memo_id: int, session: Annotated[AsyncSession, Depends(get_session)]) -> dict[str, float]:
            memo = await session.get(Memo, memo_id)
            if memo is None:
                raise HTTPException(404, "no such memo")
            words = memo.text.split()
            return {"average": sum(len(w) for w in words) / len(words)}

        return app

    return build


def async_with(db: MemoDatabase) -> Callable[..., Any]:
    async def get_session() -> AsyncIterator[AsyncSession]:
        async with db.Session() as session:
            yield session

    return get_session


def try_finally(db: MemoDatabase) -> Callable[..., Any]:
    async def get_session() -> AsyncIterator[AsyncSession]:
        session = db.Session()
        try:
            yield session
        finally:
            await session.close()

    return get_session


def rollback_and_reraise(db: MemoDatabase) -> Callable[..., Any]:
    async def get_session() -> AsyncIterator[AsyncSession]:
        session = db.Session()
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        finally:
            await session.close()

    return get_session


def close_after_yield(db: MemoDatabase) -> Callable[..., Any]:
    async def get_session() -> AsyncIterator[AsyncSession]:
        session = db.Session()
        yield session
        await session.close()

    return get_session


def swallows_the_error(db: MemoDatabase) -> Callable[..., Any]:
    async def get_session() -> AsyncIterator[AsyncSession]:
        session = db.Session()
        try:
            yield session
        except Exception:  # noqa: BLE001 - the mistake under test: the error is swallowed
            await session.rollback()
        finally:
            await session.close()

    return get_session


def returns_without_yield(db: MemoDatabase) -> Callable[..., Any]:
    async def get_session() -> AsyncSession:
        return db.Session()

    return get_session


def one_session_for_the_app(db: MemoDatabase) -> Callable[..., Any]:
    shared = db.Session()

    async def get_session() -> AsyncIterator[AsyncSession]:
        yield shared

    return get_session


def sync_generator_with_finally(db: MemoDatabase) -> Callable[..., Any]:
    def get_session() -> Iterator[AsyncSession]:
        session = db.Session()
        try:
            yield session
        finally:
            anyio.from_thread.run(session.close)

    return get_session


def test_2_3_accepts_async_with_and_try_finally() -> None:
    for answer in (async_with, try_finally, rollback_and_reraise, sync_generator_with_finally):
        assert "12 given back" in passes("2.3", memos_app(answer))


def test_2_3_rejects_the_handed_out_close_after_yield() -> None:
    fails(
        "2.3",
        memos_app(close_after_yield),
        saying="after GET /memos/99 answered 404 (the handler raised HTTPException(404)), the pool still lent 1 of its 3 connections",
    )


def test_2_3_rejects_swallowing_the_error() -> None:
    fails(
        "2.3", memos_app(swallows_the_error), saying='GET /memos/99 ended in a 500 with FastAPI\'s error "Response not awaited"'
    )


def test_2_3_rejects_a_session_that_is_never_closed() -> None:
    fails("2.3", memos_app(returns_without_yield), saying="after GET /memos/1 answered 200, the pool still lent 1")
    fails("2.3", memos_app(one_session_for_the_app), saying="after GET /memos/1 answered 200, the pool still lent 1")


# Root cause 1: off the loop's thread is not enough; the loop must stay free while the hash runs.

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-2-1")


def waits_for_a_future(accounts: Accounts) -> Callable[..., Any]:
    """Wrong: the hash runs in a pool thread, and the loop blocks in .result() until it is done."""

    async def current_user(credentials: Credentials) -> str:
        if not _pool.submit(accounts.check_password, credentials.username, credentials.password).result():
            raise refuse()
        return credentials.username

    return current_user


def joins_a_thread(accounts: Accounts) -> Callable[..., Any]:
    """Wrong: a new thread per login, joined from the event loop."""

    async def current_user(credentials: Credentials) -> str:
        answer: list[bool] = []
        worker = threading.Thread(
            target=lambda: answer.append(accounts.check_password(credentials.username, credentials.password))
        )
        worker.start()
        worker.join()
        if not answer[0]:
            raise refuse()
        return credentials.username

    return current_user


def run_in_executor(accounts: Accounts) -> Callable[..., Any]:
    """New, correct: the loop's own executor, awaited."""

    async def current_user(credentials: Credentials) -> str:
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, accounts.check_password, credentials.username, credentials.password):
            raise refuse()
        return credentials.username

    return current_user


def test_2_1_accepts_the_loops_executor() -> None:
    assert "the loop ran other work during every one of them" in passes("2.1", login_app(run_in_executor))


def test_2_1_rejects_waiting_for_a_future_on_the_loop() -> None:
    fails(
        "2.1", login_app(waits_for_a_future), saying="10 of 10 password hashes ran in another thread, but the event loop waited"
    )


def test_2_1_rejects_joining_a_thread_on_the_loop() -> None:
    fails("2.1", login_app(joins_a_thread), saying="password hashes ran in another thread, but the event loop waited for each")


# 2.2 and 2.3 as handed out: a helper that forgets its `await`; a rollback that swallows the handler's error.


def a_helper_that_forgets_the_await(tokens: TokenService) -> Callable[..., Any]:
    """As handed out: current_user awaits a helper, and the helper returns tokens.verify(...) unawaited."""

    async def authenticate(token: str) -> User | None:
        if not token:
            return None
        return tokens.verify(token)  # type: ignore[return-value]

    async def current_user(authorization: Annotated[str | None, Header()] = None) -> User:
        user = await authenticate((authorization or "").removeprefix("Bearer "))
        if user is None:
            raise not_authenticated()
        return user

    return current_user


def a_helper_that_awaits(tokens: TokenService) -> Callable[..., Any]:
    async def authenticate(token: str) -> User | None:
        if not token:
            return None
        return await tokens.verify(token)

    async def current_user(authorization: Annotated[str | None, Header()] = None) -> User:
        user = await authenticate((authorization or "").removeprefix("Bearer "))
        if user is None:
            raise not_authenticated()
        return user

    return current_user


def test_2_2_accepts_the_helper_once_it_awaits() -> None:
    assert "401 on both routes" in passes("2.2", reports_app(a_helper_that_awaits))


def test_2_2_rejects_the_handed_out_helper_by_its_symptom_then_names_the_forgotten_await() -> None:
    """No token is refused as handed out; a made-up one gets in. The forgotten await is named only after a hint."""
    exercise = checking.get("2.2")
    exercise.last_observed, exercise.hints_given = None, 0
    failure = fails(
        "2.2",
        reports_app(a_helper_that_forgets_the_await),
        saying="GET /reports with a made-up token answered 200: anybody gets in.",
    )
    assert "without a token" not in str(failure)
    assert "await" not in str(failure) and "coroutine" not in str(failure)
    again = fails("2.2", reports_app(a_helper_that_forgets_the_await), saying="anybody gets in.")
    assert "Python also saw this: `authenticate()` called `tokens.verify(token)` and never awaited" in again.observed


memo_log = logging.getLogger("memos")


def logs_and_swallows(db: MemoDatabase) -> Callable[..., Any]:
    """As handed out: logs the handler's exception, swallows it, and closes after the try."""

    async def get_session() -> AsyncIterator[AsyncSession]:
        session = db.Session()
        try:
            yield session
        except Exception as exc:  # noqa: BLE001 - the mistake under test: the error is swallowed
            memo_log.warning("memo request failed: %r", exc)
        await session.close()

    return get_session


def reraises_but_closes_after_the_try(db: MemoDatabase) -> Callable[..., Any]:
    """The first failure's advice alone: the error is raised again, so the close after the try no longer runs."""

    async def get_session() -> AsyncIterator[AsyncSession]:
        session = db.Session()
        try:
            yield session
        except Exception as exc:
            memo_log.warning("memo request failed: %r", exc)
            raise
        await session.close()

    return get_session


def async_with_log_and_raise(db: MemoDatabase) -> Callable[..., Any]:
    async def get_session() -> AsyncIterator[AsyncSession]:
        async with db.Session() as session:
            try:
                yield session
            except Exception as exc:
                memo_log.warning("memo request failed: %r", exc)
                raise

    return get_session


def rollback_also_gives_the_connection_back(db: MemoDatabase) -> Callable[..., Any]:
    """Also right: SQLAlchemy's rollback() hands the connection back to the pool, so a rollback and a raise suffice."""

    async def get_session() -> AsyncIterator[AsyncSession]:
        session = db.Session()
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        await session.close()

    return get_session


def test_2_3_accepts_a_log_and_raise_inside_async_with_or_a_rollback() -> None:
    for answer in (async_with_log_and_raise, rollback_also_gives_the_connection_back):
        assert "12 given back" in passes("2.3", memos_app(answer))


def test_2_3_rejects_the_handed_out_log_that_swallows_the_error() -> None:
    failure = fails(
        "2.3", memos_app(logs_and_swallows), saying='GET /memos/99 ended in a 500 with FastAPI\'s error "Response not awaited"'
    )
    assert "`raise`" in failure.hint


def test_2_3_rejects_a_raise_that_skips_the_close() -> None:
    fails(
        "2.3",
        memos_app(reraises_but_closes_after_the_try),
        saying="after GET /memos/99 answered 404 (the handler raised HTTPException(404)), the pool still lent 1 of its 3 connections",
    )
