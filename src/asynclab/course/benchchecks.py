"""``python -m asynclab bench-checks``: how long each check takes on its solution and on the handed-out code."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from asynclab.course import authoring, checking
from asynclab.course.notebook import kernel_client

TIMED = re.compile(r"^BENCH (\d+\.\d+) (\S+) (\S+) (.*)$", re.MULTILINE)
REAL_WORKERS = {"7.1", "7.2", "7.3", "8.7"}  # the checks that start `uvicorn --workers 2`
REAL_SERVER = {"6.2"}  # the checks that also run a real uvicorn in the check's loop


def _timed(source: str) -> str:
    """The check cell, run twice and timed: prints 'BENCH <id> <first run s> <second run s> <verdict>'.

    The first run in a kernel pays for imports and first-use set-up; the second is what a learner
    who runs the check again waits.
    """
    body = "".join(f"        {line}\n" for line in source.strip().splitlines())
    return (
        "import time as _t\n"
        "from asynclab.course.checking import CheckFailed as _CF\n"
        "_times = []\n"
        "for _ in range(2):\n"
        "    _s = _t.perf_counter()\n"
        "    try:\n" + body + "        _v = 'passed'\n"
        "    except _CF as _e:\n"
        "        _v = 'failed: ' + _e.observed[:70].replace(chr(10), ' ')\n"
        "    _times.append(_t.perf_counter() - _s)\n"
        "print(f'BENCH {_times[0]:.2f} {_CHECK_ID} {_times[1]:.2f} {_v}')\n"
    )


@dataclass
class Timing:
    exercise: str
    solution: float | None = None  # the second run (warm kernel)
    handed_out: float | None = None
    solution_first: float | None = None  # the first run in a fresh kernel (imports included)
    handed_out_first: float | None = None
    solution_verdict: str = ""
    handed_out_verdict: str = ""


async def _run(path: Path) -> dict[str, tuple[float, float, str]]:
    nb = authoring.read(path)
    for cell in nb.cells:
        if cell.cell_type == "code" and (check_cell := authoring.CHECK_CELL.match(cell.source)):
            cell.source = f"_CHECK_ID = {check_cell.group(1)!r}\n" + _timed(cell.source)
    with kernel_client(nb, path.parent, timeout=120, allow_errors=True) as client:
        async with client.async_setup_kernel(stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    await client.async_execute_cell(cell, index)
    found: dict[str, tuple[float, float, str]] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for first, exercise, second, verdict in TIMED.findall(output.get("text", "")):
                found[exercise] = (float(first), float(second), verdict)
    return found


def measure(sections: list[str] | None = None) -> list[Timing]:
    """Each solution notebook, and the exercise made from it, runs in a fresh kernel (one at a time, so
    the figures are not inflated by the other runs). Every check cell is timed in the kernel itself,
    around ``check(...)`` only. The figures are reported, never asserted: a loaded machine is slower.
    Aims: a correct answer checks in at most 1 s in-process, 3 s where the check starts real workers.
    """
    timings: dict[str, Timing] = {ex.id: Timing(ex.id) for ex in checking.all_exercises()}
    with tempfile.TemporaryDirectory(prefix="asynclab-bench-") as scratch:
        exercises = Path(scratch)
        for solution in authoring.solutions():
            if sections and solution.name[:2].lstrip("0") not in sections and solution.name[:2] not in sections:
                continue
            authoring.reset(solution, exercises)  # the exercise as handed out, with its module files
            for copy, which in ((solution, "solution"), (exercises / authoring.exercise_name(solution), "handed_out")):
                for exercise, (first, second, verdict) in asyncio.run(_run(copy)).items():
                    timing = timings.setdefault(exercise, Timing(exercise))
                    setattr(timing, which, second)
                    setattr(timing, f"{which}_first", first)
                    setattr(timing, f"{which}_verdict", verdict)
    return [t for t in timings.values() if t.solution is not None or t.handed_out is not None]


def table(timings: list[Timing]) -> str:
    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f} s"

    lines = [
        "| check | kind | aim | solution (first run) | verdict | handed out (first run) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        kind = (
            "2 workers" if t.exercise in REAL_WORKERS else "in-process + uvicorn" if t.exercise in REAL_SERVER else "in-process"
        )
        aim = 3.0 if t.exercise in REAL_WORKERS else 1.0
        flag = " ⚠" if t.solution is not None and t.solution > aim else ""
        lines.append(
            f"| {t.exercise} | {kind} | ≤ {aim:.0f} s | {seconds(t.solution)}{flag} ({seconds(t.solution_first)}) "
            f"| {t.solution_verdict[:12]} | {seconds(t.handed_out)} ({seconds(t.handed_out_first)}) | "
            f"{t.handed_out_verdict[:60]} |"
        )
    return "\n".join(lines)


def main(sections: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    timings = measure(sections)
    print(table(timings), file=out)
    print(
        "\nWall-clock seconds around check(...), run twice in a fresh kernel: the second run, then (the first, imports "
        "included). ⚠ marks a solution whose second run is over its aim. Reported, never asserted.",
        file=out,
    )
    return 0
