"""The class view's page as a projector shows it: a room of 30 at 1280 × 720, in Debian's chromium.

The page is served from 127.0.0.1 (a free port, stopped at the end) and opened at 1280 × 720:
every column, the totals included, must fit the width; with --hide-names no name is on it; with
--watch it reloads itself. Screenshots go to build/test-artefacts/room/ (ignored by git). Without
chromium or Playwright the test is skipped, unless ASYNCLAB_BROWSER_REQUIRED=1 (CI).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from asynclab.course import classview
from asynclab.course.room import model
from tests.browser import ROOT, chromium, serve_folder
from tests.test_classview import COURSE, LEARNERS, make_report, write_class

REQUIRED = "ASYNCLAB_BROWSER_REQUIRED"
ARTEFACTS = ROOT / "build" / "test-artefacts" / "room"
WIDTH, HEIGHT = 1280, 720


@pytest.fixture(autouse=True)
def _instructor_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "own_version", lambda: COURSE["commit"])


def _page(tmp_path: Path, **options: object) -> Path:
    folder = write_class(tmp_path / "reports")
    roster = tmp_path / "roster.txt"
    roster.write_text("\n".join([f"learner{i:02d}" for i in range(LEARNERS)] + ["yusuf", "zoë"]) + "\n", encoding="utf-8")
    out_dir = tmp_path / "view"
    chosen = classview.Options(paths=(str(folder),), out_dir=out_dir, roster=roster, **options)  # type: ignore[arg-type]
    assert classview.main(options=chosen, out=io.StringIO(), err=io.StringIO(), rounds=1) == 0
    return out_dir


def _measure(browser: object, url: str, shot: Path) -> dict[str, float]:
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})  # type: ignore[attr-defined]
    try:
        page.goto(url)
        page.screenshot(path=str(shot))
        return page.evaluate(
            """() => {
                const table = document.querySelector("table.room").getBoundingClientRect();
                const head = [...document.querySelectorAll("table.room thead tr:nth-child(2) th")];
                const solved = head.find(th => th.textContent === "solved").getBoundingClientRect();
                const rows = [...document.querySelectorAll("table.room tbody tr")];
                const visible = rows.filter(r => r.getBoundingClientRect().bottom <= innerHeight).length;
                return {right: table.right, solved: solved.right, scroll: document.documentElement.scrollWidth,
                        rows: rows.length, visible: visible, top: table.top};
            }"""
        )
    finally:
        page.close()


def test_a_room_of_30_fits_a_1280_by_720_projector(tmp_path: Path) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    named = _page(tmp_path / "named")
    hidden = _page(tmp_path / "hidden", hide_names=True, watch=True, every=30)
    with chromium(REQUIRED) as browser, serve_folder(tmp_path) as base:
        seen = _measure(browser, f"{base}/named/view/{classview.HTML_NAME}", ARTEFACTS / "room-of-30-1280x720.png")
        quiet = _measure(browser, f"{base}/hidden/view/{classview.HTML_NAME}", ARTEFACTS / "room-of-30-hidden-names-1280x720.png")
    print(f"1280x720: table right edge {seen['right']:.0f} px, {seen['visible']:.0f} of {seen['rows']:.0f} rows above the fold")
    for measured in (seen, quiet):
        assert measured["scroll"] <= WIDTH, f"the page scrolls sideways: {measured}"
        assert measured["right"] <= WIDTH and measured["solved"] <= WIDTH, f"the table is cut: {measured}"
    assert seen["rows"] == LEARNERS + 2  # 30 learners and the two absent ones
    assert quiet["rows"] == LEARNERS  # absent learners are counted, not named
    page = (hidden / classview.HTML_NAME).read_text(encoding="utf-8")
    assert '<meta http-equiv="refresh" content="30">' in page and "learner0" not in page and "zoë" not in page
    page = (named / classview.HTML_NAME).read_text(encoding="utf-8")
    assert "http-equiv" not in page and "<bdi>learner00</bdi>" in page and "<bdi>zoë</bdi>" in page


def test_a_longer_course_still_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """45 exercises (the course has fewer today): the columns narrow, the page never scrolls sideways."""
    longer = tuple(model.Exercise(f"{1 + i // 5}.{1 + i % 5}", f"exercise {i}", f"{1 + i // 5} · section") for i in range(45))
    monkeypatch.setattr(model, "course_exercises", lambda: longer)
    folder = tmp_path / "reports"
    folder.mkdir()
    for i in range(LEARNERS):
        data = make_report(i)
        data["exercises"] = [{"id": x.id, "solved": j < i, "seen": "" if j < i else "not yet"} for j, x in enumerate(longer)]
        (folder / f"learner{i:02d}.json").write_text(json.dumps(data), encoding="utf-8")
    out_dir = tmp_path / "view"
    assert (
        classview.main(options=classview.Options(paths=(str(folder),), out_dir=out_dir), out=io.StringIO(), err=io.StringIO())
        == 0
    )
    with chromium(REQUIRED) as browser, serve_folder(tmp_path) as base:
        seen = _measure(browser, f"{base}/view/{classview.HTML_NAME}", ARTEFACTS / "course-of-45-1280x720.png")
    assert seen["scroll"] <= WIDTH and seen["right"] <= WIDTH and seen["solved"] <= WIDTH, seen
