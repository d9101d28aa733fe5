"""Install the course's requirements if they changed, then open the course in JupyterLab.

``python tools/open_course.py [notebook] [--option ...]``: any ``--option`` goes on to JupyterLab.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tools" / "jupyter_server_config.py"
INPUTS = ("requirements.txt", "constraints.txt", "pyproject.toml")
START = "notebooks/00-start-here.ipynb"
NEEDED = ("jupyterlab", "asynclab")  # importable once the requirements are installed


def stamp_path() -> Path:
    """The stamp lives in the environment, not in the course folder: a fresh environment has none."""
    return Path(sys.prefix) / "asynclab-course.stamp"


def fingerprint() -> str:
    digest = hashlib.sha256()
    for name in INPUTS:
        path = ROOT / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()


def _pins(name: str) -> dict[str, set[str]]:
    """``name -> versions`` pinned in a requirements file. The lock may pin one package at two
    versions behind environment markers (one per Python version); any of them will do here."""
    found: dict[str, set[str]] = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        pinned = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#;]+)", line.strip())
        if pinned:
            found.setdefault(pinned.group(1), set()).add(pinned.group(3))
    return found


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def already_installed() -> bool:
    """Every pin of requirements.txt installed at its version, and no installed package off constraints.txt.

    True right after an offline install from a wheelhouse (docs/instructors.md), or in an environment
    set up by hand: then there is nothing for pip to do, and nothing to ask the network.
    """
    if any(importlib.util.find_spec(name) is None for name in NEEDED):
        return False
    if any(_installed(name) not in versions for name, versions in _pins("requirements.txt").items()):
        return False
    return all(_installed(name) in (None, *versions) for name, versions in _pins("constraints.txt").items())


def up_to_date() -> bool:
    stamp = stamp_path()
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == fingerprint():
        return all(importlib.util.find_spec(name) is not None for name in NEEDED)
    if already_installed():
        stamp.write_text(fingerprint() + "\n", encoding="utf-8")
        return True
    return False


def in_an_environment() -> bool:
    return sys.prefix != sys.base_prefix or os.environ.get("CONDA_PREFIX") == sys.prefix


def install() -> None:
    print("Installing the course's requirements (only when they changed; the first time takes a few minutes)…", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements.txt")], cwd=ROOT, check=True
    )
    stamp_path().write_text(fingerprint() + "\n", encoding="utf-8")
    importlib.invalidate_caches()


def jupyterlab_command(notebook: str = START, root: Path = ROOT) -> list[str]:
    """JupyterLab at the course root, the notebook open, the file browser at the root (not the notebook's folder).

    The start page is the course's /asynclab/open/<notebook> (asynclab.course.labserver), which has no
    query of its own: JupyterLab adds ?token=… to it in the link it prints, and that link must work.
    """
    relative = Path(notebook).resolve().relative_to(root).as_posix() if Path(notebook).is_absolute() else notebook
    url = f"/asynclab/open/{quote(relative)}"
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--config={root / CONFIG.relative_to(ROOT)}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.default_url={url}",
    ]


def main(argv: list[str]) -> int:
    """python tools/open_course.py                      # the start-here notebook
    python tools/open_course.py exercises/01-exercises-async-handlers.ipynb
    python tools/open_course.py --no-browser          # any --option is passed on to JupyterLab

    Run it from the course's virtual environment (Linux, macOS and Windows alike). The first run installs
    everything with pip; it then writes a stamp into the environment (a hash of requirements.txt,
    constraints.txt and pyproject.toml), so a later run skips pip and opens JupyterLab in about a second.
    Edit one of those files, or use a fresh environment, and the next run installs again.

    JupyterLab starts with the course folder as its root, its file browser showing the whole course, the
    notebook opened, and the settings in tools/jupyter_server_config.py (no news pop-up). Only the standard
    library is used here: the first run happens before anything is installed.
    """
    if not in_an_environment():
        print(
            "Activate the course's virtual environment first, then run this again:\n"
            "  source .venv/bin/activate        (Linux, macOS)\n"
            "  .venv\\Scripts\\activate           (Windows)\n"
            "No environment yet? From the course folder: python3 -m venv .venv   (Windows: py -m venv .venv)",
            file=sys.stderr,
        )
        return 2
    options = [a for a in argv if a.startswith("-")]  # passed on to JupyterLab, e.g. --no-browser --port=8890
    notebook = next((a for a in argv if not a.startswith("-")), START)
    if not (ROOT / notebook).is_file():
        print(f"No notebook {notebook} in the course folder {ROOT}.", file=sys.stderr)
        return 2
    if not up_to_date():
        install()
    command = jupyterlab_command(notebook) + options
    print("Opening", notebook, "in JupyterLab (Ctrl-C, twice, stops it)…", flush=True)
    if "--no-browser" in options:
        print("When JupyterLab is ready it prints a link with ?token= in it: open that link in your browser.", flush=True)
    if os.name == "posix":  # become JupyterLab: Ctrl-C and signals reach it directly
        os.chdir(ROOT)
        os.execv(sys.executable, command)
    jupyterlab = subprocess.Popen(command, cwd=ROOT)
    while True:
        try:
            return jupyterlab.wait()
        except KeyboardInterrupt:  # JupyterLab gets the Ctrl-C too; it asks, then stops its kernels itself
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
