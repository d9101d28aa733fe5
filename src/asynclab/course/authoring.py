"""One source of truth: the exercise notebooks are made from the solution notebooks, and every copied fact from its source.

In a solution notebook (or a section's module file, ``solutions/08-capstone/*.py``), a code cell marks
what the learner must write like this::

    # BEGIN SOLUTION
    report = await anyio.to_thread.run_sync(weather.fetch, city)
    # HANDED OUT
    # report = weather.fetch(city)
    # END SOLUTION
"""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path
from typing import Any

import nbformat

BEGIN, HANDED_OUT, END = "# BEGIN SOLUTION", "# HANDED OUT", "# END SOLUTION"
SOLUTION_ONLY = "solution-only"
# A check cell: ``check("N.M", ...)`` at the start of a line. The one parser of it (progress and the tests use it).
CHECK_CELL = re.compile(r'^check\(\s*"(\d+\.\d+)"', re.MULTILINE)
# JupyterLab's Run All goes on past a cell with this tag: in a handed-out notebook every check fails,
# and the learner must still see every exercise's status. Solutions never carry it, so nbval stays strict there.
RUN_ALL_GOES_ON = "raises-exception"
ROOT = Path(__file__).resolve().parents[3]  # src/asynclab/course/authoring.py -> the course folder
# The kernel every notebook runs on, exactly as JupyterLab records it when that kernel starts, so that
# opening a notebook changes nothing. JupyterLab also records the kernel's language_info, which names the
# exact Python version (3.11.7); a notebook stores only its name, and the course's JupyterLab server fills
# in the rest as it sends the notebook to the browser (asynclab.course.labserver).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}
NBFORMAT = (4, 5)
CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # nbformat 4.5's rule for a cell id


class MarkerError(ValueError):
    pass


def split_source(source: str) -> tuple[str, str]:
    """Split a marked source into (the solution, what is handed out), both without markers."""
    solution: list[str] = []
    stub: list[str] = []
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
            solution.append(line)
            stub.append(line)
        elif state == "solution":
            solution.append(line)
        else:
            match = re.match(r"^(\s*)# ?(.*)$", line)
            if not match:
                raise MarkerError(f"line {number}: a handed-out line must be commented out with '# '")
            stub.append(match.group(1) + match.group(2) if match.group(2) else "")
    if state != "plain":
        raise MarkerError(f"a solution region is not closed with {END}")
    return "\n".join(solution), "\n".join(stub)


def stub_source(source: str) -> str:
    """Turn a solution cell's source into the handed-out one."""
    return split_source(source)[1]


def solution_source(source: str) -> str:
    """The solution alone: the source without its markers and handed-out lines."""
    return split_source(source)[0]


def has_markers(source: str) -> bool:
    return any(line.strip() == BEGIN for line in source.splitlines())


def clean(nb: Any) -> Any:
    """Strip outputs, execution counts and per-machine metadata, and give every cell an id, in place; return the notebook."""
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags")
        jupyter = cell.get("metadata", {}).get("jupyter")
        cell.metadata = {}
        if tags:
            cell.metadata["tags"] = list(tags)
        if jupyter:  # keeps "source_hidden" (collapsed answers)
            cell.metadata["jupyter"] = dict(jupyter)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    give_ids(nb)
    return nb


def give_ids(nb: Any) -> Any:
    """Keep every cell's id; give a cell that has none (or an invalid or repeated one) a new, random one.

    Notebooks are stored as nbformat 4.5, the format JupyterLab writes: an id given once is committed with its cell.
    """
    seen: set[str] = set()
    for cell in nb.cells:
        given = cell.get("id")
        while not isinstance(given, str) or not CELL_ID.fullmatch(given) or given in seen:
            given = uuid.uuid4().hex[:8]  # as nbformat makes them
        cell["id"] = given
        seen.add(given)
    return nb


def make_exercise(solution: Any) -> Any:
    """The exercise notebook for a solution notebook.

    It gets the lines under ``# HANDED OUT`` with their leading ``# `` removed and loses the solution
    lines; a cell tagged ``solution-only`` is left out. Its cells carry their solution cells' ids.
    """
    nb = clean(copy.deepcopy(solution))
    cells = []
    for cell in nb.cells:
        if SOLUTION_ONLY in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "code" and has_markers(cell.source):
            cell.source = stub_source(cell.source)
        if cell.cell_type == "code" and CHECK_CELL.search(cell.source):
            tags = [t for t in cell.metadata.get("tags", []) if t != RUN_ALL_GOES_ON]
            cell.metadata["tags"] = [*tags, RUN_ALL_GOES_ON]
        cells.append(cell)
    nb.cells = cells
    return nb


def read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def dumps(nb: Any) -> str:
    """The notebook's text as nbformat 4.5 (its cells must have their ids: ``clean`` gives them)."""
    nb = copy.deepcopy(nb)
    nb.nbformat, nb.nbformat_minor = NBFORMAT
    missing = [i for i, cell in enumerate(nb.cells) if not cell.get("id")]
    if missing:
        raise ValueError(f"cells {missing} have no id: clean() the notebook first")
    text: str = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def notebooks(root: Path = ROOT) -> list[Path]:
    return sorted(p for folder in ("notebooks", "exercises", "solutions") for p in (root / folder).glob("*.ipynb"))


# --------------------------------------------------------------------------- names

ROLES = ("notebooks", "exercises", "solutions")  # the folder, and the word a file's name carries there
_NAME = re.compile(r"^(\d{2})-(?:(exercises|solutions)-)?(.+?)(?:\.ipynb)?$")


