"""Hints that teach, and exercise notebooks that show every exercise's status after Run All.

- The first ``hint()`` after a failed check adds something the failure message did not say, and
  each later hint says something the earlier ones did not (every registered exercise).
- Every check cell of a generated exercise notebook is tagged ``raises-exception``: JupyterLab's
  Run All (and nbclient, which honours the same tag) goes on past a failed check, so every
  exercise shows its status, while the cell still fails for ``progress`` and the tests.
- Each handed-out notebook runs here, once for the whole suite: every check fails as handed out
  with one short message, and ``progress`` reads the run as 0 solved.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import nbformat
import pytest
from fastapi import FastAPI

from asynclab.course import authoring, checking, progress
from asynclab.course.notebook import kernel_client

ROOT = authoring.ROOT
EXERCISE_NOTEBOOKS = sorted((ROOT / "exercises").glob("*.ipynb"))
HINT_LINE = re.compile(r"💡 Hint \d+ of \d+ for exercise (\d+\.\d+): (.*)", re.DOTALL)


def clauses(text: str) -> list[str]:
    """The sentences and clauses of ``text``, normalised: lower case, single spaces, no end punctuation."""
    parts = re.split(r"(?<=[.!?:;])\s+|\n", text)
    return [c for c in (re.sub(r"\s+", " ", p).strip(" .:;!?").lower() for p in parts) if c]


def repeats(text: str, said: str) -> bool:
    """``text`` says nothing that ``said`` did not: each of its clauses appears in ``said``."""
    heard = re.sub(r"\s+", " ", said).lower()
    return all(c in heard for c in clauses(text))


def test_repeats_means_every_clause_was_already_said() -> None:
    message = "❌ not yet · Exercise 1.1 (t): 8 of 8 calls blocked.\n💡 Hint 1 of 3: It blocks: use a thread."
    assert repeats("It blocks: use a thread.", message) and repeats("it blocks", message)
    assert not repeats("It blocks: await its twin.", message)


@pytest.mark.parametrize("exercise", checking.all_exercises(), ids=lambda ex: ex.id)
def test_each_hint_says_something_the_earlier_ones_did_not(exercise: checking.Exercise) -> None:
    assert len(exercise.hints) >= 2
    for number, text in enumerate(exercise.hints):
        earlier = "\n".join(exercise.hints[:number])
        assert not repeats(text, earlier), f"hint {number + 1} of {exercise.id} repeats an earlier hint"


def test_the_first_hint_after_a_failure_goes_on_from_the_hint_the_message_showed() -> None:
    def says_hello_as_text() -> FastAPI:  # the start-here notebook's handed-out 0.1
        app = FastAPI()
        app.get("/hello")(lambda: "hello")
        return app

    exercise = checking.get("0.1")
    exercise.hints_given = 0
    with pytest.raises(checking.CheckFailed) as info:
        checking.run("0.1", says_hello_as_text)
    message = str(info.value)
    assert message.startswith("❌ not yet · Exercise 0.1 (Say hello): GET /hello answered")
    assert f"💡 Hint 1 of 3: {exercise.hints[0]}" in message
    first = checking.next_hint("0.1")
    assert first.startswith("💡 Hint 2 of 3 for exercise 0.1: ") and not repeats(HINT_LINE.match(first)[2], message)


def test_hints_are_one_sequence_that_goes_on_from_what_the_check_printed() -> None:
    """After ``reset`` and Run All in the same kernel, ``hint()`` follows the check's hint, not an old count."""

    def says_hello_as_text() -> FastAPI:
        app = FastAPI()
        app.get("/hello")(lambda: "hello")
        return app

    def says_hello() -> FastAPI:
        app = FastAPI()
        app.get("/hello")(lambda: {"message": "hello"})
        return app

    exercise = checking.get("0.1")
    for _ in range(len(exercise.hints) + 1):  # the learner asked for every hint before starting over
        checking.next_hint("0.1")
    with pytest.raises(checking.CheckFailed) as info:
        checking.run("0.1", says_hello_as_text)
    assert f"Hint 1 of {len(exercise.hints)}" in str(info.value)
    assert checking.next_hint("0.1").startswith(f"💡 Hint 2 of {len(exercise.hints)} for exercise 0.1")
    assert checking.run("0.1", says_hello).startswith("✅ passed")
    assert checking.next_hint("0.1").startswith(f"💡 Hint 1 of {len(exercise.hints)} for exercise 0.1"), "a pass starts over"


