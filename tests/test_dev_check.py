"""The repository's own invariants (rustlings' `dev check`): from a section's number you find all its parts.

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
from asynclab.course import authoring, checking, progress

ROOT = authoring.ROOT
PACKAGE = ROOT / "src" / "asynclab"
SECTIONS = [authoring.section(p) for p in authoring.solutions()]  # "01-async-handlers", ...
HEADING = re.compile(r"^## (?:Exercise )?(\d+\.\d+) · (.+)$", re.MULTILINE)
MINUTES = re.compile(r"\*\*Time\*\* \| (\d+) min \w+ · ([\d–]+) min exercises")


def one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"expected one {folder.relative_to(ROOT)}/{pattern}, found {[p.name for p in found]}"
    return found[0]


def test_there_are_nine_sections() -> None:
    assert [s[:2] for s in SECTIONS] == [f"{n:02d}" for n in range(1, 10)]


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


def test_the_syllabus_minutes_are_the_lessons_own() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for section in SECTIONS:
        lesson = authoring.read(ROOT / "notebooks" / authoring.named(section, "notebooks"))
        teaching, exercises = MINUTES.search(lesson.cells[0].source).groups()  # type: ignore[union-attr]
        row = next(line for line in readme.splitlines() if f"(notebooks/{section}.ipynb)" in line)
        assert row.rstrip(" |").endswith(f"| {teaching} + {exercises}"), f"README's minutes for {section}: {row}"
