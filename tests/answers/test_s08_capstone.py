"""Section 8, the capstone: each check passes on the solution and on other correct fixes, fails on
the service as handed out, and rejects at least one plausible wrong fix of its own rule.

Every variant is the solution with one part changed, so it tests exactly one rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asynclab.bench import stack
from asynclab.checks._s08_workers import BURST
from asynclab.course import authoring, checking
from asynclab.standins.s08_capstone import handed_out_service
from tests.conftest import fails, passes

SOLUTION = authoring.ROOT / "solutions" / "08-capstone" / "orders_service.py"
IDS = [f"8.{i}" for i in range(1, 8)]


def variant(folder: Path, *changes: tuple[str, str]) -> Path:
    """The solution with each ``old`` replaced by ``new``; every ``old`` must be there."""
    text = authoring.solution_source(SOLUTION.read_text(encoding="utf-8")) + "\n"
    for old, new in changes:
        assert old in text, f"the solution no longer contains {old!r}"
        text = text.replace(old, new)
    path = folder / "orders_service.py"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("exercise", IDS)
def test_the_solution_passes(exercise: str) -> None:
    passes(exercise, SOLUTION)


HANDED_OUT_SAYS = {
    "8.1": "3 of 3 card charges ran on the event-loop thread",
    "8.2": "with no token answered 201, not 401",
    "8.3": "only asyncio said 'Task exception was never retrieved'",
    "8.4": "the service uses on_event",
    "8.5": "GET /orders/9999 for an order that does not exist answered 500",
    "8.6": "the declined order was saved by the next request's commit",
    "8.7": "the database refused a second order numbered ORD-00001 (the server's log says: "
    + (
        'duplicate key value violates unique constraint "orders_number_key")'
        if stack.on_postgres()
        else "UNIQUE constraint failed: orders.number)"
    ),
}


@pytest.mark.parametrize("exercise", IDS)
def test_the_service_as_handed_out_fails(exercise: str, tmp_path: Path) -> None:
    """Each check names its own symptom; 8.2's forgotten `await` is 8.2's to find, never another check's news."""
    checking.get(exercise).hints_given = 0
    failure = fails(exercise, handed_out_service(tmp_path), saying=HANDED_OUT_SAYS[exercise])
    assert "StaffTokens" not in str(failure) and "tokens.verify" not in str(failure)
    assert "](" not in str(failure) and "PendingRollbackError" not in str(failure)  # no raw markdown, no other exercise's error


def test_a_wrong_path_is_named() -> None:
    fails("8.1", "orders_service.py", saying="expected the path of your service file")


# --- 8.1 ------------------------------------------------------------------------------------------

CHARGE = "order.receipt = await anyio.to_thread.run_sync(charge, order.number, new.amount_cents, new.card)"


def test_8_1_run_in_threadpool_passes(tmp_path: Path) -> None:
    passes(
        "8.1",
        variant(
            tmp_path,
            (CHARGE, "order.receipt = await run_in_threadpool(charge, order.number, new.amount_cents, new.card)"),
            ("import anyio\n", "import anyio\nfrom starlette.concurrency import run_in_threadpool\n"),
        ),
    )


def test_8_1_yielding_first_then_blocking_is_rejected(tmp_path: Path) -> None:
    wrong = "await anyio.sleep(0)\n        order.receipt = charge(order.number, new.amount_cents, new.card)"
    fails("8.1", variant(tmp_path, (CHARGE, wrong)), saying="ran on the event-loop thread")


def test_8_1_calling_the_sdk_before_offloading_it_is_rejected(tmp_path: Path) -> None:
    wrong = "order.receipt = await anyio.to_thread.run_sync(charge(order.number, new.amount_cents, new.card))"
    fails("8.1", variant(tmp_path, (CHARGE, wrong)), saying="raised")


# --- 8.2 ------------------------------------------------------------------------------------------

VERIFY = 'name = await tokens.verify(authorization.removeprefix("Bearer "))'


def test_8_2_a_forgotten_await_checked_with_is_none_is_rejected(tmp_path: Path) -> None:
    wrong = 'name = tokens.verify(authorization.removeprefix("Bearer "))'
    fails("8.2", variant(tmp_path, (VERIFY, wrong)), saying="with no token answered 201")


