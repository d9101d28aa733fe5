"""Accessibility: axe-core over every page of the built site and over a lesson as JupyterLab shows it.

axe-core is the engine behind most accessibility checkers: it reads a page as a browser renders it
and reports each rule the page breaks (WCAG 2.x A and AA, and best practices), with an impact from
minor to critical. It comes from a pinned PyPI package, axe-playwright-python (its axe.min.js is
axe-core 4.12.1), and runs in Debian's chromium, driven by Playwright (tests/browser.py).

- The site (build/site/html, from `python tools/build_site.py`): every page, at a laptop's width in
  the light theme and at a phone's width in the dark one, has no violation at all. The tests skip
  when the site is not built, and fail instead when ASYNCLAB_SITE_REQUIRED=1 (CI).
- JupyterLab: lesson 1, run top to bottom, has no violation that comes from the course (its text, its
  code, its outputs). JupyterLab's own violations, which no notebook can change, are listed below
  (JUPYTERLAB_OWN), each matched by rule and CSS selector, with why. Skips without chromium, and
  fails instead when ASYNCLAB_BROWSER_REQUIRED=1 (CI).

What axe-core 4.12.1 found on the site before the fixes (28 pages at 1280 px, light; node counts;
at 390 px the scrollable blocks were 401 nodes on 26 pages, tables included):
  aria-required-attr           critical   84 nodes, every page: the sidebar's captions (role="heading", no aria-level)
  scrollable-region-focusable  serious   225 nodes, 21 pages: code and output blocks that scroll, out of a keyboard's reach
  landmark-unique              moderate   24 nodes: Furo's two <aside> landmarks without names
  page-has-heading-one         moderate    1 node: the search page
  empty-table-header           minor      23 nodes, 11 pages: markdown tables with an empty header row
and after (tools/site_html.py `accessible`, site/_static/course.js, site/_templates/search.html): none.
Screenshots and each scan's findings go to build/test-artefacts/accessibility/ (ignored by git).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from matplotlib.lines import Line2D
from PIL import Image

from asynclab.bench.figures import counts_figure
from asynclab.bench.workers import Answer
from tests import test_jupyterlab as jupyterlab
from tests.browser import chromium, serve_folder
from tests.browser import unavailable as skip_or_fail
from tests.test_figures import MAX_WIDTH_PX, visible_texts

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "build" / "site" / "html"
ARTEFACTS = ROOT / "build" / "test-artefacts" / "accessibility"
SITE_REQUIRED = "ASYNCLAB_SITE_REQUIRED"  # CI sets both to 1
BROWSER_REQUIRED = "ASYNCLAB_BROWSER_REQUIRED"
# Every page at a laptop's width in the light theme, and at a phone's in the dark one: what scrolls
# sideways, and so needs a tab stop, depends on the width; colour contrast on the theme.
VIEWS = {
    "laptop, light": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"},
    "phone, dark": {"viewport": {"width": 390, "height": 844}, "color_scheme": "dark"},
}
PAGES = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")) or ["index.html"]  # no site: the test says so
MIN_TEXT_PX = 10  # the smallest text a figure may show, at the size JupyterLab shows it

lab = jupyterlab.lab  # the learner's JupyterLab, started as tests/test_jupyterlab.py starts it (a copy of the course)


def axe_script(variable: str) -> str:
    try:
        from axe_playwright_python.base import AXE_FILE_PATH
    except ImportError:
        skip_or_fail("axe-core is not installed (pip install -r requirements-site.txt: axe-playwright-python)", variable)
    return AXE_FILE_PATH.read_text(encoding="utf-8")


def violations(page: Any, script: str) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now; every violation: its rule, impact, help and nodes (selector, HTML)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(script)
    found = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [{"target": " ".join(map(str, n["target"])), "html": n["html"][:300]} for n in v["nodes"]],
        }
        for v in found["violations"]
    ]


def described(found: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {v['rule']} ({v['impact']}, {len(v['nodes'])} nodes): {v['help']}; e.g. {v['nodes'][0]['target']}" for v in found
    )


# --------------------------------------------------------------------------- the site


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    if not (SITE / "index.html").is_file():
        skip_or_fail("the site is not built: run `python tools/build_site.py` (about 2 minutes) first", SITE_REQUIRED)
    with serve_folder(SITE) as url:
        yield url


@pytest.fixture(scope="class")
def browser(served: str) -> Iterator[Any]:
    """One chromium for the site's tests, closed after them: Playwright's sync API drives one browser session at a
    time in a thread, and the JupyterLab test below starts its own (a class, not the module, ends first)."""
    with chromium(SITE_REQUIRED) as opened:
        yield opened


class TestTheSite:
    @pytest.mark.parametrize("path", PAGES)
    def test_every_page_has_no_accessibility_violation(self, served: str, browser: Any, path: str) -> None:
        script = axe_script(SITE_REQUIRED)
        problems = {}
        for view, options in VIEWS.items():
            context = browser.new_context(**options)
            try:
                page = context.new_page()
                page.goto(f"{served}/{path}")
                page.wait_for_load_state("load")
                found = violations(page, script)
                if found:
                    problems[view] = found
            finally:
                context.close()
        if problems:
            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            (ARTEFACTS / f"site-{path.replace('/', '-')}.json").write_text(json.dumps(problems, indent=1), encoding="utf-8")
        assert not problems, f"{path}:\n" + "\n".join(f"{view}:\n{described(found)}" for view, found in problems.items())

    def test_a_code_block_that_scrolls_takes_the_keyboard_and_keeps_its_arrow_keys(self, served: str, browser: Any) -> None:
        """Tab reaches a block wider than the page, and only such a block; there the arrow keys scroll it, not turn the page."""
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{served}/notebooks/01-async-handlers.html")
            page.wait_for_load_state("load")
            tab_stops = page.locator("article pre").evaluate_all(
                "bs => bs.map(b => [b.scrollWidth > b.clientWidth || b.scrollHeight > b.clientHeight, b.getAttribute('tabindex')])"
            )
            assert any(scrolls for scrolls, _ in tab_stops) and not all(scrolls for scrolls, _ in tab_stops)
            assert all((stop == "0") == scrolls for scrolls, stop in tab_stops), (
                "a tab stop on each block that scrolls, and only there"
            )
            wide = page.locator("article pre[tabindex='0']").first
            wide.focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function("b => b.scrollLeft > 0", arg=wide.element_handle())
            assert page.url.endswith("/notebooks/01-async-handlers.html"), "the arrow key turned the page"
        finally:
            page.close()

    def test_the_run_it_yourself_command_is_as_large_as_the_lessons_code(self, served: str, browser: Any) -> None:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{served}/notebooks/01-async-handlers.html")
            size = "s => parseFloat(getComputedStyle(document.querySelector(s)).fontSize)"
            command, code = page.evaluate(size, ".course-run-it pre"), page.evaluate(size, ".cell_input pre")
            assert command >= code >= 12, f"the command is {command} px, the lesson's code {code} px"
        finally:
            page.close()


# --------------------------------------------------------------------------- JupyterLab

# What JupyterLab 4.6 itself breaks on any notebook, whatever the notebook says: (rule, CSS selector
# pattern, why). No notebook can change these; they are JupyterLab's to mend.
JUPYTERLAB_OWN = [
    (
        "aria-allowed-attr",
        r"^jp-button\b|\.jp-DebuggerBugButton",
        "toolbar buttons carry aria-pressed, which their role does not allow",
    ),
    ("aria-input-field-name", r"\.cm-content\b", "each cell's editor (CodeMirror, role=textbox) has no accessible name"),
    (
        "aria-required-children",
        r"\.jp-WindowedPanel-viewport\b",
        "the notebook's list of cells is role=feed, its cells are not role=article",
    ),
    (
        "button-name",
        r"\.jp-collapseHeadingButton\b",
        "the button beside each markdown heading, which folds its section, has no name",
    ),
    ("region", r"\.jp-skiplink-wrapper\b", "JupyterLab's skip link sits outside every landmark"),
    (
        "scrollable-region-focusable",
        r"\.cm-scroller\b",
        "the editor's scroller has tabindex=-1; the keyboard reaches the code in the editor inside it",
    ),
    (
        "image-alt",
        r"\.jp-RenderedImage\b[^ ]* > img$",
        (
            "JupyterLab gives a PNG output no alt text and reads none from the output's metadata, so no notebook can "
            "(jupyter/enhancement-proposals#120 proposes how); on the site every figure has its own (site/figures.toml)"
        ),
    ),
]
LESSON = "notebooks/01-async-handlers.ipynb"


def _whose(rule: str, target: str, known: list[tuple[str, ...]]) -> bool:
    return any(rule == entry[0] and re.search(entry[1], target) for entry in known)


def test_a_lesson_in_jupyterlab_has_no_violation_of_the_courses_own(lab: jupyterlab.Lab) -> None:
    script = axe_script(BROWSER_REQUIRED)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(BROWSER_REQUIRED) as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})  # as tests/test_jupyterlab.py: a laptop
        page.goto(f"{lab.url}/lab/tree/{LESSON}?token={lab.token}")
        jupyterlab._notebook(page).locator(".jp-Cell").first.wait_for(timeout=60_000)
        cells = jupyterlab._run_all(page, "lesson 1")  # outputs and figures are the course's content too
        assert jupyterlab._never_ran(cells) == [] and any("image/png" in c["mimes"] for c in cells)
        found = violations(page, script)
        page.screenshot(path=ARTEFACTS / "jupyterlab-lesson-1.png")
    (ARTEFACTS / "jupyterlab-lesson-1.json").write_text(json.dumps(found, indent=1), encoding="utf-8")
    courses = [
        f"{v['rule']} ({v['impact']}): {node['target']}: {node['html'][:160]}"
        for v in found
        for node in v["nodes"]
        if not _whose(v["rule"], node["target"], JUPYTERLAB_OWN)
    ]
    assert not courses, "violations from the course's own content in JupyterLab:\n" + "\n".join(courses)


# --------------------------------------------------------------------------- figures, without a browser


def _answers(pattern: list[int]) -> list[Answer]:
    counts: dict[int, int] = {}
    answers = []
    for i, pid in enumerate(pattern):
        counts[pid] = counts.get(pid, 0) + 1
        answers.append(Answer(i, pid, 200, {"visits": counts[pid]}))
    return answers


def test_lesson_7s_workers_differ_in_shape_not_only_in_colour() -> None:
    fig = counts_figure(("in memory", _answers([101, 102, 101, 102, 102, 101])), ("three workers", _answers([1, 2, 3, 1, 2, 3])))
    for ax in fig.axes:
        workers = [line for line in ax.get_lines() if line.get_label().startswith("worker")]
        markers, colours = [line.get_marker() for line in workers], [line.get_color() for line in workers]
        assert len(set(markers)) == len(set(colours)) == len(workers) >= 2, (markers, colours)
        legend = ax.get_legend()
        assert [h.get_marker() for h in legend.legend_handles if isinstance(h, Line2D)][1:] == markers  # the key shows the shapes


def test_lesson_7s_figure_is_shown_at_full_size_with_readable_text() -> None:
    """JupyterLab shows a figure up to 860 px wide at its own size (tests/test_figures.py); every text is then at least 10 px."""
    fig = counts_figure(
        ("in memory: each worker counts alone", _answers([1, 2] * 6)), ("one SQLite file: one count", _answers([1, 2] * 6))
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")  # as matplotlib-inline saves it
    with Image.open(buffer) as image:
        assert image.size[0] <= MAX_WIDTH_PX, image.size
    small = {
        t.get_text(): round(t.get_fontsize() * fig.dpi / 72, 1)
        for t in visible_texts(fig)
        if t.get_fontsize() * fig.dpi / 72 < MIN_TEXT_PX
    }
    assert not small, f"text under {MIN_TEXT_PX} px: {small}"
