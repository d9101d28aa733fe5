"""A lesson's core path measured against its teaching block: words, code lines, the longest cell, minutes.

The core is everything before the first heading that starts with "Going deeper". Reading time is
estimated at :data:`WORDS_PER_MINUTE` words of prose and :data:`CODE_LINES_PER_MINUTE` lines of code
(read, run and looked at) per minute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asynclab.course import authoring

WORDS_PER_MINUTE = 150  # instructional prose, read with care
CODE_LINES_PER_MINUTE = 20  # short cells, read and run, their output looked at
MAX_WORDS, MAX_CODE_LINES, MAX_CELL_LINES, MAX_LONG_CELL_LINES = 1600, 250, 25, 35
DEEPER = re.compile(r"^#+ Going deeper", re.MULTILINE)
TIME = re.compile(r"\*\*Time:\*\* (\d+) min \w+ · ([\d–]+) min exercises")
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’_.-]*")


@dataclass(frozen=True)
class Core:
    """What a learner reads and runs before "Going deeper"."""

    words: int
    code_lines: int
    largest_cell: int
    long_cells: tuple[int, ...]  # the core's code cells over MAX_CELL_LINES lines, by their index
    planned_minutes: int | None

    @property
    def minutes(self) -> float:
        return self.words / WORDS_PER_MINUTE + self.code_lines / CODE_LINES_PER_MINUTE


def lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip())


def prose_words(markdown: str) -> int:
    """Words of a markdown cell, its fenced code left out (that is code, counted as such)."""
    return len(WORD.findall(re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)))


def core_cells(nb: Any) -> list[Any]:
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and DEEPER.search(cell.source):
            break
        cells.append(cell)
    return cells


def measure(path: Path) -> Core:
    nb = authoring.read(path)
    cells = core_cells(nb)
    code = [(i, lines(c.source)) for i, c in enumerate(cells) if c.cell_type == "code"]
    planned = TIME.search(nb.cells[0].source) if nb.cells else None
    return Core(
        words=sum(prose_words(c.source) for c in cells if c.cell_type == "markdown"),
        code_lines=sum(n for _, n in code),
        largest_cell=max((n for _, n in code), default=0),
        long_cells=tuple(i for i, n in code if n > MAX_CELL_LINES),
        planned_minutes=int(planned.group(1)) if planned else None,
    )


def table(root: Path = authoring.ROOT) -> str:
    """Every lesson's core, one row each (``python -m asynclab lessons``)."""
    rows = [
        "| lesson | words | code lines | largest cell | cells over 25 | estimated min | planned min |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in authoring.lessons(root):
        core = measure(path)
        rows.append(
            f"| {path.name[:2]} | {core.words:,} | {core.code_lines} | {core.largest_cell} | {len(core.long_cells)} "
            f"| {core.minutes:.1f} | {core.planned_minutes or '-'} |"
        )
    return "\n".join(rows)
