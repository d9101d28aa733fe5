"""A scratch folder for the app modules a notebook writes, removed when the kernel exits.

uvicorn's worker processes import an app from a file, so a lesson writes its modules into
:func:`workspace`; a check serves a :func:`fresh_copy` of a learner's module from an empty folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psutil

_WORKSPACE: tempfile.TemporaryDirectory[str] | None = None


def workspace() -> Path:
    """A temporary folder for the app modules a notebook writes (``%%writefile {apps}/name.py``).

    uvicorn's workers import the app from a file, so a notebook writes its modules here. The
    folder is removed when the kernel exits.
    """
    global _WORKSPACE
    if _WORKSPACE is None:
        _remove_stale_workspaces()
        _WORKSPACE = tempfile.TemporaryDirectory(prefix=f"asynclab-apps-{os.getpid()}-")
    return Path(_WORKSPACE.name)


def _remove_stale_workspaces() -> None:
    """Remove the folders of kernels that exited without cleaning up (a killed kernel runs no exit hooks)."""
    for folder in Path(tempfile.gettempdir()).glob("asynclab-apps-*-*"):
        owner = folder.name.split("-")[2]
        if owner.isdigit() and not psutil.pid_exists(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)


def fresh_copy(module: str | Path) -> Path:
    """Copy a module file into a new empty folder (so a database next to it starts empty); return the copy."""
    source = Path(module)
    if not source.is_file():
        raise FileNotFoundError(f"no module file at {source}")
    folder = Path(tempfile.mkdtemp(prefix="asynclab-check-", dir=workspace()))
    return Path(shutil.copy(source, folder / source.name))
