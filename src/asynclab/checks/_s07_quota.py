"""Exercise 7.1's judges: calls one by one on chosen workers, the counts read back, a crowd at once."""

from __future__ import annotations

from collections import Counter

from asynclab.bench.workers import Answer, Workers, last_error
from asynclab.checks._s07_database import SharedDatabase
from asynclab.course.checking import fail

QUOTA = 5
CROWD = 8
VARIABLE = "QUOTA_DATABASE_URL"
# What the handed-out lifespan creates; on PostgreSQL the check creates it before the workers start.
USAGE = "CREATE TABLE IF NOT EXISTS usage (key TEXT PRIMARY KEY, used INTEGER NOT NULL)"


def log_error(server: Workers) -> str:
    error = last_error(server.log())
    return f"; the server's log says: {error}" if error else ""


def judge_one_by_one(server: Workers, a: int, b: int, plan: list[tuple[int, str]], answers: list[Answer]) -> None:
    """Did alice's calls, one after the other on workers ``a`` and ``b``, stop at her quota on both, and leave bob's alone?"""
    for (_, route), answer in zip(plan, answers, strict=True):
        if answer.status not in (200, 429):
            ambiguous = 'column reference "used" is ambiguous' in server.log()
            fail(
                f"GET {route} answered {answer.status}: {str(answer.body)[:100]}{log_error(server)}",
                "In ON CONFLICT ... DO UPDATE, PostgreSQL wants the row already there named with its table: "
                "`SET used = usage.used + 1` (SQLite takes `used` alone)."
                if ambiguous
                else "Every call must answer 200 (allowed) or 429 (over the quota).",
            )
    status = [answer.status for answer in answers]
    first, other, back, bob = status[:QUOTA], status[QUOTA : QUOTA + 3], status[QUOTA + 3 : QUOTA + 5], status[QUOTA + 5 :]
    if first != [200] * QUOTA:
        fail(
            f"alice's first {QUOTA} calls (all to worker {a}) answered {first}; all {QUOTA} must be allowed",
            "Count the call, then compare with QUOTA: calls 1 to 5 answer 200, call 6 and later answer 429.",
        )
    if other == [200, 200, 200]:
        fail(
            f"alice's calls {QUOTA + 1} to {QUOTA + 3} went to worker {b} (the other one), which allowed all 3: "
            f"it had not seen calls 1 to {QUOTA}. Each worker counted only the calls it saw.",
            0,
        )
    if other == [200, 429, 429]:
        fail(
            f"alice's call {QUOTA + 1} was allowed and calls {QUOTA + 2} and {QUOTA + 3} refused: "
            f"one call more than her quota of {QUOTA}",
            "Allow a call only while the count before it is below QUOTA (`used < QUOTA`), not `<=`.",
        )
    if other + back != [429] * 5:
        fail(
            f"after alice's {QUOTA} allowed calls, her next calls answered {other} (worker {b}) and {back} (worker {a}); "
            "all must answer 429",
            1,
        )
    if bob != [200, 200]:
        fail(
            f"bob's first two calls answered {bob}, after alice had used up her quota",
            "Count per key: alice's calls must not use up bob's quota.",
        )


async def stored_counts(db: SharedDatabase) -> dict[str, int] | None:
    """The ``used`` count of each key in the ``usage`` table, or None without such a table."""
    rows = await db.rows("SELECT key, used FROM usage")
    return None if rows is None else {str(key): int(used) for key, used in rows}


def judge_stored(plan: list[tuple[int, str]], answers: list[Answer], stored: dict[str, int] | None, where: str) -> None:
    """Are the allowed calls counted in the database both workers share, the one the exercise names?"""
    allowed = Counter(
        route.removeprefix("/ask/") for (_, route), answer in zip(plan, answers, strict=True) if answer.status == 200
    )
    if stored is None:
        fail(
            f"{where} has no usage table with a `used` count per key: the calls were counted somewhere else",
            "Keep the lifespan's CREATE TABLE IF NOT EXISTS usage (key, used), and count in that table.",
        )
    for key, calls in sorted(allowed.items()):
        if key not in stored:
            fail(
                f"the usage table in {where} holds no count for {key}, who was allowed {calls} calls: the calls were counted "
                "somewhere else (a file, a worker's memory), not in the database both workers share",
                "Count in the usage table: `UPDATE usage SET used = used + 1 WHERE key = :key AND used < :quota RETURNING used`.",
            )
        if stored[key] < calls:
            fail(
                f"the usage table in {where} says {key} used {stored[key]} calls, yet {calls} were allowed: "
                "some calls were counted somewhere else",
                "Count every allowed call in the usage table, in the same transaction that allows it.",
            )


def judge_crowd(server: Workers, first: Answer, crowd: list[Answer], db: SharedDatabase) -> Counter[int]:
    """After carol's first call, were CROWD more calls at the same moment allowed exactly QUOTA - 1 times?"""
    if first.status != 200:
        fail(f"carol's first call answered {first.status}: {str(first.body)[:100]}{log_error(server)}", 1)
    by_worker = Counter(x.pid for x in crowd)
    on = f"on {len(by_worker)} worker{'s' if len(by_worker) > 1 else ''}"
    odd = [x for x in crowd if x.status not in (200, 429)]
    if odd:
        fail(
            f"{len(odd)} of {CROWD} calls for carol sent at the same moment {on} answered {odd[0].status}: "
            f"{str(odd[0].body)[:100]}{log_error(server)}",
            "Concurrent calls must not fail: do the check and the count in one statement (UPDATE ... WHERE used < quota).",
        )
    allowed = [x for x in crowd if x.status == 200]
    used = sorted(n for x in allowed if isinstance(x.body, dict) and isinstance(n := x.body.get("used"), int))
    if len(allowed) != QUOTA - 1 or used != list(range(2, QUOTA + 1)):
        postgres = " On PostgreSQL a SELECT does not lock the row it reads, not even inside a transaction." if db.dsn else ""
        fail(
            f"after carol's first call, {CROWD} more calls for her sent at the same moment {on} were allowed {len(allowed)} "
            f"times ({QUOTA - 1} were left of her quota of {QUOTA}), with used = {used}: several calls read the same count "
            f"before any of them wrote it.{postgres}",
            "Read-then-write races: do the check and the count in one statement, `UPDATE usage SET used = used + 1 "
            "WHERE key = :key AND used < :quota RETURNING used`.",
        )
    return by_worker
