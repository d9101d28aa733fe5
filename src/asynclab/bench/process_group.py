"""A server command in a process group of its own: started, its members listed, signalled, and killed."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

LIVE_GROUPS: set[int] = set()  # the groups launched here and not yet stopped


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return sorted(members)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to every process of the group (none left: nothing happens)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], object] | None:
    """Linux: a call for the child that asks the kernel to send it ``sig`` (SIGTERM) when the thread that started it dies.

    A Jupyter kernel that is killed (out of memory, a hub stopping a server) runs no clean-up, so
    without this its uvicorn parent would live on, workers and port included. SIGTERM lets uvicorn
    stop its workers as a deploy would. Elsewhere: None (the atexit net below remains).
    The C function is looked up here, in the parent, so the child runs one system call and no Python import.
    """
    if sys.platform != "linux":
        return None
    import ctypes
    import functools

    pr_set_pdeathsig = 1
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return functools.partial(prctl, pr_set_pdeathsig, int(sig))


def launch(
    command: list[str], log_path: Path, folder: Path, env: dict[str, str], death_signal: signal.Signals = signal.SIGTERM
) -> subprocess.Popen[bytes]:
    """Start the command as the leader of a new process group, every process writing to one log.

    Call it from a thread that outlives the server (the event loop's thread): on Linux the server
    is sent ``death_signal`` when that thread ends (see :func:`_die_with_parent`).
    """
    with open(log_path, "ab") as log_file:  # append mode: whole lines from every process
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent(death_signal),  # noqa: PLW1509 - one system call, no lock or import in the child
        )
    LIVE_GROUPS.add(process.pid)
    return process


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a whole process group and wait until it is gone (synchronous, so a cancelled cell cannot skip it)."""
    pgid = process.pid
    signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    LIVE_GROUPS.discard(pgid)


def running_groups() -> dict[int, list[int]]:
    """Groups launched here that still have live processes: process group -> PIDs.

    Orphaned workers (their parent killed) are no longer children of this process, so a search of
    its children misses them; their process group does not.
    """
    return {pgid: members for pgid in sorted(LIVE_GROUPS) if (members := group_members(pgid))}


@atexit.register
def _kill_leftovers() -> None:  # pragma: no cover - a safety net for a kernel that exits mid-block
    for pgid in list(LIVE_GROUPS):
        signal_group(pgid, signal.SIGKILL)
