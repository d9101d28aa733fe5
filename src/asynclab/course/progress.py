"""``python -m asynclab progress``: run every exercise notebook headless and say which checks pass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbclient.exceptions import DeadKernelError

from asynclab.course import authoring, checking, progress_cache
from asynclab.course.notebook import kernel_client

CHECK_CELL = authoring.CHECK_CELL
PASSED = re.compile(re.escape(checking.PASSED) + r" · Exercise (\d+\.\d+)")
CELL_LIMIT = 20.0  # a lesson cell takes about 2 s; only a cell that never ends gets near this
CHECK_CELL_LIMIT = 60.0  # a check stops itself first (10 s, or 40 s for a real two-worker server)
TIMED_OUT = "CellTimedOut"
STOPPED = (TIMED_OUT, "KeyboardInterrupt")  # what a cell interrupted at the cell limit shows
# A result that depends on how busy the machine was: a check or a startup that ran out of time. Never cached.
TIMING_DEPENDENT = re.compile(r"did not finish within|TimeoutError|" + TIMED_OUT + "|KeyboardInterrupt")
_QUIET = logging.getLogger("asynclab.course.progress.nbclient")  # nbclient's own errors are reported our way
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
    hint: str = ""  # the exercise's first hint


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
    ran: dict[str, float] = field(default_factory=dict)  # the notebooks run this time, and the seconds each took
    reused: dict[str, float] = field(default_factory=dict)  # notebooks unchanged since a cached run: that run's seconds

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
            source: str = cell.source
            for line in source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip().removeprefix("Exercises · ")
    return ""


def expected(root: Path = authoring.ROOT) -> dict[str, list[Result]]:
    """The course's exercises, notebook by notebook, as the solutions define them."""
    plan: dict[str, list[Result]] = {}
    for solution in authoring.solutions(root):
        nb = authoring.read(solution)
        title, name = _section_title(nb), authoring.exercise_name(solution)
        plan[name] = [Result(i, checking.get(i).title, title, name, hint=checking.get(i).hints[0]) for i in check_ids(nb)]
    return plan


def notebook_count(root: Path = authoring.ROOT) -> int:
    """How many exercise notebooks the course has (without reading them: for the progress bar)."""
    return len(authoring.solutions(root))


def _error_line(output: Any) -> str:
    evalue = str(output.get("evalue", "")).strip().splitlines()
    text = f"{output.get('ename', 'Error')}: {evalue[0]}" if evalue and evalue[0] else str(output.get("ename", "Error"))
    return text if len(text) <= 160 else text[:157] + "..."


def _check_message(output: Any) -> str:
    """The "❌ not yet" line of a failed check, without its hint lines (those are shown for the next exercise only)."""
    text = "\n".join(output.get("traceback") or [output.get("evalue", "")])
    first = text.strip().splitlines()[0] if text.strip() else ""
    return re.sub("^" + re.escape(checking.NOT_YET) + r" · Exercise \S+ \([^)]*\): ", "", first)


def _judge(cell: Any, ids: list[str], by_id: dict[str, Result], first_error: Trouble | None) -> None:
    """Fill in the results of the checks in one executed cell."""
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


def _failure(error: Any, cell_limit: float) -> str:
    if error.get("ename") in STOPPED:
        return f"it ran for more than {cell_limit:.0f} s and was interrupted (an endless loop?)"
    return f"it raised {_error_line(error)}"


class _Reader:
    """Reads a notebook's executed code cells in order, as the command does: fills in each check's
    result, and keeps the first cell that failed outside a check cell (the notebook's trouble)."""

    def __init__(self, name: str, plan: list[Result], cell_limit: float = CELL_LIMIT) -> None:
        self.name, self.cell_limit = name, cell_limit
        self.by_id = {r.id: r for r in plan}
        self.number = 0  # the code cell being read, 1-based
        self.first_error: Trouble | None = None
        self.interrupted = False

    def read(self, cell: Any) -> None:
        """Judge one executed code cell (call after counting it in ``number``)."""
        ids = CHECK_CELL.findall(cell.source)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        self.interrupted = self.interrupted or any(e.get("ename") in STOPPED for e in errors)
        _judge(cell, ids, self.by_id, self.first_error)
        if errors and not ids and self.first_error is None:
            self.first_error = Trouble(self.name, self.number, _failure(errors[0], self.cell_limit))


def read_executed(nb: Any, name: str, plan: list[Result]) -> Trouble | None:
    """Fill in ``plan`` from a notebook executed elsewhere (the hint tests run each handed-out notebook); return its trouble."""
    reader = _Reader(name, plan)
    for cell in nb.cells:
        if cell.cell_type == "code":
            reader.number += 1
            reader.read(cell)
    return reader.first_error


