"""``python -m asynclab progress --json`` / ``--report FILE``: one learner's progress as a JSON report.

The report is what the class view (``python -m asynclab class``) reads: which course it was made
with, who ran it and when, and for each exercise whether it passed, what its check saw, and how
long its notebook took. :data:`SCHEMA` is the format (``docs/report-schema.json`` is a copy of it,
kept equal by the tests).

Progress runs notebooks, not single exercises, so the time given for an exercise is the run time
of the notebook that holds it (kernel start included; up to ``jobs`` notebooks run at once).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from asynclab.course import authoring, progress

FORMAT = "asynclab-progress/1"
TIMING = "notebook"  # each exercise's seconds is the run time of its whole notebook

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://github.com/asynclab/course/docs/report-schema.json",
    "title": "asynclab progress report",
    "description": "One learner's exercises, as `python -m asynclab progress --json` found them.",
    "type": "object",
    "required": ["format", "course", "learner", "ran_at", "timing", "exercises"],
    "properties": {
        "format": {"const": FORMAT, "description": "The format's name and version."},
        "course": {
            "type": "object",
            "required": ["version", "commit"],
            "properties": {
                "version": {"type": "string", "description": "The asynclab package version."},
                "commit": {
                    "type": ["string", "null"],
                    "pattern": "^[0-9a-f]{7,40}$",
                    "description": "The git commit of the course folder; null outside a git checkout.",
                },
            },
        },
        "learner": {"type": "string", "minLength": 1, "description": "--name, else JUPYTERHUB_USER, else the OS user."},
        "ran_at": {"type": "string", "format": "date-time", "description": "When progress started, UTC, ISO 8601."},
        "seconds": {"type": "number", "minimum": 0, "description": "How long the whole progress run took."},
        "timing": {
            "enum": ["notebook"],
            "description": "What an exercise's seconds measure: 'notebook' = the run time of the notebook that holds it.",
        },
        "solved": {"type": "integer", "minimum": 0},
        "total": {"type": "integer", "minimum": 0},
        "exercises": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "solved", "seen"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"},
                    "title": {"type": "string"},
                    "section": {"type": "string"},
                    "notebook": {"type": "string"},
                    "solved": {"type": "boolean"},
                    "seen": {"type": "string", "description": "The check's one-line observation when it did not pass; '' when solved."},
                    "seconds": {"type": ["number", "null"], "minimum": 0, "description": "See timing; null if the notebook did not run."},
                },
            },
        },
        "troubles": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["notebook", "what"],
                "properties": {"notebook": {"type": "string"}, "cell": {"type": "integer"}, "what": {"type": "string"}},
            },
        },
        "reused": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Notebooks not run this time, unchanged since a run whose results (and seconds) are given instead.",
        },
    },
}


def course_version(root: Path = authoring.ROOT) -> dict[str, str | None]:
    """The package version, and the git commit when the course folder is a git checkout."""
    try:
        version = metadata.version("asynclab")
    except metadata.PackageNotFoundError:  # pragma: no cover - the course is always installed with pip -e .
        version = "unknown"
    commit = None
    if (root / ".git").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
            if done.returncode == 0 and done.stdout.strip():
                commit = done.stdout.strip()
    return {"version": version, "commit": commit}


def learner_name(given: str | None = None) -> str:
    """``--name``, else the JupyterHub user this server belongs to, else the OS user."""
    for name in (given, os.environ.get("JUPYTERHUB_USER")):
        if name and name.strip():
            return name.strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # pragma: no cover - a container with no user name
        return "unknown"


def build(
    survey: progress.Survey,
    *,
    learner: str,
    ran_at: str,
    course: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """The report for one survey, as a dict that :data:`SCHEMA` accepts."""
    timing = {**survey.reused, **survey.ran}  # a reused notebook carries the seconds of the run that made its results
    return {
        "format": FORMAT,
        "course": course if course is not None else course_version(),
        "learner": learner,
        "ran_at": ran_at,
        "seconds": round(survey.seconds, 1),
        "timing": TIMING,
        "solved": survey.solved,
        "total": survey.total,
        "exercises": [
            {
                "id": r.id,
                "title": r.title,
                "section": r.section,
                "notebook": r.notebook,
                "solved": r.solved,
                "seen": "" if r.solved else r.seen,
                "seconds": timing.get(r.notebook),
            }
            for r in survey.results
        ],
        "troubles": [{"notebook": t.notebook, "cell": t.cell, "what": t.what} for t in survey.troubles],
        "reused": sorted(survey.reused),
    }


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=1, ensure_ascii=False) + "\n"


def destination(target: str | Path, learner: str) -> Path:
    """Where ``--report`` writes: the file given, or ``<learner>.json`` inside a folder given."""
    path = Path(target)
    if path.is_dir() or str(target).endswith(("/", os.sep)):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in learner) or "learner"
        return path / f"{safe}.json"
    return path


def main(
    folder: Path,
    *,
    jobs: int = 3,
    cell_limit: float = progress.CELL_LIMIT,
    name: str | None = None,
    as_json: bool = False,
    report_file: str | None = None,
    rerun_all: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``progress --json`` prints the report instead of the table; ``--report FILE`` writes it and prints the table."""
    out, err = out or sys.stdout, err or sys.stderr
    meter = progress.start_meter(folder, err)
    if meter is None:
        return 2
    ran_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    survey = progress.survey(folder, jobs=jobs, cell_limit=cell_limit, tick=meter.tick, cache=True, rerun_all=rerun_all)
    report = build(survey, learner=learner_name(name), ran_at=ran_at)
    text = dumps(report)
    if report_file:
        path = destination(report_file, report["learner"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if as_json:
        out.write(text)
    else:
        print(progress.report(survey), file=out)
    if report_file:
        print(f"Report for {report['learner']} written to {path}", file=err)
    return 0
