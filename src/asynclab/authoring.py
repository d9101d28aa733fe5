"""Keep one source of truth: exercise notebooks are made from the solution notebooks.

In a solution notebook, a code cell marks what the learner must write like this::

    # BEGIN SOLUTION
    report = await anyio.to_thread.run_sync(weather.fetch, city)
    # HANDED OUT
    # report = weather.fetch(city)
    # END SOLUTION

The exercise gets the lines under ``# HANDED OUT`` with their leading ``# `` removed, and loses
the solution lines. A cell tagged ``solution-only`` is left out of the exercise entirely.
Every notebook is kept clean: no outputs, no execution counts, no per-machine metadata.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import nbformat

BEGIN, HANDED_OUT, END = "# BEGIN SOLUTION", "# HANDED OUT", "# END SOLUTION"
SOLUTION_ONLY = "solution-only"
ROOT = Path(__file__).resolve().parents[2]
KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info")


class MarkerError(ValueError):
    pass


def stub_source(source: str) -> str:
    """Turn a solution cell's source into the handed-out one."""
    out: list[str] = []
    state = "plain"
    for number, line in enumerate(source.splitlines(), 1):
        marker = line.strip()
        if marker == BEGIN:
            if state != "plain":
                raise MarkerError(f"line {number}: {BEGIN} inside a solution region")
            state = "solution"
        elif marker == HANDED_OUT:
            if state != "solution":
                raise MarkerError(f"line {number}: {HANDED_OUT} outside a solution region")
            state = "stub"
        elif marker == END:
            if state == "plain":
                raise MarkerError(f"line {number}: {END} without {BEGIN}")
            state = "plain"
        elif state == "plain":
            out.append(line)
        elif state == "stub":
            match = re.match(r"^(\s*)# ?(.*)$", line)
            if not match:
                raise MarkerError(f"line {number}: a handed-out line must be commented out with '# '")
            out.append(match.group(1) + match.group(2) if match.group(2) else "")
    if state != "plain":
        raise MarkerError(f"a solution region is not closed with {END}")
    return "\n".join(out)


def has_markers(source: str) -> bool:
    return any(line.strip() == BEGIN for line in source.splitlines())


def clean(nb: Any) -> Any:
    """Strip outputs, execution counts and per-machine metadata, in place; return the notebook."""
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NOTEBOOK_METADATA}
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags")
        jupyter = cell.get("metadata", {}).get("jupyter")
        cell.metadata = {}
        if tags:
            cell.metadata["tags"] = list(tags)
        if jupyter:  # keeps "source_hidden" (collapsed answers)
            cell.metadata["jupyter"] = dict(jupyter)
        cell.pop("id", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def make_exercise(solution: Any) -> Any:
    """The exercise notebook for a solution notebook."""
    nb = clean(copy.deepcopy(solution))
    cells = []
    for cell in nb.cells:
        if SOLUTION_ONLY in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "code" and has_markers(cell.source):
            cell.source = stub_source(cell.source)
        cells.append(cell)
    nb.cells = cells
    return nb


def read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def dumps(nb: Any) -> str:
    nb = copy.deepcopy(nb)
    nb.nbformat, nb.nbformat_minor = 4, 4
    for cell in nb.cells:
        cell.pop("id", None)
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def notebooks(root: Path = ROOT) -> list[Path]:
    return sorted(p for folder in ("notebooks", "exercises", "solutions") for p in (root / folder).glob("*.ipynb"))


def build(root: Path = ROOT) -> list[Path]:
    """Clean every notebook and regenerate ``exercises/`` from ``solutions/``; return the files changed."""
    changed: list[Path] = []
    for path in notebooks(root):
        if path.parent.name == "exercises":
            continue
        text = dumps(clean(read(path)))
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for solution in sorted((root / "solutions").glob("*.ipynb")):
        target = root / "exercises" / solution.name
        text = dumps(make_exercise(read(solution)))
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(target)
    return changed
