"""A temporary PostgreSQL server: a new cluster in a private folder, on 127.0.0.1, removed when the block ends."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from asynclab.bench.ports import free_port
from asynclab.bench.stack import INSTALL_HINT, StackUnavailable, pg_bindir
from asynclab.bench.tether import Tether

SUPERUSER = "postgres"


@dataclass
class PostgresServer:
    """A running temporary cluster: where it listens, and URLs for SQLAlchemy (asyncpg) and psycopg."""

    port: int
    folder: Path
    max_connections: int
    host: str = "127.0.0.1"

    def url(self, database: str = "app") -> str:
        """What ``create_async_engine`` takes: the asyncpg driver on ``database``."""
        return f"postgresql+asyncpg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "app") -> str:
        """What ``psycopg.connect`` (the sync driver) takes."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its SQLAlchemy URL."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def connections(self, database: str | None = None) -> int:
        """How many client connections the server holds now (to ``database``, or to any), this query's own left out."""
        query = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            if database is None:
                row = conn.execute(query).fetchone()
            else:
                row = conn.execute(query + " AND datname = %s", (database,)).fetchone()
        return int(row[0]) if row else 0


def _run_as() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` system user (or ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise StackUnavailable("running as root, and no 'postgres' or 'nobody' user to run PostgreSQL as")


def _pg_ctl(folder: Path, bindir: Path) -> str:
    """``pg_ctl`` itself, or (as root) a wrapper in ``folder`` that runs it as an unprivileged user."""
    user = _run_as()
    if user is None:
        return str(bindir / "pg_ctl")
    os.chown(folder, user.pw_uid, user.pw_gid)
    wrapper = folder / "pg_ctl"
    wrapper.write_text(f'#!/bin/sh\nexec runuser -u {user.pw_name} -- "{bindir / "pg_ctl"}" "$@"\n')
    wrapper.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return str(wrapper)


def _until_accepting(server: PostgresServer, within: float = 30.0) -> None:
    """Wait until the server accepts a connection: its port opens before it is ready ("the database system is starting up")."""
    deadline = time.monotonic() + within
    while True:
        try:
            with psycopg.connect(server.dsn("postgres"), connect_timeout=5):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextlib.contextmanager
def temporary_postgres(*, max_connections: int = 100, databases: tuple[str, ...] = ("app",)) -> Iterator[PostgresServer]:
    """Start a new PostgreSQL cluster for the block, with empty ``databases``; stop it and delete it after.

    The cluster lives in a private temporary folder (its Unix socket too) and listens on 127.0.0.1
    only, with trust authentication for the ``postgres`` user: a lab server, never a deployment.
    ``max_connections`` sets the server's limit (the lesson lowers it to show "too many clients").
    Started and stopped by pytest-postgresql's executor (``pg_ctl`` underneath).
    """
    from pytest_postgresql.executors.proc import PostgreSQLExecutor

    bindir = pg_bindir()
    if bindir is None:
        raise StackUnavailable(f"PostgreSQL is not installed here: {INSTALL_HINT}")
    folder = Path(tempfile.mkdtemp(prefix="asynclab-pg-"))
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -c max_connections={max_connections} -c fsync=off -c full_page_writes=off"
    executor = PostgreSQLExecutor(
        executable=_pg_ctl(folder, bindir),
        host="127.0.0.1",
        port=port,
        datadir=str(folder / "data"),
        unixsocketdir=str(folder),
        logfile=str(folder / "server.log"),
        startparams="-w",
        dbname="app",
        user=SUPERUSER,
        postgres_options=options,
        timeout=60,
    )
    # If this process dies first (a kernel killed or restarted), the tether stops the server and removes its folder.
    tether = Tether(commands=[[executor.executable, "stop", "-D", executor.datadir, "-m", "immediate"]], folders=[folder])
    try:
        executor.start()
        server = PostgresServer(port=port, folder=folder, max_connections=max_connections)
        _until_accepting(server)
        for name in databases:
            server.create_database(name)
        yield server
    finally:
        with contextlib.suppress(Exception):
            executor.stop()
        shutil.rmtree(folder, ignore_errors=True)
        tether.release()
