"""The class view: a generated class of 30 learners with known results, and bad files named, not fatal."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
from pathlib import Path

import pytest

from asynclab import __main__ as cli
from asynclab.course import classview, progress, report

IDS = [r.id for results in progress.expected().values() for r in results]
N = len(IDS)
LEARNERS = 30
COURSE = {"version": "0.1.0", "commit": "a" * 40}


def solved_count(i: int) -> int:
    """Learner i has solved the first solved_count(i) exercises: 0 for learner 0, all of them for learner 29."""
    return round(i * N / (LEARNERS - 1))


def observation(i: int, exercise: str) -> str:
    return f"{exercise}: the loop was blocked" if i % 3 else f"{exercise}: the route returned 500"


def make_report(i: int, *, name: str | None = None, course: dict[str, str | None] = COURSE, ran_at: str = "2026-11-30T10:00:00Z") -> dict[str, object]:
    exercises = [
        {"id": e, "title": f"title {e}", "section": "s", "notebook": "nb.ipynb", "solved": j < solved_count(i),
         "seen": "" if j < solved_count(i) else observation(i, e), "seconds": 3.5}
        for j, e in enumerate(IDS)
    ]
    return {"format": report.FORMAT, "course": course, "learner": name or f"learner{i:02d}", "ran_at": ran_at, "seconds": 30.0,
            "timing": "notebook", "solved": solved_count(i), "total": N, "exercises": exercises, "troubles": []}


def write_class(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(LEARNERS):
        (folder / f"learner{i:02d}.json").write_text(json.dumps(make_report(i)), encoding="utf-8")
    return folder


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_generated_class_of_30_gives_the_expected_table_counts_and_stuck_list(tmp_path: Path) -> None:
    room = classview.load([write_class(tmp_path / "room")])
    assert room.warnings == []
    assert [x.name for x in room.learners] == [f"learner{i:02d}" for i in range(LEARNERS)]
    assert room.exercises == IDS
    for i, learner in enumerate(room.learners):
        assert learner.count(room.exercises) == solved_count(i)
        assert [room.mark(learner, e) for e in IDS] == [classview.PASSED] * solved_count(i) + [classview.NOT_YET] * (N - solved_count(i))
    for j, e in enumerate(IDS):
        assert room.solved_by(e) == sum(solved_count(i) > j for i in range(LEARNERS))

    stuck = room.stuck(3)
    assert [s.exercise for s in stuck] == IDS[-1:-4:-1]  # the last exercises are the least solved
    for s in stuck:
        missing = [i for i in range(LEARNERS) if solved_count(i) <= IDS.index(s.exercise)]
        assert s.not_solved == len(missing)
        assert s.observation == f"{s.exercise}: the loop was blocked"  # two learners in three saw this one
        assert s.sharing == sum(i % 3 != 0 for i in missing)

    text = classview.text(room, width=1000)  # one block: every exercise on one line
    assert "learner00" in text and "✅ passed" in text and "❌ not yet" in text
    row = next(line for line in text.splitlines() if line.startswith("learner15"))
    assert row.count("✅ passed") + row.count("❌ not yet") <= N and row.endswith(f"{solved_count(15)}/{N}")
    assert f"{stuck[0].not_solved} of {LEARNERS} have not solved it" in text


def test_the_picture_and_the_page(tmp_path: Path) -> None:
    room = classview.load([write_class(tmp_path / "room")])
    png = classview.heatmap_png(room)
    assert png_size(png) == classview.picture_size(LEARNERS, N)
    width, height = png_size(png)
    assert width >= N * classview.CELL_IN * classview.DPI and height >= LEARNERS * classview.ROW_IN * classview.DPI
    page = classview.html_page(room, png)
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == png  # self-contained: the picture is inside
    assert page.count("<tr><th>learner") == LEARNERS + 1  # the header row, then one row each
    assert page.count("✅ passed") == sum(map(solved_count, range(LEARNERS)))
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere


def test_the_command_writes_the_png_and_the_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_class(tmp_path / "room")
    assert cli.main(["class", str(folder), "--out", str(tmp_path / "view")]) == 0
    shown = capsys.readouterr()
    assert f"{LEARNERS} learners, {N} exercises" in shown.out and "Where the room is stuck" in shown.out
    assert shown.err == ""
    assert png_size((tmp_path / "view" / classview.PNG_NAME).read_bytes()) == classview.picture_size(LEARNERS, N)
    assert (tmp_path / "view" / classview.HTML_NAME).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


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
    again = make_report(29, name="learner07", ran_at="2026-11-30T11:00:00Z")  # learner07 ran it again later
    (folder / "learner07-again.json").write_text(json.dumps(again), encoding="utf-8")

    room = classview.load([folder, tmp_path / "missing.json"])
    by_file = {Path(w.split(":", 1)[0]).name: w for w in room.warnings}
    assert sorted(by_file) == sorted(["cut-short.json", "hand-edited.json", "not-a-report.json", "older.json", "learner07.json", "missing.json"])
    assert all("\n" not in w for w in room.warnings)
    assert "not complete JSON" in by_file["cut-short.json"]
    assert "exercises/0/solved" in by_file["hand-edited.json"]
    assert "course version bbbbbbbbbbbb" in by_file["older.json"] and "shown anyway" in by_file["older.json"]
    assert "second report for 'learner07'" in by_file["learner07.json"] and "learner07-again.json" in by_file["learner07.json"]

    names = [x.name for x in room.learners]
    assert len(names) == LEARNERS + 1 and "olderclone" in names and "edited" not in names
    seven = next(x for x in room.learners if x.name == "learner07")
    assert seven.count(room.exercises) == N  # the newer report won
    assert room.version == "a" * 40

    out, err = io.StringIO(), io.StringIO()
    assert classview.main([str(folder)], out_dir=tmp_path / "view", out=out, err=err) == 0
    assert len(err.getvalue().splitlines()) == 5 and all(line.startswith("⚠️  warning: ") for line in err.getvalue().splitlines())
    assert "olderclone" in out.getvalue()


def test_no_usable_report_says_so(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert classview.main([str(tmp_path)], out_dir=tmp_path, out=out, err=err) == 1
    assert "x.json" in err.getvalue() and "No usable report" in err.getvalue()
    assert not (tmp_path / classview.PNG_NAME).exists()


def test_names_and_observations_are_escaped_in_the_page(tmp_path: Path) -> None:
    data = make_report(1, name="<script>alert(1)</script>")
    (tmp_path / "x.json").write_text(json.dumps(data), encoding="utf-8")
    room = classview.load([tmp_path])
    page = classview.html_page(room, classview.heatmap_png(room))
    assert "<script>" not in page and "&lt;script&gt;" in page
