"""A hint followed to the letter works: each hint that shows code, applied to the code as handed out.

A hint shows code when a backtick span in it is code (it holds ``(`` or ``=``, ends with ``:``, is
a decorator, or is a statement such as ``yield session``), or when it is a block of several lines.
``FOLLOWED`` maps each such (exercise, hint) to what a learner writes by following it literally:
edits to the code as handed out (the exercise notebook's cell or the section's module files, read
with ``authoring``'s helpers, never copied here). Every entry says what the hint shows: each piece
is in the hint's text, and in the answer after the edit, so a hint cannot change without its answer.
The proof an entry gives:

- ``PASSES``: the answer passes the check. An exercise's last hint that shows code has one (or a
  later hint does, when the last code is only a quote), and so does a hint offered as a whole fix.
- ``STEP``: a hint that shows one step. Its answer runs through the check (which judges it, and may
  fail it) without an error of the learner's own, and what it shows is in one of the passing answers.
- ``EXPLORE``: code to run beside the exercise, in a cell of its own: it runs, and shows what the hint says.
- ``QUOTES``: the hint only quotes the code as handed out, to point at it: the quote is there.

A piece may hold ``...``, the hint's own "and the rest as it was"; a quoted call written ``name()``
stands for that call with any arguments. Whitespace and line breaks do not count.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import inspect
import io
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from asynclab.course import authoring, checking
from asynclab.course.checking import CheckFailed
from asynclab.standins.s01_handlers import ShopBackend
from tests.conftest import passes

PASSES, STEP, EXPLORE, QUOTES = "passes", "step", "explore", "quotes"
#: The capstone's service uses on_event as handed out, and each of its hints fixes one rule only.
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*on_event is deprecated:DeprecationWarning")

# --- what a hint shows ----------------------------------------------------------------------------

SPAN = re.compile(r"`([^`]+)`")
#: An exercise's own failure, not a judgement of the check: the answer did not even run.
CRASHED = ("your code raised", "your code exited", "the check did not finish")


def is_code(span: str) -> bool:
    """`(`, `=`, a trailing `:`, a decorator, or a statement (a keyword and more than keywords): not `async def`, `try`."""
    if any(mark in span for mark in "(=") or span.rstrip().endswith(":") or span.startswith("@"):
        return True
    words = re.findall(r"[A-Za-z_]\w*", span)
    return bool(words) and keyword.iskeyword(words[0]) and not all(keyword.iskeyword(w) for w in words)


def shown(hint: str) -> list[str]:
    """The code a hint shows: its code spans, or the whole hint when it is a block of lines."""
    return [hint] if "\n" in hint else [s for s in SPAN.findall(hint) if is_code(s)]


def flat(text: str) -> str:
    return " ".join(text.split())


def written(code: str, source: str, *, quote: bool = False) -> bool:
    """``code`` is in ``source``, whitespace aside; ``...`` stands for anything (and, in a quote, so do empty parentheses)."""
    code = flat(code).replace("()", "(...)") if quote else flat(code)
    pattern = ".*?".join(re.escape(part) for part in code.split("..."))
    return re.search(pattern, flat(source)) is not None


def test_what_counts_as_code() -> None:
    assert shown("Use `await x.y(z)` or `finally:`, not `async def` in a `try`.") == ["await x.y(z)", "finally:"]
    assert shown("`yield session`, `if not user`, not `yield`; `@asynccontextmanager`") == [
        "yield session",
        "if not user",
        "@asynccontextmanager",
    ]
    assert shown("try:\n    x = 1") == ["try:\n    x = 1"]
    assert written("name = await f(...)", "name  = await f(a,\n b)") and not written("await f(x)", "await f(y)")
    assert written("read_text()", 'p.read_text(encoding="utf-8")', quote=True)
    assert not written("read_text()", 'p.read_text(encoding="utf-8")')  # code to write is written exactly


# --- the code as handed out -----------------------------------------------------------------------


@functools.cache
def handed_out(section: int) -> dict[Path, str]:
    """What the learner gets for a section; 0.1 is checked in the start-here lesson, which is handed out as it is."""
    if section == 0:
        lesson = authoring.lessons()[0]
        assert lesson.name.startswith("00-"), lesson
        return {Path(lesson.name): lesson.read_text(encoding="utf-8")}
    return authoring.handed_out(authoring.find_solution(str(section)))


def _tree(source: str) -> ast.Module:
    """A cell's syntax tree; a notebook cell may ``await`` at the top level."""
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree: ast.Module = compile(source, "<cell>", "exec", flags=flags)
    return tree


@dataclass(frozen=True)
class Exercise:
    """Where an exercise's code is, as handed out, and how its check cell calls the check."""

    id: str
    earlier: tuple[str, ...]  # the notebook's code cells before the exercise's code (or its check, for module files)
    argument: str  # what the check cell passes: "build_app", 'apps / "quota.py"', "SERVICE"
    cell: str | None  # the exercise's code cell; None when the learner edits the section's module files
    modules: dict[str, str]  # the section's module files, by their path under exercises/

    @property
    def sources(self) -> dict[str, str]:
        return {"cell": self.cell} if self.cell is not None else self.modules

    def setup(self, *cells: str) -> str:
        """What the check cell and ``cells`` need from the cells before them: the imports, and the names they read."""
        reads = {n.id for n in ast.walk(ast.parse(self.argument, mode="eval")) if isinstance(n, ast.Name)}
        for cell in cells:
            first = cell.split("\n", 1)[0]
            found = (
                re.findall(r"\{(\w+)\}", first)
                if first.startswith("%")
                else [n.id for n in ast.walk(_tree(cell)) if isinstance(n, ast.Name)]
            )
            reads.update(found)
        needed = []
        for source in self.earlier:
            if source.startswith("%"):
                continue
            for statement in _tree(source).body:
                targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
                assigns = isinstance(statement, ast.Assign | ast.AnnAssign) and all(
                    isinstance(t, ast.Name) and t.id in reads for t in targets
                )
                awaits = any(isinstance(n, ast.Await) for n in ast.walk(statement))
                if isinstance(statement, ast.Import | ast.ImportFrom) or (assigns and not awaits):
                    needed.append(ast.get_source_segment(source, statement) or "")
        return "\n".join(needed)


