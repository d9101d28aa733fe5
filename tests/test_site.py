"""The course's website, as built by `python tools/build_site.py` (CI builds it before the suite runs).

Unit tests of the build's cleaning run everywhere. The tests of the built site skip, with the command
to run, when build/site/html is missing, and fail instead when ASYNCLAB_SITE_REQUIRED=1 (CI sets it).
The browser test drives Debian's chromium with Playwright for Python (no browser download); it skips
when either is missing, except in CI. Screenshots go to build/test-artefacts/site/ (ignored by git).
"""

from __future__ import annotations

import html
import html.parser
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from asynclab.course import authoring
from tests.browser import chromium, load_tool, serve_folder
from tests.browser import unavailable as skip_or_fail

ROOT = authoring.ROOT
OUT = ROOT / "build" / "site"
SITE = OUT / "html"
ARTEFACTS = ROOT / "build" / "test-artefacts" / "site"
REQUIRED = "ASYNCLAB_SITE_REQUIRED"  # CI sets it to 1


build_site = load_tool("build_site")  # puts tools/ on the path: its siblings import as modules
site_html, site_leaks = load_tool("site_html"), load_tool("site_leaks")
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
    someone_elses = str(Path("/", "home", "alice", "venv"))  # made-up paths, built from parts: no tracked file holds one
    scratch, cell_file = str(Path("/", "tmp", "tmpab12_cd")), str(Path("/", "tmp", "ipykernel_28912", "428830552.py"))
    nb = nbformat.v4.new_notebook()
    lines = [
        f'  File "{ROOT}/src/asynclab/standins/s08_capstone.py", line 130, in charge',
        f"{home}/.cache/x and {scratch}/orders_service.py and {someone_elses}",
        f'  File "{cell_file}", line 3 on {host}',
        "parent process: 29099; worker processes: [29102, 29101]",
        "worker 29102 answered 10 requests; pid=29101 stopped; 2048 bytes",
    ]
    nb.cells = [nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines))])]
    assert site_leaks.sanitize_outputs(nb) == 1
    text = nb.cells[0].outputs[0].text
    assert str(ROOT) not in text and "/tmp/" not in text and "/home/" not in text and home + "/" not in text
    assert "<course>/src/asynclab/standins/s08_capstone.py" in text and "<tmp>/orders_service.py" in text and '"<cell>"' in text
    assert "parent process: PID-1; worker processes: [PID-2, PID-3]" in text
    assert "worker PID-2 answered 10 requests; pid=PID-3 stopped; 2048 bytes" in text  # which is which stays readable
    if len(host) >= 4:
        assert host not in text


def test_a_token_in_a_link_is_a_leak_and_the_parameters_name_is_not(tmp_path: Path) -> None:
    (tmp_path / "leaky.html").write_text('<a href="http://127.0.0.1:8888/lab?token=3f2a9c">open</a>', encoding="utf-8")
    (tmp_path / "fine.html").write_text("JupyterLab prints a link with <code>?token=</code> in it.", encoding="utf-8")
    assert [problem.split(":")[0] for problem in site_leaks.leaks(tmp_path)] == ["leaky.html"]


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


def test_exercise_pages_are_made_from_the_solutions_never_from_the_learners_folder(tmp_path: Path) -> None:
    """A learner's answers, saved outputs and own files in exercises/ never reach the site: it publishes fresh handed-out copies."""
    solution = authoring.find_solution("8")  # the capstone: a notebook and a module file
    root = tmp_path / "course"
    (root / "solutions").mkdir(parents=True)
    shutil.copy(solution, root / "solutions" / solution.name)
    shutil.copytree(solution.parent / authoring.section(solution), root / "solutions" / authoring.section(solution))
    (root / "README.md").write_text(
        "# Home\n\n[the service](exercises/08-capstone/orders_service.py), [my notes](exercises/notes.txt)\n", encoding="utf-8"
    )
    name, module = authoring.exercise_name(solution), Path("08-capstone/orders_service.py")
    handed_out = authoring.handed_out(solution)
    # The learner's folder: the notebook answered, run and saved with its outputs; the module edited; a file of their own.
    learner = root / "exercises"
    (learner / module).parent.mkdir(parents=True)
    worked = nbformat.reads(handed_out[Path(name)], as_version=4)
    for cell in worked.cells:
        if cell.cell_type == "code":
            cell.source += "\nMY_ANSWER = 42"
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout", text=f"saved on {Path('/', 'home', 'ada', 'course')}\n")
            ]
    nbformat.write(worked, learner / name)
    (learner / module).write_text("MY_SERVICE = 'edited'\n", encoding="utf-8")
    (learner / "notes.txt").write_text("my notes\n", encoding="utf-8")

    src = tmp_path / "site" / "src"
    pages = build_site.stage(src, {}, root)

    assert f"exercises/{name}" in pages
    staged = nbformat.read(src / "exercises" / name, as_version=4)
    expected = nbformat.reads(handed_out[Path(name)], as_version=4)
    assert staged.cells[1].source.startswith(":::{admonition} Open this in JupyterLab")  # the banner, after the title
    assert [c.source for c in staged.cells[:1] + staged.cells[2:]] == [c.source for c in expected.cells]
    assert not any(c.get("outputs") for c in staged.cells)
    assert (src / "exercises" / module).read_text(encoding="utf-8") == handed_out[module]
    assert not (src / "exercises" / "notes.txt").exists()
    index = (src / "index.md").read_text(encoding="utf-8")
    assert "[the service](exercises/08-capstone/orders_service.py)" in index and "[my notes]" not in index
    staged_text = "".join(f.read_text(encoding="utf-8") for f in src.rglob("*") if f.is_file())
    assert "MY_ANSWER" not in staged_text and "MY_SERVICE" not in staged_text and str(Path("/", "home", "ada")) not in staged_text


