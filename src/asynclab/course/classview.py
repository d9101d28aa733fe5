"""``python -m asynclab class``: a room's progress at a glance (its parts are in :mod:`asynclab.course.room`)."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from asynclab.course.room import hub as hub_collect
from asynclab.course.room import model, reading, safefile
from asynclab.course.room.model import BROKEN, NO_RESULT, NOT_YET, PASSED, Exercise, Learner, Room, Stuck  # noqa: F401 - the API
from asynclab.course.room.plain import plain
from asynclab.course.room.show import (  # noqa: F401 - the API
    CELL_IN,
    DPI,
    HTML_NAME,
    PNG_NAME,
    ROW_IN,
    View,
    gradebook,
    heatmap_png,
    html_page,
    picture_size,
    stuck_text,
    table,
)
from asynclab.course.room.show import text as _text

ROSTER_BYTES = 1_000_000


def load(
    paths: Iterable[str | Path],
    *,
    course: Sequence[Exercise] | None = None,
    version: str | None = None,
    roster: Sequence[str] | None = None,
    upto: str | None = None,
    by_progress: bool = False,
    now: dt.datetime | None = None,
) -> Room:
    """Read every report under ``paths``; a file that cannot be used becomes a warning, never an error.

    ``course`` and ``version`` default to the instructor's own copy of the course.
    """
    warnings: list[str] = []
    course = course if course is not None else model.course_exercises()
    raws = reading.gather(paths, warnings)
    reports = list(reading.read(raws, {e.id for e in course}, warnings))
    return model.build(
        reports,
        course=course,
        version=version or model.own_version(),
        warnings=warnings,
        roster=roster,
        upto=upto,
        by_progress=by_progress,
        now=now,
    )


def text(room: Room, top: int = 3, width: int = 0, view: View | None = None) -> str:
    return _text(room, view or View(top=top, width=width))


@dataclass(frozen=True)
class Options:
    """What ``python -m asynclab class`` was asked for (see ``__main__``).

    Two ways to get the room:

    - ``class PATH...`` reads the JSON reports learners wrote (``progress --report DIR/``), from files
      or folders of them. These are self-reported: a learner can edit theirs, and the view says so.
    - ``class --hub URL`` collects the room from JupyterHub: progress runs in each learner's server,
      as that learner, and the view shows what it found (:mod:`asynclab.course.room.hub`).

    It shows a learner × exercise table ("✅ passed", "❌ not yet", "⚠️ broken" when the notebook did
    not run to the check), each learner's count and last report time, who on the roster has not
    reported, per-section totals, and where the room is stuck up to its frontier, with each check's
    most common observation. It writes a heatmap PNG and a self-contained HTML page to project
    (``--hide-names``: "#1", "#2", ...; ``--watch``: rewritten every ``--every`` seconds, and the page
    reloads itself), and with ``--csv`` a gradebook.

    A file that cannot be used (a link, too large, not UTF-8, not JSON, hand-edited out of shape, ...)
    gets one line naming it and what is wrong, and the rest of the room is shown. The parts live in
    :mod:`asynclab.course.room`.
    """

    paths: tuple[str, ...] = ()
    hub: str = ""
    hub_options: hub_collect.Options = field(default_factory=hub_collect.Options)
    out_dir: Path = Path(".")
    stuck: int = 3
    roster: Path | None = None
    upto: str | None = None
    hide_names: bool = False
    by_progress: bool = False
    csv: Path | None = None
    watch: bool = False
    every: float = 30.0


class _Stop(Exception):
    """A problem with the command itself (a bad option, an unreachable hub): one line, exit status 2."""


def _roster(path: Path) -> list[str]:
    try:
        data = path.read_bytes()[: ROSTER_BYTES + 1]
    except OSError as exc:
        raise _Stop(f"--roster {path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > ROSTER_BYTES:
        raise _Stop(f"--roster {path}: larger than 1 MB; a roster is one name a line")
    try:
        names = model.read_roster(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _Stop(f"--roster {path}: not UTF-8 text (save it as UTF-8, one name a line)") from None
    if not names:
        raise _Stop(f"--roster {path}: no names in it (one name a line; lines starting with # are skipped)")
    return names


def _one_room(options: Options, course: Sequence[Exercise], version: str, roster: list[str] | None, err: TextIO) -> Room:
    warnings: list[str] = []
    if options.hub:
        try:
            token = hub_collect.token_from_environment()
            print(f"Collecting the room from {options.hub} ...", file=err, flush=True)
            raws, hub_roster = hub_collect.collect(
                options.hub,
                token,
                options.hub_options,
                warnings,
                tick=lambda line: print(f"  {plain(line)}", file=err, flush=True),
            )
        except hub_collect.HubError as exc:
            raise _Stop(f"--hub {options.hub}: {exc}") from None
        roster = roster if roster is not None else hub_roster
    else:
        raws = reading.gather(options.paths, warnings)
    reports = list(reading.read(raws, {e.id for e in course}, warnings))
    room = model.build(
        reports,
        course=course,
        version=version,
        warnings=warnings,
        roster=roster,
        upto=options.upto,
        by_progress=options.by_progress or options.hide_names,
        collected=options.hub,
    )
    return room


def _write_outputs(room: Room, view: View, options: Options) -> list[Path]:
    png = heatmap_png(room, view)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    written = [options.out_dir / PNG_NAME, options.out_dir / HTML_NAME]
    safefile.write(written[0], png)
    safefile.write(written[1], html_page(room, png, view=view).encode("utf-8"))
    if options.csv is not None:
        safefile.write(options.csv, gradebook(room).encode("utf-8-sig"))  # the BOM: Excel then reads it as UTF-8
        written.append(options.csv)
    return written


def _round(
    options: Options, view: View, course: Sequence[Exercise], version: str, roster: list[str] | None, out: TextIO, err: TextIO
) -> int:
    room = _one_room(options, course, version, roster, err)
    for warning in room.warnings:
        print(f"⚠️  warning: {plain(warning, 600)}", file=err)
    if not room.learners and not room.absent:
        print("No usable report found: nothing to show.", file=err)
        return 1
    out.write(_text(room, view))
    try:
        written = _write_outputs(room, view, options)
    except safefile.Refused as exc:
        print(f"Not written: {exc}", file=err)
        return 2
    names = ", ".join(str(p) for p in written)
    print(f"\nWrote {names} (open {HTML_NAME} in a browser to project it).", file=out, flush=True)
    return 0


def main(
    paths: Sequence[str] = (),
    *,
    out_dir: Path = Path("."),
    stuck: int = 3,
    options: Options | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> int:
    """The command. ``rounds`` (tests) ends ``--watch`` after that many rounds (see :class:`Options` for what it shows)."""
    out, err = out or sys.stdout, err or sys.stderr
    options = options or Options(paths=tuple(paths), out_dir=out_dir, stuck=stuck)
    try:
        if bool(options.paths) == bool(options.hub):
            raise _Stop("give report files or folders, or --hub URL (not both)")
        course = model.course_exercises()
        ids = [e.id for e in course]
        if options.upto is not None and options.upto not in ids:
            raise _Stop(f"--upto {plain(options.upto, 20)}: the course has no such exercise; it has {', '.join(ids)}")
        if options.every < 5:
            raise _Stop("--every must be at least 5 seconds")
        roster = _roster(options.roster) if options.roster is not None else None
        version = model.own_version()
        view = View(hide_names=options.hide_names, top=options.stuck, refresh=round(options.every) if options.watch else 0)
        if not options.watch:
            return _round(options, view, course, version, roster, out, err)
        done = 0
        try:
            while True:
                _round(options, view, course, version, roster, out, err)
                done += 1
                if rounds is not None and done >= rounds:
                    return 0
                print(f"(again in {options.every:.0f} s; Ctrl-C stops)", file=out, flush=True)
                sleep(options.every)
        except KeyboardInterrupt:
            print("\nStopped watching.", file=out)
            return 0
    except _Stop as exc:
        print(plain(exc, 600), file=err)
        return 2
