"""Lesson 6's tools for one connection to a real server, and for a uvicorn in a process of its own.

::

    async with uvicorn_server(app, http="h11") as url:
        first, second = await pipelined(url, Req("GET", "/me", {"X-User": "alice"}), Req("GET", "/me"))

:func:`local_client` makes an ``httpx.AsyncClient`` for such a server: it reuses its connection
for requests sent one after the other, but it never pipelines. :func:`pipelined` writes every request in a single write before reading any
answer, as some proxies and HTTP clients do; the server reads them together and answers them in
order. It returns the answers in order, with the JSON bodies decoded.

:func:`uvicorn_process` runs an app given as module source in a separate ``python -m uvicorn``
process, for the options only a process of its own can take (``--loop uvloop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

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


@dataclass(frozen=True)
class Req:
    """One HTTP/1.1 request: method, path, extra headers and raw body."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(self.body)}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass(frozen=True)
class Answer:
    """One response read off the connection: its status and its body (JSON decoded when it is JSON)."""

    status: int
    body: Any


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:] if line)}
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return Answer(int(head[0].split()[1]), body)


async def pipelined(url: str, *requests: Req, timeout: float = 5.0) -> list[Answer]:
    """Write all ``requests`` on one new connection in a single write, then read the answers in order."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"".join(r.encode(f"{host}:{port}") for r in requests))
            await writer.drain()
            return [await _read_answer(reader) for _ in requests]
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def uvicorn_process(
    source: str, *, loop: str = "uvloop", http: str = "h11", options: tuple[str, ...] = (), startup_timeout: float = 20.0
) -> AsyncIterator[str]:
    """Serve the module ``source`` (it defines ``app``) with ``python -m uvicorn --loop <loop> --http <http>``; yield its URL.

    A thin front to :func:`asynclab.lifecycle.uvicorn_process`: a free port of 127.0.0.1, the
    block starts once the app's startup is complete, and the whole process group is removed when
    the block ends, also when it fails. ``options`` are more flags, e.g. ``("--reset-contextvars",)``.
    """
    from asynclab.lifecycle import uvicorn_process as launch

    async with launch(source, "--loop", loop, "--http", http, *options) as server:
        if not await server.started(timeout=startup_timeout):
            raise RuntimeError(f"uvicorn exited with status {server.status}: {server.shell}")
        yield server.url
