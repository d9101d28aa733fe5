"""The lock: constraints.txt pins every package the course installs, transitive ones included.

requirements*.txt name what the course needs (with `-c constraints.txt`); the lock pins everything
they pull in, per Python version and platform where those differ (environment markers). So a learner
installing next year gets the versions CI tested. Refresh it with the command in CONTRIBUTING.md.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
NOT_LOCKED = {"asynclab", "pip", "setuptools", "wheel", "uv"}  # the course itself, and the installers (uv refreshes the lock)
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)\s*(?:;\s*([^#]+))?")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path, *, here_only: bool = True) -> dict[str, str]:
    """``name -> version`` for each ``name==version`` line whose marker (if any) holds on this machine."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match and (not here_only or match.group(3) is None or Marker(match.group(3)).evaluate()):
            found[canonical(match.group(1))] = match.group(2)
    return found


def test_the_lock_pins_every_installed_package_at_its_installed_version() -> None:
    locked = pins(LOCK)
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = sorted(
        f"{name} {version} (lock: {locked.get(name, 'not listed')})"
        for name, version in installed.items()
        if name not in NOT_LOCKED and locked.get(name) != version
    )
    assert not wrong, "installed but not as locked: " + "; ".join(wrong) + " (refresh: see CONTRIBUTING.md)"


def test_every_requirements_file_uses_the_lock_and_agrees_with_it() -> None:
    locked = pins(LOCK)
    files = sorted(ROOT.glob("requirements*.txt"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert re.search(r"^-c constraints\.txt$", text, re.MULTILINE), f"{path.name} does not use the lock"
        for name, version in pins(path).items():
            assert locked.get(name) == version, f"{path.name} pins {name}=={version}; the lock has {locked.get(name)}"


def test_the_lock_names_no_path_of_the_machine_that_made_it() -> None:
    assert not re.search(r"file:|/home/|/root/|/tmp/|/work/", LOCK.read_text(encoding="utf-8"))
