"""Section 6: the checks accept several right answers and reject plausible wrong ones, saying why."""

# No `from __future__ import annotations` here: FastAPI must resolve the handlers' local Annotated aliases.

import asyncio
import contextlib
import gc
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Annotated, Any

import anyio
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from asynclab.standins import s06_isolation as s06
from asynclab.standins.s06_isolation import AuditLog, Moderation, Note, OrderBook
from tests.conftest import fails, passes

# --- 6.1 · one session per request -----------------------------------------------------------------


class NoteIn(BaseModel):
    owner: str
    text: str


GetSession = Callable[..., Any]


def notes_routes(app: FastAPI, get_session: GetSession, moderation: Moderation, *, commit: bool = True) -> FastAPI:
    """The routes of exercise 6.1; ``commit=False`` leaves committing (and rolling back) to the dependency."""
    Session = Annotated[AsyncSession, Depends(get_session)]

    @app.post("/notes", status_code=201)
    async def add_note(note: NoteIn, session: Session) -> dict[str, object]:
        row = Note(tenant="acme", owner=note.owner, text=note.text)
        session.add(row)
        if not await moderation.check(note.text):
            if commit:
                await session.rollback()
            raise HTTPException(422, "rejected by moderation")
        if commit:
            await session.commit()
        else:
            await session.flush()  # the dependency commits; flush to learn the id
        return row.as_dict()

    @app.get("/notes/{note_id}")
    async def get_note(note_id: int, session: Session) -> dict[str, object]:
        row = await session.get(Note, note_id)
        if row is None:
            raise HTTPException(404, "no such note")
        return row.as_dict()

    @app.get("/notes")
    async def notes_of(owner: str, session: Session) -> list[dict[str, object]]:
        rows = await session.scalars(select(Note).where(Note.owner == owner).order_by(Note.id))
        return [r.as_dict() for r in rows]

    return app


def engine_lifespan(url: str) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine = create_async_engine(url)
        try:
            yield {"sessions": async_sessionmaker(engine, expire_on_commit=False)}
        finally:
            await engine.dispose()

    return lifespan


# Right answers


def lifespan_state_sessionmaker(url: str, moderation: Moderation) -> FastAPI:
    """The solution: lifespan state holds a sessionmaker; a yield dependency opens one session per request."""

    async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.state.sessions() as session:
            yield session

    return notes_routes(FastAPI(lifespan=engine_lifespan(url)), get_session, moderation)


def app_state_engine(url: str, moderation: Moderation) -> FastAPI:
    """The engine on app.state, and a plain AsyncSession per request."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = create_async_engine(url)
        yield
        await app.state.engine.dispose()

    async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
        async with AsyncSession(request.app.state.engine, expire_on_commit=False) as session:
            yield session

    return notes_routes(FastAPI(lifespan=lifespan), get_session, moderation)


def dependency_owns_the_transaction(url: str, moderation: Moderation) -> FastAPI:
    """`sessions.begin()` in the dependency: commit after the handler, roll back if it raised."""

    async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.state.sessions.begin() as session:
            yield session

    return notes_routes(FastAPI(lifespan=engine_lifespan(url)), get_session, moderation, commit=False)


def test_61_accepts_a_sessionmaker_in_lifespan_state() -> None:
    assert "50 mixed concurrent requests gave no errors" in passes("6.1", lifespan_state_sessionmaker)


def test_61_accepts_an_engine_on_app_state() -> None:
    passes("6.1", app_state_engine)


def test_61_accepts_a_dependency_that_owns_the_transaction() -> None:
    passes("6.1", dependency_owns_the_transaction)


# Wrong answers


def handed_out(url: str, moderation: Moderation) -> FastAPI:
    engine = create_async_engine(url)
    session = AsyncSession(engine, expire_on_commit=False)

    async def get_session() -> AsyncSession:
        return session

    return notes_routes(FastAPI(), get_session, moderation)


def one_session_in_lifespan_state(url: str, moderation: Moderation) -> FastAPI:
    """Moved into the lifespan, but still one session for the whole app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine = create_async_engine(url)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield {"session": session}
        await engine.dispose()

    async def get_session(request: Request) -> AsyncSession:
        return request.state.session

    return notes_routes(FastAPI(lifespan=lifespan), get_session, moderation)


