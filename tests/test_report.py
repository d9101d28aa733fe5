"""The machine-readable progress report: its format (a JSON schema), its fields, and the real command."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from asynclab.course import authoring, progress, progress_table, report
from asynclab.course.room import safefile

ROOT = authoring.ROOT


def validate(data: object) -> None:
    jsonschema.Draft202012Validator(report.SCHEMA, format_checker=jsonschema.FormatChecker()).validate(data)


def a_survey() -> progress.Survey:
    results = [
        progress.Result("1.1", "Unblock", "1 · Handlers", "01-exercises-async-handlers.ipynb", solved=True),
        progress.Result(
            "1.2",
            "Next",
            "1 · Handlers",
            "01-exercises-async-handlers.ipynb",
            seen="8 of 8 calls ran on the loop",
            check_failed=True,
        ),
        progress.Result(
            "2.1",
            "Deps",
            "2 · Deps",
            "02-exercises-async-dependencies.ipynb",
            seen="02-exercises-async-dependencies.ipynb is missing",
        ),
    ]
    trouble = progress.Trouble("02-exercises-async-dependencies.ipynb", 0, "the notebook is missing")
    return progress.Survey(Path("exercises"), results, [trouble], 12.345, ran={"01-exercises-async-handlers.ipynb": 4.5})


def test_the_schema_is_valid_and_the_docs_copy_is_the_same() -> None:
    jsonschema.Draft202012Validator.check_schema(report.SCHEMA)
    assert json.loads((ROOT / "docs" / "report-schema.json").read_text(encoding="utf-8")) == report.SCHEMA


def test_a_report_built_from_a_survey_has_every_field_and_passes_the_schema() -> None:
    data = report.build(
        a_survey(),
        learner="alice",
        ran_at="2026-11-30T12:00:00Z",
        course={"version": "0.1.0", "commit": None},
    )
    validate(data)
    assert data["learner"] == "alice" and data["solved"] == 1 and data["total"] == 3 and data["timing"] == "notebook"
    assert [(e["id"], e["solved"], e["seen"], e["seconds"]) for e in data["exercises"]] == [
        ("1.1", True, "", 4.5),  # both exercises of notebook 01 carry its run time
        ("1.2", False, "8 of 8 calls ran on the loop", 4.5),
        ("2.1", False, "02-exercises-async-dependencies.ipynb is missing", None),  # that notebook never ran
    ]
    assert data["troubles"] == [
        {"notebook": "02-exercises-async-dependencies.ipynb", "cell": 0, "what": "the notebook is missing"}
    ]


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (lambda d: d.pop("learner"), "learner"),
        (lambda d: d["exercises"][0].update(solved="yes"), "solved"),
        (lambda d: d.update(ran_at="yesterday"), "date-time"),
        (lambda d: d.update(format="something-else/9"), "format"),
        (lambda d: d["exercises"][0].update(id="1.1\n"), "id"),  # Python's $ alone would match before the newline
        (lambda d: d["exercises"][0].update(id="1" * 5000 + ".1"), "id"),
        (lambda d: d.update(learner="x" * 65), "learner"),
        (lambda d: d.update(ran_at="2026-11-30T12:00:00Z\n"), "ran_at"),
        (lambda d: d.update(course={"version": "0.1.0", "commit": "abcdef1\n"}), "commit"),
        (lambda d: d.update(exercises=d["exercises"] * 70), "exercises"),
    ],
)
def test_the_schema_rejects_hand_edited_reports(broken: object, where: str) -> None:
    data = report.build(a_survey(), learner="alice", ran_at="2026-11-30T12:00:00Z", course={"version": "0.1.0", "commit": None})
    broken(data)  # type: ignore[operator]
    with pytest.raises(jsonschema.ValidationError) as info:
        validate(data)
    assert where in str(info.value)


def test_the_learner_name_comes_from_the_flag_then_jupyterhub_then_the_os(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "hubuser")
    assert report.learner_name("flagname") == "flagname"
    assert report.learner_name(None) == "hubuser"
    monkeypatch.delenv("JUPYTERHUB_USER")
    monkeypatch.setattr(report.getpass, "getuser", lambda: "osuser")
    assert report.learner_name(None) == "osuser" and report.learner_name("  ") == "osuser"


def test_the_course_version_is_the_commit_in_a_git_checkout_else_the_package_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = report.course_version(tmp_path)
    assert outside["commit"] is None and outside["version"]
    if not ((ROOT / ".git").exists() and shutil.which("git")):
        pytest.skip("not a git checkout, or no git")
    mine = report.course_version(ROOT)["commit"]
    assert re.fullmatch("[0-9a-f]{40}", mine or "")
    # On a hub the course is root's shared install and git refuses it to a learner ("dubious ownership").
    # Git's own test switch makes it refuse here too: the commit is still found.
    monkeypatch.setenv("GIT_TEST_ASSUME_DIFFERENT_OWNER", "1")
    refused = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "dubious ownership" in refused.stderr
    assert re.fullmatch("[0-9a-f]{40}", report.course_version(ROOT)["commit"] or "")


def test_report_into_a_folder_names_the_file_after_the_learner(tmp_path: Path) -> None:
    assert report.destination(tmp_path, "alice") == tmp_path / "alice.json"
    assert report.destination(str(tmp_path / "new") + "/", "bob smith") == tmp_path / "new" / "bob_smith.json"
    assert report.destination(tmp_path / "me.json", "alice") == tmp_path / "me.json"
    # No slash, not there, not .json: a folder too (as a file, the next learner's report would replace it).
    assert report.destination(tmp_path / "newfolder", "alice") == tmp_path / "newfolder" / "alice.json"
    assert report.destination(tmp_path, "..hidden") == tmp_path / "hidden.json"
    assert len(report.destination(tmp_path, "𝐀" * 64).name.encode()) <= 105  # 4-byte letters: cut to fit a file name


def test_the_command_prints_and_writes_a_valid_report(tmp_path: Path) -> None:
    """One real run, quick: only notebook 01 (solved) is there, the others are missing."""
    learner = tmp_path / "exercises"
    learner.mkdir()
    mine = learner / "01-exercises-async-handlers.ipynb"
    shutil.copy(authoring.find_solution("1"), mine)
    shared = tmp_path / "shared"
    shared.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "asynclab",
            "progress",
            "--folder",
            str(learner),
            "--json",
            "--report",
            str(shared),
            "--name",
            "alice",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    validate(data)
    assert (shared / "alice.json").read_text(encoding="utf-8") == done.stdout  # byte for byte what --json prints
    assert [p.name for p in shared.iterdir()] == ["alice.json"]  # no temporary file left behind
    assert "Report for alice written to" in done.stderr
    assert data["learner"] == "alice" and data["ran_at"].endswith("Z")
    ones = [e for e in data["exercises"] if e["notebook"] == mine.name]
    others = [e for e in data["exercises"] if e["notebook"] != mine.name]
    assert ones and all(e["solved"] and e["seen"] == "" and e["seconds"] > 0 for e in ones)
    assert others and all(not e["solved"] and "is missing" in e["seen"] and e["seconds"] is None for e in others)
    assert data["solved"] == len(ones) and data["total"] == len(data["exercises"])


@pytest.mark.parametrize("as_json", [False, True])
def test_a_folder_that_is_not_there_gets_one_line(tmp_path: Path, as_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    status = report.main(missing, as_json=as_json) if as_json else progress_table.main(missing)
    err = capsys.readouterr().err
    assert status == 2 and err == f"There is no folder {missing}: run this from the course's folder, or pass --folder.\n"


# --- Writing the report: a drop folder others can write into ---------------------------------------


def _quick_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, during: object = None) -> Path:
    """report.main without running notebooks: the survey is a_survey() (and ``during()`` runs while it "runs")."""
    folder = tmp_path / "exercises"
    folder.mkdir(exist_ok=True)
    calls = []

    def survey(*args: object, **kwargs: object) -> progress.Survey:
        calls.append(1)
        if callable(during):
            during()
        return a_survey()

    monkeypatch.setattr(report.progress, "survey", survey)
    monkeypatch.setattr(report, "course_version", lambda: {"version": "0.1.0", "commit": None})
    monkeypatch.setattr(report, "_RAN", calls, raising=False)
    return folder


def test_a_link_planted_at_the_learners_name_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exercises = _quick_run(monkeypatch, tmp_path)
    drop, notes = tmp_path / "drop", tmp_path / "notes.txt"
    drop.mkdir()
    notes.write_text("ana's own notes", encoding="utf-8")
    (drop / "ana.json").symlink_to(notes)  # planted by someone else
    status = report.main(exercises, name="ana", report_file=f"{drop}/")
    err = capsys.readouterr().err
    assert status == 2 and report._RAN == []  # type: ignore[attr-defined]
    assert (
        err
        == f"Nothing was run: {drop / 'ana.json'} already exists and is a link, not a report: give --name, or ask your instructor.\n"
    )
    assert notes.read_text(encoding="utf-8") == "ana's own notes"


def test_a_link_planted_during_the_run_is_not_followed_and_the_table_is_still_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drop, notes = tmp_path / "drop", tmp_path / "notes.txt"
    drop.mkdir()
    notes.write_text("ana's own notes", encoding="utf-8")
    exercises = _quick_run(monkeypatch, tmp_path, during=lambda: (drop / "ana.json").symlink_to(notes))
    status = report.main(exercises, name="ana", report_file=f"{drop}/")
    shown = capsys.readouterr()
    assert status == 1 and "1 of 3 solved" in shown.out  # the learner's own table, all the same
    assert shown.err.endswith(
        f"Your report was not written: {drop / 'ana.json'} already exists and is a link, not a report: nothing written there.\n"
    )
    assert notes.read_text(encoding="utf-8") == "ana's own notes" and sorted(p.name for p in drop.iterdir()) == ["ana.json"]


def test_even_a_link_planted_after_the_last_check_is_replaced_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("ana's own notes", encoding="utf-8")
    (tmp_path / "ana.json").symlink_to(notes)
    monkeypatch.setattr(safefile, "taken", lambda path: None)  # as if the link appeared just after the check
    safefile.write(tmp_path / "ana.json", b"{}\n")
    assert notes.read_text(encoding="utf-8") == "ana's own notes"
    assert not (tmp_path / "ana.json").is_symlink() and (tmp_path / "ana.json").read_bytes() == b"{}\n"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root, to give a file to another user")
def test_a_name_that_belongs_to_someone_elses_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    exercises = _quick_run(monkeypatch, tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    theirs = drop / "ana.json"
    theirs.write_text("ana's real report", encoding="utf-8")
    os.chown(theirs, 65534, 65534)
    err = io.StringIO()
    assert report.main(exercises, name="ana", report_file=str(drop), err=err, out=io.StringIO()) == 2
    owner = pwd.getpwuid(65534).pw_name
    assert (
        err.getvalue()
        == f"Nothing was run: {theirs} already exists and is {owner}'s file: give --name, or ask your instructor.\n"
    )
    assert theirs.read_text(encoding="utf-8") == "ana's real report"


def test_the_destination_is_checked_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exercises = _quick_run(monkeypatch, tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    cases = [
        (
            {"report_file": f"{blocker}/reports/"},
            f"Nothing was run: cannot make the folder {blocker}/reports (Not a directory).\n",
        ),
        (
            {"report_file": str(tmp_path), "name": "x" * 300},
            "Nothing was run: the name 'xxxxxxxxxxxxxxxxxxxx'... is 300 characters long: give --name with at most 64.\n",
        ),
        (
            {"name": "ana\x1b[2J"},
            "Nothing was run: the name has control or invisible characters in it: give --name with letters, digits and spaces.\n",
        ),
    ]
    for given, said in cases:
        err = io.StringIO()
        assert report.main(exercises, err=err, out=io.StringIO(), **given) == 2  # type: ignore[arg-type]
        assert err.getvalue() == said
    assert report._RAN == []  # type: ignore[attr-defined]


def test_a_missing_folder_is_made_and_a_bare_name_is_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exercises = _quick_run(monkeypatch, tmp_path)
    for target, made in (
        (f"{tmp_path}/new/deeper/", tmp_path / "new" / "deeper" / "ana.json"),
        (str(tmp_path / "newfolder"), tmp_path / "newfolder" / "ana.json"),
    ):
        err, out = io.StringIO(), io.StringIO()
        assert report.main(exercises, name="ana", report_file=target, err=err, out=out) == 0
        assert err.getvalue().endswith(f"Report for ana written to {made}\n") and "1 of 3 solved" in out.getvalue()
        data = report.build(
            a_survey(),
            learner="ana",
            ran_at=json.loads(made.read_text(encoding="utf-8"))["ran_at"],
            course={"version": "0.1.0", "commit": None},
        )
        assert made.read_bytes() == report.dumps(data).encode("utf-8")  # exactly what --json would print
    # Run again: your own file is replaced.
    assert report.main(exercises, name="ana", report_file=str(tmp_path / "newfolder"), err=io.StringIO(), out=io.StringIO()) == 0


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root, to become another user")
def test_a_folder_you_may_not_write_in_is_named_before_the_run(request: pytest.FixtureRequest) -> None:
    import select
    import tempfile

    closed = Path(tempfile.mkdtemp(prefix="asynclab-closed-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(closed, ignore_errors=True))
    closed.chmod(0o755)  # root's: others may look, not write
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child, as nobody
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                report.prepare(f"{closed}/", "ana")
                said = "prepared"
            except safefile.Refused as exc:
                said = str(exc)
            os.write(write, said.encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert select.select([read], [], [], 60)[0], "the child never answered"
        said = os.read(read, 10_000).decode()
    finally:
        os.close(read)
        os.waitpid(child, 0)
    assert said == f"you may not write in {closed} (ask whoever set it up for write access)"
    assert list(closed.iterdir()) == []


def test_a_genuine_report_is_byte_for_byte_what_it_was() -> None:
    """The format did not change: the same survey gives the same bytes as before this work (asynclab-progress/1)."""
    data = report.build(
        a_survey(), learner="alice", ran_at="2026-11-30T12:00:00Z", course={"version": "0.1.0", "commit": "a" * 40}
    )
    assert report.dumps(data) == GOLDEN


GOLDEN = """{
 "format": "asynclab-progress/1",
 "course": {
  "version": "0.1.0",
  "commit": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
 },
 "learner": "alice",
 "ran_at": "2026-11-30T12:00:00Z",
 "seconds": 12.3,
 "timing": "notebook",
 "solved": 1,
 "total": 3,
 "exercises": [
  {
   "id": "1.1",
   "title": "Unblock",
   "section": "1 · Handlers",
   "notebook": "01-exercises-async-handlers.ipynb",
   "solved": true,
   "seen": "",
   "seconds": 4.5
  },
  {
   "id": "1.2",
   "title": "Next",
   "section": "1 · Handlers",
   "notebook": "01-exercises-async-handlers.ipynb",
   "solved": false,
   "seen": "8 of 8 calls ran on the loop",
   "seconds": 4.5
  },
  {
   "id": "2.1",
   "title": "Deps",
   "section": "2 · Deps",
   "notebook": "02-exercises-async-dependencies.ipynb",
   "solved": false,
   "seen": "02-exercises-async-dependencies.ipynb is missing",
   "seconds": null
  }
 ],
 "troubles": [
  {
   "notebook": "02-exercises-async-dependencies.ipynb",
   "cell": 0,
   "what": "the notebook is missing"
  }
 ],
 "reused": []
}
"""
