"""Section 7: each check serves the module under `uvicorn --workers 2`, accepts correct answers and rejects wrong ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from asynclab.bench.stack import postgres_here
from tests.conftest import fails, passes


def module(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(source, encoding="utf-8")
    return path


# --- 7.1 -------------------------------------------------------------------------------------------

QUOTA_HEAD = """
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

QUOTA = 5
DATABASE_URL = os.environ.get("QUOTA_DATABASE_URL", f"sqlite+aiosqlite:///{Path(__file__).with_name('quota.db')}")


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(DATABASE_URL)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS usage (key TEXT PRIMARY KEY, used INTEGER NOT NULL)"))
    app.state.engine = engine
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
"""

CONDITIONAL_UPDATE = (
    QUOTA_HEAD
    + """

@app.get("/ask/{key}")
async def ask(key: str, request: Request) -> dict[str, int | str]:
    async with request.app.state.engine.begin() as conn:
        await conn.execute(text("INSERT INTO usage VALUES (:key, 0) ON CONFLICT (key) DO NOTHING"), {"key": key})
        result = await conn.execute(
            text("UPDATE usage SET used = used + 1 WHERE key = :key AND used < :quota RETURNING used"),
            {"key": key, "quota": QUOTA},
        )
        n = result.scalar_one_or_none()
    if n is None:
        raise HTTPException(429, "quota used up")
    return {"key": key, "used": n, "left": QUOTA - n}
"""
)

UPSERT_THEN_COMPARE = (
    QUOTA_HEAD
    + """

@app.get("/ask/{key}")
async def ask(key: str, request: Request) -> dict[str, int | str]:
    async with request.app.state.engine.begin() as conn:  # counts refused calls too, which is fine
        n = (
            await conn.execute(
                text("INSERT INTO usage VALUES (:key, 1) ON CONFLICT (key) DO UPDATE SET used = usage.used + 1 RETURNING used"),
                {"key": key},
            )
        ).scalar_one()
    if n > QUOTA:
        raise HTTPException(429, "quota used up")
    return {"key": key, "used": n, "left": QUOTA - n}
"""
)

ORM_SESSION = """
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateTable

QUOTA = 5
DATABASE_URL = os.environ.get("QUOTA_DATABASE_URL", f"sqlite+aiosqlite:///{Path(__file__).with_name('quota.db')}")


class Base(DeclarativeBase):
    pass


class Usage(Base):
    __tablename__ = "usage"
    key: Mapped[str] = mapped_column(primary_key=True)
    used: Mapped[int]


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(DATABASE_URL)
    async with engine.begin() as conn:  # not metadata.create_all: it checks, then creates, and two workers race
        await conn.execute(CreateTable(Usage.__table__, if_not_exists=True))
    app.state.sessions = async_sessionmaker(engine)
    app.state.insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert  # ON CONFLICT is per dialect
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/ask/{key}")
async def ask(key: str, request: Request) -> dict[str, int | str]:
    session: AsyncSession
    async with request.app.state.sessions() as session, session.begin():
        await session.execute(request.app.state.insert(Usage).values(key=key, used=0).on_conflict_do_nothing())
        n = await session.scalar(
            update(Usage).where(Usage.key == key, Usage.used < QUOTA).values(used=Usage.used + 1).returning(Usage.used)
        )
    if n is None:
        raise HTTPException(429, "quota used up")
    return {"key": key, "used": n, "left": QUOTA - n}
"""

IN_MEMORY = (
    QUOTA_HEAD
    + """
used: dict[str, int] = {}


@app.get("/ask/{key}")
async def ask(key: str, request: Request) -> dict[str, int | str]:
    if used.get(key, 0) >= QUOTA:
        raise HTTPException(429, "quota used up")
    used[key] = used.get(key, 0) + 1
    n = used[key]
    return {"key": key, "used": n, "left": QUOTA - n}
