"""Hostile reports in a drop folder: each gets one line naming its file, and the rest of the room is shown.

One table, one case a row: what a learner (or anyone who can write into the folder) puts there,
the phrase its warning line must hold, and what must never reach the instructor's screen. Every
case runs the real command (``classview.main``) on three genuine learners plus the hostile file(s),
and the same checks hold for all: exit status 0, the three genuine rows as they are, exactly one
warning line for the file, no control or bidi character in the terminal, the page or the CSV,
and a PNG and an HTML page written.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from asynclab.course import classview, report
from asynclab.course.room import model

COURSE = model.course_exercises()
IDS = [e.id for e in COURSE]
VERSION = {"version": "0.1.0", "commit": "a" * 40}  # the instructor's version, pinned: HEAD may move while the suite runs
GENUINE = {"ana": 3, "ben": 0, "chen": len(IDS)}  # name -> exercises solved (the first k)
SECRET = "TOP-SECRET-OUTSIDE-THE-FOLDER"
TIME = re.compile(r" \d\d:\d\d$")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


@pytest.fixture(autouse=True)
def _instructor_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "own_version", lambda: VERSION["commit"])


def a_report(name: str, solved: int = 1, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "format": report.FORMAT,
        "course": dict(VERSION),
        "learner": name,
        "ran_at": "2026-11-30T10:00:00Z",
        "seconds": 30.0,
        "timing": "notebook",
        "solved": solved,
        "total": len(IDS),
        "exercises": [
            {
                "id": e,
                "title": f"title {e}",
                "section": "s",
                "notebook": "nb.ipynb",
                "solved": j < solved,
                "seen": "" if j < solved else f"{e}: the loop was blocked",
                "seconds": 3.5,
            }
            for j, e in enumerate(IDS)
        ],
        "troubles": [],
    }
    data.update(changes)
    return data


def put(folder: Path, name: str, data: object) -> None:
    (folder / name).write_text(json.dumps(data), encoding="utf-8")


def edited(name: str, change: Callable[[dict[str, object]], None], solved: int = 1) -> dict[str, object]:
    data = a_report(name, solved)
    change(data)
    return data


@dataclass
class Case:
    id: str
    build: Callable[[Path, Path], None]  # (reports folder, a folder outside it)
    lines: list[tuple[str, str]]  # the warning lines: (the file it names, what it says); no other line
    shown: list[str] = field(default_factory=list)  # what must be in the terminal table (a hostile name, made plain)
    never: list[str] = field(default_factory=list)  # what must appear nowhere (terminal, page, CSV)
    extra_rows: int = 0  # rows besides the three genuine learners


def _ids(n: int) -> list[dict[str, object]]:
    return [{"id": f"99.{i}", "solved": True, "seen": ""} for i in range(n)]


def _big(folder: Path, _: Path) -> None:
    with open(folder / "huge.json", "wb") as f:
        f.truncate(100_000_000)  # 100 MB that is never read: the size is known before


def _just_over(folder: Path, _: Path) -> None:
    data = a_report("bulky")
    data["exercises"] = _ids(25_000)
    (folder / "bulky.json").write_text(json.dumps(data), encoding="utf-8")


def _link_to_passwd(folder: Path, _: Path) -> None:
    (folder / "passwd.json").symlink_to("/etc/passwd")


def _link_outside(folder: Path, outside: Path) -> None:
    (outside / "notes.txt").write_text(SECRET * 3, encoding="utf-8")
    (folder / "notes.json").symlink_to(outside / "notes.txt")


def _linked_folder(folder: Path, outside: Path) -> None:
    put(outside, "outsider.json", a_report("outsider", 5))
    (folder / "more").symlink_to(outside, target_is_directory=True)


def _fifo(folder: Path, _: Path) -> None:
    os.mkfifo(folder / "pipe.json")


def _six_fakes(folder: Path, _: Path) -> None:
    for i in range(6):
        put(folder, f"fake{i}.json", a_report(f"fake{i}", len(IDS), course={"version": "0.1.0", "commit": "f" * 40}))


def _twice(change: Callable[[dict[str, object]], None]) -> Callable[[Path, Path], None]:
    return lambda folder, _: put(folder, "twice.json", edited("dup", change))


def _raw(name: str, data: bytes) -> Callable[[Path, Path], None]:
    return lambda folder, _: (folder / name).write_bytes(data)


def _one(name: str, data: object) -> Callable[[Path, Path], None]:
    return lambda folder, _: put(folder, name, data)


def _dup_id(d: dict[str, object]) -> None:
    exercises = d["exercises"]
    assert isinstance(exercises, list)
    exercises.append(dict(exercises[0], solved=True))


GOOD = json.dumps(a_report("bom", 2)).encode("utf-8")
CASES = [
    Case("deep nesting", _raw("deep.json", b"[" * 100_000 + b"]" * 100_000), [("deep.json", "nested far deeper than a report")]),
    Case(
        "nesting inside a field",
        _one("nest.json", a_report("nest", extra=json.loads("[" * 60 + "]" * 60))),
        [("nest.json", "nested far deeper than a report")],
    ),
    Case(
        "an exercise id of 5,000 digits",
        _one("digits.json", edited("digits", lambda d: d["exercises"][0].update(id="1" * 5000 + ".1"))),  # type: ignore[index]
        [("digits.json", "is not a number such as 1.1")],
    ),
    Case(
        "a number of 5,000 digits",
        _raw("number.json", GOOD.replace(b'"seconds": 30.0', b'"seconds": 1' + b"0" * 5000)),
        [("number.json", "5001 digits long")],
    ),
    Case(
        "dollars in a name (matplotlib's maths)",
        _one("josh.json", a_report("Jo$h_$mith")),
        [],
        shown=["Jo$h_$mith"],
        extra_rows=1,
    ),
    Case("two dollars in a name", _one("dd.json", a_report("a$$b $x^2$")), [], shown=["a$$b $x^2$"], extra_rows=1),
    Case("100 MB", _big, [("huge.json", "100.0 MB, far larger than any report")]),
    Case("just over 1 MB of valid-looking ids", _just_over, [("bulky.json", "far larger than any report")]),
    Case("3,000 made-up ids", _one("ids.json", a_report("ids", exercises=_ids(3000))), [("ids.json", "it lists 3000 exercises")]),
    Case(
        "a few made-up ids",
        _one("few.json", edited("few", lambda d: d["exercises"].extend(_ids(5)))),  # type: ignore[attr-defined]
        [("few.json", "5 exercise id(s) this course does not have (99.0, 99.1, 99.2, …): ignored")],
        shown=["few"],
        extra_rows=1,
    ),
    Case(
        "an id with a final newline",
        _one("nl.json", edited("nl", lambda d: d["exercises"][0].update(id="1.1\n"))),  # type: ignore[index]
        [("nl.json", "exercise id '1.1\\n' is not a number such as 1.1")],
    ),
    Case(
        "terminal escapes in a name",
        _one("ansi.json", a_report("\x1b[2J\x1b]0;pwned\x07eve\x9b31m")),
        [],
        shown=["[2J]0;pwnedeve31m"],
        extra_rows=1,
    ),
    Case(
        "a hidden link in an observation",
        _one(
            "osc.json",
            edited("osc", lambda d: d["exercises"][2].update(seen="\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\")),
        ),  # type: ignore[index]
        [],
        shown=["osc"],
        extra_rows=1,
    ),
    Case(
        "a newline in a name", _one("nl-name.json", a_report("mallory\n✅ passed")), [], shown=["mallory ✅ passed"], extra_rows=1
    ),
    Case("a right-to-left override", _one("rlo.json", a_report("bob\u202e52/52")), [], shown=["bob52/52"], extra_rows=1),
    Case(
        "a 20,000-character name",
        _one("long.json", a_report("x" * 20_000)),
        [("long.json", "the learner name is 20000 characters long")],
    ),
    Case(
        "a name with nothing visible",
        _one("blank.json", a_report("\u200b\u200e\u202e")),
        [("blank.json", "has no visible characters")],
    ),
    Case("a link to /etc/passwd", _link_to_passwd, [("passwd.json", "a link, not followed")], never=["root:", "/etc/passwd"]),
    Case("a link to a file outside", _link_outside, [("notes.json", "a link, not followed")], never=[SECRET, "notes.txt"]),
    Case("a link to a folder outside", _linked_folder, [("more", "a link, not followed")], never=["outsider"]),
    Case("a FIFO", _fifo, [("pipe.json", "a FIFO, not a report file")]),
    Case(
        "a second ana from 2099",
        _one("ana-again.json", a_report("ana", len(IDS), ran_at="2099-01-01T00:00:00Z")),
        [("ana-again.json", "in the future"), ("ana-again.json, ana.json", "2 reports claim the learner 'ana'")],
        extra_rows=1,
    ),
    Case(
        "a second ana with an invisible character",
        _one("ana2.json", a_report("ana\u200b", len(IDS))),
        [("ana.json, ana2.json", "2 reports claim the learner 'ana'")],
        extra_rows=1,
    ),
    Case(
        "a second Ana in capitals",
        _one("ANA.json", a_report("ANA", len(IDS))),
        [("ANA.json, ana.json", "2 reports claim the learner 'ANA'")],
        extra_rows=1,
    ),
    Case(
        "a time that is not a time",
        _one("when.json", a_report("when", ran_at="yesterday")),
        [("when.json", "ran_at 'yesterday' is not a time")],
    ),
    Case(
        "a date that does not exist",
        _one("feb.json", a_report("feb", ran_at="2026-02-30T10:00:00Z")),
        [("feb.json", "not a real date")],
    ),
    Case(
        "six fake reports with a made-up commit",
        _six_fakes,
        [("fake0.json", "6 reports made with course version ffffffffffff")],
        shown=["fake5"],
        extra_rows=6,
    ),
    Case(
        "a commit with a final newline",
        _one("commit.json", a_report("commit", course={"version": "0.1.0", "commit": "abcdef1\n"})),
        [("commit.json", "is not a git commit")],
    ),
    Case("UTF-8 with a byte-order mark", _raw("bom.json", codecs.BOM_UTF8 + GOOD), [], shown=["bom"], extra_rows=1),
    Case(
        "UTF-16 from PowerShell 5",
        _raw("ps.json", codecs.BOM_UTF16_LE + GOOD.decode().encode("utf-16-le")),
        [("ps.json", "saved as UTF-16")],
    ),
    Case(
        "not UTF-8", _raw("latin.json", GOOD.replace(b'"bom"', '"Jos\xe9"'.encode("latin-1"))), [("latin.json", "not UTF-8 text")]
    ),
    Case(
        "NaN",
        _raw("nan.json", GOOD.replace(b'"seconds": 30.0', b'"seconds": NaN')),
        [("nan.json", "NaN is not a number JSON allows")],
    ),
    Case(
        "a key given twice",
        _raw("keys.json", GOOD.replace(b'"learner": "bom"', b'"learner": "bom", "learner": "ana"')),
        [("keys.json", "the key 'learner' is given twice")],
    ),
    Case(
        "an exercise listed twice",
        _one("dupid.json", edited("dupid", _dup_id)),
        [("dupid.json", "exercise 1.1 is listed 2 times")],
    ),
    Case("an empty file", _raw("empty.json", b""), [("empty.json", "empty")]),
    Case("cut short", _raw("cut.json", GOOD[: len(GOOD) // 2]), [("cut.json", "not complete JSON")]),
    Case("not a report", _one("hello.json", {"hello": "world"}), [("hello.json", "not a progress report")]),
    Case(
        "a solved that is not a boolean",
        _one("yes.json", edited("yes", lambda d: d["exercises"][0].update(solved="yes"))),  # type: ignore[index]
        [("yes.json", "at exercises/0/solved: 'yes' is not of type 'boolean'")],
    ),
    Case("HTML in a name", _one("tag.json", a_report("<img src=x onerror=alert(1)>")), [], extra_rows=1),  # escaped: see below
    Case("a formula in a name", _one("formula.json", a_report('=HYPERLINK("http://evil.example")')), [], extra_rows=1),
]


def genuine_room(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, solved in GENUINE.items():
        put(folder, f"{name}.json", a_report(name, solved))
    return folder


def run_class(folder: Path, out_dir: Path, **options: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    chosen = classview.Options(paths=(str(folder),), out_dir=out_dir, csv=out_dir / "room.csv", **options)  # type: ignore[arg-type]
    status = classview.main(options=chosen, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_input_gets_one_line_and_the_room_is_shown(case: Case, tmp_path: Path) -> None:
    folder = genuine_room(tmp_path / "reports")
    outside = tmp_path / "outside"
    outside.mkdir()
    case.build(folder, outside)
    status, out, err = run_class(folder, tmp_path / "view")
    assert status == 0, err

    lines = err.splitlines()
    assert all(line.startswith("⚠️  warning: ") for line in lines), err
    assert len(lines) == len(case.lines), err
    for name, phrase in case.lines:
        assert len([line for line in lines if name in line and phrase in line]) == 1, f"{name}, {phrase!r}: {lines}"

    page = (tmp_path / "view" / classview.HTML_NAME).read_text(encoding="utf-8")
    sheet = (tmp_path / "view" / "room.csv").read_text(encoding="utf-8-sig")
    assert (tmp_path / "view" / classview.PNG_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for where, shown in (("terminal", out + err), ("page", page), ("csv", sheet.replace("\r\n", "\n"))):
        assert not CONTROL.search(shown), f"a control or bidi character reached the {where}: {CONTROL.search(shown)!r}"
        for secret in case.never:
            assert secret not in shown, f"{secret!r} reached the {where}"
    table = out.split("By section")[0].splitlines()
    rows = [line for line in table if TIME.search(line)]  # the last block's rows end with the report's time
    assert len(rows) == len(GENUINE) + case.extra_rows, "\n".join(table)
    for name, solved in GENUINE.items():  # the genuine learners, as they were
        assert [row for row in rows if row.startswith(f"{name} ") and f" {solved}/{len(IDS)} " in row], (name, rows)
    for text in case.shown:
        assert text in out, out
    header = out.splitlines()[0]
    assert f", {len(IDS)} exercises" in header  # no report adds a column


def test_names_are_plain_text_in_every_output(tmp_path: Path) -> None:
    """The page escapes a name, the CSV keeps a formula as text, the terminal gets one line per learner."""
    folder = genuine_room(tmp_path / "reports")
    put(folder, "tag.json", a_report("<img src=x onerror=alert(1)>"))
    put(folder, "formula.json", a_report('=HYPERLINK("http://evil.example")'))
    put(folder, "nl.json", a_report("mallory\n✅ passed"))
    status, out, _ = run_class(folder, tmp_path / "view")
    assert status == 0
    page = (tmp_path / "view" / classview.HTML_NAME).read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    rows = list(csv.reader(io.StringIO((tmp_path / "view" / "room.csv").read_text(encoding="utf-8-sig"))))
    formulas = {r[0] for r in rows[1:] if "HYPERLINK" in r[0]}
    assert formulas == {'\'=HYPERLINK("http://evil.example")'}
    assert not [line for line in out.splitlines() if line.startswith("✅ passed")]  # no fake row


def test_every_hostile_input_at_once_leaves_a_room_of_30_shown(tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    for i in range(30):
        put(folder, f"learner{i:02d}.json", a_report(f"learner{i:02d}", i % (len(IDS) + 1)))
    outside = tmp_path / "outside"
    outside.mkdir()
    for case in CASES:
        if case.id not in ("a second ana from 2099", "a second ana with an invisible character", "a second Ana in capitals"):
            case.build(folder, outside)
    status, out, err = run_class(folder, tmp_path / "view")
    assert status == 0
    for i in range(30):
        assert f"learner{i:02d}" in out
    for case in CASES:
        for name, phrase in case.lines:
            if "," not in name and not name.startswith("ana"):
                assert [line for line in err.splitlines() if name in line and phrase in line], (name, phrase)
    assert not CONTROL.search(out + err)


def test_a_huge_file_is_never_read_into_memory(tmp_path: Path) -> None:
    folder = genuine_room(tmp_path / "reports")
    _big(folder, tmp_path)
    tracemalloc.start()
    try:
        room = classview.load([folder])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [x.name for x in room.learners] == sorted(GENUINE)
    assert peak < 20_000_000, f"{peak / 1e6:.0f} MB allocated for a 100 MB file that should not be read"


def test_a_report_outside_the_course_adds_no_column(tmp_path: Path) -> None:
    folder = genuine_room(tmp_path / "reports")
    put(folder, "ids.json", edited("ids", lambda d: d["exercises"].extend(_ids(150))))  # type: ignore[attr-defined]
    room = classview.load([folder])
    assert room.exercises == IDS and "ids" in [x.name for x in room.learners]
    assert [w for w in room.warnings if "150 exercise id(s) this course does not have" in w]
