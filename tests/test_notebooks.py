"""The notebooks as files: clean in git, one source for exercises and solutions, and checks that fail as handed out."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from asynclab.course import authoring, checking, facts
from asynclab.course.notebook import kernel_client

ROOT = authoring.ROOT
SOLUTIONS = authoring.solutions()
CHECK_CELL = authoring.CHECK_CELL


def check_ids(nb: nbformat.NotebookNode) -> list[str]:
    return [m for cell in nb.cells if cell.cell_type == "code" for m in CHECK_CELL.findall(cell.source)]


@pytest.mark.parametrize("path", authoring.notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_clean(path: Path) -> None:
    """No outputs, execution counts or per-machine metadata in git: `python -m asynclab build` fixes it."""
    assert path.read_text(encoding="utf-8") == authoring.dumps(authoring.clean(authoring.read(path)))


@pytest.mark.parametrize("path", authoring.notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_nbformat_4_5_with_an_id_on_every_cell(path: Path) -> None:
    """What JupyterLab writes: a notebook stored so opens and saves without being converted or given new ids."""
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert (stored["nbformat"], stored["nbformat_minor"]) == (4, 5)
    ids = [cell.get("id") for cell in stored["cells"]]
    assert all(isinstance(i, str) and authoring.CELL_ID.fullmatch(i) for i in ids), f"a cell without a valid id: {ids}"
    assert len(set(ids)) == len(ids), f"ids repeated: {sorted(i for i in ids if ids.count(i) > 1)}"
    nbformat.validate(nbformat.reads(path.read_text(encoding="utf-8"), as_version=nbformat.NO_CONVERT))


def test_build_would_change_nothing(tmp_path: Path) -> None:
    """`python -m asynclab build`, run on a copy of the course as committed, rewrites no file: the notebooks
    are clean, the exercises are made from the solutions, and every copied fact equals its source (the
    exercise titles in the solutions and the instructor's guide, the lesson titles and minutes in the
    README's syllabus and the solutions, the syllabus's words, the template's copy of the watchdog)."""
    for folder in ("notebooks", "solutions", "exercises"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns(".*", "*.bak", "__pycache__"))
    copied = [path for pair in authoring.COPIED.items() for path in pair]
    for relative in [*copied, *facts.WRITTEN, facts.SYLLABUS]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    changed = authoring.build(tmp_path)
    assert changed == [], f"run `python -m asynclab build`: it rewrites {[str(p.relative_to(tmp_path)) for p in changed]}"
    assert facts.unsourced(tmp_path) == [], "`python -m asynclab build` names what it cannot write"


def test_build_writes_each_copy_from_its_source(tmp_path: Path) -> None:
    """A stale title, heading or syllabus row is rewritten; backticks around words of a title are kept."""
    solution = authoring.read(ROOT / "solutions" / "04-solutions-lifespan.ipynb")
    for cell in solution.cells:
        if cell.cell_type == "markdown":
            cell.source = (
                cell.source.replace("## Exercise 4.2 · Find why", "## 4.2 · An old title:")
                .replace("# Exercises · 4 · Startup and shutdown with lifespan", "# Exercises · 4 ·")
                .replace("Two exercises.", "Three exercises.")
            )
    facts.retitle(solution, facts.exercise_titles(), "Startup and shutdown with lifespan")
    markdown = "\n".join(c.source for c in solution.cells if c.cell_type == "markdown")
    assert "## Exercise 4.1 · Migrate from `on_event` to a lifespan" in markdown  # the author's backticks stay
    assert "## Exercise 4.2 · Find why the tests fail and production works" in markdown
    assert markdown.startswith("# Exercises · 4 · Startup and shutdown with lifespan\n") and "Two exercises." in markdown

    guide = facts.retitle_guide("**1.1**\n- a mistake\n\n**1.2 Old words** (find it)\n", facts.exercise_titles())
    assert guide == "**1.1 Unblock the weather route**\n- a mistake\n\n**1.2 Find and fix the blocking route** (find it)\n"

    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".*"))
    (tmp_path / facts.SYLLABUS).parent.mkdir()
    shutil.copy(ROOT / facts.SYLLABUS, tmp_path / facts.SYLLABUS)
    readme = "# Course\n\n<!-- syllabus -->\n| an old row |\n<!-- /syllabus -->\n\nMore.\n"
    written = facts.write_syllabus(readme, tmp_path)
    assert "| an old row |" not in written and written.endswith("<!-- /syllabus -->\n\nMore.\n")
    assert "| 6 | [Request context and isolation](notebooks/06-request-isolation.ipynb) |" in written
    assert len(re.findall(r"^\| \d+ \| \[", written, re.MULTILINE)) == len(authoring.lessons(tmp_path))  # a row per lesson


