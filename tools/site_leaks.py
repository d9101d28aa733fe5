"""Nothing on the site names the machine that built it: lesson outputs cleaned before rendering, pages checked after."""

from __future__ import annotations

import getpass
import importlib.util
import re
import socket
import sys
import sysconfig
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def machine_strings() -> list[tuple[re.Pattern[str], str]]:
    """What would describe the building machine, most specific first, and what replaces it."""
    pairs: list[tuple[str, str]] = []
    for key in ("purelib", "platlib"):
        pairs.append((sysconfig.get_paths()[key], "<site-packages>"))
    pairs.append((sysconfig.get_paths()["stdlib"], "<python>"))
    pairs.append((str(ROOT), "<course>"))
    helper = importlib.util.find_spec("asynclab")  # the course's package, wherever it is installed from
    if helper and helper.origin:
        pairs.append((str(Path(helper.origin).resolve().parents[2]), "<course>"))
    pairs.append((sys.prefix, "<venv>"))
    pairs.append((str(Path.home()), "~"))
    patterns = [(re.compile(re.escape(text)), new) for text, new in dict.fromkeys(pairs) if len(text) > 1]
    temp = re.escape(tempfile.gettempdir())
    patterns.append((re.compile(temp + r"/(?:tmp|pytest-of-|asynclab)[\w.-]*"), "<tmp>"))
    patterns.append((re.compile(temp + r"(?=/)"), "<tmp>"))
    patterns.append((re.compile(r"/home/[\w.-]+"), "~"))
    host = socket.gethostname()
    if len(host) >= 4:
        patterns.append((re.compile(r"\b" + re.escape(host) + r"\b"), "<host>"))
    return patterns


def sanitize(text: str, patterns: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, new in patterns:
        text = pattern.sub(new, text)
    return text


PID_MENTIONS = re.compile(
    r"\bpid[=: ]+(\d{3,7})\b|\b(?:worker|parent) (\d{3,7})\b"
    r"|\b(?:process(?:es)?:|running:) \[?((?:\d{3,7}|PID-\d+)(?:, (?:\d{3,7}|PID-\d+))*)\]?"
)


def pid_labels(nb: nbformat.NotebookNode) -> list[tuple[re.Pattern[str], str]]:
    """The build machine's process IDs mean nothing to a reader; keep which is which: PID-1, PID-2, …"""
    seen: dict[str, str] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
            for match in PID_MENTIONS.finditer(text):
                for number in re.findall(r"(?<!PID-)\b\d{3,7}\b", " ".join(g for g in match.groups() if g)):
                    seen.setdefault(number, f"PID-{len(seen) + 1}")
    return [(re.compile(rf"\b{number}\b"), label) for number, label in seen.items()]


def sanitize_outputs(nb: nbformat.NotebookNode) -> int:
    """Clean every text output in place; return how many outputs changed."""
    patterns = [(re.compile(r"(?:/[\w.-]+)*/ipykernel_\d+/\d+\.py"), "<cell>"), *machine_strings(), *pid_labels(nb)]
    changed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            before = repr(output)
            if "text" in output:
                output["text"] = sanitize(output["text"], patterns)
            for mime, value in output.get("data", {}).items():
                if isinstance(value, str) and (not mime.startswith("image/") or mime == "image/svg+xml"):
                    output["data"][mime] = sanitize(value, patterns)
            if "traceback" in output:
                output["traceback"] = [sanitize(line, patterns) for line in output["traceback"]]
                output["evalue"] = sanitize(output.get("evalue", ""), patterns)
            changed += before != repr(output)
    return changed


def leak_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """What must never appear in the published site."""
    found = [
        ("the course folder's absolute path", re.compile(re.escape(str(ROOT)))),
        ("a home folder", re.compile(r"/root/|/home/\w")),
        ("a temporary folder", re.compile(re.escape(tempfile.gettempdir()) + "/|/tmp/|/var/tmp/")),
        ("the build machine's work folder", re.compile(r"/work/")),
        ("a site-packages path", re.compile(r"/(?:site|dist)-packages/")),
        # a token's value; the README may name the parameter itself (a link "with `?token=` in it")
        ("a token in a URL", re.compile(r"""[?&]token=[^\s"'<>&]|token=[0-9a-f]{16,}""")),
        (
            "a process ID",
            re.compile(r"\bpid[=: ]+\d{3,}|\b(?:worker|parent) \d{3,}|\b(?:process(?:es)?|running): \[?\d{3,}|ipykernel_\d+"),
        ),
        ("a solution region", re.compile(r"BEGIN SOLUTION|END SOLUTION")),
        ("a page of solutions/", re.compile(r"""(?:href|src)=["'][^"']*solutions/""")),
        ("a resource loaded from the network", re.compile(r"""<(?:script|link|img)\b[^>]*(?:src|href)=["']https?://""")),
    ]
    host = socket.gethostname()
    if len(host) >= 4:
        found.append(("the host name", re.compile(r"\b" + re.escape(host) + r"\b")))
    user = getpass.getuser()
    if user not in ("root", "runner", "user", "jovyan") and len(user) >= 3:
        found.append(("the user name", re.compile(r"\b" + re.escape(user) + r"\b")))
    return found


def leaks(html_dir: Path) -> list[str]:
    problems = []
    patterns = leak_patterns()
    for path in sorted(html_dir.rglob("*")):
        if not path.is_file() or path.suffix not in (".html", ".js", ".txt", ".json", ".css", ".svg"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".js" and path.parent.name == "_static" and path.name != "searchindex.js":
            continue  # the theme's and Sphinx's own scripts
        for what, pattern in patterns:
            if what == "a solution region" and path.name == "CONTRIBUTING.html":
                continue  # it shows authors how to mark a solution, with an example
            for match in pattern.finditer(text):
                start = max(0, match.start() - 60)
                context = text[start : match.end() + 60].replace("\n", " ")
                problems.append(f"{path.relative_to(html_dir)}: {what}: …{context}…")
                break
    return problems
