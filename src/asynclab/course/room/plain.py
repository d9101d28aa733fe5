"""Learner-written text, made safe to show: in a terminal, in a picture, on a web page, in a spreadsheet."""

from __future__ import annotations

import unicodedata

# Controls (C0, C1: ESC, BEL, CSI...), format characters (bidi overrides and isolates, zero-width
# spaces and joiners, the BOM), surrogates, private use, and the line and paragraph separators.
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
ELLIPSIS = "…"


def plain(text: object, limit: int = 200) -> str:
    """``text`` as one line of visible characters, whitespace runs made one space, cut to ``limit`` with "…".

    A report is a file a learner can edit, so its name, titles and observations may hold anything:
    terminal escapes (clear the screen, set the window title, hidden links), a newline that draws a
    fake row, a right-to-left override that shows ``bob<U+202E>52/52`` as "bob25/25", or 20,000 characters.
    :func:`plain` keeps the visible characters only, on one line, capped; the HTML page still escapes
    it and the picture turns matplotlib's ``$...$`` maths off.
    """
    kept = "".join(" " if c.isspace() else c for c in str(text) if c.isspace() or unicodedata.category(c) not in _DROPPED)
    line = " ".join(kept.split())
    return line if len(line) <= limit else line[: max(0, limit - 1)].rstrip() + ELLIPSIS


def key(name: str) -> str:
    """What makes two learner names the same learner: "Ana", "ana" and "ana\u200b" are one."""
    return unicodedata.normalize("NFKC", plain(name, 1000)).casefold()


def width(text: str) -> int:
    """Columns a terminal gives ``text``: wide characters (✅, ❌, CJK) take two, combining marks none."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


def clip(text: str, columns: int) -> str:
    """``text`` cut to at most ``columns`` terminal columns, "…" marking a cut."""
    if width(text) <= columns:
        return text
    out, used = "", 0
    for c in text:
        w = width(c)
        if used + w > columns - 1:
            break
        out, used = out + c, used + w
    return out + ELLIPSIS


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def csv_cell(value: object) -> str:
    """A spreadsheet cell that stays text: a leading = + - @ (a formula) gets a ' in front (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
