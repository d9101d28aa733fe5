"""Fail every test during which the service blocks the event loop: two guards, one verdict.

- blockbuster swaps the functions known to block (time.sleep, file and socket I/O, os.stat,
  sqlite3, lock waits, ...) for wrappers that raise BlockingError on a thread that runs an
  event loop, when a module of ours (SCANNED) is on the call stack. It is on for the whole
  session, so it also sees fixtures' setup and teardown: a lifespan's startup and shutdown, even
  under a module- or session-scoped client. Every BlockingError it raises is recorded, so one
  the app caught (``except Exception``) still fails the test, with its original traceback.
- The stall guard watches the test's event loop (a heartbeat on the loop, a thread that looks at
  it, from loop_watchdog.py) and fails a test during which the loop did not turn for
  STALL_THRESHOLD seconds, with the loop thread's stack. It sees what blockbuster cannot: C code
  that waits or computes (a sync psycopg 3 query, hashlib.pbkdf2_hmac), CPU-bound Python.

The verdict comes at the end of each test's setup and teardown (hooks at the bottom): "ERROR at
setup" for what a fixture did (a lifespan's startup), "ERROR at teardown" for the rest. Merging
into an existing conftest.py: see README.md.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import AsyncIterator, Generator, Iterable, Iterator

import blockbuster.blockbuster as wrappers
import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from loop_watchdog import StallGuard

# Your own packages: calls made from anywhere else are not our business.
SCANNED = ["app"]

# Blocks you accept, each admitted in one function of one file, for every blocking call made
# in it: (the file's path, or its tail, as tracebacks show it; the function's name or names).
# See the README: "Allowing a known block".
ALLOWED: list[tuple[str, str | Iterable[str]]] = [
    # FastAPI finds each endpoint's source file on its first request (for error messages);
    # with a middleware or route class of yours on the stack, that os.stat is yours.
    ("fastapi/routing.py", "_extract_endpoint_context"),
    # The first guess_type in the process reads /etc/mime.types (FileResponse, StaticFiles):
    # it fails whichever test comes first.
    ("mimetypes.py", "init"),
    # Jinja2Templates: loading a template, then checking its mtime at each render:
    # ("jinja2/loaders.py", ("get_source", "uptodate")),
    # SQLAlchemy on SQLite resolves the database file's path when it makes the engine:
    # ("sqlalchemy/dialects/sqlite/pysqlite.py", "create_connect_args"),
    # asyncpg (SQLAlchemy's postgresql+asyncpg://) looks for ~/.pgpass and client certificates
    # at each new connection:
    # ("asyncpg/connect_utils.py", "_parse_connect_dsn_and_args"),
]

# Seconds without a turn of the loop that fail a test; 0 turns the stall guard off. Keep it far
# below the stalls you want to catch and far above what a loaded CI machine adds by itself.
STALL_THRESHOLD = float(os.environ.get("STALL_THRESHOLD", "0.3"))

# Every BlockingError raised, whatever the app did with it; the verdict empties it.
BLOCKED: list[BlockingError] = []
STALLS = StallGuard(STALL_THRESHOLD or 0.3)  # with STALL_THRESHOLD=0, nothing is judged


def allow(detector: BlockBuster, file: str, functions: str | Iterable[str]) -> None:
    """Admit every blocking call made in ``functions`` of ``file``, whatever it calls.

    ``detector.functions`` is keyed by the names BlockingError gives ("Blocking call to
    os.stat"): ``detector.functions["os.stat"].can_block_in(file, functions)`` admits one.
    """
    for wrapped in detector.functions.values():
        wrapped.can_block_in(file, functions)


class BlockingError(wrappers.BlockingError):
    """blockbuster's BlockingError, noted as it is raised: a broad ``except`` cannot hide it."""

    def __init__(self, func: str) -> None:
        super().__init__(func)
        BLOCKED.append(self)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"  # both guards watch asyncio: under trio, neither sees anything


@pytest.fixture(scope="session", autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    raising = wrappers.BlockingError
    wrappers.BlockingError = BlockingError  # the name its wrappers raise
    try:
        with blockbuster_ctx(SCANNED) as detector:
            for file, functions in ALLOWED:
                allow(detector, file, functions)
            yield detector
    finally:
        wrappers.BlockingError = raising


@pytest.fixture(scope="session", autouse=True)
async def stall_guard(anyio_backend: str) -> AsyncIterator[StallGuard]:
    """Watch the tests' event loop for the whole session (every async test and fixture).

    Another loop, such as a TestClient's, is watched with ``stall_guard.watching()`` run on
    it: see tests/test_app.py.
    """
    async with STALLS.watching() if STALL_THRESHOLD else contextlib.nullcontext():
        yield STALLS


# --- The verdict ---------------------------------------------------------------------------


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """An exception, its causes and contexts, and the members of exception groups."""
    todo, seen = [error], set()
    while todo:
        if (found := todo.pop()) is not None and id(found) not in seen:
            seen.add(id(found))
            yield found
            todo += [
                found.__cause__,
                found.__context__,
                *getattr(found, "exceptions", ()),
            ]


# What already failed the test: no need to say it twice.
_FAILED = pytest.StashKey[set[int]]()


def _findings(item: pytest.Item) -> str:
    failed = item.stash.get(_FAILED, set())
    raised = [
        BLOCKED.pop(0) for _ in range(len(BLOCKED))
    ]  # a TestClient's thread may add more
    found = [
        "a blocking call on the event loop, caught by the code under test (the test never"
        " saw it):\n" + "".join(traceback.format_exception(error)).rstrip()
        for error in raised
        if id(error) not in failed
    ]
    stalls = STALLS.take()
    found += stalls if STALL_THRESHOLD else []
    more = f"\n\n(and {len(found) - 3} more)" if len(found) > 3 else ""
    return "\n\n".join(found[:3]) + more


def _guarded(item: pytest.Item, check: bool) -> Generator[None, object, object]:
    try:
        result = yield
    except BaseException as failure:
        item.stash.setdefault(_FAILED, set()).update(map(id, _chain(failure)))
        if check and (found := _findings(item)):
            failure.add_note(found)  # shown under the failure, which stays as it was
        raise
    if check and (found := _findings(item)):
        pytest.fail(found, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item, check=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item, check=False))  # the test's own failure, noted


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item, check=True))
