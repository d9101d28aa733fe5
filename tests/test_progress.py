"""The progress command, the reset command, and proof that every exercise fails as handed out."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from asynclab import __main__ as cli
from asynclab.course import authoring, checking, progress, progress_table, progress_watch
from tests.test_report import validate

ROOT = authoring.ROOT
EXERCISE_IDS = [r.id for results in progress.expected().values() for r in results]


def test_a_fresh_clone_has_every_exercise_in_a_handed_out_notebook() -> None:
    """Which notebook holds which check: the handed-out notebooks name the exercises the solutions define.

    Each handed-out notebook runs once in the suite, in tests/test_hints.py: every check fails
    there with a short message, and progress reads it as not yet solved (``read_executed``)."""
    handed_out = {name: progress.check_ids(authoring.read(ROOT / "exercises" / name)) for name in progress.expected()}
    assert [i for ids in handed_out.values() for i in ids] == EXERCISE_IDS and len(EXERCISE_IDS) >= 14


def test_the_report_of_a_fresh_clone_says_0_solved_and_points_at_the_first_exercise() -> None:
    results = [r for rs in progress.expected().values() for r in rs]
    for r in results:
        r.seen, r.check_failed = f"what check {r.id} saw", True
    text = progress_table.report(progress.Survey(ROOT / "exercises", results))
    assert f"0 of {len(EXERCISE_IDS)} solved" in text
    first = results[0]
    assert f"Next: exercise {first.id}" in text and f'hint("{first.id}")' in text and "what check" in text
    assert checking.get(first.id).hints[0] in text
    assert text.count("❌ not yet") == len(EXERCISE_IDS) and "✅" not in text  # a word beside every mark


def _progress_command(folder: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "asynclab", "progress", "--folder", str(folder)]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_the_command_counts_every_exercise_solved_when_the_solutions_are_copied_over(tmp_path: Path) -> None:
    """Every solution notebook's one run in the suite: every exercise solved, and no cell raised.

    Then runs it twice more: with nothing changed it runs no notebook; with one notebook changed, that one only."""
    learner = tmp_path / "exercises"
    authoring.write_solved(learner)
    done = _progress_command(learner)
    assert done.returncode == 0, done.stderr
    assert f"{len(EXERCISE_IDS)} of {len(EXERCISE_IDS)} solved" in done.stdout, done.stdout
    assert "❌" not in done.stdout and "did not run cleanly" not in done.stdout
    assert done.stdout.count("✅ passed") == len(EXERCISE_IDS)
    assert f"{len(progress.expected())}/{len(progress.expected())}" in done.stderr  # the progress bar reached the end
    table = [line for line in done.stdout.splitlines() if line.startswith("    ")]  # one line per exercise
    assert len(table) == len(EXERCISE_IDS)
    assert "unchanged since the last run" not in done.stdout
    names = list(progress.expected())
    again = _progress_command(learner)
    assert again.returncode == 0, again.stderr
    assert [line for line in again.stdout.splitlines() if line.startswith("    ")] == table
    assert (
        f"{len(names)} notebooks unchanged since the last run (results reused), 0 run now; --all runs every one" in again.stdout
    )
    changed = next(name for name in names if name.startswith("04"))  # the quickest notebook to run again
    nb = nbformat.read(learner / changed, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.source = "# I changed this notebook\n" + cell.source
    nbformat.write(nb, learner / changed)
    third = _progress_command(learner)
    assert third.returncode == 0, third.stderr
    assert f"{len(names) - 1} notebooks unchanged since the last run (results reused), 1 run now" in third.stdout
    assert f"{len(EXERCISE_IDS)} of {len(EXERCISE_IDS)} solved" in third.stdout
    assert all((f"{name} (unchanged)" in third.stderr) == (name != changed) for name in names), third.stderr


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
    survey = progress.survey(tmp_path, cell_limit=15, cache=True)
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
    text = progress_table.report(survey)
    assert f"⚠️ trouble: {crash}: cell 2: the kernel died" in text
    # The learner's syntax error is the same next time; a dead kernel or an endless loop is run again.
    assert set(progress.progress_cache.load(tmp_path).notebooks) == {syntax, good}


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
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # no JupyterLab running (see test_jupyterlab)
    assert cli.main(command) == 1 and "add --yes" in capsys.readouterr().err
    assert mine.read_text(encoding="utf-8") == "my work"
    assert cli.main([*command, "--yes"]) == 0
    said = capsys.readouterr().out
    assert f"If {mine.name} is open in JupyterLab, its tab still shows your old version." in said
    assert "choose File › Reload Notebook from Disk" in said and 'says "File Changed", choose Revert' in said
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


# --------------------------------------------------------------------------- the cache: only what changed runs again


def _plain_notebooks(folder: Path) -> dict[str, list[str]]:
    """A learner's folder of small, readable notebooks under the course's names, with the capstone's and 09's module files."""
    plan = {name: [r.id for r in results] for name, results in progress.expected().items()}
    for name in plan:
        nbformat.write(_notebook(f"# {name}"), folder / name)
    for solution in authoring.solutions():
        for module in authoring.companions(solution):
            target = folder / module.relative_to(solution.parent)
            target.parent.mkdir(exist_ok=True)
            target.write_text("# handed out\n", encoding="utf-8")
    return plan


class FakeRuns:
    """Stands in for running a notebook: records which ran; a notebook in ``solved`` passes, one in ``stopped`` times out,
    and in one in ``slow_check`` the check itself ran out of time."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.solved: set[str] = set()
        self.stopped: set[str] = set()
        self.slow_check: set[str] = set()

    async def __call__(
        self, path: Path, plan: list[progress.Result], troubles: list[progress.Trouble], cell_limit: float
    ) -> bool:
        self.ran.append(path.name)
        for result in plan:
            result.solved = path.name in self.solved
            result.seen = "" if result.solved else f"the fake check saw {path.name}"
            result.check_failed = not result.solved
        if path.name in self.slow_check:
            plan[0].seen = "the check did not finish within 10 s: something in your code blocks for ever or waits on itself."
        if path.name in self.stopped:
            troubles.append(
                progress.Trouble(path.name, 2, f"it ran for more than {cell_limit:.0f} s and was interrupted (an endless loop?)")
            )
            return False
        return True

    def survey(self, folder: Path, **options: object) -> list[str]:
        """One cached progress run; the notebooks it executed, in plan order."""
        self.ran = []
        progress.survey(folder, cache=True, **options)  # type: ignore[arg-type]
        return sorted(self.ran)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRuns:
    runs = FakeRuns()
    monkeypatch.setattr(progress, "_run_notebook", runs)
    return runs


