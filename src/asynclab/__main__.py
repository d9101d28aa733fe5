"""``python -m asynclab COMMAND``: the course's commands (progress, reset, class, build, lessons, bench-checks).

``--help`` lists them, and ``COMMAND --help`` their options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# jsonschema (nbformat's validator) imports this optional IRI checker if it is installed and spends
# seconds building its grammar; no schema the course validates uses that format. Skip it here.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from asynclab.course import authoring, facts


def _build(_: argparse.Namespace) -> int:
    changed = authoring.build()
    for path in changed:
        print(f"rewrote {path.relative_to(authoring.ROOT)}")
    print(
        f"{len(changed)} file(s) rewritten"
        if changed
        else "nothing to rewrite: the notebooks are clean, and the exercises and every copied fact match their sources"
    )
    missing = facts.unsourced()
    if missing:
        print(f"\n{len(missing)} thing(s) build cannot write for you (CONTRIBUTING.md, 'Adding a section or an exercise'):")
        for line in missing:
            print(f"- {line}")
        return 1
    return 0


def _lessons(_: argparse.Namespace) -> int:
    from asynclab.course import teaching

    print(teaching.table())
    print(
        f"(estimated at {teaching.WORDS_PER_MINUTE} words and {teaching.CODE_LINES_PER_MINUTE} code lines a minute; "
        "the core is what comes before a 'Going deeper' heading)"
    )
    return 0


def _progress(args: argparse.Namespace) -> int:
    from asynclab.course import progress_table, progress_watch

    if args.jobs < 1 or args.cell_limit <= 0:
        print("--jobs must be 1 or more, and --cell-limit more than 0 seconds.", file=sys.stderr)
        return 2
    if args.watch:
        if args.json or args.report:
            print("--watch shows the table as you work; run --json or --report without it.", file=sys.stderr)
            return 2
        return progress_watch.watch(Path(args.folder), jobs=args.jobs, cell_limit=args.cell_limit, rerun_all=args.rerun_all)
    try:
        if args.json or args.report:  # the machine-readable report (asynclab.course.report)
            from asynclab.course import report

            return report.main(
                Path(args.folder),
                jobs=args.jobs,
                cell_limit=args.cell_limit,
                name=args.name,
                as_json=args.json,
                report_file=args.report,
                rerun_all=args.rerun_all,
            )
        return progress_table.main(Path(args.folder), jobs=args.jobs, cell_limit=args.cell_limit, rerun_all=args.rerun_all)
    except KeyboardInterrupt:
        print("\nStopped: nothing was checked this time.", file=sys.stderr)
        return 130


def _class(args: argparse.Namespace) -> int:
    from asynclab.course import classview
    from asynclab.course.room import hub

    if args.stuck < 1 or args.parallel < 1 or args.timeout <= 0:
        print("--stuck and --parallel must be 1 or more, and --timeout more than 0 seconds.", file=sys.stderr)
        return 2
    options = classview.Options(
        paths=tuple(args.paths),
        hub=args.hub or "",
        hub_options=hub.Options(folder=args.exercises or "", parallel=args.parallel, fresh=args.fresh, timeout=args.timeout),
        out_dir=Path(args.out),
        stuck=args.stuck,
        roster=Path(args.roster) if args.roster else None,
        upto=args.upto,
        hide_names=args.hide_names,
        by_progress=args.sort == "progress",
        csv=Path(args.csv) if args.csv else None,
        watch=args.watch,
        every=args.every,
    )
    return classview.main(options=options)


def _reset(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    try:
        solution = authoring.find_solution(args.which)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2
    targets = [folder / relative for relative in authoring.handed_out(solution)]
    names = ", ".join(str(t) for t in targets)
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"Not resetting {names}: add --yes to confirm.", file=sys.stderr)
            return 1
        answer = input(f"Reset {names} to the handed-out state? Your version is kept as .bak. [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("Nothing changed.")
            return 1
    written = authoring.reset(solution, folder)
    for path in written:
        print(
            f"reset {path} (your previous version: {path.name}.bak)"
            if path.with_name(path.name + ".bak").exists()
            else f"restored {path}"
        )
    if not written:
        print(f"{names}: already as handed out, nothing changed.")
        return 0
    print()
    print(_reload_advice(written))
    return 0


def _reload_advice(written: list[Path]) -> str:
    """What to do in JupyterLab now. A tab open on a reset file still shows the old version, and saving it
    brings up JupyterLab's "File Changed" question, where Overwrite (the button Enter presses) undoes the reset."""
    from asynclab.course import labserver

    lines = []
    for path in written:
        servers = labserver.open_in(path) if path.suffix == ".ipynb" else []
        if servers:
            lines.append(f"{path.name} is open in JupyterLab ({', '.join(servers)}), and its tab still shows your old version.")
        else:
            lines.append(f"If {path.name} is open in JupyterLab, its tab still shows your old version.")
        item = "Reload Notebook from Disk" if path.suffix == ".ipynb" else "Reload Python File from Disk"
        lines.append(f"  Before you type or save anything in that tab, choose File › {item} (if JupyterLab asks, choose Reload).")
    lines.append('If JupyterLab says "File Changed", choose Revert: Overwrite would put your old version back.')
    return "\n".join(lines)


