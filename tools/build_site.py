"""Build the course's website from freshly executed lessons, offline: ``python tools/build_site.py [--jobs 1]``.

The result, build/site/html/index.html, needs no network; :func:`build` says what happens, in order.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

from asynclab.course import authoring

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/ is not a package: its sibling modules
from site_html import broken_links, make_accessible
from site_leaks import leaks, sanitize_outputs

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "site"
OUT = ROOT / "build" / "site"
CELL_TIMEOUT = 180
PAGE_SUFFIXES = (".md", ".ipynb")
NEVER_PUBLISHED = ("solutions",)  # top-level folders whose files never reach the site
LEARNERS = "exercises"  # the learner's folder: only what is handed out reaches the site, made afresh from solutions/
FIGURES = CONF_DIR / "figures.toml"  # the alt text of every figure a lesson draws
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


# --------------------------------------------------------------------------- execute


lessons, exercises = authoring.lessons, authoring.exercises  # the site's pages, named where every name is made


def execute(path: Path, logs: Path) -> tuple[str, float]:
    """Run one notebook top to bottom in a fresh kernel; return it (as JSON) and the seconds it took.

    The kernel's own stderr (start-up chatter) goes to logs/<name>.log; cell errors still stop the build."""
    from asynclab.course.notebook import kernel_client

    nb = nbformat.read(path, as_version=4)
    start = time.monotonic()
    with (
        kernel_client(nb, path.parent, timeout=CELL_TIMEOUT) as client,
        (logs / f"{path.stem}.log").open("w", encoding="utf-8") as log,
    ):
        client.execute(stderr=log)
    return nbformat.writes(nb), time.monotonic() - start


# --------------------------------------------------------------------------- stage


def versions() -> str:
    names = ("fastapi", "starlette", "uvicorn", "anyio", "httpx", "sqlalchemy")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join([f"Python {platform.python_version()}", *found])


def open_command(relative: str) -> str:
    return f"python tools/open_course.py {relative}"


def lesson_banner(relative: str, seconds: float) -> str:
    return (
        ":::{admonition} Run it yourself\n:class: course-run-it\n\n"
        f"Every output on this page was produced by running `{relative}` top to bottom "
        f"({seconds:.0f} s, on a {os.cpu_count()}-core build machine; {versions()}). "
        "Times vary by machine; the claims are asserted in the cells, so they hold wherever the lesson runs. "
        "To run it yourself, set up the course ([how](../index.md#set-up-and-open-the-course)), then from the course folder:\n\n"
        f"```text\n{open_command(relative)}\n```\n:::"
    )


def exercise_banner(relative: str) -> str:
    return (
        ":::{admonition} Open this in JupyterLab\n:class: course-run-it\n\n"
        "This is the exercise notebook as handed out, not run: the checks fail until you solve them. "
        "Set up the course ([how](../index.md#set-up-and-open-the-course)), then from the course folder:\n\n"
        f"```text\n{open_command(relative)}\n```\n\n"
        "Run its cells; each check says whether it passed. `python -m asynclab progress` shows how far "
        "you are. Worked answers are in the course folder, not on this site.\n:::"
    )


def handed_out_exercises(into: Path, root: Path = ROOT) -> dict[Path, Path]:
    """Write every exercise file as handed out, made from its solution, under ``into``; return where each belongs.

    The result maps a file's place in the course (``root/exercises/...``, resolved) to its fresh copy.
    The course folder's own exercises/ is never read: it is the learner's, with their answers and the
    outputs their runs saved, and none of that may reach the site."""
    if into.exists():
        shutil.rmtree(into)
    copies: dict[Path, Path] = {}
    for solution in authoring.solutions(root):
        for relative, text in authoring.handed_out(solution).items():
            copy = into / relative
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(text, encoding="utf-8")
            copies[(root / LEARNERS / relative).resolve()] = copy
    return copies


