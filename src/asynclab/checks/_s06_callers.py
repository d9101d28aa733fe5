"""Exercise 6.2's requests and judges: a hundred callers at once in-process, then anonymous ones on one keep-alive connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asynclab.bench.gauges import InFlight
from asynclab.bench.limits import BenchTimedOut
from asynclab.bench.load import LoadReport
from asynclab.bench.rawhttp import Connection, RawRequest, RawResponse
from asynclab.bench.server import uvicorn_server
from asynclab.checks._harness import (
    build_app,
    counting_connections,
    first_error,
    recording_errors,
)
from asynclab.course.checking import fail
from asynclab.standins.s06_isolation import (
    READER,
    AuditLog,
    Call,
    StoredNote,
)

TENANTS_62 = ["acme", "globex", "initech", "umbrella"]
USERS_62 = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
SEED_62 = [(t, f"{t}-admin", f"{t} note {k}") for t in TENANTS_62 for k in range(3)]
N_62 = 100


def _who(i: int) -> tuple[str, str]:
    return USERS_62[i % len(USERS_62)], TENANTS_62[i % len(TENANTS_62)]


def calls_62() -> list[Call]:
    calls = []
    for i in range(N_62):
        user, tenant = _who(i)
        headers = {"X-User": user, "X-Tenant": tenant}
        if i % 3 == 0:
            calls.append(Call("GET", "/me", headers=headers))
        elif i % 3 == 1:
            calls.append(Call("GET", "/notes", headers=headers))
        else:
            calls.append(Call("POST", "/notes", {"text": f"{user}'s note {i}"}, headers=headers))
    return calls


def _leak(i: int, call: Call, body: Any, new_texts: dict[str, str]) -> tuple[str, str] | None:
    """What went wrong with request ``i``: ("foreign", ...) when it got or wrote somebody else's data,
    ("unseen", ...) when it did not see its own user or tenant at all, None when all is well."""
    user, tenant = _who(i)
    known = set(USERS_62), set(TENANTS_62)
    if call.path == "/me":
        if not isinstance(body, dict) or (body.get("user"), body.get("tenant")) != (user, tenant):
            kind = (
                "foreign"
                if isinstance(body, dict) and body.get("user") in known[0] and body.get("tenant") in known[1]
                else "unseen"
            )
            return kind, f"answered {str(body)[:90]}"
    elif call.method == "GET":
        if not isinstance(body, list):
            return "unseen", f"answered {str(body)[:90]}"
        rows = [row if isinstance(row, dict) else {} for row in body]
        foreign = [row for row in rows if row.get("tenant") in known[1] and row.get("tenant") != tenant]
        if foreign:
            return "foreign", f"got {len(foreign)} note(s) of another tenant, e.g. {foreign[0]}"
        texts = {row.get("text") for row in rows}
        seeded = {text for (_, _, text) in SEED_62}
        strangers = [t for t in texts if t not in seeded and new_texts.get(str(t)) != tenant]
        if strangers:
            kind = "foreign" if new_texts.get(str(strangers[0])) in known[1] else "unseen"
            return kind, f"got a note it should not see: {strangers[0]!r}"
        odd = [row for row in rows if row.get("tenant") != tenant]
        if odd:
            return "unseen", f"got {len(odd)} note(s) that are not its tenant's, e.g. {odd[0]}"
        missing = [t for (tn, _, t) in SEED_62 if tn == tenant and t not in texts]
        if missing:
            return "unseen", f"did not get its tenant's note {missing[0]!r}"
    elif not isinstance(body, dict) or (body.get("owner"), body.get("tenant")) != (user, tenant):
        kind = (
            "foreign" if isinstance(body, dict) and body.get("owner") in known[0] and body.get("tenant") in known[1] else "unseen"
        )
        return kind, f"saved {str(body)[:90]}"
    return None


def judge_statuses_62(calls: list[Call], report: LoadReport, errors: list[str]) -> None:
    """Did every request answer, with the status its route answers?"""
    for call, r in zip(calls, report.results, strict=True):
        user, tenant = _who(r.index)
        if r.status == 500:
            fail(
                f"{call} as {user} of {tenant} answered 500" + first_error(errors),
                "Fix that error first: every route must still answer.",
            )
        expected = 201 if call.method == "POST" else 200
        if r.status != expected:
            fail(
                f"{call} as {user} of {tenant} answered {r.status}: {str(r.body)[:100]}",
                "Keep the routes and their headers as they were.",
            )


def judge_leaks_62(calls: list[Call], report: LoadReport, stored: list[StoredNote]) -> None:
    """Did any request get or write another caller's data, or not see its own caller at all?"""
    new_texts = {n.text: n.tenant for n in stored if n.id > len(SEED_62)}
    found: dict[str, list[str]] = {"foreign": [], "unseen": []}
    for call, r in zip(calls, report.results, strict=True):
        problem = _leak(r.index, call, r.body, new_texts)
        if problem:
            user, tenant = _who(r.index)
            found[problem[0]].append(f"{call} as {user} of {tenant} {problem[1]}")
    if found["foreign"]:
        leaks = found["foreign"]
        fail(f"{len(leaks)} of {N_62} concurrent requests got or wrote another user's or tenant's data, e.g. {leaks[0]}", 0)
    if found["unseen"]:
        unseen = found["unseen"]
        fail(
            f"{len(unseen)} of {N_62} requests did not see their own user or tenant, e.g. {unseen[0]}",
            "A ContextVar set in a plain `def` dependency is set in a worker thread's copy of the context, which the handler "
            "never sees: make that dependency `async def`, or let it return the values.",
        )


