"""The course as a learner opens it: the README's open command, then JupyterLab in a real browser.

The first tests need nothing but Python: the README's open command, the script behind it (it runs pip
only when the requirements changed) and the course's JupyterLab settings (no news pop-up).

The browser test starts JupyterLab the way tools/open_course.py does, from a copy of the course (so Run
All and autosave never write outputs into the repo), on 127.0.0.1 on a free port, with a fixed token
that exists only for this test. Debian's chromium, driven headless by Playwright for Python (never
`playwright install`), opens the start-here notebook and lesson 1 from the file browser, runs all
cells, and checks what a learner sees. It skips when chromium or Playwright is missing, and fails
instead when ASYNCLAB_BROWSER_REQUIRED=1 (CI). JupyterLab and every kernel are stopped, also when the
test fails. Screenshots go to build/test-artefacts/jupyterlab/ (ignored by git).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import nbformat
import psutil
import pytest

from asynclab.bench.ports import free_port
from tests.browser import chromium, load_tool
from tests.browser import unavailable as skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
ARTEFACTS = ROOT / "build" / "test-artefacts" / "jupyterlab"
REQUIRED = "ASYNCLAB_BROWSER_REQUIRED"  # CI sets it to 1
TOKEN = "asynclab-browser-test-only"  # fixed on purpose: this server listens on 127.0.0.1 for this test alone
NEWS = "Would you like to get notified about official Jupyter news?"


open_course = load_tool("open_course")


# --------------------------------------------------------------------------- the open command


def readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker} -->\n```\n(.*?)\n```", text, re.DOTALL)
    assert found, f"README.md has no ``` block after <!-- {marker} -->"
    return found.group(1)


def test_readme_open_command_is_the_script() -> None:
    assert readme_block("open-command") == "python tools/open_course.py"
    assert readme_block("test-command") == "python -m pip install -r requirements.txt && python -m pytest"
    setup = (ROOT / "README.md").read_text(encoding="utf-8").split("## Set up and open the course")[1].split("\n## ")[0]
    assert "python3 -m venv .venv" in setup and "py -m venv .venv" in setup


def test_open_command_opens_the_course_root_with_the_notebook_and_the_course_settings() -> None:
    command = open_course.jupyterlab_command()
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={ROOT}" in command
    assert f"--config={ROOT / 'tools' / 'jupyter_server_config.py'}" in command
    # the notebook opens, and the file browser shows the course folder, not notebooks/
    assert "--LabApp.default_url=/lab/tree/notebooks/00-start-here.ipynb?file-browser-path=/" in command


def test_pip_runs_only_when_the_requirements_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(open_course, "stamp_path", lambda: tmp_path / "stamp")
    monkeypatch.setattr(open_course.subprocess, "run", lambda command, **_: ran.append(command))
    monkeypatch.setattr(open_course, "already_installed", lambda: False)
    assert not open_course.up_to_date()  # a fresh environment: no stamp
    open_course.install()
    assert len(ran) == 1 and ran[0][1:4] == ["-m", "pip", "install"]
    assert open_course.up_to_date()  # the stamp matches: the next start skips pip
    (tmp_path / "stamp").write_text("an older requirements.txt\n")
    assert not open_course.up_to_date()


def test_an_environment_installed_offline_needs_no_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After docs/instructors.md's offline install every pin is in place: the script must not ask the network."""
    pinned = {**open_course._pins("constraints.txt"), **open_course._pins("requirements.txt")}
    pins = {name: min(versions) for name, versions in pinned.items()}  # one of each package's locked versions
    monkeypatch.setattr(open_course, "stamp_path", lambda: tmp_path / "stamp")
    monkeypatch.setattr(open_course, "_installed", pins.get)
    assert open_course.up_to_date() and (tmp_path / "stamp").is_file()
    (tmp_path / "stamp").unlink()
    monkeypatch.setattr(open_course, "_installed", lambda name: "0.0" if name == "fastapi" else pins.get(name))
    assert not open_course.up_to_date()  # one pin off: pip runs


def test_outside_an_environment_the_script_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(open_course, "in_an_environment", lambda: False)
    assert open_course.main([]) == 2
    said = capsys.readouterr().err
    assert "python3 -m venv .venv" in said and "py -m venv .venv" in said and ".venv\\Scripts\\activate" in said


def test_course_settings_turn_off_the_news_and_the_update_check() -> None:
    c = SimpleNamespace(ServerApp=SimpleNamespace(), LabApp=SimpleNamespace())
    runpy.run_path(str(ROOT / "tools" / "jupyter_server_config.py"), init_globals={"c": c})  # as Jupyter loads it
    assert c.LabApp.news_url is None and c.LabApp.check_for_updates_class == "jupyterlab.NeverCheckForUpdate"
    hook = c.ServerApp.tornado_settings["page_config_hook"]
    page = hook(None, {"disabledExtensions": ["some:plugin"]})
    assert page["disabledExtensions"] == ["some:plugin", "@jupyterlab/apputils-extension:announcements"]


