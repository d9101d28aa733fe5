"""What several check modules need, written once: small helpers, no exercise of their own.

Private to :mod:`asynclab.checks`; a check module imports what it uses from here.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

import anyio
import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool
from starlette.types import ASGIApp, Receive, Scope, Send

from asynclab.bench.loopwatch import LoopWatch
from asynclab.bench.modules import load_module
from asynclab.course.checking import Observed, describe_error, fail

P = ParamSpec("P")
T = TypeVar("T")

# --- what the app answered, and what it raised -----------------------------------------------------


#: A stand-in's call in a check waits for the rest of its burst (at most 5 s, or until nobody new came in for 0.5 s):
#: "how many at once" then holds on a loaded machine; an answer that serialises the calls costs 0.5 s a call.
BURST_WAIT, IDLE = 5.0, 0.5


def describe(response: httpx.Response) -> str:
    """``status body`` of a response, the body cut to 100 characters: what a failure message quotes."""
    return f"{response.status_code} {response.text[:100]}"


def noting_errors(app: ASGIApp, note: Callable[[Exception], None]) -> ASGIApp:
    """Wrap an app so that ``note`` is given every exception it raises (the client only sees a 500)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except Exception as exc:
            note(exc)
            raise

    return wrapped


def recording_errors(app: ASGIApp, errors: list[str]) -> ASGIApp:
    """Wrap an app so that every exception it raises is noted in ``errors``, as text.

    Only the text is kept: an exception raised inside SQLAlchemy's async machinery holds, through
    its traceback, the greenlets of the check's thread, which must not outlive that thread.
    """
    return noting_errors(app, lambda exc: errors.append(describe_error(exc)))


def first_error(errors: list[str]) -> str:
    """A tail for a failure message: what the app raised first, or nothing."""
    return f"; the app raised {errors[0]}" if errors else ""


# --- the stand-ins the app calls ----------------------------------------------------------------------


def watched(stand_in: type[T], watch: LoopWatch, *methods: str) -> T:
    """A new ``stand_in()``, with the check's event loop watched (``watch.call()``) during every call of each named method.

    The watching lives in a subclass, not on the object: the stand-in holds no reference to itself,
    so it is freed as soon as the check lets it go.
    """

    def noting(name: str) -> Callable[..., Any]:
        blocking = getattr(stand_in, name)

        @functools.wraps(blocking)
        def noted(self: Any, *args: Any, **kwargs: Any) -> Any:
            with watch.call():
                return blocking(self, *args, **kwargs)

        return noted

    watching = type(f"Watched{stand_in.__name__}", (stand_in,), {name: noting(name) for name in methods})
    return watching()  # type: ignore[no-any-return]


# --- driving requests -------------------------------------------------------------------------------


async def concurrently(n: int, send: Callable[[int], Awaitable[T]]) -> dict[int, T]:
    """Run ``send(0)`` ... ``send(n - 1)`` at the same time; their results by index."""
    results: dict[int, T] = {}

    async def one(i: int) -> None:
        results[i] = await send(i)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return results


# --- database connections the app opened --------------------------------------------------------------


@dataclass
class Connections:
    """Every engine that connected, and every DB-API connection opened and closed, while counting."""

    engines: list[Engine] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    open_now: list[Any] = field(default_factory=list)  # the DB-API connections not closed yet

    @property
    def still_open(self) -> int:
        return self.opened - self.closed

    async def close_leftovers(self) -> None:
        """Close what the app left open, so that no aiosqlite thread outlives the check."""
        for connection in self.open_now:
            with contextlib.suppress(Exception):
                await connection.driver_connection.close()
        self.open_now.clear()


@contextmanager
def counting_connections(*, ignore_engine: str | None = None) -> Iterator[Connections]:
    """Listen to every SQLAlchemy pool and engine in the process while the block runs.

    An engine whose ``logging_name`` is ``ignore_engine`` (the check's own reader) is not counted
    among the app's engines.
    """
    seen = Connections()

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        seen.opened += 1
        seen.open_now.append(dbapi_connection)

    def on_close(dbapi_connection: Any, record: Any) -> None:
        seen.closed += 1
        seen.open_now[:] = [c for c in seen.open_now if c is not dbapi_connection]

    def on_engine_connect(connection: Any) -> None:
        if ignore_engine is not None and connection.engine.logging_name == ignore_engine:
            return
        if not any(e is connection.engine for e in seen.engines):
            seen.engines.append(connection.engine)

    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        (Pool, "connect", on_connect),
        (Pool, "close", on_close),
        (Pool, "close_detached", on_close),
        (Engine, "engine_connect", on_engine_connect),
    ]
    for target, name, fn in listeners:
        event.listen(target, name, fn)
    try:
        yield seen
    finally:
        for target, name, fn in listeners:
            event.remove(target, name, fn)