def _bench(args: argparse.Namespace) -> int:
    from asynclab.course import benchchecks

    return benchchecks.main(args.sections or None)


def _add_progress(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``progress``: the learner's command."""
    p = commands.add_parser("progress", help="run your exercise notebooks and show which exercises are solved")
    p.add_argument("--folder", default="exercises", help="the folder of exercise notebooks (default: exercises)")
    p.add_argument("--jobs", type=int, default=3, help="notebooks run at once (default: 3)")
    p.add_argument("--cell-limit", type=float, default=20.0, help="seconds a cell other than a check may run (default: 20)")
    p.add_argument(
        "--json", action="store_true", help="print your result as a JSON report (for the class view) instead of the table"
    )
    p.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE (a folder: FILE/<name>.json)")
    p.add_argument("--name", help="your name in the report (default: JUPYTERHUB_USER, then your user name)")
    p.add_argument(
        "--all",
        dest="rerun_all",
        action="store_true",
        help="run every notebook again, even those unchanged since the last run (their results are reused otherwise)",
    )
    p.add_argument("--watch", action="store_true", help="check again each time you save a file in the folder, until Ctrl-C")
    p.set_defaults(run=_progress)


def _add_class(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``class``: the instructor's view of the room."""
    c = commands.add_parser(
        "class", help="(instructors) read learners' JSON reports: a table, where the room is stuck, a PNG and an HTML page"
    )
    c.add_argument(
        "paths", nargs="*", metavar="PATH", help="report files, or folders of them (self-reported: learners wrote them)"
    )
    c.add_argument(
        "--hub",
        metavar="URL",
        help="instead: collect the room from this JupyterHub (token in JUPYTERHUB_API_TOKEN; docs/room.md)",
    )
    c.add_argument("--out", default=".", help="where to write class-view.png and class-view.html (default: here)")
    c.add_argument("--stuck", type=int, default=3, help="how many exercises to list under 'where the room is stuck' (default: 3)")
    c.add_argument(
        "--upto", metavar="N.M", help="the room's frontier: rank 'stuck' up to this exercise (default: where half the room is)"
    )
    c.add_argument("--roster", metavar="FILE", help="who should be there, one name a line (on --hub: the hub's users)")
    c.add_argument("--hide-names", action="store_true", help="show #1, #2, ... instead of names (to project), sorted by progress")
    c.add_argument("--sort", choices=["name", "progress"], default="name", help="order of the rows (default: name)")
    c.add_argument("--csv", metavar="FILE", help="also write a gradebook: one row per learner and exercise")
    c.add_argument("--watch", action="store_true", help="again every --every seconds until Ctrl-C; the page reloads itself")
    c.add_argument("--every", type=float, default=30.0, help="seconds between rounds with --watch (default: 30)")
    c.add_argument(
        "--exercises", metavar="FOLDER", help="with --hub: each learner's exercises folder, from their home (default: found)"
    )
    c.add_argument("--parallel", type=int, default=4, help="with --hub: learners collected at once (default: 4)")
    c.add_argument("--fresh", action="store_true", help="with --hub: run every notebook again, no cached results (slower)")
    c.add_argument(
        "--timeout", type=float, default=600.0, help="with --hub: seconds for one learner's progress run (default: 600)"
    )
    c.set_defaults(run=_class)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m asynclab", description="Course commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_progress(commands)
    r = commands.add_parser("reset", help="give one exercise notebook back as handed out")
    r.add_argument("which", help='the section, e.g. "3" or "03", an exercise such as "3.2", or the notebook name')
    r.add_argument("--yes", action="store_true", help="do not ask first")
    r.add_argument("--folder", default="exercises", help="the folder of exercise notebooks (default: exercises)")
    r.set_defaults(run=_reset)
    b = commands.add_parser(
        "build", help="(authors) clean notebooks, make exercises from the solutions, write every copied fact from its source"
    )
    b.set_defaults(run=_build)
    lessons = commands.add_parser("lessons", help="(authors) each lesson's core path: words, code lines, estimated minutes")
    lessons.set_defaults(run=_lessons)
    _add_class(commands)
    t = commands.add_parser("bench-checks", help="(authors) time each check on its solution and on the handed-out code")
    t.add_argument("sections", nargs="*", help='only these sections, e.g. "2 8" (default: all)')
    t.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
