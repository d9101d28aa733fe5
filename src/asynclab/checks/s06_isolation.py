"""Checks for section 6, request context and isolation (a real SQLite file through SQLAlchemy's async ORM)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from asynclab.bench.gauges import InFlight
from asynclab.bench.inprocess import inprocess_client
from asynclab.bench.limits import BenchTimedOut
from asynclab.bench.load import LoadReport, response_body
from asynclab.bench.rawhttp import Connection, RawRequest, RawResponse
from asynclab.bench.server import uvicorn_server
from asynclab.checks._harness import collect_garbage_before_leaving, counting_connections, first_error, recording_errors
from asynclab.course.checking import build_app, exercise, fail
from asynclab.standins.s06_isolation import (
    READER,
    AuditLog,
    Call,
    Moderation,
    NotesDatabase,
    OrderBook,
    Rendezvous,
    StoredNote,
    burst,
    temporary_database,
)

# --- 6.1 · one session per request -----------------------------------------------------------------

SEED_61 = [("acme", "alice", "alice's first note"), ("acme", "bob", "bob's first note"), ("acme", "carol", "carol's first note")]
OWNERS_61 = ["alice", "bob", "carol", "dave"]


def _mixed_61(n: int) -> list[Call]:
    calls = []
    for i in range(n):
        if i % 3 == 0:
            text = f"spam {i}" if i % 9 == 0 else f"burst note {i}"
            calls.append(Call("POST", "/notes", {"owner": OWNERS_61[i % 4], "text": text}))
        elif i % 3 == 1:
            calls.append(Call("GET", f"/notes/{1 + i % len(SEED_61)}"))
        else:
            calls.append(Call("GET", f"/notes?owner={OWNERS_61[i % 4]}"))
    return calls


EXPIRED_HINT = (
    "commit() expires every object of the session, and reading an expired attribute (row.as_dict()) outside an await fails: "
    "make the sessions with expire_on_commit=False, as the handed-out code did."
)


def _hint_for(errors: list[str], default: int | str = 0) -> int | str:
    return EXPIRED_HINT if any("MissingGreenlet" in e for e in errors) else default


def _expect_note(what: str, status: int, body: Any, owner: str, text: str, errors: list[str], *, alone: bool = False) -> int:
    """The id of a created note, after checking the answer; fails on anything else."""
    if status == 500:
        fail(
            f"{what} answered 500{first_error(errors)}",
            _hint_for(errors, "Fix that error first: one request on its own must work." if alone else 0),
        )
    if status != 201:
        fail(f"{what} answered {status}: {str(body)[:120]}", "A note that passes moderation must be saved and answered with 201.")
    if not isinstance(body, dict) or body.get("owner") != owner or body.get("text") != text:
        fail(f"{what} answered {str(body)[:120]}", "Keep the routes' answers as they were: the saved note, with its id.")
    if not isinstance(body.get("id"), int):
        fail(
            f"{what} answered 201 with id {body.get('id')!r}: the note was never written to the database",
            "Something rolled back this request's note before it was committed: is the session shared with another request?",
        )
    return int(body["id"])


@dataclass
class LostWritePhase:
    """What happened when three accepted writes waited in moderation while a spam write was rejected."""

    held: list[httpx.Response]
    spam: httpx.Response | None
    most_waiting: int  # how many of the three were waiting in moderation at once
    spam_answered_while_held: bool


async def _lost_write_phase(client: httpx.AsyncClient, moderation: Moderation) -> LostWritePhase:
    """Hold three accepted writes in moderation, send a spam write, then let the three go on.

    Nothing here fails half-way: every request is let finish (within a bound) before the check
    judges, so no request is cut off in the middle of a database call.
    """
    held = [f"held note {k}" for k in range(3)]
    moderation.hold(*held)
    answers: dict[int, httpx.Response] = {}
    spam: dict[str, httpx.Response] = {}
    spam_done = anyio.Event()
    most_waiting, answered_while_held = 0, False

    async def send(k: int) -> None:
        answers[k] = await client.post("/notes", json={"owner": OWNERS_61[k], "text": held[k]})

    async def send_spam() -> None:
        spam["response"] = await client.post("/notes", json={"owner": "eve", "text": "buy spam now"})
        spam_done.set()

    try:
        with anyio.move_on_after(4.0):
            async with anyio.create_task_group() as tg:
                for k in range(len(held)):
                    tg.start_soon(send, k)
                all_waiting = await moderation.until_waiting(len(held), timeout=1.5)
                most_waiting = moderation.waiting
                if all_waiting:
                    tg.start_soon(send_spam)
                    with anyio.move_on_after(1.5):
                        await spam_done.wait()
                    answered_while_held = spam_done.is_set()
                moderation.release()
    finally:
        moderation.release()
    return LostWritePhase([answers[k] for k in sorted(answers)], spam.get("response"), most_waiting, answered_while_held)


async def _drive_61(
    client: httpx.AsyncClient, db: NotesDatabase, moderation: Moderation, errors: list[str]
) -> tuple[list[Call], LoadReport]:
    """One write alone, then the forced interleaving, then 50 mixed requests at once; fails on the way."""
    await _one_write_alone(client, db, errors)
    # Forced interleaving: a rejected request's rollback must not touch the others' notes.
    held_ids = _judge_interleaving(await _lost_write_phase(client, moderation), errors)
    stored = {n.id: n for n in await db.notes()}
    lost = [i for i in held_ids if i not in stored]
    if lost:
        fail(
            f"3 notes were answered 201 while another request was rejected, and {len(lost)} of them are not in the database: "
            "the rejected request's rollback threw them away",
            0,
        )

    # Fifty mixed requests at once.
    calls = _mixed_61(50)
    report = await burst(client, calls)
    return calls, report


async def _one_write_alone(client: httpx.AsyncClient, db: NotesDatabase, errors: list[str]) -> None:
    """One write on its own: is a note that passes moderation really committed?"""
    single = await client.post("/notes", json={"owner": "alice", "text": "a quiet note"})
    single_id = _expect_note(
        "POST /notes (one request, nothing else running)",
        single.status_code,
        response_body(single),
        "alice",
        "a quiet note",
        errors,
        alone=True,
    )
    if "a quiet note" not in [n.text for n in await db.notes()]:
        fail(
            f"POST /notes answered 201 with id {single_id}, but that note is not in the database",
            "A session closed without commit() rolls back: commit in the handler once the note is accepted.",
        )


def _judge_interleaving(phase: LostWritePhase, errors: list[str]) -> list[int]:
    """Did the three held writes and the rejected one run side by side, and answer right? The held notes' ids."""
    held, spam = phase.held, phase.spam
    if phase.most_waiting < 3:
        fail(
            f"3 concurrent POST /notes were sent, but only {phase.most_waiting} reached the moderation check "
            "at the same time: the requests waited for each other",
            (
                "Requests must not take turns: each needs its own session, and none may hold the database "
                "(with a lock, or an open write transaction) while it awaits something slow."
            ),
        )
    if spam is None or len(held) < 3:
        fail(
            "with 3 writes waiting in moderation and 1 rejected, not every request answered within 4 s",
            "A request must not wait for another request's transaction: give each request its own session.",
        )
    if not phase.spam_answered_while_held:
        fail(
            "a rejected POST /notes answered only after 3 other writes, held in moderation, went on: "
            "it waited for their transactions",
            "Do not hold a transaction open while awaiting something slow, and give each request its own session.",
        )
    if spam.status_code == 500 or any(r.status_code == 500 for r in held):
        fail(
            "with 3 writes waiting in moderation and 1 rejected, a request answered 500" + first_error(errors),
            _hint_for(errors),
        )
    if spam.status_code != 422:
        fail(
            f"a spam note was answered {spam.status_code}: {str(response_body(spam))[:100]}",
            "Keep rejecting what moderation rejects, with 422.",
        )
    held_ids = [
        _expect_note(
            f"POST /notes ({OWNERS_61[k]}'s note, accepted while another was rejected)",
            r.status_code,
            response_body(r),
            OWNERS_61[k],
            f"held note {k}",
            errors,
        )
        for k, r in enumerate(held)
    ]
    return held_ids