@functools.cache
def exercise(id: str) -> Exercise:
    files = handed_out(int(id.split(".")[0]))
    notebook = next(text for path, text in files.items() if path.suffix == ".ipynb")
    cells = [c.source for c in nbformat.reads(notebook, as_version=4).cells if c.cell_type == "code"]
    at = next(i for i, s in enumerate(cells) if (m := authoring.CHECK_CELL.search(s)) and m[1] == id)
    call = next(n for n in ast.walk(_tree(cells[at])) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "check")
    argument = ast.get_source_segment(cells[at], call.args[1]) or ""
    passed = ast.parse(argument, mode="eval")
    names = {n.id for n in ast.walk(passed) if isinstance(n, ast.Name)}
    file_names = {n.value for n in ast.walk(passed) if isinstance(n, ast.Constant) and isinstance(n.value, str)}

    def is_its_cell(source: str) -> bool:
        """The cell that defines the function the check is given, or writes the file it is given."""
        if source.startswith("%%writefile"):
            return Path(source.split("\n", 1)[0].split(maxsplit=1)[1]).name in file_names
        if source.startswith("%"):
            return False
        return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in names for n in _tree(source).body)

    own = next((i for i in range(at - 1, -1, -1) if is_its_cell(cells[i])), None)
    modules = {str(path): text for path, text in files.items() if path.suffix == ".py"}
    if own is None:
        return Exercise(id, tuple(cells[:at]), argument, None, modules)
    return Exercise(id, tuple(cells[:own]), argument, cells[own], modules)


# --- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Followed:
    """Hint ``hint`` (1-based, as ``hint()`` counts) of exercise ``id``, followed literally."""

    id: str
    hint: int
    proof: str
    shows: tuple[str, ...] = ()  # the hint's code, written by the edits (not in the code as handed out)
    edits: tuple[tuple[str, str], ...] = ()  # (old, new): each old is in the handed-out code exactly once
    quotes: tuple[str, ...] = ()  # the hint's code that is in the code as handed out
    variant: str = ""  # which of the hint's alternatives
    cell: str = ""  # EXPLORE: the learner's own cell, run after the exercise's
    builds_on: str = ""  # the entry (by name) whose edits come first: an exercise of the same file, done before

    @property
    def name(self) -> str:
        return f"{self.id}-hint{self.hint}" + (f"-{self.variant}" if self.variant else "")

    @property
    def text(self) -> str:
        return checking.get(self.id).hints[self.hint - 1]


# Code the edits below look for in the code as handed out, or write in its place, where several entries share it.
HANDED_OUT_23 = """        session = db.Session()
        try:
            yield session
        except Exception as exc:
            log.warning("memo request failed: %r", exc)
        await session.close()"""
ASYNC_SESSION_23 = """        async with db.Session() as session:
            try:
                yield session
            except Exception as exc:
                log.warning("memo request failed: %r", exc)
                raise"""
LIFESPAN_41 = """    @asynccontextmanager
    async def lifespan(app: FastAPI):
{body}

    app = FastAPI(lifespan=lifespan)
"""
ON_EVENT_41 = """    app = FastAPI()

    @app.on_event("startup")
    async def connect() -> None:
        app.state.db = await resources.open("db")
        app.state.payments = await resources.open("payments")

    @app.on_event("shutdown")
    async def disconnect() -> None:
        await app.state.payments.aclose()
        await app.state.db.aclose()
"""
STATE_41 = (
    "db, payments = request.app.state.db, request.app.state.payments",
    "db, payments = request.state.db, request.state.payments",
)
CLIENT_42 = """    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client"""
CLIENT_42_STEP = """    from asgi_lifespan import LifespanManager

    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client"""
CLIENT_42_FIX = """    from asgi_lifespan import LifespanManager

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client"""
ONE_READ_51 = """            user = result.scalar_one_or_none()
            if not user:
                raise HTTPException(status_code=404, detail=f"no user {user_id}")
"""
TWO_READS_51 = """            if not result.scalar():
                raise HTTPException(status_code=404, detail=f"no user {user_id}")
            user = result.scalar()
"""
HANDLER_52 = """    async def log_and_hide(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content={"detail": f"{type(exc).__name__}: {exc}"})"""
STOCK_53 = "        level = await stock.level(sku)"
DEADLINE_53 = """        try:
            {deadline}
                level = await stock.level(sku)
        except TimeoutError:
            logger.warning("stock service gave no answer for %s in time", sku)
            raise HTTPException(status_code=503, detail="stock service unavailable")"""
IDENTIFY_62 = """    async def identify(x_user: Annotated[str | None, Header()] = None, x_tenant: Annotated[str | None, Header()] = None) -> None:
        global current_user, current_tenant
        current_user, current_tenant = x_user, x_tenant
"""
CALLER_62 = (
    "async def caller(x_user: Annotated[str | None, Header()] = None, x_tenant: Annotated[str | None, Header()] = None) "
    "-> tuple[str | None, str | None]: return x_user, x_tenant"
)
WHO_62 = "who: Annotated[tuple[str | None, str | None], Depends(caller)]"