def test_8_2_checking_only_that_a_header_is_there_is_rejected(tmp_path: Path) -> None:
    wrong = 'name = authorization.removeprefix("Bearer ") or None'
    fails("8.2", variant(tmp_path, (VERIFY, wrong)), saying="with a forged token answered 201")


def test_8_2_a_new_event_loop_per_request_is_rejected(tmp_path: Path) -> None:
    """A `def` dependency that runs the client on asyncio.run(): a new loop per request, which the client refuses."""
    signature = 'staff_member(authorization: Annotated[str, Header()] = "") -> str:\n'
    wrong = 'name = asyncio.run(tokens.verify(authorization.removeprefix("Bearer ")))'
    service = variant(
        tmp_path,
        (f"async def {signature}    {VERIFY}", f"def {signature}    {wrong}"),  # a worker thread: no loop of its own
        ("import logging\n", "import asyncio\nimport logging\n"),
    )
    failure = fails("8.2", service, saying="tokens.verify() ran on a new event loop (asyncio.run), not on the app's")
    assert "await tokens.verify(" in failure.hint


# --- 8.3 ------------------------------------------------------------------------------------------

BACKGROUND = "background.add_task(send_confirmation, request.app.state.mail, order.number, order.email)"
TRACKED = """pending = request.app.state.pending
    task = asyncio.create_task(send_confirmation(request.app.state.mail, order.number, order.email))
    pending.add(task)
    task.add_done_callback(pending.discard)"""
DRAIN = """        app.state.pending = set()
        yield
        if app.state.pending:
            await asyncio.wait(app.state.pending, timeout=3)"""


def test_8_3_a_tracked_logged_task_drained_at_shutdown_passes(tmp_path: Path) -> None:
    service = variant(
        tmp_path,
        (BACKGROUND, TRACKED),
        ("        yield\n", DRAIN + "\n"),
        ("import logging\n", "import asyncio\nimport logging\n"),
    )
    passes("8.3", service)


def test_8_3_the_guides_set_and_discard_is_rejected(tmp_path: Path) -> None:
    guide = TRACKED.replace(
        "send_confirmation(request.app.state.mail, order.number, order.email)", "request.app.state.mail.send(order.email)"
    )
    service = variant(
        tmp_path, (BACKGROUND, guide), ("        yield\n", DRAIN + "\n"), ("import logging\n", "import asyncio\nimport logging\n")
    )
    fails("8.3", service, saying="failed (550 mailbox full)")


def test_8_3_a_logged_task_that_nobody_waits_for_at_shutdown_is_rejected(tmp_path: Path) -> None:
    service = variant(
        tmp_path,
        (BACKGROUND, TRACKED),
        ("        yield\n", "        app.state.pending = set()\n        yield\n"),
        ("import logging\n", "import asyncio\nimport logging\n"),
    )
    fails("8.3", service, saying="was still on its way")


def test_8_3_a_background_task_without_logging_is_rejected(tmp_path: Path) -> None:
    service = variant(tmp_path, (BACKGROUND, "background.add_task(request.app.state.mail.send, order.email)"))
    fails("8.3", service, saying="nothing was logged")


# --- 8.4 ------------------------------------------------------------------------------------------

STACK = """    async with AsyncExitStack() as stack:
        engine = create_async_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        app.state.payments = PaymentGateway(settings.payments_key)
        stack.callback(app.state.payments.close)
        app.state.mail = await MailClient.connect()
        stack.push_async_callback(app.state.mail.aclose)
        yield
"""


def test_8_4_nested_try_finally_passes(tmp_path: Path) -> None:
    nested = """    engine = create_async_engine(settings.database_url)
    try:
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        app.state.payments = PaymentGateway(settings.payments_key)
        try:
            app.state.mail = await MailClient.connect()
            try:
                yield
            finally:
                await app.state.mail.aclose()
        finally:
            app.state.payments.close()
    finally:
        await engine.dispose()
"""
    passes("8.4", variant(tmp_path, (STACK, nested)))