@exercise(
    "6.1",
    "One session per request",
    hints=[
        "Every request gets the same AsyncSession object, so one request's rollback or commit acts on the others' notes.",
        "Create the engine in a lifespan (dispose of it after the yield) and hand each request a new session from a `yield` dependency.",
        (
            "In the lifespan: `yield {'sessions': async_sessionmaker(engine, expire_on_commit=False)}`; the dependency: "
            "`async with request.state.sessions() as session: yield session`."
        ),
    ],
)
@collect_garbage_before_leaving
async def session_per_request(factory: Callable[[str, Moderation], Any]) -> str:
    errors: list[str] = []
    async with temporary_database(SEED_61) as db:
        moderation = Moderation(latency=0.01)
        with counting_connections(ignore_engine=READER) as connections:
            try:
                app = build_app(factory, db.url, moderation)
                async with inprocess_client(recording_errors(app, errors), raise_app_exceptions=False) as client:
                    calls, report = await _drive_61(client, db, moderation, errors)
                stored_after = await db.notes()
            finally:
                still_open, engines = connections.still_open, len(connections.engines)
                await connections.close_leftovers()
    _judge_burst(calls, report, stored_after, errors)
    if still_open > 0:
        fail(
            f"after the app stopped, {still_open} connection(s) to the database file were still open",
            "Dispose of the engine when the app stops: `await engine.dispose()` after the lifespan's yield.",
        )
    if engines > 1:
        fail(
            f"the app connected through {engines} different engines for {len(calls) + 5} requests",
            "An engine holds the connection pool: create it once, in the lifespan, not per request.",
        )
    return (
        "a rejected request's rollback left the 3 other notes alone, and 50 mixed concurrent requests gave no errors, "
        f"lost no note and saved no rejected one ({len(stored_after)} notes in the file, one engine, every connection closed)."
    )


