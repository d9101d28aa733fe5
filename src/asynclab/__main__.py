"""Course commands: ``python -m asynclab build`` cleans the notebooks and makes the exercises from the solutions."""

from __future__ import annotations

import sys

from asynclab import authoring


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        changed = authoring.build()
        for path in changed:
            print(f"rewrote {path.relative_to(authoring.ROOT)}")
        print(f"{len(changed)} notebook(s) rewritten" if changed else "every notebook is clean and the exercises are up to date")
        return 0
    print("usage: python -m asynclab build", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
