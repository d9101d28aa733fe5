"""Facts written once: each copy (headings, the README syllabus, the guide's entries) made from its source by ``build``."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asynclab.course.authoring import ROOT, check_ids, lessons, read, solutions

#
# An exercise's title:  its @exercise(...) registration -> the solution's "## Exercise N.M · Title"
#                       (and so the exercise's), and the guide's "**N.M Title**" entry.
# A lesson's title:     the lesson's "# N · Title" -> the solution's "# Exercises · N · Title" and
#                       the README's syllabus row.
# A lesson's minutes:   the lesson's "**Time:**" line -> the README's syllabus row.
# The syllabus's rule and failure columns: docs/syllabus.toml -> the README's syllabus row.

README = Path("README.md")
GUIDE = Path("docs/instructors.md")
SYLLABUS = Path("docs/syllabus.toml")
WRITTEN = (README, GUIDE)  # files outside the notebooks that build writes parts of
SYLLABUS_START, SYLLABUS_END = "<!-- syllabus -->", "<!-- /syllabus -->"
EXERCISE_HEADING = re.compile(r"^## (?:Exercise )?(\d+\.\d+) ·[ \t]*(.*)$", re.MULTILINE)  # the title may be left out
SECTION_HEADING = re.compile(r"^# Exercises · (\d+) ·[ \t]*(.*)$", re.MULTILINE)
LESSON_HEADING = re.compile(r"^# (\d+) · (.+)$", re.MULTILINE)
LESSON_TIME = re.compile(r"\*\*Time:\*\* (\d+) min(?: \w+ · ([\d–]+) min exercises)?")
GUIDE_ENTRY = re.compile(r"^\*\*(\d+\.\d+)((?: [^*]*)?)\*\*", re.MULTILINE)  # "**3.2**" or "**3.2 Title**"
COUNT_WORDS = ("No", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten", "Eleven", "Twelve")
EXERCISE_COUNT = re.compile(rf"^({'|'.join(COUNT_WORDS)}) exercises?\b", re.MULTILINE)


def exercise_titles() -> dict[str, str]:
    """Every registered exercise's title, by id: the one source of an exercise's title."""
    from asynclab.course import checking

    return {e.id: e.title for e in checking.all_exercises()}


def retitle(nb: Any, titles: dict[str, str], lesson_title: str = "") -> Any:
    """Write a solution notebook's headings from their sources, in place: each "## Exercise N.M · Title"
    from the exercise's registration, "# Exercises · N · Title" from its lesson, and "Two exercises"
    from its check cells. A heading may put backticks around words of the title: they are kept."""
    count = len(check_ids(nb))

    def exercise(match: re.Match[str]) -> str:
        id, written = match.groups()
        title = titles.get(id)
        if title is None:
            return match.group(0)  # no such exercise: unsourced() names it
        return f"## Exercise {id} · {written if written.replace('`', '').strip() == title else title}"

    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        source = EXERCISE_HEADING.sub(exercise, cell.source)
        if lesson_title:
            source = SECTION_HEADING.sub(lambda m: f"# Exercises · {m.group(1)} · {lesson_title}", source)
        if index == 0 and count < len(COUNT_WORDS):
            source = EXERCISE_COUNT.sub(f"{COUNT_WORDS[count]} exercise{'' if count == 1 else 's'}", source, count=1)
        cell.source = source
    return nb


@dataclass(frozen=True)
class Lesson:
    """What the README's syllabus row says of a lesson, each part from its one source."""

    number: str  # "01"
    title: str  # from the lesson's "# N · Title"
    link: str  # notebooks/01-async-handlers.ipynb
    minutes: str  # from its **Time:** line: "25 + 20", or "10"
    rule: str = ""  # from docs/syllabus.toml
    failure: str = ""

    def row(self) -> str:
        return f"| {int(self.number)} | [{self.title}]({self.link}) | {self.rule} | {self.failure} | {self.minutes} |"


def syllabus_lessons(root: Path = ROOT) -> dict[str, Lesson]:
    """Every lesson as the syllabus shows it, by its two-digit number (lessons without a title or a
    **Time:** line are left out, and named by :func:`unsourced`)."""
    rows = _syllabus_rows(root)
    found = {}
    for path in lessons(root):
        cells = read(path).cells
        first = cells[0].source if cells else ""
        heading, time = LESSON_HEADING.search(first), LESSON_TIME.search(first)
        if not heading or not time:
            continue
        teaching, exercising = time.groups()
        row = rows.get(path.stem, {})
        found[path.name[:2]] = Lesson(
            number=path.name[:2],
            title=heading.group(2).strip(),
            link=f"notebooks/{path.name}",
            minutes=f"{teaching} + {exercising}" if exercising else teaching,
            rule=str(row.get("rule", "")),
            failure=str(row.get("failure", "")),
        )
    return found