def test_8_4_a_lifespan_that_closes_only_after_a_good_start_is_rejected(tmp_path: Path) -> None:
    naive = """    engine = create_async_engine(settings.database_url)
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    app.state.payments = PaymentGateway(settings.payments_key)
    app.state.mail = await MailClient.connect()
    yield
    await app.state.mail.aclose()
    app.state.payments.close()
    await engine.dispose()
"""
    fails("8.4", variant(tmp_path, (STACK, naive)), saying="startup failed (as it should) but PaymentGateway(open) was left open")


def test_8_4_a_lifespan_that_forgets_to_close_is_rejected(tmp_path: Path) -> None:
    fails("8.4", variant(tmp_path, ("        stack.callback(app.state.payments.close)\n", "")), saying="after a normal shutdown")


# --- 8.5 ------------------------------------------------------------------------------------------

UNAVAILABLE = 'raise HTTPException(503, "orders are unavailable, try again shortly") from exc'


def test_8_5_a_500_with_a_fixed_message_passes(tmp_path: Path) -> None:
    passes("8.5", variant(tmp_path, (UNAVAILABLE, 'raise HTTPException(500, "internal error") from exc')))


def test_8_5_the_error_text_in_the_body_is_rejected(tmp_path: Path) -> None:
    fails("8.5", variant(tmp_path, (UNAVAILABLE, "raise HTTPException(503, str(exc)) from exc")), saying="tells the client")


def test_8_5_the_drivers_words_in_the_body_are_rejected(tmp_path: Path) -> None:
    """No SQL and no class name, only the driver's message: SQLite's "no such table", PostgreSQL's "relation ... does not exist"."""
    words = "'relation '" if stack.on_postgres() else "'no such table'"
    failure = fails(
        "8.5", variant(tmp_path, (UNAVAILABLE, "raise HTTPException(503, str(exc.orig)) from exc")), saying="tells the client"
    )
    assert words in failure.observed


def test_8_5_passes_before_8_6_is_fixed(tmp_path: Path) -> None:
    """One session for the whole app (8.6's fault, not 8.5's), closed at shutdown: 8.5 still passes.

    On PostgreSQL that session stays in a transaction after its reads, which would hold off the outage's
    rename for ever; the outage ends it first, and the broken lookup still answers 503.
    """
    shared = "    yield request.app.state.shared\n"
    made = "        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)\n"
    closed = made + "        app.state.shared = app.state.sessions()\n        stack.push_async_callback(app.state.shared.close)\n"
    assert "database gone: 503" in passes("8.5", variant(tmp_path, (PER_REQUEST, shared), (made, closed)))


def test_8_5_a_broken_database_answered_as_not_found_is_rejected(tmp_path: Path) -> None:
    fails("8.5", variant(tmp_path, (UNAVAILABLE, "order = None")), saying="a broken database is the server's fault")


# --- 8.6 ------------------------------------------------------------------------------------------

PER_REQUEST = """    async with request.app.state.sessions() as session:
        yield session
"""


def test_8_6_close_in_finally_passes(tmp_path: Path) -> None:
    manual = """    session = request.app.state.sessions()
    try:
        yield session
    finally:
        await session.close()
"""
    passes("8.6", variant(tmp_path, (PER_REQUEST, manual)))


def test_8_6_a_session_that_commits_whatever_happened_is_rejected(tmp_path: Path) -> None:
    commits = """    async with request.app.state.sessions() as session:
        try:
            yield session
        finally:
            await session.commit()
"""
    fails("8.6", variant(tmp_path, (PER_REQUEST, commits)), saying="the declined order was saved")


def test_8_6_one_session_for_the_whole_app_is_rejected(tmp_path: Path) -> None:
    shared = "    yield request.app.state.shared\n"
    made = "        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)\n"
    service = variant(tmp_path, (PER_REQUEST, shared), (made, made + "        app.state.shared = app.state.sessions()\n"))
    fails("8.6", service, saying="the declined order was saved")


# --- 8.7 ------------------------------------------------------------------------------------------