def judge_stored_62(calls: list[Call], stored: list[StoredNote]) -> None:
    """Is every new note in the database, stored for the caller who wrote it?"""
    wrong_rows = [
        n
        for n in stored
        if n.id > len(SEED_62)
        and not any(c.json and c.json["text"] == n.text and (n.owner, n.tenant) == _who(i) for i, c in enumerate(calls))
    ]
    if wrong_rows:
        n = wrong_rows[0]
        fail(f"the note {n.text!r} was stored for {n.owner} of {n.tenant}, who did not write it", 1)
    saved = sum(c.method == "POST" for c in calls)
    if len(stored) != len(SEED_62) + saved:
        fail(
            f"{saved} notes were answered 201, and the database holds {len(stored) - len(SEED_62)} new ones",
            "Commit each new note in its handler.",
        )


ANONYMOUS = {"user": None, "tenant": None}
SERVER_START = 15.0  # the check's own limits on real uvicorn: about 0.3 s when all is well; generous for a busy machine
ANSWER_WITHIN = 15.0
BIG_TEXT = "a long note " * 9000  # about 100 kB: uvicorn pauses reading while the handler takes the body


def _as(user: str, tenant: str) -> dict[str, str]:
    return {"X-User": user, "X-Tenant": tenant}


async def keep_alive_62(factory: Callable[[str, AuditLog], Any], db_url: str) -> int:
    """Serve the app with real uvicorn (h11) and send signed-in and anonymous requests on one keep-alive connection.

    On the database at ``db_url``, the one the burst used (the notes it holds change no answer here).

    uvicorn starts a request on a kept-alive connection from the context the request before it left
    (pipelined requests; and any request after one whose large body paused reading): a ContextVar
    that is set only when the headers are there keeps the previous caller's value.
    """
    errors: list[str] = []
    me = RawRequest("GET", "/me")
    pipelined = [
        RawRequest("GET", "/me", _as("alice", "acme")),
        me,
        RawRequest("GET", "/notes"),
        RawRequest("POST", "/notes", _as("bob", "globex"), {"text": "bob's pipelined note"}),
        RawRequest("POST", "/notes", json={"text": "an anonymous note"}),
        me,
    ]
    after_big = [RawRequest("POST", "/notes", _as("carol", "initech"), {"text": BIG_TEXT}), me, RawRequest("GET", "/notes")]
    expected: list[tuple[int, Any]] = [
        (200, {"user": "alice", "tenant": "acme"}),
        (200, ANONYMOUS),
        (401, None),
        (201, ("bob", "globex")),
        (401, None),
        (200, ANONYMOUS),
        (201, ("carol", "initech")),
        (200, ANONYMOUS),
        (401, None),
    ]
    in_app = InFlight("requests inside the app")
    with counting_connections(ignore_engine=READER) as connections:
        try:
            app = _counted(recording_errors(build_app(factory, db_url, AuditLog(), name="build_service"), errors), in_app)
            async with (
                uvicorn_server(app, http="h11", startup_timeout=SERVER_START) as url,
                Connection(url, timeout=ANSWER_WITHIN) as conn,
            ):
                answers = await conn.send(*pipelined)
                for request in after_big:  # one after the other, each once the previous one has answered
                    answers += await conn.send(request)
        except BenchTimedOut as exc:
            if in_app.now:  # the answer did not come because the app was still working on it: the app's doing
                fail(
                    f"on real uvicorn, a request on a keep-alive connection had no answer after {exc.seconds:g} s: "
                    f"{in_app.now} request(s) were still inside your app",
                    "Every route must answer: look for an await that never ends, or a lock that is never released.",
                )
            raise
        finally:
            await connections.close_leftovers()
    sent = pipelined + after_big
    for k, (request, answer, (status, body)) in enumerate(zip(sent, answers, expected, strict=True)):
        who = request.headers.get("X-User")
        how = f"on one keep-alive connection, {'pipelined' if k < len(pipelined) else 'after a large POST'}"
        what = f"{request} {'as ' + who if who else 'with no X-User or X-Tenant (anonymous)'}"
        _judge_kept_alive(what, how, answer, status, body, errors)
    return len(sent)