def _judge_burst(calls: list[Call], report: LoadReport, stored: list[StoredNote], errors: list[str]) -> None:
    failed = [c for c, r in zip(calls, report.results, strict=True) if r.status == 500]
    if failed:
        fail(
            f"{len(failed)} of {len(calls)} concurrent requests answered 500, e.g. {failed[0]}" + first_error(errors),
            _hint_for(errors),
        )
    by_id = {n.id: n for n in stored}
    seeded = {i + 1: (owner, text) for i, (_, owner, text) in enumerate(SEED_61)}
    accepted: dict[int, tuple[str, str]] = {}
    for call, r in zip(calls, report.results, strict=True):
        what = f"{call} (one of {len(calls)} at once)"
        if call.method == "POST":
            owner, text = call.json["owner"], call.json["text"]
            if not Moderation.acceptable(text):
                if r.status != 422:
                    fail(f"{what} with a spam note answered {r.status}", "Keep rejecting what moderation rejects, with 422.")
                continue
            accepted[_expect_note(what, r.status, r.body, owner, text, errors)] = (owner, text)
        elif "owner=" in call.path:
            owner = call.path.split("=", 1)[1]
            if r.status != 200 or not isinstance(r.body, list):
                fail(
                    f"{what} answered {r.status}: {str(r.body)[:100]}",
                    "Keep GET /notes?owner=... answering the list of that owner's notes.",
                )
            foreign = [row for row in r.body if row.get("owner") != owner]
            if foreign:
                fail(f"{what} answered a note of somebody else: {foreign[0]}", 0)
            missing = [t for i, (o, t) in seeded.items() if o == owner and t not in {row.get("text") for row in r.body}]
            if missing:
                fail(f"{what} did not list {owner}'s note {missing[0]!r}", 0)
        else:
            note_id = int(call.path.rsplit("/", 1)[1])
            expected = {"owner": seeded[note_id][0], "text": seeded[note_id][1]}
            if r.status != 200 or not isinstance(r.body, dict) or {k: r.body.get(k) for k in expected} != expected:
                fail(f"{what} answered {r.status}: {str(r.body)[:120]}, expected note {note_id} {expected}", 0)
    lost = [i for i in accepted if i not in by_id]
    if lost:
        fail(f"{len(lost)} of {len(accepted)} notes answered 201 during the burst are not in the database (e.g. id {lost[0]})", 0)
    changed = [i for i, (o, t) in accepted.items() if (by_id[i].owner, by_id[i].text) != (o, t)]
    if changed:
        fail(
            f"note {changed[0]} was answered as {accepted[changed[0]]} but is stored as {(by_id[changed[0]].owner, by_id[changed[0]].text)}",
            0,
        )
    spam = [n for n in stored if not Moderation.acceptable(n.text)]
    if spam:
        fail(f"the database holds {len(spam)} rejected note(s), e.g. {spam[0].text!r}", 0)
    burst_texts = {c.json["text"] for c in calls if c.method == "POST"}
    extra = [n for n in stored if n.text in burst_texts and n.id not in accepted]
    if extra:
        fail(f"the database holds {len(extra)} note(s) from the burst that no request was told about, e.g. {extra[0].text!r}", 0)


# --- 6.2 · who is asking, and for which tenant -----------------------------------------------------

TENANTS_62 = ["acme", "globex", "initech", "umbrella"]
USERS_62 = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
SEED_62 = [(t, f"{t}-admin", f"{t} note {k}") for t in TENANTS_62 for k in range(3)]
N_62 = 100


