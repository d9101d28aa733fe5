"""The course's website, as built by `python tools/build_site.py` (CI builds it before the suite runs).

Unit tests of the build's cleaning run everywhere. The tests of the built site skip, with the command
to run, when build/site/html is missing, and fail instead when ASYNCLAB_SITE_REQUIRED=1 (CI sets it).
The browser test drives Debian's chromium with Playwright for Python (no browser download); it skips
when either is missing, except in CI. Screenshots go to build/test-artefacts/site/ (ignored by git).
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from asynclab.course import authoring
from tests.browser import chromium, load_tool
from tests.browser import unavailable as skip_or_fail

ROOT = authoring.ROOT
OUT = ROOT / "build" / "site"
SITE = OUT / "html"
ARTEFACTS = ROOT / "build" / "test-artefacts" / "site"
REQUIRED = "ASYNCLAB_SITE_REQUIRED"  # CI sets it to 1


build_site = load_tool("build_site")
LESSONS = build_site.lessons()
EXERCISES = build_site.exercises()


def unavailable(reason: str) -> None:
    skip_or_fail(reason, REQUIRED)


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        unavailable("the site is not built: run `python tools/build_site.py` (about 2 minutes) first")
    return SITE


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def text_of(page: Path) -> str:
    """The text of a page: tags, scripts and styles dropped, entities decoded."""
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8"))
    return "".join(parser.parts)


# --------------------------------------------------------------------------- the build's cleaning (no site needed)


def test_outputs_are_cleaned_of_the_building_machine() -> None:
    home, host = str(Path.home()), socket.gethostname()
    someone_elses = str(Path("/", "home", "alice", "venv"))  # a made-up user's home: no path of any real machine
    nb = nbformat.v4.new_notebook()
    lines = [
        f'  File "{ROOT}/src/asynclab/standins/s08_capstone.py", line 130, in charge',
        f"{home}/.cache/x and /tmp/tmpab12_cd/orders_service.py and {someone_elses}",
        f'  File "/tmp/ipykernel_28912/428830552.py", line 3 on {host}',
        "parent process: 29099; worker processes: [29102, 29101]",
        "worker 29102 answered 10 requests; pid=29101 stopped; 2048 bytes",
    ]
    nb.cells = [nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines))])]
    assert build_site.sanitize_outputs(nb) == 1
    text = nb.cells[0].outputs[0].text
    assert str(ROOT) not in text and "/tmp/" not in text and "/home/" not in text and home + "/" not in text
    assert "<course>/src/asynclab/standins/s08_capstone.py" in text and "<tmp>/orders_service.py" in text and '"<cell>"' in text
    assert "parent process: PID-1; worker processes: [PID-2, PID-3]" in text
    assert "worker PID-2 answered 10 requests; pid=PID-3 stopped; 2048 bytes" in text  # which is which stays readable
    if len(host) >= 4:
        assert host not in text


def test_links_to_solutions_and_folders_are_rewritten(tmp_path: Path) -> None:
    root = tmp_path / "course"
    for name in ("notebooks", "solutions", "docs", "templates/kit"):
        (root / name).mkdir(parents=True)
    (root / "README.md").write_text("# Home\n")
    (root / "docs" / "guide.md").write_text("# Guide\n")
    (root / "templates" / "kit" / "README.md").write_text("# Kit\n")
    (root / "notebooks" / "helper.py").write_text("x = 1\n")
    stager = build_site.Stager(tmp_path / "src", root)
    page = root / "notebooks" / "01-x.ipynb"
    text = (
        "[the answer](../solutions/01-x.ipynb), [guide](../docs/guide.md#top), [`kit`](../templates/kit/),\n"
        "[home](../README.md), [helper](helper.py), [web](https://example.org/a)\n"
        "```\n[not a link](../solutions/01-x.ipynb)\n```\n"
    )
    assert stager.rewrite(page, text) == (
        "the answer, [guide](../docs/guide.md#top), [`kit`](../templates/kit/README.md),\n"
        "[home](../index.md), [helper](helper.py), [web](https://example.org/a)\n"
        "```\n[not a link](../solutions/01-x.ipynb)\n```\n"
    )
    assert (tmp_path / "src" / "notebooks" / "helper.py").is_file()  # a linked file is published for download
    assert {p.name for p in stager.queue} == {"guide.md", "README.md"}


# --------------------------------------------------------------------------- the built site


def test_every_lesson_exercise_and_doc_has_a_page(site: Path) -> None:
    expected = ["index.html", "docs/instructors.html", "docs/cheatsheet.html"]
    expected += [f"notebooks/{p.stem}.html" for p in LESSONS] + [f"exercises/{p.stem}.html" for p in EXERCISES]
    assert [page for page in expected if not (site / page).is_file()] == []
    assert not (site / "solutions").exists()
    assert [p for p in site.rglob("*") if "solutions" in p.relative_to(site).parts] == []


def test_home_page_has_the_syllabus_and_links_every_lesson(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "Syllabus" in index
    for lesson in LESSONS:
        assert f'href="notebooks/{lesson.stem}.html' in index, lesson.name


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_page_shows_every_figure_key_points_and_hidden_answers(site: Path, lesson: Path) -> None:
    executed = nbformat.read(OUT / "executed" / lesson.name, as_version=4)
    figures = sum("image/png" in o.get("data", {}) for c in executed.cells for o in c.get("outputs", []))
    page = site / "notebooks" / f"{lesson.stem}.html"
    source = page.read_text(encoding="utf-8")
    images = re.findall(r'<img [^>]*src="([^"]+)"', source)
    assert len(images) == figures, "every figure the lesson drew is on its page"
    for src in images:
        assert (page.parent / src).stat().st_size > 1000, src
    text = text_of(page)
    assert "Run it yourself" in text and f"notebooks/{lesson.name}" in text
    if lesson.name != "00-start-here.ipynb":
        assert "Key points" in text
        answers = re.findall(r"<details[^>]*>\s*<summary>Answers</summary>", source)
        assert len(answers) == 1 and " open" not in answers[0], "quiz answers collapsed"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda p: p.stem)
def test_exercise_page_is_as_handed_out_with_the_command_to_open_it(site: Path, exercise: Path) -> None:
    page = site / "exercises" / f"{exercise.stem}.html"
    text = text_of(page)
    assert "Open this in JupyterLab" in text and f"python tools/open_course.py exercises/{exercise.name}" in text
    assert 'class="cell_output' not in page.read_text(encoding="utf-8"), "exercises are shown as handed out, not run"
    handed_out = "\n".join(cell.source for cell in authoring.read(exercise).cells)
    flat = re.sub(r"\s+", " ", text)
    for cell in authoring.read(authoring.find_solution(exercise.name)).cells:
        if cell.cell_type != "code" or not authoring.has_markers(cell.source):
            continue
        answer, _ = authoring.split_source(cell.source)
        secret = {line.strip() for line in answer.splitlines() if line.strip() not in handed_out}
        for line in sorted(s for s in secret if len(s) > 25):
            assert line not in flat, f"a solution line is published: {line}"


def test_every_relative_link_and_anchor_resolves(site: Path) -> None:
    assert build_site.broken_links(site) == []


def test_nothing_leaks_the_building_machine(site: Path) -> None:
    assert build_site.leaks(site) == []


# --------------------------------------------------------------------------- in a real browser


@pytest.fixture
def served(site: Path) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1 (a free port), stopped after the test."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_site_in_headless_chromium(served: str) -> None:
    """Home page, lesson 1's figures loaded, its answers hidden until clicked, then on to lesson 2."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    first = LESSONS[1].stem  # lesson 1 (LESSONS[0] is the start-here notebook)
    with chromium(REQUIRED) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        failed: list[str] = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.goto(f"{served}/index.html")
        assert "FastAPI under concurrency" in page.title()
        page.screenshot(path=ARTEFACTS / "home.png")

        page.locator("article").get_by_role("link", name=re.compile("Async route handlers")).first.click()
        page.wait_for_url(f"**/notebooks/{first}.html")
        page.wait_for_load_state("load")
        images = page.locator("article img")
        assert images.count() >= 1
        sizes = images.evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        assert all(done and width > 0 for done, width in sizes), f"a figure did not load: {sizes}"
        images.first.scroll_into_view_if_needed()
        page.screenshot(path=ARTEFACTS / "lesson-1-figure.png")

        answers = page.locator("details", has=page.locator("summary", has_text="Answers"))
        assert answers.count() == 1
        first_answer = answers.locator("li").first
        assert answers.evaluate("d => d.open") is False and not first_answer.is_visible()
        answers.scroll_into_view_if_needed()
        page.screenshot(path=ARTEFACTS / "lesson-1-answers-hidden.png")
        answers.locator("summary").click()
        assert answers.evaluate("d => d.open") is True and first_answer.is_visible()
        page.screenshot(path=ARTEFACTS / "lesson-1-answers-open.png")

        page.locator("a.next-page").click()
        page.wait_for_url(f"**/notebooks/{LESSONS[2].stem}.html")
        assert page.locator("article h1").first.inner_text().startswith("2")
        page.screenshot(path=ARTEFACTS / "lesson-2.png")
        assert failed == [], f"requests failed: {failed}"
