"""``class --hub URL``: the instructor collects the room from JupyterHub, no drop folder, no file a learner wrote."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from asynclab.course.room.plain import plain
from asynclab.course.room.reading import MAX_BYTES, Raw

TOKEN_VARIABLE = "JUPYTERHUB_API_TOKEN"
MARKER = "ASYNCLAB-COLLECTED "
SCOPES = "list:users, read:users, read:servers and access:servers"


class HubError(Exception):
    """The hub cannot be used at all (unreachable, token refused); ``str()`` is one line."""


@dataclass(frozen=True)
class Options:
    folder: str = ""  # each learner's exercises folder, relative to their home; '' finds it
    parallel: int = 4  # learners collected at once
    fresh: bool = False  # progress --all: no cached results
    timeout: float = 600.0  # seconds for one learner's progress run


@dataclass
class Member:
    name: str
    admin: bool
    server: str | None  # the server's URL path (/user/ana/) when it is running and ready


# Runs in the learner's kernel. Prints one line: MARKER + JSON (the report base64-encoded, so that
# the kernel's output, sent in pieces, cannot cut or mix it).
KERNEL_CODE = """
def _asynclab_collect(user, folder, fresh, limit, most):
    import base64, json, pathlib, subprocess, sys
    home = pathlib.Path.cwd()
    if folder:
        found = [home / folder]
    elif (home / "exercises").is_dir():
        found = [home / "exercises"]
    else:
        found = sorted(p for p in home.glob("*/exercises") if any(p.glob("[0-9][0-9]-exercises-*.ipynb")))
    answer = {"rc": None, "out": "", "err": "", "folder": str(found[0]) if len(found) == 1 else ""}
    if len(found) != 1:
        names = ", ".join(p.name for p in found[:3])
        answer["err"] = f"found {len(found)} exercises folders in {home} ({names}): use --exercises"
    else:
        command = [sys.executable, "-I", "-m", "asynclab", "progress", "--json", "--jobs", "1"]
        command += ["--name", user, "--folder", str(found[0])]
        try:
            done = subprocess.run(command + (["--all"] if fresh else []), capture_output=True, cwd=home, timeout=limit)
            out, err = base64.b64encode(done.stdout[:most]).decode(), done.stderr[-1500:].decode(errors="replace")
            answer.update(rc=done.returncode, out=out, err=err)
        except subprocess.TimeoutExpired:
            answer["err"] = f"progress did not finish within {limit:.0f} s"
    print(%(marker)r + json.dumps(answer), flush=True)

