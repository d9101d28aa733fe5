"""What ``python -m asynclab progress`` shows: the progress bar while notebooks run, then the table of exercises."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from asynclab.course import authoring, checking, progress


def bar(done: int, total: int, width: int = 24) -> str:
    filled = round(width * done / total) if total else width
    return "█" * filled + "░" * (width - filled)


class ProgressBar:
    """Notebooks finished so far, on one line redrawn in place (or a line each when not on a terminal)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.live = stream.isatty()
        self.started = time.perf_counter()

    def start(self) -> None:
        self._draw("starting kernels")

    def tick(self, name: str) -> None:
        self.done += 1
        self._draw(name)

    def _draw(self, name: str) -> None:
        line = f"Running your notebooks {bar(self.done, self.total, 20)} {self.done}/{self.total}  {name}"
        if self.live:
            self.stream.write("\r\033[K" + line)
            if self.done == self.total:
                self.stream.write("\n")
        elif self.done:
            self.stream.write(line + "\n")
        self.stream.flush()


def report(result: progress.Survey, root: Path = authoring.ROOT) -> str:
    """The table, the total, the next exercise with its first hint, and any broken notebooks."""
    try:
        where = result.folder.resolve().relative_to(root)
    except ValueError:
        where = result.folder
    lines = [f"Exercises in {where}/", ""]
    section = None
    for r in result.results:
        if r.section != section:
            section = r.section
            lines.append(f"  {section}")
        lines.append(f"    {checking.PASSED if r.solved else checking.NOT_YET:<11} {r.id:<4} {r.title}")
    lines += ["", f"{bar(result.solved, result.total)}  {result.solved} of {result.total} solved", ""]
    nxt = result.next_up()
    if nxt is None:
        lines.append("🎉 Done: every exercise passes its check. Well done!")
    else:
        lines += [
            f"Next: exercise {nxt.id} ({nxt.title}) in {where}/{nxt.notebook}",
            f"  The check saw: {nxt.seen}",
            f"  💡 Hint: {nxt.hint or checking.get(nxt.id).hints[0]}",
            f'  More hints in the notebook: hint("{nxt.id}")',
        ]
    if result.troubles:
        lines += ["", "Notebooks that did not run cleanly:"]
        for t in result.troubles:
            at = f"cell {t.cell}: " if t.cell else ""
            lines.append(f"  ⚠️ trouble: {t.notebook}: {at}{t.what}")
        lines.append("  Open it, fix that cell (or start over with `python -m asynclab reset NN`), then run this again.")
    lines.append("")
    if result.reused:
        lines.append(reuse_line(result))
    lines.append(f"(checked in {result.seconds:.0f} s)")
    return "\n".join(lines)


def reuse_line(result: progress.Survey) -> str:
    """One line on what the cache saved: "7 notebooks unchanged since the last run (results reused), 2 run now; ..."."""
    unchanged = len(result.reused)
    noun = "notebook" if unchanged == 1 else "notebooks"
    return f"{unchanged} {noun} unchanged since the last run (results reused), {len(result.ran)} run now; --all runs every one"


def start_meter(folder: Path, err: TextIO) -> ProgressBar | None:
    """The progress bar for a run over ``folder``, drawn; None (and one line why) when there is no such folder."""
    if not folder.is_dir():
        print(f"There is no folder {folder}: run this from the course's folder, or pass --folder.", file=err)
        return None
    meter = ProgressBar(progress.notebook_count(), err)
    meter.start()
    return meter


def main(
    folder: Path,
    *,
    jobs: int = 3,
    cell_limit: float = progress.CELL_LIMIT,
    rerun_all: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the learner's notebooks (those changed since the last run, or all with ``rerun_all``) and print the table."""
    out, err = out or sys.stdout, err or sys.stderr
    meter = start_meter(folder, err)
    if meter is None:
        return 2
    result = progress.survey(folder, jobs=jobs, cell_limit=cell_limit, tick=meter.tick, cache=True, rerun_all=rerun_all)
    print(report(result), file=out)
    return 0
