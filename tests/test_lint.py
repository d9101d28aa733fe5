"""The course's own code passes the linter it teaches (ruff, with its ASYNC rules), its formatter, mypy, and stays readable in size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from asynclab.course.authoring import COPIED, ROOT

MODULE_LINES = 450  # a module a reader can hold: split it where a reader would look for two things
DOCSTRING_WORDS = 60
FUNCTION_LINES = 60  # a function's span, from its `def` to its last line


def _run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_ruff_is_clean_on_the_package_and_the_tests() -> None:
    done = _run("ruff", "check", "--no-cache", "--output-format", "concise", "src", "tests", "conftest.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_leaves_the_course_as_it_is() -> None:
    """Every file but the template's copies of course modules: those are the course module to the byte
    (``python -m asynclab build`` writes them), while the template folder formats with its own settings."""
    copies = [arg for target in COPIED for arg in ("--exclude", str(target))]
    done = _run("ruff", "format", "--check", "--no-cache", *copies, ".")
    assert done.returncode == 0, done.stdout + done.stderr + "\n(fix: `python -m ruff format` those files; for a notebook, "
    "format its solution and `python -m asynclab build`)"


def test_mypy_is_clean_on_the_package() -> None:
    done = _run("mypy", timeout=600)  # pyproject.toml: strict, over src/asynclab
    assert done.returncode == 0, done.stdout + done.stderr


def _python_files() -> list[Path]:
    return sorted(p for folder in ("src", "tools") for p in (ROOT / folder).rglob("*.py"))


def test_no_module_is_too_long() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in _python_files()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MODULE_LINES
    }
    assert not long, f"modules over {MODULE_LINES} lines: {long}"


def test_a_module_docstring_says_what_the_module_is_for_in_a_line_or_two() -> None:
    """The why lives on the function that needs it: a module's docstring stays short."""
    wordy = {}
    for path in _python_files():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if doc and len(doc.split()) > DOCSTRING_WORDS:
            wordy[str(path.relative_to(ROOT))] = len(doc.split())
    assert not wordy, f"module docstrings over {DOCSTRING_WORDS} words: {wordy}"


def test_no_function_is_too_long() -> None:
    long: dict[str, int] = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                span = node.end_lineno - node.lineno + 1
                if span > FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = span
    assert not long, f"functions over {FUNCTION_LINES} lines: {long}"
