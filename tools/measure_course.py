"""Size a room: run the whole course as one learner would, in one process tree, and measure it.

    python tools/measure_course.py [--keep-kernels] [--json FILE]

A driver process runs every lesson notebook, then every solution notebook, each in a fresh
kernel (as a learner opening them one by one), then ``python -m asynclab progress`` on a copy of
the solutions (every exercise solved: the heaviest progress run). This script samples the whole
process tree of that driver (kernels, uvicorn worker groups, progress's kernels) every 0.2 s and
prints:

- peak memory: the largest sum of resident memory (RSS) over every process of the tree at one
  moment. Summing RSS counts shared library pages once per process, so it overstates a little:
  a safe figure for sizing.
- CPU-seconds: user + system time of every process of the tree (``getrusage(RUSAGE_CHILDREN)``
  once the driver has exited: every descendant was waited for, so its time is included).
- wall time, which depends on what else the machine is doing.

``--keep-kernels`` leaves each notebook's kernel running until the end, as JupyterLab does for a
learner who opens every notebook and never shuts a kernel down: the worst case for memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def _driver(keep: bool, out: Path) -> None:
    """Runs inside the child process: every notebook, then progress; writes per-step figures to ``out``.

    Before each step it writes the step's name to ``out.now``, so the sampler can say which step
    held the most memory.
    """
    now = out.with_suffix(".now")
    import nbformat
    from nbclient import NotebookClient

    from asynclab.course import authoring

    steps = []
    clients = []
    me = psutil.Process()

    def tree_rss() -> int:
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    notebooks = authoring.lessons(ROOT) + authoring.solutions(ROOT)
    for path in notebooks:
        now.write_text(f"{path.parent.name}/{path.name}", encoding="utf-8")
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
        started = time.perf_counter()
        kernel_rss = 0
        if keep:
            client.km = client.create_kernel_manager()
            client.start_new_kernel()
            client.start_new_kernel_client()
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, index)
            kernel_rss = psutil.Process(client.km.provisioner.process.pid).memory_info().rss  # type: ignore[union-attr]
            clients.append(client)
        else:
            client.execute()
        errors = sum(o.output_type == "error" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        steps.append({"step": f"{path.parent.name}/{path.name}", "seconds": round(time.perf_counter() - started, 1),
                      "errors": errors, "kernel_rss_mb": round(kernel_rss / 2**20), "tree_rss_mb": round(tree_rss() / 2**20)})
        print(json.dumps(steps[-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        learner = Path(tmp) / "exercises"
        authoring.write_solved(learner)
        now.write_text("progress (solutions copied over)", encoding="utf-8")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "asynclab", "progress", "--folder", str(learner)],
                              capture_output=True, text=True, cwd=ROOT, check=False)
        solved = next((line.strip() for line in done.stdout.splitlines() if " solved" in line), done.stderr[-300:])
        steps.append({"step": "progress (solutions copied over)", "seconds": round(time.perf_counter() - started, 1),
                      "result": solved, "tree_rss_mb": round(tree_rss() / 2**20)})
        print(json.dumps(steps[-1]), flush=True)
    for client in clients:
        client._cleanup_kernel()
    out.write_text(json.dumps(steps, indent=1), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-kernels", action="store_true", help="keep every notebook's kernel until the end")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        _driver(args.keep_kernels, Path(args.driver))
        return 0
    steps_file = Path(tempfile.mkstemp(suffix=".json")[1])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, __file__, "--driver", str(steps_file)] + (["--keep-kernels"] if args.keep_kernels else [])
    child = psutil.Popen(command, cwd=ROOT)
    peak = {"rss": 0, "processes": 0}
    by_step: dict[str, int] = {}
    now = steps_file.with_suffix(".now")
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
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = {
        "keep_kernels": args.keep_kernels,
        "exit_code": code,
        "peak_tree_rss_mb": round(peak["rss"] / 2**20),
        "processes_at_peak": peak["processes"],
        "cpu_seconds": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cores": psutil.cpu_count(),
        "steps": json.loads(steps_file.read_text(encoding="utf-8")) if steps_file.stat().st_size else [],
    }
    figures["peak_tree_rss_mb_by_step"] = {step: round(rss / 2**20) for step, rss in by_step.items()}
    steps_file.unlink()
    now.unlink(missing_ok=True)
    print(json.dumps({k: v for k, v in figures.items() if k != "steps"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
