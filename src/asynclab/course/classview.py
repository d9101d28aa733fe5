"""``python -m asynclab class PATH...``: a room's progress at a glance, from the learners' JSON reports.

Reads the reports that ``python -m asynclab progress --json`` (or ``--report``) wrote, from files
or folders of them, and shows

- a learner × exercise table, a word beside every mark ("✅ passed", "❌ not yet"), with the count
  solved per learner and per exercise;
- where the room is stuck: the exercises most learners have not solved, each with the check's
  most common observation (what to explain next);
- the same as a heatmap PNG and a self-contained HTML page (the PNG inlined) to project.

A file that cannot be used (not JSON, cut short, hand-edited out of shape) gets a one-line warning
naming it and is left out; a report from another course version or a second report for the same
learner gets a warning too. Everything else is still shown.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import shutil
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from asynclab.course import report as report_format
from asynclab.course.checking import order

PASSED, NOT_YET, NO_RESULT = "✅ passed", "❌ not yet", "– no report"
PNG_NAME, HTML_NAME = "class-view.png", "class-view.html"


@dataclass
class Learner:
    name: str
    source: Path
    ran_at: str
    version: str
    solved: dict[str, bool]  # exercise id -> passed
    seen: dict[str, str]  # exercise id -> the check's observation when it did not pass

    def count(self, exercises: Sequence[str]) -> int:
        return sum(self.solved.get(e, False) for e in exercises)


@dataclass
class Stuck:
    exercise: str
    title: str
    not_solved: int
    observation: str  # the most common one among those who have not solved it
    sharing: int  # how many of them saw exactly that


@dataclass
class Room:
    learners: list[Learner]
    exercises: list[str]
    titles: dict[str, str]
    version: str
    warnings: list[str] = field(default_factory=list)

    def mark(self, learner: Learner, exercise: str) -> str:
        if exercise not in learner.solved:
            return NO_RESULT
        return PASSED if learner.solved[exercise] else NOT_YET

    def solved_by(self, exercise: str) -> int:
        return sum(learner.solved.get(exercise, False) for learner in self.learners)

    def stuck(self, top: int = 3) -> list[Stuck]:
        """The ``top`` exercises the most learners have not solved (at least one), in course order on ties."""
        ranked = []
        for exercise in self.exercises:
            missing = [learner for learner in self.learners if exercise in learner.solved and not learner.solved[exercise]]
            if not missing:
                continue
            seen = Counter(learner.seen.get(exercise, "") or "(no observation recorded)" for learner in missing)
            observation, sharing = seen.most_common(1)[0]
            ranked.append(Stuck(exercise, self.titles.get(exercise, ""), len(missing), observation, sharing))
        ranked.sort(key=lambda s: -s.not_solved)  # stable: course order among equals
        return ranked[:top]


def _files(paths: Iterable[str | Path], warnings: list[str]) -> list[Path]:
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.json") if p.is_file())
            if not inside:
                warnings.append(f"{path}: no .json reports in this folder")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            warnings.append(f"{path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [Path(p) for p in unique]


def _problem(data: Any) -> str | None:
    """Why ``data`` is not a report the class view can use (one line), or None."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(report_format.SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    message = error.message if len(error.message) <= 100 else error.message[:97] + "..."
    return f"at {where}: {message}"


def _version(data: dict[str, Any]) -> str:
    course = data["course"]
    return str(course.get("commit") or course["version"])


def load(paths: Iterable[str | Path]) -> Room:
    """Read every report under ``paths``; a file that cannot be used becomes a warning, never an error."""
    warnings: list[str] = []
    reports: list[tuple[Path, dict[str, Any]]] = []
    for path in _files(paths, warnings):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            warnings.append(f"{path}: cannot be read ({type(exc).__name__}); left out")
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            warnings.append(f"{path}: not complete JSON (cut short or hand-edited?): {exc.msg} at line {exc.lineno}; left out")
            continue
        problem = _problem(data)
        if problem is not None:
            warnings.append(f"{path}: not a progress report in the {report_format.FORMAT} format, {problem}; left out")
            continue
        reports.append((path, data))

    versions = Counter(_version(data) for _, data in reports)
    room_version = versions.most_common(1)[0][0] if versions else ""
    by_name: dict[str, Learner] = {}
    titles: dict[str, str] = {}
    exercises: set[str] = set()
    for path, data in reports:
        version = _version(data)
        if version != room_version:
            warnings.append(f"{path}: made with course version {version[:12]}, most of the room has {room_version[:12]}; shown anyway")
        entries = data["exercises"]
        learner = Learner(
            name=data["learner"],
            source=path,
            ran_at=data["ran_at"],
            version=version,
            solved={e["id"]: e["solved"] for e in entries},
            seen={e["id"]: e["seen"] for e in entries if not e["solved"]},
        )
        if version == room_version:
            for e in entries:
                exercises.add(e["id"])
                titles.setdefault(e["id"], e.get("title", ""))
        key = learner.name.casefold()
        if key in by_name:
            kept, dropped = sorted((by_name[key], learner), key=lambda x: x.ran_at, reverse=True)
            warnings.append(f"{dropped.source}: a second report for {learner.name!r} (also in {kept.source.name}); showing the newer, {kept.source.name}")
            by_name[key] = kept
        else:
            by_name[key] = learner
    if not exercises:  # every report is from another version: show theirs
        exercises = {e for learner in by_name.values() for e in learner.solved}
    learners = sorted(by_name.values(), key=lambda x: x.name.casefold())
    return Room(learners, sorted(exercises, key=order), titles, room_version, warnings)


