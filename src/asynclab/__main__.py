"""Course commands.

- ``python -m asynclab progress``: run your exercise notebooks and show which exercises are solved.
- ``python -m asynclab reset NN``: give exercise notebook NN back as handed out (asks first; ``--yes`` does not).
- ``python -m asynclab build``: clean the notebooks and make the exercises from the solutions (for authors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asynclab import authoring


def _build(_: argparse.Namespace) -> int:
    changed = authoring.build()
    for path in changed:
        print(f"rewrote {path.relative_to(authoring.ROOT)}")
    print(f"{len(changed)} file(s) rewritten" if changed else "every notebook is clean and the exercises are up to date")
    return 0


def _progress(args: argparse.Namespace) -> int:
    from asynclab import progress

    return progress.main(Path(args.folder), jobs=args.jobs, cell_limit=args.cell_limit)


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
        print(f"reset {path} (your previous version: {path.name}.bak)" if path.with_name(path.name + ".bak").exists() else f"restored {path}")
    if not written:
        print(f"{names}: already as handed out, nothing changed.")
    print("If the notebook is open in JupyterLab, reload it from disk (File > Reload Notebook from Disk).")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m asynclab", description="Course commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("progress", help="run your exercise notebooks and show which exercises are solved")
    p.add_argument("--folder", default="exercises", help="the folder of exercise notebooks (default: exercises)")
    p.add_argument("--jobs", type=int, default=3, help="notebooks run at once (default: 3)")
    p.add_argument("--cell-limit", type=float, default=20.0, help="seconds a cell other than a check may run (default: 20)")
    p.set_defaults(run=_progress)
    r = commands.add_parser("reset", help="give one exercise notebook back as handed out")
    r.add_argument("which", help='the section, e.g. "3" or "03", an exercise such as "3.2", or the notebook name')
    r.add_argument("--yes", action="store_true", help="do not ask first")
    r.add_argument("--folder", default="exercises", help="the folder of exercise notebooks (default: exercises)")
    r.set_defaults(run=_reset)
    b = commands.add_parser("build", help="(authors) clean notebooks and make exercises from the solutions")
    b.set_defaults(run=_build)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