def _syllabus_rows(root: Path) -> dict[str, dict[str, object]]:
    path = root / SYLLABUS
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def syllabus_table(root: Path = ROOT) -> str:
    head = "| # | Section | The rule, in one line | The failure you see live | Minutes |\n|---|---|---|---|---|"
    return "\n".join([head, *(lesson.row() for lesson in syllabus_lessons(root).values())])


def write_syllabus(readme: str, root: Path = ROOT) -> str:
    """The README with its syllabus table, between its markers, written from the lessons and docs/syllabus.toml."""
    start, end = readme.find(SYLLABUS_START), readme.find(SYLLABUS_END)
    if start < 0 or end < start:
        return readme  # unsourced() says the markers are missing
    return readme[: start + len(SYLLABUS_START)] + "\n\n" + syllabus_table(root) + "\n\n" + readme[end:]


def retitle_guide(guide: str, titles: dict[str, str]) -> str:
    """The instructor's guide with each exercise entry's "**N.M Title**" written from the registration."""

    def entry(match: re.Match[str]) -> str:
        id = match.group(1)
        return f"**{id} {titles[id]}**" if id in titles else match.group(0)

    return GUIDE_ENTRY.sub(entry, guide)


def unsourced(root: Path = ROOT) -> list[str]:
    """What ``build`` cannot write itself, one line each: a heading, a guide entry or a syllabus row
    that is missing, or one that names something that does not exist."""
    problems: list[str] = []
    titles = exercise_titles()
    checked: list[str] = []
    for solution in solutions(root):
        nb = read(solution)
        ids = check_ids(nb)
        checked += ids
        markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        headed = [id for id, _ in EXERCISE_HEADING.findall(markdown)]
        for id in ids:
            if id not in titles:
                problems.append(f"{solution.name}: check('{id}') has no @exercise registration in src/asynclab/checks/")
            if headed.count(id) != 1:
                problems.append(
                    f"{solution.name}: exercise {id} needs one heading '## Exercise {id} · Title' (found {headed.count(id)})"
                )
        problems += [f"{solution.name}: a heading for exercise {id}, which it does not check" for id in headed if id not in ids]
        if not SECTION_HEADING.search(nb.cells[0].source if nb.cells else ""):
            problems.append(f"{solution.name}: its first cell needs the heading '# Exercises · N · Title'")
    in_lessons = {id for lesson in lessons(root) for id in check_ids(read(lesson))}  # start-here's own check
    problems += [f"exercise {id} is registered but no solution checks it" for id in titles if id not in {*checked, *in_lessons}]
    guide = (root / GUIDE).read_text(encoding="utf-8") if (root / GUIDE).exists() else ""
    entries = [id for id, _ in GUIDE_ENTRY.findall(guide)]
    problems += [
        f"{GUIDE}: no entry for exercise {id}: add a line '**{id}**' and what to say" for id in checked if id not in entries
    ]
    problems += [f"{GUIDE}: an entry for exercise {id}, which does not exist" for id in entries if id not in checked]
    problems += [
        f"{GUIDE}: exercise {id} has {entries.count(id)} entries" for id in sorted(set(entries)) if entries.count(id) > 1
    ]
    readme = (root / README).read_text(encoding="utf-8") if (root / README).exists() else ""
    if not (0 <= readme.find(SYLLABUS_START) < readme.find(SYLLABUS_END)):
        problems.append(f"{README}: the syllabus needs its markers {SYLLABUS_START} and {SYLLABUS_END}")
    shown = syllabus_lessons(root)
    rows = _syllabus_rows(root)
    for path in lessons(root):
        if path.name[:2] not in shown:
            problems.append(f"{path.name}: its first cell needs '# N · Title' and a '**Time:** N min ...' line")
        elif path.stem not in rows or not rows[path.stem].get("rule") or not rows[path.stem].get("failure"):
            problems.append(f"{SYLLABUS}: [{path.stem}] needs a rule and a failure")
    problems += [f"{SYLLABUS}: [{stem}] names no lesson" for stem in rows if stem not in {p.stem for p in lessons(root)}]
    return problems