class Stager:
    """Copies pages into the staging folder, following their links, and rewrites links the site cannot serve.

    ``handed_out`` maps each file of the course's exercises/ to the fresh copy to publish instead (see
    `handed_out_exercises`); a link to any other file there keeps only its text."""

    def __init__(self, src: Path, root: Path = ROOT, handed_out: dict[Path, Path] | None = None) -> None:
        self.src, self.root = src, root
        self.handed_out = handed_out or {}
        self.pages: list[str] = []  # staged page paths, relative, in discovery order
        self.queue: list[Path] = []

    def target(self, page: Path, link: str) -> str | None:
        """The rewritten link, or None to keep only the link's text."""
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or link.startswith(("#", "mailto:")) or not parts.path:
            return link
        resolved = (page.parent / unquote(parts.path)).resolve()
        try:
            relative = resolved.relative_to(self.root)
        except ValueError:
            return None
        if relative.parts and relative.parts[0] in NEVER_PUBLISHED:
            return None
        if relative.parts and relative.parts[0] == LEARNERS:
            if resolved not in self.handed_out:
                return None  # the learner's own file, or a folder: never published
        elif resolved.is_dir():
            if not (resolved / "README.md").is_file():
                return None
            resolved = resolved / "README.md"
            relative = resolved.relative_to(self.root)
        elif not resolved.exists():
            return link  # left as is: the build and the link check report it
        staged = Path("index.md") if relative == Path("README.md") else relative
        if resolved.suffix in PAGE_SUFFIXES:
            self.queue.append(resolved)
        else:
            self.copy_file(self.handed_out.get(resolved, resolved), staged)
        here = Path("index.md") if page.resolve() == (self.root / "README.md") else page.resolve().relative_to(self.root)
        new = os.path.relpath(staged, here.parent).replace(os.sep, "/")
        return new + (f"#{parts.fragment}" if parts.fragment else "")

    def rewrite(self, page: Path, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            bang, label, link = match.groups()
            new = self.target(page, link)
            if new is None:
                return label if not bang else ""
            return f"{bang}[{label}]({new})"

        # Leave fenced code blocks untouched.
        pieces = re.split(r"(^```.*?^```)", text, flags=re.DOTALL | re.MULTILINE)
        return "".join(p if i % 2 else LINK.sub(one, p) for i, p in enumerate(pieces))

    def copy_file(self, source: Path, staged: Path) -> None:
        destination = self.src / staged
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)

    def stage_markdown(self, source: Path, staged: Path) -> None:
        destination = self.src / staged
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(self.rewrite(source, source.read_text(encoding="utf-8")), encoding="utf-8")
        self.pages.append(staged.as_posix())

    def stage_notebook(self, source: Path, nb: nbformat.NotebookNode, banner: str) -> None:
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = self.rewrite(source, cell.source)
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(banner))
        for cell in nb.cells:
            cell.pop("id", None)
        nb.nbformat_minor = 4
        relative = source.relative_to(self.root)
        destination = self.src / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, destination)
        self.pages.append(relative.as_posix())

    def follow_links(self) -> None:
        """Stage every page linked from a staged page (the docs, the templates' READMEs), transitively."""
        while self.queue:
            page = self.queue.pop(0)
            relative = page.relative_to(self.root)
            staged = Path("index.md") if relative == Path("README.md") else relative
            if staged.as_posix() in self.pages:
                continue
            if page.suffix == ".ipynb":
                raise SystemExit(f"{relative}: a notebook outside notebooks/ and exercises/ is linked; add it to the site")
            self.stage_markdown(page, staged)


def read_alt_texts(path: Path = FIGURES) -> dict[tuple[str, str], str]:
    """``(lesson file, drawn_by) -> alt text`` from site/figures.toml, each text on one line."""
    entries = tomllib.loads(path.read_text(encoding="utf-8"))["figure"]
    found: dict[tuple[str, str], str] = {}
    for entry in entries:
        key = (entry["lesson"], entry["drawn_by"])
        if key in found:
            raise SystemExit(f"{path.name}: two entries for {key}")
        found[key] = " ".join(entry["alt"].split())
    return found


