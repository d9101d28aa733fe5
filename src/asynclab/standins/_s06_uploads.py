"""Lesson 6's uploads on one keep-alive connection of a real uvicorn: is the next, anonymous request still alice's?"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel

from asynclab.bench.keepalive import local_client, pipelined, uvicorn_process_url
from asynclab.bench.polling import until
from asynclab.bench.rawhttp import RawRequest
from asynclab.bench.server import uvicorn_server

#: uvicorn pauses reading a connection once it holds more than this many body bytes the app has not taken.
HIGH_WATER = 65_536


class UploadPacer:
    """Paces alice's upload against a real uvicorn in this event loop, so what the server holds unread is certain.

    Serve ``pacer.wrap(app)`` with ``uvicorn_server(..., http=pacer.protocol("h11"))``: the protocol
    is uvicorn's own, counting the bytes it reads (``received``); the wrapper counts the body bytes
    the app has taken (``taken``) and, while ``hold_until`` is set, keeps a POST's app waiting until
    the server has read that many bytes, as an app that is busy elsewhere while the body comes in.
    """

    def __init__(self) -> None:
        self.received = 0
        self.taken = 0
        self.hold_until: int | None = None
        self._moved = anyio.Event()

    async def until_taken(self, n: int, timeout: float = 5.0) -> None:
        """Wait until the app has taken ``n`` body bytes."""
        with anyio.fail_after(timeout):
            while self.taken < n:
                moved = self._moved = anyio.Event()
                await moved.wait()

    def protocol(self, http: str) -> type[asyncio.Protocol]:
        """uvicorn's ``h11`` or ``httptools`` protocol, counting what it reads from the socket."""
        from uvicorn.config import HTTP_PROTOCOLS
        from uvicorn.importer import import_from_string

        base = import_from_string(HTTP_PROTOCOLS[http])
        pacer = self

        class Counting(base):  # type: ignore[misc, valid-type]
            def data_received(self, data: bytes) -> None:
                pacer.received += len(data)
                super().data_received(data)

        return Counting

    def wrap(self, app: Any) -> Any:
        """The ASGI app, with the POSTs held (see :attr:`hold_until`) and the body bytes they take counted."""

        async def paced(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["method"] != "POST":
                await app(scope, receive, send)
                return
            hold_until = self.hold_until
            if hold_until is not None and not await until(lambda: self.received >= hold_until):
                raise RuntimeError(f"the server read {self.received} of {hold_until} bytes")

            async def counting_receive() -> Any:
                message = await receive()
                self.taken += len(message.get("body", b""))
                self._moved.set()
                return message

            await app(scope, counting_receive, send)

        return paced


#: How alice uploads, by name: (body bytes, bytes per write or None for one write, whether the app is
#: busy until the server holds the body (more than 64 KiB of it, or all of it), or takes each piece as it comes).
UPLOADS: dict[str, tuple[int, int | None, bool]] = {
    "after a 1 kB upload": (1_000, None, False),
    "after a 100 kB upload": (100_000, None, True),
    "65,536 bytes, app busy": (65_536, None, True),
    "65,537 bytes, app busy": (65_537, None, True),
    "100 kB in 4 KiB pieces, app busy": (100_000, 4096, True),
    "1 MB in 4 KiB pieces, read as they come": (1_000_000, 4096, False),
}


async def _read_json(reader: asyncio.StreamReader) -> Any:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:"))
    return json.loads(await reader.readexactly(length))


async def _upload_then_anonymous(url: str, pacer: UploadPacer, upload: str) -> str:
    """alice uploads a photo as :data:`UPLOADS` says; then an anonymous ``GET /me`` on the same connection: whom it names."""
    size, piece, busy = UPLOADS[upload]
    host, _, port = url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = f"POST /photos HTTP/1.1\r\nHost: 127.0.0.1\r\nX-User: alice\r\nContent-Length: {size}\r\n\r\n".encode()
        pacer.received, pacer.taken = 0, 0
        pacer.hold_until = len(head) + min(size, HIGH_WATER + 1) if busy else None
        body = b"x" * size
        if piece is None:
            writer.write(head + body)
        else:
            writer.write(head)
            for start in range(0, size, piece):
                writer.write(body[start : start + piece])
                await writer.drain()
                if busy:
                    await anyio.lowlevel.checkpoint()
                else:
                    await pacer.until_taken(min(start + piece, size))  # the app took it: send the next piece
        await writer.drain()
        with anyio.fail_after(10):
            photo = await _read_json(reader)
            if photo.get("bytes") != size:
                raise RuntimeError(f"POST /photos answered {photo}")
            writer.write(b"GET /me HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return str((await _read_json(reader))["user"])
    finally:
        pacer.hold_until = None
        writer.close()


async def who_is_anonymous(
    app: Any, http: str = "h11", uploads: Sequence[str] = ("after a 1 kB upload", "after a 100 kB upload"), **options: Any
) -> dict[str, str]:
    """Serve ``app`` on uvicorn in this loop; whom an anonymous ``GET /me`` is answered as, after alice's requests.

    For each name of ``uploads`` (see :data:`UPLOADS`), alice's ``POST /photos`` then the anonymous
    ``GET /me`` on one new keep-alive connection; then ``"pipelined after alice's GET"``: her
    ``GET /me`` and the anonymous one written together. ``options`` go to uvicorn, e.g.
    ``reset_contextvars=True``. The app must answer ``{"user": ...}`` on both routes and
    ``{"bytes": ...}`` too on ``POST /photos``.
    """
    pacer = UploadPacer()
    seen: dict[str, str] = {}
    protocol = pacer.protocol(http)  # uvicorn.Config takes a protocol class as well as a name
    async with uvicorn_server(pacer.wrap(app), http=protocol, **options) as url:  # type: ignore[arg-type]
        for upload in uploads:
            seen[upload] = await _upload_then_anonymous(url, pacer, upload)
        _, then = await pipelined(url, RawRequest("GET", "/me", {"X-User": "alice"}), RawRequest("GET", "/me"))
        seen["pipelined after alice's GET"] = str(then.body["user"])
    return seen


#: Appended to a module's source by :func:`who_is_anonymous_in_a_process`: the same pacing, inside the server's process.
_PACED_MODULE = """

from asynclab.standins._s06_uploads import HIGH_WATER, UploadPacer

_pacer = UploadPacer()
_pacer.hold_until = HIGH_WATER + 4096  # a POST's app waits until the server holds more than 64 KiB of its body
app = _pacer.wrap(app)
Counting = _pacer.protocol({http!r})
"""


async def who_is_anonymous_in_a_process(source: str, *, loop: str = "uvloop", http: str = "httptools") -> dict[str, str]:
    """Like :func:`who_is_anonymous`, for an app given as module source (it defines ``app``), served by ``python -m uvicorn``.

    The only way to run uvicorn on ``--loop uvloop``. alice's 100 kB upload goes in one write, and the
    app waits until the server holds more than 64 KiB of it; then come the 1 kB upload and the
    pipelined pair. The server process is removed when this returns.
    """
    seen: dict[str, str] = {}
    paced = source + _PACED_MODULE.format(http=http)
    async with uvicorn_process_url(paced, loop=loop, http="app:Counting") as url:
        for upload, size in (("after a 100 kB upload", 100_000), ("after a 1 kB upload", 1_000)):
            async with local_client(url) as client:  # one keep-alive connection
                first = await client.post("/photos", content=b"x" * size, headers={"X-User": "alice"})
                then = await client.get("/me")
            if first.json().get("bytes") != size:
                raise RuntimeError(f"POST /photos answered {first.text}")
            seen[upload] = str(then.json()["user"])
        _, then_raw = await pipelined(url, RawRequest("GET", "/me", {"X-User": "alice"}), RawRequest("GET", "/me"))
        seen["pipelined after alice's GET"] = str(then_raw.body["user"])
    return seen
