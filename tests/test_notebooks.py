"""The notebooks as files: clean in git, one source for exercises and solutions, and checks that fail as handed out."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from asynclab import authoring, checking
from asynclab.notebook import kernel_client

ROOT = authoring.ROOT
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
CHECK_CELL = authoring.CHECK_CELL


def check_ids(nb: nbformat.NotebookNode) -> list[str]:
    return [m for cell in nb.cells if cell.cell_type == "code" for m in CHECK_CELL.findall(cell.source)]


@pytest.mark.parametrize("path", authoring.notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_clean(path: Path) -> None:
    """No outputs, execution counts or per-machine metadata in git: `python -m asynclab build` fixes it."""
    assert path.read_text(encoding="utf-8") == authoring.dumps(authoring.clean(authoring.read(path)))


def test_every_section_has_lesson_exercise_and_solution() -> None:
    lessons = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")} - {"00-start-here.ipynb"}
    assert lessons, "no lessons found"
    assert {p.name for p in SOLUTIONS} == lessons
    assert {p.name for p in EXERCISES} == lessons


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercise_is_generated_from_its_solution(solution: Path) -> None:
    """Single source: the exercise equals the solution outside the marked regions."""
    for relative, expected in authoring.handed_out(solution).items():
        actual = (ROOT / "exercises" / relative).read_text(encoding="utf-8")
        assert actual == expected, f"exercises/{relative} is stale: run `python -m asynclab build`"
    sources = [c.source for c in authoring.read(solution).cells]
    sources += [m.read_text(encoding="utf-8") for m in authoring.companions(solution)]
    assert any(authoring.has_markers(source) for source in sources), "no solution region"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_each_section_has_at_least_two_checked_exercises(solution: Path) -> None:
    ids = check_ids(authoring.read(solution))
    assert len(ids) >= 2 and len(set(ids)) == len(ids)
    section = str(int(solution.name[:2]))
    assert all(i.split(".")[0] == section for i in ids)


def test_every_registered_exercise_is_in_a_solution() -> None:
    in_solutions = {i for s in SOLUTIONS for i in check_ids(authoring.read(s))}
    registered = {e.id for e in checking.all_exercises()} - {"0.1"}
    assert registered == in_solutions


def test_an_exception_group_fails_a_notebook_cell() -> None:
    """IPython 9 alone lets an escaping ExceptionGroup pass silently; importing asynclab makes it fail the cell."""
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import anyio\nimport asynclab"),
        nbformat.v4.new_code_cell(
            "async with anyio.create_task_group() as tg:\n    tg.start_soon(anyio.sleep, 0.01)\n    assert False, 'a claim'"
        ),
    ]
    with pytest.raises(CellExecutionError, match="a claim"), kernel_client(nb, ROOT, timeout=30) as client:
        client.execute()


LESSONS = sorted((ROOT / "notebooks").glob("0[1-9]-*.ipynb"))


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.name)
def test_lesson_has_the_episode_shape(lesson: Path) -> None:
    """Questions, objectives and time at the top; the guide compared with measurements; key points,
    questions with hidden answers, and a final proof that nothing is left running."""
    nb = authoring.read(lesson)
    first = nb.cells[0].source
    assert all(f"**{word}**" in first for word in ("Questions", "Objectives", "Time")), "header incomplete"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "| The guide says | We measured" in text
    assert "## Key points" in text and "## Check your understanding" in text
    assert nb.cells[-1].cell_type == "code" and "nothing_left_running()" in nb.cells[-1].source


ANSWERS_OPEN = "<details><summary>Answers</summary>\n\n"
ANSWERS_CLOSE = "\n\n</details>"
NUMBERED = re.compile(r"^(\d+)\. ", re.MULTILINE)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.name)
def test_quiz_answers_stay_hidden_after_run_all(lesson: Path) -> None:
    """The answers sit in a collapsed markdown `<details>` block right after the questions, one per
    question, so Run All prints none of them; a code cell (hidden or not) that prints them is refused."""
    nb = authoring.read(lesson)
    quiz = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Check your understanding" in c.source]
    assert len(quiz) == 1, "one '## Check your understanding' cell"
    questions = NUMBERED.findall(nb.cells[quiz[0]].source.split("## Check your understanding", 1)[1])
    assert questions, "no numbered questions"
    answers = nb.cells[quiz[0] + 1]
    assert answers.cell_type == "markdown", "the answers must be a markdown <details> block, not a code cell"
    source = answers.source
    assert source.startswith(ANSWERS_OPEN) and source.endswith(ANSWERS_CLOSE), (
        "answers must be exactly '<details><summary>Answers</summary>', a blank line, the list, a blank line, '</details>'"
    )
    assert source.count("<details") == 1 and " open" not in source.split("\n", 1)[0], "answers start collapsed"
    assert NUMBERED.findall(source) == questions, "one numbered answer per question, in the same order"
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not cell.metadata.get("jupyter", {}).get("source_hidden"), "old form: a hidden code cell"
        assert not re.search(r"^\s*(print\(\s*\"\"\"|# Answers)", cell.source, re.MULTILINE), "old form: answers printed by code"
