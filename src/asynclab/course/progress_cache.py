"""What ``python -m asynclab progress`` remembers between runs, so that it re-runs only what changed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE = ".progress-cache.json"
FORMAT = "asynclab-progress-cache/1"
# The whole asynclab package (wherever this module sits in it): the checks, the bench, the stand-ins.
PACKAGE = Path(__file__).resolve().parents[1]
_SKIPPED_SUFFIXES = (".pyc", ".bak")


@dataclass
class Entry:
    """One notebook's results from a run that went to the end."""

    key: str
    seconds: float
    results: list[dict[str, Any]]  # per exercise: id, solved, seen, check_failed, short
    trouble: dict[str, Any] | None = None  # the cell that failed first (a learner's error, not a time-out): cell, what


@dataclass
class Store:
    """The cache file's content: the course it was made with, that course's plan, and each notebook's entry."""

    path: Path
    course: str = ""
    plan: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # notebook -> [{id, title, section, hint}]
    notebooks: dict[str, Entry] = field(default_factory=dict)


def inputs(folder: Path) -> list[Path]:
    """The files under ``folder`` a run can depend on: not bytecode, backups or hidden files (``.ipynb_checkpoints``)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts)
        and not p.name.endswith(_SKIPPED_SUFFIXES)
    )


def _add(digest: Any, label: str, data: bytes) -> None:
    digest.update(f"{label}\0{len(data)}\0".encode())
    digest.update(data)


def _installed() -> list[str]:
    """The installed distributions, by their ``*.dist-info`` folder names (name and version): a listing, no metadata read."""
    names: set[str] = set()
    for entry in sys.path:
        with contextlib.suppress(OSError):
            names.update(n for n in os.listdir(entry or ".") if n.endswith(".dist-info"))
    return sorted(names)


def course_fingerprint(root: Path) -> str:
    """A digest of the course as installed: a course update or a package upgrade that could change a check changes it."""
    digest = hashlib.sha256()
    _add(digest, "python", sys.version.encode())
    _add(digest, "installed", "\n".join(_installed()).encode())
    for base in (PACKAGE, root / "solutions"):
        for path in inputs(base):
            _add(digest, str(path.relative_to(base)), path.read_bytes())
    return digest.hexdigest()


def notebook_key(folder: Path, name: str, modules: str, *, course: str, cell_limit: float, ids: list[str]) -> str | None:
    """The key of one notebook's results (``modules``: the name of its section's folder), or None if it cannot be read.

    The memory is one small JSON file in the learner's folder, ``.progress-cache.json`` (a dot-file:
    JupyterLab's file browser does not show it). For each exercise notebook it keeps the results of
    the last run that went to the end, under a key made of everything those results depend on:

    - the course: the ``asynclab`` package's own files, the solution notebooks and their module files
      (they define which exercises a notebook holds), the Python version and the installed packages;
    - the notebook's bytes, and the bytes of its section's module files in the learner's folder
      (``exercises/08-capstone/*`` for notebook 08);
    - the cell limit.

    A file that is missing, unreadable or not in this shape is ignored and written anew: the cache
    only ever saves time, it never decides a result.
    """
    digest = hashlib.sha256()
    _add(digest, "course", course.encode())
    _add(digest, "limits", f"{name}\0{cell_limit!r}\0{','.join(ids)}".encode())
    try:
        _add(digest, "notebook", (folder / name).read_bytes())
        for path in inputs(folder / modules):
            _add(digest, str(path.relative_to(folder / modules)), path.read_bytes())
    except OSError:
        return None
    return digest.hexdigest()


def _entry(data: Any) -> Entry:
    trouble = data["trouble"]
    if trouble is not None and not (isinstance(trouble["cell"], int) and isinstance(trouble["what"], str)):
        raise TypeError("trouble")
    results = data["results"]
    for r in results:
        if not (isinstance(r["id"], str) and isinstance(r["seen"], str)):
            raise TypeError("result")
        if not all(isinstance(r[k], bool) for k in ("solved", "check_failed", "short")):
            raise TypeError("result")
    if not isinstance(data["key"], str) or not isinstance(data["seconds"], int | float):
        raise TypeError("entry")
    return Entry(data["key"], float(data["seconds"]), list(results), trouble)


def _plan(data: Any) -> dict[str, list[dict[str, str]]]:
    return {
        str(name): [{k: str(e[k]) for k in ("id", "title", "section", "hint")} for e in entries] for name, entries in data.items()
    }


def load(folder: Path) -> Store:
    """The cache of ``folder``; an empty one when the file is missing, unreadable or not in the expected shape."""
    path = folder / FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["format"] != FORMAT or not isinstance(data["course"], str):
            return Store(path)
        notebooks = {str(name): _entry(entry) for name, entry in data["notebooks"].items()}
        return Store(path, data["course"], _plan(data["plan"]), notebooks)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return Store(path)


def save(store: Store) -> bool:
    """Write the cache (atomically, so two runs at once never leave half a file); False if the folder is read-only."""
    data = {
        "format": FORMAT,
        "course": store.course,
        "plan": store.plan,
        "notebooks": {name: vars(entry) for name, entry in store.notebooks.items()},
    }
    try:
        handle, name = tempfile.mkstemp(dir=store.path.parent, prefix=FILE, suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False, indent=1)
        Path(name).replace(store.path)
    except OSError:
        Path(name).unlink(missing_ok=True)
        return False
    return True
