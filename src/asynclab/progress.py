"""``python -m asynclab progress``: run every exercise notebook headless and say which checks pass.

Each notebook in the learner's ``exercises/`` folder runs top to bottom in its own kernel, as
"Restart and run all" would, and is never written back. A check cell that printed its "✅ passed"
line counts as solved. A notebook that cannot run (a syntax error, a kernel that dies, a cell that
never ends) is reported with the cell and what happened, and the other notebooks still run.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import nbformat
from nbclient.exceptions import DeadKernelError

from asynclab import authoring, checking
from asynclab.notebook import kernel_client

CHECK_CELL = authoring.CHECK_CELL
PASSED = re.compile(re.escape(checking.PASSED) + r" · Exercise (\d+\.\d+)")
CELL_LIMIT = 20.0  # a lesson cell takes about 2 s; only a cell that never ends gets near this
CHECK_CELL_LIMIT = 60.0  # a check stops itself first (10 s, or 40 s for a real two-worker server)
TIMED_OUT = "CellTimedOut"
_QUIET = logging.getLogger("asynclab.progress.nbclient")  # nbclient's own errors are reported our way
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass
class Result:
    """One exercise as the learner's notebook left it."""

    id: str
    title: str
    section: str
    notebook: str
    solved: bool = False
    seen: str = ""  # what the check saw (its "❌ not yet" line), or why it could not run
    check_failed: bool = False  # the check ran and said "❌ not yet" (rather than the notebook breaking first)
    short: bool = True  # the notebook showed the learner one short message, not a traceback


@dataclass
class Trouble:
    """A notebook that could not run to the end as it should."""

    notebook: str
    cell: int  # 1-based, counting code cells as JupyterLab shows them
    what: str