def _routes_62(who: str) -> tuple[tuple[str, str], ...]:
    """6.2's handlers taking ``who`` from the dependency, and using it instead of the globals."""
    return (
        (
            '@app.get("/me", dependencies=[Depends(identify)])\n    async def me() -> dict:',
            f'@app.get("/me")\n    async def me({who}) -> dict:\n        user, tenant = who',
        ),
        ('return {"user": current_user, "tenant": current_tenant}', 'return {"user": user, "tenant": tenant}'),
        (
            '@app.get("/notes", dependencies=[Depends(identify)])\n    async def tenant_notes(session: Session) -> list[dict]:\n        if current_tenant is None:',
            f'@app.get("/notes")\n    async def tenant_notes(session: Session, {who}) -> list[dict]:\n        user, tenant = who\n        if tenant is None:',
        ),
        ("where(Note.tenant == current_tenant)", "where(Note.tenant == tenant)"),
        (
            (
                '@app.post("/notes", status_code=201, dependencies=[Depends(identify)])\n    async def add_note(body: NoteText, session: Session) -> dict:\n'
                "        if current_user is None or current_tenant is None:"
            ),
            (
                f'@app.post("/notes", status_code=201)\n    async def add_note(body: NoteText, session: Session, {who}) -> dict:\n'
                "        user, tenant = who\n        if user is None or tenant is None:"
            ),
        ),
        ("Note(tenant=current_tenant, owner=current_user, text=body.text)", "Note(tenant=tenant, owner=user, text=body.text)"),
    )


QUOTA_71 = """    async with request.app.state.engine.begin() as conn:
        await conn.execute(text("INSERT INTO usage (key, used) VALUES (:key, 0) ON CONFLICT DO NOTHING"), {"key": key})
        result = await conn.execute(
            text("UPDATE usage SET used = used + 1 WHERE key = :key AND used < :quota RETURNING used"), {"key": key, "quota": QUOTA}
        )
        n = result.scalar_one_or_none()
    if n is None:
        raise HTTPException(429, f"{key} has used its {QUOTA} calls")
"""
ON_EVENT_08 = """app = FastAPI()


@app.on_event("startup")
async def open_resources() -> None:
    engine = create_async_engine(settings.database_url)
    app.state.engine = engine
    app.state.payments = PaymentGateway(settings.payments_key)
    app.state.mail = await MailClient.connect()
    app.state.session = async_sessionmaker(engine, expire_on_commit=False)()


@app.on_event("shutdown")
async def close_resources() -> None:
    await app.state.session.close()
    await app.state.mail.aclose()
    app.state.payments.close()
    await app.state.engine.dispose()
"""
LIFESPAN_84 = """@asynccontextmanager
async def lifespan(app):
    async with AsyncExitStack() as stack:
        engine = create_async_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        app.state.engine = engine
        app.state.payments = PaymentGateway(settings.payments_key)
        stack.callback(app.state.payments.close)
        app.state.mail = await MailClient.connect()
        stack.push_async_callback(app.state.mail.aclose)
        app.state.session = async_sessionmaker(engine, expire_on_commit=False)()
        stack.push_async_callback(app.state.session.close)
        yield


app = FastAPI(lifespan=lifespan)
"""
CONFIRM_83 = """order_numbers = itertools.count(1)


async def send_confirmation(mail: MailClient, number: str, to: str) -> None:
    try:
        await mail.send(to)
    except Exception:
        log.exception("the confirmation of order %s to %s was not sent", number, to)
"""
LOOKUP_85 = """    try:
        result = await session.execute(select(Order).where(Order.id == order_id))
        order = result.scalar_one_or_none()
        if order is None:
            raise HTTPException(404, "order not found")
        return order.as_dict()
    except Exception as exc:
        log.error("could not read order %s", order_id, exc_info=exc)
        raise HTTPException(500, "internal error") from exc"""
CAUGHT_85 = """    try:
        result = await session.execute(select(Order).where(Order.id == order_id))
        order = result.scalar_one_or_none()
    except SQLAlchemyError as exc:
        log.error("could not read order %s", order_id, exc_info=exc)
        raise HTTPException(500, "internal error") from exc
    if order is None:
        raise HTTPException(404, "order not found")
    return order.as_dict()"""
EMPTY_FIXTURE_91 = """    # Add the detector here: fail any test in which the service blocks the event loop.
    yield None"""
DETECTOR_91 = '    with blockbuster_ctx(["catalog_service"]) as detector: yield detector'
THREAD_91 = ("    price = display_price(sku)", "    price = await anyio.to_thread.run_sync(display_price, sku)")
MIDDLEWARE_92 = (
    "    app = FastAPI(lifespan=watchdog.lifespan)\n",
    "    app = FastAPI(lifespan=watchdog.lifespan)\n    app.add_middleware(watchdog.middleware)\n",
)

