"""One HTTP/1.1 keep-alive connection to a real server, with requests sent one by one or pipelined."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Self

import anyio

from asynclab.bench.limits import BenchTimedOut


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None

    def encode(self) -> bytes:
        body = b"" if self.json is None else json.dumps(self.json).encode()
        lines = [f"{self.method} {self.path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.json is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class RawResponse:
    status: int
    body: Any


class Connection:
    """``async with Connection(url) as conn: answers = await conn.send(r1, r2, ...)`` (all written at once: pipelined).

    httpx never pipelines, and opens a new connection whenever it likes; what a server does with
    several requests on *one* connection (uvicorn starts each from the previous one's context) needs
    a client that controls the socket. This one is small: requests are written as bytes, responses
    must carry a Content-Length (FastAPI's and uvicorn's do).
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.timeout = host, int(port), timeout

    async def __aenter__(self) -> Self:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def send(self, *requests: RawRequest) -> list[RawResponse]:
        """Write every request in one go, then read one response per request, in order.

        No answer within ``timeout`` seconds raises :class:`~asynclab.bench.limits.BenchTimedOut`:
        whether the server or the machine is to blame, the caller knows better (was a request still
        inside the app?).
        """
        self.writer.write(b"".join(r.encode() for r in requests))
        await self.writer.drain()
        answers: list[RawResponse] = []
        with anyio.move_on_after(self.timeout):
            for _ in requests:
                answers.append(await self._response())
        if len(answers) < len(requests):
            raise BenchTimedOut(f"read an answer to {requests[len(answers)]} on the connection", self.timeout)
        return answers

    async def _response(self) -> RawResponse:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines if line)}
        length = int(headers.get("content-length", "0"))
        raw = await self.reader.readexactly(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        return RawResponse(int(status_line.split()[1]), body)