# --------------------------------------------------------------------------- in a real browser


def unavailable(reason: str) -> None:
    skip_or_fail(reason, REQUIRED)


@dataclass
class Lab:
    url: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path


def _course_copy(into: Path) -> Path:
    skip = shutil.ignore_patterns(
        ".venv", "venv", ".git", "build", "__pycache__", "*.egg-info", ".*_cache", "kernel-ipc-*", ".ipynb_checkpoints"
    )
    shutil.copytree(ROOT, into, ignore=skip)
    return into


def _stop(lab: Lab) -> list[str]:
    """Shut JupyterLab down as its own menu would (kernels too), then kill whatever is left; say what was."""
    try:
        family = [lab.process.pid, *(p.pid for p in psutil.Process(lab.process.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        family = [lab.process.pid]
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # whatever went wrong, the next lines stop it
        request = urllib.request.Request(f"{lab.url}/api/shutdown", method="POST", headers={"Authorization": f"token {TOKEN}"})
        urllib.request.urlopen(request, timeout=10).close()
        lab.process.wait(timeout=30)
    left = []
    for pid in family:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            left.append(f"{pid} {' '.join(proc.cmdline()[:3])}")
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    if lab.process.poll() is None:
        lab.process.kill()
    lab.process.wait(timeout=10)
    return left


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    root = _course_copy(tmp_path / "course")
    home = tmp_path / "jupyter"  # a first open: no settings, no workspace, no config from the user's home
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    port = free_port()
    command = open_course.jupyterlab_command(root=root) + [
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    started = Lab(f"http://127.0.0.1:{port}", root, process, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"JupyterLab exited: {log.read_text()[-2000:]}"
            try:
                urllib.request.urlopen(f"{started.url}/api/status?token={TOKEN}", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"JupyterLab did not start in 90 s: {log.read_text()[-2000:]}"
                time.sleep(0.3)
        yield started
    finally:
        left = _stop(started)
        if ARTEFACTS.is_dir():
            shutil.copy(log, ARTEFACTS / "jupyterlab.log")
    assert not left, f"still running after JupyterLab's shutdown (killed): {left}"


def _notebook(page):
    return page.locator(".jp-NotebookPanel:visible")


def _run_all(page, name: str, timeout_s: float = 180) -> list[dict]:
    """Run > Run All Cells in the visible notebook, wait until nothing is running or queued; what each cell shows.

    textContent, not innerText: JupyterLab skips rendering off-screen cells, whose innerText is empty.
    """
    panel = _notebook(page)
    # wait for the notebook's kernel: a Run All sent before it is ready does nothing
    page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\|\s*Idle")).wait_for(timeout=60_000)
    panel.locator(".jp-Cell").first.click()  # the notebook has the focus, as after a learner's click
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline, settled, last = time.monotonic() + timeout_s, 0, None
    while settled < 4:  # the same prompts, none running or queued, for 2 s: the run is over
        prompts = [p.strip() for p in panel.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()]
        done = any(re.fullmatch(r"\[\d+\]:", p) for p in prompts) and "[*]:" not in prompts
        settled = settled + 1 if done and prompts == last else 0
        last = prompts
        assert time.monotonic() < deadline, f"{name}: still running after {timeout_s} s: {prompts}"
        time.sleep(0.5)
    return panel.locator(".jp-CodeCell").evaluate_all(
        """cells => cells.map(cell => ({
            prompt: cell.querySelector('.jp-InputArea-prompt').textContent.trim(),
            mimes: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => o.dataset.mimeType || ''),
            text: cell.querySelector('.jp-OutputArea') ? cell.querySelector('.jp-OutputArea').textContent : '',
            source: cell.querySelector('.jp-InputArea-editor').textContent,
        }))"""
    )


def _never_ran(cells: list[dict]) -> list[int]:
    return [i for i, c in enumerate(cells) if not re.fullmatch(r"\[\d+\]:", c["prompt"])]


def _meant_to_fail(notebook: Path) -> list[int]:
    """The code cells tagged raises-exception: the failures a lesson shows on purpose."""
    code = [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    return [i for i, c in enumerate(code) if "raises-exception" in c.metadata.get("tags", [])]


def _errors(cells: list[dict]) -> list[int]:
    return [i for i, c in enumerate(cells) if any("stderr" in m or "error" in m for m in c["mimes"])]


def _figures(page, name: str) -> list[tuple[int, int, int]]:
    """Scroll to every figure (JupyterLab draws off-screen cells lazily); each one's natural and shown width."""
    images = _notebook(page).locator(".jp-OutputArea-output img")
    sizes = []
    for k in range(images.count()):
        image = images.nth(k)
        image.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=10_000)
        sizes.append(tuple(image.evaluate("i => [i.naturalWidth, i.naturalHeight, Math.round(i.getBoundingClientRect().width)]")))
        page.screenshot(path=ARTEFACTS / f"{name}-figure-{k + 1}.png")
    return sizes


def _no_news(page) -> None:
    assert page.get_by_text(NEWS).count() == 0, "the news pop-up is showing"
    config = json.loads(page.locator("#jupyter-config-data").text_content())
    assert "@jupyterlab/apputils-extension:announcements" in config["disabledExtensions"]


def test_a_learner_runs_start_here_and_lesson_1_in_jupyterlab(lab: Lab) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with chromium(REQUIRED) as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})  # a common laptop screen
        page.goto(f"{lab.url}/?token={TOKEN}")  # what the open command's browser tab does
        page.wait_for_url(re.compile(r"/lab/tree/notebooks/00-start-here\.ipynb"))
        _notebook(page).locator(".jp-Cell").first.wait_for(timeout=60_000)
        # the browser first follows the notebook into notebooks/, then goes to the course root
        root_listing = page.locator(".jp-DirListing-itemName", has_text=re.compile(r"^solutions$"))
        root_listing.wait_for(timeout=20_000)
        listing = page.locator(".jp-DirListing-itemName").all_inner_texts()
        for entry in ("notebooks", "exercises", "solutions", "README.md"):
            assert entry in listing, f"the file browser does not show the course root: {listing}"
        page.screenshot(path=ARTEFACTS / "01-start-here-opened.png")

        cells = _run_all(page, "start here")
        intended = _meant_to_fail(lab.root / "notebooks" / "00-start-here.ipynb")
        page.screenshot(path=ARTEFACTS / "02-start-here-run.png")
        assert _never_ran(cells) == [] and len(intended) == 1, [(c["prompt"], c["text"][:200]) for c in cells]
        assert _errors(cells) == intended, f"errors shown in code cells {_errors(cells)}; meant to fail: {intended}"
        failing = intended
        assert cells[-1]["text"].count("nothing left running") == 1
        _notebook(page).locator(".jp-CodeCell").nth(failing[0]).locator(".jp-OutputArea").scroll_into_view_if_needed()
        page.screenshot(path=ARTEFACTS / "02-start-here-failed-check.png")
        _notebook(page).locator(".jp-CodeCell").last.scroll_into_view_if_needed()
        page.screenshot(path=ARTEFACTS / "03-start-here-end.png")
        _no_news(page)

        # Lesson 1, opened from the file browser as a learner would
        page.locator(".jp-DirListing-itemName", has_text=re.compile(r"^notebooks$")).dblclick()
        page.locator(".jp-DirListing-itemName", has_text=re.compile(r"^01-async-handlers\.ipynb$")).dblclick()
        page.wait_for_url(re.compile(r"01-async-handlers\.ipynb"))
        _notebook(page).locator(".jp-Cell").first.wait_for(timeout=60_000)
        cells = _run_all(page, "lesson 1")
        assert _never_ran(cells) == []
        assert _errors(cells) == [], [cells[i] for i in _errors(cells)]
        assert cells[-1]["text"].count("nothing left running") == 1
        figures = _figures(page, "04-lesson-1")
        assert len(figures) == sum("image/png" in c["mimes"] for c in cells) >= 2
        for natural_width, natural_height, shown_width in figures:
            assert shown_width == natural_width, f"a figure was shrunk to fit: {natural_width} px shown {shown_width} px wide"
            assert natural_height <= 450

        answers = _notebook(page).locator("details", has=page.locator("summary", has_text="Answers"))
        assert answers.count() == 1
        answers.scroll_into_view_if_needed()
        first_answer = answers.locator("li").first
        assert answers.evaluate("d => d.open") is False and not first_answer.is_visible()
        page.screenshot(path=ARTEFACTS / "05-lesson-1-answers-hidden.png")
        answers.locator("summary").click()
        assert answers.evaluate("d => d.open") is True and first_answer.is_visible()
        page.screenshot(path=ARTEFACTS / "06-lesson-1-answers-open.png")
        _no_news(page)
    print(f"browser test: {time.monotonic() - began:.0f} s with JupyterLab already started")


def test_run_all_in_exercise_1_shows_every_exercise_status(lab: Lab) -> None:
    """Issue 13 item 5: a failing check must not stop Run All (its cell is tagged raises-exception)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(REQUIRED) as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(f"{lab.url}/lab/tree/exercises/01-exercises-async-handlers.ipynb?token={TOKEN}")
        _notebook(page).locator(".jp-Cell").first.wait_for(timeout=60_000)
        try:
            cells = _run_all(page, "exercise 1")
        finally:
            with contextlib.suppress(Exception):  # the last check's status, in view
                _notebook(page).locator(".jp-CodeCell").last.locator(".jp-OutputArea").scroll_into_view_if_needed(
                    timeout=5_000
                )
            page.screenshot(path=ARTEFACTS / "07-exercise-1-run-all.png")
        checks = [i for i, c in enumerate(cells) if re.search(r"\bcheck\(", c["source"])]
        assert checks and not set(checks) & set(_never_ran(cells)), (
            f"checks never run: {sorted(set(checks) & set(_never_ran(cells)))}"
        )
