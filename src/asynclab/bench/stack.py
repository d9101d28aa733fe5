"""Which stack the database lessons run on: SQLite (the default) or PostgreSQL with Redis, by one setting."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Literal

#: The one switch: ``postgres`` runs sections 4 to 9 on PostgreSQL, their shared stores on Redis.
STACK_VARIABLE = "ASYNCLAB_STACK"
#: Set to 1 (CI does) to make a missing PostgreSQL or Redis a failure instead of a skip.
REQUIRED_VARIABLE = "ASYNCLAB_STACK_REQUIRED"

Stack = Literal["sqlite", "postgres"]


class StackUnavailable(RuntimeError):
    """PostgreSQL or Redis was asked for but is not installed here; the message says how to install it."""


INSTALL_HINT = (
    "install the servers (Debian/Ubuntu: `sudo apt install postgresql redis-server`; "
    "macOS: `brew install postgresql redis`), then set ASYNCLAB_STACK=postgres"
)


def stack() -> Stack:
    """The stack this process runs on, from ``ASYNCLAB_STACK`` (``sqlite`` when unset)."""
    value = os.environ.get(STACK_VARIABLE, "sqlite").strip().lower() or "sqlite"
    if value in {"postgres", "postgresql", "pg"}:
        return "postgres"
    if value != "sqlite":
        raise ValueError(f"{STACK_VARIABLE}={value!r}: use 'sqlite' (the default) or 'postgres'")
    return "sqlite"


def on_postgres() -> bool:
    """True when the switch asks for PostgreSQL and Redis."""
    return stack() == "postgres"


def required() -> bool:
    """True where a missing server must fail rather than skip (CI sets ``ASYNCLAB_STACK_REQUIRED=1``)."""
    return os.environ.get(REQUIRED_VARIABLE) == "1"


def pg_bindir() -> Path | None:
    """The folder of PostgreSQL's server programs (``pg_ctl``, ``initdb``, ``postgres``), or None.

    Debian keeps them out of PATH (``/usr/lib/postgresql/<major>/bin``); ``pg_config`` knows where they are.
    """
    for candidate in (shutil.which("pg_ctl"), shutil.which("postgres")):
        if candidate:
            return Path(candidate).resolve().parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "pg_ctl").exists():
            return Path(out)
    found = [*Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")]  # Debian and Ubuntu
    for brew in ("/opt/homebrew/opt", "/usr/local/opt"):  # Homebrew's postgresql@NN is not linked into PATH
        found += Path(brew).glob("postgresql@*/bin/pg_ctl")
    found.sort(key=lambda p: int("".join(c for c in p.parent.parent.name if c.isdigit()) or 0))
    return found[-1].parent if found else None


def redis_server() -> str | None:
    """The path of ``redis-server``, or None."""
    return shutil.which("redis-server") or next((str(p) for p in (Path("/usr/sbin/redis-server"),) if p.exists()), None)


def missing() -> str | None:
    """What is missing for the PostgreSQL stack (None when both servers are installed)."""
    lacking = [name for name, found in (("PostgreSQL", pg_bindir()), ("Redis", redis_server())) if not found]
    if not lacking:
        return None
    return f"{' and '.join(lacking)} not installed here: {INSTALL_HINT}"


def postgres_here() -> bool:
    """True when this run is on PostgreSQL and Redis: switched on, and both installed.

    Switched on but not installed raises :class:`StackUnavailable`, whose message says how to install them.
    """
    if not on_postgres():
        return False
    lacking = missing()
    if lacking:
        raise StackUnavailable(lacking)
    return True


def describe() -> str:
    """One line for a learner: the stack this run is on, and what is installed for the other."""
    if not on_postgres():
        return "Database stack: SQLite (the default). README, 'The production stack', runs sections 4-9 on PostgreSQL and Redis."
    lacking = missing()
    if lacking:
        return f"Database stack: PostgreSQL and Redis asked for (ASYNCLAB_STACK=postgres), but {lacking}."
    bindir = pg_bindir()
    return f"Database stack: PostgreSQL ({bindir}) and Redis ({redis_server()}), started per lesson and per check on 127.0.0.1."