def shared_session_behind_a_lock(url: str, moderation: Moderation) -> FastAPI:
    """One session, and a lock so that only one request uses it at a time: correct, and one at a time."""
    engine = create_async_engine(url)
    session = AsyncSession(engine, expire_on_commit=False)
    lock = anyio.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await session.close()
        await engine.dispose()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with lock:
            yield session

    return notes_routes(FastAPI(lifespan=lifespan), get_session, moderation)


def never_commits(url: str, moderation: Moderation) -> FastAPI:
    """The guide's dependency (`yield` inside `async with`, plus a redundant close), and no commit anywhere."""

    async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.state.sessions() as session:
            try:
                yield session
            finally:
                await session.close()

    return notes_routes(FastAPI(lifespan=engine_lifespan(url)), get_session, moderation, commit=False)


def engine_never_disposed(url: str, moderation: Moderation) -> FastAPI:
    """A session per request, but the engine is made with the app and never closed."""
    sessions = async_sessionmaker(create_async_engine(url), expire_on_commit=False)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    return notes_routes(FastAPI(), get_session, moderation)


def engine_per_request(url: str, moderation: Moderation) -> FastAPI:
    """A new engine (and pool) for every request."""

    async def get_session() -> AsyncIterator[AsyncSession]:
        engine = create_async_engine(url)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                yield session
        finally:
            await engine.dispose()

    return notes_routes(FastAPI(), get_session, moderation)


