"""Exercise 6.1's requests and judges: one write alone, writes held while another is rejected, then fifty at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from asynclab.bench.load import LoadReport, response_body
from asynclab.checks._harness import (
    first_error,
)
from asynclab.course.checking import fail
from asynclab.standins.s06_isolation import (
    Call,
    Moderation,
    NotesDatabase,
    StoredNote,
    burst,
)

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


async def drive_61(
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


def judge_burst(calls: list[Call], report: LoadReport, stored: list[StoredNote], errors: list[str]) -> None:
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
            (
                f"note {changed[0]} was answered as {accepted[changed[0]]} but is stored as "
                f"{(by_id[changed[0]].owner, by_id[changed[0]].text)}"
            ),
            0,
        )
    spam = [n for n in stored if not Moderation.acceptable(n.text)]
    if spam:
        fail(f"the database holds {len(spam)} rejected note(s), e.g. {spam[0].text!r}", 0)
    burst_texts = {c.json["text"] for c in calls if c.method == "POST"}
    extra = [n for n in stored if n.text in burst_texts and n.id not in accepted]
    if extra:
        fail(f"the database holds {len(extra)} note(s) from the burst that no request was told about, e.g. {extra[0].text!r}", 0)
