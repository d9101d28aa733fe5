"""The room: one row per report, the learners who have not reported, and where the room is stuck."""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asynclab.course.room.plain import key, plain
from asynclab.course.room.reading import Outcome, Report

PASSED, NOT_YET, BROKEN, NO_RESULT = "✅ passed", "❌ not yet", "⚠️ broken", "– no report"
MARKS = (PASSED, NOT_YET, BROKEN, NO_RESULT)
FUTURE_SLACK = dt.timedelta(minutes=10)  # clocks disagree a little; a report from 2099 is not that


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    section: str


_HEADING = re.compile(r"^## (?:Exercise )?(\d+\.\d+) · (.+)$", re.MULTILINE)


@functools.cache
def course_exercises() -> tuple[Exercise, ...]:
    """The course's exercises in order, as the instructor's copy of the course defines them.

    Read from the solution notebooks alone, as ``progress.expected()`` does, but each title from its
    notebook heading, which tests/test_dev_check.py proves equal to the check's registered title: so
    no check module (FastAPI, SQLAlchemy, ...) is imported, which saves the class view about a second.
    """
    from asynclab.course import authoring, progress

    found = []
    for solution in authoring.solutions():
        nb = authoring.read(solution)
        markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        section = next(
            (line[2:].strip().removeprefix("Exercises · ") for line in markdown.splitlines() if line.startswith("# ")), ""
        )
        titles = {number: title.replace("`", "").strip() for number, title in _HEADING.findall(markdown)}
        found += [Exercise(i, titles.get(i, ""), section) for i in progress.check_ids(nb)]
    return tuple(found)


def own_version() -> str:
    """The instructor's course version: the git commit, else the package version."""
    from asynclab.course import report

    mine = report.course_version()
    return str(mine["commit"] or mine["version"])


@dataclass
class Learner:
    name: str
    source: str  # the file (or "alice's server") the row comes from
    file: str  # its short name
    ran_at: dt.datetime | None
    version: str
    results: dict[str, Outcome]
    claims: int = 1  # how many reports claim this learner: more than 1 is a conflict
    future: bool = False  # ran_at is later than now

    @property
    def key(self) -> str:
        return key(self.name)

    @property
    def solved(self) -> dict[str, bool]:
        return {e: o.solved for e, o in self.results.items()}

    @property
    def seen(self) -> dict[str, str]:
        return {e: o.broken or o.seen for e, o in self.results.items() if not o.solved}

    def count(self, exercises: Iterable[str]) -> int:
        return sum(self.results[e].solved for e in exercises if e in self.results)


@dataclass
class Stuck:
    exercise: str
    title: str
    not_solved: int
    observation: str  # the most common one among those who have not solved it
    sharing: int  # how many of them saw exactly that


@dataclass
class Section:
    title: str
    exercises: list[str]
    finished: int  # learners who solved every exercise of it
    started: int  # learners who solved at least one