"""
)

# A real database, but SQLite's in-memory one: each worker's engine gets its own private database.
IN_MEMORY_SQLITE = CONDITIONAL_UPDATE.replace("create_async_engine(DATABASE_URL)", 'create_async_engine("sqlite+aiosqlite://")')

OFF_BY_ONE = CONDITIONAL_UPDATE.replace("used < :quota", "used <= :quota")

ONE_COUNTER_FOR_ALL = CONDITIONAL_UPDATE.replace('{"key": key}', '{"key": "all"}').replace(
    '{"key": key, "quota": QUOTA}', '{"key": "all", "quota": QUOTA}'
)

DOES_NOT_IMPORT = CONDITIONAL_UPDATE.replace("QUOTA = 5", "QUOTA = FIVE")

# The row already there named without its table: SQLite takes it, PostgreSQL finds `used` ambiguous (the row proposed
# is in scope too, as `excluded`).
UPSERT_UNQUALIFIED = UPSERT_THEN_COMPARE.replace("SET used = usage.used + 1", "SET used = used + 1")

# Root cause 2: calls at the same moment on both workers, and a restart of both workers.

READ_THEN_WRITE = (
    QUOTA_HEAD
    + """

@app.get("/ask/{key}")
async def ask(key: str, request: Request) -> dict[str, int | str]:
    engine = request.app.state.engine
    async with engine.connect() as conn:  # read ...
        row = (await conn.execute(text("SELECT used FROM usage WHERE key = :key"), {"key": key})).first()
    used = row[0] if row else 0
    if used >= QUOTA:
        raise HTTPException(429, "quota used up")
    async with engine.begin() as conn:  # ... then write: another call may have read the same count meanwhile
        await conn.execute(
            text("INSERT INTO usage VALUES (:key, :n) ON CONFLICT (key) DO UPDATE SET used = :n"), {"key": key, "n": used + 1}
        )
    return {"key": key, "used": used + 1, "left": QUOTA - used - 1}
"""
)

ORM_READ_MODIFY_WRITE = (
    ORM_SESSION[: ORM_SESSION.index('@app.get("/ask/{key}")')]
    + """@app.get("/ask/{key}")
async def ask(key: str, request: Request) -> dict[str, int | str]:
    async with request.app.state.sessions() as session:
        usage = await session.get(Usage, key)  # read ...
        if usage is None:
            usage = Usage(key=key, used=0)
            session.add(usage)
        if usage.used >= QUOTA:
            raise HTTPException(429, "quota used up")
        usage.used += 1  # ... modify in Python, write at commit: another call read the same row meanwhile
        n = usage.used
        await session.commit()
    return {"key": key, "used": n, "left": QUOTA - n}
"""
)

RESET_AT_STARTUP = CONDITIONAL_UPDATE.replace(
    "    app.state.engine = engine\n",
    '        await conn.execute(text("DELETE FROM usage"))  # a clean slate at every start\n    app.state.engine = engine\n',
)

UPSERT_WHERE = (
    QUOTA_HEAD
    + """

@app.get("/ask/{key}")
async def ask(key: str, request: Request) -> dict[str, int | str]:
    async with request.app.state.engine.begin() as conn:  # one statement: insert, or count only below the quota
        n = (
            await conn.execute(
                text(
                    "INSERT INTO usage VALUES (:key, 1) ON CONFLICT (key) DO UPDATE SET used = usage.used + 1 "
                    "WHERE usage.used < :quota RETURNING used"  # usage.used: the row already there, not the one proposed
                ),
                {"key": key, "quota": QUOTA},
            )
        ).scalar_one_or_none()
    if n is None:
        raise HTTPException(429, "quota used up")
    return {"key": key, "used": n, "left": QUOTA - n}
"""
)


# Read, check in Python, then write, in one transaction that starts by making sure the row exists. SQLite: that INSERT
# takes the file's write lock until the commit, so the calls take turns and it is right. PostgreSQL (READ COMMITTED):
# the SELECT locks nothing, two calls read the same count, and one update is lost.
READ_CHECK_WRITE_IN_ONE_TRANSACTION = (
    QUOTA_HEAD
    + """
from sqlalchemy import column, select, table

usage = table("usage", column("key"), column("used"))


@app.get("/ask/{key}")
async def ask(key: str, request: Request) -> dict[str, int | str]:
    async with request.app.state.engine.begin() as conn:
        await conn.execute(text("INSERT INTO usage VALUES (:key, 0) ON CONFLICT (key) DO NOTHING"), {"key": key})
        used = (await conn.execute(select(usage.c.used).where(usage.c.key == key))).scalar_one()
        if used >= QUOTA:
            raise HTTPException(429, "quota used up")
        await conn.execute(text("UPDATE usage SET used = :n WHERE key = :key"), {"key": key, "n": used + 1})
    return {"key": key, "used": used + 1, "left": QUOTA - used - 1}