def test_8_7_a_counter_started_from_the_rows_at_startup_is_rejected(tmp_path: Path) -> None:
    flush = '    await session.flush()  # the database hands out the id: unique across every worker\n    order.number = f"ORD-{order.id:05d}"\n'
    counted = '    order.number = f"ORD-{next(request.app.state.numbers):05d}"\n    await session.flush()\n'
    made = "        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)\n"
    start = (
        made
        + "        async with app.state.sessions() as session:\n"
        + "            existing = len((await session.execute(select(Order))).all())\n"
        + "        app.state.numbers = itertools.count(existing + 1)\n"
    )
    service = variant(
        tmp_path,
        (flush, counted),
        (made, start),
        ("import logging\n", "import itertools\nimport logging\n"),
        ("from sqlalchemy.exc", "from sqlalchemy import select\nfrom sqlalchemy.exc"),
    )
    fails("8.7", service, saying="answered 500")


# --- Root cause 1 (8.1): the loop must stay free while the charge runs, not only the charge be off its thread.


def test_8_1_asyncio_to_thread_passes(tmp_path: Path) -> None:
    right = "order.receipt = await asyncio.to_thread(charge, order.number, new.amount_cents, new.card)"
    service = variant(tmp_path, (CHARGE, right), ("import anyio\n", "import asyncio\n\nimport anyio\n"))
    assert "the event loop ran other work during every one of them" in passes("8.1", service)


def test_8_1_waiting_on_a_thread_pool_future_is_rejected(tmp_path: Path) -> None:
    wrong = (
        "with ThreadPoolExecutor(1) as pool:\n"
        "            order.receipt = pool.submit(charge, order.number, new.amount_cents, new.card).result()"
    )
    service = variant(
        tmp_path, (CHARGE, wrong), ("import anyio\n", "import anyio\nfrom concurrent.futures import ThreadPoolExecutor\n")
    )
    fails("8.1", service, saying="3 of 3 card charges ran in another thread, but the event loop waited")


def test_8_1_joining_a_thread_is_rejected(tmp_path: Path) -> None:
    wrong = (
        "receipts = []\n"
        "        worker = threading.Thread(target=lambda: receipts.append(charge(order.number, new.amount_cents, new.card)))\n"
        "        worker.start()\n"
        "        worker.join()\n"
        "        order.receipt = receipts[0]"
    )
    service = variant(tmp_path, (CHARGE, wrong), ("import anyio\n", "import threading\n\nimport anyio\n"))
    fails("8.1", service, saying="card charges ran in another thread, but the event loop waited")


# --- Root cause 2 (8.7): concurrent orders on both workers, and a restart of both workers.

FLUSH = '    await session.flush()  # the database hands out the id: unique across every worker\n    order.number = f"ORD-{order.id:05d}"\n'


def test_8_7_counting_the_rows_is_rejected_under_concurrency(tmp_path: Path) -> None:
    """Sequential orders get 1, 2, 3; two orders at the same moment count the same rows."""
    made = "    order = Order(email=new.email, amount_cents=new.amount_cents)\n    session.add(order)\n" + FLUSH
    counted = (
        "    taken = await session.scalar(select(func.count()).select_from(Order))  # before this order is added\n"
        '    order = Order(number=f"ORD-{taken + 1:05d}", email=new.email, amount_cents=new.amount_cents)\n'
        "    session.add(order)\n"
        "    await session.flush()\n"
    )
    service = variant(
        tmp_path, (made, counted), ("from sqlalchemy.exc", "from sqlalchemy import func, select\nfrom sqlalchemy.exc")
    )
    fails("8.7", service, saying="orders placed at the same time on")


def test_8_7_a_database_sequence_reset_at_startup_is_rejected_after_a_restart(tmp_path: Path) -> None:
    """Unique while the workers run (the counter is in the database), but every start resets it.

    Both workers start at once: the table is made by one of them (on PostgreSQL the other's CREATE then
    fails, and is let go), and the reset is one upsert, so that only the restart can go wrong.
    """
    counted = (
        "    await session.flush()\n"
        '    n = (await session.execute(text("UPDATE numbers SET n = n + 1 WHERE id = 1 RETURNING n"))).scalar_one()\n'
        '    order.number = f"ORD-{n:05d}"\n'
    )
    made = "        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)\n"
    reset = (
        made
        + "        with contextlib.suppress(SQLAlchemyError):  # the other worker may be making it at this moment\n"
        + "            async with engine.begin() as conn:\n"
        + '                await conn.execute(text("CREATE TABLE IF NOT EXISTS numbers (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))\n'
        + "        async with engine.begin() as conn:  # a fresh sequence at every start\n"
        + '            await conn.execute(text("INSERT INTO numbers VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET n = 0"))\n'
    )
    service = variant(
        tmp_path,
        (FLUSH, counted),
        (made, reset),
        ("from sqlalchemy.exc", "from sqlalchemy import text\nfrom sqlalchemy.exc"),
        ("import logging\n", "import contextlib\nimport logging\n"),
    )
    fails("8.7", service, saying="after a restart of both workers")