def _who(i: int) -> tuple[str, str]:
    return USERS_62[i % len(USERS_62)], TENANTS_62[i % len(TENANTS_62)]


def _calls_62() -> list[Call]:
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


@exercise(
    "6.2",
    "Whose request is this?",
    hints=[
        (
            "Every request writes the same current_user and current_tenant, and reads them back after an await, when another "
            "request may have overwritten them. One value per process (or per thread: all async def handlers share one) is not one per request."
        ),
        (
            "Let the dependency return the user and tenant and take them as a handler parameter, or keep them in ContextVars "
            "set in an `async def` dependency on every request, anonymous ones too (set None): on a keep-alive connection, "
            "uvicorn starts a request from the context the previous one left."
        ),
        (
            "`async def caller(x_user: Annotated[str | None, Header()] = None, x_tenant: Annotated[str | None, Header()] = None) "
            "-> tuple[str | None, str | None]: return x_user, x_tenant`, then `who: Annotated[tuple[str | None, str | None], "
            "Depends(caller)]` in each handler, and `user, tenant = who` instead of the globals (None for an anonymous caller, as before)."
        ),
    ],
    timeout=45,  # the bench's own limits on real uvicorn (SERVER_START, ANSWER_WITHIN) must run out first
)
@collect_garbage_before_leaving
async def whose_request(factory: Callable[[str, AuditLog], Any]) -> str:
    try:
        return await _whose_request(factory)
    except BenchTimedOut as exc:  # a limit of the check's own ran out: never reported as the learner's error
        fail(
            f"the check could not {exc.what} within {exc.seconds:g} s: the machine is busy; run it again",
            "This is the check's trouble, not your code's: run the check cell again (close other heavy programs if it repeats).",
        )


async def _whose_request(factory: Callable[[str, AuditLog], Any]) -> str:
    errors: list[str] = []
    rendezvous = Rendezvous(N_62, timeout=2.0)
    audit = AuditLog(rendezvous=rendezvous)
    calls = _calls_62()
    async with temporary_database(SEED_62) as db:
        with counting_connections(ignore_engine=READER) as connections:
            try:
                app = build_app(factory, db.url, audit, name="build_service")
                async with inprocess_client(recording_errors(app, errors), raise_app_exceptions=False) as client:
                    report = await burst(client, calls)
            finally:
                await connections.close_leftovers()
        stored = await db.notes()
    _judge_statuses_62(calls, report, errors)
    _judge_leaks_62(calls, report, stored)
    if len(audit.entries) < N_62:
        fail(f"only {len(audit.entries)} of {N_62} requests called audit.record()", "Keep the audit call in every route.")
    if not rendezvous.complete:
        fail(
            f"the {N_62} requests were never inside the app at the same time: "
            f"at most {rendezvous.most_inside} of them were waiting in audit.record() at once",
            "Requests must not take turns: remove any lock, and keep the per-request values per request instead.",
        )
    _judge_stored_62(calls, stored)
    served = await _keep_alive_62(factory)
    return (
        f"{N_62} requests from {len(USERS_62)} users of {len(TENANTS_62)} tenants, all inside the app at once: each saw and "
        f"wrote only its own data; on real uvicorn (h11), {served} signed-in and anonymous requests on one keep-alive "
        "connection (pipelined, and after a large POST): every anonymous request stayed anonymous."
    )


def _judge_statuses_62(calls: list[Call], report: LoadReport, errors: list[str]) -> None:
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


def _judge_leaks_62(calls: list[Call], report: LoadReport, stored: list[StoredNote]) -> None:
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


def _judge_stored_62(calls: list[Call], stored: list[StoredNote]) -> None:
    """Is every new note in the file, stored for the caller who wrote it?"""
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