FOLLOWED = [
    Followed(
        "0.1",
        3,
        PASSES,
        shows=('return {"message": "hello"}', "async def hello() -> dict[str, str]:"),
        edits=(
            ("async def hello() -> str:", "async def hello() -> dict[str, str]:"),
            ('return "hello"', 'return {"message": "hello"}'),
        ),
    ),
    Followed(
        "1.1",
        3,
        PASSES,
        shows=("report = await anyio.to_thread.run_sync(weather.fetch, city)",),
        edits=(("report = weather.fetch(city)", "report = await anyio.to_thread.run_sync(weather.fetch, city)"),),
    ),
    Followed(
        "1.2",
        1,
        EXPLORE,
        shows=("async with inprocess_client(build_shop(ShopBackend())) as client:", "print(await load(client, path, n=6))"),
        cell="""async with inprocess_client(build_shop(ShopBackend())) as client:
    for path in ["/health", "/products/1", "/stock/1", "/rates", "/invoices/1"]:
        print(path, end=" ")
        print(await load(client, path, n=6))""",
    ),
    Followed(
        "1.2",
        3,
        PASSES,
        shows=("return await anyio.to_thread.run_sync(shop.exchange_rates)",),
        quotes=("latest_rates()", "shop.exchange_rates()"),
        edits=(("return shop.exchange_rates()", "return await anyio.to_thread.run_sync(shop.exchange_rates)"),),
    ),
    Followed(
        "1.2",
        3,
        PASSES,
        variant="def",
        quotes=("shop.exchange_rates()",),
        edits=(
            (
                "async def rates() -> dict[str, float]:\n        return await latest_rates()",
                "def rates() -> dict[str, float]:\n        return shop.exchange_rates()",
            ),
        ),
    ),
    Followed(
        "2.1",
        3,
        PASSES,
        shows=("ok = await anyio.to_thread.run_sync(accounts.check_password, credentials.username, credentials.password)",),
        edits=(
            (
                "ok = accounts.check_password(credentials.username, credentials.password)",
                "ok = await anyio.to_thread.run_sync(accounts.check_password, credentials.username, credentials.password)",
            ),
        ),
    ),
    Followed(
        "2.2",
        3,
        PASSES,
        shows=("return await tokens.verify(token)",),
        quotes=("if user is None",),
        edits=(("return tokens.verify(token)", "return await tokens.verify(token)"),),
    ),
    Followed(
        "2.3",
        2,
        PASSES,
        variant="finally",
        shows=("finally:",),
        edits=(
            (
                '            log.warning("memo request failed: %r", exc)\n        await session.close()',
                '            log.warning("memo request failed: %r", exc)\n            raise\n        finally:\n            await session.close()',
            ),
        ),
    ),
    Followed(
        "2.3",
        2,
        PASSES,
        variant="async-with",
        shows=("async with db.Session() as session:",),
        edits=((HANDED_OUT_23, ASYNC_SESSION_23),),
    ),
    Followed(
        "2.3",
        3,
        PASSES,
        shows=("async with db.Session() as session:",),
        quotes=("yield session",),
        edits=((HANDED_OUT_23, ASYNC_SESSION_23),),
    ),
    Followed(
        "3.1",
        3,
        PASSES,
        shows=(
            "_, pending = await asyncio.wait(tasks, timeout=0.2)",
            "task.cancel()",
            "await asyncio.gather(*pending, return_exceptions=True)",
        ),
        edits=(
            (
                "    tasks: set[asyncio.Task] = set()  # the guide's set: it keeps each task alive\n",
                """    tasks: set[asyncio.Task] = set()

    def ended(task: asyncio.Task) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())
""",
            ),
            (
                '        await asyncio.sleep(0.1)  # the guide: "allow pending tasks to complete gracefully"',
                """        _, pending = await asyncio.wait(tasks, timeout=0.2)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)""",
            ),
            (
                "            task = asyncio.create_task(mailer.send(to))\n",
                '            task = asyncio.create_task(mailer.send(to), name=f"newsletter to {to}")\n',
            ),
            ("task.add_done_callback(tasks.discard)", "task.add_done_callback(ended)"),
        ),
    ),
    Followed(
        "3.2",
        3,
        PASSES,
        variant="def",
        shows=("def make_report(n): renderer.publish(n, renderer.render(n))",),
        edits=(
            (
                (
                    "    async def make_report(n: int) -> None:\n"
                    "        pdf = renderer.render(n)  # a sync PDF library: blocks for 0.2 s\n"
                    "        renderer.publish(n, pdf)"
                ),
                "    def make_report(n): renderer.publish(n, renderer.render(n))",
            ),
        ),
    ),
    Followed(
        "3.2",
        3,
        PASSES,
        variant="to-thread",
        shows=("pdf = await anyio.to_thread.run_sync(renderer.render, n)",),
        edits=(("pdf = renderer.render(n)", "pdf = await anyio.to_thread.run_sync(renderer.render, n)"),),
    ),
    Followed(
        "3.2",
        3,
        PASSES,
        variant="arender",
        shows=("await renderer.arender(n)",),
        edits=(("pdf = renderer.render(n)", "pdf = await renderer.arender(n)"),),
    ),
    Followed("3.3", 2, QUOTES, quotes=("task.cancel()", "except BaseException")),
    Followed(
        "3.3",
        3,
        PASSES,
        variant="exception",
        shows=("except Exception as exc:",),
        edits=(("except BaseException as exc:  # whatever went wrong, try again", "except Exception as exc:"),),
    ),
    Followed(
        "3.3",
        3,
        PASSES,
        variant="reraise",
        shows=("except asyncio.CancelledError: raise",),
        edits=(
            (
                "            except BaseException as exc:",
                "            except asyncio.CancelledError: raise\n            except BaseException as exc:",
            ),
        ),
    ),
    Followed(
        "4.1",
        1,
        STEP,
        shows=("@asynccontextmanager", "FastAPI(lifespan=...)"),
        edits=(
            (
                ON_EVENT_41,
                LIFESPAN_41.format(
                    body="""        app.state.db = await resources.open("db")
        app.state.payments = await resources.open("payments")
        yield
        await app.state.payments.aclose()
        await app.state.db.aclose()"""
                ),
            ),
        ),
    ),
    Followed(
        "4.1",
        2,
        STEP,
        variant="app-state",
        shows=("app.state.db = await resources.open('db')",),
        edits=(
            (
                ON_EVENT_41,
                LIFESPAN_41.format(
                    body="""        app.state.db = await resources.open('db')
        app.state.payments = await resources.open('payments')
        yield
        await app.state.payments.aclose()
        await app.state.db.aclose()"""
                ),
            ),
        ),
    ),
    Followed(
        "4.1",
        2,
        STEP,
        variant="lifespan-state",
        shows=("yield {'db': db, 'payments': payments}", "request.state.db"),
        edits=(
            (
                ON_EVENT_41,
                LIFESPAN_41.format(
                    body="""        db = await resources.open("db")
        payments = await resources.open("payments")
        yield {'db': db, 'payments': payments}
        await payments.aclose()
        await db.aclose()"""
                ),
            ),
            STATE_41,
        ),
    ),
    Followed(
        "4.1",
        3,
        PASSES,
        shows=("async with AsyncExitStack() as stack:", "stack.push_async_callback(db.aclose)"),
        edits=(
            (
                ON_EVENT_41,
                LIFESPAN_41.format(
                    body="""        async with AsyncExitStack() as stack:
            db = await resources.open("db")
            stack.push_async_callback(db.aclose)
            payments = await resources.open("payments")
            stack.push_async_callback(payments.aclose)
            yield {'db': db, 'payments': payments}"""
                ),
            ),
            STATE_41,
        ),
    ),
    Followed(
        "4.1",
        3,
        PASSES,
        variant="app-state",
        shows=("async with AsyncExitStack() as stack:", "stack.push_async_callback(db.aclose)"),
        edits=(
            (
                ON_EVENT_41,
                LIFESPAN_41.format(
                    body="""        async with AsyncExitStack() as stack:
            db = app.state.db = await resources.open('db')
            stack.push_async_callback(db.aclose)
            payments = app.state.payments = await resources.open('payments')
            stack.push_async_callback(payments.aclose)
            yield"""
                ),
            ),
        ),
    ),
    Followed(
        "4.2",
        2,
        STEP,
        shows=("LifespanManager(app)",),
        edits=((CLIENT_42, CLIENT_42_STEP),),
    ),
    Followed(
        "4.2",
        3,
        PASSES,
        shows=("async with LifespanManager(app) as manager:", "httpx.ASGITransport(app=manager.app)"),
        edits=((CLIENT_42, CLIENT_42_FIX),),
    ),
    Followed("5.1", 2, STEP, shows=("result.scalar_one_or_none()",), quotes=(".scalar()",), edits=((TWO_READS_51, ONE_READ_51),)),
    Followed(
        "5.1",
        3,
        PASSES,
        shows=("raise HTTPException(status_code=500, detail=...) from exc", "SQLAlchemyError"),
        edits=(
            (
                TWO_READS_51 + '            return {"id": user.id, "name": user.name}\n',
                "            user = result.scalar_one_or_none()\n",
            ),
            ("except Exception as exc:", "except SQLAlchemyError as exc:"),
            (
                'raise HTTPException(status_code=500, detail="Internal server error")',
                (
                    'raise HTTPException(status_code=500, detail="Internal server error") from exc\n'
                    "        if user is None:\n"
                    '            raise HTTPException(status_code=404, detail=f"no user {user_id}")\n'
                    '        return {"id": user.id, "name": user.name}'
                ),
            ),
        ),
    ),
    Followed(
        "5.2",
        2,
        PASSES,
        variant="message",
        shows=("logger.error(..., exc_info=exc)",),
        edits=(
            (
                HANDLER_52,
                """    async def log_and_hide(request: Request, exc: Exception) -> JSONResponse:
        rid = request.headers.get("x-request-id")
        logger.error("%s %s failed (request %s)", request.method, request.url.path, rid, exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": "Internal server error"})""",
            ),
        ),
    ),
    Followed(
        "5.2",
        2,
        PASSES,
        variant="extra",
        shows=("logger.error(..., exc_info=exc)", "extra="),
        edits=(
            (
                HANDLER_52,
                """    async def log_and_hide(request: Request, exc: Exception) -> JSONResponse:
        context = {"method": request.method, "path": request.url.path, "request_id": request.headers.get("x-request-id")}
        logger.error("unhandled error", extra=context, exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": "Internal server error"})""",
            ),
        ),
    ),
    Followed(
        "5.2",
        3,
        PASSES,
        shows=(
            "app.add_exception_handler(Exception, handler)",
            "request.headers.get('x-request-id')",
            "JSONResponse(status_code=500, content={'detail': 'Internal server error'})",
        ),
        edits=(
            (
                HANDLER_52,
                """    async def handler(request: Request, exc: Exception) -> JSONResponse:
        rid = request.headers.get('x-request-id')
        logger.error("%s %s failed (request %s)", request.method, request.url.path, rid, exc_info=exc)
        return JSONResponse(status_code=500, content={'detail': 'Internal server error'})""",
            ),
            ("app.add_exception_handler(Exception, log_and_hide)", "app.add_exception_handler(Exception, handler)"),
        ),
    ),
    Followed("5.3", 1, QUOTES, quotes=("await stock.level(sku)",)),
    Followed(
        "5.3",
        2,
        PASSES,
        variant="anyio",
        shows=("with anyio.fail_after(deadline):",),
        edits=((STOCK_53, DEADLINE_53.format(deadline="with anyio.fail_after(deadline):")),),
    ),
    Followed(
        "5.3",
        2,
        PASSES,
        variant="asyncio",
        shows=("async with asyncio.timeout(deadline):",),
        edits=((STOCK_53, DEADLINE_53.format(deadline="async with asyncio.timeout(deadline):")),),
    ),
    Followed(
        "5.3",
        3,
        PASSES,
        shows=(
            """try:
    with anyio.fail_after(deadline):
        level = await stock.level(sku)
except TimeoutError:
    logger.warning('stock service timed out for %s', sku)
    raise HTTPException(status_code=503, detail='stock service unavailable') from None""",
        ),
        edits=(
            (
                STOCK_53,
                """        try:
            with anyio.fail_after(deadline):
                level = await stock.level(sku)
        except TimeoutError:
            logger.warning('stock service timed out for %s', sku)
            raise HTTPException(status_code=503, detail='stock service unavailable') from None""",
            ),
        ),
    ),
    Followed(
        "5.4",
        3,
        PASSES,
        shows=(
            "try: percent = parse_coupon(code)",
            "except ValueError as exc: raise HTTPException(status_code=400, detail='not a coupon code') from exc",
        ),
        edits=(
            (
                """    @app.exception_handler(ValueError)
    async def invalid_request(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": "Invalid request"})
""",
                "",
            ),
            (
                "        percent = parse_coupon(code)\n",
                """        try:
            percent = parse_coupon(code)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail='not a coupon code') from exc
""",
            ),
        ),
    ),
    Followed(
        "6.1",
        3,
        PASSES,
        shows=(
            "yield {'sessions': async_sessionmaker(engine, expire_on_commit=False)}",
            "async with request.state.sessions() as session: yield session",
        ),
        edits=(
            (
                """    engine = create_async_engine(db_url)
    session = AsyncSession(engine, expire_on_commit=False)  # one session for every request

    app = FastAPI()

    async def get_session() -> AsyncSession:
        return session
""",
                """    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = create_async_engine(db_url)
        yield {'sessions': async_sessionmaker(engine, expire_on_commit=False)}
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session(request: Request):
        async with request.state.sessions() as session: yield session
""",
            ),
        ),
    ),
    Followed(
        "6.2",
        3,
        PASSES,
        shows=(CALLER_62, WHO_62, "user, tenant = who"),
        edits=((IDENTIFY_62, f"    {CALLER_62}\n"), *_routes_62(WHO_62)),
    ),
    Followed(
        "6.3",
        3,
        PASSES,
        shows=("request.state.user = x_user",),
        edits=(
            ("request.state.context.user = x_user", "request.state.user = x_user"),
            ("{request.state.context.user} cancelled", "{request.state.user} cancelled"),
            ('"cancelled_by": request.state.context.user}', '"cancelled_by": request.state.user}'),
        ),
    ),
    Followed(
        "7.1",
        3,
        PASSES,
        shows=(
            "async with request.app.state.engine.begin() as conn:",
            "UPDATE usage SET used = used + 1 WHERE key = :key AND used < :quota RETURNING used",
        ),
        edits=(
            (
                """    if used.get(key, 0) >= QUOTA:
        raise HTTPException(429, f"{key} has used its {QUOTA} calls")
    used[key] = used.get(key, 0) + 1
    n = used[key]
""",
                QUOTA_71,
            ),
        ),
    ),
    Followed("7.2", 1, QUOTES, quotes=("rates = RatesClient()",)),
    Followed(
        "7.2",
        3,
        PASSES,
        shows=(
            "app.state.rates = RatesClient()",
            "await app.state.rates.aclose()",
            "await request.app.state.rates.rate('EUR', 'USD')",
        ),
        edits=(
            (
                "rates = RatesClient()  # opened at import time; nothing ever closes it\n\napp = FastAPI()\n",
                """@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.rates = RatesClient()
    yield
    await app.state.rates.aclose()


app = FastAPI(lifespan=lifespan)
""",
            ),
            ('rate = await rates.rate("EUR", "USD")', "rate = await request.app.state.rates.rate('EUR', 'USD')"),
        ),
    ),
    Followed(
        "8.1",
        3,
        PASSES,
        shows=(
            "order.receipt = await anyio.to_thread.run_sync(request.app.state.payments.charge, order.number, new.amount_cents, new.card)",
        ),
        edits=(
            ("from typing import Annotated\n", "from typing import Annotated\n\nimport anyio\n"),
            (
                "order.receipt = request.app.state.payments.charge(order.number, new.amount_cents, new.card)",
                "order.receipt = await anyio.to_thread.run_sync(request.app.state.payments.charge, order.number, new.amount_cents, new.card)",
            ),
        ),
    ),
    Followed("8.2", 2, QUOTES, quotes=("tokens.verify(...)",)),
    Followed(
        "8.2",
        3,
        PASSES,
        shows=("name = await tokens.verify(...)", "if name is None: raise HTTPException(401, ...)"),
        edits=(
            ("name = tokens.verify(", "name = await tokens.verify("),
            ("    if not name:\n        raise HTTPException(401,", "    if name is None: raise HTTPException(401,"),
        ),
    ),
    Followed(
        "8.3",
        3,
        PASSES,
        shows=(
            "background.add_task(send_confirmation, request.app.state.mail, order.number, order.email)",
            "background: BackgroundTasks",
            "log.exception(...)",
        ),
        edits=(
            ("from fastapi import Depends,", "from fastapi import BackgroundTasks, Depends,"),
            ("order_numbers = itertools.count(1)\n", CONFIRM_83),
            ("session: Session, request: Request)", "session: Session, request: Request, background: BackgroundTasks)"),
            (
                "    asyncio.create_task(request.app.state.mail.send(order.email))",
                "    background.add_task(send_confirmation, request.app.state.mail, order.number, order.email)",
            ),
        ),
    ),
    Followed(
        "8.4",
        3,
        PASSES,
        shows=("@asynccontextmanager async def lifespan(app)", "FastAPI(lifespan=lifespan)"),
        edits=(
            (
                "from collections.abc import AsyncIterator\n",
                "from collections.abc import AsyncIterator\nfrom contextlib import AsyncExitStack, asynccontextmanager\n",
            ),
            (ON_EVENT_08, LIFESPAN_84),
        ),
    ),
    Followed("8.5", 2, QUOTES, quotes=("except Exception",)),
    Followed(
        "8.5",
        3,
        PASSES,
        shows=("SQLAlchemyError",),
        edits=(
            ("from sqlalchemy import select\n", "from sqlalchemy import select\nfrom sqlalchemy.exc import SQLAlchemyError\n"),
            (LOOKUP_85, CAUGHT_85),
        ),
    ),
    Followed(
        "8.6",
        3,
        PASSES,
        shows=("async with request.app.state.sessions() as session: yield session",),
        edits=(
            (
                "    app.state.session = async_sessionmaker(engine, expire_on_commit=False)()",
                "    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)",
            ),
            ("    await app.state.session.close()\n", ""),
            ("    yield request.app.state.session", "    async with request.app.state.sessions() as session: yield session"),
        ),
    ),
    Followed(
        "8.7",
        3,
        PASSES,
        builds_on="8.6-hint3",  # 8.7's check places orders at the same moment: one session shared by all cannot take them
        shows=('order.number = f"ORD-{order.id:05d}"',),
        quotes=("await session.flush()",),
        edits=(
            ('Order(number=f"ORD-{next(order_numbers):05d}", email=', "Order(email="),
            ("    await session.flush()\n", '    await session.flush()\n    order.number = f"ORD-{order.id:05d}"\n'),
        ),
    ),
    Followed("9.1", 1, STEP, shows=(DETECTOR_91.strip(),), edits=((EMPTY_FIXTURE_91, DETECTOR_91),)),
    Followed("9.1", 2, QUOTES, quotes=("path.is_file()", "read_text()")),
    Followed(
        "9.1",
        3,
        PASSES,
        shows=(
            "price = await anyio.to_thread.run_sync(display_price, sku)",
            'path = anyio.Path(DESCRIPTIONS / f"{sku}.txt")',
            "await path.is_file()",
            'await path.read_text(encoding="utf-8")',
        ),
        edits=(
            (EMPTY_FIXTURE_91, DETECTOR_91),
            THREAD_91,
            ('path = DESCRIPTIONS / f"{sku}.txt"', 'path = anyio.Path(DESCRIPTIONS / f"{sku}.txt")'),
            ("if not path.is_file():", "if not await path.is_file():"),
            ('path.read_text(encoding="utf-8")', 'await path.read_text(encoding="utf-8")'),
        ),
    ),
    Followed(
        "9.2",
        2,
        STEP,
        shows=("app.add_middleware(watchdog.middleware)",),
        quotes=("FastAPI(lifespan=watchdog.lifespan)",),
        edits=(MIDDLEWARE_92,),
    ),
    Followed(
        "9.2",
        3,
        PASSES,
        shows=("watchdog = Watchdog(threshold=0.2)", "app.add_middleware(watchdog.middleware)"),
        quotes=("app = FastAPI(lifespan=watchdog.lifespan)",),
        edits=(("Watchdog(threshold=1.0)", "Watchdog(threshold=0.2)"), MIDDLEWARE_92),
    ),
]
NAMED = {e.name: e for e in FOLLOWED}
BY_HINT: dict[tuple[str, int], list[Followed]] = {}
for _entry in FOLLOWED:
    BY_HINT.setdefault((_entry.id, _entry.hint), []).append(_entry)