"""
)
# The same, adding one in SQL after the check in Python: no update lost, but calls allowed past the quota.
READ_CHECK_INCREMENT_IN_ONE_TRANSACTION = READ_CHECK_WRITE_IN_ONE_TRANSACTION.replace(
    '"UPDATE usage SET used = :n WHERE key = :key"), {"key": key, "n": used + 1}',
    '"UPDATE usage SET used = used + 1 WHERE key = :key"), {"key": key}',
)
# The row locked as it is read (SQLite leaves FOR UPDATE out: its write lock is already held): right on both.
LOCKED_ROW = READ_CHECK_WRITE_IN_ONE_TRANSACTION.replace(
    "select(usage.c.used).where(usage.c.key == key)", "select(usage.c.used).where(usage.c.key == key).with_for_update()"
)
# The read first, then the write, in one transaction: on SQLite too the read comes before any lock is taken.
SELECT_THEN_UPSERT_IN_ONE_TRANSACTION = (
    QUOTA_HEAD
    + """

@app.get("/ask/{key}")
async def ask(key: str, request: Request) -> dict[str, int | str]:
    async with request.app.state.engine.begin() as conn:
        row = (await conn.execute(text("SELECT used FROM usage WHERE key = :key"), {"key": key})).first()
        used = row[0] if row else 0
        if used >= QUOTA:
            raise HTTPException(429, "quota used up")
        await conn.execute(
            text("INSERT INTO usage VALUES (:key, :n) ON CONFLICT (key) DO UPDATE SET used = :n"), {"key": key, "n": used + 1}
        )
    return {"key": key, "used": used + 1, "left": QUOTA - used - 1}
"""
)

# The database from the environment ignored: the SQLite file next to the module, whatever the check passes.
IGNORES_THE_VARIABLE = CONDITIONAL_UPDATE.replace(
    'os.environ.get("QUOTA_DATABASE_URL", f"sqlite+aiosqlite:///{Path(__file__).with_name(\'quota.db\')}")',
    "f\"sqlite+aiosqlite:///{Path(__file__).with_name('quota.db')}\"",
)

# Root cause 3: the counts must be in the database the exercise names, not in a store of the answer's own.

JSON_FILE = (
    QUOTA_HEAD
    + """
import json

COUNTS = Path(__file__).with_name("counts.json")  # a file both workers see, next to the module


@app.get("/ask/{key}")
async def ask(key: str) -> dict[str, int | str]:
    counts = json.loads(COUNTS.read_text()) if COUNTS.exists() else {}
    if counts.get(key, 0) >= QUOTA:
        raise HTTPException(429, "quota used up")
    counts[key] = counts.get(key, 0) + 1
    COUNTS.write_text(json.dumps(counts))
    return {"key": key, "used": counts[key], "left": QUOTA - counts[key]}
"""
)

# The same file, locked while it is read and written: right across workers, yet the counts are not in the database.
LOCKED_JSON_FILE = JSON_FILE.replace("import json\n", "import fcntl\nimport json\n").replace(
    """    counts = json.loads(COUNTS.read_text()) if COUNTS.exists() else {}
    if counts.get(key, 0) >= QUOTA:
        raise HTTPException(429, "quota used up")
    counts[key] = counts.get(key, 0) + 1
    COUNTS.write_text(json.dumps(counts))