async def _run_notebook(path: Path, plan: list[Result], troubles: list[Trouble], cell_limit: float) -> bool:
    """Run one notebook in a fresh kernel and fill in ``plan``; True if every cell ran to its end in time."""
    nb = authoring.read(path)
    options: dict[str, Any] = {
        "timeout": int(cell_limit),
        "allow_errors": True,
        "interrupt_on_timeout": True,
        "error_on_timeout": {"ename": TIMED_OUT, "evalue": "", "traceback": []},
        "log": _QUIET,
    }
    reader = _Reader(path.name, plan, cell_limit)
    finished = False
    try:
        with kernel_client(nb, path.parent, **options) as client:
            async with client.async_setup_kernel(stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
                _take_ctrl_c()
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    reader.number += 1
                    client.timeout = int(CHECK_CELL_LIMIT if CHECK_CELL.search(cell.source) else cell_limit)
                    await client.async_execute_cell(cell, index, execution_count=reader.number)
                    reader.read(cell)
        finished = True
    except DeadKernelError:
        reader.first_error = Trouble(
            path.name, reader.number, "the kernel died while running it (did the code exit Python or crash it?)"
        )
        for result in plan:
            if not result.solved and not result.seen:
                result.seen = f"could not be checked: the kernel died in cell {reader.number}"
    except Exception as exc:  # noqa: BLE001 - a learner's notebook must never stop the others
        reader.first_error = Trouble(path.name, reader.number, f"the notebook could not be run: {type(exc).__name__}: {exc}")
    if reader.first_error is not None:
        troubles.append(reader.first_error)
    for result in plan:
        if not result.solved and not result.seen:
            result.seen = f"its check cell is missing: `python -m asynclab reset {int(path.name[:2])}` gives the notebook back"
    return finished and not reader.interrupted


@dataclass
class Run:
    """How one notebook's run went: whether it ran to the end in time, and how long it took."""

    finished: bool
    seconds: float


async def _survey(
    folder: Path, plan: dict[str, list[Result]], jobs: int, cell_limit: float, tick: Callable[[str], None]
) -> tuple[list[Trouble], dict[str, Run]]:
    troubles: list[Trouble] = []
    runs: dict[str, Run] = {}
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
                    started = time.perf_counter()
                    finished = await _run_notebook(path, results, troubles, cell_limit)
                    runs[name] = Run(bool(finished), time.perf_counter() - started)
        tick(name)

    tasks = [asyncio.ensure_future(one(name, results)) for name, results in plan.items()]
    with _ctrl_c_cancels(tasks) as stopped:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    if stopped:
        raise _Stopped
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return troubles, runs


_STOP: list[Callable[[], None]] = []  # what Ctrl-C does while notebooks run


class _Stopped(Exception):
    """Ctrl-C during a run: raised out of the event loop, then as KeyboardInterrupt."""


def _take_ctrl_c() -> None:
    """Make Ctrl-C stop the whole run.

    nbclient gives Ctrl-C to the notebook it set up last (it would shut down that kernel alone, in the
    middle of a cell, and the run would go on); this takes it back each time.
    """
    if _STOP:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread, or Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, _STOP[-1])


@contextlib.contextmanager
def _ctrl_c_cancels(tasks: Sequence[asyncio.Future[None]]) -> Iterator[list[bool]]:
    """Ctrl-C cancels ``tasks`` (each notebook's kernel is still shut down); the list yielded is then ``[True]``."""
    stopped: list[bool] = []

    def stop() -> None:
        stopped[:] = [True]
        for task in tasks:
            task.cancel()

    def quiet_once_stopped(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not stopped:  # after Ctrl-C, nbclient's own helper tasks fail as their kernels go: not news for the learner
            loop.default_exception_handler(context)

    asyncio.get_running_loop().set_exception_handler(quiet_once_stopped)
    _STOP.append(stop)
    _take_ctrl_c()
    try:
        yield stopped
    finally:
        _STOP.remove(stop)
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)


def _cached_plan(store: progress_cache.Store, course: str) -> dict[str, list[Result]] | None:
    """The course's exercises as the cache remembers them, if it was written by this very course."""
    if store.course != course or not store.plan:
        return None
    return {
        name: [Result(e["id"], e["title"], e["section"], name, hint=e["hint"]) for e in entries]
        for name, entries in store.plan.items()
    }


def _restore(entry: progress_cache.Entry, name: str, results: list[Result]) -> Trouble | None:
    """Fill ``results`` from a cache entry; return the trouble it recorded, if any."""
    for result, saved in zip(results, entry.results, strict=True):
        result.solved, result.seen = saved["solved"], saved["seen"]
        result.check_failed, result.short = saved["check_failed"], saved["short"]
    return Trouble(name, entry.trouble["cell"], entry.trouble["what"]) if entry.trouble else None