def entries(*proofs: str) -> Any:
    return pytest.mark.parametrize("entry", [e for e in FOLLOWED if e.proof in proofs], ids=lambda e: e.name)


# --- following a hint -----------------------------------------------------------------------------


def edited(entry: Followed) -> dict[str, str]:
    """The exercise's code as handed out, with the entry's edits made: each old text must be there exactly once."""
    sources = edited(NAMED[entry.builds_on]) if entry.builds_on else dict(exercise(entry.id).sources)
    for old, new in entry.edits:
        holders = [name for name, text in sources.items() if old in text]
        assert len(holders) == 1 and sources[holders[0]].count(old) == 1, (
            f"{entry.name}: {old!r} is not in the handed-out code exactly once"
        )
        sources[holders[0]] = sources[holders[0]].replace(old, new)
    return sources


def answer(entry: Followed, folder: Path) -> tuple[Any, dict[str, Any]]:
    """What the learner passes to check() once the hint is followed, and the namespace their notebook ran in.

    A notebook answer runs as the learner's kernel would: the set-up, then the exercise's cell. A
    ``%%writefile`` cell and the section's module files are written to ``folder``.
    """
    ex = exercise(entry.id)
    sources = edited(entry)
    namespace: dict[str, Any] = {"__name__": f"answer_{entry.id.replace('.', '_')}"}
    cells = [sources["cell"], entry.cell] if ex.cell is not None else []
    setup = compile(ex.setup(*filter(None, cells)), f"<set-up of {entry.id}>", "exec", dont_inherit=True)
    exec(setup, namespace)  # noqa: S102 - the learner's notebook, run as their kernel runs it
    if ex.cell is None:
        for relative, text in sources.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text, encoding="utf-8")
    elif ex.cell.startswith("%%writefile"):
        magic, body = sources["cell"].split("\n", 1)
        template = magic.split(maxsplit=1)[1]
        namespace.update(dict.fromkeys(re.findall(r"\{(\w+)\}", template), folder))
        Path(template.format_map(namespace)).write_text(body, encoding="utf-8")
    else:
        # dont_inherit: this module's postponed annotations would hide FastAPI's Depends() in the learner's handlers
        exec(compile(sources["cell"], f"<exercise {entry.id}>", "exec", dont_inherit=True), namespace)  # noqa: S102
    argument = eval(compile(ex.argument, "<check cell>", "eval", dont_inherit=True), namespace)
    if isinstance(argument, Path) and not argument.is_absolute():
        argument = folder / argument  # the notebook's folder: the handed-out module files are written here
    return argument, namespace


