"""The rendered pages: mended where the theme's markup fails screen readers, and every relative link checked."""

from __future__ import annotations

import html.parser
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]


# What axe-core (tests/test_accessibility.py) found on every page of the rendered site, mended here
# because no template or option of Sphinx or Furo reaches it (scrollable code blocks get a tab stop
# from site/_static/course.js instead: only the ones that scroll, at the reader's window width).
LANDMARK_LABELS = {"sidebar-drawer": "Site navigation", "toc-drawer": "On this page"}
HEADING_WITHOUT_LEVEL = re.compile(r'<(\w+)((?:(?!aria-level=)[^>])*?\brole="heading"(?:(?!aria-level=)[^>])*)>')
UNLABELLED_ASIDE = re.compile(r'<aside class="({})((?: [\w-]+)*)">'.format("|".join(LANDMARK_LABELS)))
TABLE_HEAD = re.compile(r"<thead>(.*?)</thead>\s*", re.DOTALL)
EMPTY_HEADER = re.compile(r'<th class="head">(?:<p></p>)?</th>')


def _table_head(match: re.Match[str]) -> str:
    head = match.group(1)
    if not EMPTY_HEADER.search(head):
        return match.group(0)
    if not re.sub(r"<[^>]+>|\s", "", head):
        return ""  # a header row with nothing in it (a markdown table used for layout): no header at all
    return match.group(0).replace(match.group(1), EMPTY_HEADER.sub('<td class="head"></td>', head))  # an empty corner


def accessible(page: str) -> str:
    """One page's HTML with what screen readers need and Sphinx and Furo leave out.

    - the sidebar's captions (``role="heading"``) get the ``aria-level`` a heading must have;
    - Furo's two ``<aside>`` landmarks get names that tell them apart;
    - a table's empty header cells go: an all-empty header row (a markdown table used for layout)
      is dropped, and an empty corner cell becomes a plain cell.
    """
    page = HEADING_WITHOUT_LEVEL.sub(r'<\1\2 aria-level="2">', page)
    page = UNLABELLED_ASIDE.sub(
        lambda m: f'<aside class="{m.group(1)}{m.group(2)}" aria-label="{LANDMARK_LABELS[m.group(1)]}">', page
    )
    return TABLE_HEAD.sub(_table_head, page)


def make_accessible(html_dir: Path) -> int:
    """Mend every page of the built site in place (see `accessible`); return how many pages changed."""
    changed = 0
    for path in sorted(html_dir.rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        mended = accessible(text)
        if mended != text:
            path.write_text(mended, encoding="utf-8")
            changed += 1
    return changed


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if value and ((name == "href" and tag in ("a", "link")) or (name == "src" and tag in ("img", "script"))):
                self.refs.append(value)


def parse(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    return parser


def broken_links(html_dir: Path) -> list[str]:
    """Every relative href/src of every page must name a file of the site, and its #anchor an id there."""
    pages = {page: parse(page) for page in html_dir.rglob("*.html")}
    problems = []
    for page, refs in pages.items():
        for ref in refs.refs:
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc:
                continue  # external: not followed offline (the site loads nothing from the network, see leaks)
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(html_dir)} -> {ref}"
            if not target.is_file():
                problems.append(f"{where}: no such file")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{where}: no such anchor")
    return problems