def collect_garbage_before_leaving(check: Callable[P, Awaitable[str]]) -> Callable[P, Awaitable[str]]:
    """End a check by freeing the learner's app, engines and connections on the check's own thread.

    SQLAlchemy's async layer runs on greenlets, which belong to the thread that made them, and an
    aiosqlite connection hands its results to the event loop that opened it. Left in reference
    cycles (exceptions and their tracebacks make many), or held by a failed check's traceback, they
    would be freed later on another thread, after the check's thread and loop have ended: greenlet
    can crash the process then, and aiosqlite's worker thread fails with "Event loop is closed".
    So a failure leaves without the traceback of the check (which says nothing to the learner),
    and the garbage is collected here, while the check's loop still runs.
    """

    @functools.wraps(check)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> str:
        failure: Observed | None = None
        try:
            return await check(*args, **kwargs)
        except Observed as observed:
            failure = observed.with_traceback(None)
            failure.__context__ = failure.__cause__ = None
        finally:
            gc.collect()
            await anyio.sleep(0.01)  # let closing connections report back to this loop
        assert failure is not None
        raise failure

    return wrapper


# --- what the learner handed in -----------------------------------------------------------------------


def describe_value(value: Any) -> str:
    """What the learner handed in, in a few words: ``the function app()``, ``the class Foo``, ``int 3``."""
    if value is None:
        return "None"
    if inspect.isfunction(value) or inspect.ismethod(value):
        return f"the function {value.__name__}()"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}" if len(text) < 60 else type(value).__name__


def is_asgi_app(value: Any) -> bool:
    """A FastAPI or Starlette app, or an ASGI callable (scope, receive, send); not a route function."""
    from starlette.applications import Starlette

    if isinstance(value, Starlette):
        return True
    if not callable(value):
        return False
    target = value if inspect.isfunction(value) or inspect.ismethod(value) else value.__call__
    if not inspect.iscoroutinefunction(target):
        return False
    try:
        parameters = [
            p
            for p in inspect.signature(target).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return False
    return len(parameters) == 3


def build_app(factory: Callable[..., Any], *args: Any, name: str = "build_app") -> Any:
    """Call the learner's app factory; fail kindly, in one line, if it does not give back an ASGI app."""
    if is_asgi_app(factory) and not inspect.isfunction(factory):
        fail(
            f"expected a function that returns a FastAPI app; got the app itself ({type(factory).__name__})",
            f"Pass the function, not what it returned: check(..., {name}), not check(..., {name}(...)).",
        )
    if not callable(factory):
        fail(
            f"expected a function that returns a FastAPI app; got {describe_value(factory)}",
            f"Pass the function itself: check(..., {name}).",
        )
    app = factory(*args)
    if not is_asgi_app(app):
        fail(
            f"expected a function that returns a FastAPI app; {name}(...) returned {describe_value(app)}",
            f"End {name} with `return app`, the FastAPI() object, not a route function.",
        )
    return app


def module_file(answer: Any, hint: str, *, what: str = "module") -> Path:
    """The path of the learner's ``.py`` file; fail kindly if ``answer`` is anything else."""
    path = Path(answer) if isinstance(answer, str | Path) else None
    if path is None or path.suffix != ".py" or not path.is_file():
        fail(f"expected the path of your {what} file, got {answer!r}", hint)
    return path


def expect_responses(report: Any, describe: Callable[[int], str], expected: Callable[[int], Any]) -> None:
    """Fail on the first request of a load report whose status is not 200 or whose body is not ``expected(i)``."""
    for r in report.results:
        if r.status != 200:
            fail(
                f"{describe(r.index)} answered {r.status}: {str(r.body)[:120]}",
                "Every route must still answer 200 with the same body as before.",
            )
        if r.body != expected(r.index):
            fail(
                f"{describe(r.index)} answered {r.body!r}, expected {expected(r.index)!r}",
                "Change how the handler waits for its data, not what it returns.",
            )


# --- the learner's module ------------------------------------------------------------------------------


def import_fresh(path: Path, name: str) -> ModuleType:
    """A fresh copy of the learner's module file, as module ``name``, which must hold a FastAPI ``app``."""
    module = load_module(path, name)
    if not hasattr(module, "app"):
        fail(f"{path.name} has no `app`", "Keep the FastAPI app in a module-level variable called `app`.")
    if not is_asgi_app(module.app):
        fail(
            f"expected `app` in {path.name} to be a FastAPI app; got {describe_value(module.app)}",
            "Keep `app = FastAPI(...)` at module level; do not reuse the name for a function.",
        )
    return module