def describe_figures(lesson: str, nb: nbformat.NotebookNode, alt_texts: dict[tuple[str, str], str]) -> set[tuple[str, str]]:
    """Give every figure the lesson drew its alt text (MyST-NB's ``mystnb.image.alt`` cell metadata); return the entries used.

    A figure's entry is the one whose ``drawn_by`` appears in the source of the cell that drew it. A
    figure with no entry, or with two, stops the build: without it the site's alt text is the PNG's path."""
    mine = {drawn_by: alt for (name, drawn_by), alt in alt_texts.items() if name == lesson}
    used: set[tuple[str, str]] = set()
    for number, cell in enumerate(nb.cells):
        drawn = sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))
        if not drawn:
            continue
        matches = [drawn_by for drawn_by in mine if drawn_by in cell.source]
        where = f"{lesson}, cell {number} ({(cell.source.strip().splitlines() or [''])[-1][:80]!r})"
        if len(matches) != 1:
            found = "no entry" if not matches else f"{len(matches)} entries ({matches})"
            raise SystemExit(
                f"{where}: {found} in {FIGURES.relative_to(ROOT)} for its figure; give it one, whose drawn_by "
                "is a piece of this cell's source and whose alt says what is plotted and what it shows"
            )
        if drawn > 1:
            raise SystemExit(f"{where}: {drawn} figures in one cell share one alt text; draw them in separate cells")
        cell.metadata.setdefault("mystnb", {})["image"] = {"alt": mine[matches[0]]}
        used.add((lesson, matches[0]))
    return used


def toctree(caption: str, entries: list[str]) -> str:
    lines = "\n".join(entry.rsplit(".", 1)[0] for entry in entries)
    return f"\n\n```{{toctree}}\n:caption: {caption}\n:hidden:\n:maxdepth: 1\n\n{lines}\n```\n"