""",
    """    with open(COUNTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one call at a time, across both workers
        counts = json.loads(COUNTS.read_text()) if COUNTS.exists() else {}
        if counts.get(key, 0) >= QUOTA:
            raise HTTPException(429, "quota used up")
        counts[key] = counts.get(key, 0) + 1
        COUNTS.write_text(json.dumps(counts))
""",
)


def shared_database() -> str:
    """How the 7.1 check names the database it gives the workers, on this run's stack."""
    return "the PostgreSQL database in QUOTA_DATABASE_URL" if postgres_here() else "quota.db"


@pytest.mark.parametrize("source", [JSON_FILE, LOCKED_JSON_FILE], ids=["json-file", "locked-json-file"])
def test_7_1_rejects_counts_kept_outside_the_database(tmp_path: Path, source: str) -> None:
    assert source.count("fcntl.flock") == (source is LOCKED_JSON_FILE)
    fails(
        "7.1",
        module(tmp_path, "quota.py", source),
        saying=f"the usage table in {shared_database()} holds no count for alice, who was allowed 5 calls",
    )


def test_7_1_accepts_one_upsert_with_a_condition(tmp_path: Path) -> None:
    said = passes("7.1", module(tmp_path, "quota.py", UPSERT_WHERE))
    assert "at the same moment" in said and "after a restart the used-up quotas still held" in said


@pytest.mark.parametrize(
    ("source", "saying"),
    [
        (READ_THEN_WRITE, "8 more calls for her sent at the same moment on"),
        (ORM_READ_MODIFY_WRITE, "8 more calls for her sent at the same moment on"),
        (SELECT_THEN_UPSERT_IN_ONE_TRANSACTION, "8 more calls for her sent at the same moment on"),
        (RESET_AT_STARTUP, "after a restart of both workers, alice's next call answered 200"),
    ],
    ids=["read-then-write", "orm-read-modify-write", "select-then-upsert-in-one-transaction", "reset-at-startup"],
)
def test_7_1_rejects_races_and_resets(tmp_path: Path, source: str, saying: str) -> None:
    fails("7.1", module(tmp_path, "quota.py", source), saying=saying)


@pytest.mark.parametrize(
    "source",
    [CONDITIONAL_UPDATE, UPSERT_THEN_COMPARE, ORM_SESSION, LOCKED_ROW],
    ids=["conditional-update", "upsert", "orm", "select-for-update"],
)
def test_7_1_accepts(tmp_path: Path, source: str) -> None:
    assert "quota holds across workers" in passes("7.1", module(tmp_path, "quota.py", source))


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        (READ_CHECK_WRITE_IN_ONE_TRANSACTION, "used = [2, 2, 2, 2, 2, 2, 2, 2]"),
        (READ_CHECK_INCREMENT_IN_ONE_TRANSACTION, "allowed 8 times"),
    ],
    ids=["write-the-count-read", "add-one-after-the-check"],
)
def test_7_1_a_read_then_write_after_an_insert_is_right_on_sqlite_and_wrong_on_postgres(
    tmp_path: Path, source: str, allowed: str
) -> None:
    """SQLite: the INSERT that starts the transaction holds the file's write lock until the commit. PostgreSQL: nothing is locked by the read."""
    path = module(tmp_path, "quota.py", source)
    if postgres_here():
        failure = fails("7.1", path, saying="On PostgreSQL a SELECT does not lock the row it reads")
        assert allowed in str(failure)
    else:
        assert "quota holds across workers" in passes("7.1", path)


@pytest.mark.parametrize(
    ("source", "saying"),
    [
        (IN_MEMORY, "which allowed all 3: it had not seen calls 1 to 5. Each worker counted only the calls it saw."),
        (IN_MEMORY_SQLITE, "Each worker counted only the calls it saw."),
        (OFF_BY_ONE, "alice's call 6 was allowed and calls 7 and 8 refused: one call more than her quota of 5"),
        (ONE_COUNTER_FOR_ALL, "bob's first two calls answered [429, 429]"),
        (DOES_NOT_IMPORT, "uvicorn could not start quota.py: NameError: name 'FIVE' is not defined"),
    ],
    ids=["in-memory-dict", "in-memory-sqlite", "off-by-one", "one-counter-for-all-keys", "does-not-import"],
)
def test_7_1_rejects(tmp_path: Path, source: str, saying: str) -> None:
    fails("7.1", module(tmp_path, "quota.py", source), saying=saying)


def test_7_1_an_upsert_must_name_the_rows_table_on_postgres(tmp_path: Path) -> None:
    path = module(tmp_path, "quota.py", UPSERT_UNQUALIFIED)
    if postgres_here():
        failure = fails("7.1", path, saying='column reference "used" is ambiguous')
        assert "SET used = usage.used + 1" in failure.hint
    else:
        assert "quota holds across workers" in passes("7.1", path)


def test_7_1_on_postgres_gives_the_workers_a_new_database_by_the_environment(tmp_path: Path, on_postgres: None) -> None:
    said = passes("7.1", module(tmp_path, "quota.py", LOCKED_ROW))
    assert "(on PostgreSQL: a new database, its URL passed in QUOTA_DATABASE_URL)" in said


def test_7_1_on_postgres_rejects_a_module_that_opens_its_own_file(tmp_path: Path, on_postgres: None) -> None:
    failure = fails(
        "7.1",
        module(tmp_path, "quota.py", IGNORES_THE_VARIABLE),
        saying="quota.py wrote to quota.db, the SQLite file next to it, though QUOTA_DATABASE_URL named a PostgreSQL database",
    )
    assert "QUOTA_DATABASE_URL" not in IGNORES_THE_VARIABLE
    assert "os.environ.get('QUOTA_DATABASE_URL', ...)" in failure.hint


