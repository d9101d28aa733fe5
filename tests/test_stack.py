"""The second stack's instruments: the switch, temporary PostgreSQL and Redis servers, and held writes on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import anyio
import psutil
import pytest

from asynclab.bench import stack
from asynclab.bench.crowd import lock_waiters, writes_held


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("value", "expected"), [("", "sqlite"), ("sqlite", "sqlite"), ("postgres", "postgres"), (" PostgreSQL ", "postgres")]
)
def test_the_switch_reads_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv(stack.STACK_VARIABLE, value)
    assert stack.stack() == expected


def test_an_unknown_stack_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(stack.STACK_VARIABLE, "mysql")
    with pytest.raises(ValueError, match="'mysql': use 'sqlite'"):
        stack.stack()


def test_switched_on_without_the_servers_says_how_to_install_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(stack.STACK_VARIABLE, "postgres")
    monkeypatch.setattr(stack, "pg_bindir", lambda: None)
    monkeypatch.setattr(stack, "redis_server", lambda: None)
    with pytest.raises(stack.StackUnavailable, match="PostgreSQL and Redis not installed here: install the servers"):
        stack.postgres_here()
    monkeypatch.setenv(stack.STACK_VARIABLE, "sqlite")
    assert stack.postgres_here() is False  # the default never needs them


def _listening(pid: int) -> set[str]:
    """The addresses the server process ``pid`` listens on (its short-lived children hold no listening socket)."""
    return {conn.laddr.ip for conn in psutil.Process(pid).net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN}


def _postmaster(folder: Path) -> int:
    return int((folder / "data" / "postmaster.pid").read_text().split()[0])


def test_a_temporary_postgres_listens_on_loopback_only_keeps_its_limit_and_leaves_nothing(on_postgres: None) -> None:
    import psycopg

    from asynclab.bench.postgres_server import temporary_postgres

    with temporary_postgres(max_connections=12, databases=("app", "other")) as pg:
        pid = _postmaster(pg.folder)
        assert _listening(pid) == {"127.0.0.1"}
        with psycopg.connect(pg.dsn("other")) as conn:
            assert conn.execute("SHOW max_connections").fetchone() == ("12",)
            assert pg.connections("other") == 1  # this connection; the count's own is left out
        folder = pg.folder
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not folder.exists()


def test_a_temporary_redis_listens_on_loopback_only_and_leaves_nothing(on_postgres: None) -> None:
    import redis

    from asynclab.bench.redis_server import temporary_redis

    with temporary_redis() as server:
        client = redis.Redis.from_url(server.url)
        assert client.incr("visits") == 1 and client.incr("visits") == 2
        pid = int(client.info("server")["process_id"])
        client.close()
        assert _listening(pid) == {"127.0.0.1"}
        folder = server.folder
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not folder.exists()


@pytest.mark.anyio
async def test_held_writes_on_postgres_let_reads_through_and_make_writes_wait(on_postgres: None) -> None:
    import psycopg

    from asynclab.bench.database import temporary_database

    async with temporary_database(name="held") as db:
        dsn = db.server.dsn(db.name)
        with psycopg.connect(dsn, autocommit=True) as setup:
            setup.execute("CREATE TABLE counts (key text PRIMARY KEY, n int NOT NULL)")
            setup.execute("INSERT INTO counts VALUES ('a', 0)")
        events: list[str] = []

        def write() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                events.append(f"read {conn.execute('SELECT n FROM counts').fetchone()}")
                conn.execute("UPDATE counts SET n = n + 1")
                events.append("wrote")

        with anyio.fail_after(60):  # a guard against a hang, not a measurement
            async with anyio.create_task_group() as tg:
                with writes_held(dsn):
                    tg.start_soon(anyio.to_thread.run_sync, write)
                    while lock_waiters(dsn) < 1:  # the write is waiting: an order of events, not a clock
                        await anyio.sleep(0.01)
                    assert events == ["read (0,)"]
                # the lock is released here; the task group waits for the write to finish
        assert events == ["read (0,)", "wrote"]


def test_the_start_page_says_which_stack_this_run_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(stack.STACK_VARIABLE, "sqlite")
    assert stack.describe().startswith("Database stack: SQLite (the default).")
    monkeypatch.setenv(stack.STACK_VARIABLE, "postgres")
    monkeypatch.setattr(stack, "redis_server", lambda: None)
    assert stack.describe().endswith("but Redis not installed here: " + stack.INSTALL_HINT + ".")
    monkeypatch.setattr(stack, "pg_bindir", lambda: Path("/opt/pg/bin"))
    monkeypatch.setattr(stack, "redis_server", lambda: "/usr/bin/redis-server")
    assert stack.describe().startswith("Database stack: PostgreSQL (/opt/pg/bin) and Redis (/usr/bin/redis-server)")


def test_the_stack_suite_ci_runs_names_files_that_exist_and_every_engine_dependent_section() -> None:
    import re

    root = Path(__file__).resolve().parent.parent
    text = (root / "CONTRIBUTING.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- stack-suite -->\n```\n(.*?)\n```", text, re.DOTALL)
    assert block, "CONTRIBUTING.md has no stack-suite block"
    paths = [word for word in block.group(1).split() if "/" in word]
    assert [p for p in paths if not (root / p).exists()] == []
    engine_dependent = [
        p.relative_to(root).as_posix()
        for p in (root / "tests").rglob("test_*.py")
        if re.search(r"on_postgres: None|postgres_here\(\)", p.read_text(encoding="utf-8"))
    ]
    assert [p for p in engine_dependent if p not in paths] == [], (
        "a test file with PostgreSQL-only tests the stack suite leaves out"
    )
    for number in ("04", "05", "06", "07", "08", "09"):
        for prefix in (f"notebooks/{number}-", f"solutions/{number}-", f"tests/answers/test_s{number}_"):
            assert any(p.startswith(prefix) for p in paths), f"the stack suite leaves out {prefix}*"
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    assert "stack-suite" in ci and "ASYNCLAB_STACK=postgres ASYNCLAB_STACK_REQUIRED=1" in ci


KILLED_MID_BLOCK = """
import json, sys, time
from asynclab.bench.postgres_server import temporary_postgres
from asynclab.bench.redis_server import temporary_redis
with temporary_postgres() as pg, temporary_redis() as r:
    postmaster = int((pg.folder / "data" / "postmaster.pid").read_text().split()[0])
    import redis
    redis_pid = int(redis.Redis.from_url(r.url).info("server")["process_id"])
    print(json.dumps({"pids": [postmaster, redis_pid], "folders": [str(pg.folder), str(r.folder)]}), flush=True)
    time.sleep(600)
"""


def test_servers_die_with_a_process_killed_mid_block(on_postgres: None) -> None:
    """A kernel killed or restarted runs no clean-up of its own: the tether stops its servers and removes their folders."""
    import json
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_BLOCK], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        started = json.loads(child.stdout.readline())
        assert all(psutil.pid_exists(pid) for pid in started["pids"])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    def gone(pid: int) -> bool:
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
    while not all(gone(pid) for pid in started["pids"]) or any(Path(f).exists() for f in started["folders"]):
        assert time.monotonic() < deadline, f"still there after the starter was killed: {started}"
        time.sleep(0.05)


def test_a_check_on_a_machine_without_the_servers_says_so_and_never_blames_the_learner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from asynclab.course.checking import CheckFailed, run

    module = tmp_path / "quota.py"
    module.write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    monkeypatch.setenv(stack.STACK_VARIABLE, "postgres")
    monkeypatch.setattr(stack, "pg_bindir", lambda: None)
    with pytest.raises(CheckFailed) as failed:
        run("7.1", module)
    said = str(failed.value)
    assert "the check could not run on PostgreSQL and Redis: PostgreSQL not installed here" in said
    assert "your code" not in said and "open the course without ASYNCLAB_STACK" in said