def sessions_that_expire_on_commit(url: str, moderation: Moderation) -> FastAPI:
    """Right structure, but the default expire_on_commit=True: reading the note after commit() needs I/O."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine = create_async_engine(url)
        yield {"sessions": async_sessionmaker(engine)}
        await engine.dispose()

    async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.state.sessions() as session:
            yield session

    return notes_routes(FastAPI(lifespan=lifespan), get_session, moderation)


def test_61_fails_as_handed_out() -> None:
    failure = fails("6.1", handed_out, saying="answered 201 with id None: the note was never written to the database")
    assert "is the session shared" in failure.hint


def test_61_rejects_one_session_kept_in_lifespan_state() -> None:
    fails("6.1", one_session_in_lifespan_state, saying="accepted while another was rejected) answered 201 with id None")


def test_61_rejects_a_shared_session_behind_a_lock() -> None:
    fails("6.1", shared_session_behind_a_lock, saying="but only 1 reached the moderation check at the same time")


def test_61_rejects_a_session_that_never_commits() -> None:
    failure = fails("6.1", never_commits, saying="but that note is not in the database")
    assert "commit()" in failure.hint


def test_61_rejects_an_engine_that_is_never_disposed() -> None:
    fails("6.1", engine_never_disposed, saying="connection(s) to the database were still open")


def test_61_rejects_sessions_that_expire_on_commit() -> None:
    with warnings.catch_warnings():  # SQLAlchemy leaves a "coroutine was never awaited" behind: keep it in this test
        warnings.simplefilter("ignore", RuntimeWarning)
        failure = fails(
            "6.1", sessions_that_expire_on_commit, saying="(one request, nothing else running) answered 500; the app raised"
        )
        failure.__traceback__ = None
        gc.collect()
    assert "expire_on_commit=False" in failure.hint


def test_61_rejects_an_engine_per_request() -> None:
    fails("6.1", engine_per_request, saying="different engines")


def record_kinds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The engines of the notes databases the checks make from now on, in order."""
    made: list[str] = []
    real = s06.bench_database

    @asynccontextmanager
    async def noting(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with real(*args, **kwargs) as database:
            made.append(database.kind)
            yield database

    monkeypatch.setattr(s06, "bench_database", noting)
    return made


def test_61_on_postgres_right_and_wrong_answers(on_postgres: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same verdicts on PostgreSQL (asyncpg), where the writes of different sessions do not wait for each other."""
    kinds = record_kinds(monkeypatch)
    passes("6.1", lifespan_state_sessionmaker)
    passes("6.1", dependency_owns_the_transaction)
    fails("6.1", handed_out, saying="answered 201 with id None: the note was never written to the database")
    fails("6.1", shared_session_behind_a_lock, saying="but only 1 reached the moderation check at the same time")
    fails("6.1", engine_never_disposed, saying="connection(s) to the database were still open")
    assert kinds == ["postgres"] * 5


# --- 6.2 · whose request is this? ------------------------------------------------------------------
#
# A request without X-User and X-Tenant is anonymous: GET /me answers {"user": None, "tenant": None},
# the notes routes answer 401. The check also serves the app with real uvicorn (h11) and sends
# anonymous requests after signed-in ones on one keep-alive connection.


class NoteText(BaseModel):
    text: str


Pair = tuple[str | None, str | None]
XUser = Annotated[str | None, Header()]
XTenant = Annotated[str | None, Header()]


def tenant_service(url: str, audit: AuditLog, who: Callable[..., Any], identify: Callable[..., Any] | None = None) -> FastAPI:
    """The routes of exercise 6.2. ``identify`` runs as a route dependency; ``who`` (a dependency) says who is asking."""
    app = FastAPI(lifespan=engine_lifespan(url))

    async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.state.sessions() as session:
            yield session

    Session = Annotated[AsyncSession, Depends(get_session)]
    Caller = Annotated[Any, Depends(who)]
    deps = [Depends(identify)] if identify else []

    @app.get("/me", dependencies=deps)
    async def me(caller: Caller) -> dict[str, str | None]:
        await audit.record("GET /me")
        user, tenant = await caller_now(caller)
        return {"user": user, "tenant": tenant}

    @app.get("/notes", dependencies=deps)
    async def tenant_notes(caller: Caller, session: Session) -> list[dict[str, object]]:
        await audit.record("GET /notes")
        _, tenant = signed_in(await caller_now(caller))
        rows = await session.scalars(select(Note).where(Note.tenant == tenant).order_by(Note.id))
        return [r.as_dict() for r in rows]

    @app.post("/notes", status_code=201, dependencies=deps)
    async def add_note(body: NoteText, caller: Caller, session: Session) -> dict[str, object]:
        await audit.record("POST /notes")
        user, tenant = signed_in(await caller_now(caller))
        row = Note(tenant=tenant, owner=user, text=body.text)
        session.add(row)
        await session.commit()
        return row.as_dict()

    return app


async def caller_now(caller: Any) -> Pair:
    """A caller is either the (user, tenant) pair itself, or a function that reads it *now* (after the await)."""
    return caller() if callable(caller) else caller


def signed_in(pair: Pair) -> tuple[str, str]:
    user, tenant = pair
    if user is None or tenant is None:
        raise HTTPException(401, "sign in first")
    return user, tenant


# Right answers


def dependency_returns_the_caller(url: str, audit: AuditLog) -> FastAPI:
    async def caller(x_user: XUser = None, x_tenant: XTenant = None) -> Pair:
        return x_user, x_tenant

    return tenant_service(url, audit, caller)


user_var: ContextVar[str | None] = ContextVar("user_var", default=None)
tenant_var: ContextVar[str | None] = ContextVar("tenant_var", default=None)


async def read_vars() -> Callable[[], Pair]:
    return lambda: (user_var.get(), tenant_var.get())


def contextvars_in_async_dependency(url: str, audit: AuditLog) -> FastAPI:
    async def identify(x_user: XUser = None, x_tenant: XTenant = None) -> None:
        user_var.set(x_user)  # on every request: None for an anonymous one
        tenant_var.set(x_tenant)

    return tenant_service(url, audit, read_vars, identify)


def contextvars_in_middleware(url: str, audit: AuditLog) -> FastAPI:
    app = tenant_service(url, audit, read_vars)

    @app.middleware("http")
    async def identify(request: Request, call_next: Any) -> Any:
        user_var.set(request.headers.get("x-user"))
        tenant_var.set(request.headers.get("x-tenant"))
        return await call_next(request)

    return app


def contextvars_set_and_reset_with_tokens(url: str, audit: AuditLog) -> FastAPI:
    """New (root cause 4), wrong: sets only for signed-in requests, and resets with the tokens after `yield`.

    The reset comes too late: a yield dependency's exit code runs after the response was sent, and
    uvicorn starts the next pipelined request as the response is sent, from the context as it is then.
    """

    async def identify(x_user: XUser = None, x_tenant: XTenant = None) -> AsyncIterator[None]:
        if x_user is None or x_tenant is None:
            yield  # an anonymous request sets nothing, but nothing is left behind either
            return
        tokens = user_var.set(x_user), tenant_var.set(x_tenant)
        try:
            yield
        finally:
            user_var.reset(tokens[0])
            tenant_var.reset(tokens[1])

    return tenant_service(url, audit, read_vars, identify)


def values_on_request_state(url: str, audit: AuditLog) -> FastAPI:
    """New (root cause 4): request.state is per request on uvicorn; the old in-process bench shared it (89 of 100 "leaked")."""

    async def identify(request: Request, x_user: XUser = None, x_tenant: XTenant = None) -> None:
        request.state.user, request.state.tenant = x_user, x_tenant

    async def who(request: Request) -> Callable[[], Pair]:
        return lambda: (request.state.user, request.state.tenant)

    return tenant_service(url, audit, who, identify)


def test_62_accepts_a_dependency_that_returns_the_caller() -> None:
    said = passes("6.2", dependency_returns_the_caller)
    assert "each saw and wrote only its own data" in said and "every anonymous request stayed anonymous" in said


def test_62_a_limit_of_the_checks_own_is_the_checks_trouble(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy machine: uvicorn takes longer to start than the check allows. The check says so; it never blames the learner."""
    import asynclab.checks._s06_callers as s06  # the check's own limits on real uvicorn

    real_startup = uvicorn.Server.startup

    async def busy_startup(self: uvicorn.Server, sockets: Any = None) -> None:
        await asyncio.sleep(1.0)  # before the app's own startup: nothing of the learner's runs yet
        await real_startup(self, sockets)

    monkeypatch.setattr(uvicorn.Server, "startup", busy_startup)
    monkeypatch.setattr(s06, "SERVER_START", 0.2)
    failure = fails(
        "6.2",
        dependency_returns_the_caller,
        saying="the check could not start the server within 0.2 s: the machine is busy; run it again",
    )
    assert "your code" not in failure.observed and "TimeoutError" not in str(failure)


def test_62_an_answer_that_never_comes_on_the_connection_is_the_apps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A route that never answers on real uvicorn: the connection's limit runs out while the request is inside the app."""
    import asynclab.checks._s06_callers as s06  # the check's own limits on real uvicorn

    monkeypatch.setattr(s06, "ANSWER_WITHIN", 0.5)
    hangs_on_uvicorn = asyncio.Event()  # never set: waited on only by the keep-alive part's requests

    def build(url: str, audit: AuditLog) -> FastAPI:
        app = dependency_returns_the_caller(url, audit)
        if audit.rendezvous is None:  # the keep-alive part, on real uvicorn (the burst's audit log has a rendezvous)

            @app.middleware("http")
            async def never_answers(request: Request, call_next: Any) -> Any:
                await hangs_on_uvicorn.wait()
                return await call_next(request)

        return app

    fails(
        "6.2",
        build,
        saying="on real uvicorn, a request on a keep-alive connection had no answer after 0.5 s: 1 request(s) were still inside your app",
    )


def test_62_accepts_contextvars_set_in_an_async_dependency() -> None:
    passes("6.2", contextvars_in_async_dependency)


def test_62_accepts_contextvars_set_in_a_middleware() -> None:
    passes("6.2", contextvars_in_middleware)


def test_62_accepts_values_on_request_state() -> None:
    passes("6.2", values_on_request_state)


# Wrong answers

current: dict[str, str | None] = {"user": None, "tenant": None}


def globals_as_handed_out(url: str, audit: AuditLog) -> FastAPI:
    async def identify(x_user: XUser = None, x_tenant: XTenant = None) -> None:
        current["user"], current["tenant"] = x_user, x_tenant

    async def who() -> Callable[[], Pair]:
        return lambda: (current["user"], current["tenant"])

    return tenant_service(url, audit, who, identify)


local = threading.local()


def thread_local(url: str, audit: AuditLog) -> FastAPI:
    async def identify(x_user: XUser = None, x_tenant: XTenant = None) -> None:
        local.user, local.tenant = x_user, x_tenant

    async def who() -> Callable[[], Pair]:
        return lambda: (local.user, local.tenant)

    return tenant_service(url, audit, who, identify)


def contextvars_in_def_dependency(url: str, audit: AuditLog) -> FastAPI:
    def identify(x_user: XUser = None, x_tenant: XTenant = None) -> None:  # runs in a worker thread
        user_var.set(x_user)
        tenant_var.set(x_tenant)

    async def who() -> Callable[[], Pair]:
        return lambda: (user_var.get() or "nobody", tenant_var.get() or "none")

    return tenant_service(url, audit, who, identify)


def only_the_user_fixed(url: str, audit: AuditLog) -> FastAPI:
    async def identify(x_tenant: XTenant = None) -> None:
        current["tenant"] = x_tenant

    async def who(x_user: XUser = None) -> Callable[[], Pair]:
        return lambda: (x_user, current["tenant"])

    return tenant_service(url, audit, who, identify)


def globals_behind_a_lock(url: str, audit: AuditLog) -> FastAPI:
    """The globals, with a lock held for the whole request: no leak, and one request at a time."""
    lock = anyio.Lock()

    async def identify(x_user: XUser = None, x_tenant: XTenant = None) -> AsyncIterator[None]:
        async with lock:
            current["user"], current["tenant"] = x_user, x_tenant
            yield

    async def who() -> Callable[[], Pair]:
        return lambda: (current["user"], current["tenant"])

    return tenant_service(url, audit, who, identify)


def contextvars_set_only_when_signed_in(url: str, audit: AuditLog) -> FastAPI:
    """New (root cause 4): safe in-process, but on uvicorn an anonymous request on a kept-alive connection sees the last caller."""

    async def identify(x_user: XUser = None, x_tenant: XTenant = None) -> None:
        if x_user is not None and x_tenant is not None:
            user_var.set(x_user)
            tenant_var.set(x_tenant)

    return tenant_service(url, audit, read_vars, identify)


def middleware_sets_only_when_headers_present(url: str, audit: AuditLog) -> FastAPI:
    """New (root cause 4): the same leak from a pure ASGI middleware that skips anonymous requests."""
    inner = tenant_service(url, audit, read_vars)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        if scope["type"] == "http" and b"x-user" in headers and b"x-tenant" in headers:
            user_var.set(headers[b"x-user"].decode())
            tenant_var.set(headers[b"x-tenant"].decode())
        await inner(scope, receive, send)

    return app  # type: ignore[return-value]


def test_62_fails_as_handed_out() -> None:
    fails("6.2", globals_as_handed_out, saying="of 100 concurrent requests got or wrote another user's or tenant's data")


def test_62_rejects_threading_local() -> None:
    fails("6.2", thread_local, saying="of 100 concurrent requests got or wrote another user's or tenant's data")


def test_62_rejects_contextvars_set_in_a_def_dependency() -> None:
    failure = fails("6.2", contextvars_in_def_dependency, saying="100 of 100 requests did not see their own user or tenant")
    assert "answered {'user': 'nobody', 'tenant': 'none'}" in str(failure) and "worker thread" in failure.hint


def test_62_rejects_a_tenant_still_kept_in_a_global() -> None:
    fails("6.2", only_the_user_fixed, saying="of 100 concurrent requests got or wrote another user's or tenant's data")


def test_62_rejects_a_lock_that_serialises_requests() -> None:
    fails("6.2", globals_behind_a_lock, saying="were never inside the app at the same time: at most 1 of them")


def test_62_rejects_contextvars_left_set_on_a_keep_alive_connection() -> None:
    failure = fails("6.2", contextvars_set_only_when_signed_in, saying="on real uvicorn, on one keep-alive connection, pipelined")
    assert "GET /me with no X-User or X-Tenant (anonymous) answered {'user': 'alice', 'tenant': 'acme'}" in failure.observed


def test_62_rejects_a_middleware_that_skips_anonymous_requests() -> None:
    fails("6.2", middleware_sets_only_when_headers_present, saying="the identity of the request before it")


def test_62_rejects_a_reset_that_comes_after_the_response() -> None:
    fails(
        "6.2",
        contextvars_set_and_reset_with_tokens,
        saying="answered {'user': 'alice', 'tenant': 'acme'}: the identity of the request before it",
    )


def test_62_on_postgres_right_and_wrong_answers(on_postgres: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same verdicts on PostgreSQL, for the burst in-process and for the keep-alive connection on uvicorn."""
    kinds = record_kinds(monkeypatch)
    passes("6.2", dependency_returns_the_caller)
    fails("6.2", globals_as_handed_out, saying="of 100 concurrent requests got or wrote another user's or tenant's data")
    fails("6.2", contextvars_set_only_when_signed_in, saying="on real uvicorn, on one keep-alive connection, pipelined")
    assert kinds == ["postgres"] * 3  # one database per check: the burst's, then the keep-alive part's too


# --- 6.3 · find it: the audit trail names the wrong person -------------------------------------------


class RequestContext:
    def __init__(self, user: str | None = None) -> None:
        self.user = user


Identify = Callable[..., Any]
Caller = Callable[[Request, Any], str | None]


def orders_app(
    identify: Identify, caller: Caller, *, lock: asyncio.Lock | None = None
) -> Callable[[OrderBook, AuditLog], FastAPI]:
    """6.3's service: ``identify`` runs as the route's dependency; ``caller(request, found)`` names who asks."""

    def build_orders(orders: OrderBook, audit: AuditLog) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
            yield {"orders": orders, "audit": audit, "context": RequestContext()}

        app = FastAPI(lifespan=lifespan)

        @app.post("/orders/{order_id}/cancel")
        async def cancel(order_id: int, request: Request, found: Annotated[Any, Depends(identify)]) -> dict[str, object]:
            async with lock or contextlib.nullcontext():
                await request.state.orders.cancel(order_id)
                await request.state.audit.record(f"{caller(request, found)} cancelled order {order_id}")
                return {"order": order_id, "cancelled_by": caller(request, found)}

        return app

    return build_orders


async def into_shared_context(request: Request, x_user: Annotated[str, Header()]) -> None:
    request.state.context.user = x_user  # as handed out: the lifespan's one RequestContext


async def onto_the_request(request: Request, x_user: Annotated[str, Header()]) -> None:
    request.state.user = x_user


async def a_new_context(request: Request, x_user: Annotated[str, Header()]) -> None:
    request.state.context = RequestContext(x_user)  # a fresh object, on this request's own state


async def returns_the_caller(x_user: Annotated[str, Header()]) -> str:
    return x_user


audit_user: ContextVar[str | None] = ContextVar("audit_user", default=None)


async def sets_a_contextvar(x_user: Annotated[str, Header()]) -> None:
    audit_user.set(x_user)


def sets_a_contextvar_in_def(x_user: Annotated[str, Header()]) -> None:
    audit_user.set(x_user)


async def onto_the_app(request: Request, x_user: Annotated[str, Header()]) -> None:
    request.app.state.user = x_user


local_caller = threading.local()


async def into_a_thread_local(x_user: Annotated[str, Header()]) -> None:
    local_caller.user = x_user


def test_63_accepts_the_caller_kept_on_the_request() -> None:
    assert "every audit entry and every answer named its own caller" in passes(
        "6.3", orders_app(onto_the_request, lambda request, _: request.state.user)
    )


def test_63_accepts_a_new_context_for_every_request() -> None:
    passes("6.3", orders_app(a_new_context, lambda request, _: request.state.context.user))


def test_63_accepts_the_caller_returned_by_the_dependency() -> None:
    passes("6.3", orders_app(returns_the_caller, lambda _, found: found))


def test_63_accepts_a_contextvar_set_in_async_code() -> None:
    passes("6.3", orders_app(sets_a_contextvar, lambda *_: audit_user.get()))


def test_63_as_handed_out_tells_the_symptom_not_the_place() -> None:
    failure = fails(
        "6.3",
        orders_app(into_shared_context, lambda request, _: request.state.context.user),
        saying="the audit trail named the wrong person for 9 of them",
    )
    assert "sent one at a time, every entry was right" in failure.observed
    assert not [word for word in ("request.state", "lifespan", "context", "shared") if word in failure.observed]


def test_63_rejects_the_app_state() -> None:
    fails(
        "6.3", orders_app(onto_the_app, lambda request, _: request.app.state.user), saying="named the wrong person for 9 of them"
    )


def test_63_rejects_a_thread_local() -> None:
    fails("6.3", orders_app(into_a_thread_local, lambda *_: local_caller.user), saying="named the wrong person for 9 of them")


def test_63_rejects_a_contextvar_set_in_a_def_dependency() -> None:
    fails(
        "6.3",
        orders_app(sets_a_contextvar_in_def, lambda *_: audit_user.get()),
        saying="answered 200 {'order': 1, 'cancelled_by': None}",
    )


def test_63_rejects_a_lock_that_makes_requests_take_turns() -> None:
    """Right names, one cancellation at a time: correct, and no longer a service under load."""
    fails(
        "6.3",
        orders_app(onto_the_request, lambda request, _: request.state.user, lock=asyncio.Lock()),
        saying="were never inside the app at the same time",
    )