def section(path: Path | str) -> str:
    """The section a notebook belongs to ("01-async-handlers"), from any of its three names or a module folder's."""
    match = _NAME.match(Path(path).name)
    if not match:
        raise LookupError(f"{Path(path).name!r} is not a section's notebook (they start with two digits)")
    return f"{match.group(1)}-{match.group(3)}"


def named(section_stem: str, role: str) -> str:
    """The file name of a section's notebook in ``notebooks/``, ``exercises/`` or ``solutions/``.

    The word after the number tells them apart in a JupyterLab tab: ``01-async-handlers.ipynb`` (the
    lesson), ``01-exercises-async-handlers.ipynb``, ``01-solutions-async-handlers.ipynb``. Every name is made here.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    number, topic = section_stem.split("-", 1)
    return f"{section_stem}.ipynb" if role == "notebooks" else f"{number}-{role}-{topic}.ipynb"


def exercise_name(notebook: Path | str) -> str:
    """The learner's file name for any of a section's notebooks."""
    return named(section(notebook), "exercises")


def solutions(root: Path = ROOT) -> list[Path]:
    """Every solution notebook, in section order."""
    return sorted((root / "solutions").glob("[0-9][0-9]-solutions-*.ipynb"))


def lessons(root: Path = ROOT) -> list[Path]:
    """Every lesson notebook, start-here first."""
    return sorted((root / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def exercises(root: Path = ROOT) -> list[Path]:
    """Every exercise notebook as handed out, in section order."""
    return [root / "exercises" / exercise_name(s) for s in solutions(root)]


def companions(solution: Path) -> list[Path]:
    """The module files a solution notebook owns: ``solutions/<section>/*.py``."""
    return sorted((solution.parent / section(solution)).glob("*.py"))


def handed_out(solution: Path) -> dict[Path, str]:
    """What the learner gets for one solution notebook: its exercise and its module files, by path under exercises/."""
    files = {Path(exercise_name(solution)): dumps(make_exercise(read(solution)))}
    for module in companions(solution):
        text = stub_source(module.read_text(encoding="utf-8"))
        files[module.relative_to(solution.parent)] = text if text.endswith("\n") else text + "\n"
    return files


def _write_if_changed(target: Path, text: str, changed: list[Path]) -> None:
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(target)


# Files a team copies that are the course's own modules: written from them, never edited by hand.
COPIED = {Path("templates/keep-the-rules/loop_watchdog.py"): Path("src/asynclab/bench/watchdog.py")}


def build(root: Path = ROOT) -> list[Path]:
    """Clean every notebook, write every copied fact from its source, regenerate ``exercises/`` from
    ``solutions/`` and the template's copies; return the files changed.

    The copied facts: an exercise's title from its ``@exercise(...)`` registration, a lesson's title
    and minutes from its first cell, the syllabus's other columns from ``docs/syllabus.toml``. What
    cannot be written (a missing heading or guide entry) is listed by ``facts.unsourced``.
    """
    from asynclab.course.facts import GUIDE, README, exercise_titles, retitle, retitle_guide, syllabus_lessons, write_syllabus

    changed: list[Path] = []
    for target, source in COPIED.items():
        _write_if_changed(root / target, (root / source).read_text(encoding="utf-8"), changed)
    titles = exercise_titles()
    lesson_titles = {number: lesson.title for number, lesson in syllabus_lessons(root).items()}
    for path in notebooks(root):
        if path.parent.name == "exercises":
            continue
        nb = clean(read(path))
        if path.parent.name == "solutions":
            retitle(nb, titles, lesson_titles.get(path.name[:2], ""))
        _write_if_changed(path, dumps(nb), changed)
    for solution in solutions(root):
        for relative, text in handed_out(solution).items():
            _write_if_changed(root / "exercises" / relative, text, changed)
    if (root / README).exists():
        _write_if_changed(root / README, write_syllabus((root / README).read_text(encoding="utf-8"), root), changed)
    if (root / GUIDE).exists():
        _write_if_changed(root / GUIDE, retitle_guide((root / GUIDE).read_text(encoding="utf-8"), titles), changed)
    return changed


def check_ids(nb: Any) -> list[str]:
    """The exercises a notebook checks, in order: its ``check("N.M", ...)`` cells."""
    return [m for cell in nb.cells if cell.cell_type == "code" for m in CHECK_CELL.findall(cell.source)]


def find_solution(which: str, root: Path = ROOT) -> Path:
    """The solution notebook for ``which``: a section number ("3", "03"), an exercise ("3.2") or a file name."""
    name = Path(which).name
    number = name.split(".")[0] if re.fullmatch(r"\d+(\.\d+)?", name) else name[:2]
    candidates = [p for p in solutions(root) if p.name[:2] == f"{int(number):02d}"] if number.isdigit() else []
    if len(candidates) != 1:
        known = ", ".join(exercise_name(p) for p in solutions(root))
        raise LookupError(f"no exercise notebook matches {which!r}; the notebooks are {known}")
    return candidates[0]


def reset(solution: Path, folder: Path) -> list[Path]:
    """Give one exercise notebook (and its module files) back as handed out; keep the old files as ``*.bak``."""
    written: list[Path] = []
    for relative, text in handed_out(solution).items():
        target = folder / relative
        if target.exists():
            if target.read_text(encoding="utf-8", errors="replace") == text:
                continue
            target.replace(target.with_name(target.name + ".bak"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def write_solved(folder: Path, root: Path = ROOT) -> list[Path]:
    """A learner's folder with every exercise solved: each solution under its exercise's name, with its modules.

    For the course's own tests and tools: what ``progress`` sees when a learner has done everything.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for solution in solutions(root):
        written.append(folder / exercise_name(solution))
        written[-1].write_bytes(solution.read_bytes())
        for module in companions(solution):
            target = folder / module.relative_to(solution.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(module.read_bytes())
    return written
