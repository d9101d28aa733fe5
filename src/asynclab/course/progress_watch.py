"""``python -m asynclab progress --watch``: run progress again each time a notebook or module file is saved."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from asynclab.course import progress, progress_cache, progress_table


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    """The notebooks' and section module files' modification times and sizes: what ``--watch`` compares every second.

    Other files (a database a notebook writes next to itself) do not count, or each run would start the next.
    """
    snapshot: dict[Path, tuple[int, int]] = {}
    try:
        sections = [p for p in folder.iterdir() if p.is_dir() and re.match(r"\d{2}-", p.name)]
    except OSError:  # the folder is gone for now
        return snapshot
    for path in [*folder.glob("*.ipynb"), *(f for section in sections for f in progress_cache.inputs(section))]:
        try:
            stat = path.stat()
        except OSError:  # deleted between the listing and now: the next look sees it gone
            continue
        snapshot[path] = (stat.st_mtime_ns, stat.st_size)
    return snapshot


def watch(
    folder: Path,
    *,
    jobs: int = 3,
    cell_limit: float = progress.CELL_LIMIT,
    rerun_all: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """``progress --watch``: run progress, then again each time a notebook or module file is saved, until Ctrl-C.

    ``rerun_all`` applies to the first round; later rounds run only what changed.
    """
    out, err = out or sys.stdout, err or sys.stderr
    if not folder.is_dir():
        return progress_table.main(folder, out=out, err=err)
    try:
        while True:
            seen = _snapshot(folder)  # taken first: a file saved while the notebooks run starts the next round
            progress_table.main(folder, jobs=jobs, cell_limit=cell_limit, rerun_all=rerun_all, out=out, err=err)
            rerun_all = False
            print(f"\nWatching {folder}/: save a notebook to check it again (Ctrl-C stops).", file=out, flush=True)
            while _snapshot(folder) == seen:
                sleep(1.0)
            print("\n" + "─" * 60, file=out)
    except KeyboardInterrupt:
        print("\nStopped watching.", file=out)
        return 0
