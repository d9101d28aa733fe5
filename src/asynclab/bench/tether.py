"""A server tied to the process that started it: a watcher cleans up when that process ends, however it ends."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# The watcher: it blocks reading a pipe whose other end only the starting process holds. End of file
# comes when that process closes it or dies (a kernel killed or restarted runs no clean-up of its own).
WATCHER = r"""
import json, os, shutil, signal, subprocess, sys
spec = json.loads(sys.argv[1])
if sys.stdin.buffer.read() == b"done":
    sys.exit(0)
for command in spec["commands"]:
    try:
        subprocess.run(command, timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    except Exception:
        pass
for pid in spec["pids"]:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
for folder in spec["folders"]:
    shutil.rmtree(folder, ignore_errors=True)
"""


class Tether:
    """Run ``commands``, kill ``pids`` and remove ``folders`` if this process ends before :meth:`release`.

    ``add_pid`` and ``add_command`` extend the plan once a server has started (the watcher gets the
    whole plan anew). :meth:`release` says the clean-up was done the ordinary way and waits for the watcher.
    """

    def __init__(self, *, commands: Sequence[Sequence[str]] = (), pids: Sequence[int] = (), folders: Sequence[Path] = ()) -> None:
        self.commands = [list(c) for c in commands]
        self.pids = list(pids)
        self.folders = [str(f) for f in folders]
        self._watcher: subprocess.Popen[bytes] | None = None
        self._start()

    def _start(self) -> None:
        spec = json.dumps({"commands": self.commands, "pids": self.pids, "folders": self.folders})
        old = self._watcher
        self._watcher = subprocess.Popen(
            [sys.executable, "-c", WATCHER, spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches the server's starter, not its clean-up
        )
        if old is not None:
            self._close(old)

    def add_pid(self, pid: int) -> None:
        self.pids.append(pid)
        self._start()

    @staticmethod
    def _close(watcher: subprocess.Popen[bytes]) -> None:
        assert watcher.stdin is not None
        with contextlib.suppress(OSError):
            watcher.stdin.write(b"done")
        with contextlib.suppress(OSError):
            watcher.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            watcher.wait(timeout=30)

    def release(self) -> None:
        """The server was stopped and its folder removed: end the watcher without it doing anything."""
        if self._watcher is not None:
            self._close(self._watcher)
            self._watcher = None
