"""The repository's own invariants (rustlings' `dev check`): from a section's number you find all its parts,
the sections are found (never listed), and every fact written in two places has one source.

Two more belong to it and live beside the tests of the same files: the three notebook names per
section (``tests/test_notebooks.py``) and every exercise's hints, at least two, each adding
something (``tests/test_hints.py``).

Run alone with ``python -m pytest -n 0 tests/test_dev_check.py``: it executes nothing, so it answers in seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import asynclab
from asynclab.course import authoring, checking, facts, progress, teaching

ROOT = authoring.ROOT
PACKAGE = ROOT / "src" / "asynclab"
SECTIONS = [authoring.section(p) for p in authoring.solutions()]  # "01-async-handlers", ...
HEADING = re.compile(r"^## (?:Exercise )?(\d+\.\d+) · (.+)$", re.MULTILINE)
MINUTES = teaching.TIME


def one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"expected one {folder.relative_to(ROOT)}/{pattern}, found {[p.name for p in found]}"
    return found[0]


def test_the_sections_are_numbered_from_1_without_a_gap() -> None:
    """The sections are the solution notebooks; every lesson but start-here is one of them."""
    assert [s[:2] for s in SECTIONS] == [f"{n:02d}" for n in range(1, len(SECTIONS) + 1)]
    assert [authoring.section(p) for p in authoring.lessons()] == ["00-start-here", *SECTIONS]


@pytest.mark.parametrize("section", SECTIONS)
def test_a_section_has_every_part_named_from_its_number(section: str) -> None:
    """The check module, the stand-ins and the answer tests, all three with one stem."""
    number = section[:2]
    checks = one(PACKAGE / "checks", f"s{number}_*.py")
    standins = one(PACKAGE / "standins", f"s{number}_*.py")
    answers = one(ROOT / "tests" / "answers", f"test_s{number}_*.py")
    assert standins.name == checks.name, "a section's stand-ins and checks share one stem"
    assert answers.name == f"test_{checks.name}", "its answer tests are named for its check module"


def test_every_module_of_a_section_belongs_to_a_section() -> None:
    numbers = {s[:2] for s in SECTIONS} | {"00"}  # 00: the start-here notebook's check
    for folder in (PACKAGE / "checks", PACKAGE / "standins", ROOT / "tests" / "answers"):
        for path in folder.glob("*s[0-9][0-9]_*.py"):
            assert re.search(r"s(\d\d)_", path.name)[1] in numbers, f"{path} names no section"  # type: ignore[index]


@pytest.mark.parametrize("solution", authoring.solutions(), ids=lambda p: p.name[:2])
def test_each_exercise_title_is_its_heading(solution: Path) -> None:
    """What `progress` and the check's messages call an exercise is what its notebook heading says."""
    nb = authoring.read(solution)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    headings = {number: title.replace("`", "").strip() for number, title in HEADING.findall(text)}
    ids = progress.check_ids(nb)
    assert sorted(headings) == sorted(ids), "one heading per checked exercise"
    for id in ids:
        registered = checking.get(id)
        assert registered.title == headings[id], f"exercise {id}: registered as {registered.title!r}, headed {headings[id]!r}"


def test_the_package_names_match_its_lazy_imports() -> None:
    """``from asynclab import X`` works for every X in ``__all__`` (each is imported on first use), none twice."""
    assert len(asynclab.__all__) == len(set(asynclab.__all__))
    assert set(asynclab._WHERE) == set(asynclab.__all__)
    for name in sorted(asynclab._WHERE):
        getattr(asynclab, name)  # AttributeError or ImportError where the map is wrong


# --- one source for every fact: `python -m asynclab build` writes the copies (tests/test_notebooks.py proves
# it would change nothing); what it cannot write, it names ----------------------------------------------


def test_build_can_write_every_copied_fact() -> None:
    """Every exercise has a heading and a guide entry, every lesson a syllabus row, and none names what is not there."""
    assert facts.unsourced() == []


def test_the_instructors_guide_has_one_entry_per_exercise_and_names_no_other() -> None:
    guide = (ROOT / facts.GUIDE).read_text(encoding="utf-8")
    entries = [id for id, _ in facts.GUIDE_ENTRY.findall(guide)]
    exercises = [id for solution in authoring.solutions() for id in progress.check_ids(authoring.read(solution))]
    assert sorted(entries, key=checking.order) == exercises, "one '**N.M Title**' entry per exercise, in course order"
    assert entries == exercises, "the guide's entries are in course order"


