"""Fail every test in which the service makes a blocking call on the event loop.

blockbuster swaps the functions known to block (time.sleep, file and socket I/O, os.stat, sqlite3,
lock waits, ...) for wrappers that raise BlockingError when they run on a thread with a running
event loop and a module of ours is on the call stack. Calls in worker threads pass, as they should.
It cannot see CPU-bound work or C code that does its own I/O: the watchdog (watchdog.py) watches
for those in production.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

SCANNED = ["app"]  # your own packages: calls made from anywhere else are not our business


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx(SCANNED) as detector:
        # Allow a known, accepted block in one function only, e.g. SQLAlchemy resolving the SQLite
        # file's path once when the engine is created:
        # detector.functions["os.path.abspath"].can_block_in("sqlalchemy/dialects/sqlite/pysqlite.py", "create_connect_args")
        yield detector