def _counted(app: Any, in_app: InFlight) -> Any:
    """The app, counting the HTTP requests inside it (started, not yet answered)."""

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        with in_app.inside():
            await app(scope, receive, send)

    return counting


def _judge_kept_alive(what: str, how: str, answer: RawResponse, status: int, body: Any, errors: list[str]) -> None:
    shown = str(answer.body)[:100]
    if answer.status == 500:
        fail(f"on real uvicorn, {what} answered 500{first_error(errors)}", "Fix that error first: every route must still answer.")
    if status == 401 and answer.status in (200, 201):
        fail(
            f"on real uvicorn, {how}, {what} answered {answer.status} {shown}: it was served as the caller before it. "
            "uvicorn starts a request on a kept-alive connection from the context the previous request left.",
            (
                "Set your per-request values on every request, anonymous ones too, or pass them through the dependency's return "
                "value."
            ),
        )
    if answer.status != status:
        fail(
            f"on real uvicorn, {what} answered {answer.status} {shown}, expected {status}",
            "A request without the headers is anonymous: GET /me answers {'user': None, 'tenant': None}, the notes routes 401.",
        )
    if body == ANONYMOUS and answer.body != ANONYMOUS:
        fail(
            f"on real uvicorn, {how}, {what} answered {shown}: the identity of the request before it. "
            "uvicorn starts a request on a kept-alive connection from the context the previous request left.",
            (
                "Set the ContextVars on every request, anonymous ones too (to None), or pass the values through the "
                "dependency's return value."
            ),
        )
    if isinstance(body, tuple) and (
        not isinstance(answer.body, dict) or (answer.body.get("owner"), answer.body.get("tenant")) != body
    ):
        fail(f"on real uvicorn, {what} saved {shown}, expected a note of {body[0]} of {body[1]}", 1)
    if isinstance(body, dict) and answer.body != body:
        fail(f"on real uvicorn, {what} answered {shown}, expected {body}", 0)
