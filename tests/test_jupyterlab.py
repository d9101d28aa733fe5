"""The course as a learner opens it: the README's open command, then JupyterLab in a real browser.

The first tests need nothing but Python: the README's open command, the script behind it (it runs pip
only when the requirements changed) and the course's JupyterLab settings (no news pop-up).

The browser tests start JupyterLab the way tools/open_course.py does, from a copy of the course (so Run
All and autosave never write outputs into the repo), on 127.0.0.1 on a free port, with the token
JupyterLab makes itself. Debian's chromium, driven headless by Playwright for Python (never `playwright
install`), opens the link JupyterLab prints, exactly as printed, then lesson 2 and lesson 1 from the
file browser; it runs all cells and checks what a learner sees. It skips when chromium or Playwright is
missing, and fails instead when ASYNCLAB_BROWSER_REQUIRED=1 (CI). Two tests need JupyterLab but no
browser: the printed link, followed over HTTP, and `reset` with the notebook open. JupyterLab and every
kernel are stopped, also when a test fails. Screenshots go to build/test-artefacts/jupyterlab/
(ignored by git).
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
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import nbformat
import psutil
import pytest
from traitlets.config import Config

from asynclab.bench.ports import free_port
from asynclab.course import authoring
from tests.browser import chromium, load_tool
from tests.browser import unavailable as skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
ARTEFACTS = ROOT / "build" / "test-artefacts" / "jupyterlab"
REQUIRED = "ASYNCLAB_BROWSER_REQUIRED"  # CI sets it to 1
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
    # the course's start page (asynclab.course.labserver): the notebook, the file browser at the course
    # root. It has no query: JupyterLab prints it with ?token=… added, and that link must work.
    assert "--LabApp.default_url=/asynclab/open/notebooks/00-start-here.ipynb" in command
    assert open_course.jupyterlab_command("exercises/01-exercises-async-handlers.ipynb")[-1] == (
        "--LabApp.default_url=/asynclab/open/exercises/01-exercises-async-handlers.ipynb"
    )


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
    c = Config()
    runpy.run_path(str(ROOT / "tools" / "jupyter_server_config.py"), init_globals={"c": c})  # as Jupyter loads it
    assert c.LabApp.news_url is None and c.LabApp.check_for_updates_class == "jupyterlab.NeverCheckForUpdate"
    hook = c.ServerApp.tornado_settings["page_config_hook"]
    page = hook(None, {"disabledExtensions": ["some:plugin"]})
    assert page["disabledExtensions"] == ["some:plugin", "@jupyterlab/apputils-extension:announcements"]
    # the course's start page and its notebooks as the kernel reports them (asynclab.course.labserver)
    assert c.ServerApp.jpserver_extensions.get_value({}) == {"asynclab.course.labserver": True}
    assert c.ServerApp.contents_manager_class == "asynclab.course.labserver.CourseContents"


# --------------------------------------------------------------------------- in a real browser


def unavailable(reason: str) -> None:
    skip_or_fail(reason, REQUIRED)


@dataclass
class Lab:
    url: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    link: str = ""  # the link JupyterLab prints, exactly as printed
    token: str = ""  # the token JupyterLab made, read from that link


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
        request = urllib.request.Request(
            f"{lab.url}/api/shutdown", method="POST", headers={"Authorization": f"token {lab.token}"}
        )
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
        "--no-browser",  # options are passed on, as tools/open_course.py passes them
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the tests read a notebook's state from it
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    started = Lab(f"http://127.0.0.1:{port}", root, process, log, env)
    try:
        started.link = _printed_link(started)
        started.token = parse_qs(urlsplit(started.link).query)["token"][0]
        _wait_until_it_answers(started)
        yield started
    finally:
        left = _stop(started)
        if ARTEFACTS.is_dir():
            shutil.copy(log, ARTEFACTS / "jupyterlab.log")
    assert not left, f"still running after JupyterLab's shutdown (killed): {left}"


def _printed_link(lab: Lab, limit_s: float = 90) -> str:
    """The link JupyterLab prints for a learner to copy: the one under "Or copy and paste one of these URLs"."""
    deadline = time.monotonic() + limit_s
    while True:
        printed = re.search(
            r"Or copy and paste one of these URLs:\s+(\S+)", lab.log.read_text(encoding="utf-8", errors="replace")
        )
        if printed:
            return printed.group(1)
        assert lab.process.poll() is None, f"JupyterLab exited: {lab.log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"JupyterLab printed no link in {limit_s:.0f} s: {lab.log.read_text()[-2000:]}"
        time.sleep(0.3)


def _wait_until_it_answers(lab: Lab, limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            _api(lab, "status")
            return
        except OSError:
            assert lab.process.poll() is None, f"JupyterLab exited: {lab.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"JupyterLab did not answer in {limit_s:.0f} s: {lab.log.read_text()[-2000:]}"
            time.sleep(0.3)


def _api(lab: Lab, path: str, body: dict | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"token {lab.token}", "Content-Type": "application/json"}
    request = urllib.request.Request(
        f"{lab.url}/api/{path}", data=data, headers=headers, method="GET" if body is None else "POST"
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_the_printed_link_signs_in_and_opens_the_notebook_at_the_course_root(lab: Lab) -> None:
    """The link a learner copies from the terminal (WSL, a remote machine, --no-browser): its token is read,
    and the page sends the browser on to the notebook with the file browser at the course root."""
    assert lab.link.startswith(f"{lab.url}/asynclab/open/notebooks/00-start-here.ipynb?token=") and lab.link.count("?") == 1
    try:
        urllib.request.build_opener(_NoRedirect).open(lab.link, timeout=60)
        raise AssertionError("the printed link answered without a redirect")
    except urllib.error.HTTPError as answer:
        assert answer.code == 302
        location = answer.headers["Location"]
    where = urlsplit(location)
    assert where.path == "/lab/tree/notebooks/00-start-here.ipynb", f"sent to {location}, not to the notebook (a login page?)"
    assert parse_qs(where.query) == {"file-browser-path": ["/"], "token": [lab.token]}


def _notebook(page):
    return page.locator(".jp-NotebookPanel:visible")


def _opened_unchanged(page, name: str) -> None:
    """Once the notebook's kernel has started and JupyterLab has recorded its kernelspec and language_info,
    the untouched notebook is not marked as changed."""
    dirty = page.evaluate(
        """async () => {
            const panel = window.jupyterapp.shell.currentWidget;
            await panel.context.ready;
            await panel.sessionContext.ready;
            const kernel = panel.sessionContext.session.kernel;
            await kernel.info;   // JupyterLab records language_info from this answer
            await kernel.spec;   // and the kernelspec from this one
            await new Promise(resolve => setTimeout(resolve, 0));
            return panel.context.model.dirty;
        }"""
    )
    assert dirty is False, f"{name}: untouched, yet JupyterLab marks it as changed"
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or ""), f"{name}: its tab shows the changed mark"


def _close_tab(page, name: str) -> None:
    """File › Close Tab; wait until the tab is gone or JupyterLab asks something, and say which."""
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Close Tab$")).click()
    page.wait_for_function(
        "name => document.querySelector('.jp-Dialog') !== null"
        " || ![...document.querySelectorAll('.lm-DockPanel-tabBar .lm-TabBar-tab')].some(t => t.textContent.includes(name))",
        arg=name,
        timeout=60_000,
    )
    asked = page.locator(".jp-Dialog").all_inner_texts()
    assert asked == [], f"closing the untouched {name} asked: {asked}"
    assert tab.count() == 0


def _save(page) -> list[str]:
    """Ctrl-S in the notebook, as a learner saves; wait until it is saved or JupyterLab asks something; what it asked."""
    saved = "() => window.jupyterapp.shell.currentWidget.context.contentsModel.last_modified"
    before = page.evaluate(saved)
    _notebook(page).locator(".jp-Cell").first.click()
    page.keyboard.press("Escape")  # command mode: the notebook, not a cell's editor, has the key
    page.keyboard.press("Control+s")
    page.wait_for_function(
        f"before => document.querySelector('.jp-Dialog') !== null || ({saved})() !== before", arg=before, timeout=60_000
    )
    return page.locator(".jp-Dialog").all_inner_texts()


def _shows(page, text: str) -> bool:
    """Whether the visible notebook's cells, as JupyterLab holds them, contain ``text``."""
    return page.evaluate(
        "text => window.jupyterapp.shell.currentWidget.content.model.toJSON().cells.some(c => c.source.includes(text))", text
    )


