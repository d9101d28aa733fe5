"""The course's own code passes the linter it teaches (ruff, with its ASYNC rules)."""

from __future__ import annotations

import subprocess
import sys

from asynclab.course.authoring import ROOT


def test_ruff_is_clean_on_the_package_and_the_tests() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "src", "tests", "conftest.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