# --- Text ----------------------------------------------------------------------------------------


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: emoji such as ✅ and ❌ take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def table(room: Room, width: int = 0) -> str:
    """The learner × exercise table, split into blocks of exercises that fit in ``width`` columns."""
    width = width or max(100, shutil.get_terminal_size((160, 24)).columns)
    names = max([_width("learner"), _width("solved by"), *(_width(x.name) for x in room.learners)])
    cell = max(_width(s) for s in (PASSED, NOT_YET, NO_RESULT)) + 2
    total = len(room.exercises)
    per_block = max(1, (width - names - 10) // cell)
    blocks = [room.exercises[i : i + per_block] for i in range(0, total, per_block)] or [[]]
    lines: list[str] = []
    for number, block in enumerate(blocks):
        last = number == len(blocks) - 1
        header = _pad("learner", names + 2) + "".join(_pad(e, cell) for e in block) + ("solved" if last else "")
        lines += [header, "-" * _width(header)]
        for learner in room.learners:
            row = _pad(learner.name, names + 2) + "".join(_pad(room.mark(learner, e), cell) for e in block)
            lines.append(row + (f"{learner.count(room.exercises)}/{total}" if last else ""))
        lines.append(_pad("solved by", names + 2) + "".join(_pad(f"{room.solved_by(e)}/{len(room.learners)}", cell) for e in block))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def stuck_text(room: Room, top: int = 3) -> str:
    items = room.stuck(top)
    if not items:
        return "Where the room is stuck: nowhere, every learner has solved every exercise.\n"
    lines = ["Where the room is stuck (explain these next):"]
    for s in items:
        lines.append(f"  {s.exercise} {s.title}: {s.not_solved} of {len(room.learners)} have not solved it")
        lines.append(f"      {s.sharing} of them saw: {s.observation}")
    return "\n".join(lines) + "\n"


def text(room: Room, top: int = 3, width: int = 0) -> str:
    head = f"{len(room.learners)} learners, {len(room.exercises)} exercises (course version {room.version[:12] or 'unknown'})\n\n"
    return head + table(room, width) + "\n" + stuck_text(room, top)


# --- Picture -------------------------------------------------------------------------------------

DPI = 100
CELL_IN = 0.42  # inches per exercise column
ROW_IN = 0.28  # inches per learner row
LEFT_IN, RIGHT_IN, TOP_IN, BOTTOM_IN = 1.9, 0.9, 1.0, 1.0
COLOURS = {PASSED: "#1b7837", NOT_YET: "#f4a582", NO_RESULT: "#d9d9d9"}  # green / light orange / grey


def picture_size(learners: int, exercises: int) -> tuple[int, int]:
    """The heatmap's size in pixels for a room of this shape."""
    width = LEFT_IN + RIGHT_IN + CELL_IN * max(exercises, 1)
    height = TOP_IN + BOTTOM_IN + ROW_IN * max(learners, 1)
    return round(width * DPI), round(height * DPI)


def heatmap_png(room: Room) -> bytes:
    """The table as a heatmap: a row per learner, a column per exercise; ✓ passed, ✗ not yet, grey no report."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    marks = [PASSED, NOT_YET, NO_RESULT]
    rows, cols = max(len(room.learners), 1), max(len(room.exercises), 1)
    grid = [[marks.index(room.mark(learner, e)) for e in room.exercises] or [2] for learner in room.learners] or [[2] * cols]
    w_px, h_px = picture_size(len(room.learners), len(room.exercises))
    fig = Figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI)
    w_in, h_in = w_px / DPI, h_px / DPI
    ax = fig.add_axes((LEFT_IN / w_in, BOTTOM_IN / h_in, CELL_IN * cols / w_in, ROW_IN * rows / h_in))
    ax.imshow(grid, cmap=ListedColormap([COLOURS[m] for m in marks]), vmin=0, vmax=2, aspect="auto", interpolation="nearest")
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            ax.text(c, r, "✓✗ "[value], ha="center", va="center", fontsize=8, color="white" if value == 0 else "#5a2a0a")
    ax.set_xticks(range(cols), room.exercises or [""], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(rows), [learner.name for learner in room.learners] or [""], fontsize=8)
    ax.set_xticks([x - 0.5 for x in range(1, cols)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, rows)], minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="both", length=0)
    for r, learner in enumerate(room.learners):
        ax.text(cols - 0.3, r, f"  {learner.count(room.exercises)}/{len(room.exercises)}", ha="left", va="center", fontsize=8)
    for c, exercise in enumerate(room.exercises):
        ax.text(c, rows - 0.3, f"{room.solved_by(exercise)}", ha="center", va="top", fontsize=8)
    ax.set_xlabel("exercise (number below: learners who solved it)", fontsize=8, labelpad=14)
    fig.legend(
        handles=[Patch(color=COLOURS[m], label=m.split(" ", 1)[1]) for m in marks],
        loc="lower center", ncols=3, fontsize=8, frameon=False,
    )
    fig.suptitle(f"Class view: {len(room.learners)} learners, {len(room.exercises)} exercises", fontsize=10, y=1 - 0.15 / h_in)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


# --- HTML ----------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.45em; text-align: left; white-space: nowrap; }
td.passed { background: #d9f0d3; } td.not-yet { background: #fde0cf; } td.no-report { background: #eee; color: #666; }
.warnings li { color: #8a4b00; } img { max-width: 100%; }
"""


def html_page(room: Room, png: bytes, top: int = 3) -> str:
    """One file to project: the table, the stuck list, the warnings and the heatmap (inlined as base64)."""
    e = html.escape
    classes = {PASSED: "passed", NOT_YET: "not-yet", NO_RESULT: "no-report"}
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Class view</title>',
        f"<style>{_STYLE}</style></head><body>",
        (
            f"<h1>Class view</h1><p>{len(room.learners)} learners, {len(room.exercises)} exercises; "
            f"course version {e(room.version[:12] or 'unknown')}; made {made}.</p>"
        ),
        "<h2>Where the room is stuck</h2>",
    ]
    items = room.stuck(top)
    if items:
        parts.append("<ol>")
        for s in items:
            parts.append(
                f"<li><b>{e(s.exercise)} {e(s.title)}</b>: {s.not_solved} of {len(room.learners)} have not solved it. "
                f"{s.sharing} of them saw: <q>{e(s.observation)}</q></li>"
            )
        parts.append("</ol>")
    else:
        parts.append("<p>Nowhere: every learner has solved every exercise.</p>")
    parts.append("<h2>Who has solved what</h2><table><thead><tr><th>learner</th>")
    parts += [f'<th title="{e(room.titles.get(x, ""))}">{e(x)}</th>' for x in room.exercises]
    parts.append("<th>solved</th></tr></thead><tbody>")
    for learner in room.learners:
        parts.append(f"<tr><th>{e(learner.name)}</th>")
        for x in room.exercises:
            mark = room.mark(learner, x)
            tip = f' title="{e(learner.seen[x])}"' if learner.seen.get(x) else ""
            parts.append(f'<td class="{classes[mark]}"{tip}>{e(mark)}</td>')
        parts.append(f"<td>{learner.count(room.exercises)}/{len(room.exercises)}</td></tr>")
    parts.append("</tbody><tfoot><tr><th>solved by</th>")
    parts += [f"<td>{room.solved_by(x)}/{len(room.learners)}</td>" for x in room.exercises]
    parts.append("<td></td></tr></tfoot></table>")
    parts.append(f'<h2>The same as a picture</h2><img alt="heatmap of the table above" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    if room.warnings:
        parts.append('<h2>Reports left out or shown with care</h2><ul class="warnings">')
        parts += [f"<li>{e(w)}</li>" for w in room.warnings]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def main(paths: Sequence[str], *, out_dir: Path = Path("."), stuck: int = 3, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    room = load(paths)
    for warning in room.warnings:
        print(f"⚠️  warning: {warning}", file=err)
    if not room.learners:
        print("No usable report found: nothing to show.", file=err)
        return 1
    out.write(text(room, stuck))
    png = heatmap_png(room)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PNG_NAME).write_bytes(png)
    (out_dir / HTML_NAME).write_text(html_page(room, png, stuck), encoding="utf-8")
    print(f"\nWrote {out_dir / PNG_NAME} and {out_dir / HTML_NAME} (open it in a browser to project it).", file=out)
    return 0