def _wait_until_it_shows_no(page, text: str) -> None:
    page.wait_for_function(
        "text => !window.jupyterapp.shell.currentWidget.content.model.toJSON().cells.some(c => c.source.includes(text))",
        arg=text,
        timeout=60_000,
    )


def _type_in_first_code_cell(page, text: str) -> None:
    editor = _notebook(page).locator(".jp-CodeCell .cm-content").first
    editor.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type(text)
    page.keyboard.press("Escape")


def _reset(lab: Lab, section: str) -> str:
    """`python -m asynclab reset N --yes` in the course folder, beside this JupyterLab (its runtime folder)."""
    done = subprocess.run(
        [sys.executable, "-m", "asynclab", "reset", section, "--yes"],
        cwd=lab.root,
        env=lab.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _sources(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells]


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
        page.goto(lab.link)  # exactly as JupyterLab printed it, as a learner pastes it
        page.wait_for_url(re.compile(r"/lab/tree/notebooks/00-start-here\.ipynb"))
        assert "/login" not in page.url and page.locator("input[type=password]").count() == 0, "a login page"
        _notebook(page).locator(".jp-Cell").first.wait_for(timeout=60_000)
        # the browser first follows the notebook into notebooks/, then goes to the course root
        root_listing = page.locator(".jp-DirListing-itemName", has_text=re.compile(r"^solutions$"))
        root_listing.wait_for(timeout=20_000)
        listing = page.locator(".jp-DirListing-itemName").all_inner_texts()
        for entry in ("notebooks", "exercises", "solutions", "README.md"):
            assert entry in listing, f"the file browser does not show the course root: {listing}"
        page.screenshot(path=ARTEFACTS / "01-start-here-opened.png")
        _opened_unchanged(page, "00-start-here.ipynb")

        # Lesson 2, opened from the file browser, left untouched and closed: nothing asked, nothing written
        lesson_2 = lab.root / "notebooks" / "02-async-dependencies.ipynb"
        before = lesson_2.read_bytes()
        page.locator(".jp-DirListing-itemName", has_text=re.compile(r"^notebooks$")).dblclick()
        page.locator(".jp-DirListing-itemName", has_text=re.compile(r"^02-async-dependencies\.ipynb$")).dblclick()
        page.wait_for_url(re.compile(r"02-async-dependencies\.ipynb"))
        _notebook(page).locator(".jp-Cell").first.wait_for(timeout=60_000)
        _opened_unchanged(page, lesson_2.name)
        _close_tab(page, lesson_2.name)
        assert lesson_2.read_bytes() == before, "closing the untouched lesson 2 changed its file"
        page.locator(".jp-BreadCrumbs-home").click()  # the file browser back at the course root
        page.locator(".jp-DirListing-itemName", has_text=re.compile(r"^solutions$")).wait_for(timeout=20_000)

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


def test_run_all_in_exercise_1_shows_every_exercise_status_then_reset_while_it_is_open(lab: Lab) -> None:
    """Issue 13 item 5: a failing check must not stop Run All (its cell is tagged raises-exception).

    Then `reset 1` while the notebook is open, and the learner does what the command says. Saving first
    shows JupyterLab's "File Changed" question with Overwrite, the button that undoes the reset, as the
    one Enter presses: the command's Revert gives the reset version. Its File › Reload Notebook from
    Disk does too, and the next save writes the reset version.
    """
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    exercise = lab.root / "exercises" / "01-exercises-async-handlers.ipynb"
    handed_out = exercise.read_text(encoding="utf-8")
    with chromium(REQUIRED) as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(f"{lab.url}/lab/tree/exercises/{exercise.name}?token={lab.token}")
        _notebook(page).locator(".jp-Cell").first.wait_for(timeout=60_000)
        try:
            cells = _run_all(page, "exercise 1")
        finally:
            with contextlib.suppress(Exception):  # the last check's status, in view
                _notebook(page).locator(".jp-CodeCell").last.locator(".jp-OutputArea").scroll_into_view_if_needed(timeout=5_000)
            page.screenshot(path=ARTEFACTS / "07-exercise-1-run-all.png")
        checks = [i for i, c in enumerate(cells) if re.search(r"\bcheck\(", c["source"])]
        assert checks and not set(checks) & set(_never_ran(cells)), (
            f"checks never run: {sorted(set(checks) & set(_never_ran(cells)))}"
        )

        # The learner's work, saved; then `reset 1` while the notebook is open
        _type_in_first_code_cell(page, "# my work\n")
        assert _save(page) == [] and "# my work" in exercise.read_text(encoding="utf-8")
        said = _reset(lab, "1")
        assert f"{exercise.name} is open in JupyterLab ({lab.url}/), and its tab still shows your old version." in said, said
        assert "choose File › Reload Notebook from Disk (if JupyterLab asks, choose Reload)" in said
        assert 'If JupyterLab says "File Changed", choose Revert: Overwrite would put your old version back.' in said
        assert exercise.read_text(encoding="utf-8") == handed_out

        # Saving before reloading: "File Changed", with Overwrite as the button Enter presses
        assert _save(page) != []
        dialog = page.locator(".jp-Dialog")
        page.screenshot(path=ARTEFACTS / "08-exercise-1-file-changed.png")
        assert dialog.locator(".jp-Dialog-header").inner_text().strip() == "File Changed"
        buttons = [b.strip() for b in dialog.locator(".jp-Dialog-button").all_inner_texts()]
        assert buttons == ["Cancel", "Revert", "Overwrite"]
        assert page.evaluate("() => document.activeElement.textContent.trim()") == "Overwrite"
        dialog.locator(".jp-Dialog-button", has_text="Revert").click()  # as the command says
        dialog.wait_for(state="detached", timeout=60_000)
        _wait_until_it_shows_no(page, "# my work")
        assert exercise.read_text(encoding="utf-8") == handed_out, "Revert wrote the file"

        # Again, the command's first way: File › Reload Notebook from Disk, with unsaved work in the tab
        _type_in_first_code_cell(page, "# my work\n")
        assert _save(page) == []
        said = _reset(lab, "1")
        assert "File › Reload Notebook from Disk" in said
        _type_in_first_code_cell(page, "# more work, not saved\n")
        assert _shows(page, "# more work, not saved")
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Reload Notebook from Disk$")).click()
        dialog.wait_for(timeout=60_000)  # unsaved changes: JupyterLab asks first
        assert "Reload Notebook from Disk" in dialog.locator(".jp-Dialog-header").inner_text()
        dialog.locator(".jp-Dialog-button", has_text=re.compile(r"^Reload$")).click()
        dialog.wait_for(state="detached", timeout=60_000)
        _wait_until_it_shows_no(page, "# more work, not saved")
        assert not _shows(page, "# my work")
        assert _save(page) == [], "saving after the reload asked something"
        saved, committed = (nbformat.read(p, as_version=4) for p in (exercise, authoring.ROOT / "exercises" / exercise.name))
        assert [c.source for c in saved.cells] == [c.source for c in committed.cells]
        assert [c.id for c in saved.cells] == [c.id for c in committed.cells] and saved.nbformat_minor == 5  # ids kept
        page.screenshot(path=ARTEFACTS / "09-exercise-1-reset-and-reloaded.png")


def test_reset_says_what_to_do_when_jupyterlab_has_the_notebook_open(lab: Lab) -> None:
    """A notebook is open in JupyterLab while it has a session (its kernel runs): `reset` names the server and
    says, step by step, what to do in that tab. For a notebook that is not open it says what to do if it is."""
    exercises = lab.root / "exercises"
    for name in ("06-exercises-request-isolation.ipynb", "05-exercises-error-handling.ipynb"):
        nb = nbformat.read(exercises / name, as_version=4)
        nb.cells[1].source = "# my work\n" + nb.cells[1].source
        nbformat.write(nb, exercises / name)
    opened = "exercises/06-exercises-request-isolation.ipynb"
    _api(lab, "sessions", {"path": opened, "name": "06", "type": "notebook", "kernel": {"name": "python3"}})
    assert [s["path"] for s in _api(lab, "sessions")] == [opened]

    said = _reset(lab, "6")
    assert said.splitlines() == [
        "reset exercises/06-exercises-request-isolation.ipynb (your previous version: 06-exercises-request-isolation.ipynb.bak)",
        "",
        f"06-exercises-request-isolation.ipynb is open in JupyterLab ({lab.url}/), and its tab still shows your old version.",
        "  Before you type or save anything in that tab, choose File › Reload Notebook from Disk (if JupyterLab asks, choose Reload).",
        'If JupyterLab says "File Changed", choose Revert: Overwrite would put your old version back.',
    ]
    assert _sources(exercises / "06-exercises-request-isolation.ipynb") == _sources(authoring.ROOT / opened)
    assert "# my work" in (exercises / "06-exercises-request-isolation.ipynb.bak").read_text(encoding="utf-8")

    said = _reset(lab, "5")
    assert "If 05-exercises-error-handling.ipynb is open in JupyterLab, its tab still shows your old version." in said
    assert "is open in JupyterLab (" not in said


def _edit_cell(page, containing: str, source: str) -> None:
    """Replace the source of the visible notebook's code cell that contains ``containing``, as a learner's typing would."""
    page.evaluate(
        """([containing, source]) => {
            const cells = window.jupyterapp.shell.currentWidget.content.model.sharedModel.cells;
            const cell = cells.find(c => c.cell_type === 'code' && c.getSource().includes(containing));
            cell.setSource(source);
        }""",
        [containing, source],
    )


def _run_cell(page, containing: str, timeout_s: float = 120) -> str:
    """Run the code cell that contains ``containing`` (click it, Shift-Enter); the text it shows when it is done."""
    cell = _notebook(page).locator(".jp-CodeCell", has=page.locator(".cm-content", has_text=containing)).first
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Shift+Enter")
    prompt = cell.locator(".jp-InputArea-prompt")
    deadline = time.monotonic() + timeout_s
    while not re.fullmatch(r"\[\d+\]:", prompt.text_content().strip()):
        assert time.monotonic() < deadline, f"the cell with {containing!r} did not finish in {timeout_s} s"
        time.sleep(0.25)
    return cell.locator(".jp-OutputArea").text_content() or ""


def test_a_forgotten_await_is_named_in_the_learners_terms_and_leaves_nothing_behind(lab: Lab) -> None:
    """Exercise 1.1 with `weather.afetch(city)` and no `await`: the try-it cell and the check say so, with the
    learner's line and one screen; after the fix the check passes and no cell shows a stray warning."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    exercise = lab.root / "exercises" / "01-exercises-async-handlers.ipynb"
    route = "report = weather.fetch(city)"
    with chromium(REQUIRED) as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(f"{lab.url}/lab/tree/exercises/{exercise.name}?token={lab.token}")
        _notebook(page).locator(".jp-Cell").first.wait_for(timeout=60_000)
        page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\|\s*Idle")).wait_for(timeout=60_000)
        handed_out = next(c.source for c in nbformat.read(exercise, as_version=4).cells if route in c.source)
        _run_cell(page, "from asynclab import")
        _edit_cell(page, route, handed_out.replace(route, "report = weather.afetch(city)"))
        _run_cell(page, "report = weather.afetch(city)")
        tried = _run_cell(page, "print(await load(client")
        assert (
            "What happened: `forecast()` returned a coroutine from `weather.afetch(city)` instead of its result: did you forget `await`?"
            in tried
        )
        assert "frames of the libraries underneath are hidden" in tried and "site-packages" not in tried
        checked = _run_cell(page, 'check("1.1"')
        page.screenshot(path=ARTEFACTS / "10-exercise-1-forgotten-await.png")
        assert "❌ not yet · Exercise 1.1" in checked and "did you forget `await`?" in checked
        assert (
            "in forecast(): report = weather.afetch(city)" in checked and "Write `report = await weather.afetch(city)`" in checked
        )
        assert "ResponseValidationError" not in checked

        _edit_cell(page, "report = weather.afetch(city)", handed_out.replace(route, "report = await weather.afetch(city)"))
        _run_cell(page, "report = await weather.afetch(city)")
        passed = _run_cell(page, 'check("1.1"')
        page.screenshot(path=ARTEFACTS / "11-exercise-1-fixed.png")
        assert passed.startswith("✅ passed · Exercise 1.1"), passed
        shown = _notebook(page).locator(".jp-OutputArea").all_text_contents()
        assert not [text for text in shown if "never awaited" in text], "a stray warning under a cell"