def test_a_second_run_reuses_every_unchanged_notebook_and_runs_only_the_one_changed(tmp_path: Path, fake: FakeRuns) -> None:
    plan = _plain_notebooks(tmp_path)
    first = min(plan)
    fake.solved = {first}
    assert fake.survey(tmp_path) == sorted(plan)
    assert fake.survey(tmp_path) == []
    again = progress.survey(tmp_path, cache=True)
    assert fake.ran == [] and set(again.reused) == set(plan) and again.ran == {}
    assert again.solved == len(plan[first]) and all(r.solved == (r.notebook == first) for r in again.results)
    assert (
        f"{len(plan)} notebooks unchanged since the last run (results reused), 0 run now; --all runs every one"
        in progress_table.report(again)
    )
    nbformat.write(_notebook("# a comment", "x = 1"), tmp_path / first)
    fake.solved = set()
    assert fake.survey(tmp_path) == [first]
    after = progress.survey(tmp_path, cache=True)
    assert after.solved == 0 and after.ran == {}  # the new result was cached, and is what a third run reports


def test_a_changed_module_file_reruns_its_own_notebook_only(tmp_path: Path, fake: FakeRuns) -> None:
    _plain_notebooks(tmp_path)
    fake.survey(tmp_path)
    capstone = authoring.find_solution("8")
    modules = tmp_path / authoring.section(capstone)
    (modules / "orders_service.py").write_text("# my fix\n", encoding="utf-8")
    assert fake.survey(tmp_path) == [authoring.exercise_name(capstone)]
    (modules / "orders_service.py.bak").write_text("my old version", encoding="utf-8")
    (modules / "__pycache__").mkdir()
    (modules / "__pycache__" / "orders_service.cpython-311.pyc").write_bytes(b"\0")
    assert fake.survey(tmp_path) == []  # backups and bytecode are not inputs
    catching = authoring.find_solution("9")
    (tmp_path / authoring.section(catching) / "catalog_tests.py").write_text("# my test\n", encoding="utf-8")
    assert fake.survey(tmp_path) == [authoring.exercise_name(catching)]


