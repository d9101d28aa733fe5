"""Is this the environment the course was written for? Compare installed versions with requirements.txt."""

from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[3] / "requirements.txt"


@dataclass(frozen=True)
class Package:
    name: str
    pinned: str
    installed: str | None

    @property
    def ok(self) -> bool:
        return self.installed == self.pinned


def pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """``name -> version`` for every ``name==version`` line of requirements.txt."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#;]+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(3)
    return found


def packages(path: Path = REQUIREMENTS) -> list[Package]:
    result = []
    for name, version in pins(path).items():
        try:
            installed: str | None = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        result.append(Package(name, version, installed))
    return result


def report(path: Path = REQUIREMENTS) -> list[Package]:
    """Print one line per pinned package and return the ones that differ from their pin."""
    print(
        f"Python {platform.python_version()} on {platform.system()} · kernel: {Path(sys.executable).name} in "
        f"{'a virtual environment' if sys.prefix != sys.base_prefix else 'the system Python'}"
    )
    wrong = []
    for p in packages(path):
        mark = "✅ ok     " if p.ok else "❌ differs"
        print(f"{mark} {p.name:<15} pinned {p.pinned:<9} installed {p.installed or 'missing'}")
        if not p.ok:
            wrong.append(p)
    if wrong:
        print("Run `python -m pip install -r requirements.txt` in this environment, then restart the kernel.")
    from asynclab.bench.stack import describe

    print(describe())
    return wrong