def test_cell_ids_are_kept_given_once_and_unique() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(text) for text in ("kept", "none", "repeated", "invalid")]
    nb.cells[0].id, nb.cells[2].id, nb.cells[3].id = "kept-id", "kept-id", "not valid!"
    del nb.cells[1]["id"]
    first = [c.id for c in authoring.clean(nb).cells]
    assert first[0] == "kept-id" and len(set(first)) == 4
    assert all(authoring.CELL_ID.fullmatch(i) for i in first)
    assert [c.id for c in authoring.clean(nb).cells] == first, "once given, an id stays"
    again = nbformat.reads(authoring.dumps(nb), as_version=4)
    assert [c.id for c in again.cells] == first and again.nbformat_minor == 5


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_an_exercise_cell_keeps_its_solution_cells_id(solution: Path) -> None:
    solved = authoring.read(solution)
    exercise = authoring.read(ROOT / "exercises" / authoring.exercise_name(solution))
    kept = [c.id for c in solved.cells if authoring.SOLUTION_ONLY not in c.metadata.get("tags", [])]
    assert [c.id for c in exercise.cells] == kept


def test_a_clean_notebook_opens_unchanged_in_the_course_jupyterlab(tmp_path: Path) -> None:
    """JupyterLab marks a notebook as changed when a starting kernel's kernelspec or language_info differs
    from the stored one. The stored kernelspec is the one the kernel has; the course's server fills
    in language_info (it names the Python version) just as the kernel reports it."""
    from jupyter_client.kernelspec import KernelSpecManager

    from asynclab.course import labserver

    spec = KernelSpecManager().get_kernel_spec(authoring.KERNELSPEC["name"])
    recorded = {"name": authoring.KERNELSPEC["name"], "display_name": spec.display_name, "language": spec.language}
    assert recorded == authoring.KERNELSPEC  # what JupyterLab records once the kernel has started

    nb = authoring.clean(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]))
    sent = labserver.as_the_kernel_reports(copy.deepcopy(nb.metadata))
    with kernel_client(nb, tmp_path, timeout=60) as client:
        client.execute()  # nbclient records the kernel's language_info, as JupyterLab does
    assert sent["language_info"] == nb.metadata["language_info"]
    assert sent["kernelspec"] == authoring.KERNELSPEC
    learners = {"kernelspec": authoring.KERNELSPEC, "language_info": {"name": "python", "version": "3.11.0"}}
    assert labserver.as_the_kernel_reports(copy.deepcopy(learners)) == learners  # a saved notebook is sent as it is


def test_every_section_has_a_lesson_an_exercise_and_a_solution_told_apart_by_name() -> None:
    """JupyterLab's tab shows a file's name alone, cut short when tabs are narrow: the three names differ early."""
    sections = {authoring.section(p) for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")} - {"00-start-here"}
    assert sections, "no lessons found"
    for role in authoring.ROLES:
        found = {p.name for p in (ROOT / role).glob("*.ipynb")} - {"00-start-here.ipynb"}
        assert found == {authoring.named(s, role) for s in sections}, f"{role}/ does not hold one notebook per section"
    for name in sections:
        three = [authoring.named(name, role) for role in authoring.ROLES]
        assert len({n[:12] for n in three}) == 3, f"{three} look alike in a narrow tab"
        assert {authoring.section(n) for n in three} == {name}


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
    number = str(int(solution.name[:2]))
    assert all(i.split(".")[0] == number for i in ids)


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


LESSONS = [p for p in authoring.lessons() if p.name[:2] != "00"]  # every lesson but start-here


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.name)
def test_lesson_has_the_episode_shape(lesson: Path) -> None:
    """Questions, objectives and time at the top; the guide compared with measurements; key points,
    questions with hidden answers, and a final proof that nothing is left running."""
    nb = authoring.read(lesson)
    first = nb.cells[0].source
    assert all(f"**{word}:**" in first for word in ("Questions", "Objectives", "Time")), "header incomplete"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "| The guide says | We measured" in text
    assert "## Key points" in text and "## Check your understanding" in text
    assert nb.cells[-1].cell_type == "code" and "nothing_left_running()" in nb.cells[-1].source


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.name)
def test_lesson_sends_the_learner_to_its_own_exercise(lesson: Path) -> None:
    """The lesson's last word names its exercise notebook, by a link that resolves (not the lesson's own name)."""
    text = "\n".join(c.source for c in authoring.read(lesson).cells if c.cell_type == "markdown")
    links = re.findall(r"\]\((\.\./exercises/[^)#\s]+\.ipynb)\)", text)
    assert links == [f"../exercises/{authoring.exercise_name(lesson)}"]
    assert (lesson.parent / links[0]).is_file()
    named = set(re.findall(r"\b(?:exercises|solutions)/\d\d-[\w-]+\.ipynb", text))
    assert all((ROOT / n).is_file() for n in named), f"{sorted(named)} name a notebook that does not exist"


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
