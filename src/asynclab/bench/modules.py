"""Import a Python file as a module of its own: a fresh copy each time, with its own globals and app."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_module(path: Path, name: str) -> ModuleType:
    """Run the file at ``path`` as module ``name`` and return it.

    The module stays in ``sys.modules``: pydantic and FastAPI resolve its annotations through it.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