def test_7_1_wants_the_module_file() -> None:
    fails("7.1", "quota", saying="expected the path of your module file, got 'quota'")


# --- 7.2 -------------------------------------------------------------------------------------------

PRICES_HEAD = """
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from asynclab.standins.s07_workers import RatesClient
"""

ROUTE_ON_APP_STATE = """

@app.get("/convert/{euros}")
async def convert(euros: float, request: Request) -> dict[str, float]:
    rate = await request.app.state.rates.rate("EUR", "USD")
    return {"eur": euros, "usd": round(euros * rate, 2)}
"""

ROUTE_ON_GLOBAL = """

@app.get("/convert/{euros}")
async def convert(euros: float) -> dict[str, float]:
    rate = await rates.rate("EUR", "USD")
    return {"eur": euros, "usd": round(euros * rate, 2)}
"""

LIFESPAN_APP_STATE = (
    PRICES_HEAD
    + """

@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.rates = RatesClient()
    yield
    await app.state.rates.aclose()


app = FastAPI(lifespan=lifespan)
"""
    + ROUTE_ON_APP_STATE
)

LIFESPAN_STATE_DICT = (
    PRICES_HEAD
    + """

@asynccontextmanager
async def lifespan(app: FastAPI):
    async with RatesClient() as rates:
        yield {"rates": rates}  # lifespan state: copied into every request's request.state


app = FastAPI(lifespan=lifespan)


@app.get("/convert/{euros}")
async def convert(euros: float, request: Request) -> dict[str, float]:
    rate = await request.state.rates.rate("EUR", "USD")
    return {"eur": euros, "usd": round(euros * rate, 2)}
"""
)

LIFESPAN_SETS_GLOBAL = (
    PRICES_HEAD
    + """
rates: RatesClient | None = None


@asynccontextmanager
async def lifespan(app: FastAPI):
    global rates
    rates = RatesClient()
    try:
        yield
    finally:
        await rates.aclose()


app = FastAPI(lifespan=lifespan)
"""
    + ROUTE_ON_GLOBAL
)

AT_IMPORT = (
    PRICES_HEAD
    + """
rates = RatesClient()

app = FastAPI()
"""
    + ROUTE_ON_GLOBAL
)

AT_IMPORT_CLOSED_IN_LIFESPAN = (
    PRICES_HEAD
    + """
rates = RatesClient()


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    await rates.aclose()


app = FastAPI(lifespan=lifespan)
"""
    + ROUTE_ON_GLOBAL
)

NEVER_CLOSED = (
    PRICES_HEAD
    + """

@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.rates = RatesClient()
    yield


app = FastAPI(lifespan=lifespan)
"""
    + ROUTE_ON_APP_STATE
)

PER_REQUEST = (
    PRICES_HEAD
    + """
app = FastAPI()


@app.get("/convert/{euros}")
async def convert(euros: float) -> dict[str, float]:
    async with RatesClient() as rates:
        rate = await rates.rate("EUR", "USD")
    return {"eur": euros, "usd": round(euros * rate, 2)}
"""
)


ON_EVENT = (
    PRICES_HEAD
    + """
app = FastAPI()


@app.on_event("startup")
async def open_rates() -> None:
    app.state.rates = RatesClient()


@app.on_event("shutdown")
async def close_rates() -> None:
    await app.state.rates.aclose()
"""
    + ROUTE_ON_APP_STATE
)

OPENED_LAZILY = (
    PRICES_HEAD
    + """
rates: RatesClient | None = None


def client() -> RatesClient:
    global rates
    if rates is None:  # opened by the first request, once per process
        rates = RatesClient()
    return rates


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    if rates is not None:
        await rates.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/convert/{euros}")
async def convert(euros: float) -> dict[str, float]:
    rate = await client().rate("EUR", "USD")
    return {"eur": euros, "usd": round(euros * rate, 2)}
"""
)


def test_7_2_rejects_on_event_as_4_1_and_8_4_do(tmp_path: Path) -> None:
    failure = fails("7.2", module(tmp_path, "prices.py", ON_EVENT), saying="prices.py uses on_event, and FastAPI warned: ")
    assert "lifespan" in failure.hint