@dataclass
class Room:
    """The room as the instructor's copy of the course sees it.

    Built from the usable reports (:mod:`.reading`) and the instructor's own copy of the course, which
    says which exercises there are, their titles and sections, and which course version is current.
    Nothing a report says can change those: a report made with another version is flagged, not made
    "the room's version" by numbers; two reports that claim one learner are both shown as a conflict.
    """

    learners: list[Learner]
    course: Sequence[Exercise]
    version: str  # the instructor's course version
    warnings: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # on the roster, no report
    upto: str | None = None  # the frontier the instructor set with --upto
    collected: str = ""  # the hub's URL when the room was collected from it; '' for self-reported files
    made: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def exercises(self) -> list[str]:
        return [e.id for e in self.course]

    @property
    def titles(self) -> dict[str, str]:
        return {e.id: e.title for e in self.course}

    @property
    def conflicts(self) -> int:
        return len({x.key for x in self.learners if x.claims > 1})

    def mark(self, learner: Learner, exercise: str) -> str:
        outcome = learner.results.get(exercise)
        if outcome is None:
            return NO_RESULT
        if outcome.solved:
            return PASSED
        return BROKEN if outcome.broken else NOT_YET

    def solved_by(self, exercise: str) -> int:
        return sum(learner.count([exercise]) for learner in self.learners)

    def sections(self) -> list[Section]:
        order: dict[str, list[str]] = {}
        for e in self.course:
            order.setdefault(e.section, []).append(e.id)
        return [
            Section(
                title,
                ids,
                sum(x.count(ids) == len(ids) for x in self.learners),
                sum(x.count(ids) > 0 for x in self.learners),
            )
            for title, ids in order.items()
        ]

    def frontier(self) -> str | None:
        """How far stuck looks: --upto, else the furthest exercise at least half the room has solved (else the first)."""
        if self.upto is not None:
            return self.upto
        if not self.course:
            return None
        half = max(1, math.ceil(len(self.learners) / 2))
        reached = [e.id for e in self.course if self.solved_by(e.id) >= half]
        return reached[-1] if reached else self.course[0].id

    def stuck(self, top: int = 3) -> list[Stuck]:
        """Up to ``top`` exercises, up to the frontier, that the most learners have not solved; course order on ties."""
        frontier = self.frontier()
        ranked = []
        for exercise in self.course:
            missing = [x for x in self.learners if exercise.id in x.results and not x.results[exercise.id].solved]
            if missing:
                seen = Counter(x.seen[exercise.id] or "(no observation recorded)" for x in missing)
                observation, sharing = seen.most_common(1)[0]
                ranked.append(Stuck(exercise.id, exercise.title, len(missing), observation, sharing))
            if exercise.id == frontier:
                break
        ranked.sort(key=lambda s: -s.not_solved)  # stable: course order among equals
        return ranked[:top]


def read_roster(text: str) -> list[str]:
    """Names, one a line; blank lines and lines starting with # are skipped; each name made plain."""
    names = [plain(line, 64) for line in text.splitlines()[:5000] if line.strip() and not line.lstrip().startswith("#")]
    return list(dict.fromkeys(n for n in names if n))


def build(
    reports: Iterable[Report],
    *,
    course: Sequence[Exercise],
    version: str,
    warnings: list[str],
    roster: Sequence[str] | None = None,
    upto: str | None = None,
    by_progress: bool = False,
    collected: str = "",
    now: dt.datetime | None = None,
) -> Room:
    """The room from its reports; conflicts, other versions, times in the future and strays from the roster become warnings."""
    now = now or dt.datetime.now(dt.UTC)
    learners = []
    others: dict[str, list[str]] = {}
    for r in reports:
        learner = Learner(r.learner, r.source, r.name, r.ran_at, r.version, r.results)
        if r.version != version:
            others.setdefault(r.version, []).append(r.source)
        if r.ran_at > now + FUTURE_SLACK:
            learner.future = True
            warnings.append(
                f"{r.source}: says it ran at {r.ran_at:%Y-%m-%d %H:%M} UTC, in the future; shown, its time not trusted"
            )
        learners.append(learner)
    for other, sources in others.items():
        if len(sources) == 1:
            warnings.append(f"{sources[0]}: made with course version {other[:12]}, yours is {version[:12]}; shown anyway")
        else:
            listed = ", ".join(Path(x).name for x in sources[:6]) + (f" and {len(sources) - 6} more" if len(sources) > 6 else "")
            warnings.append(
                f"{len(sources)} reports made with course version {other[:12]}, yours is {version[:12]}; shown anyway: {listed}"
            )
    groups: dict[str, list[Learner]] = {}
    for learner in learners:
        groups.setdefault(learner.key, []).append(learner)
    for group in groups.values():
        if len(group) > 1:
            for learner in group:
                learner.claims = len(group)
            files = ", ".join(x.file for x in sorted(group, key=lambda x: x.file))
            warnings.append(
                f"{len(group)} reports claim the learner {group[0].name!r} ({files}): all shown, marked as a conflict; "
                "ask who is who and remove the wrong file"
            )
    absent: list[str] = []
    if roster is not None:
        expected = {key(n): n for n in roster}
        absent = [name for k, name in expected.items() if k not in groups]
        for k, group in groups.items():
            if k not in expected:
                warnings.append(f"{group[0].source}: {group[0].name!r} is not on the roster; shown anyway")
    if by_progress:
        ids = [e.id for e in course]
        learners.sort(key=lambda x: (-x.count(ids), key(x.name), x.file))
    else:
        learners.sort(key=lambda x: (key(x.name), x.file))
    return Room(learners, list(course), version, warnings, sorted(absent, key=key), upto, collected, now)
