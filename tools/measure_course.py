"""Measure the course: each lesson's run time (its core and the whole notebook), and what a room needs.

python tools/measure_course.py                  # the lessons, the solutions, then progress
python tools/measure_course.py --lessons-only   # the lessons alone: the run-time table
python tools/measure_course.py --keep-kernels   # keep every kernel: the worst case for memory
python tools/measure_course.py --json FILE      # also write the figures to FILE
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]


def _run_notebook(path: Path, keep: bool, clients: list[Any]) -> dict[str, Any]:
    """Run one notebook's cells in order in a fresh kernel; time the start, the core and the whole."""
    import nbformat
    from nbclient import NotebookClient

    from asynclab.course import teaching

    nb = nbformat.read(path, as_version=4)
    core = len(teaching.core_cells(nb))  # the cells before "Going deeper" (all of them if there is none)
    client = NotebookClient(
        nb, timeout=120, allow_errors=True, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    load = os.getloadavg()[0]
    started = time.perf_counter()
    client.km = client.create_kernel_manager()
    client.start_new_kernel()
    client.start_new_kernel_client()
    ready = core_done = time.perf_counter()
    kernel_rss = 0
    try:
        for index, cell in enumerate(nb.cells):
            if index == core:
                core_done = time.perf_counter()
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
        finished = time.perf_counter()
        if core == len(nb.cells):
            core_done = finished
        if keep:
            kernel_rss = psutil.Process(client.km.provisioner.process.pid).memory_info().rss  # type: ignore[union-attr]
    finally:
        if keep:
            clients.append(client)
        else:
            client._cleanup_kernel()
    errors = sum(  # a cell tagged raises-exception fails on purpose (a check shown failing)
        o.output_type == "error"
        for c in nb.cells
        if c.cell_type == "code" and "raises-exception" not in c.metadata.get("tags", [])
        for o in c.get("outputs", [])
    )
    title = nb.cells[0].source.splitlines()[0].lstrip("# ").strip() if nb.cells else path.stem
    return {
        "step": f"{path.parent.name}/{path.name}",
        "title": title,
        "kernel_start_seconds": round(ready - started, 1),
        "core_seconds": round(core_done - ready, 1),
        "seconds": round(finished - ready, 1),
        "going_deeper": core < len(nb.cells),
        "errors": errors,
        "load_average_1min_at_start": round(load, 1),
        "kernel_rss_mb": round(kernel_rss / 2**20),
    }


def _driver(keep: bool, lessons_only: bool, out: Path) -> None:
    """Runs inside the child process: every notebook, then progress; writes per-step figures to ``out``.

    Before each step it writes the step's name to ``out.now``, so the sampler can say which step
    held the most memory.
    """
    now = out.with_suffix(".now")
    from asynclab.course import authoring

    steps = []
    clients: list[Any] = []
    me = psutil.Process()

    def tree_rss() -> int:
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    notebooks = authoring.lessons(ROOT) + ([] if lessons_only else authoring.solutions(ROOT))
    for path in notebooks:
        now.write_text(f"{path.parent.name}/{path.name}", encoding="utf-8")
        steps.append({**_run_notebook(path, keep, clients), "tree_rss_mb": round(tree_rss() / 2**20)})
        print(json.dumps(steps[-1]), flush=True)
    if not lessons_only:
        with tempfile.TemporaryDirectory() as tmp:
            learner = Path(tmp) / "exercises"
            authoring.write_solved(learner)
            now.write_text("progress (solutions copied over)", encoding="utf-8")
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "asynclab", "progress", "--folder", str(learner)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            solved = next((line.strip() for line in done.stdout.splitlines() if " solved" in line), done.stderr[-300:])
            steps.append(
                {
                    "step": "progress (solutions copied over)",
                    "seconds": round(time.perf_counter() - started, 1),
                    "result": solved,
                    "tree_rss_mb": round(tree_rss() / 2**20),
                }
            )
            print(json.dumps(steps[-1]), flush=True)
    for client in clients:
        client._cleanup_kernel()
    out.write_text(json.dumps(steps, indent=1), encoding="utf-8")


def machine() -> str:
    """The machine in one line: cores, CPU model, OS, Python."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), {platform.system()}, Python {platform.python_version()}"


def lesson_table(figures: dict[str, Any]) -> str:
    """The lessons' run times as markdown, with what they were measured on."""
    lessons = [s for s in figures["steps"] if s["step"].startswith("notebooks/")]
    low, high = figures["load_average_1min_range"]
    first, last = figures["kernel_start_seconds_range"]
    rows = [
        (
            f"Measured on {figures['date']} with `{figures['command']}`: {figures['machine']}; load average (1 min) "
            f"{low:g}–{high:g} while it ran. Each lesson ran in a fresh kernel, its cells in order, as Run All does; "
            f"starting the kernel took {first:g}–{last:g} s more."
        ),
        "",
        "| Lesson | Core (before *Going deeper*) | Whole notebook |",
        "|---|---|---|",
    ]
    for step in lessons:
        whole = f"{step['seconds']:.1f} s" + ("" if step["going_deeper"] else " (no *Going deeper*)")
        errors = f" ({step['errors']} cell(s) failed)" if step["errors"] else ""
        rows.append(f"| {step['title']} | {step['core_seconds']:.1f} s | {whole}{errors} |")
    return "\n".join(rows)


def _watch(child: psutil.Popen, now: Path) -> tuple[int, dict[str, int], dict[str, int], list[float]]:
    """Wait for the driver, sampling its process tree's memory (by step) and the load average every 0.2 s."""
    peak = {"rss": 0, "processes": 0}
    by_step: dict[str, int] = {}
    loads = [os.getloadavg()[0]]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                procs = [child, *child.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
            if total > peak["rss"]:
                peak.update(rss=total, processes=len(procs))
            try:
                step = now.read_text(encoding="utf-8")
            except OSError:
                step = "starting"
            by_step[step] = max(by_step.get(step, 0), total)
            loads.append(os.getloadavg()[0])
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    stop.set()
    sampler.join()
    return code, peak, by_step, loads


def main() -> int:
    """Run the driver in a child process and print what it measured.

    The driver runs every lesson, then every solution notebook, each in a fresh kernel (a learner
    opening them one by one, with Run All), then ``python -m asynclab progress`` on a solved copy
    (the heaviest progress run); per notebook it times the kernel's start, the core (every cell
    before "Going deeper") and the whole. Printed: the lessons' run-time table (machine, command,
    date and load average, for docs/instructors.md); peak memory, the largest sum of RSS over the
    tree at one moment (shared pages counted once per process: a safe overstatement for sizing);
    CPU-seconds of the whole tree (``RUSAGE_CHILDREN`` once the driver was waited for); wall time.
    ``--keep-kernels`` keeps every kernel until the end, as a learner who never shuts one down.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lessons-only", action="store_true", help="run the lessons alone (no solutions, no progress)")
    parser.add_argument("--keep-kernels", action="store_true", help="keep every notebook's kernel until the end")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        _driver(args.keep_kernels, args.lessons_only, Path(args.driver))
        return 0
    steps_file = Path(tempfile.mkstemp(suffix=".json")[1])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    options = (["--lessons-only"] if args.lessons_only else []) + (["--keep-kernels"] if args.keep_kernels else [])
    command = [sys.executable, __file__, "--driver", str(steps_file), *options]
    child = psutil.Popen(command, cwd=ROOT)
    code, peak, by_step, loads = _watch(child, steps_file.with_suffix(".now"))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    steps = json.loads(steps_file.read_text(encoding="utf-8")) if steps_file.stat().st_size else []
    starts = [s["kernel_start_seconds"] for s in steps if "kernel_start_seconds" in s] or [0.0]
    figures = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python tools/measure_course.py", *options]),
        "machine": machine(),
        "keep_kernels": args.keep_kernels,
        "exit_code": code,
        "peak_tree_rss_mb": round(peak["rss"] / 2**20),
        "processes_at_peak": peak["processes"],
        "cpu_seconds": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average_1min_range": [round(min(loads), 1), round(max(loads), 1)],
        "kernel_start_seconds_range": [min(starts), max(starts)],
        "cores": psutil.cpu_count(),
        "steps": steps,
    }
    figures["peak_tree_rss_mb_by_step"] = {step: round(rss / 2**20) for step, rss in by_step.items()}
    steps_file.unlink()
    steps_file.with_suffix(".now").unlink(missing_ok=True)
    print(json.dumps({k: v for k, v in figures.items() if k != "steps"}, indent=1))
    print()
    print(lesson_table(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
