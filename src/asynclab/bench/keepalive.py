"""Lesson 6's tools for one connection to a real server, and for a uvicorn in a process of its own.

::

    async with uvicorn_server(app, http="h11") as url:
        first, second = await pipelined(url, Req("GET", "/me", {"X-User": "alice"}), Req("GET", "/me"))

:func:`local_client` makes an ``httpx.AsyncClient`` for such a server: it reuses its connection
for requests sent one after the other, but it never pipelines. :func:`pipelined` writes every request in a single write before reading any
answer, as some proxies and HTTP clients do; the server reads them together and answers them in
order. It returns the answers in order, with the JSON bodies decoded.

:func:`uvicorn_process_url` runs an app given as module source in a separate ``python -m uvicorn``
process, for the options only a process of its own can take (``--loop uvloop``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from asynclab.bench.processes import uvicorn_process
from asynclab.bench.rawhttp import Connection, RawRequest, RawResponse

_SSL: list[Any] = []


def local_client(url: str) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for a plain-HTTP server on this machine, keeping its connection alive.

    It is an ordinary client (one connection, reused for requests sent one after the other); it
    shares one SSL context between all the clients it makes, because building one (loading the CA
    bundle) takes 0.05 to 0.15 s each time and a lesson makes many clients.
    """
    if not _SSL:
        _SSL.append(httpx.create_ssl_context())
    return httpx.AsyncClient(base_url=url, verify=_SSL[0])


Req = RawRequest  # the lesson's short name: Req(method, path, headers, json)


async def pipelined(url: str, *requests: RawRequest, timeout: float = 5.0) -> list[RawResponse]:
    """Write all ``requests`` on one new connection in a single write, then read the answers in order."""
    async with Connection(url, timeout=timeout) as connection:
        return await connection.send(*requests)


@contextlib.asynccontextmanager
async def uvicorn_process_url(
    source: str, *, loop: str = "uvloop", http: str = "h11", options: tuple[str, ...] = (), startup_timeout: float = 60.0
) -> AsyncIterator[str]:
    """Serve the module ``source`` (it defines ``app``) with ``python -m uvicorn --loop <loop> --http <http>``; yield its URL.

    A thin front to :func:`asynclab.bench.processes.uvicorn_process`: a free port of 127.0.0.1, the
    block starts once the app's startup is complete, and the whole process group is removed when
    the block ends, also when it fails. ``options`` are more flags, e.g. ``("--reset-contextvars",)``.
    """
    async with uvicorn_process(source, "--loop", loop, "--http", http, *options) as server:
        if not await server.started(timeout=startup_timeout):
            raise RuntimeError(f"uvicorn exited with status {server.status}: {server.shell}")
        yield server.url