def stage(
    src: Path, executed: dict[Path, tuple[nbformat.NotebookNode, float]], root: Path = ROOT, figures: Path = FIGURES
) -> list[str]:
    """Stage every page in ``src``; the exercises as handed out are written beside it, in ``src/../handed-out``."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    copies = handed_out_exercises(src.parent / "handed-out", root)
    stager = Stager(src, root, copies)
    alt_texts = read_alt_texts(figures)
    unused = set(alt_texts)
    for path, (nb, seconds) in executed.items():
        relative = path.relative_to(root).as_posix()
        unused -= describe_figures(path.name, nb, alt_texts)
        stager.stage_notebook(path, nb, lesson_banner(relative, seconds))
    if executed and unused:
        stale = "; ".join(f"{lesson}: {drawn_by!r}" for lesson, drawn_by in sorted(unused))
        raise SystemExit(f"{figures.name} describes figures no lesson draws any more ({stale}): update or remove them")
    for path in exercises(root):
        relative = path.relative_to(root).as_posix()
        copy = copies[path.resolve()]
        stager.stage_notebook(path, nbformat.read(copy, as_version=4), exercise_banner(relative))
    stager.stage_markdown(root / "README.md", Path("index.md"))
    stager.follow_links()
    lesson_pages = [p for p in stager.pages if p.startswith("notebooks/")]
    exercise_pages = [p for p in stager.pages if p.startswith("exercises/") and p.endswith(".ipynb")]
    other = [p for p in stager.pages if p not in lesson_pages + exercise_pages + ["index.md"]]
    with (src / "index.md").open("a", encoding="utf-8") as index:
        index.write(toctree("Lessons", lesson_pages))
        index.write(toctree("Exercises", exercise_pages))
        index.write(toctree("For instructors and teams", other))
    return stager.pages


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- main


def run_lessons(out: Path, jobs: int, reuse: bool) -> dict[Path, tuple[nbformat.NotebookNode, float]]:
    """Execute every lesson (or, with reuse, read the last build's executed copies) and clean the outputs."""
    paths = lessons()
    kept = out / "executed"
    executed: dict[Path, tuple[nbformat.NotebookNode, float]] = {}
    if reuse:
        for path in paths:
            nb = nbformat.read(kept / path.name, as_version=4)
            sanitize_outputs(nb)
            executed[path] = (nb, float(nb.metadata.get("course_site", {}).get("seconds", 0)))
        print(f"reusing the {len(paths)} lessons executed by the last build (--reuse-executed)")
        return executed
    kept.mkdir(parents=True, exist_ok=True)
    logs = out / "kernel-logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"executing {len(paths)} lessons, {jobs} at a time …", flush=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {path: pool.submit(execute, path, logs) for path in paths}
        for path, future in futures.items():
            try:
                text, seconds = future.result()
            except Exception as error:  # noqa: BLE001 - name the notebook, then stop
                for other in futures.values():
                    other.cancel()
                raise SystemExit(
                    f"{path.relative_to(ROOT)} failed, the site is not built (kernel log: {logs / path.stem}.log):\n{error}"
                ) from None
            nb = nbformat.reads(text, as_version=4)
            cleaned = sanitize_outputs(nb)
            nb.metadata["course_site"] = {"seconds": round(seconds, 1)}
            nbformat.write(nb, kept / path.name)
            executed[path] = (nb, seconds)
            print(f"  {path.name}: {seconds:5.1f} s" + (f", {cleaned} output(s) cleaned" if cleaned else ""), flush=True)
    return executed


def build(out: Path = OUT, jobs: int = 2, check: bool = True, reuse: bool = False) -> Path:
    """Build the site into ``out``/html; return that folder. In order:

    1. Execute every lesson (notebooks/NN-*.ipynb, the start-here notebook included) top to bottom in
       a fresh kernel, ``jobs`` at a time, from the lesson's own folder, as a learner's "Run All" would.
       A cell that raises stops the build: the site never shows a figure the code no longer produces.
    2. Clean the outputs of anything that describes the building machine (:mod:`site_leaks`).
    3. Stage the pages in build/site/src: the README as the home page (with the syllabus), the
       executed lessons, each figure with its alt text (site/figures.toml), the exercises as handed out
       (not run) with the command that opens them, and every page or file those pages link to. The
       exercises are made afresh from the solutions into build/site/handed-out: the course folder's
       exercises/ is the learner's, with their answers and saved outputs, and is never read. Solutions
       are never staged: a link to one becomes text.
    4. Render them with Sphinx + MyST-NB (configuration in site/), warnings treated as errors, then
       mend what the theme's markup lacks for screen readers and keyboards (:mod:`site_html`).
    5. With ``check``: every relative link and anchor resolves, and nothing leaks the machine.
    """
    start = time.monotonic()
    executed = run_lessons(out, jobs, reuse)
    ran = time.monotonic() - start

    src, html_dir = out / "src", out / "html"
    pages = stage(src, executed)
    print(f"staged {len(pages)} pages; rendering with Sphinx …", flush=True)
    if html_dir.exists():
        shutil.rmtree(html_dir)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(CONF_DIR), "-E", "-W", "--keep-going", "-q"]
    subprocess.run([*command, "-j", str(jobs), str(src), str(html_dir)], check=True, cwd=ROOT)
    shutil.rmtree(html_dir / ".doctrees", ignore_errors=True)
    make_accessible(html_dir)
    total = time.monotonic() - start

    if check:
        problems = broken_links(html_dir) + leaks(html_dir)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            raise SystemExit(f"{len(problems)} problem(s) in the built site")
    print(
        f"site built in {total:.0f} s (lessons {ran:.0f} s), {size_of(html_dir) / 1e6:.1f} MB: "
        f"{html_dir.relative_to(ROOT) if html_dir.is_relative_to(ROOT) else html_dir}/index.html"
    )
    return html_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default: build/site)")
    parser.add_argument("--jobs", type=int, default=2, help="kernels at a time (default: 2)")
    parser.add_argument("--no-check", action="store_true", help="skip the link and leak checks")
    parser.add_argument("--reuse-executed", action="store_true", help="render the last build's executed lessons again")
    args = parser.parse_args(argv)
    build(args.out.resolve(), args.jobs, not args.no_check, args.reuse_executed)


if __name__ == "__main__":
    main()
