"""The take-home template (templates/keep-the-rules) does what it promises, run as a team would run it.

Its own test suite, run with pytest in a copy of the folder, fails on the planted blocking call and
passes once that one line is fixed. Its watchdog is the course's, and its ruff block the cheatsheet's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from asynclab.course.authoring import ROOT

TEMPLATE = ROOT / "templates" / "keep-the-rules"
PLANTED = "    country = geo.lookup(ip)\n"
FIXED = "    country = await anyio.to_thread.run_sync(geo.lookup, ip)\n"


def run_its_suite(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no"]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_its_suite_fails_on_the_planted_block_and_passes_once_fixed(tmp_path: Path) -> None:
    copy = tmp_path / "service"
    shutil.copytree(TEMPLATE, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))

    planted = run_its_suite(copy)
    assert planted.returncode == 1, planted.stdout + planted.stderr
    assert "BlockingError: Blocking call to time.sleep" in planted.stdout
    assert re.search(r"\b1 failed, 1 passed\b", planted.stdout), planted.stdout

    main = copy / "app" / "main.py"
    text = main.read_text()
    assert text.count(PLANTED) == 1
    main.write_text(text.replace(PLANTED, FIXED).replace("from fastapi import", "import anyio\nfrom fastapi import", 1))
    fixed = run_its_suite(copy)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert re.search(r"\b2 passed\b", fixed.stdout), fixed.stdout


def test_its_watchdog_is_the_course_watchdog() -> None:
    """`python -m asynclab build` writes the template's copy from src/asynclab/bench/watchdog.py."""
    assert (TEMPLATE / "watchdog.py").read_text() == (ROOT / "src" / "asynclab" / "bench" / "watchdog.py").read_text()


def test_its_ruff_block_is_the_cheatsheets() -> None:
    cheatsheet = (ROOT / "docs" / "cheatsheet.md").read_text(encoding="utf-8")
    block = re.search(r"^```toml\n(.*?)^```$", cheatsheet, re.MULTILINE | re.DOTALL)
    assert block is not None
    assert block.group(1) in (TEMPLATE / "pyproject.toml").read_text(encoding="utf-8")


def test_ruff_passes_the_planted_block() -> None:
    """The planted call hides in a sync helper: ruff, with the template's own settings, finds nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=TEMPLATE, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout
