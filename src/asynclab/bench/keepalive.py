"""Lesson 6's tools for one connection to a real server, and for a uvicorn in a process of its own."""

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
    bundle) takes 0.05 to 0.15 s each time and a lesson makes many clients. It never pipelines:
    :func:`pipelined` does.
    """
    if not _SSL:
        _SSL.append(httpx.create_ssl_context())
    return httpx.AsyncClient(base_url=url, verify=_SSL[0])


Req = RawRequest  # the lesson's short name: Req(method, path, headers, json)


async def pipelined(url: str, *requests: RawRequest, timeout: float = 5.0) -> list[RawResponse]:
    """Write all ``requests`` on one new connection in a single write, then read the answers in order.

    As some proxies and HTTP clients do: the server reads them together and answers them in order.
    The answers come back in order, with the JSON bodies decoded::

        async with uvicorn_server(app, http="h11") as url:
            first, second = await pipelined(url, Req("GET", "/me", {"X-User": "alice"}), Req("GET", "/me"))
    """
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
    It is for the options only a process of its own can take (``--loop uvloop``).
    """
    async with uvicorn_process(source, "--loop", loop, "--http", http, *options) as server:
        if not await server.started(timeout=startup_timeout):
            raise RuntimeError(f"uvicorn exited with status {server.status}: {server.shell}")
        yield server.url