def test_the_same_failure_twice_says_the_app_did_not_change() -> None:
    exercise = checking.get("0.1")
    exercise.last_observed = None
    for _ in range(2):
        with pytest.raises(checking.CheckFailed) as info:
            checking.run("0.1", FastAPI)
    assert str(info.value).count(checking.SAME_AS_BEFORE) == 1


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_check_cells_are_tagged_so_run_all_goes_on(path: Path) -> None:
    nb = authoring.read(path)
    cells = [c for c in nb.cells if c.cell_type == "code" and progress.CHECK_CELL.search(c.source)]
    assert cells and all("raises-exception" in c.metadata.get("tags", []) for c in cells)
    others = [c for c in nb.cells if c.cell_type == "code" and c not in cells]
    assert not [c.source[:40] for c in others if "raises-exception" in c.metadata.get("tags", [])]


def test_solutions_carry_no_such_tag_so_nbval_stays_strict() -> None:
    """nbval lets a tagged cell raise: in solutions/ every check must pass, so only exercises are tagged."""
    tagged = [
        path.name
        for path in authoring.solutions()
        for cell in authoring.read(path).cells
        if authoring.RUN_ALL_GOES_ON in cell.metadata.get("tags", [])
    ]
    assert tagged == []


#: Words a handed-out check's message must not contain: for "find it" exercises, the message tells the
#: symptom, not the place; for 2.2, what a learner can observe, not the cause.
NOT_SAID = {
    "1.2": ("/rates", "exchange_rates", "latest_rates", "rates"),
    "2.2": ("coroutine", "await"),
    "3.3": ("CancelledError", "BaseException", "except", "retr"),
    "4.2": ("lifespan", "LifespanManager", "manager.app", "startup"),
    "5.4": ("ValueError", "handler", "invalid_request", "exception"),
    "6.3": ("request.state", "lifespan", "RequestContext", "context"),
    "7.3": ("worker", "known", "memory", "cache"),
}


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_run_all_fails_every_check_with_a_short_message_and_the_first_hint_is_new(path: Path) -> None:
    """Run the handed-out notebook as JupyterLab's Run All would (errors stop it, except in tagged cells).

    This is the suite's one run of each handed-out notebook. It proves: every cell runs; every check
    fails with one short "❌ not yet" message; ``progress`` reads each as not yet solved, with no
    trouble; and, after each check cell, a learner's ``hint("N.M")`` cell prints a hint that adds
    something to the failure message shown just before, in the same kernel.
    """
    nb = authoring.read(path)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        found = progress.CHECK_CELL.search(cell.source) if cell.cell_type == "code" else None
        if found:
            cells.append(nbformat.v4.new_code_cell(f'hint("{found[1]}")'))
    nb.cells = cells
    with kernel_client(nb, path.parent, timeout=90, allow_errors=False) as client:
        client.execute()  # raises CellExecutionError at the first failing cell that is not tagged
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every cell ran"
    plan = progress.expected()[path.name]
    assert progress.read_executed(nb, path.name, plan) is None
    assert [(r.id, r.solved, r.check_failed, r.short) for r in plan] == [(r.id, False, True, True) for r in plan]
    for result in plan:
        assert not [word for word in NOT_SAID.get(result.id, ()) if word in result.seen], result.seen
    strays = [o.text for c in code for o in c.outputs if o.output_type == "stream" and "never awaited" in o.text]
    assert not strays, f"a check's never-awaited coroutine was printed under a cell: {strays}"
    for check_cell, hint_cell in itertools.pairwise(code):
        found = progress.CHECK_CELL.search(check_cell.source)
        if not found:
            continue
        errors = [o for o in check_cell.outputs if o.output_type == "error"]
        assert [e.ename for e in errors] == ["CheckFailed"], f"{found[1]}: the check fails as handed out"
        message = errors[0].evalue
        assert message.startswith(f"❌ not yet · Exercise {found[1]} ")
        printed = "".join(o.get("text", "") for o in hint_cell.outputs if o.output_type == "stream").strip()
        said = HINT_LINE.match(printed)
        assert said and said[1] == found[1], printed
        assert not repeats(said[2], message), f"{found[1]}: the first hint repeats the failure message\n{message}\n{printed}"


def test_every_exercise_with_words_it_must_not_say_is_in_a_handed_out_notebook() -> None:
    ids = {r.id for results in progress.expected().values() for r in results}
    assert set(NOT_SAID) <= ids