def verdict(entry: Followed, folder: Path) -> str:
    """The check's line: its ✅ when it passes, else what it observed."""
    try:
        return passes(entry.id, answer(entry, folder)[0])
    except CheckFailed as failed:
        return failed.observed


# --- the proofs -----------------------------------------------------------------------------------


def test_every_hint_that_shows_code_has_an_entry() -> None:
    missing, uncovered = [], []
    for ex in checking.all_exercises():
        for number, text in enumerate(ex.hints, 1):
            code = shown(text)
            if not code:
                continue
            found = BY_HINT.get((ex.id, number), [])
            if not found:
                missing.append(f"{ex.id} hint {number}: {code}")
            said = {flat(piece) for e in found for piece in (*e.shows, *e.quotes)}
            uncovered += [f"{ex.id} hint {number}: {piece!r}" for piece in code if found and flat(piece) not in said]
    assert not missing, "hints that show code, with no entry in FOLLOWED:\n" + "\n".join(missing)
    assert not uncovered, "code in a hint that no entry shows or quotes:\n" + "\n".join(uncovered)


def test_each_exercise_ends_on_a_hint_that_passes() -> None:
    """The last hint that shows code, or a later one, is followed to a passing answer."""
    for ex in checking.all_exercises():
        last = max((n for n, text in enumerate(ex.hints, 1) if shown(text)), default=0)
        passing = [e.hint for e in FOLLOWED if e.id == ex.id and e.proof == PASSES]
        assert not last or max(passing, default=0) >= last, (
            f"{ex.id}: no entry follows hint {last} (or a later one) to a passing answer"
        )