def test_all_runs_every_notebook_and_rewrites_the_cache(
    tmp_path: Path, fake: FakeRuns, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plain_notebooks(tmp_path)
    fake.survey(tmp_path)
    fake.ran = []
    assert cli.main(["progress", "--folder", str(tmp_path), "--all"]) == 0
    out = capsys.readouterr().out
    assert sorted(fake.ran) == sorted(plan) and "unchanged since the last run" not in out
    assert fake.survey(tmp_path) == []
    assert cli.main(["progress", "--folder", str(tmp_path)]) == 0
    assert f"{len(plan)} notebooks unchanged since the last run" in capsys.readouterr().out


def test_a_new_course_version_invalidates_every_notebook(tmp_path: Path, fake: FakeRuns, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plain_notebooks(tmp_path)
    fake.survey(tmp_path)
    monkeypatch.setattr(progress.progress_cache, "course_fingerprint", lambda root: "a course update")
    assert fake.survey(tmp_path) == sorted(plan)
    assert fake.survey(tmp_path) == []
    assert fake.survey(tmp_path, cell_limit=5) == sorted(plan)  # the cell limit is part of the key too


def test_the_course_fingerprint_covers_the_package_and_the_solutions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package, root = tmp_path / "asynclab", tmp_path / "course"
    package.mkdir()
    (root / "solutions").mkdir(parents=True)
    (package / "checking.py").write_text("LIMIT = 10\n", encoding="utf-8")
    (root / "solutions" / "01-solutions-x.ipynb").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(progress.progress_cache, "PACKAGE", package)
    before = progress.progress_cache.course_fingerprint(root)
    assert progress.progress_cache.course_fingerprint(root) == before
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "checking.cpython-311.pyc").write_bytes(b"\0")
    assert progress.progress_cache.course_fingerprint(root) == before
    (package / "checking.py").write_text("LIMIT = 20\n", encoding="utf-8")
    changed = progress.progress_cache.course_fingerprint(root)
    assert changed != before
    (root / "solutions" / "01-solutions-x.ipynb").write_text('{"cells": []}', encoding="utf-8")
    assert progress.progress_cache.course_fingerprint(root) not in {before, changed}


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'{"format": "asynclab-progress-cache/1", "course": 3}',
        b'{"format": "asynclab-progress-cache/1"}',
        b"[" * 100_000,
    ],
    ids=["broken-json", "not-utf8", "a-list", "wrong-type", "missing-fields", "too-deep"],
)
def test_a_corrupt_cache_file_is_ignored_and_rewritten(
    tmp_path: Path, fake: FakeRuns, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    plan = _plain_notebooks(tmp_path)
    (tmp_path / progress.progress_cache.FILE).write_bytes(content)
    assert cli.main(["progress", "--folder", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert sorted(fake.ran) == sorted(plan) and "Traceback" not in out + err and f"0 of {len(EXERCISE_IDS)} solved" in out
    assert set(progress.progress_cache.load(tmp_path).notebooks) == set(plan)
    assert fake.survey(tmp_path) == []


def test_a_cache_entry_of_the_wrong_shape_is_ignored(tmp_path: Path, fake: FakeRuns) -> None:
    plan = _plain_notebooks(tmp_path)
    fake.survey(tmp_path)
    cache = tmp_path / progress.progress_cache.FILE
    data = json.loads(cache.read_text(encoding="utf-8"))
    first = min(plan)
    data["notebooks"][first]["results"][0]["solved"] = "yes"
    cache.write_text(json.dumps(data), encoding="utf-8")
    assert fake.survey(tmp_path) == sorted(plan)  # one bad entry: the file as a whole is not trusted


def test_a_notebook_that_timed_out_is_never_cached(tmp_path: Path, fake: FakeRuns) -> None:
    plan = _plain_notebooks(tmp_path)
    stuck, slow = sorted(plan)[:2]
    fake.stopped, fake.slow_check = {stuck}, {slow}
    fake.survey(tmp_path)
    assert {stuck, slow}.isdisjoint(progress.progress_cache.load(tmp_path).notebooks)
    assert fake.survey(tmp_path) == [stuck, slow]
    assert fake.survey(tmp_path) == [stuck, slow]  # and again: every run tries them anew
    fake.stopped, fake.slow_check = set(), set()
    assert fake.survey(tmp_path) == [stuck, slow]
    assert fake.survey(tmp_path) == []


def test_the_json_report_lists_reused_notebooks_with_the_seconds_of_their_run() -> None:
    from asynclab.course import report

    name = "01-exercises-async-handlers.ipynb"
    results = [progress.Result("1.1", "Unblock", "1 · Handlers", name, seen="8 of 8 calls ran on the loop", check_failed=True)]
    survey = progress.Survey(Path("exercises"), results, seconds=0.2, reused={name: 4.25})
    data = report.build(survey, learner="alice", ran_at="2026-11-30T12:00:00Z", course={"version": "0.1.0", "commit": None})
    validate(data)
    assert data["reused"] == [name] and data["exercises"][0]["seconds"] == 4.25


def test_watch_checks_again_after_a_save_and_ctrl_c_ends_it_quietly(tmp_path: Path, fake: FakeRuns) -> None:
    plan = _plain_notebooks(tmp_path)
    changed = min(plan)
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # stands in for the one-second poll: the learner saves, then presses Ctrl-C
        naps.append(seconds)
        if len(naps) == 1:
            nbformat.write(_notebook("# saved from JupyterLab", "y = 2"), tmp_path / changed)
        else:
            raise KeyboardInterrupt

    out = io.StringIO()
    assert progress_watch.watch(tmp_path, out=out, err=io.StringIO(), sleep=sleep) == 0
    text = out.getvalue()
    assert sorted(fake.ran[: len(plan)]) == sorted(plan) and fake.ran[len(plan) :] == [changed]  # all, then the saved one
    assert text.count(f"0 of {len(EXERCISE_IDS)} solved") == 2 and text.count("Watching") == 2
    assert text.rstrip().endswith("Stopped watching.") and "Traceback" not in text
    assert f"{len(plan) - 1} notebooks unchanged since the last run (results reused), 1 run now" in text


def test_watch_does_not_go_with_a_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["progress", "--folder", str(tmp_path), "--watch", "--json"]) == 2
    assert capsys.readouterr().err.strip() == "--watch shows the table as you work; run --json or --report without it."


def test_ctrl_c_stops_the_run_with_one_line_and_leaves_the_cache_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _plain_notebooks(tmp_path)
    started: list[str] = []

    async def interrupted(path: Path, plan: list[progress.Result], troubles: list[progress.Trouble], cell_limit: float) -> bool:
        started.append(path.name)
        progress._STOP[-1]()  # what Ctrl-C calls while notebooks run
        await asyncio.Event().wait()  # a cell that would run on: the Ctrl-C cancels it
        return True

    monkeypatch.setattr(progress, "_run_notebook", interrupted)
    assert cli.main(["progress", "--folder", str(tmp_path)]) == 130
    out, err = capsys.readouterr()
    assert err.strip().endswith("Stopped: nothing was checked this time.") and "Traceback" not in out + err
    assert started and not (tmp_path / progress.progress_cache.FILE).exists()