def test_8_7_a_random_number_per_order_passes(tmp_path: Path) -> None:
    """New, correct: a random 128-bit token never repeats in practice, across workers and restarts."""
    token = '    order.number = f"ORD-{uuid.uuid4().hex[:16]}"\n    await session.flush()\n'
    service = variant(tmp_path, (FLUSH, token), ("import logging\n", "import logging\nimport uuid\n"))
    assert "different numbers" in passes("8.7", service)


# --- Root cause 6 (8.4): every resource, the engine included.


def test_8_4_an_engine_dispose_that_is_never_awaited_is_rejected(tmp_path: Path) -> None:
    wrong = "        stack.callback(engine.dispose)  # a coroutine, created and never awaited\n"
    service = variant(tmp_path, ("        stack.push_async_callback(engine.dispose)\n", wrong))
    fails("8.4", service, saying="database connection(s) the service opened were still open: the engine was never disposed")


def test_8_4_an_engine_never_disposed_is_rejected(tmp_path: Path) -> None:
    service = variant(tmp_path, ("        stack.push_async_callback(engine.dispose)\n", ""))
    fails("8.4", service, saying="the engine was never disposed")


def test_8_4_an_engine_disposed_in_a_finally_passes(tmp_path: Path) -> None:
    """New, correct: the engine outside the stack, disposed in a finally around it."""
    outer = """    engine = create_async_engine(settings.database_url)
    try:
        async with AsyncExitStack() as stack:
            app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
            app.state.payments = PaymentGateway(settings.payments_key)
            stack.callback(app.state.payments.close)
            app.state.mail = await MailClient.connect()
            stack.push_async_callback(app.state.mail.aclose)
            yield
    finally:
        await engine.dispose()
"""
    assert "the engine disposed" in passes("8.4", variant(tmp_path, (STACK, outer)))


# --- 8.7 on both engines: the race forced on each (SQLite's write lock, PostgreSQL's tables locked IN EXCLUSIVE MODE).

MADE = "    order = Order(email=new.email, amount_cents=new.amount_cents)\n    session.add(order)\n" + FLUSH
SQL_IMPORTS = (
    "from sqlalchemy.exc import SQLAlchemyError",
    "from sqlalchemy import func, insert, select, text\nfrom sqlalchemy.exc import IntegrityError, SQLAlchemyError",
)


def numbered(tmp_path: Path, made: str) -> Path:
    """The solution with the order made and numbered by ``made`` instead (func, insert, select, text, IntegrityError imported)."""
    return variant(tmp_path, (MADE, made), SQL_IMPORTS)


def test_8_7_insert_returning_the_id_passes(tmp_path: Path) -> None:
    made = (
        "    statement = insert(Order).values(email=new.email, amount_cents=new.amount_cents).returning(Order.id)\n"
        "    order = await session.get(Order, (await session.execute(statement)).scalar_one())\n"
        '    order.number = f"ORD-{order.id:05d}"\n'
    )
    assert "different numbers" in passes("8.7", numbered(tmp_path, made))


def test_8_7_a_unique_number_retried_on_conflict_passes(tmp_path: Path) -> None:
    """Count, insert, and when the database refuses the number (another order took it), roll back and count again."""
    made = (
        "    for _ in range(50):\n"
        "        taken = await session.scalar(select(func.count()).select_from(Order))\n"
        '        order = Order(number=f"ORD-{taken + 1:05d}", email=new.email, amount_cents=new.amount_cents)\n'
        "        session.add(order)\n"
        "        try:\n"
        "            await session.flush()\n"
        "            break\n"
        "        except IntegrityError:\n"
        "            await session.rollback()  # the number was taken meanwhile: try the next one\n"
    )
    assert "different numbers" in passes("8.7", numbered(tmp_path, made))