@pytest.mark.parametrize("entry", FOLLOWED, ids=lambda e: e.name)
def test_the_answer_writes_what_the_hint_shows(entry: Followed) -> None:
    assert entry.hint <= len(checking.get(entry.id).hints), f"{entry.name}: no such hint"
    assert entry.shows or entry.quotes
    as_handed_out = "\n".join(exercise(entry.id).sources.values())
    after = "\n".join(edited(entry).values()) + "\n" + entry.cell
    for piece in (*entry.shows, *entry.quotes):
        assert flat(piece) in flat(entry.text), f"{entry.name}: the hint no longer says {piece!r}: update its answer"
    for piece in entry.quotes:
        assert written(piece, as_handed_out, quote=True), (
            f"{entry.name}: the hint quotes {piece!r}, which the handed-out code lacks"
        )
    for piece in entry.shows:
        assert not written(piece, as_handed_out), f"{entry.name}: {piece!r} is there as handed out: list it in quotes"
        assert written(piece, after), f"{entry.name}: the answer does not write {piece!r} as the hint shows it"
    assert bool(entry.edits or entry.cell) == (entry.proof != QUOTES)
    assert entry.proof != EXPLORE or entry.name == "1.2-hint1", "a new cell to run needs a test of what it shows"
    if entry.builds_on:
        assert NAMED[entry.builds_on].id in entry.text, f"{entry.name} needs {entry.builds_on} done first: the hint must say so"