@dataclass
class Survey:
    folder: Path
    results: list[Result]
    troubles: list[Trouble] = field(default_factory=list)
    seconds: float = 0.0
    renamed: list[tuple[Path, Path]] = field(default_factory=list)  # work carried over from an old file name

    @property
    def solved(self) -> int:
        return sum(r.solved for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    def next_up(self) -> Result | None:
        return next((r for r in self.results if not r.solved), None)


def check_ids(nb: Any) -> list[str]:
    return [m for cell in nb.cells if cell.cell_type == "code" for m in CHECK_CELL.findall(cell.source)]


def _section_title(nb: Any) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip().removeprefix("Exercises · ")
    return ""


def expected(root: Path = authoring.ROOT) -> dict[str, list[Result]]:
    """The course's exercises, notebook by notebook, as the solutions define them."""
    plan: dict[str, list[Result]] = {}
    for solution in authoring.solutions(root):
        nb = authoring.read(solution)
        title, name = _section_title(nb), authoring.exercise_name(solution)
        plan[name] = [Result(i, checking.get(i).title, title, name) for i in check_ids(nb)]
    return plan


def _error_line(output: Any) -> str:
    evalue = str(output.get("evalue", "")).strip().splitlines()
    text = f"{output.get('ename', 'Error')}: {evalue[0]}" if evalue and evalue[0] else str(output.get("ename", "Error"))
    return text if len(text) <= 160 else text[:157] + "..."


def _check_message(output: Any) -> str:
    """The "❌ not yet" line of a failed check, without its hint lines (those are shown for the next exercise only)."""
    text = "\n".join(output.get("traceback") or [output.get("evalue", "")])
    first = text.strip().splitlines()[0] if text.strip() else ""
    return re.sub("^" + re.escape(checking.NOT_YET) + r" · Exercise \S+ \([^)]*\): ", "", first)


async def _run_notebook(path: Path, plan: list[Result], troubles: list[Trouble], cell_limit: float) -> None:
    """Run one notebook in a fresh kernel and fill in ``plan``."""
    by_id = {r.id: r for r in plan}
    nb = authoring.read(path)
    options: dict[str, Any] = {
        "timeout": int(cell_limit),
        "allow_errors": True,
        "interrupt_on_timeout": True,
        "error_on_timeout": {"ename": TIMED_OUT, "evalue": "", "traceback": []},
        "log": _QUIET,
    }
    first_error: Trouble | None = None
    number = 0
    try:
        with kernel_client(nb, path.parent, **options) as client:
            async with client.async_setup_kernel(stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    number += 1
                    ids = CHECK_CELL.findall(cell.source)
                    client.timeout = int(CHECK_CELL_LIMIT if ids else cell_limit)
                    await client.async_execute_cell(cell, index, execution_count=number)
                    errors = [o for o in cell.outputs if o.output_type == "error"]
                    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
                    for id in ids:
                        if id not in by_id:
                            continue
                        result = by_id[id]
                        if id in PASSED.findall(printed) and not errors:
                            result.solved = True
                        elif errors and errors[0].get("ename") == "CheckFailed":
                            result.seen = _check_message(errors[0])
                            result.check_failed = True
                            result.short = len(errors[0].get("traceback") or []) == 1
                        elif first_error is not None:
                            result.seen = f"could not be checked: cell {first_error.cell} failed first ({first_error.what})"
                        elif errors:
                            result.seen = f"the check cell raised {_error_line(errors[0])}"
                        else:
                            result.seen = "the check cell ran but printed no result"
                    if errors and not ids and first_error is None:
                        what = (
                            f"it ran for more than {cell_limit:.0f} s and was interrupted (an endless loop?)"
                            if errors[0].get("ename") in (TIMED_OUT, "KeyboardInterrupt")
                            else f"it raised {_error_line(errors[0])}"
                        )
                        first_error = Trouble(path.name, number, what)
    except DeadKernelError:
        first_error = Trouble(path.name, number, "the kernel died while running it (did the code exit Python or crash it?)")
        for result in plan:
            if not result.solved and not result.seen:
                result.seen = f"could not be checked: the kernel died in cell {number}"
    except Exception as exc:  # noqa: BLE001 - a learner's notebook must never stop the others
        first_error = Trouble(path.name, number, f"the notebook could not be run: {type(exc).__name__}: {exc}")
    if first_error is not None:
        troubles.append(first_error)
    for result in plan:
        if not result.solved and not result.seen:
            result.seen = f"its check cell is missing: `python -m asynclab reset {int(path.name[:2])}` gives the notebook back"


async def _survey(folder: Path, plan: dict[str, list[Result]], jobs: int, cell_limit: float, tick: Callable[[str], None]) -> list[Trouble]:
    troubles: list[Trouble] = []
    gate = asyncio.Semaphore(jobs)

    async def one(name: str, results: list[Result]) -> None:
        async with gate:
            path = folder / name
            if not path.is_file():
                troubles.append(Trouble(name, 0, "the notebook is missing"))
                for r in results:
                    r.seen = f"{name} is missing: `python -m asynclab reset {name[:2]}` brings it back"
            else:
                try:
                    nbformat.read(path, as_version=4)
                except Exception as exc:  # noqa: BLE001 - a file the learner broke is reported, not raised
                    troubles.append(Trouble(name, 0, f"the file is not a readable notebook ({type(exc).__name__})"))
                    for r in results:
                        r.seen = f"{name} cannot be read: `python -m asynclab reset {name[:2]}` gives it back"
                else:
                    await _run_notebook(path, results, troubles, cell_limit)
        tick(name)

    await asyncio.gather(*(one(name, results) for name, results in plan.items()))
    return troubles


def survey(
    folder: Path,
    *,
    jobs: int = 3,
    cell_limit: float = CELL_LIMIT,
    tick: Callable[[str], None] = lambda name: None,
) -> Survey:
    """Run every exercise notebook the course defines, from ``folder``; return what each check said."""
    plan = expected()
    started = time.perf_counter()
    renamed = authoring.adopt_old_names(folder)
    troubles = asyncio.run(_survey(folder, plan, jobs, cell_limit, tick))
    results = [r for name in plan for r in plan[name]]
    order = list(plan)
    troubles.sort(key=lambda t: order.index(t.notebook) if t.notebook in order else len(order))
    return Survey(folder, results, troubles, time.perf_counter() - started, renamed)


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


def report(result: Survey, root: Path = authoring.ROOT) -> str:
    """The table, the total, the next exercise with its first hint, and any broken notebooks."""
    try:
        where = result.folder.resolve().relative_to(root)
    except ValueError:
        where = result.folder
    lines = [f"Exercises in {where}/", ""]
    for old, new in result.renamed:
        lines += [f"  (your {old.name} is now {new.name}: the course renamed it so its tab stands out from the lesson's)", ""]
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
            f"  💡 Hint: {checking.get(nxt.id).hints[0]}",
            f'  More hints in the notebook: hint("{nxt.id}")',
        ]
    if result.troubles:
        lines += ["", "Notebooks that did not run cleanly:"]
        for t in result.troubles:
            at = f"cell {t.cell}: " if t.cell else ""
            lines.append(f"  ⚠️ trouble: {t.notebook}: {at}{t.what}")
        lines.append("  Open it, fix that cell (or start over with `python -m asynclab reset NN`), then run this again.")
    lines += ["", f"(checked in {result.seconds:.0f} s)"]
    return "\n".join(lines)


def main(folder: Path, *, jobs: int = 3, cell_limit: float = CELL_LIMIT, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if not folder.is_dir():
        print(f"There is no folder {folder}: run this from the course's folder, or pass --folder.", file=err)
        return 2
    meter = ProgressBar(len(expected()), err)
    meter.start()
    result = survey(folder, jobs=jobs, cell_limit=cell_limit, tick=meter.tick)
    print(report(result), file=out)
    return 0