_asynclab_collect(%(user)r, %(folder)r, %(fresh)r, %(limit)r, %(most)r)
del _asynclab_collect
"""


def _ws_base(url: str) -> str:
    parts = urlsplit(url)
    return ("wss" if parts.scheme == "https" else "ws") + "://" + parts.netloc


async def _members(http: Any, api: str) -> list[Member]:
    import httpx

    members: list[Member] = []
    offset = 0
    while True:
        try:
            got = await http.get(
                f"{api}/users",
                params={"offset": offset, "limit": 200},
                headers={"Accept": "application/jupyterhub-pagination+json"},
            )
        except httpx.HTTPError as exc:
            raise HubError(
                f"cannot reach the hub at {api.removesuffix('/hub/api')}: {plain(exc, 120) or type(exc).__name__}"
            ) from None
        if got.status_code == 401 or got.status_code == 403:
            raise HubError(
                f"the hub refused the token in {TOKEN_VARIABLE} ({got.status_code}): it must be allowed {SCOPES}. "
                "The room's class-view service has them (docs/room.md); a token made on your own server's page may not"
            )
        if got.status_code != 200:
            raise HubError(f"the hub answered {got.status_code} to the list of users: {plain(got.text, 120)}")
        body = got.json()
        items = body["items"] if isinstance(body, dict) else body
        for user in items:
            servers = user.get("servers")
            if servers is None:
                raise HubError(f"the token in {TOKEN_VARIABLE} may not see the users' servers: it must be allowed {SCOPES}")
            default = servers.get("") or {}
            ready = default.get("ready") and default.get("url")
            members.append(Member(str(user["name"]), bool(user.get("admin")), str(default["url"]) if ready else None))
        following = body.get("_pagination", {}).get("next") if isinstance(body, dict) else None
        if not following:
            return members
        offset = int(following["offset"])


async def execute(ws_url: str, token: str, code: str, timeout: float) -> str:
    """Run ``code`` through a kernel's websocket; return what it printed (capped)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}), max_message_size=4 * MAX_BYTES)
    try:
        msg_id = uuid.uuid4().hex
        ws.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "class-view",
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                    "parent_header": {},
                    "metadata": {},
                    "buffers": [],
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        printed: list[str] = []
        size = 0
        deadline = time.monotonic() + timeout
        while True:
            raw = await asyncio.wait_for(ws.read_message(), timeout=max(1.0, deadline - time.monotonic()))
            if raw is None:
                raise ConnectionError("the kernel's connection closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg.get("msg_type"), msg.get("content", {})
            if kind == "stream" and size < 2 * MAX_BYTES:
                printed.append(str(content.get("text", "")))
                size += len(printed[-1])
            elif kind == "error":
                printed.append(f"\n(the kernel raised {content.get('ename')}: {content.get('evalue')})\n")
            elif kind == "status" and content.get("execution_state") == "idle":
                return "".join(printed)
    finally:
        ws.close()


async def _collect_one(http: Any, hub: str, token: str, member: Member, options: Options) -> Raw | str:
    """The report progress printed in ``member``'s server, or one phrase saying why there is none."""
    import httpx

    assert member.server is not None
    base = hub.rstrip("/") + member.server
    try:
        made = await http.post(f"{base}api/kernels", json={})
    except httpx.HTTPError as exc:
        return f"could not start a kernel in the server ({plain(exc, 80) or type(exc).__name__})"
    if made.status_code != 201:
        return f"could not start a kernel in the server ({made.status_code})"
    kernel = made.json()["id"]
    code = KERNEL_CODE % {
        "marker": MARKER,
        "user": member.name,
        "folder": options.folder,
        "fresh": options.fresh,
        "limit": options.timeout,
        "most": MAX_BYTES + 1,
    }
    try:
        printed = await execute(f"{_ws_base(hub)}{member.server}api/kernels/{kernel}/channels", token, code, options.timeout + 60)
    except TimeoutError:
        return f"its kernel did not answer within {options.timeout + 60:.0f} s"
    except Exception as exc:  # noqa: BLE001 - one learner's broken server must not stop the room
        return f"its kernel could not be used ({type(exc).__name__}: {plain(exc, 80)})"
    finally:
        try:
            await http.delete(f"{base}api/kernels/{kernel}")
        except httpx.HTTPError:
            pass
    line = next((x for x in printed.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        return f"progress printed no result ({plain(printed[-200:], 200) or 'nothing'})"
    answer = json.loads(line.removeprefix(MARKER))
    if answer["rc"] != 0 or not answer["out"]:
        why = plain(answer["err"].strip().splitlines()[-1] if answer["err"].strip() else f"exit status {answer['rc']}", 200)
        return f"progress did not give a report: {why}"
    return Raw(f"{member.name}'s server", base64.b64decode(answer["out"]), member.name, owner=member.name)


def collect(
    url: str,
    token: str,
    options: Options,
    warnings: list[str],
    tick: Callable[[str], None] = lambda line: None,
) -> tuple[list[Raw], list[str]]:
    """Every running learner's report, and the room's roster (the hub's users who are not admins).

    Through the hub's REST API (a token in ``JUPYTERHUB_API_TOKEN``) it lists the room's users; in the
    running server of each one who is not an admin it starts a kernel, runs
    ``python -I -m asynclab progress --json`` there (as that learner, on their own notebooks, with the
    course's own Python: ``-I`` ignores the learner's folder, PYTHONPATH and user site-packages), reads
    the report it prints, and shuts the kernel down. So a report file a learner edited by hand plays no
    part. The learners whose server is not running are the room's absent.

    What it still trusts: the code runs under the learner's own account, so a learner who rewrites
    their kernel's start-up can still fool it, and progress reuses each notebook's cached result while
    the notebook is unchanged (``--fresh`` runs every notebook again, which costs about a minute of CPU
    per learner).

    The token needs the scopes ``list:users``, ``read:users``, ``read:servers`` and ``access:servers``:
    the room's ``class-view`` service in deploy/jupyterhub/jupyterhub_config.py has exactly those.
    """
    return asyncio.run(_collect(url.rstrip("/"), token, options, warnings, tick))


async def _collect(
    url: str, token: str, options: Options, warnings: list[str], tick: Callable[[str], None]
) -> tuple[list[Raw], list[str]]:
    import httpx

    limits = httpx.Limits(max_connections=max(4, options.parallel * 2))
    async with httpx.AsyncClient(headers={"Authorization": f"token {token}"}, timeout=60, limits=limits) as http:
        members = await _members(http, f"{url}/hub/api")
        learners = [m for m in members if not m.admin]
        gate = asyncio.Semaphore(max(1, options.parallel))

        async def one(member: Member) -> Raw | str:
            async with gate:
                started = time.monotonic()
                got = await _collect_one(http, url, token, member, options)
                tick(
                    f"{member.name}: {'collected' if isinstance(got, Raw) else 'no report'} ({time.monotonic() - started:.0f} s)"
                )
                return got

        running = [m for m in learners if m.server]
        results = await asyncio.gather(*(one(m) for m in running))
    raws = []
    for member, got in zip(running, results, strict=True):
        if isinstance(got, Raw):
            raws.append(got)
        else:
            warnings.append(f"{member.name}'s server: {got}; shown as not reported")
    stopped = [m.name for m in learners if not m.server]
    if stopped:
        warnings.append(
            f"no server running for {len(stopped)} learner(s): {', '.join(stopped[:20])}{', …' if len(stopped) > 20 else ''}"
        )
    return raws, [m.name for m in learners]


def token_from_environment() -> str:
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise HubError(
            f"set {TOKEN_VARIABLE} to the room's token (ASYNCLAB_ROOM_TOKEN on the hub, docs/room.md), then run this again"
        )
    return token