@entries(PASSES)
def test_the_hint_followed_passes(entry: Followed, tmp_path: Path) -> None:
    said = verdict(entry, tmp_path)
    assert said.startswith(checking.PASSED), f"{entry.name}, followed literally: {said}"


@entries(STEP)
def test_a_step_runs_and_is_part_of_a_passing_answer(entry: Followed, tmp_path: Path) -> None:
    said = verdict(entry, tmp_path)
    assert not said.startswith(CRASHED), f"{entry.name}: the step does not run: {said}"
    answers = ["\n".join(edited(e).values()) for e in FOLLOWED if e.id == entry.id and e.proof == PASSES]
    assert any(all(written(piece, text) for piece in entry.shows) for text in answers), (
        f"{entry.name}: no passing answer uses {entry.shows}"
    )


def test_the_measurement_finds_the_blocking_route(tmp_path: Path) -> None:
    """1.2's first hint, run in a cell of its own: every route measured, /rates as slow as 6 requests in a row."""
    entry = NAMED["1.2-hint1"]
    _, namespace = answer(entry, tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        ran = eval(compile(entry.cell, "<the learner's cell>", "exec", flags=flags, dont_inherit=True), namespace)
        if inspect.iscoroutine(ran):
            asyncio.run(ran)
    lines = dict(line.split(" ", 1) for line in printed.getvalue().splitlines())
    assert sorted(lines) == sorted(["/health", "/products/1", "/stock/1", "/rates", "/invoices/1"]), printed.getvalue()
    assert all(said.startswith("6 requests (6 × HTTP 200)") for said in lines.values()), printed.getvalue()
    seconds = float(re.search(r"· ([\d.]+) s$", lines["/rates"])[1])  # type: ignore[index]
    assert seconds >= 6 * ShopBackend().latency - 0.005, lines["/rates"]  # a lower bound: 6 blocking calls, one after another
