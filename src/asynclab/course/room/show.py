"""What the instructor sees: the terminal table, the heatmap PNG, the HTML page to project, the CSV gradebook."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import shutil
import warnings as python_warnings
from dataclasses import dataclass

from asynclab.course.room.model import BROKEN, MARKS, NO_RESULT, NOT_YET, PASSED, Learner, Room
from asynclab.course.room.plain import clip, csv_cell, pad, width

PNG_NAME, HTML_NAME = "class-view.png", "class-view.html"
NAME_COLUMNS = 24  # a name longer than this is cut, with "…"
SELF_REPORTED = (
    "Self-reported: these results come from files the learners wrote, and a learner can edit theirs. "
    "On JupyterHub, `class --hub URL` runs progress in each learner's server and shows what it found."
)


@dataclass(frozen=True)
class View:
    """Every learner-written string here has been made plain text when it was read (:mod:`.plain`); the
    page escapes it again, and the picture draws it with matplotlib's maths (``$...$``) turned off.
    With ``hide_names`` a row is "#1", "#2", ... in the order shown, so the room can be projected
    without showing anyone as "0/25"; the CSV always has the names (it is for a gradebook, not a wall).
    """

    hide_names: bool = False
    top: int = 3  # exercises in "where the room is stuck"
    refresh: int = 0  # seconds between the page's own reloads (--watch); 0: it does not reload
    width: int = 0  # terminal columns for the table; 0: the terminal's own


def labels(room: Room, view: View) -> list[str]:
    """Each row's label, in order: the name (with a conflict shown), or "#k" when names are hidden."""
    if view.hide_names:
        return [f"#{i}" for i in range(1, len(room.learners) + 1)]
    return [x.name for x in room.learners]


def clock(when: dt.datetime | None, now: dt.datetime, short: bool = False) -> str:
    """When a report ran, in this machine's time zone: "10:42" today, "30 Nov 10:42" (``short``: "30 Nov") another day."""
    if when is None:
        return ""
    local, today = when.astimezone(), now.astimezone()
    if local.date() == today.date():
        return f"{local:%H:%M}"
    return f"{local:%d %b}" if short else f"{local:%d %b %H:%M}"


def origin(room: Room) -> str:
    if room.collected:
        return f"Collected from the hub at {room.collected}: progress ran in each learner's own server, as that learner."
    return SELF_REPORTED


def frontier_words(room: Room) -> str:
    frontier = room.frontier()
    if frontier is None:
        return ""
    if room.upto is not None:
        return f"up to {frontier} (your --upto)"
    return f"up to {frontier}, the furthest exercise half the room has solved (--upto N.M to choose)"


def _headline(room: Room) -> str:
    reports, learners = len(room.learners), len({x.key for x in room.learners})
    if room.conflicts:
        names = f"{room.conflicts} name{'s' if room.conflicts > 1 else ''}"
        people = f"{learners} learners in {reports} reports ({names} claimed more than once)"
    else:
        people = f"{reports} learners"
    absent = f", {len(room.absent)} absent" if room.absent else ""
    return f"{people}{absent}, {len(room.exercises)} exercises (your course version {room.version[:12] or 'unknown'})"


# --- Text ----------------------------------------------------------------------------------------


def _row_label(learner: Learner, label: str, view: View) -> str:
    shown = clip(label, NAME_COLUMNS)
    return shown + (" ⚠️ conflict" if learner.claims > 1 else "") + (" ⚠️ future" if learner.future else "")


