"""The class view: a generated class of 30 learners with known results, and what an instructor asks of it.

The frontier and --upto, the roster and who is absent, hidden names, the CSV gradebook, a notebook
that did not run, conflicts, --watch, and a drop folder the instructor may not list. Hostile
reports have their own table: tests/test_room_hostile.py.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import math
import os
import re
import select
import shutil
import struct
import tempfile
from pathlib import Path

import pytest

from asynclab import __main__ as cli
from asynclab.course import classview, progress, report
from asynclab.course.room import model, reading, show

IDS = [r.id for results in progress.expected().values() for r in results]
N = len(IDS)
LEARNERS = 30
COURSE = {"version": "0.1.0", "commit": "a" * 40}


@pytest.fixture(autouse=True)
def _instructor_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The instructor's own course version, pinned (HEAD may move while the suite runs)."""
    monkeypatch.setattr(model, "own_version", lambda: COURSE["commit"])


def solved_count(i: int) -> int:
    """Learner i has solved the first solved_count(i) exercises: 0 for learner 0, all of them for learner 29."""
    return round(i * N / (LEARNERS - 1))


def observation(i: int, exercise: str) -> str:
    return f"{exercise}: the loop was blocked" if i % 3 else f"{exercise}: the route returned 500"


def make_report(
    i: int, *, name: str | None = None, course: dict[str, str | None] = COURSE, ran_at: str = "2026-11-30T10:00:00Z"
) -> dict[str, object]:
    exercises = [
        {
            "id": e,
            "title": f"title {e}",
            "section": "s",
            "notebook": "nb.ipynb",
            "solved": j < solved_count(i),
            "seen": "" if j < solved_count(i) else observation(i, e),
            "seconds": 3.5,
        }
        for j, e in enumerate(IDS)
    ]
    return {
        "format": report.FORMAT,
        "course": course,
        "learner": name or f"learner{i:02d}",
        "ran_at": ran_at,
        "seconds": 30.0,
        "timing": "notebook",
        "solved": solved_count(i),
        "total": N,
        "exercises": exercises,
        "troubles": [],
    }


