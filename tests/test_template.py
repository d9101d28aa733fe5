"""The take-home template (templates/keep-the-rules) does what it promises, run as a team would run it.

Its own test suite, run with pytest in a copy of the folder, fails on the planted blocking call and
passes once that one line is fixed; its tests/test_guards.py proves each guard on planted faults.
Its watchdog is the course's, its ruff block the cheatsheet's, and its README's table of which
guard catches which block is the one lesson 9 measures.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from asynclab.bench.stack import postgres_here
from asynclab.course.authoring import COPIED, ROOT
from asynclab.standins.s09_catch_blocking import GUARD_ROWS, GUARDS, REAL_DRIVER_ROW, which_guard_catches_what

TEMPLATE = ROOT / "templates" / "keep-the-rules"
PLANTED = "    country = geo.lookup(ip)\n"
FIXED = "    country = await anyio.to_thread.run_sync(geo.lookup, ip)\n"


def run_its_suite(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_", "STALL_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_its_suite_fails_on_the_planted_block_and_passes_once_fixed(tmp_path: Path) -> None:
    copy = tmp_path / "service"
    shutil.copytree(TEMPLATE, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))

    planted = run_its_suite(copy, "tests/test_app.py")  # the planted line's tests; the guards' proofs run below
    assert planted.returncode == 1, planted.stdout + planted.stderr
    assert "BlockingError: Blocking call to time.sleep" in planted.stdout
    failed = sorted(re.findall(r"^FAILED tests/test_app.py::(\w+)", planted.stdout, re.MULTILINE))
    assert failed == ["test_greets_in_the_visitors_language", "test_greets_through_the_sync_test_client"], planted.stdout
    assert re.search(r"\b2 failed, 2 passed\b", planted.stdout), planted.stdout

    main = copy / "app" / "main.py"
    text = main.read_text()
    assert text.count(PLANTED) == 1
    main.write_text(text.replace(PLANTED, FIXED).replace("from fastapi import", "import anyio\nfrom fastapi import", 1))
    fixed = run_its_suite(copy)  # everything, as a team runs it: the sample's tests and the guards' proofs
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert re.search(r"\b8 passed\b", fixed.stdout), fixed.stdout


def test_its_watchdog_is_the_course_watchdog() -> None:
    """`python -m asynclab build` writes the template's copy from src/asynclab/bench/watchdog.py.

    Named loop_watchdog.py: `watchdog` is a popular package on PyPI, and a file of that name in a
    service would shadow it.
    """
    assert COPIED[Path("templates/keep-the-rules/loop_watchdog.py")] == Path("src/asynclab/bench/watchdog.py")
    assert (TEMPLATE / "loop_watchdog.py").read_text() == (ROOT / "src" / "asynclab" / "bench" / "watchdog.py").read_text()
    assert not (TEMPLATE / "watchdog.py").exists()


def test_its_ruff_block_is_the_cheatsheets() -> None:
    cheatsheet = (ROOT / "docs" / "cheatsheet.md").read_text(encoding="utf-8")
    block = re.search(r"^```toml\n(.*?)^```$", cheatsheet, re.MULTILINE | re.DOTALL)
    assert block is not None
    assert block.group(1) in (TEMPLATE / "pyproject.toml").read_text(encoding="utf-8")


def test_ruff_passes_the_planted_block() -> None:
    """The planted call hides in a sync helper: ruff, with the template's own settings, finds nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=TEMPLATE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout


def test_a_projects_own_ignore_drops_the_templates_rules(tmp_path: Path) -> None:
    """The README's merging advice: an `ignore` such as FastAPI's full-stack template's beats the
    template's `extend-select`, and B008 repeats FAST002 on a route's `= Depends(...)`."""
    (tmp_path / "app.py").write_text(
        "from fastapi import Depends, FastAPI\n\napp = FastAPI()\n\n\n"
        "def settings() -> dict:\n    return {}\n\n\n"
        "def repository(config: dict = Depends(settings)) -> dict:\n    return config\n\n\n"
        '@app.get("/")\nasync def route(repo: dict = Depends(repository)) -> dict:\n'
        "    try:\n        return repo\n    except KeyError:\n        raise ValueError(repo)\n"
    )
    ours = (TEMPLATE / "pyproject.toml").read_text(encoding="utf-8")
    ignored = ours.replace("[tool.ruff.lint]\n", '[tool.ruff.lint]\nignore = ["E501", "B008", "W191", "B904"]\n', 1)
    findings = {}
    for name, config in {"merged": ours, "with their ignore": ignored}.items():
        (tmp_path / "pyproject.toml").write_text(config, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--no-cache", "--exit-zero", "--output-format", "concise", "app.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        findings[name] = sorted(re.findall(r"^app\.py:(\d+):\d+: (\w+)", done.stdout, re.MULTILINE))
    assert findings["merged"] == [("10", "B008"), ("15", "B008"), ("15", "FAST002"), ("19", "B904")]
    assert findings["with their ignore"] == [("15", "FAST002")]


def test_which_guard_catches_what() -> None:
    """Lesson 9's table: the planted stalls last 0.2 s against a 0.05 s threshold, so every verdict is clock-free.

    On the PostgreSQL stack it has one more row: psycopg 3's own sync query, on a real server.
    """
    table = asyncio.run(which_guard_catches_what())
    caught, missed = True, False
    expected = {
        "time.sleep in a route": dict(zip(GUARDS, [caught, caught, caught, caught], strict=True)),
        "a sync driver, waiting in C (psycopg 3)": dict(zip(GUARDS, [missed, missed, missed, caught], strict=True)),
        "CPU in pure Python": dict(zip(GUARDS, [missed, missed, missed, caught], strict=True)),
        "CPU in C (hashlib.pbkdf2_hmac)": dict(zip(GUARDS, [missed, missed, missed, caught], strict=True)),
        "a sync client in the lifespan": dict(zip(GUARDS, [missed, missed, caught, caught], strict=True)),
    }
    if postgres_here():
        expected[REAL_DRIVER_ROW] = expected["a sync driver, waiting in C (psycopg 3)"]  # the stand-in tells the truth
    assert table.caught == expected, str(table)
    assert table.ruff["time.sleep in a route"] == ["ASYNC251"]
    assert list(table.caught) == list(expected)

    # The README shows the same table.
    readme = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    header = "| Block | " + " | ".join(GUARDS) + " |"
    assert header in readme
    rows = readme.split(header, 1)[1].split("\n\n", 1)[0].strip().splitlines()[1:]
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    shown = {row[0]: [cell.split()[0] == "caught" for cell in row[1:]] for row in cells}
    assert shown == {row: [table.caught[row][guard] for guard in GUARDS] for row in GUARD_ROWS}