def test_each_figure_gets_the_alt_text_written_for_it() -> None:
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 640x480 with 1 Axes>"}
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 1 · A lesson"),
        nbformat.v4.new_code_cell('timeline(("blocking", a))', outputs=[nbformat.v4.new_output("display_data", data=png)]),
        nbformat.v4.new_code_cell('print("no figure")', outputs=[nbformat.v4.new_output("stream", name="stdout", text="x")]),
    ]
    alt_texts = {("01-x.ipynb", '("blocking", a)'): "A staircase.", ("02-y.ipynb", '("blocking", a)'): "Another lesson's."}
    assert build_site.describe_figures("01-x.ipynb", nb, alt_texts) == {("01-x.ipynb", '("blocking", a)')}
    assert nb.cells[1].metadata["mystnb"] == {"image": {"alt": "A staircase."}}  # MyST-NB writes it into the <img>
    assert "mystnb" not in nb.cells[2].metadata
    with pytest.raises(SystemExit, match="no entry"):
        build_site.describe_figures("03-z.ipynb", nb, alt_texts)  # a figure nobody described stops the build


def test_every_alt_text_belongs_to_one_figure_and_says_what_it_shows() -> None:
    """site/figures.toml, checked against the lessons' sources: each entry names one cell that draws a figure."""
    alt_texts = build_site.read_alt_texts()
    lessons = {p.name: authoring.read(p) for p in LESSONS}
    for (lesson, drawn_by), alt in alt_texts.items():
        assert lesson in lessons, f"{lesson}: no such lesson"
        cells = [c for c in lessons[lesson].cells if c.cell_type == "code" and drawn_by in c.source]
        assert len(cells) == 1, f"{lesson}: {drawn_by!r} is in {len(cells)} code cells, not one"
        assert len(alt.split()) >= 25 and ".png" not in alt, f"{lesson}: {drawn_by!r}: say what is plotted and what it shows"


def test_the_themes_markup_is_mended_for_screen_readers() -> None:
    page = (
        '<aside class="sidebar-drawer"><p class="caption" role="heading"><span>Lessons</span></p></aside>\n'
        '<aside class="toc-drawer no-toc"></aside>\n'
        '<table><thead>\n<tr class="row-odd"><th class="head"><p></p></th>\n<th class="head"><p></p></th>\n</tr>\n</thead>\n'
        "<tbody><tr><td><p><strong>Questions</strong></p></td><td><p>Why?</p></td></tr></tbody></table>\n"
        '<table><thead><tr><th class="head"><p></p></th><th class="head"><p>one kernel</p></th></tr></thead></table>\n'
    )
    mended = site_html.accessible(page)
    assert '<p class="caption" role="heading" aria-level="2">' in mended  # a heading has a level
    assert '<aside class="sidebar-drawer" aria-label="Site navigation">' in mended  # two landmarks told apart
    assert '<aside class="toc-drawer no-toc" aria-label="On this page">' in mended
    assert mended.count("<thead>") == 1, "a header row with nothing in it is dropped"
    assert '<td class="head"></td><th class="head"><p>one kernel</p></th>' in mended, "an empty corner is a plain cell"
    assert site_html.accessible(mended) == mended


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
    solution = authoring.find_solution(exercise.name)
    handed_out_nb = nbformat.reads(authoring.handed_out(solution)[Path(exercise.name)], as_version=4)
    handed_out = "\n".join(cell.source for cell in handed_out_nb.cells)
    flat = re.sub(r"\s+", " ", text)
    for cell in authoring.read(solution).cells:
        if cell.cell_type != "code" or not authoring.has_markers(cell.source):
            continue
        answer, _ = authoring.split_source(cell.source)
        secret = {line.strip() for line in answer.splitlines() if line.strip() not in handed_out}
        for line in sorted(s for s in secret if len(s) > 25):
            assert line not in flat, f"a solution line is published: {line}"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_every_figure_says_what_it_shows(site: Path, lesson: Path) -> None:
    """Each <img> of a lesson's page carries the alt text site/figures.toml wrote for it, not the PNG's path."""
    source = (site / "notebooks" / f"{lesson.stem}.html").read_text(encoding="utf-8")
    shown = sorted(html.unescape(alt) for alt in re.findall(r'<img [^>]*alt="([^"]*)"', source))
    written = sorted(alt for (name, _), alt in build_site.read_alt_texts().items() if name == lesson.name)
    assert len(shown) == len(re.findall(r"<img ", source)), "an image without alt text"
    assert shown == written


def test_every_relative_link_and_anchor_resolves(site: Path) -> None:
    assert site_html.broken_links(site) == []


def test_nothing_leaks_the_building_machine(site: Path) -> None:
    assert site_leaks.leaks(site) == []


# --------------------------------------------------------------------------- in a real browser


@pytest.fixture
def served(site: Path) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1 (a free port), stopped after the test."""
    with serve_folder(site) as url:
        yield url


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
