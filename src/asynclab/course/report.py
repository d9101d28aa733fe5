"""``python -m asynclab progress --json`` / ``--report FILE``: one learner's progress as a JSON report."""

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

from asynclab.course import authoring, progress, progress_table
from asynclab.course.room import safefile
from asynclab.course.room.plain import plain

FORMAT = "asynclab-progress/1"
TIMING = "notebook"  # each exercise's seconds is the run time of its whole notebook
NAME_LIMIT = 64  # characters in a learner's name
# The end of the string in every regex dialect. "$" alone is not: Python's re (which the jsonschema
# package uses) also matches it before a final newline, so "1.1\n" would pass as an exercise id.
END = "(?![\\s\\S])"

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
                    "pattern": "^[0-9a-f]{7,40}" + END,
                    "description": "The git commit of the course folder; null outside a git checkout.",
                },
            },
        },
        "learner": {
            "type": "string",
            "minLength": 1,
            "maxLength": NAME_LIMIT,
            "description": "--name, else JUPYTERHUB_USER, else the OS user.",
        },
        "ran_at": {
            "type": "string",
            "format": "date-time",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})" + END,
            "description": "When progress started, UTC, ISO 8601.",
        },
        "seconds": {"type": "number", "minimum": 0, "description": "How long the whole progress run took."},
        "timing": {
            "enum": ["notebook"],
            "description": "What an exercise's seconds measure: 'notebook' = the run time of the notebook that holds it.",
        },
        "solved": {"type": "integer", "minimum": 0},
        "total": {"type": "integer", "minimum": 0},
        "exercises": {
            "type": "array",
            "maxItems": 200,
            "items": {
                "type": "object",
                "required": ["id", "solved", "seen"],
                "properties": {
                    "id": {
                        "type": "string",
                        "pattern": "^[0-9]{1,3}[.][0-9]{1,3}" + END,
                        "description": "N.M. Patterns end in (?![\\s\\S]), the end of the string in every regex dialect.",
                    },
                    "title": {"type": "string"},
                    "section": {"type": "string"},
                    "notebook": {"type": "string"},
                    "solved": {"type": "boolean"},
                    "seen": {
                        "type": "string",
                        "description": "The check's one-line observation when it did not pass; '' when solved.",
                    },
                    "seconds": {
                        "type": ["number", "null"],
                        "minimum": 0,
                        "description": "See timing; null if the notebook did not run.",
                    },
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
    """The package version, and the git commit when the course folder is a git checkout.

    On a hub the course is one shared install that root owns, and git refuses a repository another
    user owns ("dubious ownership"), so every learner's report said null. ``safe.directory`` is
    given for this one command and this one folder: the folder holds the very code that is running,
    so trusting its git configuration trusts no one new.
    """
    try:
        version = metadata.version("asynclab")
    except metadata.PackageNotFoundError:  # pragma: no cover - the course is always installed with pip -e .
        version = "unknown"
    commit = None
    if (root / ".git").exists():
        where = str(root.resolve())
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                ["git", "-c", f"safe.directory={where}", "-C", where, "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
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
    """The report for one survey, as a dict that :data:`SCHEMA` accepts.

    The report is what the class view (``python -m asynclab class``) reads: which course it was made
    with, who ran it and when, and for each exercise whether it passed, what its check saw, and how
    long its notebook took. :data:`SCHEMA` is the format (``docs/report-schema.json`` is a copy of it,
    kept equal by the tests).

    Progress runs notebooks, not single exercises, so the time given for an exercise is the run time
    of the notebook that holds it (kernel start included; up to ``jobs`` notebooks run at once).
    """
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
    """Where ``--report`` writes: ``<learner>.json`` in the folder given, or the ``.json`` file given.

    A name that is not an existing folder, has no slash at the end and does not end in ``.json``
    (``--report newfolder``) is a folder too: written as a file, the next learner's report would
    replace it.
    """
    path = Path(target)
    if path.is_dir() or str(target).endswith(("/", os.sep)) or path.suffix.lower() != ".json":
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in learner).lstrip(".") or "learner"
        while len(safe.encode("utf-8")) > 100:  # a file name has at most 255 bytes
            safe = safe[:-1]
        return path / f"{safe}.json"
    return path


def check_name(learner: str) -> None:
    """Raise :class:`safefile.Refused` for a name the class view could not show as it is."""
    if len(learner) > NAME_LIMIT:
        raise safefile.Refused(
            f"the name {learner[:20]!r}... is {len(learner)} characters long: give --name with at most {NAME_LIMIT}"
        )
    if plain(learner, NAME_LIMIT) != learner:
        raise safefile.Refused("the name has control or invisible characters in it: give --name with letters, digits and spaces")


def prepare(target: str | Path, learner: str) -> Path:
    """Where the report will go, checked before the run: a usable name, a folder we may write in, a name not taken."""
    check_name(learner)
    path = destination(target, learner)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise safefile.Refused(f"cannot make the folder {path.parent} ({exc.strerror or type(exc).__name__})") from None
    safefile.check_folder(path.parent)
    why = safefile.taken(path)
    if why is not None:
        raise safefile.Refused(f"{path} already exists and {why}: give --name, or ask your instructor")
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
    learner = learner_name(name)
    path = None
    try:
        check_name(learner)
        if report_file:  # checked now, not after a minute of running notebooks
            path = prepare(report_file, learner)
    except safefile.Refused as exc:
        print(f"Nothing was run: {exc}.", file=err)
        return 2
    meter = progress_table.start_meter(folder, err)
    if meter is None:
        return 2
    ran_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    survey = progress.survey(folder, jobs=jobs, cell_limit=cell_limit, tick=meter.tick, cache=True, rerun_all=rerun_all)
    report = build(survey, learner=learner, ran_at=ran_at)
    text = dumps(report)
    problem = None
    if path is not None:
        try:
            safefile.write(path, text.encode("utf-8"))  # never through a link, never over someone else's file
        except safefile.Refused as exc:
            problem = str(exc)
    if as_json:
        out.write(text)
    else:
        print(progress_table.report(survey), file=out)  # the learner's own table, whatever happened to the file
    if problem is not None:
        print(f"Your report was not written: {problem}.", file=err)
        return 1
    if path is not None:
        print(f"Report for {learner} written to {path}", file=err)
    return 0