def test_the_readme_syllabus_lists_every_lesson_with_its_own_minutes() -> None:
    readme = (ROOT / facts.README).read_text(encoding="utf-8")
    for lesson in authoring.lessons():
        minutes = MINUTES.search(authoring.read(lesson).cells[0].source)
        row = next((line for line in readme.splitlines() if f"(notebooks/{lesson.name})" in line), "")
        assert row, f"README's syllabus has no row for {lesson.name}: run `python -m asynclab build`"
        if minutes:  # start-here has no exercises
            assert row.rstrip(" |").endswith("| {} + {}".format(*minutes.groups())), f"README's minutes for {lesson.name}"


# --- the learner loop: a lesson's core fits its teaching block --------------------------------------

TAUGHT = [p for p in authoring.lessons() if teaching.measure(p).planned_minutes]  # every lesson but start-here
OBJECTIVE = re.compile(r"^- (.+?) \*\(([^)]*)\)\*$", re.MULTILINE)
OPTION = re.compile(r"^\s+- ([A-D])\) ", re.MULTILINE)


def quiz(nb: object) -> dict[str, str]:
    """The lesson's quiz: each numbered question's text (options included), by its number."""
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and "## Check your understanding" in c.source)  # type: ignore[attr-defined]
    body = cell.source.split("## Check your understanding", 1)[1]
    parts = re.split(r"^(\d+)\. ", body, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.mark.parametrize("lesson", TAUGHT, ids=lambda p: p.name[:2])
def test_a_lessons_core_fits_its_teaching_block(lesson: Path) -> None:
    """Before "Going deeper": at most 1,600 words and 250 code lines, no cell over 25 lines, read within the planned minutes."""
    core = teaching.measure(lesson)
    assert core.words <= teaching.MAX_WORDS, f"{core.words} words of prose in the core"
    assert core.code_lines <= teaching.MAX_CODE_LINES, f"{core.code_lines} code lines in the core"
    assert core.long_cells == (), f"core code cells over {teaching.MAX_CELL_LINES} lines: {core.long_cells}"
    assert core.planned_minutes is not None and core.minutes <= core.planned_minutes, (
        f"about {core.minutes:.0f} min to read ({teaching.WORDS_PER_MINUTE} words, {teaching.CODE_LINES_PER_MINUTE} "
        f"code lines a minute), planned {core.planned_minutes}"
    )


@pytest.mark.parametrize("lesson", TAUGHT, ids=lambda p: p.name[:2])
def test_a_lesson_asks_for_a_prediction_before_its_demo_and_reveals_it(lesson: Path) -> None:
    cells = teaching.core_cells(authoring.read(lesson))
    asked = [i for i, c in enumerate(cells) if c.cell_type == "code" and re.search(r"^my_prediction\s*=", c.source, re.MULTILINE)]
    assert asked, "no `my_prediction = ...` cell in the core"
    shown = [i for i, c in enumerate(cells) if c.cell_type == "code" and "reveal(my_prediction" in c.source]
    assert shown and min(shown) > min(asked), "the prediction is revealed after the demo, in the core"


@pytest.mark.parametrize("lesson", TAUGHT, ids=lambda p: p.name[:2])
def test_objectives_are_few_and_each_is_assessed_and_every_question_serves_one(lesson: Path) -> None:
    nb = authoring.read(lesson)
    objectives = OBJECTIVE.findall(nb.cells[0].source)
    assert 1 <= len(objectives) <= 4, f"{len(objectives)} objectives, each `- ... *(Q1, exercise N.M)*`"
    assert not [o for o, _ in objectives if re.match(r"(Watch|See)\b", o)], "objectives are things a learner does"
    questions = quiz(nb)
    exercises = set(progress.check_ids(authoring.read(authoring.find_solution(lesson.name[:2]))))
    cited: set[str] = set()
    for objective, assessed in objectives:
        named_q = set(re.findall(r"Q(\d+)", assessed))
        named_x = set(re.findall(r"\b(\d+\.\d+)\b", assessed)) | {
            f"{lesson.name[1]}.{n}"
            for a, b in re.findall(r"\b\d+\.(\d+)[–-](?:\d+\.)?(\d+)\b", assessed)
            for n in range(int(a), int(b) + 1)
        }
        assert named_q or named_x, f"nothing assesses: {objective}"
        assert named_q <= set(questions), f"{objective}: no question {sorted(named_q - set(questions))}"
        assert named_x <= exercises, f"{objective}: no exercise {sorted(named_x - exercises)}"
        cited |= named_q
    assert cited == set(questions), f"questions that serve no objective: {sorted(set(questions) - cited)}"


@pytest.mark.parametrize("lesson", TAUGHT, ids=lambda p: p.name[:2])
def test_the_quiz_is_multiple_choice(lesson: Path) -> None:
    """3 or 4 options per question, A) B) C) (D)): wrong options are the mistakes learners make (the answers name them)."""
    for number, text in quiz(authoring.read(lesson)).items():
        letters = OPTION.findall(text)
        assert letters in (list("ABC"), list("ABCD")), f"question {number}: options {letters}"