def write_class(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(LEARNERS):
        (folder / f"learner{i:02d}.json").write_text(json.dumps(make_report(i)), encoding="utf-8")
    return folder


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def run(options: classview.Options) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = classview.main(options=options, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_a_generated_class_of_30_gives_the_expected_table_counts_and_stuck_list(tmp_path: Path) -> None:
    room = classview.load([write_class(tmp_path / "room")])
    assert room.warnings == []
    assert [x.name for x in room.learners] == [f"learner{i:02d}" for i in range(LEARNERS)]
    assert room.exercises == IDS
    for i, learner in enumerate(room.learners):
        assert learner.count(room.exercises) == solved_count(i)
        assert [room.mark(learner, e) for e in IDS] == [classview.PASSED] * solved_count(i) + [classview.NOT_YET] * (
            N - solved_count(i)
        )
    solved_by = [sum(solved_count(i) > j for i in range(LEARNERS)) for j in range(N)]
    assert [room.solved_by(e) for e in IDS] == solved_by

    # The frontier: the furthest exercise half the room has solved. Stuck looks no further.
    frontier = max(j for j in range(N) if solved_by[j] >= math.ceil(LEARNERS / 2))
    assert room.frontier() == IDS[frontier]
    stuck = room.stuck(3)
    assert [s.exercise for s in stuck] == [IDS[frontier], IDS[frontier - 1], IDS[frontier - 2]]
    for s in stuck:
        missing = [i for i in range(LEARNERS) if solved_count(i) <= IDS.index(s.exercise)]
        assert s.not_solved == len(missing)
        assert s.observation == f"{s.exercise}: the loop was blocked"  # two learners in three saw this one
        assert s.sharing == sum(i % 3 != 0 for i in missing)

    shown = classview.text(room, width=1000)  # one block: every exercise on one line
    assert "learner00" in shown and "✅ passed" in shown and "❌ not yet" in shown
    row = next(line for line in shown.splitlines() if line.startswith("learner15"))
    assert f" {solved_count(15)}/{N} " in row and re.search(r" \d\d:\d\d$", row)
    assert f"{stuck[0].not_solved} of {LEARNERS} have not solved it" in shown
    assert f"up to {IDS[frontier]}, the furthest exercise half the room has solved" in shown
    assert show.SELF_REPORTED in shown


def test_upto_sets_the_frontier(tmp_path: Path) -> None:
    folder = write_class(tmp_path / "room")
    room = classview.load([folder], upto=IDS[-1])
    assert [s.exercise for s in room.stuck(3)] == IDS[-1:-4:-1]  # up to the end: the last exercises are the least solved
    room = classview.load([folder], upto="2.3")
    assert [s.exercise for s in room.stuck(3)] == ["2.3", "2.2", "2.1"]
    status, out, err = run(classview.Options(paths=(str(folder),), out_dir=tmp_path / "view", upto="2.3"))
    assert status == 0 and "Where the room is stuck, up to 2.3 (your --upto)" in out
    status, _, err = run(classview.Options(paths=(str(folder),), out_dir=tmp_path / "view", upto="9.99"))
    assert status == 2 and err.startswith("--upto 9.99: the course has no such exercise; it has 1.1, 1.2")


def test_the_picture_and_the_page(tmp_path: Path) -> None:
    room = classview.load([write_class(tmp_path / "room")])
    png = classview.heatmap_png(room)
    assert png_size(png) == classview.picture_size(LEARNERS, N)
    width, height = png_size(png)
    assert width >= N * classview.CELL_IN * classview.DPI and height >= LEARNERS * classview.ROW_IN * classview.DPI
    page = classview.html_page(room, png)
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == png  # self-contained: the picture is inside
    assert page.count('<tr><th class="who" title=') == LEARNERS
    assert page.count('class="m passed"') == sum(map(solved_count, range(LEARNERS)))
    assert "Self-reported" in page and 'http-equiv="refresh"' not in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    section_row = re.search(r"<tr><th class=\"who sec\">section</th>(.*?)</tr>", page)
    assert section_row and sum(int(c) for c in re.findall(r'colspan="(\d+)"', section_row.group(1))) == N + 2


def test_the_command_writes_the_png_the_html_and_the_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_class(tmp_path / "room")
    assert cli.main(["class", str(folder), "--out", str(tmp_path / "view"), "--csv", str(tmp_path / "book.csv")]) == 0
    shown = capsys.readouterr()
    assert f"{LEARNERS} learners, {N} exercises" in shown.out and "Where the room is stuck" in shown.out
    assert "By section" in shown.out and "1 · " in shown.out
    assert shown.err == ""
    assert png_size((tmp_path / "view" / classview.PNG_NAME).read_bytes()) == classview.picture_size(LEARNERS, N)
    assert (tmp_path / "view" / classview.HTML_NAME).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    rows = list(csv.DictReader(io.StringIO((tmp_path / "book.csv").read_text(encoding="utf-8-sig"))))
    assert len(rows) == LEARNERS * N
    assert list(rows[0]) == [
        "learner",
        "exercise",
        "title",
        "section",
        "status",
        "solved",
        "seconds",
        "observation",
        "reported_at",
        "source",
    ]
    fifteen = [r for r in rows if r["learner"] == "learner15"]
    assert [r["exercise"] for r in fifteen] == IDS
    assert sum(r["solved"] == "1" for r in fifteen) == solved_count(15)
    first_unsolved = fifteen[solved_count(15)]
    assert first_unsolved["status"] == "not yet" and first_unsolved["observation"] == observation(15, first_unsolved["exercise"])
    assert first_unsolved["seconds"] == "3.5" and first_unsolved["reported_at"] == "2026-11-30T10:00:00Z"
    assert first_unsolved["title"] == model.course_exercises()[solved_count(15)].title  # the course's title, not the report's


def test_bad_files_are_named_in_one_line_each_and_the_rest_is_shown(tmp_path: Path) -> None:
    folder = write_class(tmp_path / "room")
    good = json.dumps(make_report(3))
    (folder / "cut-short.json").write_text(good[: len(good) // 2], encoding="utf-8")
    edited = make_report(4, name="edited")
    edited["exercises"][0]["solved"] = "yes"  # type: ignore[index]
    (folder / "hand-edited.json").write_text(json.dumps(edited), encoding="utf-8")
    (folder / "not-a-report.json").write_text(json.dumps({"hello": "world"}), encoding="utf-8")
    other = make_report(5, name="olderclone", course={"version": "0.1.0", "commit": "b" * 40})
    (folder / "older.json").write_text(json.dumps(other), encoding="utf-8")
    again = make_report(29, name="learner07", ran_at="2026-11-30T11:00:00Z")  # a second report claiming learner07
    (folder / "learner07-again.json").write_text(json.dumps(again), encoding="utf-8")

    room = classview.load([folder, tmp_path / "missing.json"])
    assert len(room.warnings) == 6 and all("\n" not in w for w in room.warnings)
    said = "\n".join(room.warnings)
    assert re.search(r"cut-short.json: not complete JSON", said)
    assert re.search(r"hand-edited.json: .*exercises/0/solved", said)
    assert re.search(r"not-a-report.json: not a progress report", said)
    assert re.search(r"older.json: made with course version bbbbbbbbbbbb, yours is aaaaaaaaaaaa; shown anyway", said)
    assert "2 reports claim the learner 'learner07' (learner07-again.json, learner07.json): all shown" in said
    assert re.search(r"missing.json: no such file or folder", said)

    names = [x.name for x in room.learners]
    assert len(names) == LEARNERS + 2 and "olderclone" in names and "edited" not in names
    sevens = [x for x in room.learners if x.name == "learner07"]
    assert sorted(x.count(room.exercises) for x in sevens) == [solved_count(7), N]  # both shown: neither replaced the other
    assert all(x.claims == 2 for x in sevens) and room.conflicts == 1
    assert room.version == "a" * 40

    status, out, err = run(classview.Options(paths=(str(folder),), out_dir=tmp_path / "view"))
    assert status == 0
    assert len(err.splitlines()) == 5 and all(line.startswith("⚠️  warning: ") for line in err.splitlines())
    assert "olderclone" in out and out.count("learner07 ⚠️ conflict") == 2 * out.count("\nsolved by")  # two rows in each block
    assert out.startswith(f"{LEARNERS + 1} learners in {LEARNERS + 2} reports (1 name claimed more than once)")


def test_no_usable_report_says_so(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{", encoding="utf-8")
    status, _, err = run(classview.Options(paths=(str(tmp_path),), out_dir=tmp_path))
    assert status == 1
    assert "x.json" in err and "No usable report" in err
    assert not (tmp_path / classview.PNG_NAME).exists()


def test_files_or_a_hub_not_both_nor_neither(tmp_path: Path) -> None:
    for options in (
        classview.Options(out_dir=tmp_path),
        classview.Options(paths=("x",), hub="http://127.0.0.1:9", out_dir=tmp_path),
    ):
        status, _, err = run(options)
        assert status == 2 and err == "give report files or folders, or --hub URL (not both)\n"


def test_names_and_observations_are_escaped_in_the_page(tmp_path: Path) -> None:
    data = make_report(1, name="<script>alert(1)</script>")
    (tmp_path / "x.json").write_text(json.dumps(data), encoding="utf-8")
    room = classview.load([tmp_path])
    page = classview.html_page(room, classview.heatmap_png(room))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_roster_shows_who_has_not_reported(tmp_path: Path) -> None:
    folder = tmp_path / "room"
    folder.mkdir()
    for i in (1, 2, 3):
        (folder / f"learner{i:02d}.json").write_text(json.dumps(make_report(i)), encoding="utf-8")
    (folder / "guest.json").write_text(json.dumps(make_report(4, name="guest")), encoding="utf-8")
    roster = tmp_path / "names.txt"
    roster.write_bytes("\ufeff# the Tuesday group\nlearner01\nLearner02\n\nlearner03\nzoë\nyusuf\n".encode())
    status, out, err = run(
        classview.Options(paths=(str(folder),), out_dir=tmp_path / "view", roster=roster, csv=tmp_path / "b.csv")
    )
    assert status == 0
    assert "Not reported yet (2): yusuf, zoë" in out and ", 2 absent, " in out.splitlines()[0]
    assert err.splitlines() == [f"⚠️  warning: {folder / 'guest.json'}: 'guest' is not on the roster; shown anyway"]
    page = (tmp_path / "view" / classview.HTML_NAME).read_text(encoding="utf-8")
    assert page.count("absent: no report yet") == 2 and "<bdi>zoë</bdi>" in page
    rows = list(csv.DictReader(io.StringIO((tmp_path / "b.csv").read_text(encoding="utf-8-sig"))))
    assert [r["status"] for r in rows if r["learner"] == "zoë"] == ["absent"] * N

    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n", encoding="utf-8")
    status, _, err = run(classview.Options(paths=(str(folder),), out_dir=tmp_path / "view", roster=empty))
    assert status == 2 and "no names in it" in err


def test_hidden_names_for_the_projector(tmp_path: Path) -> None:
    folder = write_class(tmp_path / "room")
    (folder / "dup.json").write_text(json.dumps(make_report(3, name="learner05", ran_at="bad")), encoding="utf-8")
    status, out, err = run(classview.Options(paths=(str(folder),), out_dir=tmp_path / "view", hide_names=True))
    assert status == 0 and "dup.json" in err  # the terminal that runs it still says which file
    page = (tmp_path / "view" / classview.HTML_NAME).read_text(encoding="utf-8")
    for shown in (out, page):
        assert "learner0" not in shown and "learner1" not in shown and "learner2" not in shown
    assert "dup.json" not in page and "1 note(s), in the terminal that made this page" in page
    rows = [
        line for line in out.split("By section")[0].splitlines() if re.match(r"#\d+ ", line) and re.search(r"\d\d:\d\d$", line)
    ]
    counts = [int(re.search(r" (\d+)/\d+ ", r).group(1)) for r in rows]  # type: ignore[union-attr]
    assert [r.split()[0] for r in rows] == [f"#{i}" for i in range(1, LEARNERS + 1)]
    assert counts == sorted(counts, reverse=True) and counts[0] == N  # sorted by progress: 0/25 is last, unnamed


def test_sorted_by_progress(tmp_path: Path) -> None:
    room = classview.load([write_class(tmp_path / "room")], by_progress=True)
    assert [x.name for x in room.learners][:2] == ["learner29", "learner28"] and room.learners[-1].name == "learner00"


def test_a_notebook_that_did_not_run_is_shown_in_the_table(tmp_path: Path) -> None:
    data = make_report(2, name="broke")
    for e in data["exercises"]:  # type: ignore[attr-defined]
        if e["id"].startswith("2."):
            e["notebook"] = "02-exercises-async-dependencies.ipynb"
            e["seen"] = "could not be checked: cell 3 failed first (it raised NameError: name 'x' is not defined)"
    data["troubles"] = [
        {"notebook": "02-exercises-async-dependencies.ipynb", "cell": 3, "what": "it raised NameError: name 'x' is not defined"},
        {"notebook": "03-exercises-background-tasks.ipynb", "cell": 0, "what": "the notebook is missing"},  # not started: not yet
    ]
    (tmp_path / "broke.json").write_text(json.dumps(data), encoding="utf-8")
    room = classview.load([tmp_path], upto="2.3")
    broke = room.learners[0]
    assert [room.mark(broke, e) for e in ("1.1", "1.2", "2.1", "2.2", "2.3", "3.1")] == [classview.PASSED] * 2 + [
        classview.BROKEN
    ] * 3 + [classview.NOT_YET]
    assert broke.seen["2.1"] == "cell 3: it raised NameError: name 'x' is not defined"
    shown = classview.text(room, width=1000)
    assert "⚠️ broken" in shown and "saw: cell 3: it raised NameError" in shown
    page = classview.html_page(room, classview.heatmap_png(room))
    assert page.count('class="m broken"') == 3


def test_watch_rewrites_the_page_which_reloads_itself(tmp_path: Path) -> None:
    folder = write_class(tmp_path / "room")
    pages: list[str] = []

    def sleep(seconds: float) -> None:
        assert seconds == 20
        pages.append((tmp_path / "view" / classview.HTML_NAME).read_text(encoding="utf-8"))
        (folder / "late.json").write_text(json.dumps(make_report(5, name="late")), encoding="utf-8")  # someone reports

    out, err = io.StringIO(), io.StringIO()
    options = classview.Options(paths=(str(folder),), out_dir=tmp_path / "view", watch=True, every=20)
    assert classview.main(options=options, out=out, err=err, sleep=sleep, rounds=2) == 0
    final = (tmp_path / "view" / classview.HTML_NAME).read_text(encoding="utf-8")
    assert '<meta http-equiv="refresh" content="20">' in pages[0] and "late" not in pages[0]
    assert "<bdi>late</bdi>" in final and "again every 20 s" in final
    assert out.getvalue().count("Wrote ") == 2 and "(again in 20 s; Ctrl-C stops)" in out.getvalue()
    assert run(classview.Options(paths=(str(folder),), watch=True, every=1))[0] == 2


def test_the_outputs_are_not_written_through_a_link(tmp_path: Path) -> None:
    folder = write_class(tmp_path / "room")
    view = tmp_path / "view"
    view.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    (view / classview.HTML_NAME).symlink_to(victim)
    status, _, err = run(classview.Options(paths=(str(folder),), out_dir=view))
    assert status == 2 and "class-view.html already exists and is a link" in err
    assert victim.read_text(encoding="utf-8") == "keep me"


def test_a_report_time_is_shown_in_this_machines_time() -> None:
    now = dt.datetime(2026, 11, 30, 12, 0).astimezone()  # noon here
    assert show.clock(now - dt.timedelta(minutes=18), now) == "11:42"
    assert show.clock(dt.datetime(2026, 11, 2, 9, 5).astimezone(), now) == "02 Nov 09:05"
    assert show.clock(None, now) == ""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root, to become another user")
def test_an_instructor_who_may_not_list_the_drop_folder_is_told_why(request: pytest.FixtureRequest) -> None:
    """The guide's drop folder is chmod 1733: learners write, only root and its owner list it."""
    import pwd  # noqa: F401 - imported before the fork: the child only runs code already loaded

    drop = Path(tempfile.mkdtemp(prefix="asynclab-drop-", dir="/tmp"))  # pytest's own folders are closed to others
    request.addfinalizer(lambda: shutil.rmtree(drop, ignore_errors=True))
    (drop / "ana.json").write_text(json.dumps(make_report(3, name="ana")), encoding="utf-8")
    drop.chmod(0o1733)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            os.setgid(65534)
            os.setuid(65534)
            warnings: list[str] = []
            raws = reading.gather([drop], warnings)
            os.write(write, json.dumps({"raws": len(raws), "warnings": warnings}).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 60)
        assert ready, "the child never answered"
        answer = json.loads(os.read(read, 100_000))
    finally:
        os.close(read)
        os.waitpid(child, 0)
    assert answer["raws"] == 0
    said = (
        f"{drop}: you may not list this folder (mode 1733, owner root). A drop folder made with chmod 1733 lets learners "
        "write into it but only its owner and root list and read it: run the command as the folder's owner, or with sudo"
    )
    assert answer["warnings"] == [said]