async def _keep_alive_62(factory: Callable[[str, AuditLog], Any]) -> int:
    """Serve the app with real uvicorn (h11) and send signed-in and anonymous requests on one keep-alive connection.

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
    async with temporary_database(SEED_62) as db:
        with counting_connections(ignore_engine=READER) as connections:
            try:
                app = _counted(recording_errors(build_app(factory, db.url, AuditLog(), name="build_service"), errors), in_app)
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
            "Set your per-request values on every request, anonymous ones too, or pass them through the dependency's return value.",
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
            "Set the ContextVars on every request, anonymous ones too (to None), or pass the values through the dependency's return value.",
        )
    if isinstance(body, tuple) and (not isinstance(answer.body, dict) or (answer.body.get("owner"), answer.body.get("tenant")) != body):
        fail(f"on real uvicorn, {what} saved {shown}, expected a note of {body[0]} of {body[1]}", 1)
    if isinstance(body, dict) and answer.body != body:
        fail(f"on real uvicorn, {what} answered {shown}, expected {body}", 0)



# --- 6.3 · find it: the audit trail names the wrong person -------------------------------------------

PEOPLE_63 = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]


def _cancellation(order_id: int, user: str) -> str:
    return f"{user} cancelled order {order_id}"


async def _cancel_one_at_a_time(factory: Callable[[OrderBook, AuditLog], Any]) -> None:
    """Three cancellations, one after the other: each must answer 200 and be audited under its own name."""
    audit = AuditLog()
    app = build_app(factory, OrderBook(), audit, name="build_orders")
    async with inprocess_client(app, raise_app_exceptions=False) as client:
        for order_id, user in enumerate(PEOPLE_63[:3], start=1):
            response = await client.post(f"/orders/{order_id}/cancel", headers={"X-User": user})
            body = response_body(response)
            if response.status_code != 200 or body != {"order": order_id, "cancelled_by": user}:
                fail(
                    f"POST /orders/{order_id}/cancel as {user}, on its own, answered {response.status_code} {str(body)[:80]}",
                    "Keep the route's answer as it was: {'order': ..., 'cancelled_by': ...}, with the caller's name.",
                )
    expected = [_cancellation(order_id, user) for order_id, user in enumerate(PEOPLE_63[:3], start=1)]
    if audit.entries != expected:
        fail(
            f"three cancellations sent one after the other were audited as {audit.entries}, expected {expected}",
            "Keep the audit entries as they were: '<who> cancelled order <id>'.",
        )


@exercise(
    "6.3",
    "Find why the audit trail blames the wrong person",
    hints=[
        (
            "The name is read after an `await`, and by then the other requests have run too. Where does the handler read "
            "the caller's name from, and how many of that object are there?"
        ),
        (
            "request.state is per request, but it starts as a shallow copy of what the lifespan yielded: the RequestContext "
            "made in the lifespan is one object, and every request writes its caller into it."
        ),
        (
            "Keep the caller on the request itself: in identify, `request.state.user = x_user`, and read `request.state.user` "
            "wherever the handler reads `request.state.context.user`. (Or let identify return the name, and take it as a parameter.)"
        ),
    ],
)
async def audit_names_the_caller(factory: Callable[[OrderBook, AuditLog], Any]) -> str:
    await _cancel_one_at_a_time(factory)
    n = len(PEOPLE_63)
    rendezvous = Rendezvous(n, timeout=2.0)
    audit = AuditLog()
    app = build_app(factory, OrderBook(rendezvous), audit, name="build_orders")
    calls = [Call("POST", f"/orders/{100 + i}/cancel", headers={"X-User": person}) for i, person in enumerate(PEOPLE_63)]
    async with inprocess_client(app, raise_app_exceptions=False) as client:
        report = await burst(client, calls)
    wrong = [e for e in audit.entries if e not in {_cancellation(100 + i, p) for i, p in enumerate(PEOPLE_63)}]
    if wrong or len(audit.entries) != n:
        order_id = int(wrong[0].rsplit(" ", 1)[1]) if wrong and wrong[0].rsplit(" ", 1)[1].isdigit() else None
        who = PEOPLE_63[order_id - 100] if order_id is not None and 0 <= order_id - 100 < n else None
        example = f" (it says {wrong[0]!r}, but {who} cancelled order {order_id})" if who else (f" (e.g. {wrong[0]!r})" if wrong else "")
        fail(
            f"{n} cancellations sent at once by {n} different people: the audit trail named the wrong person for "
            f"{len(wrong)} of them{example}; sent one at a time, every entry was right.",
            0,
        )
    for i, result in enumerate(report.results):
        if result.status != 200 or result.body != {"order": 100 + i, "cancelled_by": PEOPLE_63[i]}:
            fail(
                f"POST /orders/{100 + i}/cancel as {PEOPLE_63[i]}, one of {n} at once, answered {result.status} {str(result.body)[:80]}",
                "The answer names the caller too: read the name from the same per-request place as the audit entry.",
            )
    if not rendezvous.complete:
        fail(
            f"the {n} cancellations were never inside the app at the same time: at most {rendezvous.most_inside} of them "
            "were waiting in orders.cancel() at once",
            "Requests must not take turns: remove any lock, and keep the caller's name per request instead.",
        )
    return f"{n} cancellations sent at once by {n} people, all inside the app together: every audit entry and every answer named its own caller."