def _reuse(
    store: progress_cache.Store, keys: dict[str, str | None], plan: dict[str, list[Result]], tick: Callable[[str], None]
) -> tuple[dict[str, progress_cache.Entry], list[Trouble]]:
    """Take the results of every notebook whose key matches its cache entry; return those entries and their troubles."""
    reused: dict[str, progress_cache.Entry] = {}
    troubles: list[Trouble] = []
    for name, results in plan.items():
        entry = store.notebooks.get(name)
        if entry is None or keys.get(name) is None or entry.key != keys[name]:
            continue
        if [r["id"] for r in entry.results] != [r.id for r in results]:
            continue
        reused[name] = entry
        trouble = _restore(entry, name, results)
        if trouble is not None:
            troubles.append(trouble)
        tick(f"{name} (unchanged)")
    return reused, troubles


def _entry(key: str, run: Run, results: list[Result], trouble: Trouble | None) -> progress_cache.Entry | None:
    """The cache entry for a notebook that just ran, or None if its results must not be reused."""
    seen = [r.seen for r in results] + ([trouble.what] if trouble else [])
    if not run.finished or any(TIMING_DEPENDENT.search(text) for text in seen):
        return None
    saved = [{"id": r.id, "solved": r.solved, "seen": r.seen, "check_failed": r.check_failed, "short": r.short} for r in results]
    return progress_cache.Entry(
        key, round(run.seconds, 2), saved, {"cell": trouble.cell, "what": trouble.what} if trouble else None
    )


def _remember(
    store: progress_cache.Store,
    course: str,
    plan: dict[str, list[Result]],
    keys: dict[str, str | None],
    reused: dict[str, progress_cache.Entry],
    runs: dict[str, Run],
    troubles: list[Trouble],
) -> None:
    """Write the cache: the entries reused, and one for each notebook that just ran to the end in time."""
    entries = dict(reused)
    for name, run in runs.items():
        key = keys.get(name)
        trouble = next((t for t in troubles if t.notebook == name), None)
        entry = _entry(key, run, plan[name], trouble) if key else None
        if entry is not None:
            entries[name] = entry
    store.notebooks = {name: entries[name] for name in plan if name in entries}
    store.course = course
    store.plan = {
        name: [{"id": r.id, "title": r.title, "section": r.section, "hint": r.hint} for r in rs] for name, rs in plan.items()
    }
    progress_cache.save(store)


def survey(
    folder: Path,
    *,
    jobs: int = 3,
    cell_limit: float = CELL_LIMIT,
    tick: Callable[[str], None] = lambda name: None,
    cache: bool = False,
    rerun_all: bool = False,
) -> Survey:
    """Run every exercise notebook the course defines, from ``folder``; return what each check said.

    With ``cache``, a notebook unchanged since a run that went to the end is not run again: its results
    come from the folder's cache file (``rerun_all`` runs it all the same); the cache is then rewritten.

    Each notebook in the learner's ``exercises/`` folder runs top to bottom in its own kernel, as
    "Restart and run all" would, and is never written back. A check cell that printed its "✅ passed"
    line counts as solved. A notebook that cannot run (a syntax error, a kernel that dies, a cell that
    never ends) is reported with the cell and what happened, and the other notebooks still run.

    The command remembers each notebook's results (:mod:`asynclab.course.progress_cache`): a second run
    re-runs only the notebooks whose inputs changed since, and reuses the others' results.
    """
    started = time.perf_counter()
    store = progress_cache.load(folder) if cache else None
    course = progress_cache.course_fingerprint(authoring.ROOT) if store is not None else ""
    plan = (_cached_plan(store, course) if store is not None and not rerun_all else None) or expected()
    keys: dict[str, str | None] = {}
    reused: dict[str, progress_cache.Entry] = {}
    old_troubles: list[Trouble] = []
    if store is not None:
        for name, results in plan.items():
            ids = [r.id for r in results]
            keys[name] = progress_cache.notebook_key(
                folder, name, authoring.section(name), course=course, cell_limit=cell_limit, ids=ids
            )
        if not rerun_all:
            reused, old_troubles = _reuse(store, keys, plan, tick)
    to_run = {name: results for name, results in plan.items() if name not in reused}
    try:
        troubles, runs = asyncio.run(_survey(folder, to_run, jobs, cell_limit, tick))
    except _Stopped:
        raise KeyboardInterrupt from None
    if store is not None:
        _remember(store, course, plan, keys, reused, runs, troubles)
    troubles += old_troubles
    order = list(plan)
    troubles.sort(key=lambda t: order.index(t.notebook) if t.notebook in order else len(order))
    results = [r for name in plan for r in plan[name]]
    ran, seconds = {name: round(run.seconds, 2) for name, run in runs.items()}, time.perf_counter() - started
    return Survey(folder, results, troubles, seconds, ran, {name: e.seconds for name, e in reused.items()})
