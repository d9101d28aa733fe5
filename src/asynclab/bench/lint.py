"""Run ruff on a file and return its findings, so a lesson can show (and assert) what a linter catches."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finding:
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.code} {self.message}"


def ruff(path: str | Path, select: str | None = None) -> list[Finding]:
    """Lint ``path`` with the course's pinned ruff, ignoring any project configuration."""
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--exit-zero", "--output-format", "json"]
    if select:
        command += ["--select", select]
    done = subprocess.run([*command, str(path)], capture_output=True, text=True, check=True, timeout=60)
    return [Finding(f["location"]["row"], f["code"], f["message"]) for f in json.loads(done.stdout)]
