"""The progress command, the reset command, and proof that every exercise fails as handed out."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from asynclab import __main__ as cli
from asynclab import authoring, checking, progress

ROOT = authoring.ROOT
EXERCISE_IDS = [r.id for results in progress.expected().values() for r in results]


def test_a_fresh_clone_has_0_solved_and_every_check_fails_with_a_short_message() -> None:
    """Run the exercises exactly as handed out: every check runs and says ❌, and nothing else breaks."""
    survey = progress.survey(ROOT / "exercises")
    assert [r.id for r in survey.results] == EXERCISE_IDS and len(EXERCISE_IDS) >= 14
    assert survey.troubles == []
    not_failing = {r.id: r.seen for r in survey.results if not r.check_failed}
    assert not_failing == {}, "these checks did not fail with CheckFailed as handed out"
    assert [r.id for r in survey.results if not r.short] == []
    text = progress.report(survey)
    assert f"0 of {len(EXERCISE_IDS)} solved" in text
    first = survey.results[0]
    assert f"Next: exercise {first.id}" in text and f'hint("{first.id}")' in text
    assert checking.get(first.id).hints[0] in text
    assert text.count("❌ not yet") == len(EXERCISE_IDS) and "✅" not in text  # a word beside every mark
    seen = {r.id: r.seen for r in survey.results}
    assert "/rates" not in seen["1.2"] and "exchange_rates" not in seen["1.2"]  # "find it": the symptom, not the place
    assert "coroutine" not in seen["2.2"] and "await" not in seen["2.2"]


def test_the_command_counts_every_exercise_solved_when_the_solutions_are_copied_over(tmp_path: Path) -> None:
    learner = tmp_path / "exercises"
    authoring.write_solved(learner)
    first = authoring.solutions()[0]
    old_name = learner / f"{authoring.section(first)}.ipynb"  # one file still under the name it had before the rename
    (learner / authoring.exercise_name(first)).replace(old_name)
    done = subprocess.run(
        [sys.executable, "-m", "asynclab", "progress", "--folder", str(learner)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(EXERCISE_IDS)} of {len(EXERCISE_IDS)} solved" in done.stdout, done.stdout
    assert "❌" not in done.stdout and "did not run cleanly" not in done.stdout
    assert done.stdout.count("✅ passed") == len(EXERCISE_IDS)
    assert f"your {old_name.name} is now {authoring.exercise_name(first)}" in done.stdout
    assert not old_name.exists()
    assert f"{len(progress.expected())}/{len(progress.expected())}" in done.stderr  # the progress bar reached the end


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def test_broken_notebooks_are_named_and_the_others_still_run(tmp_path: Path) -> None:
    """A syntax error, a kernel that dies and an endless loop: each is reported, and a good notebook still counts.

    The broken cells come first or right after a cheap one. The cell limit is 15 s, not the 3 s
    that would make the test quicker: on a loaded 2-core machine the good notebook's first import
    has taken more than 3 s, and then the slow import, not the endless loop, was what got reported."""
    plan = list(progress.expected())
    syntax, crash, endless, good = plan[0], plan[1], plan[3], plan[2]
    first_check = {name: progress.expected()[name][0].id for name in plan}
    broken = {
        syntax: _notebook(
            "def build_app(:\n    pass", "from asynclab import check", f'check("{first_check[syntax]}", build_app)'
        ),
        crash: _notebook("import os", "os._exit(3)", f'check("{first_check[crash]}", None)'),
        endless: _notebook("while True:\n    pass", "from asynclab import check", f'check("{first_check[endless]}", None)'),
    }
    for name, nb in broken.items():
        nbformat.write(nb, tmp_path / name)
    shutil.copy(authoring.find_solution(good), tmp_path / good)
    survey = progress.survey(tmp_path, cell_limit=15)
    trouble = {t.notebook: (t.cell, t.what) for t in survey.troubles}
    assert trouble[syntax][0] == 1 and trouble[syntax][1].startswith("it raised SyntaxError: invalid syntax")
    assert trouble[crash] == (2, "the kernel died while running it (did the code exit Python or crash it?)")
    assert trouble[endless] == (1, "it ran for more than 15 s and was interrupted (an endless loop?)")
    missing = set(plan) - {syntax, crash, endless, good}
    assert {t.notebook for t in survey.troubles} == {syntax, crash, endless} | missing
    assert all(trouble[name] == (0, "the notebook is missing") for name in missing)
    by_id = {r.id: r for r in survey.results}
    assert by_id[first_check[syntax]].seen.startswith("could not be checked: cell 1 failed first (it raised SyntaxError")
    assert by_id[first_check[crash]].seen == "could not be checked: the kernel died in cell 2"
    assert not by_id[first_check[endless]].solved
    assert all(r.solved for r in survey.results if r.notebook == good)
    text = progress.report(survey)
    assert f"⚠️ trouble: {crash}: cell 2: the kernel died" in text


def test_reset_gives_the_handed_out_notebook_back_and_keeps_the_learners(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    solution = authoring.find_solution("3.2")
    assert authoring.find_solution("03") == authoring.find_solution("3") == solution
    with pytest.raises(LookupError, match="no exercise notebook matches"):
        authoring.find_solution("42")
    mine = tmp_path / authoring.exercise_name(solution)
    mine.write_text("my work", encoding="utf-8")
    command = ["reset", "3", "--folder", str(tmp_path)]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: nobody to ask
    assert cli.main(command) == 1 and "add --yes" in capsys.readouterr().err
    assert mine.read_text(encoding="utf-8") == "my work"
    assert cli.main([*command, "--yes"]) == 0
    assert mine.read_text(encoding="utf-8") == (ROOT / "exercises" / mine.name).read_text(encoding="utf-8")
    assert (tmp_path / f"{mine.name}.bak").read_text(encoding="utf-8") == "my work"
    capsys.readouterr()
    assert cli.main([*command, "--yes"]) == 0 and "already as handed out" in capsys.readouterr().out


def test_reset_of_the_capstone_restores_its_service_file_too(tmp_path: Path) -> None:
    solution = authoring.find_solution("8")
    folder = authoring.section(solution)  # the module folder is named for the section, like the lesson
    (tmp_path / folder).mkdir()
    service = tmp_path / folder / "orders_service.py"
    service.write_text("my fixes", encoding="utf-8")
    written = authoring.reset(solution, tmp_path)
    assert service in written and (tmp_path / authoring.exercise_name(solution)) in written
    assert service.read_text(encoding="utf-8") == (ROOT / "exercises" / folder / "orders_service.py").read_text(encoding="utf-8")
    assert service.with_name("orders_service.py.bak").read_text(encoding="utf-8") == "my fixes"


def test_an_answer_that_exits_or_leaves_a_thread_running_does_not_end_the_kernel(tmp_path: Path) -> None:
    """os._exit inside the learner's handler is reported by the check; the kernel lives on to pass the next check."""
    name = next(n for n, results in progress.expected().items() if [r.id for r in results][:2] == ["1.1", "1.2"])
    nb = _notebook(
        "import os, threading\nfrom fastapi import FastAPI\nfrom asynclab import check",
        "def build_app(weather):\n"
        "    app = FastAPI()\n"
        "    threading.Thread(target=threading.Event().wait).start()  # never ends, not a daemon\n"
        "\n"
        "    @app.get('/weather/{city}')\n"
        "    async def forecast(city: str) -> dict:\n"
        "        os._exit(7)\n"
        "\n"
        "    return app",
        'check("1.1", build_app)',
        "def build_shop(shop):\n"
        "    app = FastAPI()\n"
        "    app.get('/health')(lambda: {'ok': True})\n"
        "\n"
        "    @app.get('/products/{pid}')\n"
        "    async def product(pid: int) -> dict:\n"
        "        return await shop.product(pid)\n"
        "\n"
        "    @app.get('/stock/{pid}')\n"
        "    async def stock(pid: int) -> dict:\n"
        "        return {'pid': pid, 'units': await shop.stock(pid)}\n"
        "\n"
        "    app.get('/rates')(lambda: shop.exchange_rates())\n"
        "\n"
        "    @app.get('/invoices/{order_id}')\n"
        "    def invoice(order_id: int) -> dict:\n"
        "        return {'file': shop.render_invoice(order_id)}\n"
        "\n"
        "    return app",
        'check("1.2", build_shop)',
    )
    nbformat.write(nb, tmp_path / name)
    survey = progress.survey(tmp_path)
    assert [t for t in survey.troubles if t.notebook == name] == []
    by_id = {r.id: r for r in survey.results}
    assert by_id["1.1"].check_failed and "your code exited the process (status 7) in forecast()" in by_id["1.1"].seen
    assert by_id["1.2"].solved