def test_8_7_the_highest_number_plus_one_is_rejected(tmp_path: Path) -> None:
    """Read max + 1, then insert: orders placed at the same moment all read the same maximum, on either engine."""
    made = (
        "    last = await session.scalar(select(func.max(Order.id)))\n"
        '    order = Order(number=f"ORD-{(last or 0) + 1:05d}", email=new.email, amount_cents=new.amount_cents)\n'
        "    session.add(order)\n"
        "    await session.flush()\n"
    )
    fails("8.7", numbered(tmp_path, made), saying=f"of {BURST} orders placed at the same time on")


def test_8_7_locking_the_last_row_is_rejected(tmp_path: Path) -> None:
    """SELECT ... FOR UPDATE locks the rows that exist, not the next number: the next order reads the same last row."""
    made = (
        "    last = await session.scalar(select(Order.id).order_by(Order.id.desc()).limit(1).with_for_update())\n"
        '    order = Order(number=f"ORD-{(last or 0) + 1:05d}", email=new.email, amount_cents=new.amount_cents)\n'
        "    session.add(order)\n"
        "    await session.flush()\n"
    )
    fails("8.7", numbered(tmp_path, made), saying=f"of {BURST} orders placed at the same time on")


def test_8_7_a_lock_in_each_worker_is_rejected(tmp_path: Path) -> None:
    """An asyncio.Lock around max + 1 makes one worker's orders take turns; the other worker has a lock of its own.

    On PostgreSQL the requests queued behind that lock never show as waiting for the database: the burst goes on
    after the crowd's bound (5 s), and the two workers' orders still collide.
    """
    made = (
        "    async with request.app.state.number_lock:  # one order at a time, in this worker\n"
        "        last = await session.scalar(select(func.max(Order.id)))\n"
        '        order = Order(number=f"ORD-{(last or 0) + 1:05d}", email=new.email, amount_cents=new.amount_cents)\n'
        "        session.add(order)\n"
        "        await session.flush()\n"
        "        await session.commit()\n"
    )
    sessions = "        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)\n"
    service = variant(
        tmp_path, (MADE, made), SQL_IMPORTS, (sessions, sessions + "        app.state.number_lock = anyio.Lock()\n")
    )
    failure = fails("8.7", service, saying=f"of {BURST} orders placed at the same time on")
    assert "the database refused a second order numbered" in failure.observed


COUNT_AFTER_INSERT = (
    "    order = Order(email=new.email, amount_cents=new.amount_cents)\n"
    "    session.add(order)\n"
    "    await session.flush()\n"
    "    taken = await session.scalar(select(func.count()).select_from(Order))  # this order included\n"
    '    order.number = f"ORD-{taken:05d}"\n'
)


def test_8_7_counting_after_the_insert_depends_on_the_engine(tmp_path: Path) -> None:
    """SQLite runs one write transaction at a time: a count taken after your own INSERT is yours alone.

    PostgreSQL runs them side by side: two orders inserted at once both count the same rows.
    """
    service = numbered(tmp_path, COUNT_AFTER_INSERT)
    if stack.on_postgres():
        failure = fails("8.7", service, saying=f"of {BURST} orders placed at the same time on")
        assert 'duplicate key value violates unique constraint "orders_number_key"' in failure.observed
    else:
        assert "different numbers" in passes("8.7", service)


def test_8_7_on_postgres_a_sequence_passes_and_the_duplicate_is_named(on_postgres: None, tmp_path: Path) -> None:
    """PostgreSQL's own sequence for the id column hands out numbers to every worker; asyncpg's UniqueViolationError is named."""
    made = (
        "    n = await session.scalar(select(func.nextval('orders_id_seq')))\n"
        '    order = Order(id=n, number=f"ORD-{n:05d}", email=new.email, amount_cents=new.amount_cents)\n'
        "    session.add(order)\n"
        "    await session.flush()\n"
    )
    assert "different numbers" in passes("8.7", numbered(tmp_path, made))
    fails(
        "8.7",
        handed_out_service(tmp_path),
        saying='the database refused a second order numbered ORD-00001 (the server\'s log says: duplicate key value violates unique constraint "orders_number_key")',
    )