def table(room: Room, view: View = View()) -> str:
    """The learner × exercise table, split into blocks of exercises that fit in the view's width."""
    columns = view.width or max(100, shutil.get_terminal_size((160, 24)).columns)
    rows = [_row_label(x, label, view) for x, label in zip(room.learners, labels(room, view), strict=True)]
    names = max([width("learner"), width("solved by"), *(width(r) for r in rows)])
    cell = max(width(m) for m in MARKS) + 2
    total = len(room.exercises)
    per_block = max(1, (columns - names - 22) // cell)
    blocks = [room.exercises[i : i + per_block] for i in range(0, total, per_block)] or [[]]
    lines: list[str] = []
    for number, block in enumerate(blocks):
        last = number == len(blocks) - 1
        header = pad("learner", names + 2) + "".join(pad(e, cell) for e in block) + ("solved  reported" if last else "")
        lines += [header, "-" * width(header)]
        for learner, row in zip(room.learners, rows, strict=True):
            line = pad(row, names + 2) + "".join(pad(room.mark(learner, e), cell) for e in block)
            if last:
                line += pad(f"{learner.count(room.exercises)}/{total}", 8) + clock(learner.ran_at, room.made)
            lines.append(line.rstrip())
        lines.append(pad("solved by", names + 2) + "".join(pad(f"{room.solved_by(e)}/{len(room.learners)}", cell) for e in block))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def absent_text(room: Room, view: View = View()) -> str:
    if not room.absent:
        return ""
    if view.hide_names:
        return f"Not reported yet: {len(room.absent)} learner(s) on the roster.\n"
    return f"Not reported yet ({len(room.absent)}): {', '.join(room.absent)}\n"


def sections_text(room: Room) -> str:
    lines = ["By section (learners who solved all of it / at least one):"]
    n = len(room.learners)
    for s in room.sections():
        lines.append(f"  {s.title}: {s.finished}/{n} all, {s.started}/{n} started ({len(s.exercises)} exercises)")
    return "\n".join(lines) + "\n"


def stuck_text(room: Room, top: int = 3) -> str:
    items = room.stuck(top)
    where = frontier_words(room)
    if not items:
        return f"Where the room is stuck, {where}: nowhere, every learner has solved those.\n"
    lines = [f"Where the room is stuck, {where}. Explain these next:"]
    for s in items:
        lines.append(f"  {s.exercise} {s.title}: {s.not_solved} of {len(room.learners)} have not solved it")
        lines.append(f"      {s.sharing} of them saw: {s.observation}")
    return "\n".join(lines) + "\n"


def text(room: Room, view: View = View()) -> str:
    parts = [_headline(room), origin(room), "", table(room, view)]
    if room.absent:
        parts.append(absent_text(room, view))
    parts += [sections_text(room), stuck_text(room, view.top)]
    return "\n".join(parts)


# --- Picture -------------------------------------------------------------------------------------

DPI = 100
CELL_IN = 0.42  # inches per exercise column
ROW_IN = 0.28  # inches per learner row
LEFT_IN, RIGHT_IN, TOP_IN, BOTTOM_IN = 1.9, 0.9, 1.0, 1.0
COLOURS = {PASSED: "#1b7837", NOT_YET: "#f4a582", BROKEN: "#b2182b", NO_RESULT: "#d9d9d9"}
GLYPHS = {PASSED: "✓", NOT_YET: "✗", BROKEN: "!", NO_RESULT: ""}
INK = {PASSED: "white", NOT_YET: "#5a2a0a", BROKEN: "white", NO_RESULT: "#5a2a0a"}


def picture_size(learners: int, exercises: int) -> tuple[int, int]:
    """The heatmap's size in pixels for a room of this shape."""
    width_in = LEFT_IN + RIGHT_IN + CELL_IN * max(exercises, 1)
    height_in = TOP_IN + BOTTOM_IN + ROW_IN * max(learners, 1)
    return round(width_in * DPI), round(height_in * DPI)


def heatmap_png(room: Room, view: View = View()) -> bytes:
    """The table as a heatmap: a row per learner, a column per exercise; ✓ passed, ✗ not yet, ! broken, grey no report."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    marks = list(MARKS)
    rows, cols = max(len(room.learners), 1), max(len(room.exercises), 1)
    grid = [[marks.index(room.mark(x, e)) for e in room.exercises] or [3] for x in room.learners] or [[3] * cols]
    names = [
        clip(label, NAME_COLUMNS) + (" (conflict)" if x.claims > 1 else "")
        for x, label in zip(room.learners, labels(room, view), strict=True)
    ]
    w_px, h_px = picture_size(len(room.learners), len(room.exercises))
    w_in, h_in = w_px / DPI, h_px / DPI
    # Learners' names are text, never maths: "Jo$h_$mith" and "$$" would make matplotlib's mathtext fail.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}), python_warnings.catch_warnings():
        python_warnings.filterwarnings("ignore", message="Glyph .* missing from")  # a name in a script the font lacks
        fig = Figure(figsize=(w_in, h_in), dpi=DPI)
        ax = fig.add_axes((LEFT_IN / w_in, BOTTOM_IN / h_in, CELL_IN * cols / w_in, ROW_IN * rows / h_in))
        ax.imshow(grid, cmap=ListedColormap([COLOURS[m] for m in marks]), vmin=0, vmax=3, aspect="auto", interpolation="nearest")
        for r, row in enumerate(grid):
            for c, value in enumerate(row):
                mark = marks[value]
                ax.text(c, r, GLYPHS[mark], ha="center", va="center", fontsize=8, color=INK[mark])
        ax.set_xticks(range(cols), room.exercises or [""], fontsize=8)
        ax.xaxis.tick_top()
        ax.set_yticks(range(rows), names or [""], fontsize=8)
        ax.set_xticks([x - 0.5 for x in range(1, cols)], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, rows)], minor=True)
        ax.grid(which="minor", color="white", linewidth=1)
        ax.tick_params(which="both", length=0)
        for r, x in enumerate(room.learners):
            ax.text(cols - 0.3, r, f"  {x.count(room.exercises)}/{len(room.exercises)}", ha="left", va="center", fontsize=8)
        for c, exercise in enumerate(room.exercises):
            ax.text(c, rows - 0.3, f"{room.solved_by(exercise)}", ha="center", va="top", fontsize=8)
        ax.set_xlabel("exercise (number below: learners who solved it)", fontsize=8, labelpad=14)
        fig.legend(
            handles=[Patch(color=COLOURS[m], label=m.split(" ", 1)[1]) for m in marks],
            loc="lower center",
            ncols=4,
            fontsize=8,
            frameon=False,
        )
        fig.suptitle(
            f"Class view: {len(room.learners)} learners, {len(room.exercises)} exercises", fontsize=10, y=1 - 0.15 / h_in
        )
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


# --- HTML ----------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0.6em 1em; color: #222; font-size: 14px; }
h1 { font-size: 1.3em; margin: 0 0 0.15em; } h2 { font-size: 1.1em; margin: 1em 0 0.3em; }
p.meta { margin: 0 0 0.2em; color: #444; } p.origin { margin: 0 0 0.5em; color: #555; font-size: 0.9em; }
.stuck { margin: 0 0 0.6em; padding: 0.3em 0.8em; background: #fff7e6; border-left: 4px solid #e08e0b; }
.stuck ol { margin: 0.2em 0; padding-left: 1.4em; } .stuck li { margin: 0.1em 0; }
table.room { border-collapse: collapse; font-size: 13px; line-height: 1.15; table-layout: fixed; width: 100%; }
.room col.who { width: 11em; } .room col.count { width: 4.6em; } .room col.when { width: 5.6em; }
.room.dense thead th { font-size: 10px; } .room.dense td.m { font-size: 11px; }
.room th, .room td { border: 1px solid #ccc; padding: 1px 2px; white-space: nowrap; text-align: center; overflow: hidden; }
.room th.who { text-align: left; text-overflow: ellipsis; font-weight: normal; padding-left: 4px; }
.room thead th { background: #f4f4f4; } .room .sec { font-size: 11px; color: #555; }
.room td.m { font-weight: bold; }
.passed { background: #1b7837; color: #fff; } .not-yet { background: #fde0cf; color: #5a2a0a; }
.broken { background: #b2182b; color: #fff; } .no-report { background: #eee; color: #777; }
td.absent { background: #f7f7f7; color: #777; text-align: left; font-style: italic; }
.flag { color: #b2182b; font-size: 11px; } .legend span { display: inline-block; margin-right: 1em; }
.legend b { display: inline-block; width: 1.4em; text-align: center; }
.warnings li { color: #8a4b00; } img { max-width: 100%; }
"""
_CLASS = {PASSED: "passed", NOT_YET: "not-yet", BROKEN: "broken", NO_RESULT: "no-report"}
_SYMBOL = {PASSED: "✓", NOT_YET: "✗", BROKEN: "!", NO_RESULT: "–"}


def _legend() -> str:
    items = "".join(f'<span><b class="{_CLASS[m]}">{_SYMBOL[m]}</b> {m.split(" ", 1)[1]}</span>' for m in MARKS)
    return f'<p class="legend">{items}</p>'


def html_page(room: Room, png: bytes, top: int = 3, view: View | None = None) -> str:
    """One file to project: the stuck list, the table, section totals, who is missing, the heatmap (inlined), warnings."""
    view = view or View(top=top)
    e = html.escape
    made = room.made.astimezone().strftime("%Y-%m-%d %H:%M")
    refresh = f'<meta http-equiv="refresh" content="{view.refresh}">' if view.refresh else ""
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{refresh}<meta name="viewport" content="width=device-width">',
        f"<title>Class view</title><style>{_STYLE}</style></head><body>",
        f'<h1>Class view</h1><p class="meta">{e(_headline(room))}; made {made}'
        + (f", and again every {view.refresh} s" if view.refresh else "")
        + f'.</p><p class="origin">{e(origin(room))}</p>',
    ]
    items = room.stuck(view.top)
    parts.append(f'<div class="stuck"><b>Where the room is stuck</b>, {e(frontier_words(room))}')
    if items:
        parts.append("<ol>")
        for s in items:
            parts.append(
                f"<li><b>{e(s.exercise)} {e(s.title)}</b>: {s.not_solved} of {len(room.learners)} have not solved it; "
                f"{s.sharing} of them saw: <q>{e(s.observation)}</q></li>"
            )
        parts.append("</ol></div>")
    else:
        parts.append(": nowhere, every learner has solved those.</div>")
    parts.append(_table_html(room, view))
    parts.append(_legend())
    parts.append("<h2>By section</h2><ul>")
    n = len(room.learners)
    for section in room.sections():
        parts.append(f"<li>{e(section.title)}: {section.finished}/{n} solved all of it, {section.started}/{n} started</li>")
    parts.append("</ul>")
    if room.absent:
        who = f"{len(room.absent)} learner(s) on the roster" if view.hide_names else ", ".join(e(a) for a in room.absent)
        parts.append(f"<h2>Not reported yet</h2><p>{who}</p>")
    parts.append(
        '<h2>The same as a picture</h2><img alt="heatmap of the table above" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    )
    if room.warnings:
        parts.append("<h2>Reports left out or shown with care</h2>")
        if view.hide_names:  # the lines name files, which carry names
            parts.append(f"<p>{len(room.warnings)} note(s), in the terminal that made this page.</p>")
        else:
            parts.append('<ul class="warnings">' + "".join(f"<li>{e(w)}</li>" for w in room.warnings) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table_html(room: Room, view: View) -> str:
    e = html.escape
    sections = room.sections()
    total, n = len(room.exercises), len(room.learners)
    columns = '<col class="who">' + '<col class="mark">' * total + '<col class="count"><col class="when">'
    dense = " dense" if total > 32 else ""  # narrow columns: smaller ids and marks
    out = [f'<table class="room{dense}"><colgroup>{columns}</colgroup><thead><tr><th class="who sec">section</th>']
    for s in sections:
        number = s.title.split(" ", 1)[0]
        out.append(f'<th class="sec" colspan="{len(s.exercises)}" title="{e(s.title)}">{e(number)}</th>')
    out.append('<th class="sec" colspan="2"></th></tr><tr><th class="who">learner</th>')
    out += [f'<th title="{e(room.titles.get(x, ""))}">{e(x)}</th>' for x in room.exercises]
    out.append("<th>solved</th><th>reported</th></tr></thead><tbody>")
    for learner, label in zip(room.learners, labels(room, view), strict=True):
        flags = ""
        if learner.claims > 1:
            flags += f' <span class="flag">⚠️ {learner.claims} reports</span>'
        if learner.future:
            flags += ' <span class="flag">⚠️ future time</span>'
        out.append(f'<tr><th class="who" title="{e(label)}"><bdi>{e(label)}</bdi>{flags}</th>')
        for x in room.exercises:
            mark = room.mark(learner, x)
            seen = learner.seen.get(x, "")
            tip = f"{x}: {mark.split(' ', 1)[1]}" + (f": {seen}" if seen else "")
            out.append(f'<td class="m {_CLASS[mark]}" title="{e(tip)}">{_SYMBOL[mark]}</td>')
        when = learner.ran_at.astimezone().strftime("%Y-%m-%d %H:%M") if learner.ran_at else ""
        shown = clock(learner.ran_at, room.made, short=True)
        out.append(f'<td>{learner.count(room.exercises)}/{total}</td><td title="{e(when)}">{e(shown)}</td></tr>')
    if not view.hide_names:
        for name in room.absent:
            out.append(
                f'<tr><th class="who"><bdi>{e(name)}</bdi></th><td class="absent" colspan="{total + 2}">absent: no report '
                "yet</td></tr>"
            )
    out.append(f'</tbody><tfoot><tr><th class="who">solved by (of {n})</th>')
    out += [f"<td>{room.solved_by(x)}</td>" for x in room.exercises]
    out.append('<td colspan="2"></td></tr><tr><th class="who">section done by</th>')
    out += [f'<td colspan="{len(s.exercises)}">{s.finished}/{n}</td>' for s in sections]
    out.append('<td colspan="2"></td></tr></tfoot></table>')
    return "".join(out)


# --- CSV -----------------------------------------------------------------------------------------

CSV_COLUMNS = ["learner", "exercise", "title", "section", "status", "solved", "seconds", "observation", "reported_at", "source"]


def gradebook(room: Room) -> str:
    """One row per learner and exercise (absent learners too), for a spreadsheet or an LMS; names always shown."""
    titles = {x.id: x for x in room.course}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for learner in room.learners:
        when = learner.ran_at.strftime("%Y-%m-%dT%H:%M:%SZ") if learner.ran_at else ""
        for x in room.exercises:
            outcome = learner.results.get(x)
            mark = room.mark(learner, x)
            writer.writerow(
                [
                    csv_cell(learner.name),
                    x,
                    csv_cell(titles[x].title),
                    csv_cell(titles[x].section),
                    mark.split(" ", 1)[1],
                    "" if outcome is None else int(outcome.solved),
                    "" if outcome is None or outcome.seconds is None else f"{outcome.seconds:g}",
                    csv_cell(learner.seen.get(x, "")),
                    when,
                    csv_cell(learner.source),
                ]
            )
    for name in room.absent:
        for x in room.exercises:
            writer.writerow(
                [csv_cell(name), x, csv_cell(titles[x].title), csv_cell(titles[x].section), "absent", "", "", "", "", ""]
            )
    return buffer.getvalue()
