"""The machine-readable progress report: its format (a JSON schema), its fields, and the real command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from asynclab.course import authoring, progress, report

ROOT = authoring.ROOT


def validate(data: object) -> None:
    jsonschema.Draft202012Validator(report.SCHEMA, format_checker=jsonschema.FormatChecker()).validate(data)


def a_survey() -> progress.Survey:
    results = [
        progress.Result("1.1", "Unblock", "1 · Handlers", "01-exercises-async-handlers.ipynb", solved=True),
        progress.Result("1.2", "Next", "1 · Handlers", "01-exercises-async-handlers.ipynb", seen="8 of 8 calls ran on the loop", check_failed=True),
        progress.Result("2.1", "Deps", "2 · Deps", "02-exercises-async-dependencies.ipynb", seen="02-exercises-async-dependencies.ipynb is missing"),
    ]
    trouble = progress.Trouble("02-exercises-async-dependencies.ipynb", 0, "the notebook is missing")
    return progress.Survey(Path("exercises"), results, [trouble], 12.345, ran={"01-exercises-async-handlers.ipynb": 4.5})


def test_the_schema_is_valid_and_the_docs_copy_is_the_same() -> None:
    jsonschema.Draft202012Validator.check_schema(report.SCHEMA)
    assert json.loads((ROOT / "docs" / "report-schema.json").read_text(encoding="utf-8")) == report.SCHEMA


def test_a_report_built_from_a_survey_has_every_field_and_passes_the_schema() -> None:
    data = report.build(
        a_survey(), learner="alice", ran_at="2026-11-30T12:00:00Z", course={"version": "0.1.0", "commit": None},
    )
    validate(data)
    assert data["learner"] == "alice" and data["solved"] == 1 and data["total"] == 3 and data["timing"] == "notebook"
    assert [(e["id"], e["solved"], e["seen"], e["seconds"]) for e in data["exercises"]] == [
        ("1.1", True, "", 4.5),  # both exercises of notebook 01 carry its run time
        ("1.2", False, "8 of 8 calls ran on the loop", 4.5),
        ("2.1", False, "02-exercises-async-dependencies.ipynb is missing", None),  # that notebook never ran
    ]
    assert data["troubles"] == [{"notebook": "02-exercises-async-dependencies.ipynb", "cell": 0, "what": "the notebook is missing"}]


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (lambda d: d.pop("learner"), "learner"),
        (lambda d: d["exercises"][0].update(solved="yes"), "solved"),
        (lambda d: d.update(ran_at="yesterday"), "date-time"),
        (lambda d: d.update(format="something-else/9"), "format"),
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


def test_the_course_version_is_the_commit_in_a_git_checkout_else_the_package_version(tmp_path: Path) -> None:
    outside = report.course_version(tmp_path)
    assert outside["commit"] is None and outside["version"]
    if (ROOT / ".git").exists() and shutil.which("git"):
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        assert report.course_version(ROOT)["commit"] == head


def test_report_into_a_folder_names_the_file_after_the_learner(tmp_path: Path) -> None:
    assert report.destination(tmp_path, "alice") == tmp_path / "alice.json"
    assert report.destination(str(tmp_path / "new") + "/", "bob smith") == tmp_path / "new" / "bob_smith.json"
    assert report.destination(tmp_path / "me.json", "alice") == tmp_path / "me.json"


def test_the_command_prints_and_writes_a_valid_report(tmp_path: Path) -> None:
    """One real run, quick: only notebook 01 (solved) is there, the others are missing."""
    learner = tmp_path / "exercises"
    learner.mkdir()
    mine = learner / "01-exercises-async-handlers.ipynb"
    shutil.copy(authoring.find_solution("1"), mine)
    shared = tmp_path / "shared"
    shared.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "asynclab", "progress", "--folder", str(learner), "--json", "--report", str(shared), "--name", "alice"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    validate(data)
    assert json.loads((shared / "alice.json").read_text(encoding="utf-8")) == data
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
    status = report.main(missing, as_json=as_json) if as_json else progress.main(missing)
    err = capsys.readouterr().err
    assert status == 2 and err == f"There is no folder {missing}: run this from the course's folder, or pass --folder.\n"
