"""The cheatsheet tells the truth: its ruff block finds exactly what its table claims, and its links lead somewhere."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from asynclab.course.authoring import ROOT

CHEATSHEET = ROOT / "docs" / "cheatsheet.md"
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```$", re.MULTILINE | re.DOTALL)
RELATIVE_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(?:#[^)\s]*)?\)")
FINDING = re.compile(r"\b([A-Z]+[0-9]+) ×([0-9]+)")
VERDICTS = ("holds", "holds with a nuance", "wrong as written")


def cheatsheet() -> str:
    return CHEATSHEET.read_text(encoding="utf-8")


def claimed_findings(markdown: str) -> dict[Path, Counter[str]]:
    """The findings table: each row links a .py file in its first cell and lists `CODE ×n` in its second."""
    claims: dict[Path, Counter[str]] = {}
    for line in markdown.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        link = RELATIVE_LINK.search(cells[0])
        if len(cells) >= 2 and link and link.group(1).endswith(".py"):
            path = (CHEATSHEET.parent / link.group(1)).resolve()
            assert path not in claims, f"{path.name} has two rows"
            claims[path] = Counter({code: int(count) for code, count in FINDING.findall(cells[1])})
    return claims


def test_the_ruff_block_finds_exactly_what_the_table_claims(tmp_path: Path) -> None:
    blocks = TOML_BLOCK.findall(cheatsheet())
    assert len(blocks) == 1, "the cheatsheet should hold one ```toml block"
    config = tmp_path / "pyproject.toml"
    config.write_text(blocks[0], encoding="utf-8")

    claims = claimed_findings(cheatsheet())
    missing_rows = sorted(p.name for p in (ROOT / "notebooks" / "lint").glob("*.py") if p.resolve() not in claims)
    assert missing_rows == [], "every anti-pattern file needs a row in the table"

    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--exit-zero", "--output-format", "json"]
    done = subprocess.run(
        [*command, "--config", str(config), *map(str, sorted(claims))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[Path, Counter[str]] = {path: Counter() for path in claims}
    for finding in json.loads(done.stdout):
        found[Path(finding["filename"]).resolve()][finding["code"]] += 1
    assert {p.name: dict(c) for p, c in found.items()} == {p.name: dict(c) for p, c in claims.items()}


def test_every_relative_link_leads_to_a_file() -> None:
    targets = RELATIVE_LINK.findall(cheatsheet())
    assert [t for t in targets if not (CHEATSHEET.parent / t).is_file()] == []
    lessons = {f"../notebooks/{p.name}" for p in (ROOT / "notebooks").glob("0[1-7]-*.ipynb")}
    assert len(lessons) == 7 and lessons <= set(targets), "each of the seven lessons is cited"


def test_each_rule_has_exactly_one_verdict() -> None:
    verdicts = re.findall(r"\*\*Verdict: ([^.*]+)\.\*\*", cheatsheet())
    assert len(verdicts) == 7 and set(verdicts) <= set(VERDICTS), verdicts