def test_7_2_rejects_a_client_opened_lazily_and_closed_at_shutdown(tmp_path: Path) -> None:
    fails(
        "7.2",
        module(tmp_path, "prices.py", OPENED_LAZILY),
        saying="started twice in one process (as a test suite does), GET /convert/10 answered 200 on the first start and 500 on the second",
    )


@pytest.mark.parametrize(
    "source",
    [LIFESPAN_APP_STATE, LIFESPAN_STATE_DICT, LIFESPAN_SETS_GLOBAL],
    ids=["app-state", "lifespan-state", "global-set-in-lifespan"],
)
def test_7_2_accepts(tmp_path: Path, source: str) -> None:
    assert "each worker opened one RatesClient" in passes("7.2", module(tmp_path, "prices.py", source))


@pytest.mark.parametrize(
    ("source", "saying"),
    [
        (AT_IMPORT, "RatesClient was opened while the module was being imported"),
        (AT_IMPORT_CLOSED_IN_LIFESPAN, "RatesClient was opened while the module was being imported"),
        (NEVER_CLOSED, "the RatesClient it opened still answered: nothing closed it when the app stopped"),
        (PER_REQUEST, "opened 3 rates clients for 3 requests: open one per worker, not one per request."),
    ],
    ids=["at-import", "at-import-closed-in-lifespan", "never-closed", "one-per-request"],
)
def test_7_2_rejects(tmp_path: Path, source: str, saying: str) -> None:
    fails("7.2", module(tmp_path, "prices.py", source), saying=saying)


# --- 7.3 -------------------------------------------------------------------------------------------

PRICES_HEAD = """
import asyncio
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

DATABASE_URL = os.environ.get("PRICE_LIST_DATABASE_URL", f"sqlite+aiosqlite:///{Path(__file__).with_name('price_list.db')}")
SELECT = text("SELECT cents FROM prices WHERE sku = :sku")


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(DATABASE_URL)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS prices (sku TEXT PRIMARY KEY, cents INTEGER NOT NULL)"))
        await conn.execute(text("INSERT INTO prices VALUES ('kettle', 3490), ('teapot', 2450) ON CONFLICT (sku) DO NOTHING"))
    app.state.engine = engine
    yield {"sessions": async_sessionmaker(engine)}
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


class Price(BaseModel):
    cents: int


async def store(sku: str, cents: int, request: Request) -> None:
    async with request.app.state.engine.begin() as conn:
        changed = await conn.execute(text("UPDATE prices SET cents = :cents WHERE sku = :sku"), {"cents": cents, "sku": sku})
    if changed.rowcount == 0:
        raise HTTPException(404, "no such product")


async def read(sku: str, request: Request) -> int | None:
    async with request.app.state.engine.connect() as conn:
        return (await conn.execute(SELECT, {"sku": sku})).scalar_one_or_none()


def answer(sku: str, cents: int | None) -> dict[str, int | str]:
    if cents is None:
        raise HTTPException(404, "no such product")
    return {"sku": sku, "cents": cents}
"""

READ_EVERY_TIME = (
    PRICES_HEAD
    + """

@app.put("/prices/{sku}")
async def set_price(sku: str, price: Price, request: Request):
    await store(sku, price.cents, request)
    return answer(sku, price.cents)


@app.get("/prices/{sku}")
async def get_price(sku: str, request: Request):
    return answer(sku, await read(sku, request))
"""
)

# The lifespan's yielded state instead of app.state: a session per request, the same single read.
SESSION_FROM_LIFESPAN_STATE = READ_EVERY_TIME.replace(
    "    return answer(sku, await read(sku, request))",
    """    async with request.state.sessions() as session:
        return answer(sku, (await session.execute(SELECT, {"sku": sku})).scalar_one_or_none())""",
)

