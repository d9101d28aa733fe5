"""A temporary Redis server on 127.0.0.1, its files in a private folder, removed when the block ends."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from asynclab.bench.ports import free_port
from asynclab.bench.stack import INSTALL_HINT, StackUnavailable, redis_server
from asynclab.bench.tether import Tether


@dataclass
class RedisServer:
    """A running temporary Redis: its address and the URL ``redis.asyncio.from_url`` takes."""

    port: int
    folder: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


@contextlib.contextmanager
def temporary_redis() -> Iterator[RedisServer]:
    """Start ``redis-server`` for the block (no persistence, loopback only); stop it and delete its folder after.

    Started and stopped by pytest-redis's executor.
    """
    from pytest_redis.executor.process import RedisExecutor

    executable = redis_server()
    if executable is None:
        raise StackUnavailable(f"Redis is not installed here: {INSTALL_HINT}")
    folder = Path(tempfile.mkdtemp(prefix="asynclab-redis-"))
    port = free_port()
    executor = RedisExecutor(
        executable,
        databases=1,
        redis_timeout=30,
        loglevel="warning",
        host="127.0.0.1",
        port=port,
        datadir=folder,
        save="",
        appendonly="no",
        startup_timeout=60,
    )
    tether = Tether(folders=[folder])  # if this process dies first: the server is killed, its folder removed
    try:
        executor.start()
        if executor.process is not None:
            tether.add_pid(executor.process.pid)
        yield RedisServer(port=port, folder=folder)
    finally:
        with contextlib.suppress(Exception):
            executor.stop()
        shutil.rmtree(folder, ignore_errors=True)
        tether.release()