KNOWN = (
    PRICES_HEAD
    + """
known: dict[str, int | None] = {}
lock = asyncio.Lock()
fetched_at: dict[str, float] = {}


@app.put("/prices/{sku}")
async def set_price(sku: str, price: Price, request: Request):
    await store(sku, price.cents, request)
    known[sku] = price.cents  # KEEP
    return answer(sku, price.cents)


@app.get("/prices/{sku}")
async def get_price(sku: str, request: Request):
    if sku not in known:  # FRESH
        known[sku] = await read(sku, request)
    return answer(sku, known[sku])
"""
)
# As handed out: each worker's dict, updated by the PUT in the worker that served it only.
HANDED_OUT_73 = KNOWN
# "A lock makes the dict safe": the lock is per process too.
LOCKED_DICT = KNOWN.replace(
    "    known[sku] = price.cents  # KEEP", "    async with lock:\n        known[sku] = price.cents"
).replace(
    "    if sku not in known:  # FRESH\n        known[sku] = await read(sku, request)",
    "    async with lock:\n        if sku not in known:\n            known[sku] = await read(sku, request)",
)
# Forget the price on a change, so the next read fetches it: only in the worker that served the PUT.
FORGOTTEN_ON_CHANGE = KNOWN.replace("    known[sku] = price.cents  # KEEP", "    known.pop(sku, None)")
# Entries that expire after a minute: a change shows, a minute later, on the other worker.
EXPIRE_AFTER_A_MINUTE = KNOWN.replace(
    "    if sku not in known:  # FRESH\n",
    "    if sku not in known or time.monotonic() - fetched_at[sku] > 60:\n        fetched_at[sku] = time.monotonic()\n",
)


@pytest.mark.parametrize(
    "source", [READ_EVERY_TIME, SESSION_FROM_LIFESPAN_STATE], ids=["engine-on-app-state", "lifespan-state-session"]
)
def test_7_3_accepts_reading_the_database_on_every_request(tmp_path: Path, source: str) -> None:
    assert "answered the new price (3540 cents)" in passes("7.3", module(tmp_path, "price_list.py", source))


@pytest.mark.parametrize(
    "source",
    [HANDED_OUT_73, LOCKED_DICT, FORGOTTEN_ON_CHANGE, EXPIRE_AFTER_A_MINUTE],
    ids=["handed-out", "a-lock-around-it", "forgotten-on-change", "expires-after-a-minute"],
)
def test_7_3_rejects_a_copy_in_each_worker(tmp_path: Path, source: str) -> None:
    failure = fails(
        "7.3",
        module(tmp_path, "price_list.py", source),
        saying="answered [3540, 3490, 3540, 3490]: 2 of them the old price",
    )
    assert not [word for word in ("worker", "known", "memory", "cache") if word in str(failure).splitlines()[0]]


def test_7_3_on_postgres_names_sqlites_own_insert_or_ignore(tmp_path: Path, on_postgres: None) -> None:
    source = READ_EVERY_TIME.replace(
        "INSERT INTO prices VALUES ('kettle', 3490), ('teapot', 2450) ON CONFLICT (sku) DO NOTHING",
        "INSERT OR IGNORE INTO prices VALUES ('kettle', 3490), ('teapot', 2450)",
    )
    failure = fails(
        "7.3", module(tmp_path, "price_list.py", source), saying="uvicorn could not start price_list.py on PostgreSQL"
    )
    assert "INSERT OR IGNORE is SQLite's own" in failure.hint


def test_7_3_on_postgres_rejects_a_module_that_opens_its_own_file(tmp_path: Path, on_postgres: None) -> None:
    source = READ_EVERY_TIME.replace(
        'os.environ.get("PRICE_LIST_DATABASE_URL", f"sqlite+aiosqlite:///{Path(__file__).with_name(\'price_list.db\')}")',
        "f\"sqlite+aiosqlite:///{Path(__file__).with_name('price_list.db')}\"",
    )
    assert "PRICE_LIST_DATABASE_URL" not in source
    fails(
        "7.3",
        module(tmp_path, "price_list.py", source),
        saying="price_list.py wrote to price_list.db, the SQLite file next to it, though PRICE_LIST_DATABASE_URL named",
    )


def test_7_3_on_postgres_gives_the_workers_a_new_database_by_the_environment(tmp_path: Path, on_postgres: None) -> None:
    said = passes("7.3", module(tmp_path, "price_list.py", READ_EVERY_TIME))
    assert "(on PostgreSQL: a new database, its URL passed in PRICE_LIST_DATABASE_URL)" in said


def test_7_3_rejects_a_lost_404(tmp_path: Path) -> None:
    source = READ_EVERY_TIME.replace(
        '        raise HTTPException(404, "no such product")\n    return {',
        '        return {"sku": sku, "cents": 0}\n    return {',
    )
    fails(
        "7.3", module(tmp_path, "price_list.py", source), saying="GET /prices/spoon (no such product) answered 200, expected 404"
    )
